"""``MujocoModel``: a [`Task`][dynamics.tasks.Task] on one simulator backend, as a rollout model.

It implements [`torch_mbd.rollout.RolloutModel`][torch_mbd.rollout.RolloutModel]: actions ``[..., n, H, nu]`` in
``[-1, 1]`` go in, a [`Trajectory`][torch_mbd.rollout.Trajectory] comes out, on the model's device.
The backend owns the whole time loop; the task's torch reward scores the states it returns.

Backends (each behind a pip extra):

* ``"mujoco"`` (default): ``mujoco.rollout`` on the CPU threads (`dynamics.mujoco_cpu`);
* ``"warp"``: MuJoCo Warp on a CUDA GPU or warp's CPU device (`dynamics.mujoco_warp`);
* ``"mjx"``: MJX on JAX's CPU or GPU backend (`dynamics.mjx`).

The state after each control step is ``[qpos, qvel, sensordata]`` (``state_dim = nq + nv +
nsensordata``; `MujocoModel.state_slices` names the parts). A sample whose simulation
diverged (a non-finite or huge value anywhere in its states) is infeasible; its states and
rewards are set to 0 so that nothing downstream sees NaN, and the others are untouched.
"""

from __future__ import annotations

import threading
from typing import Callable

import torch
from torch import Tensor

from torch_mbd.checks import check_device, check_int, check_real, check_seed
from torch_mbd.rollout import Trajectory

from .backends import BACKEND_OPTIONS, BACKENDS, GPU_BACKENDS
from .tasks import Task, control_limits, get_task, import_mujoco, sensor_slices

# a state entry beyond this magnitude means the simulation diverged
DIVERGENCE_THRESHOLD = 1e6


def _make_backend(name: str, mj_model, frame_skip: int, device: torch.device, options: dict):
    unknown = sorted(set(options) - set(BACKEND_OPTIONS.get(name, ())))
    if unknown:
        takes = ", ".join(BACKEND_OPTIONS[name]) or "no options"
        raise TypeError(f"unknown option(s) {', '.join(unknown)} for the {name!r} backend; it takes {takes}")
    if name == "mujoco":
        from .mujoco_cpu import CpuRollout

        return CpuRollout(mj_model, frame_skip, **options)
    if name == "warp":
        from .mujoco_warp import WarpRollout

        return WarpRollout(mj_model, frame_skip, device=device, **options)
    if name == "mjx":
        from .mjx import MjxRollout

        return MjxRollout(mj_model, frame_skip, device=device, **options)
    raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")


def _check_model_device(device, backend: str) -> torch.device:
    """``device`` as a ``torch.device`` the model's tensors (for warp / MJX, its simulation) can live on.

    Raises:
        ValueError: not a device, the meta device, a CUDA / MPS device this machine does not have,
            a device torch cannot allocate on, or (warp, mjx) a device other than the CPU or CUDA.
    """
    dev = check_device(device)
    if backend in GPU_BACKENDS and dev.type not in ("cpu", "cuda"):
        raise ValueError(f"Invalid device: expected 'cpu' or 'cuda[:i]' for the {backend} backend, got {str(dev)!r}")
    return dev


def edited_model(edit: Callable, mj_model):
    """The model ``edit(mj_model)`` leaves: ``mj_model`` changed in place (``edit`` returns ``None``)
    or the ``mujoco.MjModel`` it returns.

    Raises:
        TypeError: ``edit`` returned something else (e.g. ``lambda m: 5``, or a ``mujoco.MjSpec``,
            which would have to be compiled first).
    """
    mujoco = import_mujoco()
    edited = edit(mj_model)
    if edited is None:
        return mj_model
    if not isinstance(edited, mujoco.MjModel):
        hint = " (compile it: return spec.compile())" if isinstance(edited, mujoco.MjSpec) else ""
        raise TypeError(
            "edit must change the mujoco.MjModel in place and return None, or return a mujoco.MjModel; "
            f"it returned {type(edited).__name__}{hint}"
        )
    return edited


def step_starts(initial: Tensor, after: Tensor) -> Tensor:
    """The value at the start of each control step: ``initial [d]``, ``after [N, H, d] -> [N, H, d]``
    (``initial`` for the first step, then the value after the step before)."""
    first = initial.to(after).expand(after.shape[0], 1, after.shape[-1])
    return torch.cat([first, after[:, :-1]], dim=1)


def diverged(states: Tensor, threshold: float = DIVERGENCE_THRESHOLD) -> Tensor:
    """Which samples diverged: ``states [N, H, nx] -> [N]`` bool (non-finite or ``|x| > threshold``)."""
    # one pass: NaN and +-inf fail ``|x| <= threshold`` too (every torch op over a large batch may
    # wait for all intra-op threads, which costs a scheduler time slice on a busy CPU)
    return ~(states.abs() <= threshold).flatten(1).all(-1)


