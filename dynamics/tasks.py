"""MuJoCo tasks of the MBD paper, independent of the simulator backend that runs them.

A :class:`Task` is an MJCF model (built through ``mujoco.MjSpec``, with the sensors its
reward reads), a control ``frame_skip``, a default horizon, an initial state (with optional
uniform reset noise), an action scaling (actions live in ``[-1, 1]`` and map linearly onto
the actuators' ``ctrlrange``) and a reward written in torch over ``qpos``, ``qvel``, the
named sensor readings and the action. The same reward code serves the CPU, MuJoCo Warp and
MJX backends.

The paper's tasks (appendix A.4.1; rewards as in the official code, torso = the root body):

The MBD temperature and sample count of the paper's Table 4 are the task's ``temperature``
and ``num_samples``: 0.1 and 100 for all but half_cheetah (0.4, 100), humanoid_run (0.1, 300)
and push_t (0.2, 200).

==================  ===========  =======  ===================================================
name                frame_skip   horizon  reward per control step
==================  ===========  =======  ===================================================
hopper              20           50       ``x - 0.5 clip(|z - 1.0|, -1, 1)``
walker2d            20           50       ``x - 0.5 clip(|z - 1.1|, -1, 1)``
half_cheetah        5            50       ``vx - 0.1 |a|^2``
ant                 5            50       ``vx + 1.0 [0.2 <= z <= 1.0] - 0.5 |a|^2``
humanoid_standup    7            50       ``1.5 - clip(|z - 1.3|, -2, 1) - 0.1 |x| - 0.1 |y|``
humanoid_run        7            50       ``x - clip(|z - 1.3|, -1, 1) - 0.1 |y|``
push_t              5            40       ``1 - (|p_goal - p_T| + |theta_goal - theta_T| / pi
                                          + max(|p_pusher - p_T| - 0.2, 0))``
==================  ===========  =======  ===================================================

``x, y, z`` are the torso's world position (a ``framepos`` sensor) and ``vx`` its world
forward velocity (a ``framelinvel`` sensor). MuJoCo computes sensors in ``mj_step``'s
forward pass, before integration, so a reading lags the state it is reported with by one
physics substep; every backend reports it the same way. The locomotion models come from the
installed ``gymnasium`` package; push-T is ``dynamics/assets/push_t.xml``.
"""

from __future__ import annotations

import ctypes.util
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import Tensor

ASSETS = Path(__file__).resolve().parent / "assets"

# A reward: (qpos [..., nq], qvel [..., nv], sensors {name: [..., dim]}, action [..., nu]) -> [...]
RewardFn = Callable[[Tensor, Tensor, Mapping[str, Tensor], Tensor], Tensor]


def import_mujoco():
    """Import ``mujoco``, choosing an offscreen GL backend first when none is set.

    ``MUJOCO_GL`` is read when ``mujoco`` is first imported, so it is set here (to ``egl`` on
    machines with an NVIDIA device, ``osmesa`` where the OSMesa library is installed) unless
    the user already chose one. Without either, it is left unset: simulation needs no OpenGL,
    only :func:`dynamics.render.render` does, and it says what to install.

    Raises:
        ImportError: naming the pip extra when ``mujoco`` is not installed.
    """
    if "MUJOCO_GL" not in os.environ:
        if Path("/dev/nvidia0").exists():
            os.environ["MUJOCO_GL"] = "egl"
        elif ctypes.util.find_library("OSMesa"):
            os.environ["MUJOCO_GL"] = "osmesa"
    try:
        import mujoco
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("MuJoCo tasks need mujoco: pip install 'torch-mbd[mujoco]'") from err
    return mujoco


def gymnasium_asset(filename: str) -> Path:
    """Path of an MJCF file shipped by the installed ``gymnasium`` package.

    Raises:
        ImportError: naming the pip extra when ``gymnasium`` is not installed.
    """
    try:
        import gymnasium
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the locomotion tasks load their MJCF from gymnasium: pip install 'torch-mbd[mujoco]'"
        ) from err
    path = Path(gymnasium.__file__).resolve().parent / "envs" / "mujoco" / "assets" / filename
    if not path.exists():
        raise FileNotFoundError(f"gymnasium has no MJCF file {filename!r} (looked at {path})")
    return path


