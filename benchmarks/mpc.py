"""Closed-loop MPC against replaying the open-loop MBD plan, under perturbations the plan cannot know.

For each task, one open-loop plan is made with :func:`torch_mbd.plan` on the nominal model
(the car: a box beside the straight path to its goal). Then a "real" system (the CPU MuJoCo
simulator, stepped with ``mj_step``; the car's own dynamics) runs one episode per condition:

* ``nominal``: nothing unexpected;
* ``pushes``: a random velocity kick every ``--kick-every`` control steps (the first after half that) (MuJoCo: on the
  torso's root joints, push-T: on the block; the car: its heading and speed);
* ``heavier``: model mismatch, the real torso 1.5x as heavy (mass and inertia; push-T: the block
  2x; the car: a motor 0.6x as strong) while the planner keeps the nominal model;

once replaying the open-loop plan and once with :class:`torch_mbd.MPC`, which starts from that
same plan (``reset(plan, warm=True)``) and re-plans from the measured state at every step.
Both see the same kicks. Reported: the mean step reward over the episode (the task's reward,
as the planner scores it), the car's collisions and goal, and the MPC control rate on this
machine (warm control steps per second, rollouts included).

    python -m benchmarks.mpc --tasks car2d hopper walker2d push_t --samples 64 --horizon 20 --diffusion-steps 2
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
class MujocoSystem:
    """The "real" MuJoCo system: ``mj_step`` on its own (possibly edited) copy of the task's model.

    Args:
        planner: the nominal :class:`dynamics.model.MujocoModel` (its task, action scaling, start).
        mass_scale: factor on the mass and inertia of ``body``.
        body: the body made heavier.
    """

    def __init__(self, planner, mass_scale: float = 1.0, body: str = "torso"):
        import mujoco

        self.mujoco, self.planner = mujoco, planner
        self.model = planner.task.compile()
        if mass_scale != 1.0:
            b = self.model.body(body).id
            self.model.body_mass[b] *= mass_scale
            self.model.body_inertia[b] *= mass_scale
        self.data = mujoco.MjData(self.model)
        self.data.qpos[:] = planner.qpos0.numpy()
        self.data.qvel[:] = planner.qvel0.numpy()
        mujoco.mj_forward(self.model, self.data)

    def state(self) -> torch.Tensor:
        """``[nq + nv]`` float64."""
        return torch.cat([torch.from_numpy(self.data.qpos.copy()), torch.from_numpy(self.data.qvel.copy())])

    def push(self, kick: torch.Tensor, dofs: list[int]) -> None:
        self.data.qvel[dofs] += kick.numpy()

    def step(self, action: torch.Tensor) -> float:
        """Apply ``action [nu]`` in ``[-1, 1]`` for one control step; return the task's step reward."""
        action = action.detach().to("cpu", torch.float64).clamp(-1.0, 1.0)
        self.data.ctrl[:] = self.planner.controls(action.to(self.planner.dtype)).double().numpy()
        for _ in range(self.planner.frame_skip):
            self.mujoco.mj_step(self.model, self.data)
        qpos = torch.from_numpy(self.data.qpos.copy())[None]
        qvel = torch.from_numpy(self.data.qvel.copy())[None]
        sens = torch.from_numpy(self.data.sensordata.copy())[None]
        sensors = {name: sens[..., s] for name, s in self.planner.sensor_slices.items()}
        reward = self.planner.task.reward(qpos, qvel, sensors, action[None])
        return float(reward[0]) if math.isfinite(float(reward[0])) else -math.inf


