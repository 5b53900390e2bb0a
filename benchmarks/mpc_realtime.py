"""Closed-loop MPC against the wall clock: reward and real-time factor, synchronous and asynchronous.

Every episode: a task's "real" system (:class:`dynamics.closed_loop.MujocoSystem`, CPU MuJoCo on
its own model) starts from the seed's initial state; a controller (:class:`torch_mbd.MPC`) plans
from the measured state on its own planner model; :func:`torch_mbd.async_mpc.run_closed_loop`
drives it for the task's horizon, nominal or with a random push on the torso every 10 control
steps (:func:`dynamics.closed_loop.push_schedule`, the same pushes for every controller). The
first plan (a cold start of 30 diffusion steps) is made before the clock starts.

* ``sync`` rows: the system waits for the planner (``mode="sync"``, unpaced): the real-time factor
  is the planner's own rate over the control rate.
* ``async`` rows: the system steps on the wall clock at real time and applies whatever plan is
  current (``mode="async"``, ``speed=1``); the planner iterations per control step say how much
  planning fitted. The state a step reaches is measured when the next step starts, so every plan
  applied is at least one control step old.
* ``simulated clock`` rows: the same schedule for a planner of a fixed rate (``mode="simulated"``):
  deterministic, whatever the machine's load.

The settings take turns within every (seed, condition), so that each meets the same machine load.
Reported per setting: the mean step reward over the episodes (nominal, pushes, all), the
real-time factor (median and range over the episodes) and the planner iterations per control step.

    python -m benchmarks.mpc_realtime --tasks hopper --seeds 3 4 5 6 7 8      # held-out seeds
    python -m benchmarks.mpc_realtime --tasks walker2d --seeds 3 4 5 --no-write

Writes the section ``mpc_realtime_TASK`` of docs/results.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, markdown_table, write_section  # noqa: E402

SETTINGS = {
    "sync 32 x 2 (today's benchmarks/mpc.py setting)": dict(mode="sync", num_samples=32, diffusion_steps=2),
    "sync 30 x 1, keep-best sample": dict(mode="sync", num_samples=30, diffusion_steps=1, keep_best="sample"),
    "sync 16 x 1, keep-best sample, planner timestep x2": dict(
        mode="sync", num_samples=16, diffusion_steps=1, keep_best="sample", coarse=2
    ),
    "async 30 x 1, keep-best sample": dict(mode="async", num_samples=30, diffusion_steps=1, keep_best="sample"),
    "async 16 x 1, keep-best sample, planner timestep x2 (torch-mbd mpc's default)": dict(
        mode="async", num_samples=16, diffusion_steps=1, keep_best="sample", coarse=2
    ),
    "async 16 x 1, keep-best sample, planner timestep x2, at half real time": dict(
        mode="async", num_samples=16, diffusion_steps=1, keep_best="sample", coarse=2, speed=0.5
    ),
    "simulated clock: 16 x 1, keep-best sample, planner timestep x2, 1.6 plans / control step": dict(
        mode="simulated", num_samples=16, diffusion_steps=1, keep_best="sample", coarse=2, plans_per_step=1.6
    ),
    "simulated clock: 16 x 1, keep-best sample, planner timestep x2, 2.5 plans / control step": dict(
        mode="simulated", num_samples=16, diffusion_steps=1, keep_best="sample", coarse=2, plans_per_step=2.5
    ),
    "simulated clock: 16 x 1, keep-best sample, planner timestep x2, 4 plans / control step": dict(
        mode="simulated", num_samples=16, diffusion_steps=1, keep_best="sample", coarse=2, plans_per_step=4.0
    ),
}
"""Controllers compared (``MPC`` options plus ``mode``, ``coarse`` (:func:`dynamics.closed_loop.coarse_task`'s
factor), for ``async`` ``speed`` (default 1: real time), for ``simulated`` ``plans_per_step``); the first
is the reference."""

CONDITIONS = ("nominal", "pushes")


def temperature_arg(text: str) -> float | str:
    """``--temperature``: a number ``> 0`` or ``"auto"``."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0 or 'auto', got {text!r}")
    return value


def with_temperature(settings: dict, temperature: float | str | None) -> dict:
    """``settings`` with ``temperature`` (``MPC``'s option) added to each, and to each name (so that a
    store keeps the episodes of different temperatures apart); ``None``: ``settings`` unchanged (the
    ``MPC`` default)."""
    if temperature is None:
        return settings
    return {f"{name}, temperature {temperature}": dict(setting, temperature=temperature) for name, setting in settings.items()}


def episode(task: str, seed: int, condition: str, setting: dict, horizon: int, push_every: int):
    """One closed-loop episode; returns the :class:`~torch_mbd.async_mpc.ClosedLoopResult`."""
    from dynamics.closed_loop import MujocoSystem, coarse_task, push_schedule
    from dynamics.model import MujocoModel
    from dynamics.tasks import get_task
    from torch_mbd import MPC
    from torch_mbd.async_mpc import run_closed_loop

    options = dict(setting)
    mode, coarse, speed = options.pop("mode"), options.pop("coarse", 1), options.pop("speed", 1.0)
    plans_per_step = options.pop("plans_per_step", None)
    fine = get_task(task)
    planner = MujocoModel(coarse_task(fine, coarse), seed=seed)
    system = MujocoSystem(planner, task=fine)
    controller = MPC(planner, horizon=horizon, initial_steps=30, warm_noise=0.2, seed=seed, **options)
    pushes = push_schedule(task, fine.horizon, push_every, seed) if condition == "pushes" else {}

    def disturb(t, sys_):
        if t in pushes:
            sys_.push(*pushes[t])

    return run_closed_loop(controller, system, fine.horizon, system.control_dt, mode=mode,
                           speed=speed if mode == "async" else None, disturb=disturb, plans_per_step=plans_per_step)


