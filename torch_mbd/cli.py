"""The ``torch-mbd`` command: plan a task from the shell and write a figure and the arrays.

This is the application layer, the one module that composes ``torch_mbd`` with the models of
``dynamics``; it imports ``dynamics`` (and matplotlib) inside :func:`main`, never at import time.

Example::

    torch-mbd plan car2d --demo rrt --out car.png      # writes car.png and car.npz
    torch-mbd plan hopper --backend mujoco --samples 100 --out hopper.gif
    torch-mbd plan --help
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import numpy as np
import torch

METHODS = ("mbd", "cem", "mppi", "cmaes")
BACKENDS = ("mujoco", "warp", "mjx")
VIDEO_SUFFIXES = (".mp4", ".gif")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg")


class CommandError(Exception):
    """A user error detected after parsing: printed as ``torch-mbd: error: ...``, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``torch-mbd`` (sub-command ``plan``)."""
    parser = argparse.ArgumentParser(
        prog="torch-mbd",
        description="Model-Based Diffusion (Pan et al.) for PyTorch: trajectory optimization from the shell.",
        epilog="Run 'torch-mbd plan --help' for the planner's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser(
        "plan",
        help="optimize an open-loop control sequence for a task and write a figure / video and an .npz",
        description=(
            "Optimize an open-loop control sequence for TASK with Model-Based Diffusion (or a baseline), "
            "print the final reward, feasibility, whether the goal was reached and the files written."
        ),
        epilog="Example: torch-mbd plan car2d --demo rrt --out car.png   (writes car.png and car.npz)",
    )
    p.add_argument("task", metavar="TASK", help="task name, one of dynamics.task_names() (e.g. car2d, hopper, push_t)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="simulator of a MuJoCo task: mujoco (CPU, default), warp (MuJoCo Warp) or mjx (JAX); "
        "not for car2d, which is analytic torch",
    )
    p.add_argument(
        "--demo",
        metavar="SOURCE",
        default=None,
        help="steer the diffusion with a demonstration: 'rrt' for car2d (an RRT path), "
        "an .npz clip for humanoid_jog; calls model.demonstration(SOURCE, seed=SEED)",
    )
    p.add_argument(
        "--samples", type=_positive_int, default=None, metavar="N",
        help="rollouts per diffusion step (default: the task's own value, else 256)",
    )
    p.add_argument("--steps", type=_positive_int, default=100, metavar="K", help="diffusion steps (default: 100, the paper's)")
    p.add_argument(
        "--temperature", type=_positive_float, default=None, metavar="T",
        help="sampling temperature lambda (default: the task's own value, else 0.1)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed of the sampler and the demonstration (default: 0)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model and the optimizer run (default: cpu)")
    p.add_argument("--horizon", type=_positive_int, default=None, metavar="H", help="control steps (default: the task's horizon)")
    p.add_argument("--method", choices=METHODS, default="mbd", help="optimizer: mbd (default), or the baseline cem, mppi or cmaes")
    p.add_argument(
        "--out", type=Path, default=None, metavar="PATH",
        help="write a figure (.png/.pdf/.svg/.jpg) or a video (.mp4/.gif, MuJoCo tasks) here, and the arrays "
        "(actions, states, rewards, feasible, history, demo) to the .npz with the same stem",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    return parser


def build_model(task: str, backend: str | None, device: str):
    """``dynamics.make`` for ``task``; ``backend`` only for tasks that have one (not car2d)."""
    import dynamics

    names = dynamics.task_names()
    if task not in names:
        raise CommandError(f"unknown task {task!r}; choose one of: {', '.join(names)}")
    if task == "car2d":
        if backend is not None:
            raise CommandError(f"--backend {backend}: car2d is analytic torch dynamics and has no simulator backend")
        return dynamics.make(task, device=device)
    options = {"device": device}
    if backend is not None:
        options["backend"] = backend
    return dynamics.make(task, **options)


def demonstration_options(model, source: str, seed: int, horizon: int | None) -> dict:
    """``model.demonstration(source, seed=seed[, horizon=...])``: optimizer options (``demo``, ...)."""
    if not hasattr(model, "demonstration"):
        raise CommandError(f"--demo: the task {type(model).__name__} has no demonstrations")
    kwargs = {"seed": seed}
    if horizon is not None and "horizon" in inspect.signature(model.demonstration).parameters:
        kwargs["horizon"] = horizon
    try:
        options = model.demonstration(source, **kwargs)
    except RuntimeError as err:  # e.g. dynamics.planning.PlanningError: RRT found no path
        raise CommandError(f"--demo {source}: {err}") from err
    if not isinstance(options, dict) or "demo" not in options:
        raise CommandError(f"{type(model).__name__}.demonstration must return a dict with 'demo', got {type(options).__name__}")
    return options


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def write_npz(path: Path, result, demo=None) -> Path:
    """Save a :class:`~torch_mbd.plan.PlanResult` (and the demonstration) to ``path``."""
    arrays = {
        "actions": _numpy(result.actions),
        "states": _numpy(result.states),
        "rewards": _numpy(result.rewards),
        "feasible": _numpy(result.feasible),
        "reward": np.float64(result.reward),
        "history": _numpy(result.history),
        "reward_history": _numpy(result.reward_history),
        "time": np.float64(result.time),
    }
    if demo is not None:
        arrays["demo"] = _numpy(demo)
    np.savez(path, **arrays)
    return path


def _import_pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("figures need matplotlib: pip install 'torch-mbd[examples]'") from err
    return plt


def draw_map(ax, model, result, demo=None, iterates: int = 8) -> None:
    """The map of a planar model: obstacles, demonstration, faded intermediate iterates, final path.

    Args:
        ax: a matplotlib ``Axes``.
        model: has ``draw(ax)``, ``positions(states)``, ``rollout`` and ``initial_state``.
        result: a :class:`~torch_mbd.plan.PlanResult` of an unbatched plan.
        demo: the demonstrated states ``[H, nx]`` or ``None``.
        iterates: how many intermediate estimates (evenly spaced over the diffusion) to draw.
    """
    model.draw(ax)
    start = _numpy(model.positions(model.initial_state.unsqueeze(0)))  # [1, 2]
    history = result.history
    if iterates > 0 and len(history) > 1:
        picks = torch.linspace(0, len(history) - 2, min(iterates, len(history) - 1)).round().long().unique()
        with torch.no_grad():
            states = model.rollout(history[picks.to(history.device)]).states
        paths = _numpy(model.positions(states))
        for k, path in enumerate(paths):
            full = np.concatenate([start, path])
            ax.plot(full[:, 0], full[:, 1], color="tab:blue", alpha=0.1 + 0.4 * k / max(len(paths) - 1, 1), lw=1,
                    label="diffusion iterates" if k == 0 else None)
    if demo is not None:
        dpath = np.concatenate([start, _numpy(model.positions(demo))])
        ax.plot(dpath[:, 0], dpath[:, 1], "--", color="tab:orange", lw=1.5, label="demonstration (RRT)")
    final = np.concatenate([start, _numpy(model.positions(result.states))])
    ax.plot(final[:, 0], final[:, 1], "-o", color="tab:red", lw=2, markersize=2.5, label="MBD path")
    ax.legend(loc="lower left", fontsize=7)


def write_figure(path: Path, model, result, demo=None, title: str = "") -> Path:
    """A map (models with ``draw``/``positions``) or reward curves (any model) saved to ``path``."""
    plt = _import_pyplot()
    if hasattr(model, "draw") and hasattr(model, "positions"):
        fig, ax = plt.subplots(figsize=(5, 5))
        draw_map(ax, model, result, demo)
        ax.set_title(title, fontsize=9)
    else:
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.5))
        ax0.plot(_numpy(result.rewards).reshape(-1, result.rewards.shape[-1]).T)
        ax0.set_xlabel("control step")
        ax0.set_ylabel("reward")
        ax0.set_title("reward per step of the plan", fontsize=9)
        ax1.plot(_numpy(result.reward_history))
        ax1.set_xlabel("diffusion step")
        ax1.set_ylabel("mean sample reward")
        ax1.set_title("optimization", fontsize=9)
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def run_plan(args) -> int:
    """The ``plan`` sub-command; returns the exit status."""
    from torch_mbd import plan

    out = args.out
    if out is not None:
        suffix = out.suffix.lower()
        if suffix not in FIGURE_SUFFIXES + VIDEO_SUFFIXES:
            raise CommandError(f"--out {out}: expected a figure ({', '.join(FIGURE_SUFFIXES)}) or a video ({', '.join(VIDEO_SUFFIXES)})")
        if not out.parent.exists():
            raise CommandError(f"--out {out}: the folder {out.parent} does not exist")
    model = build_model(args.task, args.backend, args.device)
    if out is not None and out.suffix.lower() in VIDEO_SUFFIXES:
        if getattr(model, "mj_model", None) is None:
            raise CommandError(f"--out {out}: {args.task} cannot render a video; write a figure (.png) instead")
        from dynamics.render import video_writer

        video_writer(out.suffix)  # a missing encoder fails now, not after the whole plan
    options = {}
    if args.demo is not None:
        options = demonstration_options(model, args.demo, args.seed, args.horizon)
    num_samples = args.samples if args.samples is not None else getattr(model, "num_samples", 256)
    temperature = args.temperature if args.temperature is not None else getattr(model, "temperature", 0.1)
    print(
        f"torch-mbd plan {args.task}: method={args.method}, samples={num_samples}, steps={args.steps}, "
        f"temperature={temperature}, seed={args.seed}, device={args.device}"
        + (f", demo={args.demo}" if args.demo is not None else "")
    )
    start = time.perf_counter()
    result = plan(
        model,
        horizon=args.horizon,
        num_samples=num_samples,
        num_steps=args.steps,
        temperature=temperature,
        seed=args.seed,
        progress=not args.no_progress,
        method=args.method,
        **options,
    )
    elapsed = time.perf_counter() - start
    feasible = bool(result.feasible.all())
    print(f"final reward: {result.reward:.4f}")
    print(f"feasible: {'yes' if feasible else 'no'}")
    if hasattr(model, "reached_goal"):
        reached = bool(torch.as_tensor(model.reached_goal(result.states)).all())
        print(f"goal reached: {'yes' if reached else 'no'}")
    if hasattr(model, "goal_distance"):
        print(f"final distance to the goal: {float(model.goal_distance(result.states)[..., -1].max()):.2f}")
    print(f"time: {elapsed:.1f} s")
    if out is not None:
        demo = options.get("demo")
        title = f"{args.task} ({args.method}{', demo ' + args.demo if args.demo else ''}): reward {result.reward:.3f}"
        if out.suffix.lower() in VIDEO_SUFFIXES:
            from dynamics.render import render

            written = render(model, result.actions, out)
        else:
            written = write_figure(out, model, result, demo, title)
        npz = write_npz(out.with_suffix(".npz"), result, demo)
        print(f"wrote: {written}")
        print(f"wrote: {npz}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``torch-mbd`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "plan":
            return run_plan(args)
    except (CommandError, ValueError, TypeError, ImportError) as err:
        print(f"torch-mbd: error: {err}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse rejects it first
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
