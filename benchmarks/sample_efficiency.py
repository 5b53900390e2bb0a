"""Sample efficiency (issue 14): reward of the final plan against the number of rollouts.

Every task x configuration x ``n`` x seed plans an open-loop control sequence with
``torch_mbd.plan`` at ``n`` rollouts per step (CMA-ES: population ``n``) for ``steps`` steps
(default 100), ``n`` in {16, 64, 256}: the budgets a user without a GPU affords. The initial
state of each seed is trajopt's (:func:`benchmarks.trajopt.make_model`: the task's reset
noise drawn from the seed); the sampling seed is the same for every configuration. The score
of a run is the mean step reward of the final plan's rollout; its cost is ``n x steps``
rollouts.

A configuration is a named set of ``plan`` options (:data:`CONFIGS`):

* ``mbd``: ``plan(model, num_samples=n, num_steps=steps, seed=s)`` with no other option, the
  library's defaults (``torch_mbd.plan.PRESETS["default"]``);
* ``mbd-paper``: ``preset="paper"`` at the task's temperature, the paper's algorithm;
* ``cem``, ``mppi``, ``cmaes``: our standard baselines under ``preset="paper"``: one action per
  control step and no keep-the-best, as the paper ran them (MPPI at the task's temperature);
* ``cem-knots``, ``mppi-knots``, ``cmaes-knots`` (run when asked for with ``--configs``): the same
  baselines planning over :data:`KNOTS` cubic spline knots with keep-the-best, the parameterization
  MBD can use (the default preset keeps one action per control step: the ablation shows why), to
  see whether it helps them.

``--ablation`` runs the second table instead: named option sets (:data:`ABLATIONS`) between
the paper's algorithm and the defaults at one ``n`` (default 64), stored under the config
name ``"ablation:" + name``. A run whose options and settings equal a stored run of another
configuration (``ablation:default`` is ``mbd``) is copied from it instead of rerun.

Every run is stored as soon as it finishes in ``docs/figures/sample_efficiency.json`` (or
``--runs PATH``), keyed by task / config / n / seed; a later invocation skips every run
stored with the same settings (steps, horizon, backend, reset noise, the resolved options and,
for configurations that inherit the defaults, the default preset), so an interrupted grid
resumes where it stopped. The grid runs task by task, and within a task ``n`` by ``n`` (seeds,
then configurations innermost), so an interrupted run leaves complete (task, n) blocks. The
report covers every stored run and says how many runs of the full grid are missing.

Run::

    python -m benchmarks.sample_efficiency                     # the main grid: 7 tasks x 5 configs x 3 n x 4 seeds
    python -m benchmarks.sample_efficiency --ablation          # the ablation table at n = 64
    python -m benchmarks.sample_efficiency --estimate          # how long the requested grid would take here
    python -m benchmarks.sample_efficiency --tasks hopper --configs mbd cem --samples 16 --seeds 1

Flags: ``--tasks``, ``--configs`` (names of :data:`CONFIGS`, or of :data:`ABLATIONS` with
``--ablation``), ``--samples`` (list of ``n``), ``--steps``, ``--seeds`` (count, seeds
0..k-1), ``--ablation``, ``--backend`` (mujoco, warp, mjx), ``--device``, ``--reset-noise``,
``--runs`` (results JSON), ``--report`` (write the report of every stored run, run nothing),
``--fresh`` (rerun the requested runs even when stored; other
stored runs are kept), ``--estimate``, ``--no-write`` (leave docs/results.md and the figure
alone; the runs file is still written). Writes the section ``sample_efficiency`` of
docs/results.md and docs/figures/sample_efficiency.png.
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

from benchmarks import _runs  # noqa: E402
from benchmarks._report import figure_path, machine, markdown_table, write_section  # noqa: E402
from benchmarks.trajopt import (  # noqa: E402
    DEFAULT_TEMPERATURE,
    TASKS,
    TITLES,
    make_model,
    time_steps,
    zero_action_reward,
)
from dynamics.backends import BACKENDS  # noqa: E402
from torch_mbd import plan  # noqa: E402


class RunTimeValue:
    """A ``plan`` option whose value is read at run time (from the task, or from the default preset)."""

    def __init__(self, what: str):
        self.what = what

    def __repr__(self) -> str:
        return self.what


TASK_TEMPERATURE = RunTimeValue("the task's temperature")

# The baselines start from the paper's preset (one action per control step, no keep-the-best);
# the -knots configurations plan over spline knots instead (with keep-the-best), to see whether the
# parameterization that MBD may use helps them (the default preset plans one action per step: measured
# better for MBD, see the ablation).
KNOTS = 10
KNOTS_PARAMETERIZATION = dict(num_knots=KNOTS, interpolation="cubic", keep_best=True)

CONFIGS = {
    "mbd": {},
    "mbd-paper": dict(preset="paper", temperature=TASK_TEMPERATURE),
    "cem": dict(method="cem", preset="paper"),
    "mppi": dict(method="mppi", preset="paper", temperature=TASK_TEMPERATURE),
    "cmaes": dict(method="cmaes", preset="paper"),
    "predictive": dict(method="predictive", preset="paper"),
    "cem-knots": dict(method="cem", preset="paper", **KNOTS_PARAMETERIZATION),
    "mppi-knots": dict(method="mppi", preset="paper", temperature=TASK_TEMPERATURE, **KNOTS_PARAMETERIZATION),
    "cmaes-knots": dict(method="cmaes", preset="paper", **KNOTS_PARAMETERIZATION),
}
LABELS = {
    "mbd": "MBD (default)",
    "mbd-paper": "MBD (paper)",
    "cem": "CEM",
    "mppi": "MPPI",
    "cmaes": "CMA-ES",
    "predictive": "predictive sampling",
    "cem-knots": "CEM (knots)",
    "mppi-knots": "MPPI (knots)",
    "cmaes-knots": "CMA-ES (knots)",
}
BASELINES = ["cem", "mppi", "cmaes"]  # target 1: default MBD >= each
KNOT_BASELINES = ["cem-knots", "mppi-knots", "cmaes-knots"]  # in target 1 too, where they were run
MAIN_CONFIGS = ["mbd", "mbd-paper", *BASELINES]  # the grid run when --configs is not given

# From the paper's algorithm to the defaults, one option at a time, and back from the defaults.
ABLATIONS = {
    "paper": dict(preset="paper", temperature=TASK_TEMPERATURE),
    "+knots": dict(preset="paper", temperature=TASK_TEMPERATURE, num_knots=KNOTS, interpolation="cubic"),
    "+keep_best": dict(preset="paper", temperature=TASK_TEMPERATURE, keep_best=True),
    "+auto temperature": dict(preset="paper", temperature="auto"),
    "default": {},
    "default + knots": dict(num_knots=KNOTS, interpolation="cubic"),
    "default - keep_best": dict(keep_best=False),
    "default - auto temperature": dict(temperature=TASK_TEMPERATURE),
}
ABLATION_PREFIX = "ablation:"

SAMPLES = [16, 64, 256]
ABLATION_SAMPLES = [64]
STEPS = 100
SEEDS = 4
TARGET_SAMPLES = (64, 256)  # target 1 is checked at these n
TARGET_FAST, TARGET_SLOW, TARGET_TASKS = 64, 256, 5  # target 2: default MBD at 64 >= paper MBD at 256 on >= 5 tasks
RUNS = "sample_efficiency.json"
FIGURE = "sample_efficiency.png"


# --------------------------------------------------------------------------- configurations
def default_preset() -> dict:
    """``torch_mbd.plan.PRESETS["default"]`` as a dict of plan options, read now (not at import).

    Raises:
        RuntimeError: this torch_mbd has no presets (a configuration needs them).
    """
    try:
        from torch_mbd.plan import PRESETS
    except ImportError as err:
        raise RuntimeError("torch_mbd.plan has no PRESETS: this configuration needs the default preset") from err
    return dict(PRESETS["default"])


def preset_snapshot() -> dict | None:
    """The default preset as the runs file stores it, or ``None`` for a torch_mbd without presets."""
    try:
        return as_json(default_preset())
    except RuntimeError:
        return None


def config_options(config: str) -> dict:
    """The option template of ``config`` (a name of :data:`CONFIGS`, or ``"ablation:" + a name of ABLATIONS``)."""
    if config.startswith(ABLATION_PREFIX):
        return ABLATIONS[config[len(ABLATION_PREFIX) :]]
    return CONFIGS[config]


def inherits_defaults(template: dict) -> bool:
    """Whether runs of ``template`` depend on the default preset (they do unless a preset is named)."""
    return "preset" not in template


def resolve(template: dict, model) -> dict:
    """The ``plan`` options of ``template`` for ``model``: every :class:`RunTimeValue` replaced by its value."""
    options = {}
    for key, value in template.items():
        if value is TASK_TEMPERATURE:
            value = float(getattr(model, "temperature", DEFAULT_TEMPERATURE))
        options[key] = value
    return options


def as_json(value):
    """``value`` as the runs file stores it (tuples become lists), so stored and new settings compare equal."""
    return json.loads(json.dumps(value))


def describe(template: dict) -> str:
    """The options of ``template`` in one line, run-time values named (``{}`` is the defaults)."""
    if not template:
        return "none (the defaults)"
    return ", ".join(f"{k}={v!r}" for k, v in template.items())


# --------------------------------------------------------------------------- runs
def run_settings(template: dict, model, n: int, args) -> dict:
    """What a stored run must share with a new one to be skipped (besides its key)."""
    cfg = dict(
        n=n,
        steps=args.steps,
        horizon=int(model.horizon),
        backend=args.backend,
        reset_noise=args.reset_noise,
        kwargs=as_json(resolve(template, model)),
    )
    if inherits_defaults(template):
        cfg["preset_default"] = preset_snapshot()
    return cfg


def run_key(record: dict) -> tuple:
    """A run's key in the runs file: ``(task, config, n, seed)``."""
    return record["task"], record["config"], record["n"], record["seed"]


