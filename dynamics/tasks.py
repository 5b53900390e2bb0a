"""MuJoCo tasks of the MBD paper, as the authors defined them, independent of the simulator backend.

A [`Task`][dynamics.tasks.Task] is an MJCF model (built through ``mujoco.MjSpec``, with the sensors its
reward reads), a control ``frame_skip``, a default horizon, an initial state (with the
authors' reset noise, drawn per seed), and a reward written in torch over ``qpos``, ``qvel``,
the named sensor readings and the action. Actions live in ``[-1, 1]`` and reach the actuators
clipped to their ``ctrlrange`` (as Brax does: no scaling, so a ``ctrlrange`` of ``+-0.4``
saturates for ``|a| > 0.4``). The same reward code serves the CPU, MuJoCo Warp and MJX backends.

The paper's tasks follow the authors' code (LeCAR-Lab/model-based-diffusion, ``mbd/envs``;
half-cheetah and ant are Brax's own environments with the ``positional`` pipeline). Each
model is gymnasium's MJCF (push-T: ``assets/push_t.xml``, written for this project) with the
authors' parameters applied through ``mujoco.MjSpec``: integrator, timestep, solver iterations,
gears, which geoms touch the floor, the initial pose. ``docs/mujoco.md`` lists every parameter
beside the authors' value and its source.

==================  ==============  ===  ========================================================
name                steps x dt (s)  H    reward per control step
==================  ==============  ===  ========================================================
hopper              20 x 0.002      50   ``x - 0.5 clip(|z - 1.0|, -1, 1)``
walker2d            20 x 0.002      50   ``x - 0.5 clip(|z - 1.1|, -1, 1)``
half_cheetah        16 x 0.003125   50   ``dx / dt - 0.1 |a|^2``
ant                 10 x 0.005      50   ``dx / dt + 1 - 0.5 |a|^2``
humanoid_standup    14 x 0.003      50   ``1.5 - clip(|z - 1.3|, -2, 1) - 0.1 |x| - 0.1 |y|``
humanoid_run        14 x 0.003      50   ``x - clip(|z - 1.3|, -1, 1) - 0.1 |y|``
push_t              5 x 0.01        40   ``1 - (|p_goal - p_T| + |theta_goal - theta_T| / pi
                                         + max(|p_pusher - p_T| - 0.2, 0))``
==================  ==============  ===  ========================================================

``x, y, z`` are the torso's world position after the control step's last physics substep
(read from ``qpos``: the root joints move the torso body, so ``qpos`` holds it exactly) and
``dx / dt`` its forward displacement over the control step divided by the control step's
duration (Brax's ``(x_after - x_before) / dt``). Rewards that need the state at the start of
the control step (the velocities of half-cheetah and ant, humanoid jogging's pre-step reward)
set ``Task.reward_reads_previous`` and take it as two more arguments. The ``torso_pos`` sensor
kept in the state lags ``qpos`` by one physics substep (MuJoCo computes sensors before
integrating), identically on every backend.

The authors' MBD temperature and number of diffusion steps are the task's ``temperature`` and
``num_steps`` (the paper's Table 4 "Sample Number" column is the authors' number of diffusion
steps; their code draws ``paper_num_samples`` = 2048 samples per step, humanoid running 8192).
``num_samples`` is a smaller default for a CPU.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import Tensor

from torch_mbd.checks import check_bool, check_int, check_positive

ASSETS = Path(__file__).resolve().parent / "assets"

# A reward: (qpos [..., nq], qvel [..., nv], sensors {name: [..., dim]}, action [..., nu]) -> [...];
# with ``Task.reward_reads_previous`` two more arguments: (previous_qpos [..., nq], previous_qvel [..., nv]),
# the state at the start of the control step.
RewardFn = Callable[..., Tensor]

VELOCITY_NOISE = ("uniform", "normal")


def import_mujoco():
    """Import ``mujoco``, checking its OpenGL backend (``MUJOCO_GL``) first.

    ``MUJOCO_GL`` is read when ``mujoco`` is first imported, and an unusable value would break
    that import. [`dynamics.gl.choose_gl_backend`][dynamics.gl.choose_gl_backend] runs first: unset, it becomes ``egl`` on
    machines with an NVIDIA device (and libEGL), ``osmesa`` where the OSMesa library is
    installed, or stays unset; a value whose library is missing (or that MuJoCo does not know)
    is removed with a warning naming the package to install. Simulation needs no OpenGL, only
    [`dynamics.render.render`][dynamics.render.render] does, and it says what to install.

    Raises:
        ImportError: naming the pip extra when ``mujoco`` is not installed.
    """
    from .gl import choose_gl_backend

    choose_gl_backend()
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
            With ``reward_reads_previous`` it takes ``previous_qpos [..., nq], previous_qvel [..., nv]``
            (the state at the start of the control step) as two more arguments.
        frame_skip: physics steps per control step (the control is held for all of them).
        horizon: default number of control steps ``H``.
        reset_noise_scale: scale of the reset noise [`initial_state`][dynamics.tasks.Task.initial_state] adds to ``qpos`` (uniform,
            half-width) and ``qvel`` (see ``velocity_noise``); 0 for none.
        velocity_noise: ``"uniform"`` (half-width ``reset_noise_scale``) or ``"normal"`` (standard
            deviation ``reset_noise_scale``, Brax's half-cheetah and ant) noise on ``qvel``.
        init_qpos: ``[nq]`` initial ``qpos``; ``None`` for the model's ``qpos0``.
        randomize: ``randomize(qpos [nq], qvel [nv], generator)``, changes the initial state in
            place from the seeded generator whatever the noise (push-T draws its goal); or ``None``.
        reward_reads_previous: whether ``reward`` takes the state at the start of the control step.
        temperature: the authors' MBD temperature ``lambda`` (the paper's Table 4).
        num_samples: a default number of samples per diffusion step sized for a CPU: 128 on every
            task, the CPU budget of ``benchmarks/trajopt.py`` (Table 4's "Sample Number" column is the
            number of diffusion steps, ``num_steps``, not of samples).
        num_steps: the authors' number of diffusion steps (Table 4's "Sample Number" column).
        paper_num_samples: the authors' samples per diffusion step (2048; humanoid running 8192).
        options: task parameters shown in ``repr`` (e.g. push-T's goal).
    """

    name: str
    build_spec: Callable[[], object] = field(repr=False)
    reward: RewardFn = field(repr=False)
    frame_skip: int
    horizon: int
    reset_noise_scale: float = 5e-3
    velocity_noise: str = "uniform"
    init_qpos: tuple | None = None
    randomize: Callable | None = field(default=None, repr=False)
    reward_reads_previous: bool = False
    temperature: float = 0.1
    num_samples: int = 128
    num_steps: int = 100
    paper_num_samples: int = 2048
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        # NumPy and 0-dim tensor numbers are stored as Python ones (the dataclass is frozen)
        for attr in ("frame_skip", "horizon", "num_samples", "num_steps", "paper_num_samples"):
            object.__setattr__(self, attr, check_int(f"Task {attr}", getattr(self, attr), minimum=1))
        object.__setattr__(self, "temperature", check_positive("Task temperature", self.temperature))
        check_positive("Task reset_noise_scale", self.reset_noise_scale, allow_zero=True)
        if self.velocity_noise not in VELOCITY_NOISE:
            raise ValueError(f"Task velocity_noise must be one of {VELOCITY_NOISE}, got {self.velocity_noise!r}")
        object.__setattr__(self, "reward_reads_previous", check_bool("Task reward_reads_previous", self.reward_reads_previous))
        if not callable(self.build_spec) or not callable(self.reward):
            raise TypeError("Task build_spec and reward must be callables")
        if self.randomize is not None and not callable(self.randomize):
            raise TypeError("Task randomize must be a callable or None")

    def compile(self):
        """The compiled ``mujoco.MjModel``."""
        with warnings.catch_warnings():  # gymnasium's humanoidstandup.xml uses a deprecated attribute
            warnings.filterwarnings("ignore", message=".*settotalmass.*")
            return self.build_spec().compile()

    @property
    def control_dt(self) -> float:
        """Seconds per control step, ``timestep * frame_skip`` (builds the spec, compiles nothing)."""
        return float(self.build_spec().option.timestep) * self.frame_skip

    def step_reward(
        self,
        qpos: Tensor,
        qvel: Tensor,
        sensors: Mapping[str, Tensor],
        action: Tensor,
        previous_qpos: Tensor | None = None,
        previous_qvel: Tensor | None = None,
    ) -> Tensor:
        """The reward of control steps ``[...]``: the state after each step, its action and, for
        rewards that read it, the state before (``previous_qpos [..., nq]``, ``previous_qvel [..., nv]``).

        Raises:
            ValueError: when the reward reads the previous state and it is not given.
        """
        if not self.reward_reads_previous:
            return self.reward(qpos, qvel, sensors, action)
        if previous_qpos is None or previous_qvel is None:
            raise ValueError(
                f"the {self.name!r} reward reads the state at the start of the control step: "
                "pass previous_qpos and previous_qvel"
            )
        return self.reward(qpos, qvel, sensors, action, previous_qpos, previous_qvel)

    def initial_state(self, model, noise: float = 0.0, seed: int | None = None) -> tuple[Tensor, Tensor]:
        """The initial ``(qpos [nq], qvel [nv])`` (float64), with the task's reset noise.

        Args:
            model: this task's ``mujoco.MjModel`` (from [`compile`][dynamics.tasks.Task.compile]).
            noise: the noise as a multiple of ``reset_noise_scale`` (``1`` = the authors' noise,
                ``0`` = the nominal state). ``qpos`` gets uniform noise of half-width
                ``noise * reset_noise_scale``; ``qvel`` uniform noise of the same half-width, or
                normal noise of that standard deviation (``velocity_noise="normal"``).
            seed: seed of the noise generator (``None`` draws one from the global RNG); it also
                drives ``randomize`` (push-T's goal).
        """
        noise = check_positive("noise", noise, allow_zero=True)
        if self.init_qpos is None:
            qpos = torch.as_tensor(model.qpos0, dtype=torch.float64).clone()
        else:
            qpos = torch.tensor(self.init_qpos, dtype=torch.float64)
            if qpos.shape != (model.nq,):
                raise ValueError(f"Task init_qpos must have {model.nq} (nq) entries, got {tuple(qpos.shape)}")
        qvel = torch.zeros(model.nv, dtype=torch.float64)
        gen = torch.Generator()
        gen.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, ())))
        width = noise * self.reset_noise_scale
        if width > 0:
            qpos += width * (2 * torch.rand(model.nq, generator=gen, dtype=torch.float64) - 1)
            if self.velocity_noise == "normal":
                qvel += width * torch.randn(model.nv, generator=gen, dtype=torch.float64)
            else:
                qvel += width * (2 * torch.rand(model.nv, generator=gen, dtype=torch.float64) - 1)
        if self.randomize is not None:
            self.randomize(qpos, qvel, gen)
        return qpos, qvel


