"""Backend 1, the embedded default: batched MuJoCo rollouts on the CPU with ``mujoco.rollout``.

One call of `CpuRollout` simulates every sample over the whole horizon inside
MuJoCo's native, multithreaded ``rollout`` (a persistent thread pool, one ``MjData`` per
thread): no Python loop over time steps or samples. Each control is held for ``frame_skip``
physics steps; the state after every control step is returned as torch tensors.

MuJoCo's automatic reset on a diverging simulation is disabled on the backend's copy of the
model, so a diverged sample shows up as non-finite (or huge) numbers that the caller marks
infeasible instead of silently restarting from ``qpos0``.

Inputs are checked before the native call (`dynamics.backend_inputs.check_backend_inputs`):
MuJoCo's C rollout would crash the process on an empty batch, which is answered here with
empty tensors instead.

One backend may be called from several Python threads: its thread pool, its ``MjData`` and its
buffers serve one rollout at a time, so a lock makes a second concurrent call wait for the first
(two unguarded calls into one ``mujoco.rollout.Rollout`` crash the process). The pool already
uses every CPU, so waiting costs no throughput; the lock itself costs well under a microsecond
per call (``benchmarks/thread_safety.py``, ``docs/results.md``).
"""

from __future__ import annotations

import copy
import os
import threading

import numpy as np
import torch
from torch import Tensor

from torch_mbd.checks import check_int

from .backend_inputs import check_backend_inputs, empty_outputs
from .tasks import import_mujoco


