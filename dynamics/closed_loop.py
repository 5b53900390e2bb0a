"""Closed-loop control of the MuJoCo tasks: a simulated "real" system, a coarse planner model, pushes.

* [`MujocoSystem`][dynamics.closed_loop.MujocoSystem]: the system a controller acts on, ``mj_step`` on its own ``MjModel`` /
  ``MjData`` (never the planner's), with the task's reward for every control step;
* [`coarse_task`][dynamics.closed_loop.coarse_task]: the task with a ``factor`` times larger physics timestep and ``factor`` times
  fewer physics steps per control step (the same control step), a cheaper model for the planner;
* [`push_schedule`][dynamics.closed_loop.push_schedule]: random velocity kicks on the root joints, the same for every controller;
* [`add_mpc_arguments`][dynamics.closed_loop.add_mpc_arguments] / [`run_mpc`][dynamics.closed_loop.run_mpc]: the ``torch-mbd mpc TASK`` command, which runs the
  closed loop ([`torch_mbd.async_mpc.run_closed_loop`][torch_mbd.async_mpc.run_closed_loop]) on the wall clock and prints the
  real-time factor, the planner iterations per control step and the closed-loop reward.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys

import torch
from torch import Tensor

from torch_mbd.checks import check_int

from .tasks import Task, get_task, import_mujoco

# dofs a push kicks (the torso's root joints: x, z, pitch) and the kick's standard deviation
PUSHES = {"hopper": dict(dofs=[0, 1, 2], kick=1.0), "walker2d": dict(dofs=[0, 1, 2], kick=1.0)}

# ``torch-mbd mpc``'s controller (16 samples x 1 diffusion step, keep-best sample, horizon 20, on
# the coarse planner model): see docs/mpc.md, "Real time".
MPC_DEFAULTS = dict(samples=16, diffusion_steps=1, horizon=20, keep_best="sample", coarse=2, initial_steps=30)


class MujocoSystem:
    """The "real" system: ``mj_step`` on its own copy of a task's model, one control step at a time.

    Args:
        planner: a [`MujocoModel`][dynamics.model.MujocoModel] of the task (its task, action mapping and
            initial state are used; its simulator never is).
        mass_scale: factor on the mass and inertia of ``body`` (a model mismatch the planner does not know).
        body: the body made heavier.
        task: the task simulated, default ``planner.task`` (give the fine task when the planner
            plans on [`coarse_task`][dynamics.closed_loop.coarse_task]).

    Attributes:
        model, data: the ``mujoco.MjModel`` and ``mujoco.MjData`` stepped (e.g. for a viewer).
        control_dt: simulated seconds per control step.
    """

    def __init__(self, planner, mass_scale: float = 1.0, body: str = "torso", task: Task | None = None):
        mujoco = import_mujoco()
        self.mujoco, self.planner = mujoco, planner
        self.task = planner.task if task is None else task
        self.model = self.task.compile()
        if mass_scale != 1.0:
            b = self.model.body(body).id
            self.model.body_mass[b] *= mass_scale
            self.model.body_inertia[b] *= mass_scale
        self.frame_skip = self.task.frame_skip
        self.control_dt = float(self.model.opt.timestep) * self.frame_skip
        self.data = mujoco.MjData(self.model)
        self.data.qpos[:] = planner.qpos0.cpu().numpy()
        self.data.qvel[:] = planner.qvel0.cpu().numpy()
        mujoco.mj_forward(self.model, self.data)

    def state(self) -> Tensor:
        """``[nq + nv]`` float64: ``qpos`` and ``qvel`` now."""
        return torch.cat([torch.from_numpy(self.data.qpos.copy()), torch.from_numpy(self.data.qvel.copy())])

    def push(self, kick: Tensor, dofs: list[int]) -> None:
        """Add ``kick [len(dofs)]`` to the velocities of ``dofs``."""
        self.data.qvel[dofs] += kick.detach().cpu().double().numpy()

    def step(self, action: Tensor) -> float:
        """Apply ``action [nu]`` in ``[-1, 1]`` for one control step; return the task's step reward
        (``-inf`` when it is not finite)."""
        action = action.detach().to("cpu", torch.float64).clamp(-1.0, 1.0)
        ctrl = self.planner.controls(action.to(self.planner.device, self.planner.dtype))
        self.data.ctrl[:] = ctrl.cpu().double().numpy()
        before = dict(  # the state at the start of the step, for rewards that read it (half-cheetah, ant)
            previous_qpos=torch.from_numpy(self.data.qpos.copy())[None],
            previous_qvel=torch.from_numpy(self.data.qvel.copy())[None],
        )
        for _ in range(self.frame_skip):
            self.mujoco.mj_step(self.model, self.data)
        qpos = torch.from_numpy(self.data.qpos.copy())[None]
        qvel = torch.from_numpy(self.data.qvel.copy())[None]
        sens = torch.from_numpy(self.data.sensordata.copy())[None]
        sensors = {name: sens[..., s] for name, s in self.planner.sensor_slices.items()}
        reward = float(self.task.step_reward(qpos, qvel, sensors, action[None], **before)[0])
        return reward if math.isfinite(reward) else -math.inf


def coarse_task(task: str | Task, factor: int = 2) -> Task:
    """``task`` with a ``factor`` times larger timestep and ``factor`` times fewer physics steps per
    control step: the same control step for about ``1 / factor`` of the simulation cost.

    A planner model, not a system: the coarser integration differs from the task's own, which
    a closed loop corrects at every step (docs/mpc.md measures what it costs in reward).

    Raises:
        ValueError: ``factor`` not an integer ``>= 1`` dividing the task's ``frame_skip``.
    """
    task = get_task(task)
    factor = check_int("factor", factor, minimum=1)
    if task.frame_skip % factor:
        raise ValueError(f"factor must divide the task's frame_skip ({task.frame_skip}), got {factor}")
    if factor == 1:
        return task
    build = task.build_spec

    def build_spec():
        spec = build()
        spec.option.timestep = spec.option.timestep * factor
        return spec

    return dataclasses.replace(task, build_spec=build_spec, frame_skip=task.frame_skip // factor)


def push_schedule(task: str, num_steps: int, every: int, seed: int) -> dict[int, tuple[Tensor, list[int]]]:
    """``{control step t: (kick, dofs)}``, a kick before step ``t`` for ``t = every // 2, every // 2 +
    every, ...``: random velocity kicks on the root joints, the same for every controller given
    the same ``seed``. ``every = 0``: none."""
    every = check_int("every", every, minimum=0)
    if every == 0:
        return {}
    if task not in PUSHES:
        raise ValueError(f"pushes are defined for {sorted(PUSHES)}, got {task!r}")
    spec = PUSHES[task]
    gen = torch.Generator().manual_seed(seed)
    dofs = spec["dofs"]
    return {
        t: (spec["kick"] * torch.randn(len(dofs), generator=gen, dtype=torch.float64), dofs)
        for t in range(max(1, every // 2), num_steps, every)
    }


# ----------------------------------------------------------------------------- torch-mbd mpc
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def add_mpc_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``torch-mbd mpc TASK``."""
    d = MPC_DEFAULTS
    p.add_argument("task", metavar="TASK", help="a MuJoCo task ('torch-mbd tasks' lists them), e.g. hopper, walker2d")
    p.add_argument("--mode", choices=("async", "sync", "simulated"), default="async",
                   help="async (default): the planner runs in its own thread while the system steps on the wall clock; "
                   "sync: plan, then step (the system waits for the planner); simulated: the async schedule of a "
                   "planner making --plans-per-step plans per control step, on a simulated clock (deterministic)")
    p.add_argument("--plans-per-step", type=_positive_float, default=None, metavar="R",
                   help="with --mode simulated: the planner's plans per control step (default 2)")
    p.add_argument("--steps", type=_positive_int, default=None, metavar="T", help="control steps (default: the task's horizon)")
    p.add_argument("--speed", type=_positive_float, default=1.0, metavar="X",
                   help="the system runs at most X times real time (default 1: real time)")
    p.add_argument("--unpaced", action="store_true",
                   help="with --mode sync: the system never waits for the clock, so the real-time factor is the "
                   "planner's own rate over the control rate")
    p.add_argument("--samples", type=_positive_int, default=d["samples"], metavar="N", help=f"rollouts per diffusion step (default {d['samples']})")
    p.add_argument("--diffusion-steps", type=_positive_int, default=d["diffusion_steps"], metavar="K",
                   help=f"diffusion steps per planner iteration (default {d['diffusion_steps']})")
    p.add_argument("--horizon", type=_positive_int, default=d["horizon"], metavar="H", help=f"planning horizon in control steps (default {d['horizon']})")
    p.add_argument("--knots", type=_positive_int, default=None, metavar="K", help="plan K cubic knots per action dimension")
    p.add_argument("--keep-best", choices=("off", "on", "sample"), default=d["keep_best"],
                   help="off: the diffusion's estimate; on: the best sample when it beats it; sample (default): always the best sample")
    p.add_argument("--coarse", type=_positive_int, default=d["coarse"], metavar="F",
                   help=f"the planner simulates with an F times larger timestep (default {d['coarse']}; 1: the task's own physics)")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N", help="MuJoCo rollout threads of the planner (default: every CPU)")
    p.add_argument("--push-every", type=int, default=0, metavar="N", help="a random push on the torso every N control steps (default 0: none)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the task's initial state, the sampler and the pushes")
    p.add_argument("--viewer", action="store_true", help="watch the system in MuJoCo's passive viewer (needs a display)")