def control_limits(model) -> tuple[Tensor, Tensor]:
    """``(low [nu], high [nu])``: each actuator's ``ctrlrange``; ``-inf, inf`` where it has none.

    An action reaches the actuators as ``ctrl = clip(a, low, high)`` (Brax's mapping).
    """
    ctrlrange = torch.as_tensor(model.actuator_ctrlrange, dtype=torch.float64).reshape(-1, 2)
    limited = torch.as_tensor(model.actuator_ctrllimited, dtype=torch.bool).reshape(-1)
    inf = torch.tensor(math.inf, dtype=torch.float64)
    return torch.where(limited, ctrlrange[:, 0], -inf), torch.where(limited, ctrlrange[:, 1], inf)


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


def _brax_physics(spec, timestep: float, iterations: int) -> None:
    """The authors' simulation options: semi-implicit Euler, ``timestep``, ``iterations`` solver iterations."""
    mujoco = import_mujoco()
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_EULER
    spec.option.timestep = timestep
    spec.option.iterations = iterations


def _floor_contacts_only(spec, colliding: tuple[str, ...], margin: float | None = None) -> None:
    """Only the geoms named in ``colliding`` touch the floor (and nothing touches anything else).

    As the authors' (Brax) models: every geom ``contype = conaffinity = 0`` and ``condim = 3``,
    the named ones ``contype = 1``, the floor ``conaffinity = 1``. ``margin`` (when given) is
    set on every geom.
    """
    names = {g.name for g in spec.geoms}
    missing = sorted(set(colliding) - names)
    if missing:
        raise ValueError(f"model has no geoms {missing}")
    for geom in spec.geoms:
        geom.condim = 3
        geom.contype = 1 if geom.name in colliding else 0
        geom.conaffinity = 1 if geom.name == "floor" else 0
        if margin is not None:
            geom.margin = margin


