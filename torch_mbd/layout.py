"""The decision variables as one flat vector: parameters, group options and bounds.

Every sampling method works on ``[B, D]`` estimates and ``[B, n, D]`` samples: ``B`` problems
(the parameters' batch dimensions in rollout mode, 1 in closure mode), ``D`` coordinates (every
parameter without its batch dimensions, in parameter-group order). This module owns that
layout: the checks of the parameters themselves and of the per-group options (``bounds``,
``noise_scale``, ``fraction``), the per-coordinate vectors built from them (:class:`FlatLayout`),
and the moves between the parameters and the flat estimate.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from .checks import check_positive, check_real

AUTO_NOISE_GAIN = 4.0
"""``noise_scale="auto"`` of a network weight is ``AUTO_NOISE_GAIN / sqrt(fan_in)``."""
AUTO_FRACTION_DIM = 1000
"""``fraction="auto"`` of a network is ``min(1, AUTO_FRACTION_DIM / D)``: about this many coordinates per sample."""


def auto_noise_scale(shape: Sequence[int], gain: float = AUTO_NOISE_GAIN) -> float:
    """The automatic ``noise_scale`` of one network parameter tensor.

    A layer weight ``[out, in, *kernel]`` (2 or more dimensions) gets ``gain / sqrt(fan_in)``,
    ``fan_in = in * prod(kernel)``: a perturbation ``sigma * eps`` of it then moves each
    pre-activation by about ``sigma * gain * rms(input)``, whatever the layer's width, so a wide
    first layer (MNIST's 784 inputs) is not drowned in noise. Anything else (biases, norm
    scales) gets ``1.0``.

    Args:
        shape: the tensor's shape.
        gain: the multiplier of ``1 / sqrt(fan_in)``.

    Returns:
        The multiplier of ``sigma_i`` for this tensor.
    """
    if len(shape) < 2:
        return 1.0
    return gain / math.sqrt(max(math.prod(shape[1:]), 1))


def auto_fraction(dim: int, full_dim: int = AUTO_FRACTION_DIM) -> float:
    """The automatic ``fraction`` of coordinates perturbed per sample, for a network of ``dim`` parameters.

    ``min(1, full_dim / dim)``: every coordinate up to ``full_dim`` parameters, about ``full_dim``
    coordinates per sample above (a random-subspace step; the official MNIST script perturbs a
    hand-picked 20%).

    Args:
        dim: total number of optimized coordinates ``D``.
        full_dim: the dimension up to which every coordinate is perturbed.

    Returns:
        A fraction in ``(0, 1]``.
    """
    return min(1.0, full_dim / max(int(dim), 1))


class FlatLayout(NamedTuple):
    """The per-coordinate view of the parameter groups over the flat ``[D]`` layout.

    Attributes:
        segments: ``(offset, numel, shape)`` of each parameter (shape without batch dimensions).
        D: the number of coordinates.
        scale: ``[D]`` ``noise_scale`` per coordinate, or ``None`` where every one is 1.
        fraction: ``[D]`` ``fraction`` per coordinate, or ``None`` where every one is 1.
        lower: ``None`` (unbounded), one float for every coordinate, or a ``[D]`` tensor.
        upper: as ``lower``.
    """

    segments: list
    D: int
    scale: Tensor | None
    fraction: Tensor | None
    lower: float | Tensor | None
    upper: float | Tensor | None


# --------------------------------------------------------------------------- the parameters
def _element_offsets(p: Tensor) -> Tensor:
    """``[numel]`` storage offsets of every element of ``p`` (for the exact overlap test)."""
    offsets = torch.full((), p.storage_offset(), dtype=torch.int64)
    for size, stride in zip(p.shape, p.stride()):
        offsets = offsets.unsqueeze(-1) + torch.arange(size, dtype=torch.int64) * stride
    return offsets.reshape(-1)


def _storage_span(p: Tensor) -> tuple[int, int]:
    """``(first, last)`` storage offsets ``p``'s elements can reach."""
    start = p.storage_offset()
    return start, start + sum((size - 1) * stride for size, stride in zip(p.shape, p.stride()))