class CarSystem:
    """The "real" car: :meth:`dynamics.car.Car2D.step` with its own (possibly weaker) motor."""

    def __init__(self, planner, accel_scale: float = 1.0):
        from dynamics.car import Car2D, segments_hit_boxes

        self.hit_test = segments_hit_boxes
        self.car = Car2D(
            horizon=planner.horizon, dt=planner.dt, wheelbase=planner.wheelbase,
            max_accel=planner.max_accel * accel_scale, max_steer_rate=planner.max_steer_rate,
            max_speed=planner.max_speed, max_steer=planner.max_steer, start=planner.initial_state.tolist(),
            goal=planner.goal.tolist(), goal_radius=planner.goal_radius, control_weight=planner.control_weight,
            clearance=planner.clearance, clearance_weight=planner.clearance_weight, obstacles=planner.obstacles,
        )
        self.current = self.car.initial_state.clone()
        self.collided = False

    def state(self) -> torch.Tensor:
        return self.current.clone()

    def push(self, kick: torch.Tensor, dofs: list[int]) -> None:
        self.current[dofs] += kick.to(self.current.dtype)

    def step(self, action: torch.Tensor) -> float:
        action = action.to(self.car.dtype).clamp(-1.0, 1.0)
        nxt = self.car.step(self.current, action)
        self.collided |= bool(self.hit_test(self.current[:2], nxt[:2], self.car.obstacles))
        self.current = nxt
        reward = self.car.state_reward(nxt[None])[0] - self.car.control_weight * action.square().sum()
        return float(reward)

    def reached_goal(self) -> bool:
        return bool((self.current[:2] - self.car.goal).norm() <= self.car.goal_radius)


# ----------------------------------------------------------------------------- planners
class SettableStart:
    """A MujocoModel whose ``initial_state`` can be set, for versions of ``dynamics`` without the property.

    Setting ``initial_state`` (``[nq + nv]`` or ``[state_dim]``) sets the ``qpos0`` / ``qvel0`` the
    model's rollout starts from.
    """

    def __init__(self, model):
        self.model = model
        for attr in ("action_dim", "state_dim", "action_bounds", "horizon", "device", "dtype"):
            setattr(self, attr, getattr(model, attr))
        self._state = model.initial_state

    @property
    def initial_state(self) -> torch.Tensor:
        return self._state

    @initial_state.setter
    def initial_state(self, state: torch.Tensor) -> None:
        nq, nv = self.model.nq, self.model.nv
        self.model.qpos0 = state[:nq].detach().to("cpu", torch.float64).clone()
        self.model.qvel0 = state[nq : nq + nv].detach().to("cpu", torch.float64).clone()
        self._state = state

    def rollout(self, actions):
        return self.model.rollout(actions)


def settable(model):
    """``model`` itself when its ``initial_state`` is a settable property, else a :class:`SettableStart`."""
    if not hasattr(model, "qpos0"):  # not a MujocoModel: initial_state is a plain attribute (the car)
        return model
    prop = getattr(type(model), "initial_state", None)
    return model if isinstance(prop, property) and prop.fset is not None else SettableStart(model)


def build_task(name: str, args):
    """``(planner model factory, open-loop plan options)`` for a task."""
    if name == "car2d":
        from dynamics.car import Car2D

        # The bicycle car with explicit arguments (its defaults are being tuned elsewhere), on a map
        # whose open-loop plan is feasible when nothing goes wrong: a box beside the straight line to
        # the goal, which a push towards it makes the replayed plan hit.
        def car():
            return Car2D(
                horizon=40, dt=0.1, wheelbase=0.3, max_accel=2.0, max_steer_rate=2.0, max_speed=3.0,
                max_steer=0.6, start=(-2.0, 0.0, 0.0, 0.0, 0.0), goal=(1.5, 0.0), goal_radius=0.3,
                control_weight=0.01, clearance=0.15, clearance_weight=1.0, obstacles=CAR_BOXES,
            )

        return car, {}
    from dynamics.model import MujocoModel

    return (lambda: MujocoModel(name, backend="mujoco")), {}


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
    factory, plan_options = build_task(name, args)
    nominal = factory()
    episode = nominal.horizon
    torch.manual_seed(args.seed)
    open_loop = plan(nominal, horizon=episode, num_samples=args.plan_samples, num_steps=args.plan_steps,
                     seed=args.seed, progress=not args.quiet, **plan_options)
    results = []
    for condition in args.conditions:
        kicks = kicks_for(name, condition, episode, args.kick_every, args.seed)
        replay_system = make_system(name, nominal, condition)
        replay, _ = run_episode(replay_system, lambda t, s: open_loop.actions[t], episode, kicks)

        planner = settable(factory())
        horizon = args.car_horizon if name == "car2d" else args.horizon
        controller = MPC(planner, horizon=min(horizon, episode), num_samples=args.samples,
                         diffusion_steps=args.diffusion_steps, warm_noise=args.warm_noise, seed=args.seed)
        controller.reset(open_loop.actions[: controller.horizon], warm=True)
        times = []
        with progress_bar(episode, f"MPC {name} {condition}", not args.quiet) as bar:

            def policy(t, state):
                action = controller(state)
                times.append(controller.last_step.time)
                bar.update()
                return action

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
    return ("collides" if collided else "no collision") + (", at goal" if reached else ", misses goal")