def _set_gears(spec, gears: Mapping[str, float] | float) -> None:
    """Set each actuator's gear: one value for all, or ``{joint name: gear}`` (every actuator listed)."""
    for act in spec.actuators:
        if isinstance(gears, Mapping):
            if act.target not in gears:
                raise ValueError(f"no gear given for the actuator of joint {act.target!r}")
            act.gear[0] = float(gears[act.target])
        else:
            act.gear[0] = float(gears)


def hopper_spec():
    """gymnasium's ``hopper.xml`` with the authors' (Brax's ``hopper.xml``) physics.

    Semi-implicit Euler at 0.002 s (Brax's XML drops gymnasium's RK4), 4 solver iterations,
    only the foot touches the floor. Gears (200), foot friction (2) and the rest are gymnasium's,
    which equal Brax's; Brax moves the slide joints to the torso and drops ``rootz``'s ``ref``,
    which changes neither the dynamics nor the torso's position (``qpos[1]`` is its height here).
    """
    mujoco = import_mujoco()
    spec = mujoco.MjSpec.from_file(str(gymnasium_asset("hopper.xml")))
    _brax_physics(spec, timestep=0.002, iterations=4)
    _floor_contacts_only(spec, ("foot_geom",))
    _add_body_sensors(spec, "torso")
    return spec