class Episode(dict):
    """One stored episode: ``reward``, ``realtime_factor``, ``iterations_per_step`` (attribute access)."""

    __getattr__ = dict.__getitem__


def run(task: str, seeds: list[int], settings: dict, horizon: int, push_every: int, quiet: bool = False,
        store: dict | None = None) -> dict:
    """``{setting: [(seed, condition, episode), ...]}``, the settings taking turns; each episode is also
    kept in ``store[task][setting]["seed/condition"]`` when ``store`` is given."""
    rows: dict[str, list] = {name: [] for name in settings}
    for seed in seeds:
        for condition in CONDITIONS:
            for name, setting in settings.items():
                got = episode(task, seed, condition, setting, horizon, push_every)
                result = Episode(reward=got.reward, realtime_factor=got.realtime_factor,
                                 iterations_per_step=got.iterations_per_step)
                rows[name].append((seed, condition, result))
                if store is not None:
                    store.setdefault(task, {}).setdefault(name, {})[f"{seed}/{condition}"] = dict(result)
                if not quiet:
                    print(f"{task} seed {seed} {condition:7s} {name:55s} reward {result.reward:7.3f}  "
                          f"RTF {result.realtime_factor:5.2f}  it/step {result.iterations_per_step:4.2f}", flush=True)
    return rows


def table(rows: dict) -> str:
    """Markdown: setting, reward nominal / pushes / all, real-time factor median (range), iterations per step."""
    out = []
    for name, episodes in rows.items():
        by = {c: [r.reward for _, cond, r in episodes if cond == c] for c in CONDITIONS}
        rtf = [r.realtime_factor for _, _, r in episodes]
        its = [r.iterations_per_step for _, _, r in episodes]
        out.append([
            name,
            f"{statistics.mean(by['nominal']):.3f}", f"{statistics.mean(by['pushes']):.3f}",
            f"{statistics.mean(by['nominal'] + by['pushes']):.3f}",
            "- (simulated clock)" if name.startswith("simulated") else f"{statistics.median(rtf):.2f} ({min(rtf):.2f}-{max(rtf):.2f})",
            f"{statistics.median(its):.2f}",
        ])  # fmt: skip
    return markdown_table(
        ["controller", "reward nominal", "reward pushes", "reward all", "real-time factor, median (range)",
         "planner iterations / control step"],
        out,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["hopper", "walker2d"], choices=("hopper", "walker2d"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[3, 4, 5, 6, 7, 8],
                        help="seeds of the initial states, the samplers and the pushes (default: held-out 3-8)")
    parser.add_argument("--settings", nargs="+", type=int, default=None, metavar="I",
                        help=f"indices into the settings (default: all {len(SETTINGS)}; 0 is the reference)")
    parser.add_argument("--horizon", type=int, default=20)
    parser.add_argument("--temperature", type=temperature_arg, default=None, metavar="T",
                        help="MPC's temperature for every setting: a number or 'auto' (default: MPC's default, 0.1)")
    parser.add_argument("--push-every", type=int, default=10)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--store", type=Path, default=None, metavar="JSON",
                        help="keep every episode in this JSON file and build the table from all it holds for the "
                        "chosen settings (to run the seeds in several shorter commands)")
    parser.add_argument("--table-only", action="store_true", help="with --store: run nothing, print (and write) its table")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/results.md")
    args = parser.parse_args(argv)
    names = list(SETTINGS)
    chosen = with_temperature({names[i]: SETTINGS[names[i]] for i in (args.settings or range(len(names)))}, args.temperature)
    cmd = "python -m benchmarks.mpc_realtime " + " ".join(argv if argv is not None else sys.argv[1:])
    for task in args.tasks:
        start = time.perf_counter()
        store = json.loads(args.store.read_text()) if args.store and args.store.exists() else {}
        if args.table_only and not args.store:
            parser.error("--table-only needs --store")
        seeds = [] if args.table_only else args.seeds
        rows = run(task, seeds, chosen, args.horizon, args.push_every, args.quiet, store)
        if args.store:
            if not args.table_only:
                args.store.write_text(json.dumps(store, indent=1))
            rows = {
                name: [(int(k.split("/")[0]), k.split("/")[1], Episode(v)) for k, v in sorted(store[task][name].items())]
                for name in chosen
            }
        seeds = sorted({seed for episodes in rows.values() for seed, _, _ in episodes})
        text = table(rows)
        total = time.perf_counter() - start
        print(text)
        print(f"{task}: {total:.0f} s")
        if args.no_write:
            continue
        write_section(
            f"mpc_realtime_{task}",
            f"## Real-time MPC: {task}\n\n`{cmd.strip()}` on {machine()}, shared with other developers' jobs "
            f"(the real-time factors move with that load; the rewards of the sync rows do not): seeds "
            f"{' '.join(map(str, seeds))}, nominal and with a push every {args.push_every} control steps, "
            f"horizon {args.horizon}, one episode of the task's horizon each; this command {total:.0f} s."
            f"{' Episodes from ' + str(args.store) + ', filled by several such commands.' if args.store else ''}\n\n{text}",
        )
        print(f"wrote docs/results.md (section mpc_realtime_{task})")


if __name__ == "__main__":
    main()
