"""Black-box benchmark (paper, appendix A.2 and Fig. 5): MBD vs CMA-ES vs CEM on Ackley and Rastrigin.

Every method gets the same budget: ``--samples`` evaluations per step (CMA-ES: population
size) for ``--steps`` steps, the same bounds ``[-1, 1]^D``, the same initial guess and the
same seeds. As in the authors' code the search box ``[-1, 1]`` is mapped affinely onto the
functions' domains: Ackley ``[-5, 10]`` (optimum 0 at ``x = 0``, i.e. ``y = -1/3``) and
Rastrigin ``[-5, 5]`` (optimum 0 at ``y = 0``). The score of a run is the best value it
evaluated (``minimize(...).fun``).

Run (defaults: the issue's sizes; about 3 minutes on a 2-core CPU)::

    python -m benchmarks.blackbox
    python -m benchmarks.blackbox --dims 20 200 --seeds 2 --no-write      # quick look
    python -m benchmarks.blackbox --methods mbd cmaes cem mppi --init zero  # start at y = 0

Flags: ``--functions``, ``--dims``, ``--methods`` (mbd, cmaes, cem, mppi), ``--seeds``,
``--samples``, ``--steps``, ``--temperature`` (MBD and MPPI), ``--noise`` (MBD's noise
convention), ``--init`` (``random``: a uniform point in the box drawn per seed, shared by all
methods; ``zero``: the centre of the box), ``--device``, ``--no-write`` (print only).
Writes the section ``blackbox`` of docs/results.md and docs/figures/blackbox_convergence.png.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure_path, machine, markdown_table, write_section  # noqa: E402
from torch_mbd import minimize  # noqa: E402

DOMAINS = {"ackley": (-5.0, 10.0), "rastrigin": (-5.0, 5.0)}
LABELS = {"mbd": "MBD", "cmaes": "CMA-ES", "cem": "CEM", "mppi": "MPPI"}


def to_domain(y: torch.Tensor, name: str) -> torch.Tensor:
    """Map ``y`` in ``[-1, 1]`` onto the function's search domain, elementwise."""
    lo, hi = DOMAINS[name]
    return lo + (hi - lo) * (y + 1.0) / 2.0


def ackley(y: torch.Tensor) -> torch.Tensor:
    """Ackley (a=20, b=0.2, c=2 pi) on ``[-5, 10]^D`` through the ``[-1, 1]`` box: ``[n, D] -> [n]``."""
    x = to_domain(y, "ackley")
    rms = x.square().mean(-1).sqrt()
    return -20.0 * torch.exp(-0.2 * rms) - torch.exp(torch.cos(2 * math.pi * x).mean(-1)) + 20.0 + math.e


def rastrigin(y: torch.Tensor) -> torch.Tensor:
    """Rastrigin on ``[-5, 5]^D`` through the ``[-1, 1]`` box: ``[n, D] -> [n]``."""
    x = to_domain(y, "rastrigin")
    return 10.0 * x.shape[-1] + (x.square() - 10.0 * torch.cos(2 * math.pi * x)).sum(-1)


FUNCTIONS = {"ackley": ackley, "rastrigin": rastrigin}