def run_one(model, task: str, config: str, seed: int, cfg: dict) -> dict:
    """One planning run at the settings ``cfg``; returns its record (without the bookkeeping fields)."""
    options = resolve(config_options(config), model)
    res = plan(model, num_samples=cfg["n"], num_steps=cfg["steps"], seed=seed, progress=False, **options)
    rec = dict(
        task=task,
        config=config,
        seed=seed,
        reward=res.reward,
        feasible=bool(res.feasible.all()),
        time=res.time,
        rollouts=cfg["n"] * cfg["steps"],
        reward_history=res.reward_history.double().tolist(),
        **cfg,
    )
    # keep-the-best: "estimate" or "sample", and both rewards
    rec.update(source=res.source, estimate_reward=float(res.estimate_reward), best_sample_reward=float(res.best_sample_reward))
    return rec


def warm_up(model, configs: list[str]) -> None:
    """One tiny run per configuration (imports, thread pools, first allocations) outside the timings."""
    for config in configs:
        plan(model, num_samples=4, num_steps=1, seed=0, progress=False, **resolve(config_options(config), model))


def grid(args) -> list[tuple[str, int, int, str]]:
    """The requested runs ``(task, n, seed, config)`` in run order: task, then n, then seed, configs innermost."""
    return [
        (task, n, seed, config)
        for task in args.tasks
        for n in args.samples
        for seed in range(args.seeds)
        for config in args.configs
    ]


