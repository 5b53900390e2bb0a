"""COCO's ``bbob`` suite: ``torch_mbd.minimize`` against IPOP-CMA-ES, SNES, XNES, NGOpt and random search.

The field's standard black-box benchmark (Hansen et al., COCO): 24 noiseless functions, each in
several instances (shifted and rotated copies), in the box ``[-5, 5]^D``. Every solver gets the
same budget of ``--budget`` x D evaluations per (function, dimension, instance), starts from the
problem's initial solution (the centre of the box) and is stopped when the budget is spent or
the final target ``f_opt + 1e-8`` is reached. Solvers (``--solvers``):

- ``mbd``: ``torch_mbd.minimize`` called as a user would: the box as bounds and the budget as
  ``max_evals``, every other option at its default (adaptive MBD, 64 samples per step, IPOP restarts
  while the budget lasts), float64;
- ``mbd-paper``: the paper's MBD as ``minimize`` ran it before adaptive MBD (64 samples, one
  schedule of budget / 64 steps, temperature 1.0, no restarts): the "before" of issue 23;
- ``cmaes``: pycma's IPOP-CMA-ES (``cma.fmin2``, sigma0 = 2, up to 9 restarts with the
  population doubled each time), COCO's reference setting;
- ``snes``, ``xnes``: EvoTorch's separable and exponential natural evolution strategies
  (radius-initialised as COCO's pycma example, population 64 and 4 + 3 ln D);
  ``ngopt``: nevergrad's NGOpt, where those packages are installed;
- ``random``: uniform samples in the box.

A run's record keeps, for each target precision ``f - f_opt`` in ``TARGETS``, the number of
evaluations at which it was first reached, and the best precision after a log-spaced list of
evaluation counts. The summary is the fraction of (function, instance, target) triples reached
within the budget, per function group and overall: the quantity of COCO's ECDF figures at the
end of the budget. Settings are chosen on instances 1-3 (``--instances 1 2 3``); instances 4-5
are the held-out report.

Every run also goes through ``cocoex.Observer``, which writes COCO's own data format under
``--coco-data/exdata/SOLVER`` so that ``python -m cocopp DIR/exdata/mbd DIR/exdata/cmaes ...`` draws the
runtime-distribution (ECDF) figures the field reads; ``--cocopp`` runs it after the grid.

The grid is resumable: each finished run is one JSON line in ``--runs``; rerunning the same
command skips what is there (``--fresh`` starts over).

Run::

    python -m benchmarks.bbob --dims 10 40 --instances 1 2 3               # the settings grid
    python -m benchmarks.bbob --dims 10 40 --instances 4 5 --no-write     # held out
    python -m benchmarks.bbob --dims 2 --functions 1 15 --budget 100 --no-write   # a quick look

Flags: ``--solvers``, ``--functions`` (1-24), ``--dims``, ``--instances``, ``--budget`` (evaluations
per dimension), ``--runs`` (JSON lines), ``--coco-data`` (folder of COCO's data), ``--fresh``,
``--cocopp``, ``--report`` (run nothing; the tables of the stored runs), ``--no-write`` (print only;
leave docs/ alone). Needs ``pip install -e ".[bbob]"``
(coco-experiment, cocopp, pycma); SNES/XNES need ``evotorch``, NGOpt ``nevergrad``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import ROOT, figure_path, machine, markdown_table, write_section  # noqa: E402

TARGETS = (1e1, 1e-1, 1e-3, 1e-5)
FINAL_TARGET = 1e-8  # COCO's: a run that reaches f_opt + 1e-8 is solved and stops
GROUPS = {  # COCO's five function groups
    "separable (f1-f5)": range(1, 6),
    "low/moderate conditioning (f6-f9)": range(6, 10),
    "high conditioning, unimodal (f10-f14)": range(10, 15),
    "multimodal, adequate structure (f15-f19)": range(15, 20),
    "multimodal, weak structure (f20-f24)": range(20, 25),
}
SOLVERS = ("mbd", "mbd-paper", "cmaes", "snes", "xnes", "ngopt", "random")
LABELS = {"mbd": "MBD (minimize, adaptive)", "mbd-paper": "MBD (paper's, before)", "cmaes": "IPOP-CMA-ES", "snes": "SNES", "xnes": "XNES", "ngopt": "NGOpt",
          "random": "random search"}
MBD_SAMPLES = 64


class BudgetSpent(Exception):
    """Raised by :class:`Evaluator` when the budget is spent or the final target is reached."""


class Evaluator:
    """Counts a COCO problem's evaluations, stops at the budget, and records when targets are hit.

    ``evaluate(X [n, D]) -> [n]`` evaluates rows one by one through the (observed) problem, so the
    COCO observer logs every evaluation; past the budget or the final target it raises
    :class:`BudgetSpent` (the rows before are evaluated and logged).
    """

    def __init__(self, problem, fopt: float, budget: int):
        self.problem, self.fopt, self.budget = problem, fopt, budget
        self.evals, self.best = 0, math.inf
        self.hits: dict[float, int | None] = {t: None for t in TARGETS}
        checkpoints = np.unique(np.geomspace(1, budget, 25).round().astype(int))
        self.checkpoints, self.curve = [int(c) for c in checkpoints], []

    @property
    def solved(self) -> bool:
        return self.best <= FINAL_TARGET

    def evaluate(self, X) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        out = np.full(len(X), np.inf)
        for i, x in enumerate(X):
            if self.evals >= self.budget or self.solved:
                raise BudgetSpent
            value = float(self.problem(x))
            self.evals += 1
            out[i] = value
            precision = value - self.fopt
            if precision < self.best:
                self.best = precision
                for t in TARGETS:
                    if self.hits[t] is None and precision <= t:
                        self.hits[t] = self.evals
            while len(self.curve) < len(self.checkpoints) and self.checkpoints[len(self.curve)] == self.evals:
                self.curve.append(self.best)
        return out

    def record(self) -> dict:
        curve = self.curve + [self.best] * (len(self.checkpoints) - len(self.curve))  # stopped early: flat
        return dict(evals=self.evals, best=self.best, hits={str(t): e for t, e in self.hits.items()},
                    checkpoints=self.checkpoints, curve=curve)


def optimum_value(fid: int, dim: int, iid: int) -> float:
    """``f_opt`` of a bbob problem: its value at ``x_opt``, evaluated on an unobserved copy.

    cocoex exposes ``x_opt`` only through ``Problem._best_parameter("print")``, which writes it to
    ``._bbob_problem_best_parameter.txt`` in the working folder; this reads it from a temporary one.
    """
    import cocoex

    suite = cocoex.Suite("bbob", "", f"dimensions: {dim} function_indices: {fid} instance_indices: {iid}")
    problem = suite.get_problem_by_function_dimension_instance(fid, dim, iid)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            problem._best_parameter("print")
            xopt = np.loadtxt("._bbob_problem_best_parameter.txt", ndmin=1)
        finally:
            os.chdir(cwd)
    value = float(problem(xopt))
    problem.free()
    return value


# --------------------------------------------------------------------------- solvers
def solve_mbd(ev: Evaluator, x0, lower, upper, seed: int, dim: int) -> None:
    """``minimize`` as a user calls it: the box as bounds and the budget; everything else default
    (adaptive MBD, 64 samples, IPOP restarts until the budget is spent)."""
    from torch_mbd import minimize

    f = lambda x: torch.from_numpy(ev.evaluate(x.numpy()))
    bounds = (torch.from_numpy(lower), torch.from_numpy(upper))
    minimize(f, torch.from_numpy(x0), max_evals=ev.budget, bounds=bounds, seed=seed, progress=False)


def solve_mbd_paper(ev: Evaluator, x0, lower, upper, seed: int, dim: int) -> None:
    """The paper's MBD as ``minimize`` ran it before issue 23: 64 samples, one schedule over the budget,
    temperature 1.0 (the old default), no restarts."""
    from torch_mbd import minimize

    steps = max((ev.budget - 1) // MBD_SAMPLES, 1)  # minimize also evaluates its final estimate
    f = lambda x: torch.from_numpy(ev.evaluate(x.numpy()))
    bounds = (torch.from_numpy(lower), torch.from_numpy(upper))
    minimize(f, torch.from_numpy(x0), num_samples=MBD_SAMPLES, num_steps=steps, bounds=bounds, seed=seed,
             temperature=1.0, method="mbd", progress=False)


def solve_cmaes(ev: Evaluator, x0, lower, upper, seed: int, dim: int) -> None:
    import cma

    options = {"bounds": [lower.tolist(), upper.tolist()], "verbose": -9, "seed": seed + 1,
               "maxfevals": ev.budget, "verb_filenameprefix": os.devnull, "verb_log": 0}
    cma.fmin2(lambda x: float(ev.evaluate(x)[0]), x0, 2.0, options, restarts=9, incpopsize=2, bipop=False)


def _solve_evotorch(ev: Evaluator, x0, lower, upper, seed: int, dim: int, algorithm: str) -> None:
    try:
        from evotorch import Problem
        from evotorch.algorithms import SNES, XNES
    except ImportError as exc:
        raise ImportError(f"{algorithm} needs evotorch (pip install evotorch): {exc}") from None
    logging.getLogger("evotorch").setLevel(logging.WARNING)  # one INFO line per problem otherwise
    torch.manual_seed(seed)
    problem = Problem("min", lambda X: torch.from_numpy(ev.evaluate(X.numpy())), solution_length=dim,
                      initial_bounds=(-4.0, 4.0), vectorized=True, dtype=torch.float64, seed=seed)
    popsize = MBD_SAMPLES if algorithm == "snes" else 4 + int(3 * math.log(dim))
    cls = SNES if algorithm == "snes" else XNES
    searcher = cls(problem, stdev_init=2.0, center_init=torch.from_numpy(x0), popsize=popsize)
    while True:
        searcher.step()


def solve_ngopt(ev: Evaluator, x0, lower, upper, seed: int, dim: int) -> None:
    try:
        import nevergrad as ng
    except ImportError as exc:
        raise ImportError(f"ngopt needs nevergrad (pip install nevergrad): {exc}") from None
    param = ng.p.Array(init=x0).set_bounds(lower, upper)
    param.random_state = np.random.RandomState(seed)
    opt = ng.optimizers.NGOpt(parametrization=param, budget=ev.budget)
    opt.minimize(lambda x: float(ev.evaluate(x)[0]))


def solve_random(ev: Evaluator, x0, lower, upper, seed: int, dim: int) -> None:
    rng = np.random.default_rng(seed)
    while True:
        ev.evaluate(lower + (upper - lower) * rng.random((1000, dim)))


RUNNERS = {
    "mbd": solve_mbd,
    "mbd-paper": solve_mbd_paper,
    "cmaes": solve_cmaes,
    "snes": lambda *a: _solve_evotorch(*a, algorithm="snes"),
    "xnes": lambda *a: _solve_evotorch(*a, algorithm="xnes"),
    "ngopt": solve_ngopt,
    "random": solve_random,
}


def run_one(solver: str, fid: int, dim: int, iid: int, budget_per_dim: int, coco_data: Path | None) -> dict:
    """One (solver, function, dimension, instance) run; its record (raises ImportError if unavailable)."""
    import cocoex

    fopt = optimum_value(fid, dim, iid)
    suite = cocoex.Suite("bbob", "", f"dimensions: {dim} function_indices: {fid} instance_indices: {iid}")
    problem = suite.get_problem_by_function_dimension_instance(fid, dim, iid)
    cwd = os.getcwd()
    if coco_data is not None:  # COCO writes under ./exdata/RESULT_FOLDER of the working folder
        coco_data.mkdir(parents=True, exist_ok=True)
        os.chdir(coco_data)
        observer = cocoex.Observer("bbob", f"result_folder: {solver}/f{fid:02d}_d{dim:02d}_i{iid:02d} "
                                           f"algorithm_name: {solver}")
        problem.observe_with(observer)
    ev = Evaluator(problem, fopt, budget_per_dim * dim)
    start = time.perf_counter()
    try:
        RUNNERS[solver](ev, np.array(problem.initial_solution, dtype=np.float64),
                        np.array(problem.lower_bounds, dtype=np.float64),
                        np.array(problem.upper_bounds, dtype=np.float64), iid, dim)
    except BudgetSpent:
        pass
    finally:
        seconds = time.perf_counter() - start
        problem.free()
        os.chdir(cwd)
    return dict(solver=solver, function=fid, dim=dim, instance=iid, budget=ev.budget, seconds=seconds,
                fopt=fopt, **ev.record())


# --------------------------------------------------------------------------- store and summary
def load_runs(path: Path) -> list[dict]:
    """The records of ``path`` (JSON lines); a line cut by an interrupted run is dropped."""
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return runs


def run_key(r: dict) -> tuple:
    return (r["solver"], r["function"], r["dim"], r["instance"], r["budget"])


def fraction_reached(runs: list[dict], functions) -> float | None:
    """Fraction of (function, instance, target) triples of ``runs`` (restricted to ``functions``) reached."""
    chosen = [r for r in runs if r["function"] in functions]
    if not chosen:
        return None
    hit = sum(r["hits"][str(t)] is not None for r in chosen for t in TARGETS)
    return hit / (len(chosen) * len(TARGETS))


def summary_table(runs: list[dict], solvers: list[str], dim: int, expected: int | None = None) -> str:
    """Rows: the five groups and all 24 functions; columns: each solver's fraction of triples reached.

    A solver with fewer than ``expected`` runs at ``dim`` (an unfinished grid) gets no column but a
    note under the table: a fraction over a subset of the functions would not compare.
    """
    by_solver = {s: [r for r in runs if r["solver"] == s and r["dim"] == dim] for s in solvers}
    partial = [s for s in solvers if by_solver[s] and expected is not None and len(by_solver[s]) < expected]
    solvers = [s for s in solvers if by_solver[s] and s not in partial]
    rows = []
    for name, fids in [*GROUPS.items(), ("all functions", range(1, 25))]:
        cells = [fraction_reached(by_solver[s], fids) for s in solvers]
        rows.append([name] + ["-" if c is None else f"{c:.2f}" for c in cells])
    per_eval = [1e6 * sum(r["seconds"] for r in by_solver[s]) / max(sum(r["evals"] for r in by_solver[s]), 1)
                for s in solvers]
    rows.append(["time per evaluation (us, incl. the function)"] + [f"{t:.1f}" for t in per_eval])
    table = markdown_table([f"D = {dim}: fraction of (f, instance, target) reached"]
                           + [LABELS[s] for s in solvers], rows)
    notes = [f"{LABELS[s]}: {len(by_solver[s])} of {expected} runs so far, left out" for s in partial]
    return table + "".join(f"\n\n{note}" for note in notes)


def final_precision_table(runs: list[dict], solvers: list[str], dim: int, expected: int | None = None) -> str:
    """Per function: the median over instances of the best precision ``f - f_opt`` each solver reached
    (solvers with fewer than ``expected`` runs at ``dim`` left out, as in :func:`summary_table`)."""
    counts = {s: sum(r["solver"] == s and r["dim"] == dim for r in runs) for s in solvers}
    solvers = [s for s in solvers if counts[s] and (expected is None or counts[s] >= expected)]
    rows = []
    for fid in range(1, 25):
        cells = []
        for s in solvers:
            values = [r["best"] for r in runs if r["solver"] == s and r["dim"] == dim and r["function"] == fid]
            cells.append("-" if not values else f"{float(np.median(values)):.1e}")
        if any(c != "-" for c in cells):
            rows.append([f"f{fid}"] + cells)
    return markdown_table([f"D = {dim}: median best f - f_opt"] + [LABELS[s] for s in solvers], rows)


def ecdf(runs: list[dict], dim: int, budget_per_dim: int, points: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """The runtime distribution of COCO's ECDF figures, from the run records: for each budget
    ``evals / D`` on a log grid up to ``budget_per_dim``, the fraction of the (function, instance,
    target) triples of ``runs`` (at ``dim``) whose target was reached within that many evaluations."""
    grid = np.geomspace(1, budget_per_dim, points)
    hits = [r["hits"][str(t)] for r in runs if r["dim"] == dim for t in TARGETS]
    reached = np.array([np.inf if h is None else h / dim for h in hits])
    if reached.size == 0:
        return grid, np.zeros_like(grid)
    return grid, (reached[None, :] <= grid[:, None]).mean(1)


def ecdf_figure(runs: list[dict], solvers: list[str], dims: list[int], budget_per_dim: int, path: Path,
                title: str, expected: int | None = None) -> Path:
    """One panel per dimension: each solver's :func:`ecdf` over every function (a PNG at ``path``); a
    solver with fewer than ``expected`` runs at a dimension (an unfinished grid) is left out of its panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(dims), figsize=(5.2 * len(dims), 3.8), squeeze=False)
    for ax, dim in zip(axes[0], dims):
        for s in solvers:
            mine = [r for r in runs if r["solver"] == s and r["dim"] == dim]
            if mine and (expected is None or len(mine) >= expected):
                x, y = ecdf(mine, dim, budget_per_dim)
                ax.step(x, y, where="post", label=f"{LABELS[s]} ({len(mine)} runs)", lw=2 if s == "mbd" else 1.2)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_xlabel("evaluations / D")
        ax.set_ylabel("fraction of (f, instance, target) reached")
        ax.set_title(f"bbob, D = {dim}, 24 functions, targets 1e1 .. 1e-5")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--solvers", nargs="+", default=["mbd", "mbd-paper", "cmaes", "snes", "xnes", "random"],
                   choices=SOLVERS)
    p.add_argument("--functions", nargs="+", type=int, default=list(range(1, 25)), help="bbob function ids 1-24")
    p.add_argument("--dims", nargs="+", type=int, default=[10, 40], help="dimensions (bbob: 2 3 5 10 20 40)")
    p.add_argument("--instances", nargs="+", type=int, default=[1, 2, 3], help="instance ids (settings: 1-3)")
    p.add_argument("--budget", type=int, default=1000, help="evaluations per dimension (default 1000)")
    p.add_argument("--runs", type=Path, default=ROOT / "docs" / "figures" / "bbob_runs.jsonl",
                   help="JSON lines of finished runs (resumable)")
    p.add_argument("--coco-data", type=Path, default=Path("bbob-coco"),
                   help="COCO's data goes to DIR/exdata/SOLVER/ ('none': no COCO data)")
    p.add_argument("--fresh", action="store_true", help="ignore (and overwrite) the runs already in --runs")
    p.add_argument("--cocopp", action="store_true", help="run cocopp on --coco-data after the grid")
    p.add_argument("--report", action="store_true", help="run nothing: the tables of the runs stored in --runs")
    p.add_argument("--no-write", action="store_true", help="print the tables only; leave docs/ alone")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    try:
        import cocoex
    except ImportError:
        p.error('needs COCO: pip install -e ".[bbob]" (coco-experiment, cocopp, cma)')
    if any(not 1 <= f <= 24 for f in args.functions):
        p.error(f"--functions must lie in 1-24, got {args.functions}")
    if any(d not in (2, 3, 5, 10, 20, 40) for d in args.dims):
        p.error(f"--dims must be bbob dimensions (2 3 5 10 20 40), got {args.dims}")
    if any(not 1 <= i <= 15 for i in args.instances) or args.budget < 1:
        p.error("--instances must lie in 1-15 and --budget be >= 1")
    coco_data = None if str(args.coco_data) == "none" else args.coco_data.resolve()
    cocoex.log_level("warning")
    for solver in args.solvers:  # import each solver's package before any timing
        try:
            __import__({"mbd": "torch_mbd", "mbd-paper": "torch_mbd", "cmaes": "cma", "snes": "evotorch", "xnes": "evotorch",
                        "ngopt": "nevergrad", "random": "numpy"}[solver])
        except ImportError:
            pass
    if {"mbd", "mbd-paper"} & set(args.solvers):  # the first optimizer step of a process imports torch._dynamo (~2 s): not MBD's cost
        from torch_mbd import minimize

        minimize(lambda x: x.square().sum(-1), torch.zeros(2, dtype=torch.float64), num_samples=2, num_steps=1,
                 progress=False)
    if args.fresh and args.runs.exists():
        args.runs.unlink()
    stored = load_runs(args.runs)
    args.runs.parent.mkdir(parents=True, exist_ok=True)
    if args.runs.exists() and len(args.runs.read_text().splitlines()) != len(stored):  # drop a cut line
        args.runs.write_text("".join(json.dumps(r) + "\n" for r in stored))
    done = {run_key(r): r for r in stored}
    unavailable = {}
    grid = [(s, d, f, i) for d in args.dims for f in args.functions for i in args.instances for s in args.solvers]
    for k, (solver, dim, fid, iid) in enumerate(grid):
        key = (solver, fid, dim, iid, args.budget * dim)
        if key in done or solver in unavailable or args.report:
            continue
        try:
            r = run_one(solver, fid, dim, iid, args.budget, coco_data)
        except ImportError as exc:
            unavailable[solver] = str(exc)
            print(f"[bbob] {solver}: not run ({exc})", flush=True)
            continue
        done[key] = r
        with args.runs.open("a") as fh:  # one line per finished run: an interrupted grid resumes here
            fh.write(json.dumps(r) + "\n")
        print(f"[bbob {k + 1}/{len(grid)}] {solver:6s} f{fid:02d} D={dim:2d} i{iid}: best f-fopt {r['best']:.2e} "
              f"after {r['evals']} evals, {r['seconds']:.1f} s", flush=True)
    wanted = [r for r in done.values() if r["function"] in args.functions and r["instance"] in args.instances
              and r["dim"] in args.dims and r["budget"] == args.budget * r["dim"]]
    tables = []
    for dim in args.dims:
        expected = len(args.functions) * len(args.instances)
        tables += [summary_table(wanted, args.solvers, dim, expected),
                   final_precision_table(wanted, args.solvers, dim, expected)]
    text = "\n\n".join(tables)
    print(text)
    section, figures = f"bbob_i{''.join(map(str, args.instances))}", []
    if args.cocopp and coco_data is not None:
        import subprocess

        folders = [str(coco_data / "exdata" / s) for s in args.solvers if (coco_data / "exdata" / s).is_dir()]
        done_pp = subprocess.run([sys.executable, "-m", "cocopp", "-o", str(coco_data / "ppdata"), *folders])
        if done_pp.returncode == 0:
            print(f"cocopp wrote {coco_data / 'ppdata'} (index.html; the ECDF figures pprldmany_*)")
            if not args.no_write:  # the all-functions ECDF of each dimension into the docs
                import shutil

                for dim in args.dims:
                    for svg in sorted((coco_data / "ppdata").glob(f"*/pprldmany_{dim:02d}D_noiselessall.svg"))[-1:]:
                        target = figure_path(f"bbob_ecdf_{dim:02d}D_{section}.svg")
                        shutil.copyfile(svg, target)
                        figures.append(f"figures/{target.name}")
        else:
            print(f"cocopp failed (exit status {done_pp.returncode}); the data is in {coco_data / 'exdata'}")
    if not args.no_write:  # the runtime distributions from the records (every solver, with or without COCO data)
        target = ecdf_figure(wanted, args.solvers, args.dims, args.budget, figure_path(f"bbob_ecdf_{section}.png"),
                             f"instances {' '.join(map(str, args.instances))}, budget {args.budget} x D",
                             expected=len(args.functions) * len(args.instances))
        figures.insert(0, f"figures/{target.name}")
    if not args.no_write:
        instances = " ".join(map(str, args.instances))
        pictures = "\n\n".join(f"![COCO's runtime distribution (ECDF) over all functions]({f})" for f in figures)
        given, raw = [], list(sys.argv[1:] if argv is None else argv)
        while raw:  # what reruns the grid: not --report, and not where this machine kept COCO's data
            a = raw.pop(0)
            if a == "--coco-data":
                raw.pop(0) if raw else None
            elif a != "--report" and not a.startswith("--coco-data="):
                given.append(a)
        command = " ".join(["python -m benchmarks.bbob", *given])
        write_section(section, f"""## COCO bbob, instances {instances}

`{command}` on {machine()}: {len(args.functions)} functions, budget {args.budget} x D evaluations, targets
f - f_opt in {", ".join(f"{t:g}" for t in TARGETS)}; the run records are in `{args.runs.relative_to(ROOT)
if args.runs.is_relative_to(ROOT) else args.runs}`. The fractions and precisions do not depend on the
machine's speed or load; the times per evaluation are of the load the machine had when each solver's runs
were made (shared with other work, and not in one session for every solver: they compare nothing;
`python -m benchmarks.blackbox_overhead` measures the optimizers' overhead in one run). Each solver's budget, stopping rule and start are
in the module's docstring. The first figure is the runtime distribution (COCO's ECDF: the fraction
of (function, instance, target) triples reached against evaluations / D) drawn from the run records;
cocopp's own figures follow where the grid ran with `--cocopp` (COCO's data of every solver).
{"Not run: " + "; ".join(f"{s} ({m})" for s, m in unavailable.items()) if unavailable else ""}

{text}

{pictures}
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
