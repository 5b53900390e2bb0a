"""Trajectory optimization benchmark (paper, Tables 2 and 3): MBD vs our baselines and the paper's.

Every task x method x seed plans an open-loop control sequence with ``torch_mbd.plan`` at the
same budget: ``n`` rollouts per iteration (CMA-ES: population ``n``) for ``steps`` iterations
(MBD: diffusion steps), action bounds ``[-1, 1]``, initial guess zeros (the paper's
``Y^(N) = 0``), the same initial state (the task's reset noise drawn from the seed) and the same
sampling seed. The score of a run is the mean step reward of the final plan's rollout (the
paper's "average step reward"); the time is the wall time of the whole ``plan`` call.

Methods: ``mbd``; our standard baselines ``cem`` (diagonal CEM, best 10 %), ``mppi`` (MBD's
weights, fixed noise) and ``cmaes`` (pycma); and the paper's baselines as the authors ran them
(``mbd/planners/path_integral.py``; :mod:`torch_mbd.paper_baselines`): ``paper-mppi``,
``paper-cem`` and ``paper-cmaes``. Table 2's columns "CMA-ES", "CEM" and "MPPI" are those three.

The horizon and the temperature are read from each task at run time (``model.horizon``,
``model.temperature``: the authors' per-task values, Table 4). The budget is a ``--scale``:

* ``cpu`` (default): ``n`` = 128 and 100 iterations on every task, 4 seeds. Sized by timing
  rollouts on this project's 2-core CPU so that all 7 tasks x 7 methods x 4 seeds finish in at
  most about 4 hours (``--estimate`` times a few MBD steps per task and prints the projection
  for the grid you asked for, without running it).
* ``paper``: the authors' budget (their code's defaults, which produced Table 2): ``n`` = 2048
  samples per step (humanoid running 8192) and 100 diffusion steps (push-T 200, humanoid
  running 300). Table 4's "Sample Number" column is that step count, not ``n``. On a GPU::

      python -m benchmarks.trajopt --scale paper --device cuda --backend warp

Every run is stored as soon as it finishes in a JSON file keyed by task / method / seed
(``docs/figures/trajopt_table.json``, ``trajopt_table_paper.json`` for ``--scale paper``, or
``--runs PATH``); a later invocation skips every run already stored with the same settings
(budget, horizon, temperature, backend, reset noise), so an interrupted table resumes where it
stopped, task by task. The report covers every stored run.

Run::

    python -m benchmarks.trajopt                                   # the whole table, ~4 h on 2 cores
    python -m benchmarks.trajopt --estimate                        # how long that would take here
    python -m benchmarks.trajopt --tasks hopper --methods mbd paper-mppi --seeds 2
    python -m benchmarks.trajopt --tasks push_t --samples 16 --steps 5 --seeds 1 --runs /tmp/r.json --no-write

Flags: ``--tasks``, ``--methods``, ``--seeds`` (count, seeds 0..k-1), ``--scale`` (cpu, paper),
``--samples`` / ``--steps`` / ``--horizon`` / ``--temperature`` (override for every task),
``--backend`` (mujoco, warp, mjx), ``--device``, ``--reset-noise`` (initial-state noise per seed,
in units of the task's scale; default 1), ``--runs`` (results JSON), ``--fresh`` (ignore and
replace stored runs), ``--convergence`` (tasks of the convergence figure), ``--estimate``,
``--no-write`` (leave docs/results.md and the figures alone; the runs file is still written).
Writes the section ``trajopt`` of docs/results.md, docs/figures/trajopt_rewards.png and
docs/figures/trajopt_convergence.png.
"""

from __future__ import annotations

# One OpenBLAS thread (fair CMA-ES timings) is set by benchmarks/__init__.py, before numpy loads.

import argparse
import math
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure_path, machine, markdown_table, write_section  # noqa: E402
from benchmarks import _runs  # noqa: E402
from dynamics.backends import BACKENDS  # noqa: E402
from torch_mbd import METHODS as METHOD_TABLE, plan  # noqa: E402

