"""``minimize``: black-box minimization with Model-Based Diffusion (paper, Algorithm 1)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .baselines import optimizer_class
from .progress import progress_bar


@dataclass
class MinimizeHistory:
    """Per-step record of a :func:`minimize` run (``N`` = number of steps).

    Attributes:
        best: ``[N]`` lowest cost among each step's samples.
        mean: ``[N]`` mean cost of each step's finite samples.
        best_so_far: ``[N]`` lowest cost evaluated up to and including each step.
        estimate: ``[N, *x0.shape]`` the estimate after each step.
    """

    best: Tensor
    mean: Tensor
    best_so_far: Tensor
    estimate: Tensor


@dataclass
class MinimizeResult:
    """What :func:`minimize` returns.

    Attributes:
        x: the best point evaluated (the final estimate included), shape of ``x0``.
        fun: its cost, a float.
        x_final: the final diffusion estimate ``Ybar`` (often equal to ``x`` in quality, smoother).
        fun_final: its cost.
        history: a :class:`MinimizeHistory`.
        nfev: number of points evaluated (``num_steps * num_samples + 1``).
        nit: number of diffusion steps.
        time: wall time in seconds.
    """

    x: Tensor
    fun: float
    x_final: Tensor
    fun_final: float
    history: MinimizeHistory
    nfev: int
    nit: int
    time: float

    def __repr__(self) -> str:
        return f"MinimizeResult(fun={self.fun:.6g}, fun_final={self.fun_final:.6g}, nfev={self.nfev}, nit={self.nit}, time={self.time:.3g}s)"


def minimize(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    num_samples: int = 64,
    num_steps: int = 100,
    temperature: float = 1.0,
    bounds: tuple | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    method: str = "mbd",
    **options,
) -> MinimizeResult:
    """Minimize a batched black-box function with Model-Based Diffusion (or a baseline).

    Args:
        f: maps candidates ``[n, *x0.shape]`` (``[n, D]`` for a vector) to costs ``[n]``. Non-finite
            costs are treated as infeasible (weight 0).
        x0: the starting point (the initial estimate ``Ybar``), e.g. ``[D]``.
        num_samples: candidates per step ``n``.
        num_steps: diffusion steps ``N``.
        temperature: ``lambda``; costs are standardized per step before it is applied.
        bounds: ``(lower, upper)`` floats or tensors broadcastable to ``x0``; candidates are clipped.
        seed: seed of the sampling generator (same seed, same result).
        device: where to run; default ``x0.device``.
        progress: show a tqdm progress bar.
        method: ``"mbd"`` (default), or a baseline at the same budget (``num_samples`` per step,
            ``num_steps`` steps, same ``x0`` and bounds): ``"cem"``, ``"mppi"`` or ``"cmaes"``
            (pycma; :mod:`torch_mbd.baselines`). The result has the same fields for every method.
        **options: any other option of the chosen optimizer: for MBD (:class:`~torch_mbd.MBDOptimizer`)
            ``beta0``, ``beta1``, ``noise``, ``step_scale``, ``demo``, ...; for CEM ``elite_fraction``,
            ``init_std``; for MPPI ``noise_std``; for CMA-ES ``sigma0``, ``cma_options``.

    Returns:
        A :class:`MinimizeResult`.

    Example:
        >>> res = minimize(lambda x: (x**2).sum(-1), torch.ones(10), seed=0, progress=False)
        >>> res.fun < 1e-2
        True
    """
    if not isinstance(x0, Tensor):
        raise TypeError(f"x0 must be a tensor, got {type(x0).__name__}")
    if not callable(f):
        raise TypeError(f"f must be callable ([n, D] -> [n]), got {type(f).__name__}")
    x = x0.detach().to(device=device if device is not None else x0.device).clone()
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if bounds is not None:
        bounds = tuple(b.to(x.device, x.dtype) if isinstance(b, Tensor) else b for b in bounds)
    optimizer = optimizer_class(method)
    opt = optimizer(
        [x], num_samples=num_samples, temperature=temperature, num_steps=num_steps, bounds=bounds, seed=seed, **options
    )
    best, mean, best_so_far, estimates = [], [], [], []
    record = {"fun": torch.tensor(float("inf"), dtype=x.dtype, device=x.device), "x": x.clone()}

    def closure(candidates: list[Tensor]) -> Tensor:
        cands = candidates[0]
        costs = f(cands)
        if not isinstance(costs, Tensor) or costs.shape != (cands.shape[0],):
            got = tuple(costs.shape) if isinstance(costs, Tensor) else type(costs).__name__
            raise ValueError(f"f must map [n, ...] candidates to [n] costs: expected ({cands.shape[0]},), got {got}")
        finite = torch.where(torch.isfinite(costs), costs, torch.full_like(costs, float("inf")))
        k = torch.argmin(finite)
        step_best = finite[k].to(x.dtype)
        improved = step_best < record["fun"]
        record["x"] = torch.where(improved, cands[k], record["x"])
        record["fun"] = torch.minimum(step_best, record["fun"])
        ok = torch.isfinite(costs)
        best.append(step_best)
        mean.append(torch.where(ok, costs, torch.zeros_like(costs)).sum() / ok.sum().clamp(min=1))
        best_so_far.append(record["fun"].clone())
        return costs

    start = time.perf_counter()
    with progress_bar(num_steps, f"{method.upper()} minimize", progress) as bar:
        for _ in range(num_steps):
            opt.step(closure)
            estimates.append(x.clone())
            bar.update()
            if progress:
                bar.set_postfix(best=f"{float(record['fun']):.4g}")
    final_cost = f(x.unsqueeze(0))
    fun_final = float(final_cost.reshape(-1)[0])
    if fun_final < float(record["fun"]):
        record["x"], record["fun"] = x.clone(), torch.tensor(fun_final)
    elapsed = time.perf_counter() - start
    history = MinimizeHistory(
        best=torch.stack(best).cpu(),
        mean=torch.stack(mean).to(x.dtype).cpu(),
        best_so_far=torch.stack(best_so_far).cpu(),
        estimate=torch.stack(estimates).cpu(),
    )
    return MinimizeResult(
        x=record["x"],
        fun=float(record["fun"]),
        x_final=x,
        fun_final=fun_final,
        history=history,
        nfev=num_steps * num_samples + 1,
        nit=num_steps,
        time=elapsed,
    )
