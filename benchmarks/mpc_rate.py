"""MPC control rate of a few controller settings, timed side by side (issue 14's MPC target).

Each setting is a :class:`torch_mbd.MPC` on the same task model, planning from the task's initial
state. After a cold start and one untimed warm start, the settings take turns: one warm-started
control step each, ``--repeats`` rounds, so that every setting meets the same machine load. The
table gives the median wall time of a control step, the control rate it allows and its ratios, all
measured in this one run, to the first setting (today's default of ``benchmarks/mpc.py``) and to
`BASELINE` (30 x 1 with keep-best sample, the setting issue 27 asks to double). The machine and
its load average (the machine is shared: wall times move with it, ratios much less) are printed
and written with the table. Closed-loop rewards of the same settings come from
``benchmarks/mpc.py`` (``--samples``, ``--diffusion-steps``, ``--temperature``, ``--keep-best``)
and ``benchmarks/mpc_realtime.py``.

    python -m benchmarks.mpc_rate                 # hopper, H = 20, 30 rounds
    python -m benchmarks.mpc_rate --task walker2d --repeats 50 --no-write

Writes the section ``mpc_rate`` of docs/results.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, markdown_table, write_section  # noqa: E402

SETTINGS = {
    "32 samples x 2 steps (benchmarks/mpc.py's setting)": dict(num_samples=32, diffusion_steps=2),
    "32 samples x 1 step, keep-best": dict(num_samples=32, diffusion_steps=1, keep_best=True),
    "32 samples x 1 step, keep-best sample": dict(num_samples=32, diffusion_steps=1, keep_best="sample"),
    "30 samples x 1 step, keep-best sample": dict(num_samples=30, diffusion_steps=1, keep_best="sample"),
    "30 samples x 1 step, keep-best sample, planner timestep x2": dict(
        num_samples=30, diffusion_steps=1, keep_best="sample", coarse=2
    ),
    "16 samples x 1 step, keep-best sample, planner timestep x2": dict(
        num_samples=16, diffusion_steps=1, keep_best="sample", coarse=2
    ),
    "16 samples x 1 step, keep-best sample, planner timestep x2, 1 MuJoCo thread": dict(
        num_samples=16, diffusion_steps=1, keep_best="sample", coarse=2, nthread=1
    ),
}
"""Controller settings timed: ``MPC`` options, plus ``coarse`` (the planner model simulates
:func:`dynamics.closed_loop.coarse_task` of that factor: a larger timestep, the same control step)
and ``nthread`` (MuJoCo rollout threads of the planner model; default every CPU). The first setting
is the reference of the first ratio column."""

BASELINE = ("30 samples x 1 step, keep-best sample", "30 x 1")
"""The setting of the second ratio column and its short name: issue 27's target is twice its rate."""


def rollouts_per_step(options: dict) -> int:
    """Rollouts of one warm-started control step: samples x diffusion steps, plus keep-best's one
    (whatever their length in physics steps: ``coarse`` halves that)."""
    return options["num_samples"] * options["diffusion_steps"] + (1 if options.get("keep_best") is True else 0)


def time_settings(task: str, horizon: int, repeats: int, settings: dict = SETTINGS) -> dict[str, list[float]]:
    """Seconds of every warm-started control step, per setting, the settings taking turns."""
    import dynamics
    from dynamics.closed_loop import coarse_task
    from dynamics.model import MujocoModel
    from torch_mbd import MPC

    model = dynamics.make(task, seed=0)
    state = model.initial_state.clone()  # every setting plans from the same (fine) state
    models = {}
    controllers = {}
    for name, options in settings.items():
        options = dict(options)
        key = (options.pop("coarse", 1), options.pop("nthread", None))
        if key not in models:
            threads = {} if key[1] is None else dict(nthread=key[1])
            models[key] = model if key == (1, None) else MujocoModel(coarse_task(model.task, key[0]), seed=0, **threads)
        controllers[name] = MPC(models[key], horizon=horizon, warm_noise=0.2, initial_steps=30, seed=0, **options)
    for controller in controllers.values():  # cold start and a first warm start, untimed
        controller.plan(state)
        controller.plan(state)
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(repeats):
        for name, controller in controllers.items():
            start = time.perf_counter()
            controller.plan(state)
            times[name].append(time.perf_counter() - start)
    return times


def rate_table(times: dict[str, list[float]], settings: dict = SETTINGS, baseline: tuple[str, str] | None = None) -> str:
    """Markdown: setting, rollouts per control step, median ms, control steps/s, ratio to the first,
    and with ``baseline = (setting, short name)`` (a setting timed) the ratio to it."""
    names = list(times)
    reference = statistics.median(times[names[0]])
    if baseline is not None and baseline[0] not in times:
        raise ValueError(f"baseline {baseline[0]!r} is not among the settings timed")
    base = None if baseline is None else statistics.median(times[baseline[0]])
    rows = []
    for name in names:
        median = statistics.median(times[name])
        rows.append([
            name, str(rollouts_per_step(settings[name])), f"{median * 1000:.1f}", f"{1 / median:.2f}",
            f"{reference / median:.2f}x",
        ] + ([] if base is None else [f"{base / median:.2f}x"]))  # fmt: skip
    header = ["setting", "rollouts / control step", "median ms / control step", "steps/s", "rate vs first"]
    return markdown_table(header + ([] if baseline is None else [f"rate vs {baseline[1]}"]), rows)


def load_average() -> str:
    """The 1-minute load average, e.g. ``"3.52"`` (``"unknown"`` where the OS has none)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return "unknown"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper")
    parser.add_argument("--horizon", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30, help="timed control steps per setting")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/results.md")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.horizon < 1:
        parser.error("--repeats and --horizon must be >= 1")
    where = machine()
    before = load_average()
    times = time_settings(args.task, args.horizon, args.repeats)
    load = f"load average {before} before, {load_average()} after"
    table = rate_table(times, baseline=BASELINE)
    print(f"{where}, {load}\n{table}")
    if args.no_write:
        return
    cmd = "python -m benchmarks.mpc_rate " + " ".join(argv if argv is not None else sys.argv[1:])
    write_section(
        "mpc_rate",
        f"## MPC control rate\n\n`{cmd.strip()}` on {where} ({load}): {args.task}, horizon {args.horizon}, "
        f"warm-started control steps from the task's initial state, the settings taking turns for "
        f"{args.repeats} rounds (same machine load for each); the planner alone, without the simulated "
        f"system.\n\n{table}",
    )
    print("wrote docs/results.md (section mpc_rate)")


if __name__ == "__main__":
    main()
