"""Gradient-free training: automatic noise_scale / fraction, MBD-only training runs, the MNIST IDX reader.

The IDX reader lives in ``examples/mnist_mlp.py`` (the example is meant to be copied as one
file); ``examples/`` is not a package, so the module is loaded from its path.
"""

import gzip
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _scripts import load_script
from torch import nn

from torch_mbd import MBDOptimizer, batched_closure
from torch_mbd.optim import auto_fraction, auto_noise_scale

ROOT = Path(__file__).resolve().parent.parent


example = load_script("examples/mnist_mlp.py", "mnist_mlp_example")


# --------------------------------------------------------------------------- automatic defaults
def test_auto_noise_scale_and_fraction_rules():
    assert auto_noise_scale((32, 784)) == pytest.approx(4 / 28)
    assert auto_noise_scale((8, 3, 5, 5)) == pytest.approx(4 / math.sqrt(75))  # conv: fan_in = in * kernel
    assert auto_noise_scale((32,)) == 1.0 and auto_noise_scale(()) == 1.0
    assert auto_fraction(500) == 1.0 and auto_fraction(1000) == 1.0
    assert auto_fraction(26506) == pytest.approx(1000 / 26506)


def perturbation_stats(params, **kwargs):
    """Per-tensor (std, fraction non-zero) of the first step's perturbations."""
    opt = MBDOptimizer(params, num_samples=256, num_steps=10, seed=0, **kwargs)
    base = [p.detach().clone() for p in opt._params]
    seen = []
    opt.step(lambda c: seen.extend(t.clone() for t in c) or torch.zeros(256))
    sigma = opt.last_step.sigma
    out = []
    for c, b in zip(seen, base):
        d = c - b
        nz = d != 0
        out.append((float(d[nz].std()) / sigma, float(nz.double().mean())))
    return out


def test_auto_resolves_per_parameter_for_a_network():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10))  # D = 6370
    stats = perturbation_stats(model.parameters())
    frac = 1000 / 6370
    expected_scale = [4 / 28, 1.0, 4 / math.sqrt(8), 1.0]
    for (std, nonzero), scale in zip(stats, expected_scale):
        assert std == pytest.approx(scale, rel=0.15)
    assert stats[0][1] == pytest.approx(frac, rel=0.05)  # 401k draws: tight


def test_auto_is_the_papers_behaviour_for_plain_tensors_and_rollouts():
    # Plain tensors (black-box vectors, control sequences): "auto" is exactly noise_scale=1, fraction=1.
    def run(**kwargs):
        x = torch.zeros(3, 40)
        opt = MBDOptimizer([x], num_samples=32, num_steps=5, seed=4, **kwargs)
        for _ in range(5):
            opt.step(lambda c: (c[0] - 0.3).square().sum((1, 2)))
        return x

    assert torch.equal(run(), run(noise_scale=1.0, fraction=1.0))
    # Rollout mode, even when the action tensor is an nn.Parameter.
    actions = nn.Parameter(torch.zeros(10, 2))
    stats = perturbation_stats_rollout(actions)
    assert stats == (pytest.approx(1.0, rel=0.1), 1.0)


def perturbation_stats_rollout(actions):
    from torch_mbd import Trajectory

    seen = []

    def rollout(a):
        seen.append(a.clone())
        return Trajectory(states=a, rewards=-a.square().sum(-1), feasible=None)

    opt = MBDOptimizer([actions], num_samples=64, num_steps=10, rollout=rollout, seed=0)
    opt.step()
    d = seen[0]  # the samples of a zero estimate are the perturbations themselves
    return float(d.std()) / opt.last_step.sigma, float((d != 0).double().mean())


def test_auto_options_validated():
    with pytest.raises(ValueError, match="noise_scale"):
        MBDOptimizer([torch.zeros(3)], noise_scale="automatic")
    with pytest.raises(ValueError, match="fraction"):
        MBDOptimizer([torch.zeros(3)], fraction="half")


