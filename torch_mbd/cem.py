"""The cross-entropy method with a diagonal Gaussian (a sibling of MBD over the shared loop)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import denoise
from .checks import check_positive
from .sampling import Evaluation, SamplingOptimizer, UpdateResult, check_unused_temperature, pop_first_sigma


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


class CEMOptimizer(SamplingOptimizer):
    """The cross-entropy method with a diagonal Gaussian, as a ``torch.optim.Optimizer``.

    Each step samples ``num_samples`` candidates ``clip(mean + std * eps)``, keeps the best
    ``elite_fraction`` of them and sets ``mean``, ``std`` to the elites' mean and per-coordinate
    standard deviation (no smoothing). The parameters hold ``mean``.

    Args:
        params: as for :class:`~torch_mbd.MBDOptimizer` (group options ``bounds``, ``noise_scale``).
        num_samples: candidates per step ``n``.
        elite_fraction: fraction of the samples kept as elites, in ``(0, 1]``; at least one elite.
        init_std: initial standard deviation; ``None`` takes MBD's first sampling level
            ``sigma_{N-1}`` of the schedule options (``num_steps``, ``beta_first``, ``beta_last``,
            ``noise_convention``; ``0.63`` with the defaults). Multiplied by ``noise_scale``.
        min_std: floor on the refitted standard deviation (default ``0``: plain CEM).
        temperature: accepted (every method takes ``plan``'s arguments), checked and unused.
        target_ess: likewise.
        **options: the shared options of :class:`~torch_mbd.MBDOptimizer` (``bounds``, ``rollout``,
            ``seed``, ``generator``, ``process_group``, ``torch_threads``, the schedule options above);
            the demonstration options are MBD-only.

    Example:
        >>> x = torch.zeros(3)
        >>> opt = CEMOptimizer([x], num_samples=64, seed=0)
        >>> for _ in range(30):
        ...     _ = opt.step(lambda c: ((c[0] - 0.5) ** 2).sum(-1))
        >>> bool(((x - 0.5).abs() < 0.05).all())
        True
    """

    method = "cem"
    state_fields = ("std",)

    def __init__(
        self,
        params,
        num_samples: int = 256,
        elite_fraction: float = 0.1,
        init_std: float | None = None,
        min_std: float = 0.0,
        temperature: float | str | None = None,
        target_ess: float | None = None,
        **options,
    ):
        elite_fraction = check_positive("elite_fraction", elite_fraction)
        if elite_fraction > 1.0:
            raise ValueError(f"Invalid elite_fraction: expected a number in (0, 1], got {elite_fraction!r}")
        init_std = None if init_std is None else check_positive("init_std", init_std)
        min_std = check_positive("min_std", min_std, allow_zero=True)
        check_unused_temperature(temperature, target_ess)
        sigma = pop_first_sigma(options, type(self).__name__)
        super().__init__(params, num_samples, **options)
        self.elite_fraction, self.init_std, self.min_std = elite_fraction, init_std, min_std
        self._first_std = sigma if init_std is None else init_std
        self.num_elites = max(1, int(round(self.elite_fraction * self.num_samples)))
        self.std: Tensor | None = None  # [B, D] once the first step ran

    def sampling_std(self, B: int) -> Tensor:
        if self.std is None or self.std.shape != (B, self.layout.D):
            self.std = self.initial_std(self._first_std).expand(B, -1).clone()
        return self.std

    def update(self, samples: Tensor, evaluation: Evaluation, y_bar: Tensor) -> UpdateResult:
        mean, std, weights, valid = cem_update(samples, evaluation.rewards, self.num_elites, evaluation.feasible)
        std = std.clamp_(min=self.min_std)
        self.std = torch.where(valid.unsqueeze(-1), std, self.std)
        return UpdateResult(mean, weights, valid)

    def check_state_fields(self, saved: dict) -> dict:
        shape = (math.prod(self.batch_shape), self.layout.D)
        return dict(std=self._checked_tensor_field("std", saved["std"], shape))
