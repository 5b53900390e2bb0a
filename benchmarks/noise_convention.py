"""Which sampling-noise convention should MBD use by default? A measurement.

The authors' code draws samples with ``sigma_i = sqrt(1 - alpha_bar_i)`` (``noise="official"``);
the paper's Algorithm 1 writes the covariance ``(1 / alpha_bar_i - 1) I``
(``noise="paper"``, ``sigma_i = sqrt(1/alpha_bar_i - 1)``, larger early on: 0.81 vs 0.63 at
the first step with the default schedule, equal at the end). This script runs MBD with both
on the black-box functions of ``benchmarks/blackbox.py`` and on the car2d trajectory task
(when ``dynamics.car`` is importable), same seeds and budgets, and reports which is better.

Run (defaults: about 2 minutes on a 2-core CPU)::

    python -m benchmarks.noise_convention
    python -m benchmarks.noise_convention --dims 20 200 --seeds 2 --no-car --no-write

Flags: ``--functions``, ``--dims``, ``--seeds``, ``--samples`` / ``--steps`` (black-box),
``--temperature`` (black-box), ``--init`` (random | zero), ``--car-samples``, ``--car-steps``,
``--no-car``, ``--no-write``. Writes the section ``noise_convention`` of docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, markdown_table, write_section  # noqa: E402
from benchmarks.blackbox import FUNCTIONS, initial_guess  # noqa: E402
from torch_mbd import minimize, plan  # noqa: E402

CONVENTIONS = ("official", "paper")


def blackbox_rows(args) -> tuple[list[list[str]], dict]:
    """Best value (mean ± std over seeds) for each function, dimension and convention."""
    rows, wins = [], {c: 0 for c in CONVENTIONS}
    for fn in args.functions:
        for dim in args.dims:
            best = {}
            for noise in CONVENTIONS:
                vals = []
                for seed in range(args.seeds):
                    x0 = initial_guess(dim, seed, args.init)
                    res = minimize(
                        FUNCTIONS[fn], x0, num_samples=args.samples, num_steps=args.steps,
                        temperature=args.temperature, bounds=(-1.0, 1.0), seed=seed, progress=False, noise_convention=noise,
                    )
                    vals.append(res.fun)
                best[noise] = torch.tensor(vals)
            winner = min(CONVENTIONS, key=lambda c: float(best[c].mean()))
            wins[winner] += 1
            cells = [f"{best[c].mean():.4g} ± {best[c].std(unbiased=False):.2g}" for c in CONVENTIONS]
            rows.append([f"{fn.capitalize()} {dim}-d (best value, lower is better)"] + cells + [winner])
            print(f"  {rows[-1]}", file=sys.stderr)
    return rows, wins


def car_rows(args) -> tuple[list[list[str]], dict]:
    """Final reward and feasible fraction of ``plan`` on car2d for each convention."""
    try:
        from dynamics.registry import make

        model = make("car2d")
    except Exception as exc:  # noqa: BLE001 - the task is optional here; say why it was skipped
        print(f"  car2d skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return [], {c: 0 for c in CONVENTIONS}
    result = {}
    for noise in CONVENTIONS:
        rewards, feasible = [], []
        for seed in range(args.seeds):
            res = plan(model, num_samples=args.car_samples, num_steps=args.car_steps, seed=seed, progress=False, noise_convention=noise,
                       preset="paper")
            rewards.append(res.reward)
            feasible.append(float(res.feasible.float().mean()))
        result[noise] = (torch.tensor(rewards), sum(feasible) / len(feasible))
    winner = max(CONVENTIONS, key=lambda c: float(result[c][0].mean()))
    cells = [f"{r.mean():.4g} ± {r.std(unbiased=False):.2g} (feasible {f:.0%})" for r, f in (result[c] for c in CONVENTIONS)]
    row = [f"car2d, n={args.car_samples} (mean step reward, higher is better)"] + cells + [winner]
    print(f"  {row}", file=sys.stderr)
    return [row], {c: int(c == winner) for c in CONVENTIONS}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--functions", nargs="+", default=["ackley", "rastrigin"], choices=sorted(FUNCTIONS))
    p.add_argument("--dims", nargs="+", type=int, default=[20, 200, 800])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--init", default="random", choices=["random", "zero"])
    p.add_argument("--car-samples", type=int, default=256)
    p.add_argument("--car-steps", type=int, default=100)
    p.add_argument("--no-car", action="store_true")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    start = time.perf_counter()
    rows, wins = blackbox_rows(args)
    if not args.no_car:
        more, car_wins = car_rows(args)
        rows += more
        wins = {c: wins[c] + car_wins[c] for c in CONVENTIONS}
    table = markdown_table(["problem", "noise=official", "noise=paper", "better"], rows)
    overall = max(CONVENTIONS, key=lambda c: wins[c])
    summary = f"`official` better in {wins['official']} of {len(rows)} problems, `paper` in {wins['paper']}."
    command = "python -m benchmarks.noise_convention " + " ".join(argv if argv is not None else sys.argv[1:])
    print(table)
    print(summary, f"({time.perf_counter() - start:.0f} s on {machine()})")
    if args.no_write:
        return
    write_section(
        "noise_convention",
        f"""## Noise convention: `official` vs `paper`

`{command.strip()}` on {machine()}.

MBD with the authors' sampling noise `sqrt(1 - alpha_bar_i)` (`noise="official"`) and with the
paper's `sqrt(1/alpha_bar_i - 1)` (`noise="paper"`), same seeds ({args.seeds}), budgets and
initial guesses (`{args.init}`); black-box problems as in the black-box benchmark
(n = {args.samples}, {args.steps} steps, temperature {args.temperature}).
{summary} Overall better here: **`{overall}`**.

{table}
""",
    )
    print("wrote docs/results.md (section noise_convention)")


if __name__ == "__main__":
    main()
