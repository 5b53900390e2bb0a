"""What building a ``batched_closure`` costs next to calling it (a new closure per minibatch).

The build checks the model once (shared memory, input dtypes and devices, parameter names);
this prints its median time per build and per call of ``n`` candidates, and their ratio, for the
MNIST MLP of docs/training.md and for a deep stack of small layers (many tensors, little work).

    python benchmarks/closure_build.py
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from torch_mbd import batched_closure


def median_seconds(fn, repeats: int, rounds: int = 5) -> float:
    """Median over ``rounds`` of the mean time of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cases = {
        "MNIST MLP 784-32-32-10, batch 256, n = 256": (
            nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)),
            F.cross_entropy, torch.randn(256, 784), torch.randint(0, 10, (256,)), 256),
        "100 x (Linear 16 + BatchNorm), batch 32, n = 64": (
            nn.Sequential(*[nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16)) for _ in range(100)]),
            F.mse_loss, torch.randn(32, 16), torch.randn(32, 16), 64),
    }
    print("model | build (ms) | call (ms) | build / call")
    for name, (model, loss_fn, x, y, n) in cases.items():
        candidates = [p.detach() + 0.01 * torch.randn(n, *p.shape) for p in model.parameters()]
        build = median_seconds(lambda: batched_closure(model, loss_fn, x, y), 50)
        closure = batched_closure(model, loss_fn, x, y)
        call = median_seconds(lambda: closure(candidates), 3)
        print(f"{name} | {build * 1e3:.3f} | {call * 1e3:.1f} | {build / call:.2%}")


if __name__ == "__main__":
    main()