def run_grid(args, command: str, path: Path) -> tuple[list[dict], int]:
    """Run every requested run not yet stored, saving the file after each one.

    Returns:
        ``(records, skipped)``: every stored record afterwards, and how many requested runs were
        not run because the file had them (or an equal run under another name) with the same
        settings.
    """
    store = _runs.RunStore(path, run_key)
    todo = grid(args)
    zeros = {}

    def build(key):
        task, seed = key
        model = make_model(task, seed, args)
        zeros[key] = zero_action_reward(model, int(model.horizon))
        return model

    def settings(item, model):
        task, config, n, seed = item.key
        return run_settings(config_options(config), model, n, args)

    def twin(item, cfg):
        """A stored run of the same task and seed with the same options under another name, copied."""
        task, config, n, seed = item.key
        same = (r for r in store.records if (r["task"], r["seed"]) == (task, seed) and _runs.same_settings(r, cfg))
        found = next(same, None)
        if found is None:
            return None
        return dict(found, config=config, copied_from=found.get("copied_from", found["config"]))

    def one(item, model, cfg):
        task, config, n, seed = item.key
        rec = run_one(model, task, config, seed, cfg)
        rec.update(zero_reward=zeros[(task, seed)], device=str(args.device), machine=machine(), command=command)
        print(
            f"  {task:16s} n={n:<4d} seed {seed} {config:28s} reward {rec['reward']:+.4f}"
            f"{'' if rec['feasible'] else ' (infeasible)'}  {rec['time']:.1f} s",
            file=sys.stderr,
        )
        return rec

    def warm(item, model):
        task = item.key[0]
        warm_up(model, sorted({c for t, _, _, c in todo if t == task}))

    skipped = _runs.run_grid(
        store,
        [_runs.GridRun(key=(task, config, n, seed), model=(task, seed)) for task, n, seed, config in todo],
        build=build,
        settings=settings,
        run=one,
        warm_up=warm,
        rerun=args.fresh,
        copy=twin,
        title="sample efficiency",
    )
    return store.records, skipped


