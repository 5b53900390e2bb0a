"""Car U-maze navigation with and without an RRT demonstration (paper, section 5.2 and Fig. 4b).

For each seed, MBD plans the bicycle car's 50 controls from the start, in front of the U's open
side, to the goal behind its closed side, once from scratch and once steered by an RRT
demonstration of the same seed (``Car2D.demonstration("rrt", seed=...)``). Settings are the
``torch-mbd plan car2d`` defaults (the paper's: 100 diffusion steps, temperature 0.1; 256
samples). A run succeeds when its path *ends* in the goal region (the final position within
``goal_radius`` of the goal, ``Car2D.reached_goal``) and never enters the obstacle; the table
also counts the feasible runs that only pass through the goal region at some step
(``Car2D.passed_goal``), and gives the mean final distance to the goal and the mean final speed.

Run::

    python -m benchmarks.car_umaze                      # 50 seeds, writes docs/results.md
    python -m benchmarks.car_umaze --seeds 4 --no-write

Flags: ``--seeds`` (count, seeds 0..k-1), ``--jobs`` (seeds in parallel processes; the results do not
depend on it), ``--samples``, ``--steps``, ``--temperature``,
``--demo-sigma`` (default ``Car2D``'s), ``--no-write`` (print only; leave docs/ alone). Writes the
section ``car_umaze`` of docs/results.md and docs/figures/car_umaze.png.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure_path, machine, markdown_table, write_section
from dynamics.car import DEFAULT_DEMO_SIGMA, Car2D
from torch_mbd import plan

MODES = ("without demo", "with RRT demo")


def run_one(car: Car2D, seed: int, demo: bool, args) -> dict:
    """One plan; the demonstration (when used) is computed inside the timed region."""
    start = time.perf_counter()
    options = car.demonstration("rrt", seed=seed, demo_sigma=args.demo_sigma) if demo else {}
    res = plan(
        car,
        num_samples=args.samples,
        num_steps=args.steps,
        temperature=args.temperature,
        seed=seed,
        progress=False,
        preset="paper",  # the paper's algorithm (section 5.2), as the published table
        **options,
    )
    elapsed = time.perf_counter() - start
    positions = res.states[:, :2]
    feasible = bool(res.feasible)
    return {
        "seed": seed,
        "demo": demo,
        "reward": res.reward,
        "feasible": feasible,
        "ended": bool(car.reached_goal(res.states)),
        "passed": bool(car.passed_goal(res.states)),
        "final_distance": float(car.goal_distance(res.states)[-1]),
        "final_speed": abs(float(res.states[-1, 3])),
        "arrival": first_step_in_goal(car, res.states),
        "horizon": car.horizon,
        "time": elapsed,
        "path": torch.cat([car.initial_state[None, :2], positions]).cpu(),
        "demo_path": None if not demo else options["demo"][:, :2].cpu(),
    }


def run_seed(seed: int, args) -> list[dict]:
    """Both modes of one seed, interleaved so that machine load hits both alike."""
    if args.jobs > 1:
        torch.set_num_threads(1)
    car = Car2D()
    return [run_one(car, seed, mode == MODES[1], args) for mode in MODES]


def arrival_range(runs: list[dict]) -> str:
    """``min-max`` of the first step in the goal region over the feasible runs that end there."""
    steps = [r["arrival"] for r in runs if r["ended"] and r["feasible"]]
    return "-" if not steps else f"{min(steps)}-{max(steps)} of {runs[0]['horizon']}"


def first_step_in_goal(car: Car2D, states: torch.Tensor) -> int | None:
    """The first control step (1-based) whose position lies in the goal region, or ``None``."""
    inside = torch.nonzero(car.goal_distance(states) <= car.goal_radius)
    return int(inside[0, 0]) + 1 if len(inside) else None


def summarize(runs: list[dict]) -> list[str]:
    """One table row: ends in the goal, passes it, feasible, final distance and speed, reward mean +- std, time."""
    k = len(runs)
    rewards = torch.tensor([r["reward"] for r in runs], dtype=torch.float64)
    std = float(rewards.std()) if k > 1 else 0.0
    count = lambda key: sum(r[key] and r["feasible"] for r in runs)
    return [
        f"{count('ended')}/{k} ({100 * count('ended') / k:.0f} %)",
        f"{count('passed')}/{k}",
        f"{sum(r['feasible'] for r in runs)}/{k}",
        f"{sum(r['final_distance'] for r in runs) / k:.2f}",
        f"{sum(r['final_speed'] for r in runs) / k:.2f}",
        arrival_range(runs),
        f"{float(rewards.mean()):.3f} ± {std:.3f}",
        f"{sum(r['time'] for r in runs) / k:.2f}",
    ]


HEADER = [
    "",
    "success: ends in the goal, feasible",
    "passes through the goal, feasible",
    "feasible",
    "mean final distance to goal (m)",
    "mean final speed (m/s)",
    "first step in the goal region (runs that end there)",
    "mean step reward",
    "s / run",
]


def draw(results: dict, path: Path) -> Path:
    """Two panels: the final paths of every seed without and with the demonstration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    car = Car2D()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, mode in zip(axes, MODES):
        car.draw(ax)
        runs = results[mode]
        for r in runs:
            if r["demo_path"] is not None:
                d = torch.cat([car.initial_state[None, :2], r["demo_path"]])
                ax.plot(d[:, 0], d[:, 1], "--", color="tab:orange", lw=0.8, alpha=0.35)
            ok = r["ended"] and r["feasible"]
            color = "tab:blue" if ok else ("tab:red" if not r["feasible"] else "tab:purple")
            ax.plot(r["path"][:, 0], r["path"][:, 1], color=color, lw=1.2, alpha=0.7)
        wins = sum(r["ended"] and r["feasible"] for r in runs)
        ax.set_title(
            f"MBD {mode}: {wins}/{len(runs)} end in the goal\n"
            "(blue: success, purple: feasible but ends outside the goal, red: enters the obstacle)",
            fontsize=8,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, default=50, help="number of seeds 0..k-1 (default 50)")
    p.add_argument("--samples", type=int, default=256, help="rollouts per diffusion step (default 256, the CLI's)")
    p.add_argument("--steps", type=int, default=100, help="diffusion steps (default 100, the paper's)")
    p.add_argument("--temperature", type=float, default=0.1, help="temperature lambda (default 0.1, the paper's)")
    p.add_argument("--demo-sigma", type=float, default=DEFAULT_DEMO_SIGMA, help="demonstration likelihood std (m)")
    p.add_argument("--jobs", type=int, default=1, help="seeds planned in parallel processes (default 1)")
    p.add_argument("--no-write", action="store_true", help="print the table only; leave docs/ alone")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if (
        args.seeds < 1
        or args.samples < 1
        or args.steps < 1
        or not math.isfinite(args.temperature)
        or args.temperature <= 0
    ):
        raise SystemExit("--seeds, --samples and --steps must be >= 1 and --temperature > 0")
    if args.jobs < 1:
        raise SystemExit("--jobs must be >= 1")
    car = Car2D()
    results = {mode: [] for mode in MODES}
    if args.jobs == 1:
        per_seed = (run_seed(seed, args) for seed in range(args.seeds))
    else:  # one process per seed at a time, one torch thread each; results in seed order
        pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"))
        per_seed = pool.map(run_seed, range(args.seeds), [args] * args.seeds)
    for seed, runs in enumerate(per_seed):
        for mode, r in zip(MODES, runs):
            results[mode].append(r)
            print(
                f"seed {seed:2d} {mode:14s} reward {r['reward']:.3f} feasible {r['feasible']!s:5s} "
                f"ends in goal {r['ended']!s:5s} passes {r['passed']!s:5s} final distance {r['final_distance']:.2f} m "
                f"speed {r['final_speed']:.2f} m/s first in goal at step {r['arrival']} {r['time']:.1f} s",
                flush=True,
            )
    if args.jobs > 1:
        pool.shutdown()
    table = markdown_table(HEADER, [[mode] + summarize(results[mode]) for mode in MODES])
    print(table)
    if args.no_write:
        return
    fig = draw(results, figure_path("car_umaze.png"))
    threads = os.environ.get("OMP_NUM_THREADS")
    command = (f"OMP_NUM_THREADS={threads} " if threads else "") + "python -m benchmarks.car_umaze"
    command += "" if argv is None else " " + " ".join(argv)
    text = f"""## Car U-maze with RRT demonstrations (paper, section 5.2)

`{command}` ({args.seeds} seeds 0..{args.seeds - 1}; n = {args.samples} samples, {args.steps} diffusion
steps, temperature {args.temperature}, H = {car.horizon}, demo sigma {args.demo_sigma} m) on {machine()},
{torch.get_num_threads()} torch thread(s), load average {os.getloadavg()[0]:.1f} at the end (a machine shared with
other jobs: the times are of that load).

Success: the final position lies within {car.goal_radius} m of the goal (`Car2D.reached_goal`, what
`torch-mbd plan` prints as "goal reached") and the path never enters the U-shaped obstacle. "Passes
through": some position is within {car.goal_radius} m (`Car2D.passed_goal`), feasible. The reward: the
step rewards (distance to the goal, clearance, speed within {car.stop_radius} m of the goal, control; the
last step also -{car.terminal_weight} x its distance to the goal), averaged over the H steps. Time: one
`torch_mbd.plan` call (and the RRT demonstration) per run. The other Car2D rows of this page (MPC,
trajectory optimization, noise convention) were measured with the distance-only reward that came
before the terminal and stop terms (`Car2D(terminal_weight=0, stop_weight=0)`).

{table}

![Final paths of every seed, without (left) and with (right) the RRT demonstration](figures/{fig.name})
"""
    print(f"wrote {write_section('car_umaze', text)} and {fig}")


if __name__ == "__main__":
    main()