def check_params(params: list[Tensor]) -> None:
    """The decision variables checked: floating, one device and dtype, each element its own memory.

    Two parameters that are views of one tensor sharing elements, or one parameter whose elements
    share memory (an ``expand()``, a stride of 0), cannot be sampled independently: every write of
    one candidate would overwrite another. They are refused here rather than optimized wrongly.

    Raises:
        TypeError: a parameter that is not floating point.
        ValueError: parameters on several devices or of several dtypes, or sharing memory.
    """
    first = params[0]
    for k, p in enumerate(params):
        if not p.is_floating_point():
            raise TypeError(f"params must be floating-point tensors, got dtype {p.dtype}")
        if p.device != first.device:
            raise ValueError(f"params must all be on one device, got {first.device} and {p.device}")
        if p.dtype != first.dtype:
            raise ValueError(f"params must all have one dtype, got {first.dtype} and {p.dtype}")
        if any(stride == 0 and size > 1 for size, stride in zip(p.shape, p.stride())):
            raise ValueError(
                f"params[{k}] (shape {tuple(p.shape)}, strides {p.stride()}) repeats one element along a "
                "dimension of stride 0 (an expand()ed tensor): its entries cannot take different values; "
                "pass a tensor that owns its memory (.clone())"
            )
    if first.device.type == "meta":
        return  # no memory to share
    spans = [(p.untyped_storage().data_ptr(), *_storage_span(p)) for p in params]
    for j in range(len(params)):
        for k in range(j):
            (base_j, lo_j, hi_j), (base_k, lo_k, hi_k) = spans[j], spans[k]
            if params[j].numel() == 0 or params[k].numel() == 0:
                continue
            if base_j != base_k or hi_j < lo_k or hi_k < lo_j:
                continue
            if bool(torch.isin(_element_offsets(params[j]), _element_offsets(params[k])).any()):
                raise ValueError(
                    f"params[{k}] (shape {tuple(params[k].shape)}) and params[{j}] (shape {tuple(params[j].shape)}) "
                    "are views of one tensor that share elements: a candidate cannot set them independently; "
                    "pass the tensor once, or separate tensors"
                )


def event_shapes(params: list[Tensor], rollout_mode: bool) -> list[tuple]:
    """Each parameter's shape without its batch dimensions (rollout mode: ``[H, nu]``)."""
    return [tuple(p.shape[-2:]) if rollout_mode and p.dim() >= 2 else tuple(p.shape) for p in params]


def flat_dim(params: list[Tensor], batch_shape: tuple) -> int:
    """``D``: the number of optimized coordinates per problem (parameters without batch dimensions)."""
    nbatch = len(batch_shape)
    return sum(math.prod(p.shape[nbatch:]) for p in params)


def flat_estimate(params: list[Tensor], B: int) -> Tensor:
    """The parameters as one ``[B, D]`` tensor (a view for a single parameter)."""
    if len(params) == 1:
        return params[0].detach().reshape(B, -1)
    return torch.cat([p.detach().reshape(B, -1) for p in params], dim=-1)


def write_estimate(params: list[Tensor], layout: FlatLayout, new: Tensor) -> None:
    """Copy the flat estimate ``new [B, D]`` into the parameters, in place."""
    for p, (offset, numel, _) in zip(params, layout.segments):
        p.copy_(new[:, offset : offset + numel].reshape(p.shape))


def unflatten(params: list[Tensor], layout: FlatLayout, flat: Tensor) -> list[Tensor]:
    """``flat [B, D]`` as new tensors shaped like the parameters (with their batch dimensions)."""
    return [
        flat[:, offset : offset + numel].reshape(p.shape).clone() for p, (offset, numel, _) in zip(params, layout.segments)
    ]


