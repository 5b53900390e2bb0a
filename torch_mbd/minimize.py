"""``minimize``: black-box minimization with Model-Based Diffusion (paper, Algorithm 1)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .baselines import optimizer_class
from .checks import check_bool, check_device, check_int, check_seed, check_tensor
from .optim import check_temperature
from .progress import progress_bar
from .threads import use_threads


@dataclass
class MinimizeHistory:
    """Per-step record of a [`minimize`][torch_mbd.minimize.minimize] run (``N`` = number of steps).

    Attributes:
        best: ``[N]`` lowest finite cost among each step's samples (``inf`` if none was finite).
        mean: ``[N]`` mean cost of each step's finite samples.
        best_so_far: ``[N]`` lowest cost evaluated up to and including each step.
        estimate: ``[K, *x0.shape]`` the estimate after each of the last ``K`` steps, oldest first:
            ``K = N`` by default, fewer with ``minimize(..., keep_history=False / k)`` (0 / ``min(k, N)``).
    """

    best: Tensor
    mean: Tensor
    best_so_far: Tensor
    estimate: Tensor


@dataclass
class MinimizeResult:
    """What [`minimize`][torch_mbd.minimize.minimize] returns.

    Attributes:
        x: the best point evaluated (the final estimate included), shape of ``x0``.
        fun: its cost, a finite float (NaN and infinite costs are never the best).
        x_final: the final diffusion estimate ``Ybar`` (often equal to ``x`` in quality, smoother).
        fun_final: its cost, as ``f`` returned it (may be NaN or infinite).
        history: a [`MinimizeHistory`][torch_mbd.minimize.MinimizeHistory].
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
    torch_threads: int | str | None = None,
    keep_history: bool | int = True,
    **options,
) -> MinimizeResult:
    """Minimize a batched black-box function with Model-Based Diffusion (or a baseline).

    Args:
        f: maps candidates ``[n, *x0.shape]`` (``[n, D]`` for a vector) to real costs ``[n]``
            (floating-point or integer; integers are converted to floating point before any
            arithmetic). Non-finite costs (NaN, ``+inf`` and ``-inf`` alike) are treated as
            infeasible: weight 0, and never the best point. Every call gets a fresh tensor of its
            own, which ``f`` may keep or modify in place (e.g. clamp): the optimizer works on its
            own copy, and ``res.x`` is the candidate as drawn, so for a deterministic ``f``
            ``f(res.x[None])`` gives ``res.fun`` again.
        x0: the starting point (the initial estimate ``Ybar``), e.g. ``[D]``: a non-empty, finite
            tensor or NumPy array; an integer ``x0`` is converted to the default floating dtype.
        num_samples: candidates per step ``n``.
        num_steps: diffusion steps ``N``.
        temperature: ``lambda``; costs are standardized per step before it is applied. ``"auto"`` sets it
            every step to keep an effective sample size of ``target_ess`` (an option, default 0.1) times
            ``n`` (methods without a temperature ignore it).
        bounds: ``(lower, upper)`` floats or tensors broadcastable to ``x0``; candidates are clipped.
        seed: seed of the sampling generator (same seed, same result), in ``[0, 2**64 - 1]``.
        device: where to run; default ``x0.device``.
        progress: show a tqdm progress bar.
        method: ``"mbd"`` (default), or a baseline at the same budget (``num_samples`` per step,
            ``num_steps`` steps, same ``x0`` and bounds): ``"cem"``, ``"mppi"``, ``"cmaes"`` (pycma) or
            ``"predictive"`` (`torch_mbd.baselines`), or the paper's baselines as the authors ran them,
            ``"paper-mppi"``, ``"paper-cem"``, ``"paper-cmaes"`` (reproductions, not recommendations:
            [`torch_mbd.paper_baselines`][torch_mbd.paper_baselines]): any name of [`torch_mbd.METHODS`][torch_mbd.METHODS]. The result has the
            same fields for every method.
        **options: any other option of the chosen optimizer: for MBD ([`MBDOptimizer`][torch_mbd.MBDOptimizer])
            ``beta_first``, ``beta_last``, ``noise_convention``, ``step_scale``, ``demo``, ...; for CEM
            ``elite_fraction``, ``init_std``; for MPPI ``noise_std``; for CMA-ES ``sigma0``, ``cma_options``.
        torch_threads: torch intra-op threads while minimizing (restored afterwards): default 1, or
            ``$TORCH_MBD_THREADS``; ``"torch"`` keeps torch's setting, e.g. for an ``f`` that runs a
            large network ([`torch_mbd.threads`][torch_mbd.threads]).
        keep_history: which estimates ``history.estimate`` keeps: ``True`` (default) one per step,
            ``False`` none, an integer ``k >= 0`` those of the last ``k`` steps. The estimates are
            the only part of the history that grows with ``x0``: ``num_steps x x0.numel()`` numbers
            (3,000 steps at ``D = 10,000`` in float32: 114 MiB), allocated once before the first
            step. The per-step costs (``best``, ``mean``, ``best_so_far``) are always kept.

    Returns:
        A [`MinimizeResult`][torch_mbd.minimize.MinimizeResult].

    Raises:
        TypeError: ``f`` is not callable, ``x0`` is not a real tensor / NumPy array, or ``f``
            returns bool or complex costs.
        ValueError: a bad number, flag, ``keep_history``, device or ``bounds``; an empty or non-finite ``x0``; ``f``
            returns costs of the wrong shape or device; or no evaluated point had a finite cost.

    Example:
        >>> res = minimize(lambda x: (x**2).sum(-1), torch.ones(10), seed=0, progress=False)
        >>> res.fun < 1e-2
        True
    """
    x0 = check_tensor("x0", x0)
    if not callable(f):
        raise TypeError(f"f must be callable ([n, D] -> [n]), got {type(f).__name__}")
    if x0.numel() == 0:
        raise ValueError(f"Invalid x0: expected at least one entry, got shape {tuple(x0.shape)}")
    num_samples = check_int("num_samples", num_samples, minimum=1)
    num_steps = check_int("num_steps", num_steps, minimum=1)
    progress = check_bool("progress", progress)
    kept = _history_length(keep_history, num_steps)
    temperature = check_temperature("temperature", temperature)
    seed = check_seed(seed)
    x = x0.detach().to(device=x0.device if device is None else check_device(device)).clone()
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if not bool(torch.isfinite(x).all()):
        raise ValueError("Invalid x0: expected finite entries, got NaN or inf")
    bounds = _bounds(bounds, x)
    # costs, best and history in at least float32 whatever the dtype of x (float16 overflows at 65504)
    cost_dtype = torch.promote_types(x.dtype, torch.float32)
    optimizer = optimizer_class(method)
    opt = optimizer(
        [x], num_samples=num_samples, temperature=temperature, num_steps=num_steps, bounds=bounds, seed=seed,
        torch_threads="torch", **options,  # the threads of use_threads(torch_threads) below
    )
    # The history is allocated once, up front: no per-step allocations that outlive the step.
    best, mean, best_so_far = (torch.empty(num_steps, dtype=cost_dtype, device=x.device) for _ in range(3))
    estimates = torch.empty(kept, *x.shape, dtype=x.dtype, device=x.device)
    record = {"fun": torch.tensor(float("inf"), dtype=cost_dtype, device=x.device), "x": x.clone(), "step": 0}

    def closure(candidates: list[Tensor]) -> Tensor:
        cands = candidates[0]  # a view into the optimizer's sample buffer: f gets a copy of its own
        costs = _costs(f, cands.clone(), cost_dtype)
        finite = torch.where(torch.isfinite(costs), costs, torch.full_like(costs, float("inf")))
        k = torch.argmin(finite)
        step_best = finite[k].to(cost_dtype)
        improved = step_best < record["fun"]
        record["x"] = torch.where(improved, cands[k], record["x"])
        record["fun"] = torch.minimum(step_best, record["fun"])
        ok = torch.isfinite(costs)
        step = record["step"]
        best[step] = step_best
        mean[step] = torch.where(ok, costs, torch.zeros_like(costs)).sum() / ok.sum().clamp(min=1)
        best_so_far[step] = record["fun"]
        return costs

    start = time.perf_counter()
    with use_threads(torch_threads), progress_bar(num_steps, f"{method.upper()} minimize", progress) as bar:
        for step in range(num_steps):
            record["step"] = step
            opt.step(closure)
            if kept:
                estimates[step % kept] = x  # a ring over the last `kept` steps
            bar.update()
            if progress:
                bar.set_postfix(best=f"{float(record['fun']):.4g}")
    with torch.no_grad(), use_threads(torch_threads):
        final_cost = _costs(f, x.unsqueeze(0).clone(), cost_dtype)[0].to(cost_dtype)
    fun_final = float(final_cost)
    if math.isfinite(fun_final) and fun_final < float(record["fun"]):
        record["x"], record["fun"] = x.clone(), final_cost
    if not math.isfinite(float(record["fun"])):
        raise ValueError(
            f"f returned no finite cost at any of the {num_steps * num_samples + 1} points evaluated "
            "(NaN, inf and -inf count as infeasible): check f, x0 and the bounds"
        )
    elapsed = time.perf_counter() - start
    if kept and num_steps > kept:  # oldest first
        estimates = estimates.roll(-(num_steps % kept), dims=0)
    history = MinimizeHistory(best=best.cpu(), mean=mean.cpu(), best_so_far=best_so_far.cpu(), estimate=estimates.cpu())
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


