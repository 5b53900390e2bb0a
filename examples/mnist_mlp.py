"""Train the paper's MNIST MLP without gradients (MBD paper, appendix A.2.1).

A 784-32-32-10 ReLU MLP with the cross-entropy loss, optimized by ``torch_mbd.MBDOptimizer``
alone: each step scores 256 candidate parameter sets on a fresh minibatch (one batched call
built by ``torch_mbd.batched_closure``) and moves to their reward-weighted mean. No
``backward()`` anywhere.

The defaults follow the authors' script (``mbd/blackbox/mbd_mnist.py``): 256 samples, 500
diffusion steps, betas 3e-5 to 1e-3, temperature 0.3, a fresh minibatch of 256 images per step
(the script's ``batch_size = 128`` is unused: it draws ``Nsample`` images), 20% of the
coordinates perturbed per sample and 10x smaller noise on the first layer's weight.
``--auto`` drops those two hand tricks and uses ``MBDOptimizer``'s automatic per-tensor
defaults instead (``noise_scale="auto"``, ``fraction="auto"``; see docs/training.md).

Data: the four MNIST IDX files (gzipped or not), read by :func:`read_idx` below from ``--data``
or its ``MNIST/raw`` subfolder (torchvision's layout). ``--data`` defaults to
``$TORCH_MBD_DATA/mnist`` when that variable names an offline data folder, else to the user cache
``~/.cache/torch-mbd/mnist`` (``$XDG_CACHE_HOME``). ``--download`` fetches the files there once
with ``torchvision.datasets.MNIST`` (``pip install 'torch-mbd[mnist]'``; torchvision is imported
only to download).

Run::

    python examples/mnist_mlp.py --download            # the official settings (fetch MNIST once), a few minutes on a 2-core CPU
    python examples/mnist_mlp.py --data ../shared/data/mnist   # offline: a folder with the four IDX files
    python examples/mnist_mlp.py --auto                # automatic defaults, no per-layer tuning
    python examples/mnist_mlp.py --auto --steps 300 --batch-size 128 --train-size 10000   # the plain drop-in loop
    python examples/mnist_mlp.py --sgd --plot mnist.png   # + SGD-momentum baseline for the same wall time
    python examples/mnist_mlp.py --device cuda
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

DATA_ENV = "TORCH_MBD_DATA"  # an offline data folder holding mnist/ (as dynamics.data)
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX type byte -> numpy dtype (multi-byte types are big-endian).
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


# --------------------------------------------------------------------------- data
def read_idx(path: str | Path) -> Tensor:
    """Read an IDX file (gzipped when the name ends in ``.gz``) into a tensor.

    The format: a magic number ``0x0000TTNN`` (``TT`` the element type, ``NN`` the number of
    dimensions), ``NN`` big-endian uint32 sizes, then the data.

    Args:
        path: the file.

    Returns:
        A tensor of the file's shape, e.g. ``uint8 [60000, 28, 28]`` for MNIST training images.

    Raises:
        ValueError: the file is not IDX (wrong magic number), is truncated, or has trailing bytes.
    """
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile) as err:
        raise ValueError(f"{path}: damaged or truncated gzip file ({err})") from err
    if len(data) < 4:
        raise ValueError(f"{path}: truncated IDX file: {len(data)} bytes, expected at least a 4-byte magic number")
    magic = struct.unpack(">I", data[:4])[0]
    type_code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{path}: wrong magic number 0x{magic:08x}: not an IDX file (expected 0x0000TTNN with type TT in "
            f"{sorted(hex(t) for t in IDX_DTYPES)} and NN >= 1 dimensions)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX file: header needs {header} bytes, the file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        kind = "truncated" if len(data) - header < expected else "has trailing bytes"
        raise ValueError(f"{path}: IDX file {kind}: shape {shape} needs {expected} data bytes, found {len(data) - header}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def default_data_dir() -> Path:
    """``$TORCH_MBD_DATA/mnist`` when the variable is set, else the user cache's ``torch-mbd/mnist``."""
    folder = os.environ.get(DATA_ENV, "")
    if folder:
        return Path(folder).expanduser() / "mnist"
    cache = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "torch-mbd" / "mnist"