# --------------------------------------------------------------------------- training without gradients
class NoGradGuard:
    """Fails the test if autograd computes a gradient for any of ``params``."""

    def __init__(self, params):
        self.params = list(params)
        self.handles = [p.register_hook(self._fail) for p in self.params]

    @staticmethod
    def _fail(grad):
        raise AssertionError("a gradient was computed")

    def check(self):
        for h in self.handles:
            h.remove()
        assert all(p.grad is None for p in self.params)


def train_mbd(model, x, y, steps, batch, seed=0, num_samples=128, **options):
    """The plain drop-in loop: ``model.parameters()`` and the schedule only, automatic defaults."""
    opt = MBDOptimizer(model.parameters(), num_samples=num_samples, num_steps=steps, temperature=0.3, beta_first=3e-5, beta_last=1e-3, seed=seed, **options)
    guard = NoGradGuard(model.parameters())
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=g)[:batch]
        loss = opt.step(batched_closure(model, F.cross_entropy, x[idx], y[idx]))
        assert not loss.requires_grad
    guard.check()
    return model


def test_mlp_learns_synthetic_classes_without_gradients():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 20, generator=g) * 1.5
    labels = torch.randint(0, 4, (600,), generator=g)
    x = centers[labels] + torch.randn(600, 20, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    chance_acc = float((model(x[400:]).argmax(-1) == labels[400:]).double().mean())
    train_mbd(model, x[:400], labels[:400], steps=80, batch=100)
    acc = float((model(x[400:]).argmax(-1) == labels[400:]).double().mean())
    assert acc > 0.8, (chance_acc, acc)  # chance: 0.25


def test_mnist_mlp_well_above_chance_without_gradients(data_path):
    # A few hundred genuine MNIST images, 2x2-average-pooled to 14x14 to keep the test within a
    # few seconds; automatic defaults only, no per-layer tuning, no backward().
    data = example.read_mnist_idx(data_path("mnist/train-images-idx3-ubyte.gz").parent)

    def pooled(images):
        return F.avg_pool2d(images[:, None].float() / 255, 2).reshape(len(images), -1)

    x, y = pooled(data["train_images"][:500]), data["train_labels"][:500].long()
    xt, yt = pooled(data["test_images"][:1000]), data["test_labels"][:1000].long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(196, 16), nn.ReLU(), nn.Linear(16, 10))
    train_mbd(model, x, y, steps=80, batch=100, num_samples=64)
    acc = example.accuracy(model, xt, yt)
    assert acc > 0.35, acc  # chance: 0.1; this run: about 0.5


# --------------------------------------------------------------------------- the IDX reader
def idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    header = struct.pack(">HBB", 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    floats = np.linspace(-1, 1, 6).astype(">f4").reshape(3, 2)
    for name, array, code in (("img", images, 0x08), ("flt", floats, 0x0D)):
        raw = idx_bytes(array, code)
        path = tmp_path / (name + (".gz" if compress else ""))
        path.write_bytes(gzip.compress(raw) if compress else raw)
        out = example.read_idx(path)
        assert out.shape == array.shape
        np.testing.assert_array_equal(out.numpy(), array.astype(array.dtype.newbyteorder("=")))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda raw: b"\x12\x34" + raw[2:], "wrong magic number"),
        (lambda raw: raw[:2] + b"\x07" + raw[3:], "wrong magic number"),  # unknown type byte
        (lambda raw: raw[:3] + b"\x00" + raw[4:], "wrong magic number"),  # zero dimensions
        (lambda raw: raw[:3], "truncated"),
        (lambda raw: raw[:10], "truncated"),  # header cut
        (lambda raw: raw[:-5], "truncated"),  # data cut
        (lambda raw: raw + b"\x00", "trailing bytes"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path, make, match):
    raw = idx_bytes(np.zeros((2, 3, 4), dtype=np.uint8), 0x08)
    path = tmp_path / "bad"
    path.write_bytes(make(raw))
    with pytest.raises(ValueError, match=match):
        example.read_idx(path)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    raw = gzip.compress(idx_bytes(np.zeros((50, 28, 28), dtype=np.uint8), 0x08))
    path = tmp_path / "cut.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated"):
        example.read_idx(path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="gzip"):
        example.read_idx(path)


