"""``AdaptiveMBDOptimizer``: Model-Based Diffusion that learns its noise level and shape.

The paper's MBD samples ``Ybar + sigma_i eps`` with a fixed, absolute schedule ``sigma_i`` and
isotropic ``eps``, and moves to the softmax-weighted mean of the samples, its Monte Carlo estimate
of ``E[Y0 | Yi]``. This method keeps that update and adapts what the schedule fixes
(`torch_mbd.adaptation` holds the math, ``docs/adaptive.md`` derives it):

* the **shape**: the same weighted samples estimate the posterior covariance ``Cov[Y0 | Yi]``; its
  running average ``C`` (full up to `FULL_DIM` coordinates, diagonal above) is the covariance the
  next samples are drawn with, so the diffusion runs in the coordinates ``C`` whitens;
* the **noise level** ``sigma``, relative to the problem: it grows while the cumulated, whitened
  denoising steps are longer than Monte Carlo noise alone would make them (the score has signal at
  this scale) and shrinks while they are shorter (the steps cancel around a mode); no absolute floor;
* the **best** sample is kept (as every method of torch-mbd), and [`stop_reason`][torch_mbd.adaptive.AdaptiveMBDOptimizer.stop_reason] says when the
  noise has collapsed, so that [`minimize`][torch_mbd.minimize.minimize] restarts with a larger population.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import adaptation, denoise
from .checks import check_bool, check_int, check_positive
from .sampling import (
    Evaluation,
    SamplingOptimizer,
    UpdateResult,
    check_target_ess,
    check_temperature,
    first_sigma,
    pop_first_sigma,
)

WARM_UP_SUCCESSES = 3
"""The warm-up ends once the smoothed objective (the mean reward of a step's samples) has improved
(or held) this many steps in a row."""

FULL_DIM = 100
"""Up to this many coordinates the shape is a full covariance; above it, a diagonal."""

UNBOUNDED_SIGMA = first_sigma()
"""The initial standard deviation of a coordinate without finite bounds: the first sampling level of
MBD's default schedule (100 steps, betas 1e-4 to 1e-2: 0.63), where the paper's MBD and the baselines start."""

BOUNDED_SIGMA = 0.2
"""The initial standard deviation of a coordinate with finite bounds, as a fraction of their width."""

ADAPTIVE_TARGET_ESS = 0.25
"""The default effective-sample-size fraction of the weights (CMA-ES's weights keep about ``n / 4``)."""

TEMPERATURE_ITERATIONS = 14
"""Bisection steps of the ``"auto"`` temperature (the paper's MBD takes 60: a weight needs no more than 0.1 %)."""


_MAY_BE_INFINITE = ("recent_best", "spread", "previous_reward", "previous_error")


def smoothed_reward(rewards: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """The mean reward of the valid samples, the Monte Carlo estimate of the Gaussian-smoothed
    objective at the estimate, and its squared standard error.

    Args:
        rewards: ``[B, n]``.
        valid: boolean ``[B, n]``.

    Returns:
        ``(mean, variance_of_mean)``, ``[B]`` each: ``-inf`` and ``inf`` without a valid sample.
    """
    count = valid.sum(-1)
    zero = torch.zeros_like(rewards)
    mean = torch.where(valid, rewards, zero).sum(-1) / count.clamp(min=1)
    var = torch.where(valid, (rewards - mean.unsqueeze(-1)).square(), zero).sum(-1) / (count - 1).clamp(min=1)
    none = count == 0
    return (torch.where(none, torch.full_like(mean, -math.inf), mean),
            torch.where(none, torch.full_like(var, math.inf), var / count.clamp(min=1)))


WARM_UP_SIGNIFICANCE = 2.0
"""A warm-up step counts as worse when the smoothed objective fell by more than this many standard errors."""


class AdaptiveMBDOptimizer(SamplingOptimizer):
    """Model-Based Diffusion with an adaptive noise level and sampling shape (method ``"mbd-adaptive"``).

    Each step draws ``num_samples`` candidates ``Ybar + sigma C^{1/2} eps`` (clipped to the bounds),
    weights them by ``softmax((R - mean R) / std R / temperature)`` (MBD's weights; infeasible and
    non-finite samples get 0) and moves to their weighted mean, as MBD does; then it updates
    ``C`` from the weighted covariance of the samples and ``sigma`` from the cumulated whitened step
    (`torch_mbd.adaptation`). Each problem of a batch (rollout mode, ``[..., H, nu]``) has its own.

    Args:
        params: tensors or parameter groups (group options ``bounds``, ``noise_scale``), as for
            [`MBDOptimizer`][torch_mbd.MBDOptimizer].
        num_samples: candidates per step ``n >= 2``.
        temperature: ``lambda > 0``, or ``"auto"`` (default): each step the temperature at which the
            weights keep an effective sample size of ``target_ess * n``.
        target_ess: the fraction ``"auto"`` aims at, in ``(0, 1]`` (default `ADAPTIVE_TARGET_ESS`).
        sigma0: the initial noise level, a number ``> 0``; ``None`` (default): per coordinate,
            `BOUNDED_SIGMA` times the width of its bounds where both are finite, else
            `UNBOUNDED_SIGMA` (0.63), times the coordinate's ``noise_scale``.
        covariance: ``"full"``, ``"diagonal"`` or ``"auto"`` (default: full up to `FULL_DIM`
            coordinates).
        tol_x: [`stop_reason`][torch_mbd.adaptive.AdaptiveMBDOptimizer.stop_reason] says ``"tol_x"`` once every sampling standard deviation is below
            ``tol_x`` times its initial value.
        tol_fun: [`stop_reason`][torch_mbd.adaptive.AdaptiveMBDOptimizer.stop_reason] says ``"tol_fun"`` once the best rewards of the last
            ``10 + ceil(30 D / n)`` steps, and this step's valid rewards, each span less than ``tol_fun``.
        warm_up: halve the noise level, and take the step back, when the mean reward of a step's
            samples fell by more than `WARM_UP_SIGNIFICANCE` standard errors, until it has risen (or held)
            `WARM_UP_SUCCESSES` steps in a row (``docs/adaptive.md``). It compares
            the objective across steps, so turn it off for a stochastic one (a fresh minibatch per step).
        **options: the options every method shares (``bounds``, ``noise_scale``, ``rollout``,
            ``generator``, ``seed``, ``torch_threads``, ...; see [`MBDOptimizer`][torch_mbd.MBDOptimizer]) and MBD's schedule
            options ``num_steps``, ``beta_first``, ``beta_last``, ``noise_convention``, accepted (so that every
            method takes the arguments of ``plan`` and ``minimize``), checked and unused: the noise level is learnt.

    Example:
        >>> x = torch.full((10,), 3.0, dtype=torch.float64)
        >>> opt = AdaptiveMBDOptimizer([x], num_samples=32, seed=0)
        >>> for _ in range(150):
        ...     _ = opt.step(lambda c: (c[0] ** 2).sum(-1))
        >>> bool((x.abs() < 1e-6).all())
        True
    """

    method = "mbd-adaptive"
    _label = "AdaptiveMBDOptimizer"
    state_fields = ("temperature", "target_ess", "adaptation")
    fixed_state_fields = ("covariance",)

    def __init__(
        self,
        params,
        num_samples: int = 64,
        temperature: float | str = "auto",
        target_ess: float = ADAPTIVE_TARGET_ESS,
        sigma0: float | None = None,
        covariance: str = "auto",
        tol_x: float = 1e-12,
        tol_fun: float = 1e-12,
        warm_up: bool = True,
        **options,
    ):
        if check_int("num_samples", num_samples, minimum=1) < 2:
            raise ValueError("Invalid num_samples: adaptive MBD estimates a covariance, it needs >= 2 samples, got 1")
        self.temperature = check_temperature("temperature", temperature)
        self.target_ess = check_target_ess("target_ess", target_ess)
        self.sigma0 = None if sigma0 is None else check_positive("sigma0", sigma0)
        if not isinstance(covariance, str) or covariance not in ("auto", "full", "diagonal"):
            raise ValueError(f"Invalid covariance: expected 'auto', 'full' or 'diagonal', got {covariance!r}")
        self.tol_x, self.tol_fun = check_positive("tol_x", tol_x), check_positive("tol_fun", tol_fun)
        self.warm_up = check_bool("warm_up", warm_up)
        pop_first_sigma(options, type(self).__name__)  # checked; a run has no schedule, so no length
        super().__init__(params, num_samples, **options)
        D = self.layout.D
        self.covariance = "full" if covariance == "full" or (covariance == "auto" and D <= FULL_DIM) else "diagonal"
        """The shape learnt: ``"full"`` or ``"diagonal"``."""
        self.adaptation: dict | None = None
        """The learnt state (``sigma [B]``, ``shape``, the two paths, ``initial_std [B, D]``, the best
        rewards of recent steps), ``None`` before the first step."""

    # ----------------------------------------------------------------- state
    @property
    def diagonal(self) -> bool:
        return self.covariance == "diagonal"

    def _state_dtype(self) -> torch.dtype:
        # a full shape is factored (eigh) every step: float64 keeps it positive definite to a condition of 1e14
        return torch.float64 if not self.diagonal else self.compute_dtype

    def _initial_state(self, B: int) -> dict:
        layout, dtype = self.layout, self._state_dtype()
        D = layout.D
        kw = dict(dtype=dtype, device=self.device)
        if self.sigma0 is not None:
            std = torch.full((D,), self.sigma0, **kw)
        else:
            std = torch.full((D,), UNBOUNDED_SIGMA, **kw)
            if layout.lower is not None:
                lower = torch.as_tensor(layout.lower, **kw).expand(D)
                upper = torch.as_tensor(layout.upper, **kw).expand(D)
                width = upper - lower
                std = torch.where(torch.isfinite(width), BOUNDED_SIGMA * width, std)
        if layout.scale is not None:
            std = std * layout.scale.to(dtype)
        frozen = std == 0  # noise_scale 0: the coordinate never moves (its variance is a placeholder)
        std = torch.where(frozen, std.amax().clamp(min=1.0), std)
        sigma = std.mean()
        relative = (std / sigma).square()
        shape = relative.expand(B, D).clone() if self.diagonal else torch.diag_embed(relative.expand(B, D))
        root, inverse, condition = adaptation.shape_factors(shape, self.diagonal)
        return dict(
            sigma=sigma.expand(B).clone(), shape=shape, root=root, inverse_root=inverse, condition=condition,
            path_sigma=torch.zeros(B, D, **kw), path_c=torch.zeros(B, D, **kw),
            initial_std=std.expand(B, D).clone(), frozen=frozen.expand(B, D).clone(), recent_best=torch.empty(B, 0, **kw), spread=torch.zeros(B, **kw),
            warming=torch.ones(B, dtype=torch.bool, device=self.device), previous_estimate=None, successes=torch.zeros(B, dtype=torch.long, device=self.device),
            previous_reward=torch.full((B,), -math.inf, **kw), previous_error=torch.full((B,), math.inf, **kw), steps=0,
        )

    def sampling_stds(self) -> Tensor:
        """``[B, D]`` the standard deviation of each coordinate the next samples are drawn with."""
        state = self.adaptation or self._initial_state(math.prod(self.batch_shape))
        variances = state["shape"] if self.diagonal else torch.diagonal(state["shape"], dim1=-2, dim2=-1)
        stds = state["sigma"].unsqueeze(-1) * variances.sqrt()
        return torch.where(state["frozen"], torch.zeros_like(stds), stds)

    # ----------------------------------------------------------------- the hooks
    def sample(self, y_bar: Tensor) -> tuple[Tensor, float]:
        """``clip(Ybar + sigma C^{1/2} eps)``; reports the mean sampling standard deviation."""
        if self.adaptation is None:
            self.adaptation = self._initial_state(y_bar.shape[0])
        state = self.adaptation
        samples = self.sample_buffer(y_bar.shape[0])
        torch.randn(samples.shape, generator=self.generator, out=samples, dtype=self.dtype, device=self.device)
        sigma = state["sigma"].to(self.dtype)
        if self.diagonal:
            scale = (sigma.unsqueeze(-1) * state["root"].to(self.dtype)).unsqueeze(-2)  # [B, 1, D]
            samples.mul_(scale)
        else:
            samples.copy_(torch.matmul(samples, state["root"].to(self.dtype)) * sigma.view(-1, 1, 1))
        samples.add_(y_bar.unsqueeze(-2))
        if bool(state["frozen"].any()):
            samples.copy_(torch.where(state["frozen"].unsqueeze(-2), y_bar.unsqueeze(-2), samples))
        lower, upper = self.layout.lower, self.layout.upper
        if lower is not None:
            samples.clamp_(min=lower, max=upper)
        return samples, float(self.sampling_stds().mean())

    def update(self, samples: Tensor, evaluation: Evaluation, y_bar: Tensor) -> UpdateResult:
        """MBD's weighted mean, then the shape and the noise level (`torch_mbd.adaptation`)."""
        rewards, feasible = evaluation.rewards, evaluation.feasible
        z, _, _, constant = denoise.normalized_log_weights(rewards, 1.0, feasible, return_constant=True)
        if self.temperature == "auto":
            # 14 halvings of the bracket's log-width (18.4) pin lambda to 0.1 %, plenty for weights
            temperature = denoise.ess_temperature(z, torch.isfinite(z), self.target_ess, iterations=TEMPERATURE_ITERATIONS)
            logp = z / temperature.unsqueeze(-1)
        else:
            temperature, logp = self.temperature, z / self.temperature
        self.warn_if_constant(constant)
        mean, weights, valid = denoise.weighted_mean(samples, logp)
        state, dtype = self.adaptation, self._state_dtype()
        B, n, D = samples.shape
        w = weights.to(dtype)
        mu_eff = 1.0 / w.square().sum(-1).clamp(min=1e-300)  # [B]
        r = adaptation.rates(D, float(mu_eff[valid].mean()) if bool(valid.any()) else 1.0, self.diagonal)
        sigma = state["sigma"]
        step = (mean.to(dtype) - y_bar.to(dtype)) / sigma.unsqueeze(-1)  # [B, D]
        whitened = step * state["inverse_root"] if self.diagonal else (state["inverse_root"] @ step.unsqueeze(-1)).squeeze(-1)
        path_sigma = adaptation.cumulate(state["path_sigma"], whitened, r.c_sigma, mu_eff)
        stalled = adaptation.stalled_path(path_sigma, r, state["steps"], D)
        path_c = adaptation.cumulate(state["path_c"], step * (~stalled).unsqueeze(-1).to(dtype), r.c_c, mu_eff)
        steps = (samples.to(dtype) - y_bar.to(dtype).unsqueeze(-2)) / sigma.view(-1, 1, 1)
        covariance = adaptation.weighted_covariance(steps, w, self.diagonal)
        shape = adaptation.update_shape(state["shape"], path_c, covariance, r, stalled, self.diagonal)
        new_sigma = sigma * adaptation.noise_level_factor(path_sigma, r)
        root, inverse, condition = adaptation.shape_factors(shape, self.diagonal)
        best = torch.where(torch.isfinite(logp), rewards, torch.full_like(rewards, -math.inf)).amax(-1).to(dtype)
        spread = best - torch.where(torch.isfinite(logp), rewards, torch.full_like(rewards, math.inf)).amin(-1).to(dtype)
        window = adaptation.tol_fun_window(D, n)
        new = dict(
            sigma=new_sigma, shape=shape, root=root, inverse_root=inverse, condition=condition,
            path_sigma=path_sigma, path_c=path_c,
        )
        # warm-up: the mean reward of a step's samples estimates the smoothed objective that MBD
        # ascends, at the estimate; until it has risen (or held) WARM_UP_SUCCESSES steps in a row, a step
        # where it fell is taken back and the noise level halved (a start far too noisy for the problem,
        # e.g. in a high dimension, costs a few steps instead of a walk away from the start)
        current, error = (v.to(dtype) for v in smoothed_reward(rewards, torch.isfinite(logp)))
        previous = state["previous_reward"]
        compared = state["warming"] & torch.isfinite(previous) & torch.isfinite(current) & self.warm_up
        margin = WARM_UP_SIGNIFICANCE * torch.sqrt(error + state["previous_error"])
        worse = compared & (current < previous - margin)  # fell, beyond the Monte Carlo noise of the two means
        state["successes"] = torch.where(worse, 0, state["successes"] + compared.long())
        state["warming"] = state["warming"] & (state["successes"] < WARM_UP_SUCCESSES)
        new["sigma"] = torch.where(worse, 0.5 * sigma, new["sigma"])
        for key in ("shape", "root", "inverse_root", "condition"):  # the step is taken back: its shape too
            mask = worse.view(-1, *([1] * (new[key].dim() - 1)))
            new[key] = torch.where(mask, state[key], new[key])
        for key in ("path_sigma", "path_c"):  # and the paths start again at the new level
            new[key] = torch.where(worse.unsqueeze(-1), torch.zeros_like(new[key]), new[key])
        back = state["previous_estimate"]
        if back is None:
            back = y_bar.to(dtype)
        mean = torch.where(worse.unsqueeze(-1), back.to(mean.dtype), mean)
        state["previous_estimate"] = torch.where(worse.unsqueeze(-1), back, y_bar.to(dtype))
        state["previous_reward"] = torch.where(worse, torch.full_like(current, -math.inf), current)  # a new level: a new baseline
        state["previous_error"] = error
        keep = valid
        for key, value in new.items():
            mask = keep.view(-1, *([1] * (value.dim() - 1)))
            state[key] = torch.where(mask, value, state[key])
        state["recent_best"] = torch.cat([state["recent_best"], best.unsqueeze(-1)], -1)[:, -window:]
        state["spread"] = torch.where(keep, spread, torch.full_like(spread, math.inf))
        state["steps"] += 1
        return UpdateResult(mean, weights, valid, temperature=temperature)

    def stop_reason(self) -> str | None:
        """Why this run has converged (every problem of the batch), or ``None``.

        ``"tol_x"``: every sampling standard deviation fell below ``tol_x`` times its initial value;
        ``"condition"``: the shape's condition number reached ``1e14``; ``"tol_fun"``: the best
        rewards of the last ``10 + ceil(30 D / n)`` steps and this step's valid rewards span less than
        ``tol_fun`` each. [`minimize`][torch_mbd.minimize.minimize] restarts (with more samples) on any of them.
        """
        state = self.adaptation
        if state is None:
            return None
        if bool((self.sampling_stds() < self.tol_x * state["initial_std"]).all()):
            return "tol_x"
        if bool((state["condition"] >= 1e14).all()):
            return "condition"
        recent = state["recent_best"]
        window = adaptation.tol_fun_window(self.layout.D, self.num_samples)
        if recent.shape[-1] >= window:
            span = recent.amax(-1) - recent.amin(-1)
            if bool(((span < self.tol_fun) & (state["spread"] < self.tol_fun)).all()):
                return "tol_fun"
        return None

    def check_state_fields(self, saved: dict) -> dict:
        adapted = saved["adaptation"]
        if adapted is not None:
            if not isinstance(adapted, dict) or set(adapted) != set(self._initial_state(1)):
                raise ValueError("state_dict adaptation must be None or the dict an AdaptiveMBDOptimizer saved")
            B = math.prod(self.batch_shape)
            for key, value in adapted.items():
                if key == "steps":
                    check_int("state_dict adaptation steps", value, minimum=0)
                    continue
                if key == "previous_estimate" and value is None:
                    continue
                kind = {"warming": torch.bool, "frozen": torch.bool, "successes": torch.long}.get(key)
                if not isinstance(value, Tensor) or value.shape[:1] != (B,) or (
                    value.dtype != kind if kind is not None else not value.is_floating_point()
                ):
                    what = kind or "floating-point"
                    raise ValueError(f"state_dict adaptation[{key!r}] must be a {what} tensor for {B} problem(s)")
                if kind is None and key not in _MAY_BE_INFINITE and not bool(torch.isfinite(value).all()):
                    raise ValueError(f"state_dict adaptation[{key!r}] must be finite")
            adapted = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in adapted.items()}
        return dict(
            temperature=check_temperature("state_dict temperature", saved["temperature"]),
            target_ess=check_target_ess("state_dict target_ess", saved["target_ess"]),
            adaptation=adapted,
        )