def walker2d_spec():
    """gymnasium's ``walker2d.xml`` with the authors' (Brax's ``walker2d.xml``) physics.

    Semi-implicit Euler at 0.002 s, 4 solver iterations, the torso and both feet touch the
    floor. Gears (100) and foot frictions (0.9 right, 1.9 left) are gymnasium's, equal to Brax's.
    """
    mujoco = import_mujoco()
    spec = mujoco.MjSpec.from_file(str(gymnasium_asset("walker2d.xml")))
    _brax_physics(spec, timestep=0.002, iterations=4)
    _floor_contacts_only(spec, ("torso_geom", "foot_geom", "foot_left_geom"))
    _add_body_sensors(spec, "torso")
    return spec


HALF_CHEETAH_GEARS = {"bthigh": 120, "bshin": 90, "bfoot": 60, "fthigh": 120, "fshin": 100, "ffoot": 100}


def half_cheetah_spec():
    """gymnasium's ``half_cheetah.xml`` as Brax's ``Halfcheetah(backend="positional")``.

    Euler at 0.003125 s (16 steps per 0.05 s control step), 4 solver iterations, gears
    ``[120, 90, 60, 120, 100, 100]``; the head, both thighs and both feet touch the floor.
    """
    mujoco = import_mujoco()
    spec = mujoco.MjSpec.from_file(str(gymnasium_asset("half_cheetah.xml")))
    _brax_physics(spec, timestep=0.003125, iterations=4)
    _floor_contacts_only(spec, ("head", "bthigh", "bfoot", "fthigh", "ffoot"))
    _set_gears(spec, HALF_CHEETAH_GEARS)
    _add_body_sensors(spec, "torso")
    return spec


# the foot spheres Brax's ant.xml adds at the end of each ankle capsule: (ankle geom, foot geom, position)
ANT_FEET = (
    ("left_ankle_geom", "left_foot_geom", (0.4, 0.4, 0.0)),
    ("right_ankle_geom", "right_foot_geom", (-0.4, 0.4, 0.0)),
    ("third_ankle_geom", "third_foot_geom", (-0.4, -0.4, 0.0)),
    ("fourth_ankle_geom", "fourth_foot_geom", (0.4, -0.4, 0.0)),
)
# Brax's ant.xml ``init_qpos``: torso at z = 0.55, hips straight, ankles (knees) bent by 1 rad
ANT_INIT_QPOS = (0.0, 0.0, 0.55, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0)


