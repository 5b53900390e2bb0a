"""Argument checks shared by the public API: one wording for every bad input.

Every check takes the argument's ``name`` so that the error says which argument is wrong and
what was expected. Numbers may be Python numbers, numpy scalars or 0-dim tensors (``bool`` is
never a number here), booleans Python, NumPy (``np.True_``) or 0-dim bool tensors; what comes back
is a plain ``bool`` / ``int`` / ``float`` / ``torch.device``.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

SEED_RANGE = (0, 2**64 - 1)
"""Seeds ``torch.Generator.manual_seed`` takes without wrapping: ``0 <= seed <= 2**64 - 1``."""


def _is_bool(value) -> bool:
    """Whether ``value`` is a boolean: Python, NumPy (``numpy.bool``, ``bool_`` before NumPy 2) or a bool tensor."""
    if isinstance(value, bool):
        return True
    if isinstance(value, Tensor):
        return value.dtype == torch.bool
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_")  # without importing numpy here


def _scalar(value):
    """A 0-dim tensor or a numpy scalar as a Python number; anything else unchanged."""
    if isinstance(value, Tensor):
        if value.dim() != 0 or value.is_complex():
            return value
        return value.item()
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalar / 0-d array
        return value.item()
    return value


def check_real(name: str, value, *, finite: bool = True) -> float:
    """``value`` as a float: a real number (int, float, numpy scalar, 0-dim tensor), not bool.

    Args:
        name: the argument's name, for the error message.
        value: what the user gave.
        finite: reject NaN and infinities (NaN is always rejected).

    Raises:
        ValueError: not a real number, NaN, or (with ``finite``) infinite.
    """
    value = _scalar(value)
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ValueError(f"Invalid {name}: expected a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"Invalid {name}: expected a finite number, got {value!r}")
    return value


def check_bool(name: str, value) -> bool:
    """``value`` as a Python bool: ``True`` / ``False``, a NumPy bool (``np.True_``, a 0-d array) or a 0-dim bool tensor.

    Numbers are refused, ``0`` and ``1`` included: a flag given a number is more often a
    misplaced argument than a boolean.

    Raises:
        ValueError: anything else, naming ``name``.
    """
    raw = _scalar(value)
    if isinstance(raw, bool):
        return raw
    raise ValueError(f"Invalid {name}: expected True or False, got {value!r} ({type(value).__name__})")


def check_positive(name: str, value, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float ``> 0`` (``>= 0`` with ``allow_zero``)."""
    value = check_real(name, value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"Invalid {name}: expected {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int: a Python or numpy integer (or an integer 0-dim tensor), not bool or float.

    Raises:
        ValueError: not an integer, or outside ``[minimum, maximum]``.
    """
    raw = _scalar(value)
    if _is_bool(raw) or not isinstance(raw, numbers.Integral):
        raise ValueError(f"Invalid {name}: expected an integer, got {value!r} ({type(value).__name__})")
    raw = int(raw)
    if (minimum is not None and raw < minimum) or (maximum is not None and raw > maximum):
        low = "-inf" if minimum is None else minimum
        high = "inf" if maximum is None else maximum
        raise ValueError(f"Invalid {name}: expected an integer in [{low}, {high}], got {raw!r}")
    return raw


def check_seed(seed, name: str = "seed") -> int | None:
    """``seed`` as an int in `SEED_RANGE`, or ``None`` (a fresh random seed)."""
    if seed is None:
        return None
    return check_int(name, seed, minimum=SEED_RANGE[0], maximum=SEED_RANGE[1])


def check_device(device, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` this process can compute on.

    Raises:
        ValueError: not a device (or a device string), the ``meta`` device (it holds no data), a
            CUDA / MPS device this machine does not have, or another device torch cannot allocate on.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"Invalid {name}: expected a torch.device or a string such as 'cpu' or 'cuda', got {device!r}") from None
    if dev.type == "meta":
        raise ValueError(f"Invalid {name}: the meta device holds no data; use 'cpu' or 'cuda'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Invalid {name}: {str(dev)!r} was asked for but torch.cuda.is_available() is False")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"Invalid {name}: {str(dev)!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"Invalid {name}: 'mps' was asked for but torch.backends.mps.is_available() is False")
    if dev.type not in ("cpu", "cuda", "mps"):  # e.g. 'xpu' on a torch built without it
        try:
            torch.empty(0, device=dev)
        except Exception as err:  # RuntimeError, AssertionError, ImportError, ... depending on the device type
            first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]  # torch's first sentence
            raise ValueError(f"Invalid {name}: torch cannot allocate tensors on {str(dev)!r} ({first})") from None
    return dev


def check_tensor(name: str, value, *, kind: str = "real") -> Tensor:
    """``value`` as a tensor: a ``torch.Tensor`` or a NumPy array (converted, sharing memory).

    Python lists are refused (wrap them in ``torch.tensor(...)``): a nested list of mixed
    types would otherwise be guessed at. The result keeps its dtype and device; the caller casts.

    Args:
        name: the argument's name, for the error message.
        value: what the user gave.
        kind: ``"real"`` (integer or floating-point entries; bool and complex are refused) or
            ``"bool"`` (a boolean mask).

    Raises:
        TypeError: not a tensor or a NumPy array, an array NumPy cannot give torch (strings,
            objects), or entries of the wrong kind.
        ValueError: a tensor on the ``meta`` device (it holds no data).
    """
    if not isinstance(value, Tensor):
        if type(value).__module__ != "numpy" or not hasattr(value, "dtype"):
            hint = " (wrap it in torch.tensor(...))" if isinstance(value, (list, tuple)) else ""
            raise TypeError(f"Invalid {name}: expected a tensor or a NumPy array, got {type(value).__name__}{hint}")
        try:
            value = torch.as_tensor(value)
        except (TypeError, RuntimeError) as error:
            raise TypeError(
                f"Invalid {name}: a NumPy array of dtype {value.dtype} cannot become a tensor ({error})"
            ) from None
    if value.device.type == "meta":
        raise ValueError(f"Invalid {name}: a tensor on the meta device holds no data")
    if kind == "bool":
        if value.dtype != torch.bool:
            raise TypeError(f"Invalid {name}: expected a boolean tensor, got dtype {value.dtype}")
    elif kind == "real":
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(
                f"Invalid {name}: expected real (integer or floating-point) entries, got dtype {value.dtype}"
            )
    else:
        raise ValueError(f"check_tensor: kind must be 'real' or 'bool', got {kind!r}")
    return value


def as_feasible(feasible, name: str = "rollout feasible") -> Tensor | None:
    """A rollout's feasibility mask as a boolean tensor, by one rule: ``[...] -> [...]`` bool.

    A boolean tensor is returned as it is (``None``, "every sample feasible", too). A real tensor
    is read as the paper's indicator ``p_g`` in ``{0, 1}``: ``1`` is feasible, ``0`` and NaN are
    infeasible (a model that cannot tell, or computed NaN, gets no weight). Any other value
    (``0.5``, ``2``, ``-1``, infinity) is refused: a probability or a count is not a constraint,
    and reading it as "nonzero = feasible" would silently keep samples the model meant to drop.

    Raises:
        TypeError: not a tensor, or a complex one.
        ValueError: a real entry other than 0, 1 or NaN (the message shows a few).
    """
    if feasible is None:
        return None
    if not isinstance(feasible, Tensor):
        raise TypeError(f"{name} must be a boolean tensor (or None), got {type(feasible).__name__}")
    if feasible.dtype == torch.bool:
        return feasible
    if feasible.is_complex():
        raise TypeError(f"{name} must be a boolean tensor, got dtype {feasible.dtype}")
    one = feasible == 1
    other = ~(one | (feasible == 0) | feasible.isnan())
    if bool(other.any()):
        shown = ", ".join(f"{v:g}" for v in feasible[other].unique()[:4].double().tolist())
        raise ValueError(
            f"{name} must be boolean, or 0/1 (NaN counts as infeasible), got dtype {feasible.dtype} with value(s) {shown}"
        )
    return one