def _history_length(keep_history, num_steps: int) -> int:
    """How many estimates ``keep_history`` (``True``, ``False`` or an integer ``>= 0``) keeps of ``num_steps``."""
    try:
        return num_steps if check_bool("keep_history", keep_history) else 0
    except ValueError:
        pass
    try:
        return min(check_int("keep_history", keep_history, minimum=0), num_steps)
    except ValueError:
        raise ValueError(f"Invalid keep_history: expected True, False or an integer >= 0, got {keep_history!r}") from None


def _costs(f: Callable[[Tensor], Tensor], candidates: Tensor, dtype: torch.dtype) -> Tensor:
    """``f(candidates [n, ...])`` checked: a real ``[n]`` tensor on the candidates' device.

    Integer costs are converted to ``dtype`` (floating point) before any arithmetic, so that
    neither negation nor the ``inf`` used for invalid costs can overflow; floating-point costs
    of a lower precision than ``dtype`` are promoted to it.
    """
    n = candidates.shape[0]
    costs = f(candidates)
    if not isinstance(costs, Tensor) or tuple(costs.shape) != (n,):
        got = tuple(costs.shape) if isinstance(costs, Tensor) else type(costs).__name__
        raise ValueError(f"f must map [n, ...] candidates to [n] costs: expected ({n},), got {got}")
    if costs.dtype == torch.bool or costs.is_complex():
        raise TypeError(f"f must return real (integer or floating-point) costs, got dtype {costs.dtype}")
    if costs.device != candidates.device:
        raise ValueError(f"f returned costs on {costs.device}, the candidates are on {candidates.device}")
    return costs.to(torch.promote_types(costs.dtype, dtype)) if costs.is_floating_point() else costs.to(dtype)


def _bounds(bounds, x: Tensor):
    """``bounds`` as a ``(lower, upper)`` pair with tensors (or NumPy arrays) on ``x``'s device and dtype."""
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"Invalid bounds: expected None or a (lower, upper) pair, got {bounds!r}")
    pair = []
    for name, b in zip(("lower", "upper"), bounds):
        if isinstance(b, Tensor) or type(b).__module__ == "numpy":
            b = check_tensor(f"bounds {name}", b).to(x.device, x.dtype)
        pair.append(b)
    return tuple(pair)