@dataclass(frozen=True)
class Task:
    """A backend-independent MuJoCo task.

    Attributes:
        name: the task's name.
        build_spec: returns a fresh ``mujoco.MjSpec`` of the model, sensors included.
        reward: ``(qpos [..., nq], qvel [..., nv], sensors, action [..., nu]) -> [...]``, in torch;
            ``sensors`` maps each sensor name to its ``[..., dim]`` reading; ``action`` is in ``[-1, 1]``.
        frame_skip: physics steps per control step (the control is held for all of them).
        horizon: default number of control steps ``H``.
        reset_noise_scale: half-width of the uniform noise :meth:`initial_state` adds when asked.
        temperature: the recommended MBD temperature ``lambda`` (the paper's Table 4).
        num_samples: the recommended samples per diffusion step ``n`` (Table 4).
        options: task parameters shown in ``repr`` (e.g. push-T's goal).
    """

    name: str
    build_spec: Callable[[], object] = field(repr=False)
    reward: RewardFn = field(repr=False)
    frame_skip: int
    horizon: int
    reset_noise_scale: float = 5e-3
    temperature: float = 0.1
    num_samples: int = 100
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        for attr in ("frame_skip", "horizon", "num_samples"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Task {attr} must be an integer >= 1, got {value!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) or not (
            math.isfinite(self.temperature) and self.temperature > 0
        ):
            raise ValueError(f"Task temperature must be a finite number > 0, got {self.temperature!r}")
        if not callable(self.build_spec) or not callable(self.reward):
            raise TypeError("Task build_spec and reward must be callables")

    def compile(self):
        """The compiled ``mujoco.MjModel``."""
        with warnings.catch_warnings():  # gymnasium's humanoidstandup.xml uses a deprecated attribute
            warnings.filterwarnings("ignore", message=".*settotalmass.*")
            return self.build_spec().compile()

    def initial_state(self, model, noise: float = 0.0, seed: int | None = None) -> tuple[Tensor, Tensor]:
        """The initial ``(qpos [nq], qvel [nv])`` (float64), with optional uniform reset noise.

        Args:
            model: this task's ``mujoco.MjModel`` (from :meth:`compile`).
            noise: half-width of the uniform noise added to ``qpos0`` and to the zero
                velocity, as a multiple of ``reset_noise_scale`` (``0`` = the nominal state).
            seed: seed of the noise generator (``None`` draws one from the global RNG).
        """
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        qpos = torch.as_tensor(model.qpos0, dtype=torch.float64).clone()
        qvel = torch.zeros(model.nv, dtype=torch.float64)
        if noise > 0:
            gen = torch.Generator()
            gen.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, ())))
            width = noise * self.reset_noise_scale
            qpos += width * (2 * torch.rand(model.nq, generator=gen, dtype=torch.float64) - 1)
            qvel += width * (2 * torch.rand(model.nv, generator=gen, dtype=torch.float64) - 1)
        return qpos, qvel


def action_scale(model) -> tuple[Tensor, Tensor]:
    """``(offset [nu], half_range [nu])`` mapping an action in ``[-1, 1]`` to ``ctrl = offset + half_range * a``.

    Actuators without a control range keep ``ctrl = a``.
    """
    ctrlrange = torch.as_tensor(model.actuator_ctrlrange, dtype=torch.float64)
    limited = torch.as_tensor(model.actuator_ctrllimited, dtype=torch.bool)
    offset = torch.where(limited, ctrlrange.mean(-1), torch.zeros(()))
    half = torch.where(limited, (ctrlrange[:, 1] - ctrlrange[:, 0]) / 2, torch.ones(()))
    return offset, half


def sensor_slices(model) -> dict[str, slice]:
    """``{sensor name: slice of sensordata}`` of a compiled model."""
    slices = {}
    for i in range(model.nsensor):
        adr, dim = int(model.sensor_adr[i]), int(model.sensor_dim[i])
        slices[model.sensor(i).name] = slice(adr, adr + dim)
    return slices


# ----------------------------------------------------------------------------- model builders
def _add_body_sensors(spec, body: str, velocity: bool = False) -> None:
    """Add ``{body}_pos`` (framepos) and optionally ``{body}_vel`` (framelinvel), world frame."""
    mujoco = import_mujoco()
    spec.add_sensor(
        name=f"{body}_pos", type=mujoco.mjtSensor.mjSENS_FRAMEPOS, objtype=mujoco.mjtObj.mjOBJ_XBODY, objname=body
    )
    if velocity:
        spec.add_sensor(
            name=f"{body}_vel",
            type=mujoco.mjtSensor.mjSENS_FRAMELINVEL,
            objtype=mujoco.mjtObj.mjOBJ_XBODY,
            objname=body,
        )


