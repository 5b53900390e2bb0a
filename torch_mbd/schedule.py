"""The forward-diffusion noise schedule of Model-Based Diffusion.

The paper (A.4.2) uses a linear schedule ``beta_i = linspace(beta0, beta1, N)`` with
``beta0 = 1e-4``, ``beta1 = 1e-2`` and ``N = 100``; ``alpha_i = 1 - beta_i`` and
``alpha_bar_i = prod_{k <= i} alpha_k``. The reverse process walks ``i = N-1, ..., 0``.

Two conventions exist for the standard deviation of the samples drawn around the
current estimate ``Ybar`` at step ``i`` (DESIGN.md, paper Eq. 8):

* ``"official"`` (default): ``sigma_i = sqrt(1 - alpha_bar_i)``, as in the authors' JAX code,
  which produced every number in the paper's tables.
* ``"paper"``: ``sigma_i = sqrt(1 / alpha_bar_i - 1)``, the covariance ``(1/alpha_bar_i - 1) I``
  of ``phi_i`` in Eq. (8) and Algorithm 1.

Both shrink to ``sqrt(beta0)`` at the last step; with the default schedule they start at 0.63
(official) and 0.81 (paper). ``benchmarks/noise_convention.py`` compares them; docs/results.md
records why ``"official"`` is the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check_int, check_real

NOISE_CONVENTIONS = ("official", "paper")


@dataclass(frozen=True)
class Schedule:
    """A linear beta schedule and the quantities derived from it.

    All tensors have shape ``[num_steps]`` and dtype float64 (the schedule is tiny; the
    denoiser casts the scalars it needs). Index ``i`` is the diffusion level: the reverse
    process starts at ``i = num_steps - 1`` and ends at ``i = 0``.

    Attributes:
        betas: ``beta_i``.
        alphas: ``alpha_i = 1 - beta_i``.
        alpha_bars: ``alpha_bar_i = prod_{k <= i} alpha_k``.
        sigmas: sampling standard deviation at level ``i`` under ``noise``.
        noise: the noise convention, ``"official"`` or ``"paper"``.
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor
    sigmas: torch.Tensor
    noise: str

    @property
    def num_steps(self) -> int:
        return int(self.betas.numel())

    def alpha_bar_prev(self, i: int) -> float:
        """``alpha_bar_{i-1}``, with ``alpha_bar_{-1} = 1`` (no noise before the first level)."""
        return 1.0 if i == 0 else float(self.alpha_bars[i - 1])


def check_beta(name: str, value) -> float:
    """A beta of the schedule checked: a real number in ``(0, 1)``, returned as a float."""
    try:
        beta = check_real(name, value)
    except ValueError:
        raise ValueError(f"Invalid {name}: expected a float in (0, 1), got {value!r}") from None
    if not 0.0 < beta < 1.0:
        raise ValueError(f"Invalid {name}: expected a float in (0, 1), got {value!r}")
    return beta


def linear_schedule(
    num_steps: int = 100,
    beta0: float = 1e-4,
    beta1: float = 1e-2,
    noise: str = "official",
) -> Schedule:
    """Build the linear schedule of the paper.

    Numbers may be Python or numpy scalars (or 0-dim tensors).

    Args:
        num_steps: number of diffusion levels ``N`` (one optimizer step each), an integer ``>= 1``.
        beta0: first beta, in ``(0, 1)``.
        beta1: last beta, in ``(0, 1)``. With ``num_steps == 1`` only ``beta0`` is used.
        noise: ``"official"`` (``sqrt(1 - alpha_bar)``) or ``"paper"`` (``sqrt(1/alpha_bar - 1)``).

    Returns:
        A :class:`Schedule`.

    Example:
        >>> s = linear_schedule()
        >>> round(float(s.sigmas[-1]), 3), round(float(s.sigmas[0]), 3)
        (0.63, 0.01)
    """
    num_steps = check_int("num_steps", num_steps, minimum=1)
    betas_given = [check_beta("beta0", beta0), check_beta("beta1", beta1)]
    if not isinstance(noise, str) or noise not in NOISE_CONVENTIONS:
        raise ValueError(f"Invalid noise: expected one of {NOISE_CONVENTIONS}, got {noise!r}")
    betas = torch.linspace(betas_given[0], betas_given[1], num_steps, dtype=torch.float64)
    alphas = 1.0 - betas
    alpha_bars = torch.cumprod(alphas, dim=0)
    if noise == "official":
        sigmas = torch.sqrt(1.0 - alpha_bars)
    else:
        sigmas = torch.sqrt(1.0 / alpha_bars - 1.0)
    return Schedule(betas=betas, alphas=alphas, alpha_bars=alpha_bars, sigmas=sigmas, noise=noise)