def figure(results, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = [r for r in results if r["task"] == task]
        x = torch.arange(len(rows)).float()
        ax.bar(x - 0.2, [r["replay"] for r in rows], 0.4, label="open-loop replay", color="tab:gray")
        ax.bar(x + 0.2, [r["mpc"] for r in rows], 0.4, label="MPC (closed loop)", color="tab:blue")
        ax.set_xticks(x.tolist(), [r["condition"] for r in rows])
        ax.set_title(task)
        ax.axhline(0, color="black", linewidth=0.5)
    axes[0][0].set_ylabel("mean step reward (higher is better)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--samples", type=int, default=64, help="MPC rollouts per diffusion step")
    parser.add_argument("--horizon", type=int, default=20, help="MPC planning horizon (control steps)")
    parser.add_argument("--car-horizon", type=int, default=20, help="MPC planning horizon of the car")
    parser.add_argument("--diffusion-steps", type=int, default=2, help="MPC diffusion steps per control step")
    parser.add_argument("--warm-noise", type=float, default=0.2, help="MPC warm-start noise level")
    parser.add_argument("--plan-samples", type=int, default=128, help="open-loop plan: rollouts per step")
    parser.add_argument("--plan-steps", type=int, default=50, help="open-loop plan: diffusion steps")
    parser.add_argument("--kick-every", type=int, default=10, help="control steps between pushes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/results.md")
    args = parser.parse_args()

    start = time.perf_counter()
    results = [row for name in args.tasks for row in evaluate(name, args)]
    rows = []
    for r in results:
        note = ""
        if "mpc_car" in r:
            note = f"replay: {car_note(r['replay_car'])}; MPC: {car_note(r['mpc_car'])}"
        rows.append([r["task"], r["condition"], f"{r['planned']:.3f}", f"{r['replay']:.3f}", f"{r['mpc']:.3f}",
                     f"{r['rate']:.2f}", note])
    table = markdown_table(
        ["task", "condition", "plan (model)", "open-loop replay", "MPC", "MPC steps/s (CPU)", "car"], rows
    )
    print(table)
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.no_write:
        return
    path = figure_path("mpc.png")
    figure(results, path)
    cmd = (
        f"python -m benchmarks.mpc --tasks {' '.join(args.tasks)} --conditions {' '.join(args.conditions)} "
        f"--samples {args.samples} --horizon {args.horizon} --car-horizon {args.car_horizon} --diffusion-steps {args.diffusion_steps} "
        f"--warm-noise {args.warm_noise} --plan-samples {args.plan_samples} --plan-steps {args.plan_steps} "
        f"--kick-every {args.kick_every} --seed {args.seed}"
    )
    write_section(
        "mpc",
        f"## Receding-horizon MPC vs the open-loop plan\n\n`{cmd}` on {machine()}, CPU MuJoCo backend "
        "(shared cores: rates are indicative). Mean step reward over one episode of the task's horizon; "
        "the open-loop plan is replayed on the real system, MPC starts from the same plan and re-plans "
        "every step. GPU control rate: unmeasured (no GPU was available).\n\n"
        f"{table}\n\n![MPC vs open loop](figures/mpc.png)\n",
    )


if __name__ == "__main__":
    main()