class MujocoModel:
    """A MuJoCo task on one backend, implementing [`torch_mbd.rollout.RolloutModel`][torch_mbd.rollout.RolloutModel].

    Args:
        task: a [`Task`][dynamics.tasks.Task] or a task name (``"hopper"``, ``"push_t"``, ...).
        backend: ``"mujoco"`` (CPU ``mujoco.rollout``), ``"warp"`` or ``"mjx"``.
        device: where the rollout's input and output tensors live; for ``"warp"`` and ``"mjx"``
            also where the simulation runs (``"cpu"`` or ``"cuda[:i]"``). Default ``"cpu"``.
        horizon: default number of control steps; default ``task.horizon``.
        reset_noise: the reset noise on the initial state, in units of the task's own
            (``task.reset_noise_scale``): 1 (default) is the authors' noise, 0 the nominal state.
        seed: seed of the reset noise (and of push-T's goal): each seed is one instance of the task.
        dtype: floating dtype of actions, states and rewards (default float32).
        edit: ``edit(mj_model)``, called on the compiled ``mujoco.MjModel`` before anything is
            derived from it and before the backend is built; it changes the model in place (or
            returns a replacement), e.g. ``lambda m: m.body_mass.__imul__(2)`` to simulate a model
            mismatch.
        **backend_options: passed to the backend (``nthread`` for ``"mujoco"``; ``nconmax``,
            ``njmax``, ``graph`` for ``"warp"``).

    Raises:
        ValueError: an unknown ``backend``; a ``device`` that is not a device, the meta device, a
            CUDA / MPS device this machine does not have (or, for warp / MJX, anything but the CPU
            or CUDA); a bad ``horizon``, ``reset_noise`` or ``seed``.
        TypeError: a non-floating ``dtype``, a non-callable ``edit`` or one that returns neither
            ``None`` nor a ``mujoco.MjModel``, an option the backend does not take.
        ImportError: naming the pip extra when the backend's package is missing.

    Attributes:
        temperature: the task's recommended MBD temperature (the paper's Table 4).
        num_samples: the task's default number of samples per diffusion step (sized for a CPU).
        num_steps: the authors' number of diffusion steps for the task (Table 4's "Sample Number").
        initial_state: ``[state_dim]`` the state rollouts start from; assign a ``[state_dim]`` or
            ``[nq + nv]`` tensor to move it (the sensor readings are recomputed).

    Threads: one model may be shared by several threads. The ``"mujoco"`` and ``"warp"`` backends
    run one rollout at a time (a lock; a second call waits), MJX's rollouts run concurrently; each
    call gets the result it would get alone. A rollout reads [`initial_state`][dynamics.model.MujocoModel.initial_state] once, at its start.

    Example:
        >>> model = MujocoModel("hopper", backend="mujoco")
        >>> traj = model.rollout(torch.zeros(8, model.horizon, model.action_dim))
        >>> traj.rewards.shape
        torch.Size([8, 50])
    """

    def __init__(
        self,
        task: str | Task,
        backend: str = "mujoco",
        device: str | torch.device = "cpu",
        horizon: int | None = None,
        reset_noise: float = 1.0,
        seed: int | None = 0,
        dtype: torch.dtype = torch.float32,
        edit: Callable | None = None,
        **backend_options,
    ):
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        device = _check_model_device(device, backend)
        reset_noise = check_real("reset_noise", reset_noise)
        if reset_noise < 0:
            raise ValueError(f"Invalid reset_noise: expected >= 0, got {reset_noise!r}")
        seed = check_seed(seed)
        self.task = get_task(task)
        horizon = check_int("horizon", self.task.horizon if horizon is None else horizon, minimum=1)
        if edit is not None and not callable(edit):
            raise TypeError(f"edit must be a callable taking a mujoco.MjModel, got {type(edit).__name__}")
        import_mujoco()
        self.backend_name = backend
        self.device = device
        if self.device.type == "cuda" and self.device.index is None and torch.cuda.is_available():
            self.device = torch.device("cuda", torch.cuda.current_device())  # compare equal to tensors' devices
        self.dtype = dtype
        self.horizon = horizon
        self.mj_model = self.task.compile()
        if edit is not None:
            self.mj_model = edited_model(edit, self.mj_model)
        self.frame_skip = self.task.frame_skip
        self.temperature = self.task.temperature
        self.num_samples = self.task.num_samples
        self.num_steps = self.task.num_steps
        self.nq, self.nv, self.nu = self.mj_model.nq, self.mj_model.nv, self.mj_model.nu
        self.nsensordata = self.mj_model.nsensordata
        self.action_dim = self.nu
        self.state_dim = self.nq + self.nv + self.nsensordata
        self.state_slices = {
            "qpos": slice(0, self.nq),
            "qvel": slice(self.nq, self.nq + self.nv),
            "sensordata": slice(self.nq + self.nv, self.state_dim),
        }
        self.sensor_slices = sensor_slices(self.mj_model)
        self.action_bounds = (
            -torch.ones(self.nu, dtype=dtype, device=self.device),
            torch.ones(self.nu, dtype=dtype, device=self.device),
        )
        low, high = control_limits(self.mj_model)
        self._ctrl_low, self._ctrl_high = low.to(self.device, dtype), high.to(self.device, dtype)
        self.qpos0, self.qvel0 = self.task.initial_state(self.mj_model, noise=reset_noise, seed=seed)
        self._scratch, self._scratch_lock = import_mujoco().MjData(self.mj_model), threading.Lock()  # _full_state's
        self._initial_state = self._full_state(self.qpos0, self.qvel0)
        self.backend = _make_backend(backend, self.mj_model, self.frame_skip, self.device, backend_options)

    def _full_state(self, qpos: Tensor, qvel: Tensor) -> Tensor:
        """``[qpos, qvel, sensordata]`` ``[state_dim]`` of ``qpos [nq]``, ``qvel [nv]`` (sensors by ``mj_forward``).

        On one scratch ``MjData``, reset first (``mj_resetData``, which is how a new ``MjData``
        starts), so the sensors are those of a new ``MjData`` whatever was computed on it before
        (tested bit for bit). Building an ``MjData`` per call cost ~0.5 ms, as much as ~70 hopper
        physics steps, at every control step of an MPC (which sets ``initial_state`` each time).
        """
        mujoco = import_mujoco()
        with self._scratch_lock:  # one model may be shared by threads (see the class docstring)
            data = self._scratch
            mujoco.mj_resetData(self.mj_model, data)
            data.qpos[:], data.qvel[:] = qpos.numpy(), qvel.numpy()
            mujoco.mj_forward(self.mj_model, data)
            sens = torch.from_numpy(data.sensordata.copy())
        return torch.cat([qpos, qvel, sens]).to(self.device, self.dtype)

    @property
    def initial_state(self) -> Tensor:
        """``[state_dim]`` the state ``[qpos, qvel, sensordata]`` every rollout starts from."""
        return self._initial_state

    @initial_state.setter
    def initial_state(self, state: Tensor) -> None:
        """Start the rollouts from ``state``, a ``[state_dim]`` or ``[nq + nv]`` tensor (sensor part ignored)."""
        if not isinstance(state, Tensor):
            state = torch.as_tensor(state)
        if state.dim() != 1 or state.shape[0] not in (self.state_dim, self.nq + self.nv):
            raise ValueError(
                f"initial_state must have shape [{self.state_dim}] (state_dim) or [{self.nq + self.nv}] (nq + nv), "
                f"got {tuple(state.shape)}"
            )
        state = state.detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(state[: self.nq + self.nv]).all()):
            raise ValueError("initial_state must be finite")
        qpos, qvel = state[: self.nq].clone(), state[self.nq : self.nq + self.nv].clone()
        self._initial_state = self._full_state(qpos, qvel)
        self.qpos0, self.qvel0 = qpos, qvel

    def __repr__(self) -> str:
        return (
            f"MujocoModel(task={self.task.name!r}, backend={self.backend_name!r}, device={str(self.device)!r}, "
            f"horizon={self.horizon}, action_dim={self.action_dim}, state_dim={self.state_dim})"
        )

    def controls(self, actions: Tensor) -> Tensor:
        """Actuator controls of actions: ``[..., nu] -> [..., nu]``.

        Brax's mapping, which the authors' tasks use: the action (clipped to ``[-1, 1]``, the
        action bounds) is clipped to each actuator's ``ctrlrange``, not scaled onto it.
        """
        return torch.minimum(torch.maximum(actions.clamp(-1.0, 1.0), self._ctrl_low), self._ctrl_high)

    def _check_actions(self, actions: Tensor) -> None:
        """Reject what the simulator must never see, before anything reaches native code."""
        if not isinstance(actions, Tensor):
            hint = " (torch.as_tensor converts an array)" if hasattr(actions, "__array__") else ""
            raise TypeError(f"actions must be a torch.Tensor{hint}, got {type(actions).__name__}")
        if actions.dim() < 3 or actions.shape[-1] != self.nu:
            raise ValueError(
                f"actions must have shape [..., n, H, {self.nu}] ([..., n, H, nu]), got {tuple(actions.shape)}"
            )
        if actions.shape[-2] < 1:
            raise ValueError(f"actions must have at least one control step (H >= 1), got shape {tuple(actions.shape)}")
        if not actions.is_floating_point():
            raise TypeError(f"actions must be real floating point, got {actions.dtype}")
        if actions.device != self.device:
            raise ValueError(f"actions are on {actions.device}, the model on {self.device}")

    def rollout(self, actions: Tensor) -> Trajectory:
        """Simulate ``actions [..., n, H, nu]`` from the initial state.

        Any real floating dtype is accepted (computed in the model's dtype). A sample with a
        non-finite action (NaN, inf) is infeasible: the simulator sees zeros in its place, and its
        states and rewards are 0. An empty batch (``n = 0`` or an empty leading dimension) gives
        empty tensors of the right shapes without calling the simulator.

        Returns:
            ``Trajectory(states [..., n, H, state_dim], rewards [..., n, H], feasible [..., n])`` on
            the model's device, in the model's dtype.

        Raises:
            TypeError: ``actions`` is not a tensor, or not of a real floating dtype.
            ValueError: a shape other than ``[..., n, H, nu]`` with ``H >= 1``, or a tensor on
                another device than the model's.
        """
        self._check_actions(actions)
        lead, horizon = actions.shape[:-2], actions.shape[-2]
        if lead.numel() == 0:  # nothing to simulate (MuJoCo's C rollout crashes on an empty batch)
            empty = dict(dtype=self.dtype, device=self.device)
            return Trajectory(
                states=torch.empty(*lead, horizon, self.state_dim, **empty),
                rewards=torch.empty(*lead, horizon, **empty),
                feasible=torch.empty(lead, dtype=torch.bool, device=self.device),
            )
        qpos0, qvel0 = self.qpos0, self.qvel0  # read once: the simulation and the reward see one start
        flat = actions.reshape(-1, horizon, self.nu).to(self.dtype)
        # a non-finite action makes its sample infeasible; the simulator sees zeros instead
        finite = torch.isfinite(flat).flatten(1).all(-1)
        if not bool(finite.all()):
            flat = torch.where(finite[:, None, None], flat, torch.zeros((), dtype=flat.dtype, device=flat.device))
        qpos, qvel, sens = self.backend(qpos0, qvel0, self.controls(flat))
        qpos, qvel, sens = (x.to(self.device, self.dtype) for x in (qpos, qvel, sens))
        states = torch.cat([qpos, qvel, sens], dim=-1)  # [N, H, nx]
        bad = diverged(states)
        if bool(bad.any()):
            keep = ~bad[:, None, None]
            states = torch.where(keep, states, torch.zeros((), dtype=states.dtype, device=states.device))
            qpos, qvel, sens = (states[..., s] for s in self.state_slices.values())
        sensors = {name: sens[..., s] for name, s in self.sensor_slices.items()}
        previous = {}
        if self.task.reward_reads_previous:  # the state at the start of each control step
            previous = dict(previous_qpos=step_starts(qpos0, qpos), previous_qvel=step_starts(qvel0, qvel))
        rewards = self.task.step_reward(qpos, qvel, sensors, flat.clamp(-1.0, 1.0), **previous)
        feasible = finite & ~bad & torch.isfinite(rewards).all(-1)
        rewards = torch.where(feasible[:, None], rewards, torch.zeros((), dtype=rewards.dtype, device=rewards.device))
        return Trajectory(
            states=states.reshape(*lead, horizon, self.state_dim),
            rewards=rewards.reshape(*lead, horizon),
            feasible=feasible.reshape(lead),
        )


def make_mujoco(task: str | Task, backend: str = "mujoco", device: str | torch.device = "cpu", **options) -> MujocoModel:
    """``dynamics.make`` factory: ``MujocoModel(task, backend, device, **options)``."""
    return MujocoModel(task, backend=backend, device=device, **options)


def task_factory(name: str):
    """A ``dynamics.make`` factory for the task ``name``: ``factory(backend=..., device=..., **options)``."""

    def factory(backend: str = "mujoco", device: str | torch.device = "cpu", **options) -> MujocoModel:
        return MujocoModel(name, backend=backend, device=device, **options)

    factory.__name__ = f"make_{name}"
    factory.__doc__ = f"Build the {name!r} task as a [`MujocoModel`][dynamics.model.MujocoModel] (``backend``: mujoco, warp or mjx)."
    return factory


make_hopper = task_factory("hopper")
make_walker2d = task_factory("walker2d")
make_half_cheetah = task_factory("half_cheetah")
make_ant = task_factory("ant")
make_humanoid_standup = task_factory("humanoid_standup")
make_humanoid_run = task_factory("humanoid_run")

