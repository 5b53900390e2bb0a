"""Receding-horizon MBD on the hopper after a push: replaying the plan against re-planning every step.

MBD first plans one open-loop control sequence for the ``hopper`` task (hop forward, torso near
1 m). Then the hopper is simulated (plain ``mujoco.mj_step`` on the CPU, the "real" system) for
one episode twice, and at ``--push-at`` it is shoved backwards and tipped over (a velocity kick
on its root joints) that the plan knows nothing about:

* **open loop**: the plan's actions are replayed as they are;
* **closed loop**: :class:`torch_mbd.MPC` starts from the same plan and, at every control step,
  re-plans from the measured state (the previous plan shifted by one step, then a short
  diffusion from a low noise level) and applies the first action.

It writes ``OUT`` (default ``mpc_hopper.png``): torso x and torso height over time for both, with
the plan's own prediction (no push) for reference.

What it shows: MPC keeps much more of the plan's reward after the push than the replay (at the
defaults, mean step reward 0.99 against 0.47, and 2.2 m of forward travel against 0.1 m), but it
does not bring the hopper back to an upright hop. The task is the authors' hopper, in which only
the foot collides with the floor: a torso that tips over passes through the floor, and every run
here, the plan's own prediction without a push included, ends with the torso below it
(height < 0). Read the comparison in the reward, not as a recovery of the posture. When ``OUT`` ends in ``.gif`` or ``.mp4`` it
writes that video (open loop left, MPC right; needs offscreen OpenGL, ``MUJOCO_GL=egl`` or
``osmesa``; MP4 also needs ``imageio-ffmpeg``) and the plot next to it as ``.png``.

Run (under a minute on a 2-core CPU at the defaults)::

    python examples/mpc_hopper.py
    python examples/mpc_hopper.py --out runs/mpc_hopper.gif --samples 64 --horizon 25

Needs ``pip install 'torch-mbd[mujoco,examples]'``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run from a checkout: make `torch_mbd` and `dynamics` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynamics.backends import BACKENDS  # noqa: E402
from dynamics.model import MujocoModel  # noqa: E402
from torch_mbd import MPC, plan  # noqa: E402

VIDEO_SUFFIXES = (".gif", ".mp4")


def simulate(model: MujocoModel, policy, steps: int, push_at: int, push: list[float]) -> dict:
    """Run ``policy(state [nq + nv]) -> action [nu]`` on the real hopper for ``steps`` control steps.

    ``push`` is added to the root joints' velocities ``qvel[:3]`` (x, z, pitch) just before
    control step ``push_at``.

    Returns:
        ``qpos [steps + 1, nq]``, ``torso [steps + 1, 3]`` (torso position), ``rewards [steps]``.
    """
    import mujoco

    data = mujoco.MjData(model.mj_model)
    data.qpos[:], data.qvel[:] = model.qpos0.numpy(), model.qvel0.numpy()
    mujoco.mj_forward(model.mj_model, data)
    torso_slice = model.sensor_slices["torso_pos"]
    qpos, torso, rewards = [data.qpos.copy()], [data.sensordata[torso_slice].copy()], []
    for t in range(steps):
        if t == push_at:
            data.qvel[: len(push)] += np.asarray(push)
        state = torch.from_numpy(np.concatenate([data.qpos, data.qvel]))
        action = policy(state).double().clamp(-1.0, 1.0)
        data.ctrl[:] = model.controls(action.to(model.dtype)).double().numpy()
        mujoco.mj_step(model.mj_model, data, nstep=model.frame_skip)
        sensors = {name: torch.from_numpy(data.sensordata[s].copy())[None] for name, s in model.sensor_slices.items()}
        qpos_t, qvel_t = torch.from_numpy(data.qpos.copy())[None], torch.from_numpy(data.qvel.copy())[None]
        rewards.append(float(model.task.reward(qpos_t, qvel_t, sensors, action[None])[0]))
        qpos.append(data.qpos.copy())
        torso.append(data.sensordata[torso_slice].copy())
    return dict(qpos=np.stack(qpos), torso=np.stack(torso), rewards=np.array(rewards))


def replay(actions: torch.Tensor):
    """A policy that replays ``actions [H, nu]`` step by step, whatever the state."""
    steps = iter(actions)
    return lambda state: next(steps)


def plot(runs: dict, predicted: np.ndarray, control_dt: float, push_at: int, path: Path) -> Path:
    """Torso x and torso height over time: open loop vs closed loop, and the plan's prediction.

    The open loop is drawn wide and translucent under the plan's (thin, dashed) prediction, which
    it follows until the push; the push is a labelled vertical line; one legend sits below the panels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    t = control_dt * np.arange(len(predicted))
    styles = {
        "open loop": dict(color="tab:red", lw=2.6, alpha=0.6),
        "MPC (closed loop)": dict(color="tab:blue", lw=1.6),
    }
    for label, run in runs.items():
        text = f"{label}: mean reward {run['rewards'].mean():+.2f}"
        axes[0].plot(t, run["torso"][:, 0], label=text, **styles[label])
        axes[1].plot(t, run["torso"][:, 2], **styles[label])
    axes[0].plot(t, predicted[:, 0], "k--", lw=1, label="plan's prediction (no push)")
    axes[1].plot(t, predicted[:, 2], "k--", lw=1)
    axes[1].axhline(1.0, color="gray", lw=0.8, ls="-.", label="height the reward asks for (1 m)")
    for ax, label in zip(axes, ("torso x (m)", "torso height (m)")):
        ax.axvline(push_at * control_dt, color="gray", ls=":", lw=1.5,
                   label=f"push at t = {push_at * control_dt:.2f} s" if ax is axes[0] else None)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    fig.suptitle("hopper pushed backwards: replaying the MBD plan vs re-planning every step (MBD-MPC)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)  # below the panels
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def side_by_side(model: MujocoModel, runs: dict, path: Path) -> Path:
    """One video of both runs: open loop left, MPC right."""
    from dynamics.render import render_frames, write_video

    frames = [render_frames(model, run["qpos"], width=400, height=320) for run in runs.values()]
    return write_video(np.concatenate(frames, axis=2), path, fps=1.0 / (model.mj_model.opt.timestep * model.frame_skip))


def build_parser() -> argparse.ArgumentParser:
    """The example's options; ``--help`` shows each one's default."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--episode", type=int, default=50, help="control steps simulated (the plan's horizon too)")
    p.add_argument("--plan-samples", type=int, default=64, help="open-loop plan: rollouts per diffusion step")
    p.add_argument("--plan-steps", type=int, default=30, help="open-loop plan: diffusion steps (the paper's: 100)")
    p.add_argument("--samples", type=int, default=32, help="MPC: rollouts per diffusion step")
    p.add_argument("--horizon", type=int, default=20, help="MPC: planning horizon (control steps)")
    p.add_argument("--diffusion-steps", type=int, default=2, help="MPC: diffusion steps per control step")
    p.add_argument("--warm-noise", type=float, default=0.2, help="MPC: noise level of the warm start")
    p.add_argument("--push-at", type=int, default=15, help="control step of the push")
    p.add_argument("--push", type=float, nargs=3, default=[-1.5, 0.0, 2.0], metavar=("VX", "VZ", "PITCH_RATE"),
                   help="velocity kick on the root joints (m/s, m/s, rad/s)")
    p.add_argument("--device", default="cpu", help="where MPC plans (the simulated hopper stays on the CPU)")
    p.add_argument("--backend", default="mujoco", choices=BACKENDS, help="the planner's backend")
    p.add_argument("--seed", type=int, default=0, help="seed of the plan and of MPC")
    p.add_argument("--out", default="mpc_hopper.png", help="the plot (.png), or a video (.gif, .mp4) and its plot")
    return p


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    for name in ("episode", "plan_samples", "plan_steps", "samples", "horizon", "diffusion_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.push_at < 0:
        p.error(f"--push-at must be >= 0 (>= --episode: no push), got {args.push_at}")
    try:
        import matplotlib  # noqa: F401  (checked before planning: a missing library loses no run)
    except ImportError:
        p.error("the plot needs matplotlib: pip install 'torch-mbd[examples]'")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = MujocoModel("hopper", backend=args.backend, device=args.device, horizon=args.episode)

    start = time.perf_counter()
    open_loop = plan(model, num_samples=args.plan_samples, num_steps=args.plan_steps, seed=args.seed)
    print(f"open-loop plan: predicted mean reward {open_loop.reward:+.3f} ({time.perf_counter() - start:.0f} s)")
    plan_actions = open_loop.actions.cpu()
    states = torch.cat([model.initial_state[None], open_loop.states]).cpu().double()  # [H + 1, nx]
    predicted = states[:, model.state_slices["sensordata"]][:, model.sensor_slices["torso_pos"]].numpy()

    runs = {"open loop": simulate(model, replay(plan_actions), args.episode, args.push_at, args.push)}

    planner = MujocoModel("hopper", backend=args.backend, device=args.device)  # MPC moves its initial_state
    controller = MPC(planner, horizon=min(args.horizon, args.episode), num_samples=args.samples,
                     diffusion_steps=args.diffusion_steps, warm_noise=args.warm_noise, seed=args.seed)
    controller.reset(open_loop.actions[: controller.horizon], warm=True)  # refine the plan, do not start cold
    start = time.perf_counter()
    runs["MPC (closed loop)"] = simulate(model, lambda state: controller(state.to(controller.device)).cpu(),
                                         args.episode, args.push_at, args.push)
    rate = args.episode / (time.perf_counter() - start)
    for label, run in runs.items():
        print(f"{label:18s} mean step reward {run['rewards'].mean():+.3f}  final torso x {run['torso'][-1, 0]:+.2f} m"
              f"  height {run['torso'][-1, 2]:.2f} m")
    print(f"MPC control rate: {rate:.1f} steps/s on {args.device}")

    video = out.suffix.lower() in VIDEO_SUFFIXES
    png = out.with_suffix(".png") if video or out.suffix.lower() != ".png" else out
    control_dt = float(model.mj_model.opt.timestep) * model.frame_skip
    print("wrote", plot(runs, predicted, control_dt, args.push_at, png))
    if video:
        try:
            print("wrote", side_by_side(model, runs, out))
        except (RuntimeError, ImportError) as err:  # no OpenGL backend (or no ffmpeg): the plot stands
            print(f"no video ({err}); see the plot instead")


if __name__ == "__main__":
    main()