def default_threads() -> int:
    """Threads for the rollout pool: the CPUs this process may use (``os.sched_getaffinity``).

    The pool keeps every CPU even where ``torch_mbd.plan`` runs torch on one thread
    ([`torch_mbd.threads`][torch_mbd.threads]): each sample's rollout is simulated on one thread from start to
    end, so the result does not depend on the pool's size (tested: the same plan with
    ``nthread=1`` and ``2``), and an idle worker waits without spinning, so a busy machine costs
    it no more than the work it shares.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class CpuRollout:
    """Batched open-loop rollouts of one MuJoCo model with ``mujoco.rollout``.

    Args:
        model: a compiled ``mujoco.MjModel`` (copied; the original is not modified).
        frame_skip: physics steps per control step.
        nthread: threads of the persistent pool; default: every CPU this process may use.

    Call it with ``(qpos0 [nq], qvel0 [nv], ctrl [N, H, nu])`` (float tensors on the CPU; ``ctrl``
    in actuator units) to get ``(qpos [N, H, nq], qvel [N, H, nv], sensordata [N, H, nsensordata])``,
    float64 CPU tensors holding the state after each control step. An empty batch (``N = 0``)
    gives empty outputs without calling MuJoCo; malformed inputs raise ``TypeError`` /
    ``ValueError`` before the native call. MuJoCo replaces a non-finite control by 0 (and prints a
    warning); [`MujocoModel`][dynamics.model.MujocoModel] never passes one on (it marks the sample infeasible).
    """

    def __init__(self, model, frame_skip: int, nthread: int | None = None):
        mujoco = import_mujoco()
        import mujoco.rollout  # noqa: F401  (submodule)

        frame_skip = check_int("frame_skip", frame_skip, minimum=1)
        nthread = default_threads() if nthread is None else check_int("nthread", nthread, minimum=1)
        self._mujoco = mujoco
        self.model = copy.deepcopy(model)
        self.model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_AUTORESET)
        self.frame_skip = frame_skip
        self.nthread = nthread
        # nthread == 1 runs on the calling thread (a pool of 0 workers), as mujoco.rollout does.
        self._pool = mujoco.rollout.Rollout(nthread=0 if nthread == 1 else nthread)
        self._datas = [mujoco.MjData(self.model) for _ in range(nthread)]
        self._state_spec = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
        self.nstate = mujoco.mj_stateSize(self.model, self._state_spec)
        self._buffers: dict[tuple[int, int], tuple] = {}
        self._models: list = []
        self._lock = threading.Lock()  # one rollout at a time through the pool, its MjData and buffers
        self.nq, self.nv, self.nu, self.nsensordata = self.model.nq, self.model.nv, self.model.nu, self.model.nsensordata

    def close(self) -> None:
        """Shut the thread pool down (also done when the object is garbage collected).

        Waits for a rollout running on another thread to finish first.
        """
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def initial_physics_state(self, qpos0: Tensor, qvel0: Tensor) -> np.ndarray:
        """The ``mjSTATE_FULLPHYSICS`` vector ``[nstate]`` of time 0, ``qpos0``, ``qvel0``."""
        mujoco = self._mujoco
        data = mujoco.MjData(self.model)
        data.qpos[:] = qpos0.detach().cpu().double().numpy()
        data.qvel[:] = qvel0.detach().cpu().double().numpy()
        state = np.empty(self.nstate)
        mujoco.mj_getState(self.model, data, state, self._state_spec)
        return state

    def _buffers_for(self, n: int, horizon: int):
        key = (n, horizon)
        if key not in self._buffers:
            nstep = horizon * self.frame_skip
            self._buffers = {  # keep only the latest shape: memory scales with n * H * frame_skip
                key: (
                    np.empty((n, nstep, self.nu)),
                    np.empty((n, nstep, self.nstate)),
                    np.empty((n, nstep, self.nsensordata)),
                )
            }
        return self._buffers[key]

    def run_physics(self, initial_state: np.ndarray, ctrl: np.ndarray, state: np.ndarray, sensordata: np.ndarray):
        """One native ``rollout`` call: ``ctrl [N, S, nu]`` -> ``state [N, S, nstate]``, ``sensordata [N, S, ns]``.

        ``initial_state`` is ``[N, nstate]``; all arrays float64 and C-contiguous (not checked).
        Not locked: from several threads, call the backend itself (``__call__``), which is.
        """
        if self._pool is None:
            raise RuntimeError("this CpuRollout was closed")
        n, nstep = ctrl.shape[:2]
        if len(self._models) != n:
            self._models = [self.model] * n
        self._pool.rollout(
            self._models,
            self._datas,
            initial_state,
            ctrl,
            skip_checks=True,
            nstep=nstep,
            state=state,
            sensordata=sensordata,
        )

    def __call__(self, qpos0: Tensor, qvel0: Tensor, ctrl: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n, horizon = check_backend_inputs(qpos0, qvel0, ctrl, self.nq, self.nv, self.nu)
        if n == 0:  # mujoco.rollout would crash on zero models
            return empty_outputs(horizon, (self.nq, self.nv, self.nsensordata), torch.float64, torch.device("cpu"))
        with self._lock:  # the pool, its MjData and the buffers serve one call at a time
            return self._simulate(qpos0, qvel0, ctrl, n, horizon)

    def _simulate(self, qpos0: Tensor, qvel0: Tensor, ctrl: Tensor, n: int, horizon: int):
        """The native rollout of checked inputs, under the lock: fills the buffers, returns copies."""
        control, state, sensordata = self._buffers_for(n, horizon)
        # hold each control for frame_skip physics steps: [N, H, nu] -> [N, H * frame_skip, nu]
        np.copyto(
            control.reshape(n, horizon, self.frame_skip, self.nu),
            ctrl.detach().cpu().double().numpy()[:, :, None, :],
        )
        initial = np.broadcast_to(self.initial_physics_state(qpos0, qvel0), (n, self.nstate))
        self.run_physics(np.ascontiguousarray(initial), control, state, sensordata)
        last = slice(self.frame_skip - 1, None, self.frame_skip)  # the physics step ending each control step
        qpos = torch.from_numpy(state[:, last, 1 : 1 + self.nq].copy())
        qvel = torch.from_numpy(state[:, last, 1 + self.nq : 1 + self.nq + self.nv].copy())
        sens = torch.from_numpy(sensordata[:, last].copy())
        return qpos, qvel, sens

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