def ant_spec():
    """gymnasium's ``ant.xml`` as Brax's ``Ant(backend="positional")``.

    Euler at 0.005 s (10 steps per 0.05 s control step), 4 solver iterations, every gear 200, no
    contact margin; Brax's four massless foot spheres (radius 0.08, at the end of each ankle) are
    added and are the only geoms that touch the floor.
    """
    mujoco = import_mujoco()
    spec = mujoco.MjSpec.from_file(str(gymnasium_asset("ant.xml")))
    _brax_physics(spec, timestep=0.005, iterations=4)
    bodies = {g.name: b for b in spec.bodies for g in b.geoms}
    for ankle, foot, pos in ANT_FEET:
        bodies[ankle].add_geom(
            name=foot, type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.08, 0, 0], pos=list(pos), mass=0.0
        )
    _floor_contacts_only(spec, tuple(foot for _, foot, _ in ANT_FEET), margin=0.0)
    _set_gears(spec, 200.0)
    _add_body_sensors(spec, "torso")
    return spec


HUMANOID_ARMS = ("right_shoulder1", "right_shoulder2", "right_elbow", "left_shoulder1", "left_shoulder2", "left_elbow")


AUTHORS_HUMANOID_TIMESTEP = 0.006
"""The authors' humanoid timestep (their ``humanoid*.xml``), 7 of them per control step."""
HUMANOID_TIMESTEP = 0.003
"""Our humanoid_standup / humanoid_run timestep, 14 per control step (the same 0.042 s). At the
authors' 0.006 s MuJoCo's Euler step lets MBD find unphysical motions: on humanoid_run (n = 128,
30 steps, seed 0) the plan's torso reached 25 m/s and 29.6 m in 2.1 s, mean reward 11.86 against
the paper's 2.92; at 0.003 s the same plan reaches 6.4 m, reward 2.23. Brax's ``positional``
pipeline, which the authors used, does not inject energy this way."""


def _authors_humanoid(
    filename: str, colliding: tuple[str, ...], torso_z: float | None = None, timestep: float = HUMANOID_TIMESTEP
):
    """gymnasium's humanoid ``filename`` with the authors' humanoid physics (their ``humanoid*.xml``).

    Euler at ``timestep`` (`HUMANOID_TIMESTEP`; the authors': 0.006 s), 8 solver iterations (MuJoCo's default Newton solver instead of
    gymnasium's PGS), no contact margin, no hip-knee tendons, gear 350 on the abdomen and legs
    and 100 on the arms (``ctrlrange`` stays gymnasium's ``+-0.4``); ``colliding`` geoms touch the floor.
    """
    mujoco = import_mujoco()
    spec = mujoco.MjSpec.from_file(str(gymnasium_asset(filename)))
    _brax_physics(spec, timestep=timestep, iterations=8)
    spec.option.solver = mujoco.mjtSolver.mjSOL_NEWTON
    for tendon in list(spec.tendons):
        spec.delete(tendon)
    _floor_contacts_only(spec, colliding, margin=0.0)
    _set_gears(spec, {act.target: 100.0 if act.target in HUMANOID_ARMS else 350.0 for act in spec.actuators})
    if torso_z is not None:
        spec.body("torso").pos[2] = torso_z
    _add_body_sensors(spec, "torso")
    return spec


HUMANOID_STANDUP_CONTACTS = (
    "torso1", "head", "uwaist", "right_thigh1", "left_thigh1", "right_foot", "left_foot", "right_larm", "left_larm",
)


def humanoid_standup_spec(timestep: float = HUMANOID_TIMESTEP):
    """gymnasium's ``humanoidstandup.xml`` as the authors' ``humanoidstandup.xml``.

    The humanoid physics of `humanoid_run_spec`, lying with its torso at z = 0.15 (gymnasium:
    0.105); the torso, head, upper waist, thighs, feet and lower arms touch the floor.
    """
    return _authors_humanoid("humanoidstandup.xml", HUMANOID_STANDUP_CONTACTS, torso_z=0.15, timestep=timestep)


def humanoid_run_spec(timestep: float = HUMANOID_TIMESTEP):
    """gymnasium's ``humanoid.xml`` as the authors' ``humanoidrun.xml``: only the feet touch the floor."""
    return _authors_humanoid("humanoid.xml", ("right_foot", "left_foot"), timestep=timestep)


def push_t_spec():
    """``assets/push_t.xml`` (pusher, T and the goal marker; see the file's header)."""
    mujoco = import_mujoco()
    return mujoco.MjSpec.from_file(str(ASSETS / "push_t.xml"))


# ----------------------------------------------------------------------------- rewards
def hop_reward(target_height: float) -> RewardFn:
    """``x - 0.5 clip(|z - target_height|, -1, 1)`` of the torso (hopper, walker2d: ``qpos = [x, z, ...]``)."""

    def reward(qpos, qvel, sensors, action):
        return qpos[..., 0] - 0.5 * (qpos[..., 1] - target_height).abs().clamp(-1.0, 1.0)

    return reward


