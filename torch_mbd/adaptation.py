"""The math of adaptive MBD, as pure functions over tensors (``docs/adaptive.md`` derives it).

MBD's reverse step estimates ``E[Y0 | Yi]`` by a weighted mean of samples drawn around the current
estimate. The same weighted samples give more than the first moment, and the adaptive method
(`torch_mbd.adaptive`) uses it:

* [`weighted_covariance`][torch_mbd.adaptation.weighted_covariance]: the second moment, a Monte Carlo estimate of the posterior
  covariance ``Cov[Y0 | Yi]`` (Tweedie's second-order formula), averaged over steps into the
  sampling shape ``C`` (full ``[B, D, D]`` or diagonal ``[B, D]``): the diffusion then runs in the
  coordinates that ``C`` whitens;
* [`cumulate`][torch_mbd.adaptation.cumulate] and [`noise_level_factor`][torch_mbd.adaptation.noise_level_factor]: the noise level follows the signal of the score
  estimate: a cumulated, whitened denoising step longer than pure Monte Carlo noise would give
  means the noise is small for the landscape (grow it), shorter means the steps cancel (shrink it);
* [`rates`][torch_mbd.adaptation.rates]: the averaging rates, functions of ``D`` and of the weights' effective sample size.

The rates are those of CMA-ES (Hansen, "The CMA Evolution Strategy: A Tutorial", 2016), whose
updates these are once MBD's weights replace its rank weights; sep-CMA-ES's (Ros and Hansen, 2008)
for the diagonal shape. Shapes: ``B`` problems, ``n`` samples, ``D`` coordinates.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class Rates(NamedTuple):
    """The averaging rates of the adaptation (CMA-ES's formulas, Hansen 2016, Table 1).

    Attributes:
        c_sigma: rate of the cumulated whitened step (the noise level's path).
        d_sigma: damping of the noise level's change.
        c_c: rate of the cumulated step that feeds the rank-one shape update.
        c_1: weight of the rank-one update of the shape.
        c_mu: weight of the weighted-covariance (rank-``mu``) update of the shape.
        chi: ``E ||N(0, I_D)||``.
    """

    c_sigma: float
    d_sigma: float
    c_c: float
    c_1: float
    c_mu: float
    chi: float


def rates(D: int, mu_eff: float, diagonal: bool) -> Rates:
    """The averaging rates for ``D`` coordinates and weights of effective sample size ``mu_eff``.

    ``diagonal`` scales the shape's rates by ``(D + 2) / 3`` (sep-CMA-ES): ``D`` numbers are learnt
    instead of ``D (D + 1) / 2``.
    """
    mu_eff = max(float(mu_eff), 1.0)  # 1 / sum w^2 >= 1, but for rounding
    c_sigma = (mu_eff + 2.0) / (D + mu_eff + 5.0)
    d_sigma = 1.0 + 2.0 * max(0.0, math.sqrt((mu_eff - 1.0) / (D + 1.0)) - 1.0) + c_sigma
    c_c = (4.0 + mu_eff / D) / (D + 4.0 + 2.0 * mu_eff / D)
    c_1 = 2.0 / ((D + 1.3) ** 2 + mu_eff)
    c_mu = min(1.0 - c_1, 2.0 * (mu_eff - 2.0 + 1.0 / mu_eff) / ((D + 2.0) ** 2 + mu_eff))
    if diagonal:
        boost = (D + 2.0) / 3.0
        c_1, c_mu = min(1.0, c_1 * boost), c_mu * boost
        c_mu = min(c_mu, 1.0 - c_1)
    chi = math.sqrt(D) * (1.0 - 1.0 / (4.0 * D) + 1.0 / (21.0 * D * D))
    return Rates(c_sigma, d_sigma, c_c, c_1, max(c_mu, 0.0), chi)


def tol_fun_window(D: int, n: int) -> int:
    """CMA-ES's ``tolfun`` window, ``10 + ceil(30 D / n)`` steps: how far back a flat run of best values is judged."""
    return 10 + math.ceil(30 * D / n)


def weighted_covariance(steps: Tensor, weights: Tensor, diagonal: bool) -> Tensor:
    """``sum_k w_k y_k y_k^T`` of the whitened-by-``sigma`` steps ``y_k = (Y0_k - Ybar) / sigma``.

    With the softmax weights of the reward, this is the Monte Carlo estimate of the posterior
    covariance ``Cov[Y0 | Yi] / sigma^2`` around the estimate the samples were drawn from.

    Args:
        steps: ``[B, n, D]``.
        weights: ``[B, n]``, non-negative, summing to 1 (0 for invalid samples).
        diagonal: return only the diagonal.

    Returns:
        ``[B, D, D]``, or ``[B, D]`` with ``diagonal``.
    """
    if diagonal:
        return torch.einsum("bn,bnd->bd", weights, steps.square())
    return torch.einsum("bn,bnd,bne->bde", weights, steps, steps)


def cumulate(path: Tensor, step: Tensor, rate: float, mu_eff: Tensor) -> Tensor:
    """``(1 - c) path + sqrt(c (2 - c) mu_eff) step``: the exponentially averaged step, normalized so
    that under random selection (weights blind to the reward) the path stays ``N(0, C)`` distributed.

    Args:
        path: ``[B, D]``.
        step: ``[B, D]`` the step of the estimate divided by ``sigma`` (whitened for the noise path).
        rate: ``c`` in ``(0, 1]``.
        mu_eff: ``[B]`` the weights' effective sample size ``1 / sum w^2``.
    """
    return (1.0 - rate) * path + torch.sqrt(rate * (2.0 - rate) * mu_eff).unsqueeze(-1) * step


def noise_level_factor(path: Tensor, r: Rates, max_log_change: float = 1.0) -> Tensor:
    """``exp((c_sigma / d_sigma) (||path|| / chi - 1))``, the factor of this step's noise-level change,
    its logarithm clipped to ``[-max_log_change, max_log_change]``.

    Args:
        path: ``[B, D]`` the cumulated whitened step.
        r: the `Rates`.

    Returns:
        ``[B]``.
    """
    log_change = (r.c_sigma / r.d_sigma) * (path.norm(dim=-1) / r.chi - 1.0)
    return log_change.clamp(-max_log_change, max_log_change).exp()


def stalled_path(path: Tensor, r: Rates, steps_done: int, D: int) -> Tensor:
    """``[B]`` boolean: the noise-level path is too long for the rank-one update to trust it (CMA-ES's
    ``h_sigma = 0``), which happens while the noise level is still growing fast."""
    norm = path.norm(dim=-1) / math.sqrt(1.0 - (1.0 - r.c_sigma) ** (2 * (steps_done + 1)))
    return norm >= (1.4 + 2.0 / (D + 1.0)) * r.chi


def update_shape(
    shape: Tensor, path_c: Tensor, covariance: Tensor, r: Rates, stalled: Tensor, diagonal: bool
) -> Tensor:
    """The sampling shape ``C`` after one step: ``(1 - c_1 - c_mu) C + c_1 p p^T + c_mu Cov``.

    Args:
        shape: ``C``, ``[B, D, D]`` (or ``[B, D]`` with ``diagonal``).
        path_c: ``[B, D]`` the cumulated step ``p`` (rank-one update).
        covariance: [`weighted_covariance`][torch_mbd.adaptation.weighted_covariance] of this step, shaped like ``shape``.
        r: the `Rates`.
        stalled: ``[B]`` boolean from [`stalled_path`][torch_mbd.adaptation.stalled_path]: the rank-one term's lost variance is
            given back (``c_1 c_c (2 - c_c) C``) where the path was not added.
    """
    keep = (1.0 - r.c_1 - r.c_mu) + r.c_1 * r.c_c * (2.0 - r.c_c) * stalled.to(shape.dtype)
    if diagonal:
        rank_one = path_c.square()
        return keep.unsqueeze(-1) * shape + r.c_1 * rank_one + r.c_mu * covariance
    rank_one = path_c.unsqueeze(-1) * path_c.unsqueeze(-2)
    return keep.view(-1, 1, 1) * shape + r.c_1 * rank_one + r.c_mu * covariance


def shape_factors(shape: Tensor, diagonal: bool, max_condition: float = 1e14) -> tuple[Tensor, Tensor, Tensor]:
    """A square root and an inverse square root of the shape ``C``, and its condition number.

    Args:
        shape: ``[B, D, D]`` symmetric positive semi-definite (or ``[B, D]`` with ``diagonal``).
        max_condition: eigenvalues are floored at ``max_eigenvalue / max_condition``.

    Returns:
        ``(root, inverse_root, condition)``: ``[B, D, D]`` each (``[B, D]`` with ``diagonal``) and ``[B]``.
        ``root`` is the symmetric ``C^{1/2}`` (``root @ root = C``), so samples ``Ybar + sigma root eps``
        have covariance ``sigma^2 C``.
    """
    if diagonal:
        values = shape
    else:
        shape = 0.5 * (shape + shape.transpose(-1, -2))
        values, vectors = torch.linalg.eigh(shape)
    top = values.amax(-1, keepdim=True)
    values = torch.maximum(values, top / max_condition)
    condition = (values.amax(-1) / values.amin(-1))
    root_values = values.sqrt()
    if diagonal:
        return root_values, 1.0 / root_values, condition
    root = (vectors * root_values.unsqueeze(-2)) @ vectors.transpose(-1, -2)
    inverse = (vectors / root_values.unsqueeze(-2)) @ vectors.transpose(-1, -2)
    return root, inverse, condition