# Table 2's tasks in its order; car2d (section 5.2, not in Table 2) on request.
TASKS = ["hopper", "half_cheetah", "ant", "walker2d", "humanoid_standup", "humanoid_run", "push_t"]
EXTRA_TASKS = ["car2d"]
METHODS = list(METHOD_TABLE)  # every registered method: mbd, the baselines, predictive sampling, the paper's
PAPER_METHODS = ["paper-cmaes", "paper-cem", "paper-mppi"]
LABELS = {
    "mbd": "MBD",
    "cem": "CEM",
    "mppi": "MPPI",
    "cmaes": "CMA-ES",
    "predictive": "predictive sampling",
    "paper-mppi": "paper MPPI",
    "paper-cem": "paper CEM",
    "paper-cmaes": "paper CMA-ES",
}
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

# Budgets: samples per iteration n and iterations, per task.
CPU_SCALE = {task: dict(samples=128, steps=100) for task in TASKS + EXTRA_TASKS}
# The authors' code (mbd/planners/mbd_planner.py, path_integral.py): Nsample 2048 (humanoidrun
# 8192), Ndiffuse / Nrefine 100 (pushT 200, humanoidrun 300). car2d: their defaults.
PAPER_SCALE = {task: dict(samples=2048, steps=100) for task in TASKS + EXTRA_TASKS}
PAPER_SCALE["humanoid_run"] = dict(samples=8192, steps=300)
PAPER_SCALE["push_t"] = dict(samples=2048, steps=200)
SCALES = {"cpu": CPU_SCALE, "paper": PAPER_SCALE}
DEFAULT_TEMPERATURE = 0.1  # for a model without a recommended temperature (the car): Table 4's usual value

# The paper's Table 2: mean step reward ± std over 8 seeds (MBD, its baselines, RL).
PAPER_TABLE2 = {
    "hopper": dict(cmaes=(1.12, 0.10), cem=(0.65, 0.12), mppi=(0.91, 0.15), rl=(1.40, 0.04), mbd=(1.53, 0.03)),
    "half_cheetah": dict(cmaes=(0.44, 0.10), cem=(0.22, 0.15), mppi=(0.20, 0.14), rl=(1.59, 0.05), mbd=(2.31, 0.19)),
    "ant": dict(cmaes=(1.18, 0.52), cem=(0.85, 0.17), mppi=(0.33, 0.45), rl=(3.26, 1.61), mbd=(3.80, 0.35)),
    "walker2d": dict(cmaes=(0.83, 0.04), cem=(1.06, 0.04), mppi=(0.90, 0.05), rl=(1.09, 0.28), mbd=(2.63, 0.23)),
    "humanoid_standup": dict(
        cmaes=(0.58, 0.01), cem=(0.47, 0.01), mppi=(0.53, 0.05), rl=(0.83, 0.02), mbd=(0.99, 0.07)
    ),
    "humanoid_run": dict(cmaes=(0.60, 0.11), cem=(0.41, 0.16), mppi=(0.59, 0.14), rl=(1.80, 0.03), mbd=(2.92, 0.26)),
    "push_t": dict(cmaes=(0.39, 0.07), cem=(0.25, 0.09), mppi=(-0.13, 0.09), rl=(-0.63, 0.16), mbd=(0.67, 0.10)),
}
RUNS = {"cpu": "trajopt_table.json", "paper": "trajopt_table_paper.json"}


def make_model(task: str, seed: int, args):
    """The rollout model of ``task`` on ``args.backend`` / ``args.device``, initial state drawn from ``seed``."""
    if task == "car2d":
        from dynamics.car import Car2D

        return Car2D(device=args.device)
    from dynamics.model import MujocoModel

    return MujocoModel(task, backend=args.backend, device=args.device, reset_noise=args.reset_noise, seed=seed)


def settings(task: str, model, args) -> dict:
    """The run settings of ``task``: the scale's budget, the task's horizon and temperature, unless overridden.

    A stored run with these settings (and the same task, method and seed) is not run again.
    """
    budget = SCALES[args.scale][task]
    return dict(
        samples=args.samples or budget["samples"],
        steps=args.steps or budget["steps"],
        horizon=args.horizon or model.horizon,
        temperature=args.temperature or float(getattr(model, "temperature", DEFAULT_TEMPERATURE)),
        backend="torch" if task == "car2d" else args.backend,
        reset_noise=0.0 if task == "car2d" else args.reset_noise,
    )


