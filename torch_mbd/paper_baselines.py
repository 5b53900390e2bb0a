"""The paper's baselines as the authors ran them: reproductions, not recommendations.

The MBD paper's Table 2 compares MBD with "CEM", "MPPI" and "CMA-ES". In the authors' code
(LeCAR-Lab/model-based-diffusion, ``mbd/planners/path_integral.py``) these are three update
rules around one sampling loop, much simpler than the algorithms of the same names:

* every step draws ``Y0s = clip(mu + sigma * eps, -1, 1)``, ``eps ~ N(0, I)``, with a **scalar**
  ``sigma`` that starts at ``1.0`` (not MBD's schedule), from ``mu = 0``;
* scores each sample by its mean step reward ``R`` and forms MBD's weights
  ``w = softmax((R - mean R) / std R / temperature)`` (population ``std``; per-task temperature
  of Table 4, 0.1 for most tasks);
* ``"mppi"`` (``softmax_update``): ``mu <- sum_n w_n Y0s_n``; ``sigma`` stays ``1``;
* ``"cem"`` (``cem_update``): ``mu <-`` the plain mean of the 10 samples with the largest
  weights (the 10 best rewards, whatever ``n``); ``sigma`` stays ``1``;
* ``"cma-es"`` (``cma_es_update``): ``mu <- sum_n w_n Y0s_n`` as for MPPI, and
  ``sigma <- max(sigma * mean_d sqrt(sum_n w_n (Y0s_n,d - mu_old,d)^2), 1e-3)``: the
  weighted spread of the samples around the **previous** mean, averaged over the ``H * nu``
  coordinates and multiplied into ``sigma`` (the floor is in the repository's later version
  of the file; an earlier one has no floor). No covariance, no evolution paths.

The authors run ``Nrefine - 1`` such steps (99 for the default 100) and report the final
mean's reward. Here each :meth:`step` is one of them, so ``plan(..., num_steps=K)`` runs
``K`` of them. Where this implementation differs, on purpose: a reward spread too small to
divide by is replaced by 1 (theirs would give NaN weights), and infeasible or non-finite
samples get weight 0 and are never elites (their tasks have no infeasible samples).

Use :class:`~torch_mbd.CEMOptimizer`, :class:`~torch_mbd.MPPIOptimizer`
and :class:`~torch_mbd.CMAESOptimizer` (pycma) for the standard algorithms; these
classes exist so that the paper's comparison can be rerun as published
(``method="paper-mppi" | "paper-cem" | "paper-cmaes"`` in :func:`~torch_mbd.plan` and
:func:`~torch_mbd.minimize`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import denoise
from .cem import elite_log_weights
from .checks import check_int, check_positive
from .denoise import DEFAULT_TARGET_ESS
from .mppi import mppi_update
from .sampling import (
    Evaluation,
    SamplingOptimizer,
    UpdateResult,
    check_target_ess,
    check_temperature,
    pop_first_sigma,
    resolve_temperature,
)

PAPER_SIGMA = 1.0
"""The authors' initial (and, for MPPI and CEM, fixed) sampling standard deviation."""
PAPER_NUM_ELITES = 10
"""The authors' CEM keeps the 10 best samples whatever ``n`` is."""
PAPER_MIN_SIGMA = 1e-3
"""The floor of the authors' CMA-ES step size."""


# --------------------------------------------------------------------------- pure updates
paper_mppi_update = mppi_update
"""The authors' "MPPI" mean update ``mu = sum_n w_n Y0s_n`` (``sigma`` unchanged): their ``softmax_update``
is :func:`~torch_mbd.mppi.mppi_update`, MBD's normalized softmax weights and their weighted mean."""