# --------------------------------------------------------------------------- group options
def check_fraction(value) -> float | str:
    """``fraction``: a number in ``(0, 1]`` or ``"auto"``."""
    if isinstance(value, str) and value == "auto":
        return value
    try:
        frac = check_real("fraction", value)
    except ValueError:
        raise ValueError(f"Invalid fraction: expected a number in (0, 1] or 'auto', got {value!r}") from None
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"Invalid fraction: expected a number in (0, 1] or 'auto', got {value!r}")
    return frac


def check_option_tensor(name: str, value: Tensor, shapes: list[tuple], params: list[Tensor]) -> None:
    """A per-coordinate group option (a bound, ``noise_scale``): floating, on the params' device and
    dtype, broadcastable to each parameter's shape without its batch dimensions (``shapes``)."""
    if not value.is_floating_point():
        raise ValueError(f"Invalid {name}: expected a floating-point tensor, got dtype {value.dtype}")
    for p, shape in zip(params, shapes):
        if value.device != p.device:
            raise ValueError(f"Invalid {name}: it is on {value.device}, params on {p.device}")
        if value.dtype != p.dtype:
            raise ValueError(f"Invalid {name}: it has dtype {value.dtype}, params {p.dtype}")
        try:
            fits = torch.broadcast_shapes(tuple(value.shape), shape) == shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"Invalid {name}: shape {tuple(value.shape)} does not broadcast to the parameter's shape {shape}"
                " (without its batch dimensions)"
            )


def check_noise_scale(value, shapes: list[tuple], params: list[Tensor]) -> float | str | Tensor:
    """``noise_scale``: ``"auto"``, a number ``>= 0``, or a tensor of them (per coordinate)."""
    if isinstance(value, str) and value == "auto":
        return value
    if isinstance(value, Tensor) and value.dim() > 0:
        check_option_tensor("noise_scale", value, shapes, params)
        if not bool((torch.isfinite(value) & (value >= 0)).all()):
            raise ValueError("Invalid noise_scale: every entry of the tensor must be a finite number >= 0")
        return value
    return check_positive("noise_scale", value, allow_zero=True)


def _check_bound(name: str, bound, shapes: list[tuple], params: list[Tensor]):
    """One side of ``bounds``: ``None``, a number (numpy scalars too) or a tensor; returns it checked."""
    side = name.split()[-1]
    if bound is None:
        return None
    if not isinstance(bound, Tensor):
        try:
            value = check_real(name, bound, finite=False)
        except ValueError:
            raise ValueError(f"Invalid {name}: expected a number, a tensor or None, got {bound!r}") from None
        if (side == "lower" and value == math.inf) or (side == "upper" and value == -math.inf):
            raise ValueError(f"Invalid {name}: {value} leaves no value a candidate can take")
        return value
    check_option_tensor(name, bound, shapes, params)
    if bool(torch.isnan(bound).any()):
        raise ValueError(f"Invalid {name}: it holds NaN; use -inf / inf for an unbounded coordinate")
    if side == "lower" and bool((bound == math.inf).any()):
        raise ValueError(f"Invalid {name}: it holds +inf, which leaves no value a candidate can take")
    if side == "upper" and bool((bound == -math.inf).any()):
        raise ValueError(f"Invalid {name}: it holds -inf, which leaves no value a candidate can take")
    return bound


def check_bounds(bounds, shapes: list[tuple], params: list[Tensor]):
    """``bounds`` checked against ``params``: ``None`` or ``(lower, upper)``.

    Each side is ``None`` (unbounded), a number or a tensor broadcastable to each parameter's shape
    without its batch dimensions (``shapes``); ``-inf`` (lower) and ``inf`` (upper) leave a coordinate
    unbounded on that side. NaN, ``lower = inf``, ``upper = -inf``, ``lower > upper``, other shapes,
    dtypes or devices are rejected.
    """
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"Invalid bounds: expected None or a (lower, upper) pair, got {bounds!r}")
    lower = _check_bound("bounds lower", bounds[0], shapes, params)
    upper = _check_bound("bounds upper", bounds[1], shapes, params)
    if lower is not None and upper is not None:
        if bool(torch.any(torch.as_tensor(lower) > torch.as_tensor(upper))):
            raise ValueError("Invalid bounds: lower must be <= upper everywhere")
    return (lower, upper)