class MnistNotFoundError(FileNotFoundError):
    """The MNIST files are not where they were looked for; the message names every way to get them."""


def _find(data_dir: Path, stem: str) -> Path:
    for folder in (data_dir, data_dir / "MNIST" / "raw"):  # ours, then torchvision's layout
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    raise MnistNotFoundError(
        f"MNIST file {stem}[.gz] not found in {data_dir}: pass --download to fetch MNIST there once (needs "
        f"torchvision: pip install 'torch-mbd[mnist]'), or --data DIR (or {DATA_ENV}=DIR with DIR/mnist) "
        "holding the four IDX files"
    )


def download_mnist(data_dir: str | Path) -> None:
    """Download MNIST into ``data_dir/MNIST/raw`` with ``torchvision.datasets.MNIST`` (once: it skips files it has).

    Raises:
        MnistNotFoundError: torchvision does not import (the message says how to install it), or the
            download failed (no network); one line each.
    """
    try:
        from torchvision.datasets import MNIST  # only here: torchvision needs the torch it was built for
    except Exception as err:  # noqa: BLE001  (ImportError, or a RuntimeError next to a mismatched torch)
        raise MnistNotFoundError(
            f"--download needs torchvision, which does not import ({' '.join(str(err).split())}): "
            "pip install 'torch-mbd[mnist]' (with the torchvision that matches your torch), or pass --data DIR"
        ) from err
    try:
        for train in (True, False):
            MNIST(str(data_dir), train=train, download=True)
    except (RuntimeError, OSError) as err:  # torchvision wraps failed mirrors in a RuntimeError
        raise MnistNotFoundError(
            f"could not download MNIST into {data_dir} ({' '.join(str(err).split())}): connect to the internet, "
            f"or pass --data DIR (or {DATA_ENV}=DIR with DIR/mnist) holding the four IDX files"
        ) from err


def read_mnist_idx(data_dir: str | Path) -> dict[str, Tensor]:
    """The four MNIST IDX files of ``data_dir`` as ``{"train_images": uint8 [60000, 28, 28], ...}``.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is not valid IDX, or images and labels do not match.
    """
    data_dir = Path(data_dir)
    out = {key: read_idx(_find(data_dir, stem)) for key, stem in FILES.items()}
    for split in ("train", "test"):
        images, labels = out[f"{split}_images"], out[f"{split}_labels"]
        if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{data_dir}: {split} images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match "
                "(expected [N, 28, 28] and [N])"
            )
    return out


def load_mnist(data_dir: str | Path | None = None, download: bool = False, device="cpu") -> dict[str, Tensor]:
    """MNIST as float images in ``[0, 1]`` flattened to ``[N, 784]`` and int64 labels ``[N]``.

    Args:
        data_dir: the folder with the IDX files (or torchvision's ``MNIST/raw`` below it);
            default :func:`default_data_dir`.
        download: first fetch them there with torchvision (:func:`download_mnist`).
        device: where the tensors go.

    Returns:
        ``{"train_x": [60000, 784], "train_y": [60000], "test_x": [10000, 784], "test_y": [10000]}``.

    Raises:
        MnistNotFoundError: the files are missing (or could not be downloaded); one line naming
            ``--download``, ``--data`` and ``TORCH_MBD_DATA``.
        ValueError: a file is not valid IDX.
    """
    data_dir = default_data_dir() if data_dir is None else Path(data_dir)
    if download:
        download_mnist(data_dir)
    raw = read_mnist_idx(data_dir)
    out = {}
    for split in ("train", "test"):
        out[f"{split}_x"] = raw[f"{split}_images"].reshape(-1, 784).to(device=device, dtype=torch.float32) / 255.0
        out[f"{split}_y"] = raw[f"{split}_labels"].to(device=device, dtype=torch.int64)
    return out