def paper_cem_update(
    samples: Tensor, rewards: Tensor, num_elites: int = PAPER_NUM_ELITES, feasible: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The authors' "CEM" mean update: the plain mean of the ``num_elites`` best samples.

    Their code sorts the softmax weights, which order the samples as the rewards do, so the
    temperature plays no part. With fewer than ``num_elites`` samples all of them are kept.

    Args:
        samples: ``[B, n, D]``.
        rewards: ``[B, n]``.
        num_elites: how many of the best samples to average (the authors: 10).
        feasible: optional boolean ``[B, n]``; infeasible samples are never elites.

    Returns:
        ``(mean [B, D], weights [B, n], valid [B])``: the weights are ``1 / k`` on the elites.
    """
    k = min(num_elites, samples.shape[-2])
    return denoise.weighted_mean(samples, elite_log_weights(rewards, k, feasible))


def paper_cmaes_update(
    samples: Tensor,
    rewards: Tensor,
    temperature: float | Tensor,
    mean: Tensor,
    sigma: Tensor,
    feasible: Tensor | None = None,
    min_sigma: float = PAPER_MIN_SIGMA,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The authors' "CMA-ES" update: the MPPI mean and a multiplicative step-size rule.

    ``sigma' = max(sigma * mean_d sqrt(sum_n w_n (Y0s_{n,d} - mu_d)^2), min_sigma)`` with ``mu``
    the mean the samples were drawn around (before this update) and ``w`` the softmax weights.

    Args:
        samples: ``[B, n, D]`` the clipped samples ``Y0s``.
        rewards: ``[B, n]``.
        temperature: ``lambda > 0``, a float or ``[B]``.
        mean: ``[B, D]`` the mean the samples were drawn around.
        sigma: ``[B]`` the step size they were drawn with.
        feasible: optional boolean ``[B, n]``.
        min_sigma: floor of the new step size (the authors: ``1e-3``).

    Returns:
        ``(new_mean [B, D], new_sigma [B], weights [B, n], valid [B])``; where no sample was
        valid the step size is kept.
    """
    new_mean, weights, valid = paper_mppi_update(samples, rewards, temperature, feasible)
    dtype = weights.dtype  # the statistics' dtype (at least float32)
    deviation_sq = (samples.to(dtype) - mean.to(dtype).unsqueeze(-2)).square()
    spread = torch.bmm(weights.unsqueeze(-2), deviation_sq).squeeze(-2).sqrt().mean(-1)  # [B]
    sigma = sigma.to(dtype)
    new_sigma = (sigma * spread).clamp(min=min_sigma)
    return new_mean, torch.where(valid, new_sigma, sigma), weights, valid


# --------------------------------------------------------------------------- optimizers
class _PaperOptimizer(SamplingOptimizer):
    """The authors' sampling loop: a scalar step size per problem, times the group's ``noise_scale``.

    The schedule options (``num_steps``, ``beta_first``, ...) are accepted, so that every method
    takes the same arguments of ``plan`` / ``minimize``, and unused: the authors start at ``sigma``.
    """

    state_fields = ("sigma", "temperature", "target_ess")

    def __init__(
        self,
        params,
        num_samples: int = 256,
        temperature: float | str = 0.1,
        sigma: float = PAPER_SIGMA,
        target_ess: float = DEFAULT_TARGET_ESS,
        **options,
    ):
        sigma = check_positive("sigma", sigma)
        self.temperature = check_temperature("temperature", temperature)
        self.target_ess = check_target_ess("target_ess", target_ess)
        pop_first_sigma(options, type(self).__name__)  # checked, unused
        super().__init__(params, num_samples, **options)
        self.sigma0 = sigma
        self.sigma: Tensor | None = None  # [B] once the first step ran

    def sampling_std(self, B: int) -> Tensor:
        if self.sigma is None or self.sigma.shape != (B,):
            self.sigma = torch.full((B,), self.sigma0, dtype=self.compute_dtype, device=self.device)
        return self.sigma.to(self.dtype).unsqueeze(-1) * self.initial_std(1.0)

    def _temperature(self, evaluation: Evaluation) -> float | Tensor:
        return resolve_temperature(self.temperature, self.target_ess, evaluation.rewards, evaluation.feasible)

    def check_state_fields(self, saved: dict) -> dict:
        return dict(  # a sigma of 0 is reachable with min_sigma=0
            sigma=self._checked_tensor_field("sigma", saved["sigma"], (math.prod(self.batch_shape),)),
            temperature=check_temperature("state_dict temperature", saved["temperature"]),
            target_ess=check_target_ess("state_dict target_ess", saved["target_ess"]),
        )


class PaperMPPIOptimizer(_PaperOptimizer):
    """The authors' "MPPI" (``update_method="mppi"`` of ``path_integral.py``): a reproduction.

    Samples ``clip(mu + sigma * eps)`` with ``sigma`` fixed (default ``1.0``, the authors'),
    moves ``mu`` to the softmax-weighted mean of the samples (:func:`paper_mppi_update`).
    The standard algorithm is :class:`~torch_mbd.baselines.MPPIOptimizer`.

    Args:
        params: as for :class:`~torch_mbd.MBDOptimizer` (group options ``bounds``, ``noise_scale``).
        num_samples: samples per step ``n``.
        temperature: ``lambda > 0`` of the softmax weights (the authors' is fixed; ``"auto"`` sets it
            each step as :class:`~torch_mbd.MBDOptimizer` does, not a reproduction then).
        sigma: the fixed sampling standard deviation (times ``noise_scale``).
        **options: other :class:`~torch_mbd.MBDOptimizer` options (``rollout``, ``seed``, ...);
            the demonstration options are MBD-only.
    """

    method = "paper-mppi"

    def update(self, samples: Tensor, evaluation: Evaluation, y_bar: Tensor) -> UpdateResult:
        temperature = self._temperature(evaluation)
        mean, weights, valid = paper_mppi_update(samples, evaluation.rewards, temperature, evaluation.feasible)
        return UpdateResult(mean, weights, valid, temperature=temperature)


class PaperCEMOptimizer(_PaperOptimizer):
    """The authors' "CEM" (``update_method="cem"``): a reproduction.

    Samples ``clip(mu + sigma * eps)`` with ``sigma`` fixed (default ``1.0``) and sets ``mu`` to
    the mean of the ``num_elites`` best samples (default 10, whatever ``n``;
    :func:`paper_cem_update`). The standard algorithm is :class:`~torch_mbd.baselines.CEMOptimizer`.

    Args:
        params: as for :class:`~torch_mbd.MBDOptimizer`.
        num_samples: samples per step ``n``.
        num_elites: samples averaged per step (``min(num_elites, n)`` are kept).
        **options: ``sigma``, the fixed sampling standard deviation (default ``1.0``), and the
            other :class:`~torch_mbd.MBDOptimizer` options; ``temperature`` is accepted and
            unused (the ranking does not depend on it).
    """

    method = "paper-cem"

    def __init__(self, params, num_samples: int = 256, num_elites: int = PAPER_NUM_ELITES, **options):
        self.num_elites = check_int("num_elites", num_elites, minimum=1)
        super().__init__(params, num_samples=num_samples, **options)

    def update(self, samples: Tensor, evaluation: Evaluation, y_bar: Tensor) -> UpdateResult:
        return UpdateResult(*paper_cem_update(samples, evaluation.rewards, self.num_elites, evaluation.feasible))


class PaperCMAESOptimizer(_PaperOptimizer):
    """The authors' "CMA-ES" (``update_method="cma-es"``): a step-size heuristic, not CMA-ES.

    The mean moves as in :class:`PaperMPPIOptimizer`; the scalar ``sigma`` (default start
    ``1.0``) is multiplied each step by the weighted spread of the samples around the previous
    mean and floored at ``min_sigma`` (:func:`paper_cmaes_update`). Since that spread is itself
    about ``sigma``, the step size falls roughly as ``sigma^2`` and reaches the floor within a few
    steps. Real CMA-ES is :class:`~torch_mbd.baselines.CMAESOptimizer` (pycma).

    Args:
        params: as for :class:`~torch_mbd.MBDOptimizer`.
        num_samples: samples per step ``n``.
        min_sigma: the floor of the step size (the authors: ``1e-3``).
        **options: ``temperature`` (``lambda > 0`` of the softmax weights, or ``"auto"``), ``sigma`` (the initial
            step size, default ``1.0``) and the other :class:`~torch_mbd.MBDOptimizer` options.
    """

    method = "paper-cmaes"

    def __init__(self, params, num_samples: int = 256, min_sigma: float = PAPER_MIN_SIGMA, **options):
        self.min_sigma = check_positive("min_sigma", min_sigma, allow_zero=True)
        super().__init__(params, num_samples=num_samples, **options)

    def update(self, samples: Tensor, evaluation: Evaluation, y_bar: Tensor) -> UpdateResult:
        temperature = self._temperature(evaluation)
        new, self.sigma, weights, valid = paper_cmaes_update(
            samples, evaluation.rewards, temperature, y_bar, self.sigma, evaluation.feasible, self.min_sigma
        )
        return UpdateResult(new, weights, valid, temperature=temperature)


PAPER_OPTIMIZERS = {
    "paper-mppi": PaperMPPIOptimizer,
    "paper-cem": PaperCEMOptimizer,
    "paper-cmaes": PaperCMAESOptimizer,
}
