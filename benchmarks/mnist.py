"""MNIST without gradients (paper, appendix A.2.1): test accuracy vs wall time, MBD vs SGD with momentum.

The paper's 784-32-32-10 ReLU MLP and cross-entropy loss, trained from the same initialization
per seed by

* ``mbd``: ``MBDOptimizer`` with the authors' settings (256 samples, 500 steps, betas 3e-5 to
  1e-3, temperature 0.3, a fresh minibatch of 256 images per step, 20% of the coordinates
  perturbed per sample, 10x smaller noise on the first layer's weight);
* ``auto``: the same loop with ``MBDOptimizer``'s automatic ``noise_scale`` / ``fraction``
  (no per-layer tuning) instead of the two hand tricks;
* ``sgd``: SGD with momentum 0.9 (lr 0.1, minibatches of 128) for the wall time the first MBD
  method took, so both get the same budget.

Test accuracy is measured on the full 10,000-image test set; evaluation time is excluded from
the training time. The model, data reader and training loops are the example's
(``examples/mnist_mlp.py``), imported from it.

Run (defaults: about 15 minutes on a loaded 2-core CPU)::

    python -m benchmarks.mnist
    python -m benchmarks.mnist --methods mbd auto sgd --seeds 3
    python -m benchmarks.mnist --steps 100 --seeds 1 --no-write      # quick look

Flags: ``--methods`` (mbd, auto, sgd), ``--seeds``, ``--steps`` (MBD steps), ``--samples``,
``--train-size`` (first N training images), ``--eval-every`` (steps between evaluations),
``--data`` (folder with the IDX files), ``--device``, ``--no-write`` (print only),
``--save-curves PATH`` (every run's curves as JSON).
Writes the section ``mnist`` of docs/results.md and docs/figures/mnist.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure_path, machine, markdown_table, write_section

ROOT = Path(__file__).resolve().parent.parent
LABELS = {"mbd": "MBD (official settings)", "auto": "MBD (auto defaults)", "sgd": "SGD momentum"}


def load_example():
    """``examples/mnist_mlp.py`` as a module (``examples/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("mnist_mlp_example", ROOT / "examples" / "mnist_mlp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


def example_args(args, seed: int, auto: bool) -> argparse.Namespace:
    """The example's options for one run."""
    argv = [
        "--samples", str(args.samples), "--steps", str(args.steps), "--train-size", str(args.train_size),
        "--eval-every", str(args.eval_every), "--seed", str(seed), "--device", args.device, "--quiet",
    ]  # fmt: skip
    return example.parse_args(argv + (["--auto"] if auto else []))


def run_seed(data, args, seed: int) -> dict:
    """``{method: curve}`` for one seed; SGD gets the wall time of the first MBD method."""
    out, budget = {}, None
    for method in args.methods:
        model = example.mlp(seed, args.device)
        if method == "sgd":
            seconds = budget if budget is not None else args.sgd_seconds
            curve = example.train_sgd(model, data, example_args(args, seed, False), seconds=seconds)
        else:
            curve = example.train_mbd(model, data, example_args(args, seed, method == "auto"))
            budget = curve["times"][-1] if budget is None else budget
        curve["train_acc"] = example.accuracy(model, data["train_x"][: args.train_size], data["train_y"][: args.train_size])
        out[method] = curve
        print(
            f"  seed {seed} {LABELS[method]:24s} test {100 * curve['test_acc'][-1]:.2f}%  "
            f"train {100 * curve['train_acc']:.2f}%  {curve['times'][-1]:.1f} s  {curve['steps'][-1]} steps",
            file=sys.stderr,
        )
    return out


def summary_table(results: list[dict], args) -> str:
    """Markdown table: final test/train accuracy (mean ± std over seeds), wall and CPU time, steps."""
    rows = []
    for method in args.methods:
        test = np.array([100 * r[method]["test_acc"][-1] for r in results])
        train = np.array([100 * r[method]["train_acc"] for r in results])
        times = np.array([r[method]["times"][-1] for r in results])
        cpu = np.array([r[method]["cpu_times"][-1] for r in results])
        steps = np.array([r[method]["steps"][-1] for r in results])
        rows.append([
            LABELS[method], f"{test.mean():.2f} ± {test.std():.2f}", f"{train.mean():.2f} ± {train.std():.2f}",
            f"{times.mean():.1f}", f"{cpu.mean():.1f}", f"{steps.mean():.0f}",
        ])  # fmt: skip
    header = ["method", "test accuracy %", "train accuracy %", "training wall time s", "training CPU time s", "steps"]
    return markdown_table(header, rows)


def accuracy_plot(results: list[dict], args, path: Path) -> Path:
    """Test accuracy vs training wall time: mean over seeds, band = min..max, per method.

    Runs of one method end at different times (the machine's load varies); a finished run
    holds its final accuracy up to the longest run's end.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in args.methods:
        curves = [r[method] for r in results]
        end = max(c["times"][-1] for c in curves)
        grid = np.linspace(0.0, end, 400)
        accs = np.stack([np.interp(grid, c["times"], 100 * np.asarray(c["test_acc"])) for c in curves])
        ax.plot(grid, accs.mean(0), label=LABELS[method])
        ax.fill_between(grid, accs.min(0), accs.max(0), alpha=0.2)
    ax.set_xlabel("training wall time [s]")
    ax.set_ylabel("test accuracy [%]")
    ax.set_ylim(0, 100)
    ax.set_title(f"MNIST 784-32-32-10 MLP, {len(results)} seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    p.add_argument("--methods", nargs="+", default=["mbd", "sgd"], choices=sorted(LABELS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=500, help="MBD steps (default: %(default)s, the authors')")
    p.add_argument("--samples", type=int, default=256, help="MBD candidates per step (default: %(default)s)")
    p.add_argument("--train-size", type=int, default=60_000, help="use the first N training images")
    p.add_argument("--eval-every", type=int, default=25, help="steps between test-accuracy evaluations")
    p.add_argument("--sgd-seconds", type=float, default=30.0, help="SGD wall time when no MBD method runs")
    p.add_argument("--data", default=str(example.default_data_dir()),
                   help="folder with the MNIST IDX files (default: $TORCH_MBD_DATA/mnist, else the user cache)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-write", action="store_true", help="print the table only; leave docs/ alone")
    p.add_argument("--save-curves", metavar="PATH", help="also write every run's curves to PATH (JSON)")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    argv_used = list(argv if argv is not None else sys.argv[1:])
    if args.save_curves:  # where the curves went is not part of the reproducing command
        i = next(i for i, a in enumerate(argv_used) if a.startswith("--save-curves"))
        del argv_used[i : i + (1 if "=" in argv_used[i] else 2)]
    command = "python -m benchmarks.mnist " + " ".join(argv_used)
    try:
        data = example.load_mnist(args.data, device=args.device)
    except example.MnistNotFoundError as err:  # one line: how to get the data
        raise SystemExit(f"benchmarks.mnist: error: {err}") from None
    start = time.perf_counter()
    results = [run_seed(data, args, seed) for seed in range(args.seeds)]
    table = summary_table(results, args)
    print(table)
    print(f"total {time.perf_counter() - start:.0f} s on {machine()}")
    if args.save_curves:
        Path(args.save_curves).write_text(json.dumps(results))
    if args.no_write:
        return
    fig = accuracy_plot(results, args, figure_path("mnist.png"))
    train_images = "all 60,000 training images" if args.train_size >= 60_000 else f"the first {args.train_size} training images"
    text = f"""## MNIST without gradients

`{command.strip()}` on {machine()}, device `{args.device}`.

The paper's 784-32-32-10 ReLU MLP (appendix A.2.1), cross-entropy loss, PyTorch's default
initialization (the same per seed for every method), {train_images}, test accuracy on the full
10,000-image test set (mean ± std over {args.seeds} seeds; evaluation time excluded from the
training time). MBD: {args.samples} samples, {args.steps} steps, betas 3e-5 to 1e-3,
temperature 0.3, a fresh minibatch of 256 images per step; "official settings" perturbs 20% of
the coordinates per sample with 10x smaller noise on the first layer's weight (the authors'
script), "auto defaults" uses `MBDOptimizer`'s automatic `noise_scale` / `fraction` instead.
SGD: momentum 0.9, lr 0.1, minibatches of 128, for the wall time of the first MBD run of the
same seed. CPU time is the process's, all threads. The paper reports 85.5% (MBD, 256 samples,
about 2 s on a GPU) and 92.7% (SGD with momentum).

The CPU was shared with other jobs whose load varied during the run: wall and CPU times (and
so SGD's step count) vary between seeds; compare methods within one seed or this table only.
Figure: mean over seeds, band from the worst to the best seed; a finished run holds its final
accuracy up to the longest run's end.

{table}

![MNIST test accuracy vs wall time](figures/{fig.name})
"""
    write_section("mnist", text)
    print(f"wrote docs/results.md (section mnist) and {fig}")


if __name__ == "__main__":
    main()
