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


BUFFER_SHAPES = 4
"""Rollout shapes ``(N, H)`` whose buffers a `CpuRollout` keeps (the least recently used is dropped)."""


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
        # The full physics state of a new MjData (time 0, qpos0, zero activations, the history
        # buffers of delayed controls, plugin states), built once: a rollout's initial state is a
        # copy with its qpos and qvel written at their offsets (MuJoCo orders the state's parts by
        # their mjtState bits). An MjData per call, as before, cost as much as ~100 hopper physics steps.
        self._fresh_state = np.empty(self.nstate)
        mujoco.mj_getState(self.model, mujoco.MjData(self.model), self._fresh_state, self._state_spec)
        time_bits, qpos_bits = int(mujoco.mjtState.mjSTATE_TIME), int(mujoco.mjtState.mjSTATE_QPOS)
        self._qpos_at = mujoco.mj_stateSize(self.model, time_bits)
        self._qvel_at = mujoco.mj_stateSize(self.model, time_bits | qpos_bits)
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

    def initial_physics_state(self, qpos0: Tensor, qvel0: Tensor, out: np.ndarray | None = None) -> np.ndarray:
        """The ``mjSTATE_FULLPHYSICS`` vector ``[nstate]`` of time 0, ``qpos0``, ``qvel0``.

        The state of a new ``MjData`` (time 0, zero activations, the initial history of delayed
        controls, ...) with ``qpos0`` and ``qvel0`` written in: exactly what ``mj_getState`` gives
        for such an ``MjData`` (tested), without allocating one (~0.5 ms each).

        ``out``: an ``[nstate]`` or ``[N, nstate]`` float64 array to fill (every row gets the
        state) instead of a new ``[nstate]`` one.
        """
        if out is None:
            out = np.empty(self.nstate)
        out[...] = self._fresh_state
        out[..., self._qpos_at : self._qpos_at + self.nq] = qpos0.detach().cpu().double().numpy()
        out[..., self._qvel_at : self._qvel_at + self.nv] = qvel0.detach().cpu().double().numpy()
        return out

    def _buffers_for(self, n: int, horizon: int):
        """``(initial [N, nstate], control [N, S, nu], state [N, S, nstate], sensordata [N, S, ns])``, reused.

        Kept for the `BUFFER_SHAPES` latest ``(N, H)`` (memory scales with ``N * H * frame_skip``):
        an MPC alternates its batch with single rollouts (keep-best's estimate, a prediction).
        """
        key = (n, horizon)
        buffers = self._buffers.pop(key, None)  # re-inserted last: the least recently used goes first
        if buffers is None:
            nstep = horizon * self.frame_skip
            buffers = (
                np.empty((n, self.nstate)),
                np.empty((n, nstep, self.nu)),
                np.empty((n, nstep, self.nstate)),
                np.empty((n, nstep, self.nsensordata)),
            )
            while len(self._buffers) >= BUFFER_SHAPES:
                del self._buffers[next(iter(self._buffers))]
        self._buffers[key] = buffers
        return buffers

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
        initial, control, state, sensordata = self._buffers_for(n, horizon)
        # hold each control for frame_skip physics steps: [N, H, nu] -> [N, H * frame_skip, nu]
        np.copyto(
            control.reshape(n, horizon, self.frame_skip, self.nu),
            ctrl.detach().cpu().double().numpy()[:, :, None, :],
        )
        self.initial_physics_state(qpos0, qvel0, out=initial)  # every row: the same start
        self.run_physics(initial, control, state, sensordata)
        last = slice(self.frame_skip - 1, None, self.frame_skip)  # the physics step ending each control step
        qpos = torch.from_numpy(state[:, last, self._qpos_at : self._qpos_at + self.nq].copy())
        qvel = torch.from_numpy(state[:, last, self._qvel_at : self._qvel_at + self.nv].copy())
        sens = torch.from_numpy(sensordata[:, last].copy())
        return qpos, qvel, sens

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