def test_read_mnist_idx_checks_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images"):
        example.read_mnist_idx(tmp_path)
    stems = example.FILES
    (tmp_path / (stems["train_images"] + ".gz")).write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8), 8)))
    (tmp_path / (stems["train_labels"] + ".gz")).write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8), 8)))
    (tmp_path / stems["test_images"]).write_bytes(idx_bytes(np.zeros((2, 28, 28), np.uint8), 8))
    (tmp_path / stems["test_labels"]).write_bytes(idx_bytes(np.zeros(2, np.uint8), 8))
    with pytest.raises(ValueError, match="do not match"):
        example.read_mnist_idx(tmp_path)


# --------------------------------------------------------------------------- the example end to end
def fake_mnist(folder, n_train=64, n_test=32, gzip_test=False):
    """Random IDX files in MNIST's layout (gzipped training set, plain test set unless ``gzip_test``)."""
    rng = np.random.default_rng(0)
    stems = example.FILES
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, gz in (("train", n_train, True), ("test", n_test, gzip_test)):
        for kind, array in (("images", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)), ("labels", rng.integers(0, 10, n, dtype=np.uint8))):
            raw = idx_bytes(array, 0x08)
            name = stems[f"{split}_{kind}"] + (".gz" if gz else "")
            (folder / name).write_bytes(gzip.compress(raw) if gz else raw)


def test_example_main_runs_mbd_and_sgd_and_plots(tmp_path, capsys):
    fake_mnist(tmp_path)
    plot = tmp_path / "curve.png"
    argv = ["--data", str(tmp_path), "--steps", "3", "--samples", "8", "--batch-size", "16", "--eval-every", "2"]
    curves = example.main(argv + ["--sgd", "--plot", str(plot), "--quiet", "--device", "cpu"])
    assert set(curves) == {"MBD", "SGD momentum"}
    mbd = curves["MBD"]
    assert mbd["steps"] == [0, 2, 3] and len(mbd["times"]) == len(mbd["cpu_times"]) == len(mbd["test_acc"]) == 3
    assert all(0.0 <= a <= 1.0 for a in mbd["test_acc"])
    assert plot.is_file() and plot.stat().st_size > 0
    out = capsys.readouterr().out
    assert "MBD: train accuracy" in out and "SGD momentum: train accuracy" in out and "s CPU" in out


def test_example_auto_uses_plain_parameters(tmp_path):
    fake_mnist(tmp_path)
    argv = ["--data", str(tmp_path), "--steps", "2", "--samples", "4", "--batch-size", "8", "--auto", "--quiet", "--device", "cpu"]
    assert set(example.main(argv)) == {"MBD (auto)"}