def estimate(args) -> list[list[str]]:
    """Time a few default-MBD steps per task and ``n`` and project the requested grid (nothing stored)."""
    rows, grand, probe = [], 0.0, 3
    for task in args.tasks:
        model = make_model(task, 0, args)
        warm_up(model, ["mbd"])
        for n in args.samples:
            per_step, cpu_per_step = time_steps(model, probe, num_samples=n, seed=0, progress=False)
            seconds = per_step * args.steps * len(args.configs) * args.seeds
            grand += seconds
            rows.append([
                TITLES[task], str(n), str(args.steps), f"{per_step:.3f}", f"{cpu_per_step:.3f}", f"{seconds / 60:.1f}"
            ])  # fmt: skip
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    rows.append(["total", "", "", "", "", f"{grand / 60:.1f} ({grand / 3600:.2f} h)"])
    return rows


# --------------------------------------------------------------------------- tables
def group(records: list[dict]) -> dict:
    """``{(task, config, n): [records sorted by seed]}``."""
    out: dict = {}
    for r in sorted(records, key=lambda r: (r["task"], r["config"], r["n"], r["seed"])):
        out.setdefault((r["task"], r["config"], r["n"]), []).append(r)
    return out


def _stats(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=False)) if len(values) > 1 else 0.0


def cell_stats(records: list[dict]) -> dict:
    """``{(task, config, n): (mean, std)}`` of the final plan's reward over seeds."""
    return {key: _stats([r["reward"] for r in runs]) for key, runs in group(records).items()}


def complete_cell_stats(records: list[dict]) -> dict:
    """:func:`cell_stats` of the cells that hold as many seeds as the task's fullest cell.

    The targets are decided on these only: a cell still running (fewer seeds) counts as missing.
    """
    runs = group(records)
    seeds: dict = {}
    for (task, _, _), cell in runs.items():
        seeds[task] = max(seeds.get(task, 0), len(cell))
    return {key: _stats([r["reward"] for r in cell]) for key, cell in runs.items() if len(cell) == seeds[key[0]]}


def label(config: str) -> str:
    return LABELS.get(config, config[len(ABLATION_PREFIX) :] if config.startswith(ABLATION_PREFIX) else config)


def _cell(runs: list[dict] | None, stats: tuple[float, float] | None, best: bool, seeds: int) -> str:
    """``mean ± std``, bold when best, with the count of infeasible plans or of seeds when short."""
    if runs is None:
        return "-"
    text = f"{stats[0]:.3f} ± {stats[1]:.3f}"
    infeasible = sum(not r["feasible"] for r in runs)
    notes = [f"{infeasible} infeasible"] if infeasible else []
    if len(runs) < seeds:
        notes.append(f"{len(runs)} seeds")
    text += f" ({', '.join(notes)})" if notes else ""
    return f"**{text}**" if best else text


def _best(stats: dict, keys: list) -> object:
    present = [k for k in keys if k in stats]
    return max(present, key=lambda k: stats[k][0]) if present else None