def zero_action_reward(model, horizon: int) -> float:
    """Mean step reward of the all-zero control sequence (the plans' common initial guess)."""
    with torch.no_grad():
        actions = torch.zeros(1, horizon, model.action_dim, device=getattr(model, "device", "cpu"))
        traj = model.rollout(actions)
    return float(traj.rewards.double().mean())


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
    """One planning run; returns its record (reward, time, convergence curves, settings)."""
    res = plan(
        model,
        horizon=cfg["horizon"],
        num_samples=cfg["samples"],
        num_steps=cfg["steps"],
        temperature=cfg["temperature"],
        seed=seed,
        progress=False,
        method=method,
        preset="paper",  # Table 2 as the paper ran it: one action per control step, no keep-best
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
        plan(model, num_samples=4, num_steps=1, seed=0, progress=False, method=method, preset="paper")


# --------------------------------------------------------------------------- the grid
def run_key(record: dict) -> tuple:
    """A run's key in the runs file: ``(task, method, seed)``."""
    return record["task"], record["method"], record["seed"]


def run_grid(args, command: str, path: Path) -> tuple[list[dict], int]:
    """Run every task x seed x method not yet stored (methods innermost), saving after each run.

    Returns:
        ``(records, skipped)``: every stored record afterwards, and how many runs were skipped
        because the file already had them with the same :func:`settings` (budget, horizon,
        temperature, backend, reset noise).
    """
    store = _runs.RunStore(path, run_key, fresh=args.fresh)
    runs = [
        _runs.GridRun(key=(task, method, seed), model=(task, seed))
        for task in args.tasks
        for seed in range(args.seeds)
        for method in args.methods
    ]

    def build(key):
        task, seed = key
        model = make_model(task, seed, args)
        return model, zero_action_reward(model, settings(task, model, args)["horizon"])

    def one(item, built, cfg):
        (task, method, seed), (model, zero) = item.key, built
        rec = run_one(model, task, method, seed, cfg)
        rec.update(zero_reward=zero, scale=args.scale, device=str(args.device), machine=machine(), command=command)
        print(
            f"  {task:16s} seed {seed} {LABELS[method]:12s} reward {rec['reward']:+.4f}"
            f"{'' if rec['feasible'] else ' (infeasible)'}  {rec['time']:.1f} s",
            file=sys.stderr,
        )
        return rec

    skipped = _runs.run_grid(
        store,
        runs,
        build=build,
        settings=lambda item, built: settings(item.key[0], built[0], args),
        run=one,
        warm_up=lambda item, built: warm_up(built[0], args.methods),
        title="trajopt",
    )
    return store.records, skipped


def time_steps(model, probe: int = 3, **budget) -> tuple[float, float]:
    """``(wall s, CPU s)`` per step of ``plan(model, **budget)`` over ``probe`` steps (one untimed step first)."""
    plan(model, num_steps=1, **budget)  # first allocations at this n, untimed
    start, cpu_start = time.perf_counter(), time.process_time()
    plan(model, num_steps=probe, **budget)
    return (time.perf_counter() - start) / probe, (time.process_time() - cpu_start) / probe


def estimate(args) -> list[list[str]]:
    """Time a few MBD steps per task and project the wall time of the requested grid (nothing stored)."""
    rows, grand = [], 0.0
    probe = 3
    for task in args.tasks:
        model = make_model(task, 0, args)
        cfg = settings(task, model, args)
        warm_up(model, ["mbd"])
        budget = dict(horizon=cfg["horizon"], num_samples=cfg["samples"], seed=0, progress=False, preset="paper")
        per_step, cpu_per_step = time_steps(model, probe, **budget)
        seconds = per_step * cfg["steps"] * len(args.methods) * args.seeds
        grand += seconds
        rows.append([
            TITLES[task], str(cfg["samples"]), str(cfg["steps"]), f"{per_step:.3f}", f"{cpu_per_step:.3f}",
            f"{seconds / 60:.1f}",
        ])  # fmt: skip
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    rows.append(["total", "", "", "", "", f"{grand / 60:.1f} ({grand / 3600:.2f} h)"])
    return rows


# --------------------------------------------------------------------------- tables
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
    tasks = [t for t in TASKS + EXTRA_TASKS if any(r["task"] == t for r in records)]
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    return tasks, methods


def budget_cell(runs: list[dict]) -> str:
    r = runs[0]
    seeds = sorted({x["seed"] for x in runs})
    return f"H={r['horizon']}, n={r['samples']}, {r['steps']} steps, λ={r['temperature']:g}, {len(seeds)} seeds"


def reward_table(records: list[dict]) -> str:
    """Markdown: mean step reward ± std over seeds per task and method, the zero-action reward, Table 2.

    Bold: the best mean of the row. "MBD ≥ paper": whether MBD's mean is at least each
    ``paper-*`` baseline's mean (the issue's target); "best - zero": how far the best method
    is above the zero-action sequence.
    """
    tasks, methods = present(records)
    runs = group(records)
    paper_present = [m for m in PAPER_METHODS if m in methods]
    header = ["task", "budget", "zero action"] + [LABELS[m] for m in methods]
    header += ["best - zero"] + (["MBD ≥ paper"] if "mbd" in methods and paper_present else [])
    header += ["paper: MBD", "paper: CMA-ES / CEM / MPPI"]
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
        any_runs = next(runs[(task, m)] for m in methods if (task, m) in runs)
        zeros = [r["zero_reward"] for r in any_runs if "zero_reward" in r]
        zero = _stats(zeros)[0] if zeros else math.nan
        cells.append(f"{stats[best][0] - zero:+.3f}")
        if "mbd" in methods and paper_present:
            if "mbd" in stats and all(m in stats for m in paper_present):
                cells.append("yes" if all(stats["mbd"][0] >= stats[m][0] for m in paper_present) else "no")
            else:
                cells.append("-")
        paper = PAPER_TABLE2.get(task)
        if paper is None:
            cells += ["-", "-"]
        else:
            cells += [
                f"{paper['mbd'][0]:.2f} ± {paper['mbd'][1]:.2f}",
                " / ".join(f"{paper[m][0]:.2f}" for m in ("cmaes", "cem", "mppi")),
            ]
        rows.append([TITLES[task], budget_cell(any_runs), f"{zero:.3f}"] + cells)
    return markdown_table(header, rows)


def time_table(records: list[dict]) -> str:
    """Markdown: mean wall time per run (s) per task and method."""
    tasks, methods = present(records)
    runs = group(records)
    header = ["task"] + [f"{LABELS[m]} (s)" for m in methods]
    rows = []
    for task in tasks:
        mean = {m: _stats([r["time"] for r in runs[(task, m)]])[0] for m in methods if (task, m) in runs}
        rows.append([TITLES[task]] + [f"{mean[m]:.2f}" if m in mean else "-" for m in methods])
    return markdown_table(header, rows)


# --------------------------------------------------------------------------- figures
def bar_chart(records: list[dict], path: Path) -> Path:
    """Grouped bars: mean step reward (± std over seeds) per task, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, methods = present(records)
    runs = group(records)
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(tasks) + 2), 3.8))
    for k, m in enumerate(methods):
        xs, means, stds = [], [], []
        for t, task in enumerate(tasks):
            if (task, m) in runs:
                mu, sd = _stats([r["reward"] for r in runs[(task, m)]])
                xs.append(t + (k - (len(methods) - 1) / 2) * width)
                means.append(mu)
                stds.append(sd)
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=LABELS[m], hatch="//" if m.startswith("paper-") else None)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([TITLES[t] for t in tasks], rotation=20, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_ylabel("mean step reward of the final plan")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncol=min(len(methods), 4), fontsize=7)
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
            ax.plot(steps, mean, label=LABELS[m], linestyle="--" if m.startswith("paper-") else "-")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
        r0 = next(runs[(task, m)][0] for m in METHODS if (task, m) in runs)
        ax.set_title(f"{TITLES[task]} (n={r0['samples']})")
        ax.set_xlabel("iteration (MBD: diffusion step)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean step reward of the estimate")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(records: list[dict], args, runs_path: Path) -> str:
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
    try:
        shown = runs_path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = runs_path
    return f"""## Trajectory optimization: MBD vs CEM, MPPI, CMA-ES and the paper's baselines (Tables 2 and 3)

Produced by (runs are stored in `{shown}`, keyed by task, method and seed; one command may
have filled only some rows):

{ran}

Mean step reward of the final plan (mean ± std over seeds; higher is better). Equal budget in
every row: `n` rollouts per iteration (CMA-ES: population `n`) for the same number of
iterations, bounds `[-1, 1]`, initial guess 0, the same initial state and seed; horizon `H` and
temperature λ are the task's (Table 4). CEM keeps the best 10 % and refits a diagonal
Gaussian; MPPI uses MBD's weights with a fixed noise; CMA-ES is pycma. "paper MPPI / CEM /
CMA-ES" are the authors' baselines as their code runs them (`torch_mbd.paper_baselines`: unit
noise, the mean of the 10 best, a multiplicative step-size heuristic); Table 2's baseline
columns are those. "zero action": the reward of the all-zero control sequence (the initial
guess). Bold: best mean. The paper's columns are Table 2 (n = 2048 samples per step, humanoid
running 8192; 100 diffusion steps, push-T 200, humanoid running 300; 8 seeds; Brax on a GPU):
our tasks follow the authors' definitions but simulate with MuJoCo instead of Brax, so
trajectories differ; compare orderings, not values.