# --------------------------------------------------------------------------- model
def mlp(seed: int = 0, device="cpu") -> nn.Sequential:
    """The paper's 784-32-32-10 ReLU MLP (26,506 parameters), PyTorch's default initialization."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)).to(device)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 10_000) -> float:
    """Fraction of ``x [N, 784]`` classified as ``y [N]``."""
    correct = sum(int((model(x[i : i + chunk]).argmax(-1) == y[i : i + chunk]).sum()) for i in range(0, len(x), chunk))
    return correct / len(x)


def official_param_groups(model: nn.Sequential, fraction: float = 0.2, first_layer_scale: float = 0.1) -> list[dict]:
    """The authors' two hand tricks as parameter groups: ``fraction`` everywhere, smaller noise on layer 1's weight."""
    first = model[0].weight
    rest = [p for p in model.parameters() if p is not first]
    return [
        {"params": [first], "noise_scale": first_layer_scale, "fraction": fraction},
        {"params": rest, "noise_scale": 1.0, "fraction": fraction},
    ]


# --------------------------------------------------------------------------- training
def train_mbd(model, data, args, on_eval=None) -> dict:
    """Train ``model`` with MBD; returns the curves of :func:`_loop`."""
    import torch_mbd

    params = model.parameters() if args.auto else official_param_groups(model)
    opt = torch_mbd.MBDOptimizer(
        params,
        num_samples=args.samples,
        num_steps=args.steps,
        temperature=args.temperature,
        beta_first=args.beta0,
        beta_last=args.beta1,
        seed=args.seed,
    )
    return _loop(model, data, args, args.steps, lambda xb, yb: opt.step(torch_mbd.batched_closure(model, F.cross_entropy, xb, yb)), None, on_eval)


def train_sgd(model, data, args, seconds: float, on_eval=None) -> dict:
    """SGD with momentum on minibatches of ``args.sgd_batch`` for ``seconds`` of wall time."""
    opt = torch.optim.SGD(model.parameters(), lr=args.sgd_lr, momentum=0.9)

    def step(xb, yb):
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.detach()

    return _loop(model, data, args, None, step, seconds, on_eval, batch_size=args.sgd_batch)


def _loop(model, data, args, num_steps, step, seconds, on_eval, batch_size=None) -> dict:
    """Minibatch loop: ``num_steps`` steps, or as many as fit in ``seconds``; evaluates every ``args.eval_every``.

    Returns the curves at each evaluation: ``times`` (training wall seconds), ``cpu_times``
    (this process's CPU seconds, all threads), ``steps``, ``test_acc`` and ``loss`` (the last
    step's minibatch loss), evaluation time excluded from both clocks.
    """
    from torch_mbd.progress import progress_bar

    batch_size = batch_size or args.batch_size
    train_x, train_y = data["train_x"][: args.train_size], data["train_y"][: args.train_size]
    g = torch.Generator(device="cpu").manual_seed(args.seed)
    acc0 = accuracy(model, data["test_x"], data["test_y"])
    curve = {"times": [0.0], "cpu_times": [0.0], "steps": [0], "test_acc": [acc0], "loss": [math.nan]}
    eval_time = eval_cpu = 0.0  # evaluation is excluded from the training time
    start, cpu_start = time.perf_counter(), time.process_time()
    total = num_steps if num_steps is not None else 10**9
    label = "MBD" if num_steps is not None else "SGD"
    with progress_bar(num_steps, label, enabled=not args.quiet) as bar:  # SGD: no total, a step count
        k = 0
        while k < total:
            idx = torch.randperm(len(train_x), generator=g)[:batch_size].to(train_x.device)
            loss = float(step(train_x[idx], train_y[idx]))
            k += 1
            bar.update()
            elapsed = time.perf_counter() - start - eval_time
            done = k == total or (seconds is not None and elapsed >= seconds)
            if k % args.eval_every == 0 or done:
                t0, c0 = time.perf_counter(), time.process_time()
                cpu_elapsed = c0 - cpu_start - eval_cpu
                acc = accuracy(model, data["test_x"], data["test_y"])
                if model.parameters().__next__().is_cuda:
                    torch.cuda.synchronize()
                eval_time += time.perf_counter() - t0
                eval_cpu += time.process_time() - c0
                point = {"times": elapsed, "cpu_times": cpu_elapsed, "steps": k, "test_acc": acc, "loss": loss}
                for key, value in point.items():
                    curve[key].append(value)
                bar.set_postfix(loss=f"{loss:.3f}", test_acc=f"{acc:.3f}")
                if on_eval is not None:
                    on_eval(curve)
            if done:
                break
    return curve


def plot(curves: dict[str, dict], path: str) -> None:
    """Test accuracy against wall time, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        ax.plot(curve["times"], [100 * a for a in curve["test_acc"]], label=label)
    ax.set_xlabel("training wall time [s]")
    ax.set_ylabel("test accuracy [%]")
    ax.set_title("MNIST 784-32-32-10 MLP")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout and shows every option's default."""


def build_parser() -> argparse.ArgumentParser:
    """The example's options; ``--help`` shows each one's default."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=_HelpFormatter)
    p.add_argument("--data", default=str(default_data_dir()),
                   help=f"folder with the four MNIST IDX files (or torchvision's MNIST/raw below it); ${DATA_ENV}/mnist "
                   "when that variable is set, else the user cache")
    p.add_argument("--download", action="store_true",
                   help="fetch MNIST into --data once with torchvision (pip install 'torch-mbd[mnist]')")
    p.add_argument("--samples", type=int, default=256, help="candidates per step")
    p.add_argument("--steps", type=int, default=500, help="diffusion steps")
    p.add_argument("--temperature", type=float, default=0.3, help="sampling temperature lambda")
    p.add_argument("--beta0", type=float, default=3e-5, help="first beta of the noise schedule")
    p.add_argument("--beta1", type=float, default=1e-3, help="last beta of the noise schedule")
    p.add_argument("--batch-size", type=int, default=256, help="images per MBD step (as the authors' code)")
    p.add_argument("--train-size", type=int, default=60_000, help="use the first N training images")
    p.add_argument("--auto", action="store_true", help="automatic noise_scale/fraction instead of the authors' hand tricks")
    p.add_argument("--sgd", action="store_true", help="also train SGD with momentum for the same wall time")
    p.add_argument("--sgd-lr", type=float, default=0.1, help="SGD learning rate")
    p.add_argument("--sgd-batch", type=int, default=128, help="SGD minibatch size")
    p.add_argument("--eval-every", type=int, default=10, help="steps between test-accuracy evaluations")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial network and the sampler")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where training runs (cuda when available)")
    p.add_argument("--plot", metavar="PATH", help="write the test-accuracy curve to PATH (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available on this machine")
    for name in ("samples", "steps", "batch_size", "train_size", "eval_every", "sgd_batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (checked before training: a missing library loses no run)
        except ImportError:
            p.error("--plot needs matplotlib: pip install 'torch-mbd[examples]'")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        data = load_mnist(args.data, args.download, args.device)
    except MnistNotFoundError as err:  # one line, no traceback: how to get the data
        print(f"mnist_mlp.py: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    train_x, train_y = data["train_x"][: args.train_size], data["train_y"][: args.train_size]
    model = mlp(args.seed, args.device)
    mbd_label = "MBD" + (" (auto)" if args.auto else "")
    curves = {mbd_label: train_mbd(model, data, args)}
    mbd = curves[mbd_label]
    print(f"{mbd_label}: train accuracy {100 * accuracy(model, train_x, train_y):.2f}%, test accuracy "
          f"{100 * mbd['test_acc'][-1]:.2f}%, {mbd['times'][-1]:.1f} s of training on {args.device} "
          f"({mbd['cpu_times'][-1]:.1f} s CPU), {mbd['steps'][-1]} steps")
    if args.sgd:
        sgd_model = mlp(args.seed, args.device)
        curves["SGD momentum"] = sgd = train_sgd(sgd_model, data, args, seconds=mbd["times"][-1])
        print(f"SGD momentum: train accuracy {100 * accuracy(sgd_model, train_x, train_y):.2f}%, test accuracy "
              f"{100 * sgd['test_acc'][-1]:.2f}%, {sgd['times'][-1]:.1f} s of training ({sgd['cpu_times'][-1]:.1f} s CPU), "
              f"{sgd['steps'][-1]} steps")
    if args.plot:
        plot(curves, args.plot)
        print(f"wrote {args.plot}")
    return curves


if __name__ == "__main__":
    main()