def task_table(records: list[dict], task: str, configs: list[str], samples: list[int]) -> str:
    """Markdown: one row per config, one column per ``n``: mean ± std reward over seeds; bold: best per column."""
    runs, stats = group(records), cell_stats(records)
    seeds = max((len(v) for v in runs.values()), default=0)
    best = {n: _best(stats, [(task, c, n) for c in configs]) for n in samples}
    rows = [
        [label(c)]
        + [_cell(runs.get((task, c, n)), stats.get((task, c, n)), (task, c, n) == best[n], seeds) for n in samples]
        for c in configs
    ]
    return markdown_table(["config"] + [f"n = {n}" for n in samples], rows)


def beats_baselines(stats: dict, task: str, samples=TARGET_SAMPLES, baselines=BASELINES) -> tuple[str, str]:
    """Target 1 on ``task``: default MBD's mean >= every baseline's mean at every ``n`` of ``samples``.

    Returns:
        ``(verdict, detail)``: ``"yes"``, ``"no"`` (detail: the first baseline above it) or
        ``"-"`` (undecided: a cell is missing and no stored cell beats MBD).
    """
    missing = [f"{label(c)} at n={n}" for n in samples for c in ["mbd", *baselines] if (task, c, n) not in stats]
    for n in samples:
        mbd = stats.get((task, "mbd", n))
        for b in [*baselines, *KNOT_BASELINES]:  # the knots variants count where they were run
            other = stats.get((task, b, n))
            if mbd is not None and other is not None and other[0] > mbd[0]:
                return "no", f"{label(b)} at n={n}: {other[0]:.3f} > {mbd[0]:.3f}"
    if missing:
        return "-", "missing " + (", ".join(missing) if len(missing) <= 3 else f"{len(missing)} cells")
    return "yes", ""


def fewer_rollouts(stats: dict, task: str, fast: int = TARGET_FAST, slow: int = TARGET_SLOW) -> tuple[str, str]:
    """Target 2 on ``task``: default MBD at ``n = fast`` >= paper MBD at ``n = slow``: ``(verdict, detail)``."""
    ours, paper = stats.get((task, "mbd", fast)), stats.get((task, "mbd-paper", slow))
    if ours is None or paper is None:
        return "-", "missing runs"
    return ("yes" if ours[0] >= paper[0] else "no"), f"{ours[0]:.3f} vs {paper[0]:.3f}"


def target_lines(records: list[dict], tasks: list[str] = TASKS) -> list[str]:
    """One markdown line per target of issue 14 that this benchmark measures, per task yes / no / - (missing).

    A cell with fewer seeds than its task's fullest cell counts as missing (:func:`complete_cell_stats`).
    """
    stats = complete_cell_stats(records)
    lines = []
    checks = [
        (
            f"default MBD ≥ each of {', '.join(label(b) for b in BASELINES)} at n = "
            + " and ".join(str(n) for n in TARGET_SAMPLES),
            beats_baselines,
            len(tasks),
        ),
        (
            f"default MBD at n = {TARGET_FAST} ≥ paper MBD at n = {TARGET_SLOW}",
            fewer_rollouts,
            min(TARGET_TASKS, len(tasks)),
        ),
    ]
    for k, (what, check, needed) in enumerate(checks, 1):
        verdicts = {task: check(stats, task) for task in tasks}
        met = sum(v == "yes" for v, _ in verdicts.values())
        open_ = sum(v == "-" for v, _ in verdicts.values())
        per_task = "; ".join(f"{TITLES[t]} {v}" + (f" ({d})" if d else "") for t, (v, d) in verdicts.items())
        if met >= needed:
            status = "met"
        elif met + open_ >= needed:
            status = "open (runs missing)"
        else:
            status = "not met"
        lines.append(
            f"- Target {k}, {what}: {per_task}. Yes on {met} of {len(tasks)} tasks"
            f"{f', {open_} undecided' if open_ else ''} (needed: {needed}): **{status}**."
        )
    return lines


def ablation_table(records: list[dict], tasks: list[str], n: int) -> str:
    """Markdown: one row per option set of :data:`ABLATIONS`, one column per task, at ``n``; bold: best per column."""
    runs, stats = group(records), cell_stats(records)
    seeds = max((len(v) for v in runs.values()), default=0)
    configs = [ABLATION_PREFIX + name for name in ABLATIONS]
    best = {t: _best(stats, [(t, c, n) for c in configs]) for t in tasks}
    rows = [
        [name, describe(ABLATIONS[name])]
        + [_cell(runs.get((t, c, n)), stats.get((t, c, n)), (t, c, n) == best[t], seeds) for t in tasks]
        for name, c in zip(ABLATIONS, configs)
    ]
    return markdown_table(["option set", "plan options"] + [TITLES[t] for t in tasks], rows)


