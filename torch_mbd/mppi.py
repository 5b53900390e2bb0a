"""Model-predictive path integral (MPPI) with a fixed sampling noise (a sibling of MBD)."""

from __future__ import annotations

from torch import Tensor

from . import denoise
from .checks import check_positive
from .denoise import DEFAULT_TARGET_ESS
from .sampling import (
    Evaluation,
    SamplingOptimizer,
    UpdateResult,
    check_target_ess,
    check_temperature,
    pop_first_sigma,
    resolve_temperature,
)


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
        :func:`~torch_mbd.denoise.weighted_mean`.
    """
    logp, _, _ = denoise.normalized_log_weights(rewards, temperature, feasible)
    return denoise.weighted_mean(samples, logp)


class MPPIOptimizer(SamplingOptimizer):
    """Model-predictive path integral (MPPI) optimization with a fixed sampling noise.

    Each step samples ``clip(mean + noise_std * eps)`` and moves ``mean`` to the
    softmax-weighted mean of the samples, weights ``softmax((R - mean R) / std R / temperature)``
    (the same normalized weights as MBD, infeasible samples weighted 0). Unlike MBD the noise
    never shrinks. The parameters hold ``mean``.

    Args:
        params: as for :class:`~torch_mbd.MBDOptimizer`.
        num_samples: candidates per step ``n``.
        temperature: ``lambda > 0``, or ``"auto"`` (as for :class:`~torch_mbd.MBDOptimizer`).
        noise_std: the fixed standard deviation; ``None`` takes MBD's first sampling level
            ``sigma_{N-1}`` of the schedule options. Multiplied by ``noise_scale``.
        target_ess: the effective-sample-size fraction ``temperature="auto"`` aims at.
        **options: the shared options of :class:`~torch_mbd.MBDOptimizer` (``bounds``, ``rollout``,
            ``seed``, the schedule options ``num_steps``, ``beta_first``, ``beta_last``, ``noise_convention``, ...).
    """

    method = "mppi"
    state_fields = ("temperature", "target_ess")

    def __init__(
        self,
        params,
        num_samples: int = 256,
        temperature: float | str = 0.1,
        noise_std: float | None = None,
        target_ess: float = DEFAULT_TARGET_ESS,
        **options,
    ):
        noise_std = None if noise_std is None else check_positive("noise_std", noise_std)
        self.temperature = check_temperature("temperature", temperature)
        self.target_ess = check_target_ess("target_ess", target_ess)
        sigma = pop_first_sigma(options, type(self).__name__)
        super().__init__(params, num_samples, **options)
        self.noise_std = noise_std
        self._fixed_std = sigma if noise_std is None else noise_std
        self._std: Tensor | None = None

    def sampling_std(self, B: int) -> Tensor:
        if self._std is None or self._std.shape != (B, self.layout.D):
            self._std = self.initial_std(self._fixed_std).expand(B, -1)
        return self._std

    def update(self, samples: Tensor, evaluation: Evaluation, y_bar: Tensor) -> UpdateResult:
        rewards, feasible = evaluation.rewards, evaluation.feasible
        temperature = resolve_temperature(self.temperature, self.target_ess, rewards, feasible)
        mean, weights, valid = mppi_update(samples, rewards, temperature, feasible)
        return UpdateResult(mean, weights, valid, temperature=temperature)

    def check_state_fields(self, saved: dict) -> dict:
        return dict(
            temperature=check_temperature("state_dict temperature", saved["temperature"]),
            target_ess=check_target_ess("state_dict target_ess", saved["target_ess"]),
        )
