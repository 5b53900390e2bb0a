"""The starter tasks (pendulum, cart-pole, point mass): how often MBD solves them, and how fast they roll out.

For each task of :mod:`dynamics.classic` and each seed, ``plan(model, num_samples, num_steps,
seed)`` with the default preset, at the task's own budget (what ``torch-mbd plan TASK`` uses)
and at the tiny budget of ``tests/test_classic.py``. A run succeeds when the task's
``reached_goal`` holds for the final state (the swing-ups: within 0.2 rad of upright and slower
than 1 rad/s; the point mass: within 0.1 m of the goal and slower than 0.2 m/s). The table
gives the success count, the median final error (rad from upright, or m from the goal) with
its range, and the median time per plan. A second table times one rollout of 256 samples
over the task's horizon (5 repeats, one torch thread), per control step.

Run::

    python -m benchmarks.starter_tasks                 # 5 seeds, writes docs/results.md
    python -m benchmarks.starter_tasks --seeds 2 --no-write

Flags: ``--seeds`` (count, seeds 0..k-1), ``--no-write`` (print only). Writes the section
``starter_tasks`` of docs/results.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, markdown_table, write_section
from dynamics.classic import CartPole, Pendulum, PointMass
from torch_mbd import plan

# task -> (model class, the tiny budget of tests/test_classic.py)
TASKS = {"pendulum": (Pendulum, (256, 50)), "cart_pole": (CartPole, (256, 50)), "point_mass": (PointMass, (64, 20))}


def final_error(model, final: torch.Tensor) -> float:
    """Radians from upright (swing-ups) or metres from the goal (point mass) of a final state ``[nx]``."""
    if hasattr(model, "upright_error"):
        return abs(float(model.upright_error(final)))
    return float(model.goal_distance(final))


def solve_rows(seeds: int, budgets: dict | None = None) -> list[list[str]]:
    """One row per task and budget: successes, median [min, max] final error, median seconds per plan.

    ``budgets`` replaces the two budgets, ``{"task default": (samples, steps), "test": (samples, steps)}``
    (the tests run the table at a few samples).
    """
    rows = []
    for name, (cls, tiny) in TASKS.items():
        for label, (samples, steps) in (("task default", (cls.num_samples, cls.num_steps)), ("test", tiny)):
            if budgets is not None:
                samples, steps = budgets[label]
            model = cls()
            solved, errors, times = 0, [], []
            for seed in range(seeds):
                start = time.perf_counter()
                result = plan(model, num_samples=samples, num_steps=steps, seed=seed, progress=False)
                times.append(time.perf_counter() - start)
                solved += bool(model.reached_goal(result.states))
                errors.append(final_error(model, result.states[-1]))
            rows.append([
                name, f"{samples} x {steps} ({label})", f"{solved}/{seeds}",
                f"{statistics.median(errors):.3f} [{min(errors):.3f}, {max(errors):.3f}]", f"{statistics.median(times):.1f}",
            ])
            print(" | ".join(rows[-1]), flush=True)
    return rows


def rollout_rows(repeats: int = 5, samples: int = 256) -> list[list[str]]:
    """One row per task: milliseconds per control step of a ``samples``-sample rollout, median [min, max]."""
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, (cls, _) in TASKS.items():
            model = cls()
            actions = torch.rand(samples, model.horizon, model.action_dim, generator=torch.Generator().manual_seed(0)) * 2 - 1
            model.rollout(actions)  # warm-up
            per_step = []
            for _ in range(repeats):
                start = time.perf_counter()
                model.rollout(actions)
                per_step.append(1000 * (time.perf_counter() - start) / model.horizon)
            rows.append([name, str(model.horizon), f"{statistics.median(per_step):.2f} [{min(per_step):.2f}, {max(per_step):.2f}]"])
    finally:
        torch.set_num_threads(threads)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..k-1 per task and budget")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    solve = solve_rows(args.seeds)
    roll = rollout_rows()
    text = "\n\n".join([
        "### Starter tasks: pendulum, cart-pole, point mass",
        (f"`python -m benchmarks.starter_tasks --seeds {args.seeds}` on {machine()} (shared with other work). "
        "MBD with the default preset; success: the task's `reached_goal` on the final state (swing-ups: within "
        "0.2 rad of upright, slower than 1 rad/s; point mass: within 0.1 m of the goal, slower than 0.2 m/s). "
        "Final error: rad from upright, or m from the goal, median [min, max] over the seeds."),
        markdown_table(["task", "samples x steps", "solved", "final error", "s per plan (median)"], solve),
        "One rollout of 256 samples over the task's horizon, one torch thread, 5 repeats: ms per control step, median [min, max].",
        markdown_table(["task", "H", "ms per control step"], roll),
    ])
    print(text)
    if not args.no_write:
        print(f"wrote {write_section('starter_tasks', text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