def missing_runs(records: list[dict], seeds: int = SEEDS) -> tuple[int, int, int, int]:
    """How many runs of the full grids are not stored.

    Returns:
        ``(main missing, main total, ablation missing, ablation total)``.
    """
    have = {run_key(r) for r in records}
    main = [(t, c, n, s) for t in TASKS for c in MAIN_CONFIGS for n in SAMPLES for s in range(seeds)]
    abl = [
        (t, ABLATION_PREFIX + a, n, s) for t in TASKS for a in ABLATIONS for n in ABLATION_SAMPLES for s in range(seeds)
    ]
    return sum(k not in have for k in main), len(main), sum(k not in have for k in abl), len(abl)


def _seed_text(runs: list[dict]) -> str:
    seeds = sorted({r["seed"] for r in runs})
    if not seeds:
        return "no runs"
    return f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})"


def summary(records: list[dict]) -> str:
    """The tables of the report (everything but the header and the figure): per task, targets, ablation."""
    main = [r for r in records if not r["config"].startswith(ABLATION_PREFIX)]
    abl = [r for r in records if r["config"].startswith(ABLATION_PREFIX)]
    tasks = [t for t in TASKS if any(r["task"] == t for r in records)]
    configs = [c for c in CONFIGS if any(r["config"] == c for r in main)]
    samples = sorted({r["n"] for r in main})
    parts = []
    for task in [t for t in tasks if any(r["task"] == t for r in main)]:
        runs = [r for r in main if r["task"] == task]
        zeros = [r["zero_reward"] for r in runs if "zero_reward" in r]
        zero = f"{_stats(zeros)[0]:.3f}" if zeros else "-"
        steps = ", ".join(str(s) for s in sorted({r["steps"] for r in runs}))
        parts.append(
            f"### {TITLES[task]}\n\nZero-action reward {zero}; H = {runs[0]['horizon']}, {steps} steps, "
            f"{_seed_text(runs)}.\n\n{task_table(main, task, configs, samples)}"
        )
    parts.append("### Targets of issue 14\n\n" + "\n".join(target_lines(main)))
    for n in sorted({r["n"] for r in abl}):
        abl_tasks = [t for t in tasks if any(r["task"] == t and r["n"] == n for r in abl)]
        parts.append(
            f"### Ablation at n = {n}\n\nMean step reward of the final plan (mean ± std over seeds) for option "
            f"sets between the paper's algorithm and the defaults; bold: best per task. Rows equal to a "
            f"configuration above are copied from it.\n\n{ablation_table(abl, abl_tasks, n)}"
        )
    lost, total, lost_abl, total_abl = missing_runs(records)
    parts.append(
        f"Missing runs: {lost} of the {total} runs of the main grid ({len(TASKS)} tasks x {len(MAIN_CONFIGS)} "
        f"configurations x n in {SAMPLES} x {SEEDS} seeds) and {lost_abl} of the {total_abl} of the ablation "
        f"({len(ABLATIONS)} option sets at n = {ABLATION_SAMPLES[0]}); missing cells show as \"-\"."
    )
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- figure
STYLES = {  # colour per method family, solid / dashed for MBD, dotted per-step and dash-dot knots baselines
    "mbd": dict(color="tab:blue", marker="o", linestyle="-", linewidth=2.2),
    "mbd-paper": dict(color="tab:blue", marker="s", linestyle="--"),
    "cem": dict(color="tab:orange", marker="^", linestyle=":"),
    "cem-knots": dict(color="tab:orange", marker="v", linestyle="-."),
    "mppi": dict(color="tab:green", marker="D", linestyle=":"),
    "mppi-knots": dict(color="tab:green", marker="d", linestyle="-."),
    "cmaes": dict(color="tab:red", marker="P", linestyle=":"),
    "cmaes-knots": dict(color="tab:red", marker="X", linestyle="-."),
    "predictive": dict(color="tab:brown", marker="*", linestyle=":"),
}


