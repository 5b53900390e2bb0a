"""``minimize``: black-box minimization with Model-Based Diffusion (paper, Algorithm 1).

Beyond the paper, the stopping criteria and restarts the field expects (pycma, nevergrad): a budget
of evaluations (``max_evals``), a target cost (``ftarget``), CMA-ES's ``tol_fun`` and ``tol_x``, the
method's own [`stop_reason`][torch_mbd.sampling.SamplingOptimizer.stop_reason], IPOP restarts (``restarts``, ``restart_growth``) and a
per-step ``callback`` ([`torch_mbd.callbacks`][torch_mbd.callbacks]).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .adaptation import tol_fun_window
from .baselines import optimizer_class
from .callbacks import StepLog, as_float, check_callback
from .checks import check_bool, check_device, check_int, check_positive, check_real, check_seed, check_tensor
from .optim import check_temperature
from .progress import progress_bar
from .threads import use_threads


@dataclass
class MinimizeHistory:
    """Per-step record of a [`minimize`][torch_mbd.minimize.minimize] run (``N`` = number of steps, over every restart).

    The runs of a run with restarts follow each other, oldest first; ``restart`` says which run a
    step belongs to.

    Attributes:
        best: ``[N]`` lowest finite cost among each step's samples (``inf`` if none was finite).
        mean: ``[N]`` mean cost of each step's finite samples.
        best_so_far: ``[N]`` lowest cost evaluated up to and including each step (over every run so far).
        estimate: ``[K, *x0.shape]`` the estimate after each of the last ``K`` steps, oldest first:
            ``K = N`` by default, fewer with ``minimize(..., keep_history=False / k)`` (0 / ``min(k, N)``).
        restart: ``[N]`` int64, the run of each step: 0 for the first, ``r`` after ``r`` restarts.
    """

    best: Tensor
    mean: Tensor
    best_so_far: Tensor
    estimate: Tensor
    restart: Tensor


DEFAULT_STEPS = 100
"""The steps of a [`minimize`][torch_mbd.minimize.minimize] run given neither ``num_steps`` nor ``max_evals``."""

STOP_REASONS = ("num_steps", "max_evals", "ftarget", "tol_fun", "tol_x", "callback")
"""The stop reasons of [`minimize`][torch_mbd.minimize.minimize] (``MinimizeResult.stop``); a method's own
[`stop_reason`][torch_mbd.sampling.SamplingOptimizer.stop_reason] may give another."""


@dataclass
class MinimizeResult:
    """What [`minimize`][torch_mbd.minimize.minimize] returns.

    Attributes:
        x: the best point evaluated over every run (the final estimates included), shape of ``x0``.
        fun: its cost, a finite float (NaN and infinite costs are never the best).
        x_final: the final diffusion estimate ``Ybar`` of the last run (often equal to ``x`` in
            quality, smoother).
        fun_final: its cost, as ``f`` returned it (may be NaN or infinite).
        history: a [`MinimizeHistory`][torch_mbd.minimize.MinimizeHistory].
        nfev: number of points evaluated: ``sum over runs of (steps * num_samples + 1)``, the
            ``+ 1`` the run's final estimate; never more than ``max_evals``.
        nit: number of steps, over every run.
        time: wall time in seconds.
        stop: why the last run stopped (one of [`STOP_REASONS`][torch_mbd.minimize.STOP_REASONS], or
            the method's [`stop_reason`][torch_mbd.sampling.SamplingOptimizer.stop_reason]): ``"num_steps"`` (its
            steps done, no restart left), ``"max_evals"`` (the budget cannot pay for another step),
            ``"ftarget"``, ``"tol_fun"``, ``"tol_x"``, ``"callback"``.
        restarts: how many restarts ran (0: one run).
    """

    x: Tensor
    fun: float
    x_final: Tensor
    fun_final: float
    history: MinimizeHistory
    nfev: int
    nit: int
    time: float
    stop: str = "num_steps"
    restarts: int = 0

    def __repr__(self) -> str:
        return (
            f"MinimizeResult(fun={self.fun:.6g}, fun_final={self.fun_final:.6g}, nfev={self.nfev}, nit={self.nit}, "
            f"stop={self.stop!r}, restarts={self.restarts}, time={self.time:.3g}s)"
        )


class _Criteria(NamedTuple):
    """The stopping and restart options of a `minimize` call, checked."""

    max_evals: int | None
    ftarget: float | None
    tol_fun: float | None
    tol_x: float | None
    patience: int | None
    restarts: float  # an int, or inf: until the budget is spent
    restart_growth: float

    def population(self, num_samples: int, run: int) -> int:
        """IPOP: run ``run`` samples ``num_samples * restart_growth ** run`` candidates per step (rounded)."""
        return max(1, round(num_samples * self.restart_growth**run))


def minimize(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    num_samples: int = 64,
    num_steps: int | None = None,
    temperature: float | str | None = None,
    bounds: tuple | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    method: str = "mbd-adaptive",
    torch_threads: int | str | None = None,
    keep_history: bool | int = True,
    max_evals: int | None = None,
    ftarget: float | None = None,
    tol_fun: float | None = None,
    tol_x: float | None = None,
    patience: int | None = None,
    restarts: int | None = None,
    restart_growth: float = 2,
    callback: Callable[[StepLog], object] | None = None,
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
            Every restart starts from it again.
        num_samples: candidates per step ``n`` (of the first run; restarts grow it).
        num_steps: steps per run ``N`` (MBD's schedule length); ``None`` (default): with ``max_evals``
            as many steps as the budget left allows (each run of the paper's MBD spreads its schedule
            over them; adaptive MBD runs until its [`stop_reason`][torch_mbd.adaptive.AdaptiveMBDOptimizer.stop_reason] or the budget), without it 100.
        temperature: ``lambda``; costs are standardized per step before it is applied. ``"auto"`` sets it
            every step to keep an effective sample size of ``target_ess`` (an option, default 0.1) times
            ``n``. ``None`` (default): the method's own default (``"auto"`` for both MBDs); methods
            without a temperature ignore it.
        bounds: ``(lower, upper)`` floats or tensors broadcastable to ``x0``; candidates are clipped.
        seed: seed of the sampling generator (same seed, same result), in ``[0, 2**64 - 1]``. The
            first run uses it as given; restart ``r`` a seed derived from ``(seed, r)``.
        device: where to run; default ``x0.device``.
        progress: show a tqdm progress bar (of the steps, or with ``max_evals`` of the evaluations).
        method: ``"mbd-adaptive"`` (default: [`AdaptiveMBDOptimizer`][torch_mbd.AdaptiveMBDOptimizer], MBD with a learnt noise level
            and shape, ``docs/adaptive.md``), ``"mbd"`` (the paper's algorithm, [`MBDOptimizer`][torch_mbd.MBDOptimizer]), or a baseline at the same budget (``num_samples`` per step,
            ``num_steps`` steps, same ``x0`` and bounds): ``"cem"``, ``"mppi"``, ``"cmaes"`` (pycma) or
            ``"predictive"`` (`torch_mbd.baselines`), or the paper's baselines as the authors ran them,
            ``"paper-mppi"``, ``"paper-cem"``, ``"paper-cmaes"`` (reproductions, not recommendations:
            [`torch_mbd.paper_baselines`][torch_mbd.paper_baselines]): any name of [`torch_mbd.METHODS`][torch_mbd.METHODS]. The result has the
            same fields for every method.
        torch_threads: torch intra-op threads while minimizing (restored afterwards): default 1, or
            ``$TORCH_MBD_THREADS``; ``"torch"`` keeps torch's setting, e.g. for an ``f`` that runs a
            large network ([`torch_mbd.threads`][torch_mbd.threads]).
        keep_history: which estimates ``history.estimate`` keeps: ``True`` (default) one per step,
            ``False`` none, an integer ``k >= 0`` those of the last ``k`` steps. The estimates are
            the only part of the history that grows with ``x0``: ``steps x x0.numel()`` numbers
            (3,000 steps at ``D = 10,000`` in float32: 114 MiB), allocated once before the first
            step for ``num_steps`` steps (with ``num_steps=None``, for the budget's first 1024) and
            doubled when restarts or a budget take more. The per-step costs are always kept.
        max_evals: a budget of evaluations, an integer ``>= num_samples + 1``, or ``None``. No
            more than ``max_evals`` points are evaluated in total, the final estimate of every run
            included: a step runs only when its ``n`` candidates and the run's final estimate still
            fit in what is left (a step is never shrunk, so up to ``n`` evaluations may stay unspent).
        ftarget: stop (every run) once a cost ``<= ftarget`` was evaluated, a finite number, or ``None``.
        tol_fun: end a run when the best costs of its last ``patience`` steps span less than
            ``tol_fun`` (``max - min``; CMA-ES's ``tolfun``), a number ``> 0``, or ``None`` (off).
        tol_x: end a run when the optimizer's sampling standard deviation
            (``optimizer.last_step.sigma``) falls below ``tol_x``, a number ``> 0``, or ``None`` (off).
        patience: the steps ``tol_fun`` looks back over, an integer ``>= 1``; default CMA-ES's
            ``10 + ceil(30 D / n)`` (``D = x0.numel()``, ``n`` the run's sample count).
        restarts: how many times to start again from ``x0`` once a run ends (by ``num_steps``,
            ``tol_fun``, ``tol_x`` or the method's own [`stop_reason`][torch_mbd.sampling.SamplingOptimizer.stop_reason]), an integer ``>= 0``;
            default ``None``: 0 without ``max_evals``, with it as many as the budget pays for.
            ``max_evals``, ``ftarget`` and a callback's stop end every run.
        restart_growth: IPOP's population growth: restart ``r`` draws ``num_samples * restart_growth ** r``
            candidates per step (rounded), a number ``>= 1`` (default 2; 1 restarts at the same size).
        callback: called after every step with a [`StepLog`][torch_mbd.callbacks.StepLog] (e.g. a
            [`HistoryLogger`][torch_mbd.callbacks.HistoryLogger] or [`PrintLogger`][torch_mbd.callbacks.PrintLogger]); returning ``True`` stops
            the run (``stop="callback"``); what it raises propagates.
        **options: any other option of the chosen optimizer: for adaptive MBD ``sigma0``, ``covariance``,
            ``target_ess``, ``tol_x``; for MBD ([`MBDOptimizer`][torch_mbd.MBDOptimizer])
            ``beta_first``, ``beta_last``, ``noise_convention``, ``step_scale``, ``demo``, ...; for CEM
            ``elite_fraction``, ``init_std``; for MPPI ``noise_std``; for CMA-ES ``sigma0``, ``cma_options``.

    Returns:
        A [`MinimizeResult`][torch_mbd.minimize.MinimizeResult]: the best point over every run, why the last run stopped
        (``stop``), the restarts made, ``nfev`` and ``nit``.

    Raises:
        TypeError: ``f`` or ``callback`` is not callable, ``x0`` is not a real tensor / NumPy array,
            or ``f`` returns bool or complex costs.
        ValueError: a bad number, flag, ``keep_history``, device or ``bounds``; a ``max_evals`` below ``num_samples + 1``; an empty or non-finite ``x0``; ``f``
            returns costs of the wrong shape or device; or no evaluated point had a finite cost.

    Example:
        >>> res = minimize(lambda x: (x**2).sum(-1), torch.ones(10), seed=0, progress=False)
        >>> res.fun < 1e-2
        True
        >>> res = minimize(lambda x: (x**2).sum(-1), torch.ones(10), num_steps=None, max_evals=2000,
        ...                ftarget=1e-3, seed=0, progress=False)
        >>> res.nfev <= 2000, res.stop
        (True, 'ftarget')
    """
    x0 = check_tensor("x0", x0)
    if not callable(f):
        raise TypeError(f"f must be callable ([n, D] -> [n]), got {type(f).__name__}")
    if x0.numel() == 0:
        raise ValueError(f"Invalid x0: expected at least one entry, got shape {tuple(x0.shape)}")
    num_samples = check_int("num_samples", num_samples, minimum=1)
    num_steps = None if num_steps is None else check_int("num_steps", num_steps, minimum=1)
    if num_steps is None and max_evals is None:
        num_steps = DEFAULT_STEPS
    criteria = _criteria(max_evals, ftarget, tol_fun, tol_x, patience, restarts, restart_growth, num_steps, num_samples)
    callback = check_callback(callback)
    progress = check_bool("progress", progress)
    kept = _history_length(keep_history)
    if temperature is not None:
        options["temperature"] = check_temperature("temperature", temperature)
    seed = check_seed(seed)
    x_start = x0.detach().to(device=x0.device if device is None else check_device(device)).clone()
    if not x_start.is_floating_point():
        x_start = x_start.to(torch.get_default_dtype())
    if not bool(torch.isfinite(x_start).all()):
        raise ValueError("Invalid x0: expected finite entries, got NaN or inf")
    bounds = _bounds(bounds, x_start)
    optimizer = optimizer_class(method)
    # costs, best and history in at least float32 whatever the dtype of x (float16 overflows at 65504)
    cost_dtype = torch.promote_types(x_start.dtype, torch.float32)
    on = {"dtype": cost_dtype, "device": x_start.device}
    # The history is allocated once, up front, for num_steps steps (at most 1024 of a budget's):
    # no per-step allocations that outlive the step. Restarts (or a long budget) double it.
    first_steps = num_steps if num_steps is not None else min((criteria.max_evals - 1) // num_samples, 1024)
    rows = {name: _Rows(None, first_steps, (), on["dtype"], on["device"]) for name in ("best", "mean", "best_so_far")}
    rows["restart"] = _Rows(None, first_steps, (), torch.int64, "cpu")
    estimates = _Rows(kept, first_steps, x_start.shape, x_start.dtype, x_start.device)
    record = {"fun": torch.tensor(math.inf, **on), "x": x_start.clone()}

    def closure(candidates: list[Tensor]) -> Tensor:
        cands = candidates[0]  # a view into the optimizer's sample buffer: f gets a copy of its own
        costs = _costs(f, cands.clone(), cost_dtype)
        finite = torch.where(torch.isfinite(costs), costs, torch.full_like(costs, math.inf))
        k = torch.argmin(finite)
        step_best = finite[k].to(cost_dtype)
        _keep_best(record, cands[k], step_best)
        ok = torch.isfinite(costs)
        rows["best"].append(step_best)
        rows["mean"].append(torch.where(ok, costs, torch.zeros_like(costs)).sum() / ok.sum().clamp(min=1))
        rows["best_so_far"].append(record["fun"])
        return costs

    nfev = nit = run = 0
    budget = math.inf if criteria.max_evals is None else criteria.max_evals
    total = num_steps * (int(criteria.restarts) + 1) if criteria.max_evals is None else criteria.max_evals
    start = time.perf_counter()
    with use_threads(torch_threads), progress_bar(total, f"{method.upper()} minimize", progress) as bar:
        while True:
            n = criteria.population(num_samples, run)
            steps = num_steps if num_steps is not None else (criteria.max_evals - nfev - 1) // n
            x = x_start.clone()
            opt = optimizer(
                [x], num_samples=n, num_steps=steps, bounds=bounds, seed=_run_seed(seed, run),
                torch_threads="torch", **options,  # the threads of use_threads(torch_threads) below
            )
            stop = "num_steps" if num_steps is not None else "max_evals"  # if every step runs
            patience = criteria.patience or tol_fun_window(x.numel(), n)
            run_start = nit
            for _ in range(steps):
                if nfev + n + 1 > budget:
                    stop = "max_evals"  # a step and this run's final estimate no longer fit
                    break
                opt.step(closure)
                nfev, nit = nfev + n, nit + 1
                rows["restart"].append(run)
                estimates.append(x)
                bar.update(1 if criteria.max_evals is None else n)
                if progress:
                    bar.set_postfix(best=f"{float(record['fun']):.4g}")
                told = None if callback is None else callback(_step_log(opt, record, rows, nit, nfev, run, start))
                reason = _stop_reason(criteria, opt, record, rows["best"].data[run_start:nit], patience, told)
                if reason is not None:
                    stop = reason
                    break
            with torch.no_grad():
                final_cost = _costs(f, x.unsqueeze(0).clone(), cost_dtype)[0].to(cost_dtype)
            nfev += 1
            if criteria.max_evals is not None:
                bar.update(1)
            _keep_best(record, x, torch.where(torch.isfinite(final_cost), final_cost, math.inf))
            if stop not in ("ftarget", "callback") and _reached(criteria, record):
                stop = "ftarget"
            if stop in ("max_evals", "ftarget", "callback") or run >= criteria.restarts:
                break
            if nfev + criteria.population(num_samples, run + 1) + 1 > budget:
                stop = "max_evals"  # the next run cannot pay for a step and its final estimate
                break
            run += 1
    fun_final = float(final_cost)
    if not math.isfinite(float(record["fun"])):
        raise ValueError(
            f"f returned no finite cost at any of the {nfev} points evaluated "
            "(NaN, inf and -inf count as infeasible): check f, x0 and the bounds"
        )
    elapsed = time.perf_counter() - start
    history = MinimizeHistory(
        best=rows["best"].tensor().cpu(), mean=rows["mean"].tensor().cpu(),
        best_so_far=rows["best_so_far"].tensor().cpu(), estimate=estimates.tensor().cpu(),
        restart=rows["restart"].tensor(),
    )
    return MinimizeResult(
        x=record["x"], fun=float(record["fun"]), x_final=x, fun_final=fun_final, history=history,
        nfev=nfev, nit=nit, time=elapsed, stop=stop, restarts=run,
    )


class _Rows:
    """The last ``limit`` rows ``[*shape]`` appended (every row with ``limit=None``), oldest first.

    One buffer, allocated up front for ``capacity`` rows and doubled when more come (up to
    ``limit``); once ``limit`` rows are held it is a ring, so it never grows past ``limit``.
    """

    def __init__(self, limit: int | None, capacity: int, shape: tuple, dtype, device):
        self.limit, self.count = limit, 0
        size = capacity if limit is None else min(capacity, limit)
        self.data = torch.empty(size, *shape, dtype=dtype, device=device)

    def append(self, row) -> None:
        i = self.count
        self.count += 1
        if self.limit == 0:
            return
        if i >= len(self.data) and (self.limit is None or i < self.limit):
            size = max(2 * len(self.data), 1) if self.limit is None else min(max(2 * len(self.data), 1), self.limit)
            grown = torch.empty(size, *self.data.shape[1:], dtype=self.data.dtype, device=self.data.device)
            grown[:i] = self.data
            self.data = grown
        self.data[i if self.limit is None else i % self.limit] = row

    def tensor(self) -> Tensor:
        """``[min(count, limit), *shape]`` the rows kept, oldest first."""
        held = self.count if self.limit is None else min(self.count, self.limit)
        rows = self.data[:held]
        if self.limit and self.count > self.limit:
            rows = rows.roll(-(self.count % self.limit), dims=0)
        return rows if held == len(self.data) else rows.clone()  # a clone frees the unused rows


def _criteria(
    max_evals, ftarget, tol_fun, tol_x, patience, restarts, restart_growth, num_steps, num_samples
) -> _Criteria:
    """The stopping and restart options of `minimize`, each checked under its own name."""
    if max_evals is not None:
        max_evals = check_int("max_evals", max_evals, minimum=1)
        if max_evals < num_samples + 1:
            raise ValueError(
                f"Invalid max_evals: {max_evals} cannot pay for one step of num_samples={num_samples} and the "
                f"final estimate; expected max_evals >= {num_samples + 1}"
            )
    ftarget = None if ftarget is None else check_real("ftarget", ftarget)
    tol_fun = None if tol_fun is None else check_positive("tol_fun", tol_fun)
    tol_x = None if tol_x is None else check_positive("tol_x", tol_x)
    patience = None if patience is None else check_int("patience", patience, minimum=1)
    if restarts is None:
        restarts = 0 if max_evals is None else math.inf
    else:
        restarts = check_int("restarts", restarts, minimum=0)
    growth = check_real("restart_growth", restart_growth)
    if growth < 1:
        raise ValueError(f"Invalid restart_growth: expected a number >= 1, got {growth!r}")
    return _Criteria(max_evals, ftarget, tol_fun, tol_x, patience, restarts, growth)


def _run_seed(seed: int | None, run: int) -> int | None:
    """The seed of run ``run``: ``seed`` itself for the first, one derived from ``(seed, run)`` after."""
    if seed is None or run == 0:
        return seed
    return int(np.random.SeedSequence([seed, run]).generate_state(1, np.uint64)[0])


def _keep_best(record: dict, x: Tensor, cost: Tensor) -> None:
    """Keep ``x`` in ``record`` if its finite ``cost`` (``inf`` for a non-finite one) beats the best."""
    improved = cost < record["fun"]
    record["x"] = torch.where(improved, x, record["x"])
    record["fun"] = torch.minimum(cost, record["fun"])


def _reached(criteria: _Criteria, record: dict) -> bool:
    return criteria.ftarget is not None and float(record["fun"]) <= criteria.ftarget


def _stop_reason(criteria: _Criteria, opt, record: dict, run_best: Tensor, patience: int, told) -> str | None:
    """Why the run stops after this step (``run_best``: the best cost of each of its steps), or ``None``."""
    if _reached(criteria, record):
        return "ftarget"
    if told:
        return "callback"
    if criteria.tol_x is not None and float(opt.last_step.sigma) < criteria.tol_x:
        return "tol_x"
    if criteria.tol_fun is not None and len(run_best) >= patience:
        window = run_best[-patience:]
        if bool(torch.isfinite(window).all()) and float(window.max() - window.min()) < criteria.tol_fun:
            return "tol_fun"
    return opt.stop_reason()


def _step_log(opt, record: dict, rows: dict, nit: int, nfev: int, run: int, start: float) -> StepLog:
    return StepLog(
        step=nit, nfev=nfev, best=float(record["fun"]), step_best=float(rows["best"].data[nit - 1]),
        step_mean=float(rows["mean"].data[nit - 1]),
        sigma=float(opt.last_step.sigma), temperature=as_float(opt.last_step.temperature), restart=run,
        elapsed=time.perf_counter() - start, objective="cost",
    )


def _history_length(keep_history) -> int | None:
    """How many estimates ``keep_history`` (``True``, ``False`` or an integer ``>= 0``) keeps: ``None`` for all."""
    try:
        return None if check_bool("keep_history", keep_history) else 0
    except ValueError:
        pass
    try:
        return check_int("keep_history", keep_history, minimum=0)
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