{reward_table(records)}

Wall time per run in seconds (the whole `torch_mbd.plan` call; methods interleaved per seed):

{time_table(records)}

![Mean step reward per task and method](figures/{bars.name})
{conv_md}"""


# --------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS + EXTRA_TASKS)
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--seeds", type=int, default=4, help="number of seeds (0..k-1)")
    p.add_argument("--scale", default="cpu", choices=sorted(SCALES), help="budget: cpu (default) or the paper's")
    p.add_argument(
        "--samples", type=int, default=None, help="rollouts per iteration for every task (default: the scale's)"
    )
    p.add_argument("--steps", type=int, default=None, help="iterations (MBD: diffusion steps; default: the scale's)")
    p.add_argument("--horizon", type=int, default=None, help="control steps (default: the task's)")
    p.add_argument("--temperature", type=float, default=None, help="MBD/MPPI temperature (default: the task's)")
    p.add_argument("--backend", default="mujoco", choices=BACKENDS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reset-noise", type=float, default=1.0, help="initial-state noise per seed (task units)")
    p.add_argument("--runs", type=Path, default=None, help="results JSON (default: docs/figures/trajopt_table*.json)")
    p.add_argument("--convergence", nargs="+", default=["half_cheetah", "push_t"], choices=TASKS + EXTRA_TASKS)
    p.add_argument("--fresh", action="store_true", help="ignore the stored runs and replace the file")
    p.add_argument("--estimate", action="store_true", help="time a few steps per task, print the projected time, stop")
    p.add_argument("--no-write", action="store_true", help="leave docs/results.md and the figures alone")
    args = p.parse_args(argv)
    for name in ("seeds", "samples", "steps", "horizon"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be >= 1, got {value}")
    if args.temperature is not None and not args.temperature > 0:
        p.error(f"--temperature must be > 0, got {args.temperature}")
    if not (math.isfinite(args.reset_noise) and args.reset_noise >= 0):
        p.error(f"--reset-noise must be a finite number >= 0, got {args.reset_noise}")
    if args.runs is None:
        args.runs = figure_path(RUNS[args.scale])
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.estimate:
        rows = estimate(args)
        header = ["task", "n", "steps", "wall s per MBD step", "CPU s per step (all threads)", "projected minutes"]
        print(markdown_table(header, rows))
        print("projected = wall time per step x steps x methods x seeds; on a shared machine the CPU column "
              "is the steadier reading (on 2 idle cores the wall time is between half of it and all of it)")
        print(f"{len(args.methods)} methods x {args.seeds} seeds on {machine()}")
        return
    command = "python -m benchmarks.trajopt " + " ".join(argv if argv is not None else sys.argv[1:])
    start = time.perf_counter()
    records, skipped = run_grid(args, command.strip(), args.runs)
    print(reward_table(records) if records else "no runs stored")
    print()
    if records:
        print(time_table(records))
    print(f"{skipped} run(s) already stored, skipped; total {time.perf_counter() - start:.0f} s on {machine()}")
    print(f"runs stored in {args.runs}")
    if args.no_write or not records:
        return
    write_section("trajopt", report(records, args, args.runs))
    print("wrote docs/results.md (section trajopt) and docs/figures/trajopt_*.png")


if __name__ == "__main__":
    main()
