"""Predictive sampling (Howell et al., MuJoCo MPC; hydrax's baseline): keep the best of n samples."""

from __future__ import annotations

import torch
from torch import Tensor

from . import denoise
from .cem import elite_log_weights
from .checks import check_int, check_positive
from .sampling import Evaluation, SamplingOptimizer, UpdateResult, check_unused_temperature, pop_first_sigma


class PredictiveSamplingOptimizer(SamplingOptimizer):
    """Each step scores the current estimate and ``num_samples - 1`` Gaussian perturbations of it
    (fixed ``noise_std``, times ``noise_scale``, clipped to the bounds) and moves to the best valid
    one, so the estimate's reward never falls for a deterministic objective.

    Args:
        params: as for :class:`~torch_mbd.MBDOptimizer`.
        num_samples: candidates per step ``n >= 2``, the estimate included.
        noise_std: the fixed standard deviation; ``None`` takes MBD's first sampling level.
        temperature: accepted (every method takes ``plan``'s arguments), checked and unused.
        target_ess: likewise.
        **options: the shared options of :class:`~torch_mbd.MBDOptimizer`.
    """

    method = "predictive"

    def __init__(self, params, num_samples: int = 256, noise_std: float | None = None, temperature=None,
                 target_ess=None, **options):
        if check_int("num_samples", num_samples, minimum=1) < 2:
            raise ValueError("Invalid num_samples: predictive sampling needs the estimate and >= 1 perturbation, got 1")
        check_unused_temperature(temperature, target_ess)
        sigma = pop_first_sigma(options, type(self).__name__)
        self.noise_std = sigma if noise_std is None else check_positive("noise_std", noise_std)
        super().__init__(params, num_samples, **options)

    def sample(self, y_bar: Tensor) -> tuple[Tensor, float]:
        samples = self.gaussian_samples(y_bar, self.initial_std(self.noise_std))
        lower, upper = self.layout.lower, self.layout.upper
        samples[:, 0] = y_bar if lower is None else torch.clamp(y_bar, min=lower, max=upper)
        return samples, self.noise_std

    def update(self, samples: Tensor, evaluation: Evaluation, y_bar: Tensor) -> UpdateResult:
        logp = elite_log_weights(evaluation.rewards, 1, evaluation.feasible)
        return UpdateResult(*denoise.weighted_mean(samples, logp))