def forward_velocity(qpos: Tensor, previous_qpos: Tensor, control_dt: float) -> Tensor:
    """The torso's ``(x_after - x_before) / dt`` over a control step (``qpos[..., 0]`` = torso x): ``[...]``."""
    return (qpos[..., 0] - previous_qpos[..., 0]) / control_dt


def half_cheetah_reward(control_dt: float) -> RewardFn:
    """``dx / dt - 0.1 |a|^2`` (Brax's half-cheetah, forward and control weights 1 and 0.1)."""

    def reward(qpos, qvel, sensors, action, previous_qpos, previous_qvel):
        return forward_velocity(qpos, previous_qpos, control_dt) - 0.1 * action.square().sum(-1)

    return reward


def ant_reward(control_dt: float) -> RewardFn:
    """``dx / dt + 1 - 0.5 |a|^2`` (Brax's ant: its healthy reward is unconditional when it terminates
    unhealthy episodes, its default, and the authors' planner ignores the termination)."""

    def reward(qpos, qvel, sensors, action, previous_qpos, previous_qvel):
        return forward_velocity(qpos, previous_qpos, control_dt) + 1.0 - 0.5 * action.square().sum(-1)

    return reward


def humanoid_standup_reward(qpos, qvel, sensors, action):
    """``1.5 - clip(|z - 1.3|, -2, 1) - 0.1 |x| - 0.1 |y|`` of the torso (``qpos[..., :3]``, free joint)."""
    return 1.5 - (qpos[..., 2] - 1.3).abs().clamp(-2.0, 1.0) - 0.1 * qpos[..., 0].abs() - 0.1 * qpos[..., 1].abs()


def humanoid_run_reward(qpos, qvel, sensors, action):
    """``x - clip(|z - 1.3|, -1, 1) - 0.1 |y|`` of the torso (``qpos[..., :3]``, free joint)."""
    return qpos[..., 0] - (qpos[..., 2] - 1.3).abs().clamp(-1.0, 1.0) - 0.1 * qpos[..., 1].abs()


def push_t_reward(qpos, qvel, sensors, action):
    """``1 - (|p_goal - p_T| + |theta_goal - theta_T| / pi + max(|p_pusher - p_T| - 0.2, 0))``.

    ``qpos = [pusher_x, pusher_y, t_x, t_y, t_theta, goal_x, goal_y, goal_theta]`` (the joint
    order of ``push_t.xml``). As the authors', the angle error is not wrapped: the T must turn
    the way to the goal's angle, not the shorter way round.
    """
    pusher, block, theta = qpos[..., 0:2], qpos[..., 2:4], qpos[..., 4]
    goal, goal_theta = qpos[..., 5:7], qpos[..., 7]
    dist = (block - goal).norm(dim=-1)
    angle = (goal_theta - theta).abs() / math.pi
    reach = ((pusher - block).norm(dim=-1) - 0.2).clamp(min=0.0)
    return 1.0 - (dist + angle + reach)


# the authors' goal box: centre (x, y, theta) and half-widths of the uniform draw
PUSH_T_GOAL_CENTER = (-0.4, 0.4, math.pi)
PUSH_T_GOAL_HALF_WIDTH = (0.2, 0.2, math.pi / 4)
# the authors' start: pusher at (0.1, -0.15), the T at the origin with theta = 0
PUSH_T_START = (0.1, -0.15, 0.0, 0.0, 0.0)


def push_t_goal(seed: int | None = None, generator: torch.Generator | None = None) -> tuple[float, float, float]:
    """A push-T goal ``(x, y, theta)``, uniform in the authors' box ``(-0.4, 0.4, pi) + U(+-0.2, +-0.2, +-pi/4)``.

    ``seed=None`` and no ``generator`` give the box's centre; otherwise the draw comes from
    ``generator`` or from a generator seeded with ``seed``.
    """
    if generator is None:
        if seed is None:
            return PUSH_T_GOAL_CENTER
        generator = torch.Generator()
        generator.manual_seed(int(seed))
    u = 2 * torch.rand(3, generator=generator, dtype=torch.float64) - 1
    return tuple(c + w * float(v) for c, w, v in zip(PUSH_T_GOAL_CENTER, PUSH_T_GOAL_HALF_WIDTH, u))