def figure(records: list[dict], path: Path) -> Path | None:
    """One panel per task: reward of the final plan vs ``n`` (log2 axis), one line per config, bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = [r for r in records if not r["config"].startswith(ABLATION_PREFIX)]
    stats, runs = cell_stats(main), group(main)
    tasks = [t for t in TASKS if any(r["task"] == t for r in main)]
    configs = [c for c in CONFIGS if any(r["config"] == c for r in main)]
    if not tasks:
        return None
    samples = sorted({r["n"] for r in main})
    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    ncol = min(len(configs), 2 * cols)  # legend entries per row: about two per panel width
    legend = 0.25 + 0.22 * math.ceil(len(configs) / ncol)  # inches below the panels
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.1 * rows + legend), squeeze=False)
    for ax in axes.flat[len(tasks) :]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, tasks):
        for k, c in enumerate(configs):
            ns = [n for n in samples if (task, c, n) in stats]
            if not ns:
                continue
            shift = 2 ** (0.04 * (k - (len(configs) - 1) / 2))  # side by side: error bars stay readable
            ax.errorbar(
                [n * shift for n in ns],
                [stats[(task, c, n)][0] for n in ns],
                yerr=[stats[(task, c, n)][1] for n in ns],
                capsize=2, markersize=5, label=LABELS[c], **STYLES.get(c, {}),
            )  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlim(min(samples) / 2**0.4, max(samples) * 2**0.4)  # room for the side-by-side offsets
        ax.set_xticks(samples, [str(n) for n in samples])
        ax.minorticks_off()
        seeds = max(len(runs[k]) for k in runs if k[0] == task)
        ax.set_title(f"{TITLES[task]} ({seeds} seed{'s' if seeds > 1 else ''})", fontsize=10)
        ax.set_xlabel("rollouts per step n (log2 axis)")
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("mean step reward of the final plan\n(task units, higher is better)", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, legend / (3.1 * rows + legend), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)  # below the panels
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reproducing_command(command: str, runs: str | None = None) -> str:
    """``command`` as it reproduces the stored runs: without its ``--runs PATH`` and ``--no-write``.

    Runs are often made into a scratch file (``--runs /tmp/x.json --no-write``) and merged into
    the stored one afterwards; a scratch path exists only on the machine that ran it. The command
    shown runs into the stored file (``--runs runs`` when that is not the default) and writes the
    report.
    """
    words, out, skip = command.split(), [], False  # recorded as " ".join(argv)
    for word in words:
        if skip:
            skip = False
        elif word == "--runs":
            skip = True
        elif not word.startswith("--runs=") and word != "--no-write":
            out.append(word)
    if runs is not None:
        out += ["--runs", runs]
    return " ".join(out)


def report(records: list[dict], runs_path: Path) -> str:
    """The markdown of the ``sample_efficiency`` section of docs/results.md."""
    fig = figure(records, figure_path(FIGURE))
    try:
        shown = runs_path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = runs_path
    default = figure_path(RUNS).resolve() == runs_path.resolve()
    commands = []
    for r in records:
        if "command" not in r:
            continue
        command = reproducing_command(r["command"], None if default else str(shown))
        line = f"`{command}` ({r['backend']} backend, device {r['device']}) on {r['machine']}"
        if line not in commands:
            commands.append(line)
    ran = "\n".join(f"- {c}" for c in commands)
    presets = [r["preset_default"] for r in records if r.get("preset_default") is not None]
    preset = json.dumps(presets[-1]) if presets else "(no run stored it)"
    configs = "\n".join(f"- {LABELS[c]} (`{c}`): {describe(CONFIGS[c])}" for c in CONFIGS)
    fig_md = "" if fig is None else f"\n![Reward of the final plan vs rollouts per step](figures/{fig.name})\n"
    return f"""## Sample efficiency: reward against the number of rollouts (issue 14)

Produced by (runs are stored in `{shown}`, keyed by task, configuration, n and seed; one
command may have filled only some cells):

{ran}

Mean step reward of the final plan (mean ± std over seeds; higher is better) after `steps`
steps of `n` rollouts each (CMA-ES: population `n`), so a run costs `n x steps` rollouts.
Every configuration plans from the same initial state per seed (trajopt's reset noise) with the
same sampling seed, bounds `[-1, 1]` and the task's horizon. The configurations (`plan` options;
"the task's temperature" is Table 4's, the default preset's values are read at run time):

