"""Demonstrations (paper, section 4.3): checked once, scored against every sample.

A `Demonstration` holds what [`MBDOptimizer`][torch_mbd.MBDOptimizer] was given (``demo``,
``demo_mask``, ``demo_sigma``, or a ``demo_log_likelihood`` callable), checks it at construction
and turns the samples of a step (closure mode) or their rollout's states (rollout mode) into the
demonstration log-likelihood ``[B, n]`` that the max rule of Eq. (13) weighs against the rewards
([`torch_mbd.denoise.demo_log_weights`][torch_mbd.denoise.demo_log_weights]).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from . import denoise
from .checks import check_positive, check_tensor
from .evaluation import check_real_dtype


def _check_finite(covered: Tensor) -> None:
    if not bool(torch.isfinite(covered).all()):
        bad = int((~torch.isfinite(covered)).sum())
        raise ValueError(
            f"Invalid demo: {bad} entr{'y' if bad == 1 else 'ies'} the demonstration covers "
            "(demo_mask True) is NaN or infinite; exclude them with demo_mask"
        )


class Demonstration:
    """A demonstration checked against the parameters, and its log-likelihood of a step's samples.

    Args:
        params: the optimizer's parameters (closure mode: the demo has the single parameter's shape).
        batch_shape: the parameters' batch dimensions (rollout mode), ``()`` in closure mode.
        rollout_mode: whether the samples are rolled out (the demo then describes states).
        compute_dtype: the dtype of the statistics (at least float32).
        demo: demonstrated states ``[..., T, nx]`` / ``[..., T, k]`` (rollout mode) or a tensor of the
            single parameter's shape (closure mode), or ``None`` with ``log_likelihood``.
        mask: boolean ``[nx]`` or ``[T, nx]`` of the covered entries, or ``None`` for all.
        sigma: the Gaussian's standard deviation, a number or a tensor broadcastable to ``demo``.
        log_likelihood: rollout mode only: ``states [B, n, T, nx] -> [B, n]``, instead of the Gaussian.

    The argument documentation users read is [`MBDOptimizer`][torch_mbd.MBDOptimizer]'s (``demo``,
    ``demo_mask``, ``demo_sigma``, ``demo_log_likelihood``).
    """

    def __init__(
        self,
        params: list[Tensor],
        batch_shape: tuple,
        rollout_mode: bool,
        compute_dtype: torch.dtype,
        demo: Tensor | None = None,
        mask: Tensor | None = None,
        sigma: float | Tensor = 1.0,
        log_likelihood: Callable[[Tensor], Tensor] | None = None,
    ):
        self.params, self.batch_shape, self.rollout_mode = params, batch_shape, rollout_mode
        self.device, self.dtype, self.compute_dtype = params[0].device, params[0].dtype, compute_dtype
        if log_likelihood is not None:
            if not callable(log_likelihood):
                raise TypeError(
                    "demo_log_likelihood must be callable (states [B, n, T, nx] -> log-likelihood [B, n]), "
                    f"got {type(log_likelihood).__name__}"
                )
            if not rollout_mode:
                raise ValueError(
                    "demo_log_likelihood needs rollout mode: it scores the rollout's states, and closure mode has none"
                )
            if demo is not None or mask is not None:
                raise ValueError("give demo (with demo_mask, the Gaussian likelihood) or demo_log_likelihood, not both")
        self.custom = log_likelihood
        self.demo, self.mask = self._prepare(demo, mask)
        self.sigma = self._prepare_sigma(sigma)
        self._flat: tuple | None = None  # ((T, nx), demo, mask, sigma) once the states' shape is known

    @property
    def active(self) -> bool:
        """Whether a demonstration weighs in (a Gaussian ``demo`` or a custom log-likelihood)."""
        return self.demo is not None or self.custom is not None

    def _prepare(self, demo, mask):
        """``demo`` and ``mask`` checked; closure mode: both flat ``[1, D]``; rollout mode: as given
        (``nx`` and ``T`` are checked against the first rollout's states)."""
        if demo is None:
            if mask is not None:
                raise ValueError("demo_mask was given without demo")
            return None, None
        if not isinstance(demo, Tensor):  # a NumPy array is taken in the params' dtype, on their device
            demo = check_tensor("demo", demo).to(self.device, self.dtype)
        if demo.device != self.device or demo.dtype != self.dtype:
            raise ValueError(f"demo must be on {self.device} with dtype {self.dtype}, got {demo.device}, {demo.dtype}")
        if mask is not None:
            mask = check_tensor("demo_mask", mask, kind="bool").to(self.device)
            if not bool(mask.any()):
                raise ValueError("Invalid demo_mask: it covers no entry of the demonstration (every entry is False)")
        demo = demo.to(self.compute_dtype)
        p = self.params[0]
        if not self.rollout_mode:
            if len(self.params) != 1:
                shapes = ", ".join(str(tuple(q.shape)) for q in self.params)
                raise ValueError(
                    f"in closure mode demo needs exactly one parameter, got {len(self.params)} ({shapes}): the "
                    "demonstration is compared with it; optimize a single tensor (e.g. one flat vector split in "
                    "the closure), or give no demo"
                )
            if tuple(demo.shape) != tuple(p.shape):
                raise ValueError(
                    f"in closure mode demo must have the shape of the single parameter {tuple(p.shape)}, "
                    f"got {tuple(demo.shape)}"
                )
            if mask is not None and tuple(mask.shape) != tuple(p.shape):
                raise ValueError(f"demo_mask must have shape {tuple(p.shape)}, got {tuple(mask.shape)}")
            _check_finite(demo if mask is None else demo[mask])
            return demo.reshape(1, -1), None if mask is None else mask.reshape(1, -1)
        if demo.dim() < 2:
            raise ValueError(f"demo must have shape [..., T, nx] (T = H, the states' steps), got {tuple(demo.shape)}")
        horizon = demo.shape[-2]
        try:
            fits = torch.broadcast_shapes(tuple(demo.shape[:-2]), self.batch_shape) == self.batch_shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"demo of shape {tuple(demo.shape)}: its leading dimensions {tuple(demo.shape[:-2])} must "
                f"broadcast to the params' batch dimensions {self.batch_shape}"
            )
        if mask is None:
            _check_finite(demo)
            return demo, None
        if mask.dim() not in (1, 2) or (mask.dim() == 2 and mask.shape[0] != horizon):
            raise ValueError(
                f"demo_mask must have shape [nx] or [T={horizon}, nx] (the demo's T), got {tuple(mask.shape)}"
            )
        if demo.shape[-1] == mask.shape[-1]:  # a full demo [..., H, nx]: only the covered entries count
            _check_finite(demo[..., mask])
        elif mask.dim() == 1 and demo.shape[-1] == int(mask.sum()):  # a partial demo [..., H, k]
            _check_finite(demo)
        else:
            raise ValueError(
                f"demo has {demo.shape[-1]} dimensions per step and demo_mask covers {mask.shape[-1]} state "
                f"dimensions ({int(mask.sum())} selected): demo must have nx = {mask.shape[-1]} dimensions, or "
                "as many as a [nx] demo_mask selects"
            )
        return demo, mask

    def _prepare_sigma(self, sigma):
        """``sigma`` checked: a float, or a tensor of the demo's shape (flat ``[1, D]`` in closure mode)."""
        if not isinstance(sigma, Tensor):
            return check_positive("demo_sigma", sigma)
        if not sigma.is_floating_point():
            raise TypeError(f"demo_sigma must be a number or a floating-point tensor, got dtype {sigma.dtype}")
        sigma = sigma.to(self.device, self.compute_dtype)
        if not bool(torch.isfinite(sigma).all()) or not bool((sigma > 0).all()):
            raise ValueError("Invalid demo_sigma: every entry must be a finite number > 0")
        if self.demo is None:
            return sigma
        shape = self.demo.shape if self.rollout_mode else self.params[0].shape  # closure: demo is flat
        try:
            sigma = sigma.expand(shape)
        except RuntimeError:
            raise ValueError(
                f"demo_sigma of shape {tuple(sigma.shape)} must broadcast to the demo's shape {tuple(shape)}"
            ) from None
        return sigma if self.rollout_mode else sigma.reshape(1, -1)

    def _features(self, nx: int, steps: int) -> tuple[Tensor, Tensor | None, float | Tensor]:
        """The rollout-mode demo, mask and sigma flattened to ``[B, T*nx]`` once the states' ``T = steps``
        and ``nx`` are known (then reused)."""
        if self._flat is not None and self._flat[0] == (steps, nx):
            return self._flat[1:]
        demo, mask, sigma = self.demo, self.mask, self.sigma
        horizon = demo.shape[-2]
        if horizon != steps:
            raise ValueError(
                f"demo describes {horizon} steps ([..., T={horizon}, nx]), the rollout returned states of "
                f"{steps} steps: the demonstration must have one state per step of the rollout"
            )
        if mask is not None and mask.shape[-1] != nx:
            raise ValueError(f"demo_mask covers {mask.shape[-1]} state dimensions, the rollout has nx={nx}")
        if demo.shape[-1] != nx:
            if mask is None or mask.dim() != 1 or int(mask.sum()) != demo.shape[-1]:
                raise ValueError(
                    f"demo has {demo.shape[-1]} dimensions per step; it must have nx={nx}, or as many as "
                    "demo_mask [nx] selects"
                )
            full = torch.full((*demo.shape[:-1], nx), float("nan"), dtype=demo.dtype, device=demo.device)
            full[..., mask] = demo
            demo = full
            if isinstance(sigma, Tensor):  # entries outside the mask are never read; 1 keeps them finite
                full_sigma = torch.ones_like(full)
                full_sigma[..., mask] = sigma
                sigma = full_sigma
        B = math.prod(self.batch_shape)
        demo = demo.expand(*self.batch_shape, horizon, nx).reshape(B, horizon * nx)
        if isinstance(sigma, Tensor):
            sigma = sigma.expand(*self.batch_shape, horizon, nx).reshape(B, horizon * nx)
        if mask is not None:
            mask = mask.expand(horizon, nx).reshape(1, horizon * nx)
        self._flat = ((steps, nx), demo, mask, sigma)
        return demo, mask, sigma

    def log_likelihood(self, samples: Tensor, trajectory) -> Tensor:
        """The demonstration log-likelihood of this rank's samples.

        Args:
            samples: ``[B, k, D]`` the samples (closure mode: compared with the demo itself).
            trajectory: their rollout's [`Trajectory`][torch_mbd.rollout.Trajectory] (rollout mode), or ``None``.

        Returns:
            ``[B, k]`` in the statistics dtype; ``-inf`` where a sample gets no demonstration weight.
        """
        if not self.rollout_mode:
            return denoise.demo_log_likelihood(samples.to(self.compute_dtype), self.demo, self.mask, self.sigma)
        if trajectory.states is None:
            what = "a demo" if self.demo is not None else "demo_log_likelihood"
            raise ValueError(
                f"rollout returned no states (Trajectory.states is None) but {what} was given: the "
                "demonstration is compared with the states, so the rollout must return them"
            )
        check_real_dtype("rollout states", trajectory.states)
        B, k = samples.shape[:2]
        states = trajectory.states.to(self.device, self.compute_dtype)
        if self.custom is not None:
            return self._custom(states.reshape(B, k, *states.shape[-2:]))
        demo, mask, sigma = self._features(states.shape[-1], states.shape[-2])
        return denoise.demo_log_likelihood(states.reshape(B, k, -1), demo, mask, sigma)

    def _custom(self, states: Tensor) -> Tensor:
        """The custom log-likelihood of ``states [B, n, T, nx]`` checked: ``[B, n]``, non-finite as ``-inf``."""
        B, n = states.shape[:2]
        loglik = self.custom(states)
        if not isinstance(loglik, Tensor):
            raise TypeError(
                f"demo_log_likelihood must return a tensor of shape ({B}, {n}) (problems, samples), "
                f"got {type(loglik).__name__}"
            )
        if tuple(loglik.shape) != (B, n):
            raise ValueError(
                f"demo_log_likelihood must return one log-likelihood per sample, shape ({B}, {n}) (problems, "
                f"samples) for states of shape {tuple(states.shape)}, got {tuple(loglik.shape)}"
            )
        if loglik.device != self.device:
            raise ValueError(f"demo_log_likelihood returned a tensor on {loglik.device}, params are on {self.device}")
        if not loglik.is_floating_point():
            raise TypeError(f"demo_log_likelihood must return a floating-point tensor, got dtype {loglik.dtype}")
        loglik = loglik.to(self.compute_dtype)
        return torch.where(torch.isfinite(loglik), loglik, torch.full_like(loglik, float("-inf")))