def _gym_spec(filename: str, velocity: bool = False) -> Callable[[], object]:
    def build():
        mujoco = import_mujoco()
        spec = mujoco.MjSpec.from_file(str(gymnasium_asset(filename)))
        _add_body_sensors(spec, "torso", velocity=velocity)
        return spec

    return build


def _push_t_spec(goal_xy: tuple[float, float], goal_theta: float) -> Callable[[], object]:
    """``push_t.xml`` plus a translucent, collision-free copy of the T at the goal (for videos)."""

    def build():
        mujoco = import_mujoco()
        spec = mujoco.MjSpec.from_file(str(ASSETS / "push_t.xml"))
        goal = spec.worldbody.add_body(
            name="goal", pos=[goal_xy[0], goal_xy[1], 0.001], quat=[math.cos(goal_theta / 2), 0, 0, math.sin(goal_theta / 2)]
        )
        for geom in spec.body("block").geoms:
            goal.add_geom(
                name=f"goal_{geom.name}", type=geom.type, pos=list(geom.pos), size=[geom.size[0], geom.size[1], 0.001],
                rgba=[0.2, 0.8, 0.3, 0.5], contype=0, conaffinity=0,
            )
        return spec

    return build


# ----------------------------------------------------------------------------- rewards
def hop_reward(target_height: float) -> RewardFn:
    """``x - 0.5 clip(|z - target_height|, -1, 1)`` of the torso (hopper, walker2d)."""

    def reward(qpos, qvel, sensors, action):
        pos = sensors["torso_pos"]
        return pos[..., 0] - 0.5 * (pos[..., 2] - target_height).abs().clamp(-1.0, 1.0)

    return reward


def half_cheetah_reward(qpos, qvel, sensors, action):
    """Forward velocity minus ``0.1 |a|^2``."""
    return sensors["torso_vel"][..., 0] - 0.1 * action.square().sum(-1)


def ant_reward(qpos, qvel, sensors, action):
    """Forward velocity plus 1 while the torso is 0.2-1.0 m high, minus ``0.5 |a|^2``."""
    z = sensors["torso_pos"][..., 2]
    healthy = ((z >= 0.2) & (z <= 1.0)).to(z.dtype)
    return sensors["torso_vel"][..., 0] + healthy - 0.5 * action.square().sum(-1)


def humanoid_standup_reward(qpos, qvel, sensors, action):
    """``1.5 - clip(|z - 1.3|, -2, 1) - 0.1 |x| - 0.1 |y|`` of the torso."""
    pos = sensors["torso_pos"]
    return 1.5 - (pos[..., 2] - 1.3).abs().clamp(-2.0, 1.0) - 0.1 * pos[..., 0].abs() - 0.1 * pos[..., 1].abs()


def humanoid_run_reward(qpos, qvel, sensors, action):
    """``x - clip(|z - 1.3|, -1, 1) - 0.1 |y|`` of the torso."""
    pos = sensors["torso_pos"]
    return pos[..., 0] - (pos[..., 2] - 1.3).abs().clamp(-1.0, 1.0) - 0.1 * pos[..., 1].abs()


def push_t_reward(goal_xy: tuple[float, float], goal_theta: float) -> RewardFn:
    """``1 - (|p_goal - p_T| + |wrap(theta_goal - theta_T)| / pi + max(|p_pusher - p_T| - 0.2, 0))``.

    ``qpos = [pusher_x, pusher_y, t_x, t_y, t_theta]`` (the joint order of ``push_t.xml``).
    The angle error is wrapped to ``[-pi, pi]``, so a full turn counts as no error.
    """

    def reward(qpos, qvel, sensors, action):
        pusher, block, theta = qpos[..., 0:2], qpos[..., 2:4], qpos[..., 4]
        goal = torch.tensor(goal_xy, dtype=qpos.dtype, device=qpos.device)
        dist = (block - goal).norm(dim=-1)
        diff = goal_theta - theta
        angle = torch.atan2(torch.sin(diff), torch.cos(diff)).abs() / math.pi
        reach = ((pusher - block).norm(dim=-1) - 0.2).clamp(min=0.0)
        return 1.0 - (dist + angle + reach)

    return reward