def _draw_push_t_goal(qpos: Tensor, qvel: Tensor, generator: torch.Generator) -> None:
    qpos[5:8] = torch.tensor(push_t_goal(generator=generator), dtype=qpos.dtype)


# ----------------------------------------------------------------------------- the task suite
def hopper() -> Task:
    """Hopper: jump forward; 20 x 0.002 s per control step, horizon 50, reset noise U(+-5e-3)."""
    return Task("hopper", hopper_spec, hop_reward(1.0), frame_skip=20, horizon=50, reset_noise_scale=5e-3)


def walker2d() -> Task:
    """Walker2d: walk forward upright; 20 x 0.002 s per control step, horizon 50, reset noise U(+-5e-3)."""
    return Task("walker2d", walker2d_spec, hop_reward(1.1), frame_skip=20, horizon=50, reset_noise_scale=5e-3)


def half_cheetah() -> Task:
    """Half-cheetah: run forward; 16 x 0.003125 s, horizon 50; noise U(+-0.1) on qpos, 0.1 N(0, 1) on qvel."""
    return Task(
        "half_cheetah", half_cheetah_spec, half_cheetah_reward(16 * 0.003125), frame_skip=16, horizon=50,
        reset_noise_scale=0.1, velocity_noise="normal", reward_reads_previous=True, temperature=0.4,
    )


def ant() -> Task:
    """Ant: run forward; 10 x 0.005 s, horizon 50, knees bent at z = 0.55.

    Reset noise U(+-0.1) on qpos and 0.1 N(0, 1) on qvel.
    """
    return Task(
        "ant", ant_spec, ant_reward(10 * 0.005), frame_skip=10, horizon=50, reset_noise_scale=0.1,
        velocity_noise="normal", init_qpos=ANT_INIT_QPOS, reward_reads_previous=True,
    )


def humanoid_standup() -> Task:
    """Humanoid standup (lying down): stand up; 14 x 0.003 s (`HUMANOID_TIMESTEP`), horizon 50, reset noise U(+-0.01)."""
    return Task(
        "humanoid_standup", humanoid_standup_spec, humanoid_standup_reward, frame_skip=14, horizon=50,
        reset_noise_scale=1e-2,
    )


def humanoid_run() -> Task:
    """Humanoid running: run forward upright; 14 x 0.003 s (`HUMANOID_TIMESTEP`), horizon 50, reset noise U(+-0.01)."""
    return Task(
        "humanoid_run", humanoid_run_spec, humanoid_run_reward, frame_skip=14, horizon=50,
        reset_noise_scale=1e-2, num_steps=300, paper_num_samples=8192,
    )


def push_t(goal: tuple[float, float, float] | None = None, goal_seed: int | None = None) -> Task:
    """Push-T (``assets/push_t.xml``): push the T to the goal pose; 5 x 0.01 s, horizon 40, no reset noise.

    Args:
        goal: a fixed goal ``(x, y, theta)``.
        goal_seed: a fixed goal drawn from this seed (`push_t_goal`).

    With neither, the goal is drawn per model seed (the seed of [`Task.initial_state`][dynamics.tasks.Task.initial_state]), as
    the authors draw it from their reset key; it is part of the state (``qpos[5:8]``).
    """
    if goal is not None and goal_seed is not None:
        raise ValueError("give push_t a goal or a goal_seed, not both")
    if goal_seed is not None:
        goal = push_t_goal(goal_seed)
    if goal is not None:
        goal = tuple(float(v) for v in goal)
        if len(goal) != 3 or not all(math.isfinite(v) for v in goal):
            raise ValueError(f"goal must be three finite numbers (x, y, theta), got {goal!r}")
    return Task(
        "push_t", push_t_spec, push_t_reward, frame_skip=5, horizon=40, reset_noise_scale=0.0,
        init_qpos=PUSH_T_START + (goal if goal is not None else PUSH_T_GOAL_CENTER),
        randomize=_draw_push_t_goal if goal is None else None,
        temperature=0.2, num_steps=200, options={"goal": goal if goal is not None else "per seed"},
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
    """The [`Task`][dynamics.tasks.Task] named ``task`` (options go to its constructor), or ``task`` itself.

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