def initial_guess(dim: int, seed: int, init: str, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """The shared starting point ``[dim]``: uniform in ``[-1, 1]`` from ``seed``, or the box centre."""
    if init == "zero":
        return torch.zeros(dim, dtype=dtype, device=device)
    g = torch.Generator().manual_seed(10_000 + seed)
    return (torch.rand(dim, generator=g, dtype=torch.float64) * 2 - 1).to(device, dtype)


def run_one(fn: str, dim: int, method: str, seed: int, args) -> dict:
    """One optimization run; returns the best value, the wall time and the best-so-far curve."""
    x0 = initial_guess(dim, seed, args.init, device=args.device)
    options = {}
    if method == "mbd":
        options["noise"] = args.noise
    res = minimize(
        FUNCTIONS[fn],
        x0,
        num_samples=args.samples,
        num_steps=args.steps,
        temperature=args.temperature,
        bounds=(-1.0, 1.0),
        seed=seed,
        progress=False,
        method=method,
        **options,
    )
    return dict(best=res.fun, time=res.time, curve=res.history.best_so_far.double(), start=float(FUNCTIONS[fn](x0[None])))


def run_grid(args) -> dict:
    """``{(fn, dim, method): [run_one(...) per seed]}``, printing progress on stderr."""
    for method in args.methods:  # warm up (imports, first-call allocations) outside the timings
        minimize(rastrigin, torch.zeros(4, device=args.device), num_samples=8, num_steps=2, seed=0, progress=False, method=method)
    results = {}
    for fn in args.functions:
        for dim in args.dims:
            for method in args.methods:
                runs = []
                for seed in range(args.seeds):
                    runs.append(run_one(fn, dim, method, seed, args))
                results[(fn, dim, method)] = runs
                best = torch.tensor([r["best"] for r in runs])
                print(
                    f"  {fn:9s} {dim:4d}-d {LABELS[method]:6s} best {best.mean():.4g} ± {best.std(unbiased=False):.3g}"
                    f"  ({sum(r['time'] for r in runs) / len(runs):.2f} s/run)",
                    file=sys.stderr,
                )
    return results


def summary_table(results: dict, args) -> str:
    """Markdown table: best value mean ± std over seeds and mean wall time per run."""
    header = ["function", "D", "start"] + [f"{LABELS[m]} best" for m in args.methods] + [f"{LABELS[m]} s/run" for m in args.methods]
    rows = []
    for fn in args.functions:
        for dim in args.dims:
            runs0 = results[(fn, dim, args.methods[0])]
            start = sum(r["start"] for r in runs0) / len(runs0)
            means = {m: torch.tensor([r["best"] for r in results[(fn, dim, m)]]) for m in args.methods}
            winner = min(args.methods, key=lambda m: float(means[m].mean()))
            cells = []
            for m in args.methods:
                text = f"{means[m].mean():.4g} ± {means[m].std(unbiased=False):.2g}"
                cells.append(f"**{text}**" if m == winner else text)
            times = [f"{sum(r['time'] for r in results[(fn, dim, m)]) / args.seeds:.2f}" for m in args.methods]
            rows.append([fn.capitalize(), str(dim), f"{start:.4g}"] + cells + times)
    return markdown_table(header, rows)


def convergence_plot(results: dict, args, path: Path) -> Path:
    """Best-so-far value vs evaluations (mean over seeds, band = ± std), one panel per function and D."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(args.functions), len(args.dims), figsize=(4.2 * len(args.dims), 3.4 * len(args.functions)), squeeze=False
    )
    evals = torch.arange(1, args.steps + 1) * args.samples
    for r, fn in enumerate(args.functions):
        for c, dim in enumerate(args.dims):
            ax = axes[r][c]
            for m in args.methods:
                curves = torch.stack([run["curve"] for run in results[(fn, dim, m)]])
                mean, std = curves.mean(0), curves.std(0, unbiased=False)
                ax.plot(evals, mean, label=LABELS[m])
                ax.fill_between(evals, (mean - std).clamp(min=1e-12), mean + std, alpha=0.2)
            ax.set_yscale("log")
            ax.set_title(f"{fn.capitalize()} {dim}-d")
            ax.set_xlabel("evaluations")
            if c == 0:
                ax.set_ylabel("best value so far")
            ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--functions", nargs="+", default=["ackley", "rastrigin"], choices=sorted(FUNCTIONS))
    p.add_argument("--dims", nargs="+", type=int, default=[20, 200, 800])
    p.add_argument("--methods", nargs="+", default=["mbd", "cmaes", "cem"], choices=sorted(LABELS))
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--temperature", type=float, default=1.0, help="MBD/MPPI temperature (the authors' black-box code: 1.0)")
    p.add_argument("--noise", default="official", choices=["official", "paper"], help="MBD noise convention")
    p.add_argument("--init", default="random", choices=["random", "zero"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-write", action="store_true", help="print the table only; leave docs/ alone")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    command = "python -m benchmarks.blackbox " + " ".join(argv if argv is not None else sys.argv[1:])
    start = time.perf_counter()
    results = run_grid(args)
    table = summary_table(results, args)
    print(table)
    print(f"total {time.perf_counter() - start:.0f} s on {machine()}")
    if args.no_write:
        return
    fig = convergence_plot(results, args, figure_path("blackbox_convergence.png"))
    budget = f"n = {args.samples} samples per step, {args.steps} steps ({args.samples * args.steps} evaluations), {args.seeds} seeds"
    text = f"""## Black-box optimization: Ackley and Rastrigin

`{command.strip()}` on {machine()}.

Best value found (mean ± std over seeds; lower is better, the optimum is 0) and mean wall time
per run in seconds. Equal budget for every method: {budget}; search box `[-1, 1]^D` mapped
onto Ackley `[-5, 10]^D` and Rastrigin `[-5, 5]^D`; initial guess `{args.init}` (shared by
all methods); MBD temperature {args.temperature}, noise convention `{args.noise}`; CMA-ES is
pycma with population = n and initial step size = MBD's first noise level; CEM keeps the
best 10%. "start" is the value at the initial guess. Bold: best mean.

{table}

![Black-box convergence](figures/{fig.name})
"""
    write_section("blackbox", text)
    print(f"wrote docs/results.md (section blackbox) and {fig}")


if __name__ == "__main__":
    main()
