"""Trajectory optimization benchmark (paper, Tables 2 and 3): MBD vs CEM, MPPI and CMA-ES.

Every method plans an open-loop control sequence for the same task with the same budget:
``n`` rollouts per iteration (CMA-ES: population size ``n``) for ``--steps`` iterations (MBD:
diffusion steps), the same action bounds ``[-1, 1]``, the same initial guess (zeros, the
paper's ``Y^(N) = 0``), the same initial state and the same seed. The score of a run is the
mean step reward of the final plan's rollout (the paper's "average step reward"); the time is
the wall time of the whole ``torch_mbd.plan`` call. Methods are interleaved inside each seed,
so a change in machine load hits all of them alike.

Hyperparameters default to the paper's Table 4 (appendix A.4.2): horizon 50 (push-T 40), 100
diffusion steps, ``n`` = 100 (humanoid running 300, push-T 200), temperature 0.1 (half-cheetah
0.4, push-T 0.2). The car (not in Table 4) uses horizon 50, ``n`` = 100, temperature 0.1. The
temperature is MBD's and MPPI's (both weight samples by ``softmax((R - mean R) / std R / lambda)``);
CEM keeps the best 10 %, CMA-ES is pycma with its defaults. Every method starts from the same
Gaussian: mean = the initial guess, standard deviation = MBD's first noise level.

Run the paper's setting (hours on a CPU; minutes on a GPU with ``--backend warp --device cuda``)::

    python -m benchmarks.trajopt --seeds 8

Smaller runs (each run is stored in ``docs/figures/trajopt_runs.json``; later runs of the same
task, method and seed replace earlier ones, so a table can be filled task by task)::

    python -m benchmarks.trajopt --tasks half_cheetah push_t car2d --samples 64 --seeds 2
    python -m benchmarks.trajopt --tasks hopper --samples 32 --steps 40 --seeds 2 --no-write

Flags: ``--tasks``, ``--methods`` (mbd, cem, mppi, cmaes), ``--seeds`` (count, seeds 0..k-1),
``--samples`` (all tasks; default Table 4's per task), ``--steps``, ``--horizon``,
``--temperature`` (override Table 4), ``--backend`` (mujoco, warp, mjx), ``--device``,
``--reset-noise`` (initial-state noise drawn per seed, in units of the task's scale; default 1),
``--convergence`` (two tasks for the convergence figure), ``--fresh`` (forget stored runs),
``--no-write`` (print only; leave docs/ alone). Writes the section ``trajopt`` of
docs/results.md, docs/figures/trajopt_rewards.png and docs/figures/trajopt_convergence.png.
"""

from __future__ import annotations

# One OpenBLAS thread (fair CMA-ES timings) is set by benchmarks/__init__.py, before numpy loads.

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure_path, machine, markdown_table, write_section  # noqa: E402
from torch_mbd import plan  # noqa: E402
from torch_mbd.progress import progress_bar  # noqa: E402

TASKS = ["hopper", "half_cheetah", "walker2d", "ant", "humanoid_standup", "humanoid_run", "push_t", "car2d"]
METHODS = ["mbd", "cem", "mppi", "cmaes"]
LABELS = {"mbd": "MBD", "cem": "CEM", "mppi": "MPPI", "cmaes": "CMA-ES"}
TITLES = {
    "hopper": "Hopper",
    "half_cheetah": "Half Cheetah",
    "walker2d": "Walker2D",
    "ant": "Ant",
    "humanoid_standup": "Humanoid Standup",
    "humanoid_run": "Humanoid Running",
    "push_t": "Push T",
    "car2d": "Car2D",
}

