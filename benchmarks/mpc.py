"""Closed-loop MPC against replaying the open-loop MBD plan, under perturbations the plan cannot know.

For each task, one open-loop plan is made with :func:`torch_mbd.plan` on the nominal model
(the car: a box beside the straight path to its goal). Then a "real" system (the CPU MuJoCo
simulator, stepped with ``mj_step`` on its own copy of the model; the car: its own dynamics) runs
one episode per condition:

* ``nominal``: nothing unexpected;
* ``pushes``: a random velocity kick every ``--kick-every`` control steps (the first after half
  that): on the torso's root joints (hopper, walker2d), on the block (push-T), on the car's
  heading and speed;
* ``heavier``: model mismatch, the real torso 1.5x as heavy (mass and inertia; push-T: the block
  2x; the car: a motor 0.6x as strong) while the planner keeps the nominal model;

once replaying the open-loop plan and once with :class:`torch_mbd.MPC`, which starts from that
same plan (``reset(plan, warm=True)``) and re-plans from the measured state at every step.
Both see the same kicks. Reported: the mean step reward over the episode (the task's reward,
as the planner scores it), for the car whether it collides and whether it enters the goal
region, and the MPC control rate (control steps per second, all rollouts included) on the
planner's device. Sizes take a default and per-task overrides (``--samples 32 push_t=128``):
a control step of hopper costs ~30x one of push-T on the CPU.

    python -m benchmarks.mpc                                    # the defaults: 8 min on 2 shared cores
    python -m benchmarks.mpc --tasks hopper --device cuda --backend warp   # the planner on a GPU

The real system always runs on the CPU; ``--device``/``--backend`` move only the planner.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._report import figure_path, machine, markdown_table, write_section  # noqa: E402
from dynamics.backends import BACKENDS  # noqa: E402
from dynamics.closed_loop import MujocoSystem  # noqa: E402  (the "real" MuJoCo system)
from torch_mbd import MPC, plan  # noqa: E402
from torch_mbd.progress import progress_bar  # noqa: E402

CAR_BOXES = [[-0.5, 0.35, 0.5, 1.5]]
CONDITIONS = ("nominal", "pushes", "heavier")
TASKS = ("car2d", "hopper", "walker2d", "push_t")
# body made heavier, its mass factor, the dofs a push kicks and the kick's standard deviation
MUJOCO_PERTURBATIONS = {
    "hopper": dict(body="torso", mass=1.5, dofs=[0, 1, 2], kick=1.0),
    "walker2d": dict(body="torso", mass=1.5, dofs=[0, 1, 2], kick=1.0),
    "push_t": dict(body="block", mass=2.0, dofs=[2, 3, 4], kick=0.3),
}


# ----------------------------------------------------------------------------- real systems
class CarSystem:
    """The "real" car: :meth:`dynamics.car.Car2D.step` with its own (possibly weaker) motor."""

    def __init__(self, planner, accel_scale: float = 1.0):
        from dynamics.car import Car2D, segments_hit_boxes

        self.hit_test = segments_hit_boxes
        self.car = Car2D(
            horizon=planner.horizon, dt=planner.dt, wheelbase=planner.wheelbase,
            max_accel=planner.max_accel * accel_scale, max_steer_rate=planner.max_steer_rate,
            max_speed=planner.max_speed, max_steer=planner.max_steer, start=planner.initial_state.cpu().tolist(),
            goal=planner.goal.cpu().tolist(), goal_radius=planner.goal_radius, control_weight=planner.control_weight,
            clearance=planner.clearance, clearance_weight=planner.clearance_weight, obstacles=planner.obstacles.cpu(),
            terminal_weight=planner.terminal_weight, stop_weight=planner.stop_weight, stop_radius=planner.stop_radius,
        )
        self.current = self.car.initial_state.clone()
        self.collided = False
        self.closest = math.inf  # closest distance to the goal so far

    def state(self) -> torch.Tensor:
        return self.current.clone()

    def push(self, kick: torch.Tensor, dofs: list[int]) -> None:
        self.current[dofs] += kick.to(self.current.dtype)

    def step(self, action: torch.Tensor) -> float:
        action = action.to(self.car.dtype).clamp(-1.0, 1.0)
        nxt = self.car.step(self.current, action)
        self.collided |= bool(self.hit_test(self.current[:2], nxt[:2], self.car.obstacles))
        self.current = nxt
        self.closest = min(self.closest, float((nxt[:2] - self.car.goal).norm()))
        reward = self.car.state_reward(nxt[None])[0] - self.car.control_weight * action.square().sum()
        return float(reward)

    def reached_goal(self) -> bool:
        """Whether the car has entered the goal region at some control step."""
        return self.closest <= self.car.goal_radius


# ----------------------------------------------------------------------------- planners
def per_task(text: list[str]) -> dict[str, int]:
    """``["32", "push_t=128"]`` -> ``{"default": 32, "push_t": 128}``: a size with per-task overrides."""
    sizes = {}
    for item in text:
        task, _, value = item.rpartition("=")
        if task and task not in TASKS:
            raise argparse.ArgumentTypeError(f"unknown task {task!r} in {item!r}; tasks: {', '.join(TASKS)}")
        try:
            sizes[task or "default"] = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected N or TASK=N, got {item!r}") from None
    if "default" not in sizes:
        raise argparse.ArgumentTypeError(f"give a default N besides the TASK=N overrides, got {text}")
    return sizes


def size_of(sizes: dict[str, int], task: str) -> int:
    return sizes.get(task, sizes["default"])


def size_text(sizes: dict[str, int]) -> str:
    """``{"default": 32, "push_t": 128}`` -> ``"32 push_t=128"`` (as given on the command line)."""
    return " ".join([str(sizes["default"])] + [f"{k}={v}" for k, v in sizes.items() if k != "default"])


def build_task(name: str, args):
    """A factory of the nominal planner model of a task, on ``args.device`` (MuJoCo: ``args.backend``)."""
    if name == "car2d":
        from dynamics.car import Car2D

        # The bicycle car with explicit arguments (its defaults are being tuned elsewhere), on a map
        # whose open-loop plan is feasible when nothing goes wrong: a box beside the straight line to
        # the goal, which a push towards it makes the replayed plan hit.
        def car():
            return Car2D(
                horizon=40, dt=0.1, wheelbase=0.3, max_accel=2.0, max_steer_rate=2.0, max_speed=3.0,
                max_steer=0.6, start=(-2.0, 0.0, 0.0, 0.0, 0.0), goal=(1.5, 0.0), goal_radius=0.3,
                control_weight=0.01, clearance=0.15, clearance_weight=1.0, obstacles=CAR_BOXES, device=args.device,
                terminal_weight=0.0, stop_weight=0.0,  # the distance-only reward its figures were measured with
            )

        return car
    from dynamics.model import MujocoModel

    return lambda: MujocoModel(name, backend=args.backend, device=args.device)


def make_system(name: str, planner, condition: str):
    if name == "car2d":
        return CarSystem(planner, accel_scale=0.6 if condition == "heavier" else 1.0)
    spec = MUJOCO_PERTURBATIONS[name]
    return MujocoSystem(planner, mass_scale=spec["mass"] if condition == "heavier" else 1.0, body=spec["body"])


def kicks_for(name: str, condition: str, episode: int, every: int, seed: int) -> dict[int, tuple[torch.Tensor, list[int]]]:
    """``{control step: (kick, dofs)}``: the same pushes for the open-loop replay and for MPC."""
    if condition != "pushes":
        return {}
    if name == "car2d":
        dofs, scale = [2, 3], torch.tensor([0.3, 0.3])  # heading (rad) and speed (m/s)
    else:
        spec = MUJOCO_PERTURBATIONS[name]
        dofs, scale = spec["dofs"], torch.full((len(spec["dofs"]),), spec["kick"])
    gen = torch.Generator().manual_seed(seed)
    return {t: (scale * torch.randn(len(dofs), generator=gen, dtype=torch.float64).float(), dofs)
            for t in range(every // 2, episode, every)}


def run_episode(system, policy, episode: int, kicks: dict) -> tuple[float, list[float]]:
    """Run ``policy(t, state) -> action`` on ``system``; returns (mean step reward, step rewards)."""
    rewards = []
    for t in range(episode):
        if t in kicks:
            kick, dofs = kicks[t]
            system.push(kick.double() if isinstance(system, MujocoSystem) else kick, dofs)
        rewards.append(system.step(policy(t, system.state())))
    return sum(rewards) / len(rewards), rewards


def evaluate(name: str, args) -> list[dict]:
    factory = build_task(name, args)
    nominal = factory()
    episode = min(nominal.horizon, args.episode) if args.episode else nominal.horizon
    torch.manual_seed(args.seed)
    open_loop = plan(nominal, horizon=episode, num_samples=args.plan_samples, num_steps=args.plan_steps,
                     seed=args.seed, progress=not args.quiet, preset="paper")
    plan_actions = open_loop.actions.cpu()
    results = []
    for condition in args.conditions:
        kicks = kicks_for(name, condition, episode, args.kick_every, args.seed)
        replay_system = make_system(name, nominal, condition)
        replay, _ = run_episode(replay_system, lambda t, s: plan_actions[t], episode, kicks)

        planner = factory()
        controller = MPC(planner, horizon=min(size_of(args.horizon, name), episode),
                         num_samples=size_of(args.samples, name), diffusion_steps=size_of(args.diffusion_steps, name),
                         warm_noise=args.warm_noise, seed=args.seed, temperature=args.temperature,
                         num_knots=args.knots or None, horizon_noise=args.horizon_noise, keep_best=args.keep_best)
        controller.reset(open_loop.actions[: controller.horizon], warm=True)
        times = []
        with progress_bar(episode, f"MPC {name} {condition}", not args.quiet) as bar:

            def policy(t, state):
                action = controller(state.to(controller.device))
                if controller.device.type == "cuda":
                    torch.cuda.synchronize(controller.device)
                times.append(controller.last_step.time)
                bar.update()
                return action.cpu()

            mpc_system = make_system(name, nominal, condition)
            closed, _ = run_episode(mpc_system, policy, episode, kicks)
        row = dict(task=name, condition=condition, planned=open_loop.reward, replay=replay, mpc=closed,
                   rate=len(times) / sum(times), episode=episode)
        if name == "car2d":
            row["replay_car"] = (replay_system.collided, replay_system.reached_goal())
            row["mpc_car"] = (mpc_system.collided, mpc_system.reached_goal())
        results.append(row)
        print(f"{name:9s} {condition:8s} planned {open_loop.reward:8.4f}  replay {replay:8.4f}  MPC {closed:8.4f}  "
              f"{row['rate']:.2f} steps/s", flush=True)
    return results


def car_note(flags) -> str:
    collided, reached = flags
    return ("collides" if collided else "no collision") + (", reaches goal" if reached else ", misses goal")


def figure(results, path) -> None:
    """Bars per task: open-loop replay vs MPC for each condition; the legend sits below the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = [r for r in results if r["task"] == task]
        x = torch.arange(len(rows)).float()
        ax.bar(x - 0.2, [r["replay"] for r in rows], 0.4, label="open-loop replay", color="tab:gray")
        ax.bar(x + 0.2, [r["mpc"] for r in rows], 0.4, label="MPC (closed loop)", color="tab:blue")
        ax.set_xticks(x.tolist(), [r["condition"] for r in rows])
        ax.set_xlabel("condition")
        ax.set_title(task)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("mean reward per control step\n(task units, higher is better)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)  # below the panels: covers no bar
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _temperature(text: str):
    """``--temperature``: a number > 0 or ``auto``."""
    if text == "auto":
        return text
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0 or 'auto', got {text!r}")
    return value


def sizes(args) -> str:
    """The run's sizes, one line."""
    episode = f"{args.episode} control steps at most" if args.episode else "the task's horizon"
    return (
        f"open-loop plan: {args.plan_samples} samples x {args.plan_steps} diffusion steps over the episode; "
        f"MPC: samples {size_text(args.samples)}, diffusion steps per control step {size_text(args.diffusion_steps)}, "
        f"horizon {size_text(args.horizon)}, warm noise {args.warm_noise}, temperature {args.temperature}, "
        f"knots {args.knots or 'none'}, horizon noise {args.horizon_noise}, keep-best {args.keep_best if args.keep_best == 'sample' else ('on' if args.keep_best else 'off')}; "
        f"episode: {episode}; "
        f"a push every {args.kick_every} steps; planner on {args.device} ({args.backend} backend for MuJoCo)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--samples", nargs="+", default=["32", "push_t=128", "car2d=64"],
                        help="MPC rollouts per diffusion step: N [TASK=N ...] (a default and per-task overrides)")
    parser.add_argument("--horizon", nargs="+", default=["20", "car2d=30"],
                        help="MPC planning horizon in control steps: N [TASK=N ...]")
    parser.add_argument("--diffusion-steps", nargs="+", default=["2", "push_t=3", "car2d=3"],
                        help="MPC diffusion steps per control step: N [TASK=N ...]")
    parser.add_argument("--warm-noise", type=float, default=0.2, help="MPC warm-start noise level")
    parser.add_argument("--temperature", type=_temperature, default=0.1, help="MPC temperature: a number or 'auto'")
    parser.add_argument("--knots", type=int, default=0, help="MPC plans this many cubic knots (0: one action per step)")
    parser.add_argument("--horizon-noise", type=float, default=0.0, help="MPC annealing along the horizon (0: off)")
    parser.add_argument("--keep-best", nargs="?", const=True, default=False, choices=[True, "sample"],
                        help="MPC keeps the best sample when it beats the estimate; '--keep-best sample': always")
    parser.add_argument("--plan-samples", type=int, default=64, help="open-loop plan: rollouts per step")
    parser.add_argument("--plan-steps", type=int, default=30, help="open-loop plan: diffusion steps")
    parser.add_argument("--episode", type=int, default=0, help="control steps per episode (0: the task's horizon)")
    parser.add_argument("--kick-every", type=int, default=10, help="control steps between pushes")
    parser.add_argument("--device", default="cpu", help="where the planner runs: cpu or cuda[:i]")
    parser.add_argument("--backend", default="mujoco", choices=BACKENDS,
                        help="planner's MuJoCo backend (on a GPU: warp); the real system is always CPU MuJoCo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/results.md")
    args = parser.parse_args()
    try:
        args.samples, args.horizon, args.diffusion_steps = (
            per_task(args.samples), per_task(args.horizon), per_task(args.diffusion_steps)
        )
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    where = "GPU" if torch.device(args.device).type == "cuda" else "CPU"

    print(sizes(args), flush=True)
    start = time.perf_counter()
    results = [row for name in args.tasks for row in evaluate(name, args)]
    total = time.perf_counter() - start
    rows = []
    for r in results:
        note = ""
        if "mpc_car" in r:
            note = f"replay: {car_note(r['replay_car'])}; MPC: {car_note(r['mpc_car'])}"
        rows.append([r["task"], r["condition"], str(r["episode"]), f"{r['planned']:.3f}", f"{r['replay']:.3f}",
                     f"{r['mpc']:.3f}", f"{r['rate']:.2f}", note])
    table = markdown_table(
        ["task", "condition", "steps", "plan (model)", "open-loop replay", "MPC", f"MPC steps/s ({where})", "car"],
        rows,
    )
    print(table)
    print(f"total {total:.0f} s")
    if args.no_write:
        return
    path = figure_path("mpc.png")
    figure(results, path)
    cmd = (
        f"python -m benchmarks.mpc --tasks {' '.join(args.tasks)} --conditions {' '.join(args.conditions)} "
        f"--samples {size_text(args.samples)} --horizon {size_text(args.horizon)} "
        f"--diffusion-steps {size_text(args.diffusion_steps)} --warm-noise {args.warm_noise} --plan-samples {args.plan_samples} "
        f"--plan-steps {args.plan_steps} --episode {args.episode} --kick-every {args.kick_every} "
        f"--device {args.device} --backend {args.backend} --seed {args.seed}"
    )
    gpu = ("" if where == "GPU" else
           " GPU control rate: not measured (no GPU was lent to this run; the `--device cuda --backend warp` "
           "path exists but has not been run).")
    write_section(
        "mpc",
        f"## Receding-horizon MPC vs the open-loop plan\n\n`{cmd}` on {machine()}; the real system is the CPU "
        f"MuJoCo simulator (the car: its own dynamics). Sizes: {sizes(args)}. Total wall time {total:.0f} s.\n\n"
        "Mean step reward over one episode (the task's reward, higher is better). The open-loop MBD plan, made "
        "once on the nominal model, is replayed on the real system; MPC starts from the same plan and re-plans "
        "from the measured state at every control step. Both meet the same pushes. Control rates count a whole "
        f"control step (all its rollouts) on cores shared with other work: they are indicative.{gpu}\n\n"
        f"{table}\n\n![MPC vs open loop](figures/mpc.png)\n",
    )


if __name__ == "__main__":
    main()
