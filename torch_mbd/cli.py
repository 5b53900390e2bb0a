"""The ``torch-mbd`` command: plan a task from the shell and write the arrays and a figure or video.

This is the application layer, the one module that composes ``torch_mbd`` with the models of
``dynamics``; it imports ``dynamics`` (and matplotlib) inside `main`, never at import time.

Example::

    torch-mbd tasks                                    # every task: horizon, default budget, backends
    torch-mbd plan car2d --demo rrt --out car.png      # writes car.npz, then car.png
    torch-mbd plan hopper --backend mujoco --samples 100 --out hopper.gif
    torch-mbd plan --help

Nothing finished is lost: everything the output needs (matplotlib for a figure; an offscreen
OpenGL backend and an encoder for a video; the output files, opened for writing and left as they
were) is checked before planning, the ``.npz`` is written before the figure or video, and without
``--out`` the arrays go to ``TASK.npz`` in the current folder (``--out PATH.npz``: to that file alone).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from .methods import METHODS as METHOD_TABLE
from .plan import PRESETS

METHODS = tuple(METHOD_TABLE)  # the --method choices: every registered method
# the methods whose weights have a temperature (CEM, CMA-ES, predictive sampling and the authors' CEM
# accept and ignore it)
TEMPERATURE_METHODS = ("mbd", "mbd-adaptive", "mppi", "paper-mppi", "paper-cmaes")
# task -> what its --demo takes (model.demonstration(SOURCE)); every other task has none
DEMO_SOURCES = {
    "car2d": "'rrt' (an RRT path round the obstacle)",
    "humanoid_jog": "'mocap' (the authors' jogging clip) or the path of an .npz clip",
}
VIDEO_SUFFIXES = (".mp4", ".gif")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg")
# the budget of a task that recommends none (dynamics.TaskInfo / the model's attributes say)
DEFAULT_SAMPLES = 256
DEFAULT_STEPS = 100
DEFAULT_TEMPERATURE = 0.1


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


def _temperature(text: str):
    """``--temperature``: a finite number > 0, or ``auto``."""
    if text == "auto":
        return text
    try:
        return _positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0 or 'auto', got {text!r}") from None


def default_budget(*sources) -> tuple[int, int, float]:
    """``(num_samples, num_steps, temperature)`` that ``torch-mbd plan`` uses for a task.

    The task's own recommendation where it has one (attributes ``num_samples``, ``num_steps``,
    ``temperature`` of a model or a [`dynamics.TaskInfo`][dynamics.TaskInfo]; the first source that has a value
    wins), else `DEFAULT_SAMPLES`, `DEFAULT_STEPS`, `DEFAULT_TEMPERATURE`.
    """

    def first(attr):
        return next((v for v in (getattr(src, attr, None) for src in sources) if v is not None), None)

    samples, steps, temperature = first("num_samples"), first("num_steps"), first("temperature")
    return (
        DEFAULT_SAMPLES if samples is None else int(samples),
        DEFAULT_STEPS if steps is None else int(steps),
        DEFAULT_TEMPERATURE if temperature is None else float(temperature),
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``torch-mbd`` (sub-commands ``plan`` and ``tasks``)."""
    from dynamics.backends import BACKENDS  # the one list of simulator backends (loads no simulator)

    parser = argparse.ArgumentParser(
        prog="torch-mbd",
        description="Model-Based Diffusion (Pan et al.) for PyTorch: trajectory optimization from the shell.",
        epilog="Run 'torch-mbd tasks' for the tasks, 'torch-mbd plan --help' for the planner's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.add_parser(
        "tasks",
        help="list every task: description, horizon, default budget and the backends it runs on",
        description="List every registered task with a one-line description, its horizon H, the budget "
        "'torch-mbd plan' uses for it by default (samples x diffusion steps, temperature) and its backends.",
    )
    p = sub.add_parser(
        "plan",
        help="optimize an open-loop control sequence for a task and write an .npz and a figure / video",
        description=(
            "Optimize an open-loop control sequence for TASK with Model-Based Diffusion (or a baseline), "
            "print the final reward, feasibility, whether the goal was reached and the files written. "
            "Everything the output needs is checked before planning; the .npz is written first."
        ),
        epilog="Example: torch-mbd plan car2d --demo rrt --out car.png   (writes car.npz and car.png)",
    )
    p.add_argument("task", metavar="TASK", help="task name ('torch-mbd tasks' lists them; 'list' lists them too)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="simulator of a MuJoCo task: mujoco (CPU, default), warp (MuJoCo Warp) or mjx (JAX); "
        "not for the analytic torch tasks (car2d, pendulum, cart_pole, point_mass)",
    )
    p.add_argument(
        "--demo",
        metavar="SOURCE",
        default=None,
        help="steer the diffusion with a demonstration: 'rrt' for car2d (an RRT path), 'mocap' (the authors' "
        "clip) or an .npz clip for humanoid_jog; calls model.demonstration(SOURCE, seed=SEED)",
    )
    p.add_argument(
        "--samples", type=_positive_int, default=None, metavar="N",
        help=f"rollouts per diffusion step (default: the task's own value, else {DEFAULT_SAMPLES}; see 'torch-mbd tasks')",
    )
    p.add_argument(
        "--steps", type=_positive_int, default=None, metavar="K",
        help=f"diffusion steps (default: the task's own value, else {DEFAULT_STEPS}, the paper's)",
    )
    p.add_argument(
        "--temperature", type=_temperature, default=None, metavar="T",
        help="sampling temperature lambda, a number or 'auto' (default: with --preset default the preset's, "
        f"'auto'; with --preset paper the task's own value, else {DEFAULT_TEMPERATURE})",
    )
    p.add_argument(
        "--preset", choices=tuple(PRESETS), default="default",
        help="the planner's defaults: 'default' (measured best: automatic temperature, keep the best sample) "
        "or 'paper' (the paper's algorithm, at the task's temperature)",
    )
    p.add_argument(
        "--knots", type=_positive_int, default=None, metavar="K",
        help="plan K cubic spline knots per action dimension instead of one action per control step",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed of the sampler and the demonstration (default: 0)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model and the optimizer run (default: cpu)")
    p.add_argument("--horizon", type=_positive_int, default=None, metavar="H", help="control steps (default: the task's horizon)")
    p.add_argument("--method", choices=METHODS, default="mbd", help="optimizer: mbd (default), the baselines cem, mppi, cmaes or predictive (predictive sampling), or the paper's own baselines as the authors ran them (paper-mppi, paper-cem, paper-cmaes)")
    p.add_argument(
        "--out", type=Path, default=None, metavar="PATH",
        help="PATH.npz: write the arrays (actions, states, rewards, feasible, history, knots, demo) there alone; "
        "a figure (.png/.pdf/.svg/.jpg) or a video (.mp4/.gif, MuJoCo tasks): write the arrays to the .npz with "
        "PATH's stem first, then PATH (default: only TASK.npz in the current folder)",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    from dynamics.closed_loop import add_mpc_arguments  # the logic of 'torch-mbd mpc' lives there

    add_mpc_arguments(sub.add_parser("mpc", help="closed-loop MPC on the wall clock: real-time factor, planner rate, reward"))
    return parser


# ----------------------------------------------------------------------------- tasks
def task_table() -> list[str]:
    """The lines ``torch-mbd tasks`` prints: a header, then one line per registered task."""
    import dynamics

    rows = []
    for name in dynamics.task_names():
        info = dynamics.task_info(name)
        samples, steps, temperature = default_budget(info)
        rows.append((name, str(info.horizon), f"{samples} x {steps}", f"{temperature:g}", ", ".join(info.backends), info.description))
    header = ("task", "H", "samples x steps", "temperature", "backends", "description")
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in [header] + rows]
    lines.append("")
    lines.append("H: default horizon (control steps); samples x steps: the default budget of 'torch-mbd plan TASK'")
    lines.append("(--samples, --steps override it); backends: --backend choices ('torch': analytic, no simulator).")
    return lines


def run_tasks(args=None) -> int:
    """The ``tasks`` sub-command; returns the exit status."""
    print("\n".join(task_table()))
    return 0


# ----------------------------------------------------------------------------- plan
def build_model(task: str, backend: str | None, device: str):
    """``dynamics.make`` for ``task``; ``backend`` only for tasks that run on it."""
    import dynamics

    names = dynamics.task_names()
    if task not in names:
        raise CommandError(f"unknown task {task!r}; choose one of: {', '.join(names)} (see 'torch-mbd tasks')")
    if backend is not None:
        backends = dynamics.task_info(task).backends
        if tuple(backends) == ("torch",):
            raise CommandError(f"--backend {backend}: {task} is analytic torch dynamics and has no simulator backend")
        if backend not in backends:
            raise CommandError(f"--backend {backend}: {task} runs on {', '.join(backends)} only")
    options = {"device": device}
    if backend is not None:
        options["backend"] = backend
    return dynamics.make(task, **options)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def demonstration_options(model, source: str, seed: int, horizon: int | None, task: str = "") -> dict:
    """``model.demonstration(source, seed=seed[, horizon=...])``: optimizer options (``demo``, ...).

    Raises:
        CommandError: one line, for a task without demonstrations (naming the tasks that have
            them, `DEMO_SOURCES`), a missing or unreadable demonstration file, or a planner
            that found no demonstration.
    """
    if not hasattr(model, "demonstration"):
        which = "; ".join(f"{name} takes {what}" for name, what in DEMO_SOURCES.items())
        raise CommandError(f"--demo {source}: {task or type(model).__name__} has no demonstrations ({which})")
    kwargs = {"seed": seed}
    if horizon is not None and "horizon" in inspect.signature(model.demonstration).parameters:
        kwargs["horizon"] = horizon
    try:
        options = model.demonstration(source, **kwargs)
    except FileNotFoundError as err:
        raise CommandError(f"--demo {source}: no such file ({_one_line(err)})") from err
    except IsADirectoryError as err:
        raise CommandError(f"--demo {source}: is a folder, expected a file") from err
    # RuntimeError: e.g. dynamics.planning.PlanningError (RRT found no path); the others: a file
    # that is not a readable demonstration
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise CommandError(f"--demo {source}: {_one_line(err)}") from err
    if not isinstance(options, dict) or "demo" not in options:
        raise CommandError(f"{type(model).__name__}.demonstration must return a dict with 'demo', got {type(options).__name__}")
    return options


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def write_npz(path: Path, result, demo=None) -> Path:
    """Save a [`PlanResult`][torch_mbd.plan.PlanResult] (its knots too, with knots; and the demonstration) to ``path``."""
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
    if result.knots is not None:  # a knots plan: its decision variables, beside the controls they make
        arrays["knots"] = _numpy(result.knots)
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
        raise ImportError("figures need matplotlib: pip install 'torch-mbd[examples]' (or pip install matplotlib)") from err
    return plt


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def draw_map(ax, model, result, demo=None, iterates: int = 8) -> None:
    """The map of a planar model: obstacles, demonstration, faded intermediate iterates, final path.

    Args:
        ax: a matplotlib ``Axes``.
        model: has ``draw(ax)``, ``positions(states)``, ``rollout`` and ``initial_state``.
        result: a [`PlanResult`][torch_mbd.plan.PlanResult] of an unbatched plan.
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
                    label="diffusion iterates (darker: later)" if k == 0 else None)
    if demo is not None:
        dpath = np.concatenate([start, _numpy(model.positions(demo))])
        ax.plot(dpath[:, 0], dpath[:, 1], "--", color="tab:orange", lw=1.5, label="demonstration (RRT)")
    final = np.concatenate([start, _numpy(model.positions(result.states))])
    ax.plot(final[:, 0], final[:, 1], "-o", color="tab:red", lw=2, markersize=2.5, label="plan (dots: control steps)")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    # below the map, where it covers nothing
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=7, frameon=False)


def draw_optimization(ax, result) -> None:
    """Mean sample reward against the diffusion step (1 .. K), integer step ticks."""
    history = _numpy(result.reward_history).reshape(len(result.reward_history), -1).mean(-1)
    steps = np.arange(1, len(history) + 1)
    ax.plot(steps, history, "-o" if len(steps) <= 30 else "-", color="tab:blue", markersize=3)
    ax.set_xlabel("diffusion step")
    ax.set_ylabel("mean sample reward (per control step)")
    ax.set_title("optimization", fontsize=9)
    _integer_ticks(ax)
    ax.grid(alpha=0.3)


def _control_dt(model) -> float | None:
    mj_model = getattr(model, "mj_model", None)
    frame_skip = getattr(model, "frame_skip", None)
    if mj_model is None or frame_skip is None:
        return getattr(model, "dt", None)
    return float(mj_model.opt.timestep) * int(frame_skip)


def write_figure(path: Path, model, result, demo=None, title: str = "") -> Path:
    """Write the plan's figure: a map (``draw``/``positions``), the model's ``draw_plan``, or reward curves."""
    plt = _import_pyplot()
    if hasattr(model, "draw") and hasattr(model, "positions"):
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 5.2), gridspec_kw={"width_ratios": [1.15, 1]})
        draw_map(ax0, model, result, demo)
        ax0.set_title("map", fontsize=9)
        draw_optimization(ax1, result)
    elif hasattr(model, "draw_plan"):  # the task draws its own figure of a plan (push-T)
        fig = plt.figure(figsize=(10, 6.5))
        model.draw_plan(fig, result.states)
    else:
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.8))
        rewards = _numpy(result.rewards).reshape(-1, result.rewards.shape[-1])
        steps = np.arange(1, rewards.shape[-1] + 1)
        for row in rewards:
            ax0.plot(steps, row, "-o" if len(steps) <= 60 else "-", markersize=2.5)
        ax0.set_xlabel("control step")
        dt = _control_dt(model)
        ax0.set_ylabel("reward per control step" + (f" ({dt:g} s each)" if dt else ""))
        ax0.set_title("reward per step of the plan", fontsize=9)
        _integer_ticks(ax0)
        ax0.grid(alpha=0.3)
        draw_optimization(ax1, result)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def probe_writable(path: Path) -> None:
    """Open ``path`` for writing the way the output will, and leave things as they were.

    A file that exists is opened for appending and closed unchanged; one that does not is created
    and removed again. This is the only check that sees every reason a write fails (a folder in the
    path that is a file, a read-only or virtual file system such as ``/sys``, a folder with the
    output's name, permissions, a name too long), so it runs before planning.

    Raises:
        CommandError: one line naming ``path`` and the reason.
    """
    if path.is_dir():
        raise CommandError(f"cannot write {path}: a folder of that name exists (give --out elsewhere)")
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
        if not existed:
            path.unlink()
    except OSError as err:
        raise CommandError(f"cannot write {path}: {err.strerror or _one_line(err)} (give --out elsewhere)") from err


def check_out(out: Path | None, task: str) -> Path:
    """Check ``--out`` before any work; return the ``.npz`` path the plan goes to (``out`` itself for an ``.npz``).

    Every output file (the ``.npz``, and the figure or video) is opened for writing here
    (`probe_writable`), so an output that cannot be written fails before planning.
    """
    if out is None:
        npz = Path(f"{task}.npz")
    else:
        suffix = out.suffix.lower()
        if suffix not in (".npz",) + FIGURE_SUFFIXES + VIDEO_SUFFIXES:
            raise CommandError(
                f"--out {out}: expected the arrays (.npz), a figure ({', '.join(FIGURE_SUFFIXES)}) "
                f"or a video ({', '.join(VIDEO_SUFFIXES)})"
            )
        if not out.parent.exists():
            raise CommandError(f"--out {out}: the folder {out.parent} does not exist")
        if not out.parent.is_dir():
            raise CommandError(f"--out {out}: {out.parent} is a file, not a folder")
        npz = out.with_suffix(".npz")
    folder = npz.parent if str(npz.parent) else Path(".")
    if not os.access(folder, os.W_OK):
        raise CommandError(f"cannot write {npz}: the folder {folder.resolve()} is not writable (give --out elsewhere)")
    for path in dict.fromkeys((npz,) if out is None else (npz, out)):  # once each (``out`` may be the .npz)
        probe_writable(path)
    return npz


def check_video(model, task: str, out: Path) -> None:
    """Everything a video needs, before planning: a MuJoCo model, the encoder, an offscreen OpenGL backend."""
    if getattr(model, "mj_model", None) is None:
        raise CommandError(f"--out {out}: {task} cannot render a video; write a figure (.png) instead")
    from dynamics.render import check_rendering, video_writer

    video_writer(out.suffix)  # ImportError naming what to install
    try:
        check_rendering()
    except RuntimeError as err:
        raise CommandError(f"--out {out}: {_one_line(err)}") from err


def run_plan(args) -> int:
    """The ``plan`` sub-command; returns the exit status."""
    if args.task == "list":  # 'torch-mbd plan list' is what a newcomer types first
        return run_tasks(args)
    from torch_mbd import plan

    npz = check_out(args.out, args.task)
    out = None if args.out is not None and args.out.suffix.lower() == ".npz" else args.out  # the figure or video
    if out is not None and out.suffix.lower() in FIGURE_SUFFIXES:
        _import_pyplot()  # a missing matplotlib fails now, not after the whole plan
    model = build_model(args.task, args.backend, args.device)
    if out is not None and out.suffix.lower() in VIDEO_SUFFIXES:
        check_video(model, args.task, out)
    options = {}
    if args.demo is not None:
        options = demonstration_options(model, args.demo, args.seed, args.horizon, args.task)
    import dynamics

    samples, steps, temperature = default_budget(model, dynamics.task_info(args.task))  # as 'torch-mbd tasks' lists
    num_samples = args.samples if args.samples is not None else samples
    num_steps = args.steps if args.steps is not None else steps
    if args.temperature is not None:
        temperature = args.temperature
    elif args.preset != "paper":
        temperature = PRESETS[args.preset]["temperature"]  # the task's temperature is the paper's algorithm's
    if args.knots is not None:
        options["num_knots"] = args.knots
    print(
        f"torch-mbd plan {args.task}: method={args.method}, samples={num_samples}, steps={num_steps}, "
        + (f"temperature={temperature}, " if args.method in TEMPERATURE_METHODS else "")
        + f"preset={args.preset}"
        + (f", knots={args.knots}" if args.knots is not None else "")
        + f", seed={args.seed}, device={args.device}"
        + (f", demo={args.demo}" if args.demo is not None else "")
    )
    start = time.perf_counter()
    result = plan(
        model,
        horizon=args.horizon,
        num_samples=num_samples,
        num_steps=num_steps,
        temperature=temperature,
        seed=args.seed,
        progress=not args.no_progress,
        method=args.method,
        preset=args.preset,
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
    demo = options.get("demo")
    write_npz(npz, result, demo)  # first: whatever happens to the figure, the plan is kept
    print(f"wrote: {npz}" + ("" if args.out is not None else "  (no --out given: add --out PATH.png for a figure)"))
    if out is not None:
        title = f"{args.task} ({args.method}{', demo ' + args.demo if args.demo else ''}): reward {result.reward:.3f}"
        try:
            if out.suffix.lower() in VIDEO_SUFFIXES:
                from dynamics.render import render

                written = render(model, result.actions, out)
            else:
                written = write_figure(out, model, result, demo, title)
        except (ImportError, RuntimeError, OSError, ValueError) as err:
            raise CommandError(f"could not write {out} ({_one_line(err)}); the plan is saved in {npz}") from err
        print(f"wrote: {written}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``torch-mbd`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "tasks":
            return run_tasks(args)
        if args.command == "plan":
            return run_plan(args)
        if args.command == "mpc":
            from dynamics.closed_loop import run_mpc

            return run_mpc(args)
    except (CommandError, ValueError, TypeError, ImportError, OSError) as err:
        print(f"torch-mbd: error: {_one_line(err)}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse rejects it first
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