# The paper's Table 4 (appendix A.4.2): horizon, sample number, temperature. car2d is not in
# the table: horizon 50 as in A.4.4, n and temperature the most common values of the table.
PAPER = {
    "ant": dict(horizon=50, samples=100, temperature=0.1),
    "half_cheetah": dict(horizon=50, samples=100, temperature=0.4),
    "hopper": dict(horizon=50, samples=100, temperature=0.1),
    "humanoid_standup": dict(horizon=50, samples=100, temperature=0.1),
    "humanoid_run": dict(horizon=50, samples=300, temperature=0.1),
    "walker2d": dict(horizon=50, samples=100, temperature=0.1),
    "push_t": dict(horizon=40, samples=200, temperature=0.2),
    "car2d": dict(horizon=50, samples=100, temperature=0.1),
}
# The paper's Table 2 (mean step reward, 8 seeds), for the side-by-side column.
PAPER_REWARDS = {
    "hopper": dict(cmaes=1.12, cem=0.65, mppi=0.91, mbd=1.53),
    "half_cheetah": dict(cmaes=0.44, cem=0.22, mppi=0.20, mbd=2.31),
    "ant": dict(cmaes=1.18, cem=0.85, mppi=0.33, mbd=3.80),
    "walker2d": dict(cmaes=0.83, cem=1.06, mppi=0.90, mbd=2.63),
    "humanoid_standup": dict(cmaes=0.58, cem=0.47, mppi=0.53, mbd=0.99),
    "humanoid_run": dict(cmaes=0.60, cem=0.41, mppi=0.59, mbd=2.92),
    "push_t": dict(cmaes=0.39, cem=0.25, mppi=-0.13, mbd=0.67),
}
RUNS = "trajopt_runs.json"


def make_model(task: str, seed: int, args):
    """The rollout model of ``task`` on ``args.backend`` / ``args.device``, initial state drawn from ``seed``."""
    if task == "car2d":
        from dynamics.car import Car2D

        return Car2D(device=args.device)
    from dynamics.model import MujocoModel

    return MujocoModel(
        task, backend=args.backend, device=args.device, reset_noise=args.reset_noise, seed=seed
    )


def settings(task: str, args) -> dict:
    """Horizon, sample count, temperature and step count of ``task``: Table 4 unless overridden."""
    paper = PAPER[task]
    return dict(
        horizon=args.horizon or paper["horizon"],
        samples=args.samples or paper["samples"],
        temperature=args.temperature or paper["temperature"],
        steps=args.steps,
    )


def estimate_rewards(model, history: torch.Tensor) -> list[float]:
    """Mean step reward of the estimate after each step: ``history [K, H, nu] -> K`` floats.

    One batched rollout of the ``K`` estimates, outside the timed run. An infeasible estimate
    (a crash into the car's obstacle, a diverged simulation) is reported as NaN.
    """
    with torch.no_grad():
        traj = model.rollout(history)
    rewards = traj.rewards.double().mean(-1)
    if traj.feasible is not None:
        rewards = torch.where(traj.feasible, rewards, torch.full_like(rewards, math.nan))
    return rewards.cpu().tolist()


def run_one(model, task: str, method: str, seed: int, cfg: dict) -> dict:
    """One planning run; returns its record (reward, time, convergence curves)."""
    res = plan(
        model,
        horizon=cfg["horizon"],
        num_samples=cfg["samples"],
        num_steps=cfg["steps"],
        temperature=cfg["temperature"],
        seed=seed,
        progress=False,
        method=method,
    )
    return dict(
        task=task,
        method=method,
        seed=seed,
        reward=res.reward,
        feasible=bool(res.feasible.all()),
        time=res.time,
        curve=estimate_rewards(model, res.history),
        sample_curve=res.reward_history.double().tolist(),
        **cfg,
    )


def warm_up(model, methods: list[str]) -> None:
    """One tiny run per method (imports, thread pools, first allocations) outside the timings."""
    for method in methods:
        plan(model, num_samples=4, num_steps=1, seed=0, progress=False, method=method)


def run_grid(args, command: str) -> list[dict]:
    """Run every task x seed x method (methods innermost); returns the new records."""
    records = []
    total = len(args.tasks) * args.seeds * len(args.methods)
    with progress_bar(total, "trajopt") as bar:
        for task in args.tasks:
            cfg = settings(task, args)
            for seed in range(args.seeds):
                model = make_model(task, seed, args)
                if seed == 0:
                    warm_up(model, args.methods)
                for method in args.methods:
                    rec = run_one(model, task, method, seed, cfg)
                    rec.update(backend=args.backend, device=str(args.device), machine=machine(), command=command)
                    records.append(rec)
                    bar.update()
                    print(
                        f"  {task:16s} seed {seed} {LABELS[method]:6s} reward {rec['reward']:+.4f}"
                        f"{'' if rec['feasible'] else ' (infeasible)'}  {rec['time']:.1f} s",
                        file=sys.stderr,
                    )
    return records