def test_example_rejects_bad_flags(tmp_path):
    with pytest.raises(SystemExit):
        example.parse_args(["--steps", "0"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            example.parse_args(["--device", "cuda"])


# --------------------------------------------------------------------------- where the data comes from
def _exits_with_one_line(capsys, argv, *words):
    """``example.main(argv)`` exits with status 2 and one line on stderr holding every word."""
    with pytest.raises(SystemExit) as exit_info:
        example.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("mnist_mlp.py: error: "), err
    for word in words:
        assert word in err, (word, err)
    return err


def test_missing_data_is_one_line_naming_every_way_to_get_it(tmp_path, capsys):
    argv = ["--data", str(tmp_path), "--quiet", "--device", "cpu"]
    _exits_with_one_line(capsys, argv, str(tmp_path), "--download", "torch-mbd[mnist]", "--data", "TORCH_MBD_DATA")


def test_default_folder_is_the_data_folder_else_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_MBD_DATA", str(tmp_path / "offline"))
    assert example.default_data_dir() == tmp_path / "offline" / "mnist"
    monkeypatch.delenv("TORCH_MBD_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert example.default_data_dir() == tmp_path / "cache" / "torch-mbd" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert example.default_data_dir() == tmp_path / "home" / ".cache" / "torch-mbd" / "mnist"
    assert example.build_parser().parse_args([]).data == str(tmp_path / "home" / ".cache" / "torch-mbd" / "mnist")


def test_torchvisions_layout_is_read_too(tmp_path):
    fake_mnist(tmp_path / "MNIST" / "raw")
    data = example.load_mnist(tmp_path)
    assert data["train_x"].shape == (64, 784) and data["test_y"].shape == (32,)


def _fake_torchvision(monkeypatch, mnist_class):
    """Install a ``torchvision`` whose ``datasets.MNIST`` is ``mnist_class`` (the real one may not import here)."""
    import types

    torchvision = types.ModuleType("torchvision")
    datasets = types.ModuleType("torchvision.datasets")
    datasets.MNIST = mnist_class
    torchvision.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", torchvision)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)


def test_download_fetches_both_splits_with_torchvision_then_reads_them(tmp_path, monkeypatch, capsys):
    calls = []

    class MNIST:  # torchvision's signature; writes what its download writes, into root/MNIST/raw
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            if not (Path(root) / "MNIST" / "raw").is_dir():
                fake_mnist(Path(root) / "MNIST" / "raw")

    _fake_torchvision(monkeypatch, MNIST)
    argv = ["--data", str(tmp_path), "--download", "--steps", "1", "--samples", "4", "--batch-size", "8",
            "--quiet", "--device", "cpu"]
    assert set(example.main(argv)) == {"MBD"}
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
    assert "test accuracy" in capsys.readouterr().out


def test_download_failures_are_one_line(tmp_path, monkeypatch, capsys):
    argv = ["--data", str(tmp_path), "--download", "--quiet", "--device", "cpu"]

    class Offline:
        def __init__(self, root, train=True, download=False):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://..., got:\n<urlopen error>")

    _fake_torchvision(monkeypatch, Offline)
    _exits_with_one_line(capsys, argv, "could not download MNIST", "--data", "TORCH_MBD_DATA")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # not installed: the import raises ImportError
    monkeypatch.delitem(sys.modules, "torchvision.datasets")
    _exits_with_one_line(capsys, argv, "needs torchvision", "torch-mbd[mnist]", "--data")


def test_real_torchvision_downloads_from_a_local_mirror(tmp_path):
    try:
        from torchvision.datasets import MNIST
    except Exception as err:  # noqa: BLE001  (here: a wheel built for another torch fails with a RuntimeError)
        pytest.skip(f"torchvision does not import here ({' '.join(str(err).split())[:200]})")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    fake_mnist(mirror, gzip_test=True)
    resources = [(name, _md5(mirror / name)) for name, _ in MNIST.resources]
    original = (MNIST.mirrors, MNIST.resources)
    MNIST.mirrors, MNIST.resources = [mirror.as_uri() + "/"], resources  # file:// : nothing leaves the machine
    try:
        data = example.load_mnist(tmp_path / "data", download=True)
    finally:
        MNIST.mirrors, MNIST.resources = original
    assert data["train_x"].shape == (64, 784) and data["test_x"].shape == (32, 784)


def _md5(path):
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


# benchmarks/mnist.py: tests/test_mnist_benchmark.py


# --------------------------------------------------------------------------- schedules (docs/training.md)
def test_lr_schedulers_do_not_apply_and_noise_scale_is_the_knob():
    def fresh():
        x = torch.zeros(4)
        return x, MBDOptimizer([x], num_samples=8, num_steps=5, seed=0, noise_scale=1.0)

    x, opt = fresh()
    assert all("lr" not in group for group in opt.param_groups)  # nothing a scheduler could change
    with pytest.raises(KeyError, match="lr"):
        torch.optim.lr_scheduler.StepLR(opt, step_size=2)

    def loss(c):
        return ((c[0] - 0.3) ** 2).sum(-1)

    spreads = []
    for halve in (False, True):  # the same run twice; the second halves the noise before step 2
        x, opt = fresh()
        opt.step(loss)
        if halve:
            opt.param_groups[0]["noise_scale"] = 0.5
        before = x.clone()
        opt.step(loss)
        spreads.append(opt.last_step.samples.reshape(8, 4) - before)
    torch.testing.assert_close(spreads[1], 0.5 * spreads[0])
    opt.param_groups[0]["noise_scale"] = -1.0  # checked like a constructor argument, at the next step
    with pytest.raises(ValueError, match="noise_scale"):
        opt.step(loss)
