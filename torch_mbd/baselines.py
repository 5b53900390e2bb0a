"""Baselines behind MBD's interface: the cross-entropy method, MPPI and CMA-ES.

The paper (Tables 2-3, Fig. 5) compares Model-Based Diffusion with these zeroth-order
optimizers at the same budget. Each one here is a drop-in replacement for
[`MBDOptimizer`][torch_mbd.MBDOptimizer]: same constructor options (``num_samples``, ``num_steps``,
``bounds``, ``rollout``, ``generator`` / ``seed``, per-group ``noise_scale``), same
``step(closure)`` / rollout ``step()`` contract, and after every step the parameters hold
the method's current estimate (its sampling mean). They share MBD's sampling machinery
([`sample_candidates`][torch_mbd.denoise.sample_candidates], clipping to the bounds, invalid samples
weighted 0) so that a comparison measures the update rule and nothing else:

* [`CEMOptimizer`][torch_mbd.baselines.CEMOptimizer]: Gaussian with diagonal covariance; keep the best
  ``elite_fraction`` of the samples, refit mean and per-coordinate standard deviation to them.
* [`MPPIOptimizer`][torch_mbd.baselines.MPPIOptimizer]: Gaussian with a **fixed** standard deviation; the mean moves to
  the softmax-weighted mean of the samples, with MBD's normalized weights
  ``softmax((R - mean R) / std R / temperature)``. MBD with a constant noise level.
* [`CMAESOptimizer`][torch_mbd.baselines.CMAESOptimizer]: pycma's ``CMAEvolutionStrategy`` (``pip install 'torch-mbd[baselines]'``)
  with ``popsize = num_samples``, driven by ask/tell; pycma adapts the step size and the
  full covariance and handles the bounds (``BoundTransform``). Costs are evaluated in torch.

Unless told otherwise every baseline starts from the same distribution as MBD's first
step: mean = the parameters' initial value, standard deviation = ``sigma_{N-1}`` of MBD's
schedule (``num_steps``, ``beta0``, ``beta1``, ``noise``) times the group's ``noise_scale``.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from . import denoise
from .checks import check_int, check_positive
from .optim import MBDOptimizer, StepInfo, _mean_objective

_MBD_ONLY = ("demo", "demo_mask", "demo_sigma", "demo_reward", "demo_log_likelihood", "step_scale")


# --------------------------------------------------------------------------- pure updates
def elite_log_weights(rewards: Tensor, num_elites: int, feasible: Tensor | None = None) -> Tensor:
    """Log-weights that select the ``num_elites`` best valid samples of each problem.

    Args:
        rewards: ``[B, n]`` (higher is better).
        num_elites: ``1 <= k <= n``.
        feasible: optional boolean ``[B, n]``.

    Returns:
        ``[B, n]``: ``0`` for an elite, ``-inf`` otherwise (infeasible and non-finite samples are
        never elites; a problem with fewer than ``k`` valid samples keeps only those).
    """
    valid = torch.isfinite(rewards)
    if feasible is not None:
        valid = valid & feasible
    score = torch.where(valid, rewards, torch.full_like(rewards, -math.inf))
    idx = torch.topk(score, num_elites, dim=-1).indices
    logp = torch.full_like(rewards, -math.inf).scatter_(-1, idx, 0.0)
    return torch.where(valid, logp, torch.full_like(logp, -math.inf))


def cem_update(
    samples: Tensor, rewards: Tensor, num_elites: int, feasible: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One cross-entropy-method update: mean and diagonal std of the elite samples.

    Args:
        samples: ``[B, n, D]``.
        rewards: ``[B, n]``.
        num_elites: number of elites ``k``.
        feasible: optional boolean ``[B, n]``.

    Returns:
        ``(mean, std, weights, valid)``: elite mean ``[B, D]``, elite standard deviation ``[B, D]``
        (population form, divided by the number of elites), the weights ``[B, n]`` (``1/k`` on
        elites) and the boolean ``[B]`` that is False where no sample was valid.
    """
    logp = elite_log_weights(rewards, num_elites, feasible)
    mean, weights, valid = denoise.weighted_mean(samples, logp)
    centered_sq = (samples - mean.unsqueeze(-2)).square_()
    var = torch.bmm(weights.unsqueeze(-2), centered_sq).squeeze(-2)
    return mean, var.sqrt_(), weights, valid