def load_runs(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def merge_runs(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with every run of the same (task, method, seed) as a new one replaced by it."""
    keys = {(r["task"], r["method"], r["seed"]) for r in new}
    kept = [r for r in old if (r["task"], r["method"], r["seed"]) not in keys]
    return kept + new


def group(records: list[dict]) -> dict:
    """``{(task, method): [records sorted by seed]}``."""
    out: dict = {}
    for r in sorted(records, key=lambda r: (r["task"], r["method"], r["seed"])):
        out.setdefault((r["task"], r["method"]), []).append(r)
    return out


def _stats(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=False)) if len(values) > 1 else 0.0


def present(records: list[dict]) -> tuple[list[str], list[str]]:
    """The tasks and methods that have records, in the canonical order."""
    tasks = [t for t in TASKS if any(r["task"] == t for r in records)]
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    return tasks, methods


def budget_cell(runs: list[dict]) -> str:
    r = runs[0]
    return f"H={r['horizon']}, n={r['samples']}, {r['steps']} steps, λ={r['temperature']:g}, {len(runs)} seeds"


def reward_table(records: list[dict]) -> str:
    """Markdown: mean step reward ± std over seeds per task and method (bold: best mean)."""
    tasks, methods = present(records)
    runs = group(records)
    header = ["task", "budget"] + [LABELS[m] for m in methods] + ["paper (MBD / best baseline)"]
    rows = []
    for task in tasks:
        stats = {m: _stats([r["reward"] for r in runs[(task, m)]]) for m in methods if (task, m) in runs}
        best = max(stats, key=lambda m: stats[m][0])
        cells = []
        for m in methods:
            if m not in stats:
                cells.append("-")
                continue
            infeasible = sum(not r["feasible"] for r in runs[(task, m)])
            text = f"{stats[m][0]:.3f} ± {stats[m][1]:.3f}" + (f" ({infeasible} infeasible)" if infeasible else "")
            cells.append(f"**{text}**" if m == best else text)
        paper = PAPER_REWARDS.get(task)
        ref = "-" if paper is None else f"{paper['mbd']:.2f} / {max(v for k, v in paper.items() if k != 'mbd'):.2f}"
        any_runs = next(runs[(task, m)] for m in methods if (task, m) in runs)
        rows.append([TITLES[task], budget_cell(any_runs)] + cells + [ref])
    return markdown_table(header, rows)


def time_table(records: list[dict]) -> str:
    """Markdown: mean wall time per run (s) per task and method, and MBD's time over CEM's and MPPI's."""
    tasks, methods = present(records)
    runs = group(records)
    ratios = [m for m in ("cem", "mppi") if m in methods and "mbd" in methods]
    header = ["task"] + [f"{LABELS[m]} (s)" for m in methods] + [f"MBD / {LABELS[m]}" for m in ratios]
    rows = []
    for task in tasks:
        mean = {m: _stats([r["time"] for r in runs[(task, m)]])[0] for m in methods if (task, m) in runs}
        cells = [f"{mean[m]:.2f}" if m in mean else "-" for m in methods]
        cells += [f"{mean['mbd'] / mean[m]:.3f}" if "mbd" in mean and m in mean else "-" for m in ratios]
        rows.append([TITLES[task]] + cells)
    return markdown_table(header, rows)


def bar_chart(records: list[dict], path: Path) -> Path:
    """Grouped bars: mean step reward (± std over seeds) per task, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, methods = present(records)
    runs = group(records)
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(tasks) + 2), 3.8))
    for k, m in enumerate(methods):
        xs, means, stds = [], [], []
        for t, task in enumerate(tasks):
            if (task, m) in runs:
                mu, sd = _stats([r["reward"] for r in runs[(task, m)]])
                xs.append(t + (k - (len(methods) - 1) / 2) * width)
                means.append(mu)
                stds.append(sd)
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=LABELS[m])
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([TITLES[t] for t in tasks], rotation=20, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_ylabel("mean step reward of the final plan")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncol=len(methods), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def convergence_plot(records: list[dict], tasks: list[str], path: Path) -> Path | None:
    """Mean step reward of the estimate vs step, per method (mean over seeds, band = ± std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = group(records)
    tasks = [t for t in tasks if any((t, m) in runs for m in METHODS)]
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for m in METHODS:
            if (task, m) not in runs:
                continue
            curves = torch.tensor([r["curve"] for r in runs[(task, m)]], dtype=torch.float64)
            mean = curves.nanmean(0)
            std = (curves - mean).square().nanmean(0).sqrt()
            steps = torch.arange(1, curves.shape[1] + 1)
            ax.plot(steps, mean, label=LABELS[m])
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        r0 = next(runs[(task, m)][0] for m in METHODS if (task, m) in runs)
        ax.set_title(f"{TITLES[task]} (n={r0['samples']})")
        ax.set_xlabel("iteration (MBD: diffusion step)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean step reward of the estimate")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(records: list[dict], args) -> str:
    """The markdown of the ``trajopt`` section of docs/results.md."""
    bars = bar_chart(records, figure_path("trajopt_rewards.png"))
    conv = convergence_plot(records, args.convergence, figure_path("trajopt_convergence.png"))
    commands = []
    for r in records:
        line = f"`{r['command']}` ({r['backend']} backend, device {r['device']}) on {r['machine']}"
        if line not in commands:
            commands.append(line)
    ran = "\n".join(f"- {c}" for c in commands)
    conv_md = "" if conv is None else f"\n![Convergence: reward of the estimate vs iteration](figures/{conv.name})\n"
    return f"""## Trajectory optimization: MBD vs CEM, MPPI and CMA-ES (paper, Tables 2 and 3)

Produced by (runs are stored in `docs/figures/{RUNS}`, one command may have filled only some rows):

{ran}

Mean step reward of the final plan (mean ± std over seeds; higher is better). Equal budget in
every row: `n` rollouts per iteration (CMA-ES: population `n`) for the same number of
iterations, bounds `[-1, 1]`, initial guess 0, the same initial state and seed; λ is MBD's
and MPPI's temperature; CEM keeps the best 10 %; CMA-ES is pycma. Bold: best mean. The last
column is the paper's Table 2 (n = 100-300, 100 steps, 8 seeds, on a GPU with Brax): compare
orderings, not values (different simulator, models and budget).

{reward_table(records)}

Wall time per run in seconds (the whole `torch_mbd.plan` call; methods interleaved per seed):

{time_table(records)}

![Mean step reward per task and method](figures/{bars.name})
{conv_md}"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--seeds", type=int, default=8, help="number of seeds (0..k-1)")
    p.add_argument("--samples", type=int, default=None, help="rollouts per iteration for every task (default: Table 4)")
    p.add_argument("--steps", type=int, default=100, help="iterations (MBD: diffusion steps)")
    p.add_argument("--horizon", type=int, default=None, help="control steps (default: Table 4)")
    p.add_argument("--temperature", type=float, default=None, help="MBD/MPPI temperature (default: Table 4)")
    p.add_argument("--backend", default="mujoco", choices=["mujoco", "warp", "mjx"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--reset-noise", type=float, default=1.0, help="initial-state noise per seed (task units)")
    p.add_argument("--convergence", nargs="+", default=["half_cheetah", "push_t"], choices=TASKS)
    p.add_argument("--fresh", action="store_true", help="forget the runs stored by earlier invocations")
    p.add_argument("--no-write", action="store_true", help="print the tables only; leave docs/ alone")
    args = p.parse_args(argv)
    for name in ("seeds", "samples", "steps", "horizon"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be >= 1, got {value}")
    if args.temperature is not None and not args.temperature > 0:
        p.error(f"--temperature must be > 0, got {args.temperature}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    command = "python -m benchmarks.trajopt " + " ".join(argv if argv is not None else sys.argv[1:])
    start = time.perf_counter()
    new = run_grid(args, command.strip())
    print(reward_table(new))
    print()
    print(time_table(new))
    print(f"total {time.perf_counter() - start:.0f} s on {machine()}")
    if args.no_write:
        return
    runs_path = figure_path(RUNS)
    records = merge_runs([] if args.fresh else load_runs(runs_path), new)
    runs_path.write_text(json.dumps(records, indent=0))
    write_section("trajopt", report(records, args))
    print(f"wrote docs/results.md (section trajopt), docs/figures/trajopt_*.png and {runs_path}")


if __name__ == "__main__":
    main()