def group_options_key(param_groups: list[dict]) -> tuple:
    """The group options a layout is built from (tensors by identity), to see when they change."""

    def key(value):
        if isinstance(value, Tensor):
            return ("tensor", id(value))
        if isinstance(value, (tuple, list)):
            return tuple(key(v) for v in value)
        return value

    return tuple(key((g["noise_scale"], g["fraction"], g["bounds"])) for g in param_groups)


def build_layout(
    param_groups: list[dict], batch_shape: tuple, rollout_mode: bool, use_fraction: bool = True
) -> FlatLayout:
    """The :class:`FlatLayout` of checked param groups.

    ``"auto"`` options follow the network rules (:func:`auto_noise_scale`, :func:`auto_fraction`)
    for ``nn.Parameter`` tensors in closure mode and are 1 otherwise (the paper's behaviour).

    Args:
        param_groups: the optimizer's groups (``params``, ``noise_scale``, ``fraction``, ``bounds``).
        batch_shape: the parameters' batch dimensions (``()`` in closure mode).
        rollout_mode: whether the objective is a rollout.
        use_fraction: ``False`` for a method that perturbs every coordinate.
    """
    params = [p for g in param_groups for p in g["params"]]
    first = params[0]
    kw = dict(dtype=first.dtype, device=first.device)
    segments, scales, fracs, lowers, uppers = [], [], [], [], []
    nbatch = len(batch_shape)
    total = flat_dim(params, batch_shape)
    offset = 0
    for group in param_groups:
        for p in group["params"]:
            shape = tuple(p.shape[nbatch:])
            numel = math.prod(shape)
            segments.append((offset, numel, shape))
            offset += numel
            network = not rollout_mode and isinstance(p, torch.nn.Parameter)
            scale, frac = group["noise_scale"], group["fraction"]
            if isinstance(scale, str):  # "auto"
                scale = auto_noise_scale(shape) if network else 1.0
            if frac == "auto":
                frac = auto_fraction(total) if network else 1.0
            if not use_fraction:
                frac = 1.0
            if isinstance(scale, Tensor):  # per coordinate, checked to broadcast to the shape
                scales.append(scale.to(**kw).expand(shape).reshape(-1))
            else:
                scales.append(torch.full((numel,), scale, **kw))
            fracs.append(torch.full((numel,), frac, **kw))
            lo, hi = group["bounds"] if group["bounds"] is not None else (None, None)
            lo = -math.inf if lo is None else lo
            hi = math.inf if hi is None else hi
            lowers.append(torch.as_tensor(lo, **kw).expand(shape).reshape(-1))
            uppers.append(torch.as_tensor(hi, **kw).expand(shape).reshape(-1))
    scale, frac = torch.cat(scales), torch.cat(fracs)
    lower, upper = torch.cat(lowers), torch.cat(uppers)
    bounded = bool(torch.isfinite(lower).any() or torch.isfinite(upper).any())
    if not bounded:
        lower_bound = upper_bound = None
    elif bool((lower == lower[0]).all() and (upper == upper[0]).all()):
        lower_bound, upper_bound = float(lower[0]), float(upper[0])  # one clamp with scalars
    else:
        lower_bound, upper_bound = lower, upper
    return FlatLayout(
        segments=segments,
        D=offset,
        scale=None if bool((scale == 1).all()) else scale,
        fraction=None if bool((frac == 1).all()) else frac,
        lower=lower_bound,
        upper=upper_bound,
    )