{configs}

Default MBD and the baselines plan one action per control step (the default preset has no
knots); the `-knots` rows, where present, give the baselines spline knots and keep-the-best, to
see whether that parameterization helps them. The default preset at
the time of the last run: `{preset}`. "Zero-action reward": the reward of the all-zero control
sequence (the initial guess). Bold: best mean per column.

{summary(records)}
{fig_md}"""


# --------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    p.add_argument("--configs", nargs="+", default=None, help="names of CONFIGS (with --ablation: of ABLATIONS)")
    p.add_argument(
        "--samples", nargs="+", type=int, default=None,
        help=f"rollouts per step n (default {SAMPLES}; --ablation: {ABLATION_SAMPLES})",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=STEPS, help="steps per run (MBD: diffusion steps)")
    p.add_argument("--seeds", type=int, default=SEEDS, help="number of seeds (0..k-1)")
    p.add_argument("--ablation", action="store_true", help="run the ablation table instead of the main grid")
    p.add_argument("--backend", default="mujoco", choices=BACKENDS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reset-noise", type=float, default=1.0, help="initial-state noise per seed (task units)")
    p.add_argument("--runs", type=Path, default=None, help=f"results JSON (default: docs/figures/{RUNS})")
    p.add_argument("--fresh", action="store_true", help="rerun the requested runs even when stored")
    p.add_argument(
        "--estimate", action="store_true", help="time a few steps per task and n, print the projection, stop"
    )
    p.add_argument("--no-write", action="store_true", help="leave docs/results.md and the figure alone")
    p.add_argument("--report", action="store_true", help="write the report of the stored runs; run nothing")
    args = p.parse_args(argv)
    known = ABLATIONS if args.ablation else CONFIGS
    names = (list(known) if args.ablation else MAIN_CONFIGS) if args.configs is None else args.configs
    unknown = [c for c in names if c not in known]
    if unknown:
        kind = "option set" if args.ablation else "configuration"
        p.error(f"--configs: unknown {kind} {unknown}; known: {list(known)}")
    args.configs = [ABLATION_PREFIX + c for c in names] if args.ablation else names
    args.samples = args.samples or (ABLATION_SAMPLES if args.ablation else SAMPLES)
    for name, values in (("samples", args.samples), ("steps", [args.steps]), ("seeds", [args.seeds])):
        bad = [v for v in values if v < 1]
        if bad:
            p.error(f"--{name} must be >= 1, got {bad[0]}")
    if not (math.isfinite(args.reset_noise) and args.reset_noise >= 0):
        p.error(f"--reset-noise must be a finite number >= 0, got {args.reset_noise}")
    if args.runs is None:
        args.runs = figure_path(RUNS)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.estimate:
        rows = estimate(args)
        header = ["task", "n", "steps", "wall s per MBD step", "CPU s per step (all threads)", "projected minutes"]
        print(markdown_table(header, rows))
        print("projected = wall time per default-MBD step x steps x configurations x seeds, summed over n")
        print(f"{len(args.configs)} configurations x {args.seeds} seeds on {machine()}")
        return
    if args.report:  # every stored run, nothing run
        records = _runs.load_runs(args.runs)
        print(summary(records) if records else "no runs stored")
        if records and not args.no_write:
            write_section("sample_efficiency", report(records, args.runs))
            print(f"wrote docs/results.md (section sample_efficiency) and docs/figures/{FIGURE}")
        return
    command = "python -m benchmarks.sample_efficiency " + " ".join(argv if argv is not None else sys.argv[1:])
    start = time.perf_counter()
    records, skipped = run_grid(args, command.strip(), args.runs)
    print(summary(records) if records else "no runs stored")
    print(f"{skipped} run(s) already stored, skipped; total {time.perf_counter() - start:.0f} s on {machine()}")
    print(f"runs stored in {args.runs}")
    if args.no_write or not records:
        return
    write_section("sample_efficiency", report(records, args.runs))
    print(f"wrote docs/results.md (section sample_efficiency) and docs/figures/{FIGURE}")


if __name__ == "__main__":
    main()