def mppi_update(
    samples: Tensor, rewards: Tensor, temperature: float | Tensor, feasible: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """One MPPI update: the softmax-weighted mean, with MBD's normalized weights.

    Args:
        samples: ``[B, n, D]``.
        rewards: ``[B, n]``.
        temperature: ``lambda > 0`` applied to standardized rewards, a float or ``[B]``.
        feasible: optional boolean ``[B, n]``.

    Returns:
        ``(mean, weights, valid)``: ``[B, D]``, ``[B, n]``, ``[B]`` as in
        [`weighted_mean`][torch_mbd.denoise.weighted_mean].
    """
    logp, _, _ = denoise.normalized_log_weights(rewards, temperature, feasible)
    return denoise.weighted_mean(samples, logp)


# --------------------------------------------------------------------------- shared plumbing
def _check_mbd_only(options: dict, method: str) -> None:
    given = [k for k in _MBD_ONLY if options.get(k) is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: MBD-only option(s), not supported by {method}")


class _SampledGaussianOptimizer(MBDOptimizer):
    """The torch baselines: a diagonal Gaussian sampled by `MBDOptimizer.step`.

    Subclasses implement the two hooks of the shared step, `_sampling_std` (``[B, D]``) and
    `_update`; sampling, evaluation (closure or rollout, its checks), keeping the best and
    invalid-sample handling are [`MBDOptimizer`][torch_mbd.MBDOptimizer]'s.
    """

    method = "baseline"
    supports_fraction = False

    def __init__(self, params, **options):
        _check_mbd_only(options, self.method)
        super().__init__(params, **options)
        for group in self.param_groups:
            if group["fraction"] not in (1.0, "auto"):
                raise ValueError(f"fraction: an MBD-only option, {self.method} perturbs every coordinate")

    @property
    def _label(self) -> str:
        return self.method

    def _initial_std(self, layout: dict, value: float | None) -> Tensor:
        """``[D]`` initial standard deviation: ``value`` (default ``sigma_{N-1}``) times ``noise_scale``."""
        sigma = float(self.schedule.sigmas[-1]) if value is None else value
        std = torch.full((layout["D"],), sigma, dtype=self.dtype, device=self.device)
        return std if layout["scale"] is None else std * layout["scale"]

    def _sampling_std(self, layout: dict, B: int) -> Tensor:  # pragma: no cover - abstract
        """The per-problem, per-coordinate standard deviation ``[B, D]`` of this step."""
        raise NotImplementedError

    def _reported_sigma(self, std: Tensor) -> float:
        """``StepInfo.sigma`` of a baseline: the mean sampling standard deviation."""
        return float(std.mean())

    def _update(self, samples, rewards, feasible, loglik, y_bar) -> tuple[Tensor, Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError


def _step_info(level, sigma, rewards, weights, valid, trajectory, samples, temperature=None) -> StepInfo:
    """A [`StepInfo`][torch_mbd.optim.StepInfo] for a baseline step (no demonstration), by field name."""
    fields = dict(
        level=level, sigma=sigma, rewards=rewards, weights=weights, valid=valid,
        demo_wins=None, trajectory=trajectory, samples=samples, temperature=temperature,
    )
    return StepInfo(**{k: fields[k] for k in StepInfo._fields})


def _pop_baseline_state(state_dict, optimizer) -> tuple[dict, dict]:
    """``(MBD's part, the baseline's part)`` of a baseline's ``state_dict``, checked to be ``optimizer``'s kind."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    state_dict = dict(state_dict)
    extra = state_dict.pop("baseline", None)
    if not isinstance(extra, dict) or extra.get("method") != optimizer.method:
        raise ValueError(f"state_dict was not saved by {type(optimizer).__name__}")
    return state_dict, extra


# --------------------------------------------------------------------------- CEM
class CEMOptimizer(_SampledGaussianOptimizer):
    """The cross-entropy method with a diagonal Gaussian, as a ``torch.optim.Optimizer``.

    Each step samples ``num_samples`` candidates ``clip(mean + std * eps)``, keeps the best
    ``elite_fraction`` of them and sets ``mean``, ``std`` to the elites' mean and per-coordinate
    standard deviation (no smoothing). The parameters hold ``mean``.

    Args:
        params: as for [`MBDOptimizer`][torch_mbd.MBDOptimizer] (group options ``bounds``, ``noise_scale``).
        num_samples: candidates per step ``n``.
        elite_fraction: fraction of the samples kept as elites, in ``(0, 1]``; at least one elite.
        init_std: initial standard deviation; ``None`` takes MBD's first sampling level
            ``sigma_{N-1}`` (``0.63`` with the default schedule). Multiplied by ``noise_scale``.
        min_std: floor on the refitted standard deviation (default ``0``: plain CEM).
        **options: any other [`MBDOptimizer`][torch_mbd.MBDOptimizer] option (``num_steps``, ``bounds``,
            ``rollout``, ``seed``, ``generator``, ``noise``, ...). ``temperature`` is accepted and
            unused; the demonstration options are MBD-only.

    Example:
        >>> x = torch.zeros(3)
        >>> opt = CEMOptimizer([x], num_samples=64, seed=0)
        >>> for _ in range(30):
        ...     _ = opt.step(lambda c: ((c[0] - 0.5) ** 2).sum(-1))
        >>> bool(((x - 0.5).abs() < 0.05).all())
        True
    """

    method = "cem"

    def __init__(
        self,
        params,
        num_samples: int = 256,
        elite_fraction: float = 0.1,
        init_std: float | None = None,
        min_std: float = 0.0,
        **options,
    ):
        elite_fraction = check_positive("elite_fraction", elite_fraction)
        if elite_fraction > 1.0:
            raise ValueError(f"Invalid elite_fraction: expected a number in (0, 1], got {elite_fraction!r}")
        init_std = None if init_std is None else check_positive("init_std", init_std)
        min_std = check_positive("min_std", min_std, allow_zero=True)
        super().__init__(params, num_samples=num_samples, **options)
        self.elite_fraction, self.init_std, self.min_std = elite_fraction, init_std, min_std
        self.num_elites = max(1, int(round(self.elite_fraction * self.num_samples)))
        self.std: Tensor | None = None  # [B, D] once the first step ran

    def _sampling_std(self, layout: dict, B: int) -> Tensor:
        if self.std is None or self.std.shape != (B, layout["D"]):
            self.std = self._initial_std(layout, self.init_std).expand(B, -1).clone()
        return self.std

    def _update(self, samples, rewards, feasible, loglik, y_bar):
        mean, std, weights, valid = cem_update(samples, rewards, self.num_elites, feasible)
        std = std.clamp_(min=self.min_std)
        self.std = torch.where(valid.unsqueeze(-1), std, self.std)
        return mean, weights, valid

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["baseline"] = dict(method=self.method, std=None if self.std is None else self.std.clone())
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a [`state_dict`][torch_mbd.baselines.CMAESOptimizer.state_dict], all or nothing (see `MBDOptimizer.load_state_dict`)."""
        state_dict, extra = _pop_baseline_state(state_dict, self)
        std = extra.get("std")
        if std is not None:
            shape = (math.prod(self.batch_shape), self._flat_dim())
            if not isinstance(std, Tensor) or tuple(std.shape) != shape or not std.is_floating_point():
                got = tuple(std.shape) if isinstance(std, Tensor) else type(std).__name__
                raise ValueError(f"state_dict baseline std must be a floating-point tensor of shape {shape}, got {got}")
            if not bool((torch.isfinite(std) & (std >= 0)).all()):
                raise ValueError("state_dict baseline std must be finite and >= 0 everywhere")
            std = std.to(self.device, self.compute_dtype).clone()  # the dtype cem_update refits it in
        super().load_state_dict(state_dict)  # checks everything before changing anything
        self.std = std


# --------------------------------------------------------------------------- MPPI
class MPPIOptimizer(_SampledGaussianOptimizer):
    """Model-predictive path integral (MPPI) optimization with a fixed sampling noise.

    Each step samples ``clip(mean + noise_std * eps)`` and moves ``mean`` to the
    softmax-weighted mean of the samples, weights ``softmax((R - mean R) / std R / temperature)``
    (the same normalized weights as MBD, infeasible samples weighted 0). Unlike MBD the noise
    never shrinks. The parameters hold ``mean``.

    Args:
        params: as for [`MBDOptimizer`][torch_mbd.MBDOptimizer].
        num_samples: candidates per step ``n``.
        temperature: ``lambda > 0``, or ``"auto"`` (as for [`MBDOptimizer`][torch_mbd.MBDOptimizer]).
        noise_std: the fixed standard deviation; ``None`` takes MBD's first sampling level
            ``sigma_{N-1}``. Multiplied by ``noise_scale``.
        **options: any other [`MBDOptimizer`][torch_mbd.MBDOptimizer] option.
    """

    method = "mppi"

    def __init__(
        self, params, num_samples: int = 256, temperature: float | str = 0.1, noise_std: float | None = None, **options
    ):
        noise_std = None if noise_std is None else check_positive("noise_std", noise_std)
        super().__init__(params, num_samples=num_samples, temperature=temperature, **options)
        self.noise_std = noise_std
        self._std: Tensor | None = None

    def _sampling_std(self, layout: dict, B: int) -> Tensor:
        if self._std is None or self._std.shape != (B, layout["D"]):
            self._std = self._initial_std(layout, self.noise_std).expand(B, -1)
        return self._std

    def _update(self, samples, rewards, feasible, loglik, y_bar):
        return mppi_update(samples, rewards, self._resolve_temperature(rewards, feasible), feasible)


# --------------------------------------------------------------------------- CMA-ES (pycma)
def _import_cma():
    try:
        import cma
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("CMA-ES needs pycma: pip install 'torch-mbd[baselines]'") from exc
    return cma


class _NumpyNormal:
    """``randn(*shape)`` from a private ``numpy.random.Generator`` (pycma's ``randn`` option).

    Keeps pycma off numpy's global RNG, so runs are reproducible from the optimizer's
    ``torch.Generator`` alone; picklable, so the strategy can be saved.
    """

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape) -> np.ndarray:
        return self.rng.standard_normal(shape)


class CMAESOptimizer(MBDOptimizer):
    """CMA-ES through pycma (``cma.CMAEvolutionStrategy``), ask/tell, ``popsize = num_samples``.

    One strategy per problem (``B`` problems are a Python loop over pycma objects: pycma is
    NumPy on the CPU; the evaluation stays batched in torch on the parameters' device). pycma
    draws the candidates, adapts the step size and full covariance and handles the bounds
    (its default ``BoundTransform``); this class only moves tensors. After each step the
    parameters hold the distribution mean in bounds (``es.result.xfavorite``). Infeasible or
    non-finite candidates are told to pycma as worse than every valid one (CMA-ES is rank based).

    Args:
        params: as for [`MBDOptimizer`][torch_mbd.MBDOptimizer].
        num_samples: population size ``n`` (pycma's ``popsize``).
        sigma0: initial step size; ``None`` takes MBD's first sampling level ``sigma_{N-1}``, so
            every method starts from the same distribution. Per-coordinate ``noise_scale`` becomes
            pycma's ``CMA_stds``.
        cma_options: extra pycma options (e.g. ``{"CMA_diagonal": True}``); ``popsize``,
            ``bounds``, ``randn`` and ``seed`` are set here.
        **options: any other [`MBDOptimizer`][torch_mbd.MBDOptimizer] option. ``temperature`` is unused.

    Raises:
        ImportError: pycma is not installed (``pip install 'torch-mbd[baselines]'``).
    """

    method = "cmaes"
    supports_fraction = False
    _label = "cmaes"

    def __init__(self, params, num_samples: int = 256, sigma0: float | None = None, cma_options: dict | None = None, **options):
        _check_mbd_only(options, self.method)
        _import_cma()  # fail early, naming the extra to install
        sigma0 = None if sigma0 is None else check_positive("sigma0", sigma0)
        if cma_options is not None and not isinstance(cma_options, dict):
            raise TypeError(f"cma_options must be a dict, got {type(cma_options).__name__}")
        if check_int("num_samples", num_samples, minimum=1) == 1:
            raise ValueError("Invalid num_samples: CMA-ES needs a population of at least 2, got 1")
        super().__init__(params, num_samples=num_samples, **options)
        for group in self.param_groups:
            if group["fraction"] not in (1.0, "auto"):
                raise ValueError("fraction: an MBD-only option, cmaes perturbs every coordinate")
        self.sigma0 = sigma0
        self.cma_options = dict(cma_options or {})
        self.strategies: list | None = None

    def _make_strategies(self, layout: dict, y_bar: Tensor) -> list:
        cma = _import_cma()
        sigma0 = float(self.schedule.sigmas[-1]) if self.sigma0 is None else float(self.sigma0)
        opts = dict(self.cma_options)
        opts.update(popsize=self.num_samples, verbose=-9, verb_log=0, verb_disp=0, seed=float("nan"))
        lower, upper = layout["lower"], layout["upper"]
        if lower is not None:

            def as_list(b):
                if isinstance(b, Tensor):
                    return [float(v) if math.isfinite(float(v)) else None for v in b.cpu()]
                return float(b)

            lo, hi = as_list(lower), as_list(upper)
            opts["bounds"] = [lo, hi]
        if layout["scale"] is not None:
            opts["CMA_stds"] = layout["scale"].double().cpu().numpy()
        x0 = y_bar.double().cpu().numpy()
        strategies = []
        for b in range(x0.shape[0]):
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator, device=self.generator.device))
            strategies.append(cma.CMAEvolutionStrategy(x0[b], sigma0, dict(opts, randn=_NumpyNormal(seed))))
        return strategies

    @torch.no_grad()
    def step(self, closure: Callable[[list[Tensor]], Tensor] | None = None) -> Tensor:
        """One CMA-ES generation: ask ``num_samples`` candidates, evaluate in torch, tell.

        Args:
            closure: as for `MBDOptimizer.step`.

        Returns:
            Mean loss (closure mode) or mean per-sample reward (rollout mode) of the valid samples.
        """
        if closure is None and self.rollout is None:
            raise ValueError("step() needs a closure, or a rollout given at construction")
        if closure is not None and self.rollout is not None:
            raise ValueError("this optimizer has a rollout; call step() without a closure")
        if self._layout is None:
            self._layout = self._build_layout()
        layout = self._layout
        B, n, D = math.prod(self.batch_shape), self.num_samples, layout["D"]
        y_bar = self._flat_estimate(B)
        if self.strategies is None:
            self.strategies = self._make_strategies(layout, y_bar)
        asked = [es.ask() for es in self.strategies]
        population = np.stack([np.stack(a) for a in asked])  # [B, n, D] float64
        if self._buffer is None or self._buffer.shape != (B, n, D):
            self._buffer = torch.empty((B, n, D), dtype=self.dtype, device=self.device)
        samples = self._buffer
        samples.copy_(torch.from_numpy(population))
        if layout["lower"] is not None:  # guard float64 -> float32 rounding only; pycma's points are in bounds
            samples.clamp_(min=layout["lower"], max=layout["upper"])
        rewards, feasible, _, trajectory = self._evaluate(closure, samples)
        self._track_best(samples, rewards, feasible, y_bar)
        valid_samples = torch.isfinite(rewards) if feasible is None else torch.isfinite(rewards) & feasible
        costs = (-rewards).double().cpu()
        ok = valid_samples.cpu()
        valid = ok.any(-1)
        new = y_bar.clone()
        for b, es in enumerate(self.strategies):
            if not bool(valid[b]):
                continue  # nothing to learn from; pycma allows asking again
            worst = float(costs[b][ok[b]].max())
            told = torch.where(ok[b], costs[b], torch.full_like(costs[b], worst + 1.0 + abs(worst)))
            es.tell(asked[b], told.tolist())
            new[b] = torch.as_tensor(es.result.xfavorite, dtype=self.dtype, device=self.device)
        if not bool(valid.all()):
            self._warn_invalid(valid)
        self._write_estimate(new)
        weights = torch.zeros_like(rewards)
        sigma = float(np.mean([es.sigma for es in self.strategies]))
        self.last_step = _step_info(self.level, sigma, rewards, weights, valid.to(self.device), trajectory, samples)
        self.steps_done += 1
        return _mean_objective(rewards, feasible, self.rollout is not None)

    @property
    def sigma(self) -> list[float]:
        """pycma's current step size of each problem (empty before the first step)."""
        return [] if self.strategies is None else [float(es.sigma) for es in self.strategies]

    def state_dict(self) -> dict:
        """MBD's state plus the pickled pycma strategies (load with ``torch.load(..., weights_only=False)``)."""
        state = super().state_dict()
        state["baseline"] = dict(method=self.method, strategies=self.strategies)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a [`state_dict`][torch_mbd.baselines.CMAESOptimizer.state_dict], all or nothing (see `MBDOptimizer.load_state_dict`)."""
        import copy

        state_dict, extra = _pop_baseline_state(state_dict, self)
        strategies = extra.get("strategies")
        B = math.prod(self.batch_shape)
        if strategies is not None and (not isinstance(strategies, list) or len(strategies) != B):
            got = len(strategies) if isinstance(strategies, list) else type(strategies).__name__
            raise ValueError(f"state_dict baseline strategies must be a list of {B} pycma strategies, got {got}")
        strategies = copy.deepcopy(strategies)
        super().load_state_dict(state_dict)  # checks everything before changing anything
        self.strategies = strategies


OPTIMIZERS = {"mbd": MBDOptimizer, "cem": CEMOptimizer, "mppi": MPPIOptimizer, "cmaes": CMAESOptimizer}


def optimizer_class(method: str) -> type[MBDOptimizer]:
    """The optimizer class for ``method``: ``"mbd"``, ``"cem"``, ``"mppi"``, ``"cmaes"``, or the
    paper's baselines as the authors ran them, ``"paper-mppi"``, ``"paper-cem"``, ``"paper-cmaes"``
    ([`torch_mbd.paper_baselines`][torch_mbd.paper_baselines])."""
    from .paper_baselines import PAPER_OPTIMIZERS  # imported here: that module imports this one

    classes = {**OPTIMIZERS, **PAPER_OPTIMIZERS}
    if method not in classes:
        raise ValueError(f"method must be one of {tuple(classes)}, got {method!r}")
    return classes[method]
