"""Per-evaluation overhead of the black-box optimizers: ``minimize`` (adaptive MBD) against pycma.

The objective is a sphere evaluated as a user of each library would write it for COCO (one point
per call for pycma, as ``cma.fmin2`` calls it; one ``[n, D]`` batch for ``minimize``), so the time
per evaluation is almost all the optimizer's own: sampling, weights, the covariance update and its
factorization. Both run the same number of evaluations from the same start, interleaved, and the
median of ``--repeats`` timings is reported, measured in one run (the machine's load cancels in the
ratio). CMA-ES runs without restarts here (a sphere needs none); the ``minimize`` run stops at the
budget.

Run::

    python -m benchmarks.blackbox_overhead                     # D = 10 and 40, 64 samples
    python -m benchmarks.blackbox_overhead --dims 10 --evals 5000 --repeats 3 --no-write

Flags: ``--dims``, ``--evals`` (per dimension), ``--samples`` (minimize's), ``--repeats``, ``--no-write``.
Writes the section ``blackbox_overhead`` of docs/results.md. Needs pycma (``pip install cma``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, markdown_table, write_section  # noqa: E402


def time_minimize(dim: int, evals: int, samples: int, seed: int) -> float:
    """Seconds per evaluation of ``minimize`` (adaptive MBD) on a sphere, float64."""
    from torch_mbd import minimize

    x0 = torch.full((dim,), 3.0, dtype=torch.float64)
    start = time.perf_counter()
    res = minimize(lambda x: x.square().sum(-1), x0, num_samples=samples, max_evals=evals, restarts=0,
                   bounds=(-5.0, 5.0), seed=seed, progress=False)
    return (time.perf_counter() - start) / res.nfev


def time_cmaes(dim: int, evals: int, seed: int) -> float:
    """Seconds per evaluation of pycma's CMA-ES (its default population) on the same sphere."""
    import cma

    count = [0]

    def f(x):
        count[0] += 1
        return float(np.dot(x, x))

    options = {"bounds": [-5.0, 5.0], "verbose": -9, "seed": seed + 1, "maxfevals": evals, "tolfun": 0,
               "tolx": 0, "tolfunhist": 0, "tolflatfitness": 10**9, "verb_log": 0}
    start = time.perf_counter()
    cma.fmin2(f, np.full(dim, 3.0), 2.0, options)
    return (time.perf_counter() - start) / count[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dims", nargs="+", type=int, default=[10, 40])
    p.add_argument("--evals", type=int, default=1000, help="evaluations per dimension (default 1000)")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    try:
        import cma  # noqa: F401
    except ImportError:
        p.error("needs pycma: pip install cma")
    time_minimize(2, 200, 8, 0)  # the first step of a process imports torch's dispatch machinery
    rows = []
    for dim in args.dims:
        evals = args.evals * dim
        mbd, cmaes = [], []
        for k in range(args.repeats):  # interleaved: both see the same load
            mbd.append(time_minimize(dim, evals, args.samples, k))
            cmaes.append(time_cmaes(dim, evals, k))
        m, c = statistics.median(mbd), statistics.median(cmaes)
        rows.append([str(dim), f"{evals}", f"{1e6 * m:.1f}", f"{1e6 * c:.1f}", f"{m / c:.2f}"])
        print(f"D={dim}: minimize {1e6 * m:.1f} us/eval, CMA-ES {1e6 * c:.1f} us/eval, ratio {m / c:.2f}", flush=True)
    table = markdown_table(["D", "evaluations", f"minimize, {args.samples} samples (us / eval)",
                            "pycma CMA-ES (us / eval)", "ratio"], rows)
    print(table)
    if not args.no_write:
        command = "python -m benchmarks.blackbox_overhead " + " ".join(sys.argv[1:] if argv is None else argv)
        write_section("blackbox_overhead", f"""## Black-box overhead per evaluation: adaptive MBD against CMA-ES

`{command.strip()}` on {machine()}: a sphere from x0 = 3, bounds [-5, 5], float64, the median of
{args.repeats} interleaved runs each; the objective costs almost nothing, so this is the optimizers'
own time per evaluation (sampling, weights, covariance update and factorization).

{table}
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