def push_t_goal(seed: int | None = None, distance: float = 0.2, min_angle: float = 0.75 * math.pi):
    """A push-T goal ``((x, y), theta)``: ``distance`` from the start, rotated at least ``min_angle``.

    ``seed=None`` gives the fixed default goal (direction 45 degrees, rotation 0.8 pi); a seed
    draws the direction uniformly and the rotation uniformly in ``[min_angle, pi]`` with a random sign.
    """
    if seed is None:
        direction, theta = 0.25 * math.pi, 0.8 * math.pi
    else:
        gen = torch.Generator()
        gen.manual_seed(int(seed))
        u = torch.rand(3, generator=gen, dtype=torch.float64).tolist()
        direction = 2 * math.pi * u[0]
        theta = (min_angle + (math.pi - min_angle) * u[1]) * (1.0 if u[2] < 0.5 else -1.0)
    return (distance * math.cos(direction), distance * math.sin(direction)), theta


# ----------------------------------------------------------------------------- the task suite
def hopper() -> Task:
    """Hopper (gymnasium's MJCF): jump forward; frame_skip 20, horizon 50."""
    return Task("hopper", _gym_spec("hopper.xml"), hop_reward(1.0), frame_skip=20, horizon=50)


def walker2d() -> Task:
    """Walker2d (gymnasium's MJCF): walk forward upright; frame_skip 20, horizon 50."""
    return Task("walker2d", _gym_spec("walker2d.xml"), hop_reward(1.1), frame_skip=20, horizon=50)


def half_cheetah() -> Task:
    """Half-cheetah (gymnasium's MJCF): run forward; frame_skip 5, horizon 50."""
    return Task(
        "half_cheetah", _gym_spec("half_cheetah.xml", velocity=True), half_cheetah_reward, frame_skip=5, horizon=50,
        reset_noise_scale=0.1, temperature=0.4,
    )


def ant() -> Task:
    """Ant (gymnasium's MJCF): run forward and stay healthy; frame_skip 5, horizon 50."""
    return Task("ant", _gym_spec("ant.xml", velocity=True), ant_reward, frame_skip=5, horizon=50, reset_noise_scale=0.1)


def humanoid_standup() -> Task:
    """Humanoid standup (gymnasium's MJCF, lying down): stand up; frame_skip 7, horizon 50."""
    return Task(
        "humanoid_standup", _gym_spec("humanoidstandup.xml"), humanoid_standup_reward, frame_skip=7, horizon=50,
        reset_noise_scale=1e-2,
    )


def humanoid_run() -> Task:
    """Humanoid running (gymnasium's MJCF): run forward upright; frame_skip 7, horizon 50."""
    return Task(
        "humanoid_run", _gym_spec("humanoid.xml"), humanoid_run_reward, frame_skip=7, horizon=50,
        reset_noise_scale=1e-2, num_samples=300,
    )


def push_t(goal_seed: int | None = None) -> Task:
    """Push-T (``assets/push_t.xml``): push the T to a goal 20 cm away, turned > 135 degrees.

    Args:
        goal_seed: ``None`` for the fixed default goal, or a seed to draw one (:func:`push_t_goal`).
    """
    goal_xy, goal_theta = push_t_goal(goal_seed)
    return Task(
        "push_t", _push_t_spec(goal_xy, goal_theta), push_t_reward(goal_xy, goal_theta), frame_skip=5, horizon=40,
        reset_noise_scale=1e-3, temperature=0.2, num_samples=200,
        options={"goal_xy": goal_xy, "goal_theta": goal_theta},
    )


TASKS: dict[str, Callable[..., Task]] = {
    "hopper": hopper,
    "walker2d": walker2d,
    "half_cheetah": half_cheetah,
    "ant": ant,
    "humanoid_standup": humanoid_standup,
    "humanoid_run": humanoid_run,
    "push_t": push_t,
}


def get_task(task: str | Task, **options) -> Task:
    """The :class:`Task` named ``task`` (options go to its constructor), or ``task`` itself.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if isinstance(task, Task):
        if options:
            raise ValueError(f"task options {sorted(options)} given with an already built Task")
        return task
    if task not in TASKS:
        raise ValueError(f"unknown MuJoCo task {task!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[task](**options)
