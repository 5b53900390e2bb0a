"""Checks every simulator backend runs on its inputs before anything reaches native code.

A backend (`CpuRollout`, `WarpRollout`,
`MjxRollout`) is called with ``(qpos0 [nq], qvel0 [nv], ctrl [N, H, nu])``.
MuJoCo's C rollout crashes the process on an empty batch, so the checks here run first:
malformed inputs raise an error naming the argument, and an empty batch (``N = 0``) never
reaches the simulator (`empty_outputs` answers it).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__}"


def check_backend_inputs(qpos0, qvel0, ctrl, nq: int, nv: int, nu: int) -> tuple[int, int]:
    """Check a backend call's inputs; returns ``(N, H)`` of ``ctrl``.

    Args:
        qpos0: ``[nq]`` real tensor, the initial positions.
        qvel0: ``[nv]`` real tensor, the initial velocities.
        ctrl: ``[N, H, nu]`` real tensor of actuator controls (``H >= 1``; ``N = 0`` is allowed).

    Raises:
        TypeError: an argument that is not a tensor, or not of a real floating dtype.
        ValueError: a wrong shape, ``H = 0``, or non-finite ``qpos0`` / ``qvel0``.
    """
    for name, value, shape in (("qpos0", qpos0, f"[{nq}] (nq)"), ("qvel0", qvel0, f"[{nv}] (nv)"),
                               ("ctrl", ctrl, f"[N, H, {nu}] ([N, H, nu])")):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {_describe(value)}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must have a real floating dtype, got {value.dtype}")
    if qpos0.shape != (nq,):
        raise ValueError(f"qpos0 must have shape [{nq}] (nq), got {tuple(qpos0.shape)}")
    if qvel0.shape != (nv,):
        raise ValueError(f"qvel0 must have shape [{nv}] (nv), got {tuple(qvel0.shape)}")
    if ctrl.dim() != 3 or ctrl.shape[-1] != nu:
        raise ValueError(f"ctrl must have shape [N, H, {nu}] ([N, H, nu]), got {tuple(ctrl.shape)}")
    if ctrl.shape[1] < 1:
        raise ValueError(f"ctrl must have at least one control step (H >= 1), got shape {tuple(ctrl.shape)}")
    if not (bool(torch.isfinite(qpos0).all()) and bool(torch.isfinite(qvel0).all())):
        raise ValueError("qpos0 and qvel0 must be finite")
    return ctrl.shape[0], ctrl.shape[1]


def empty_outputs(
    horizon: int, sizes: tuple[int, int, int], dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """A backend's answer to an empty batch: ``(qpos [0, H, nq], qvel [0, H, nv], sensordata [0, H, ns])``."""
    return tuple(torch.empty(0, horizon, size, dtype=dtype, device=device) for size in sizes)