def display_available() -> str | None:
    """``None`` when a window can be opened here, else the reason (one line)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display: neither DISPLAY nor WAYLAND_DISPLAY is set (run without --viewer for a headless run)"
    return None


class ViewerUnavailable(OSError):
    """``--viewer`` where no window can be opened (no display, or MuJoCo's viewer failed to start)."""


def run_mpc(args, out=print) -> int:
    """``torch-mbd mpc TASK``: the closed loop on the wall clock; returns the exit status.

    Raises:
        ValueError: a task that is not a MuJoCo task, a bad option value.
        ViewerUnavailable: ``--viewer`` without a display (checked before anything is built).
    """
    from torch_mbd import MPC
    from torch_mbd.async_mpc import run_closed_loop

    from .model import MujocoModel
    from .tasks import TASKS

    if args.task not in TASKS:
        raise ValueError(f"torch-mbd mpc runs the MuJoCo tasks ({', '.join(sorted(TASKS))}), got {args.task!r}")
    if args.viewer:
        reason = display_available()
        if reason is not None:
            raise ViewerUnavailable(f"--viewer: {reason}")
    if args.push_every < 0:
        raise ValueError(f"--push-every must be >= 0, got {args.push_every}")
    if args.unpaced and args.mode != "sync":
        raise ValueError("--unpaced goes with --mode sync: an unpaced asynchronous system would outrun any planner")
    if args.plans_per_step is not None and args.mode != "simulated":
        raise ValueError("--plans-per-step goes with --mode simulated")
    task = get_task(args.task)
    options = {} if args.threads is None else dict(nthread=args.threads)
    planner = MujocoModel(coarse_task(task, args.coarse), seed=args.seed, **options)
    system = MujocoSystem(planner, task=task)
    num_steps = args.steps or task.horizon
    keep_best = {"off": False, "on": True, "sample": "sample"}[args.keep_best]
    controller = MPC(
        planner, horizon=args.horizon, num_samples=args.samples, diffusion_steps=args.diffusion_steps,
        num_knots=args.knots, keep_best=keep_best, initial_steps=MPC_DEFAULTS["initial_steps"], seed=args.seed,
    )
    pushes = push_schedule(args.task, num_steps, args.push_every, args.seed)

    def disturb(t, sys_):
        if t in pushes:
            sys_.push(*pushes[t])

    viewer, on_step = None, None
    if args.viewer:
        import mujoco.viewer

        try:
            viewer = mujoco.viewer.launch_passive(system.model, system.data)
        except Exception as err:  # no OpenGL context, macOS without mjpython, ...
            raise ViewerUnavailable(f"--viewer: MuJoCo's viewer could not open: {err}") from None

        def on_step(t, sys_):
            with viewer.lock():
                viewer.sync()

    try:
        result = run_closed_loop(controller, system, num_steps, system.control_dt, mode=args.mode,
                                 speed=None if args.unpaced or args.mode == "simulated" else args.speed,
                                 plans_per_step=(args.plans_per_step or 2.0) if args.mode == "simulated" else None,
                                 disturb=disturb if pushes else None, on_step=on_step)
    finally:
        if viewer is not None:
            viewer.close()
    out(f"{args.task}: {num_steps} control steps of {system.control_dt:g} s, {args.mode} MPC "
        f"({args.samples} samples x {args.diffusion_steps} diffusion steps, horizon {args.horizon}, "
        f"planner timestep x{args.coarse}), first plan {result.startup_time:.2f} s")
    if args.mode == "simulated":
        out(f"simulated clock: {result.sim_time:.2f} s simulated in {result.wall_time:.2f} s of computing (no real-time factor)")
    else:
        out(f"real-time factor {result.realtime_factor:.2f} ({result.sim_time:.2f} s simulated in {result.wall_time:.2f} s)")
    out(f"planner iterations per control step {result.iterations_per_step:.2f} (plans {result.plan_age:.2f} steps old on average)")
    out(f"closed-loop reward {result.reward:.4f} (mean per control step)")
    return 0
