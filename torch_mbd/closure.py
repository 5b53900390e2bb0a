"""``batched_closure``: score many candidate parameter sets of an ``nn.Module`` in one call.

[`MBDOptimizer.step`][torch_mbd.MBDOptimizer.step] hands its closure a list of candidate
tensors, one ``[n, *p.shape]`` per optimized parameter, and wants ``[n]`` losses back. For a
network this is ``torch.func.functional_call`` (run the module with other parameters) under
``torch.vmap`` (over the candidate dimension): no Python loop over candidates, and for linear
and convolutional layers vmap turns the per-candidate products into batched matrix products.
``chunk_size`` bounds memory by evaluating the candidates a slice at a time.

Candidates are matched to parameters by identity, not by position: while an
[`MBDOptimizer`][torch_mbd.MBDOptimizer] (or a baseline) evaluates a closure it names its parameters,
in the candidates' order, through [`candidate_params`][torch_mbd.closure.candidate_params], and every ``batched_closure`` called
inside reads them, also through a wrapper (a ``lambda`` that logs, a ``functools.partial``). So an
optimizer whose parameters are listed in another order than the model's (or than ``params=``)
still evaluates every candidate on the right layer.

Tied parameters (one tensor registered under two names, ``m[2].weight = m[0].weight``) and
modules used twice get one candidate value for every use. Parameters that are different tensors
sharing memory are refused (a candidate for one would leave the other unchanged).

``torch.vmap`` cannot batch everything a forward pass may do: random numbers (Dropout in
training mode), ``.item()``, Python ``if`` on a tensor, boolean-mask indexing, the fused
recurrent kernels of ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``. Each of these is reported as one
``RuntimeError`` that names the module (or ``loss_fn``) and says what to do; ``vectorize=False``
evaluates the candidates one at a time, for any module.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from .checks import check_bool, check_int

RANDOMNESS = ("error", "same", "different")
"""``randomness=`` values of [`batched_closure`][torch_mbd.closure.batched_closure], as ``torch.vmap`` takes them."""

_CALLER_PARAMS: contextvars.ContextVar[tuple[Tensor, ...] | None] = contextvars.ContextVar(
    "torch_mbd_candidate_params", default=None
)


@contextlib.contextmanager
def candidate_params(params: Sequence[Tensor]) -> Iterator[None]:
    """Name the tensors the candidates stand for while a closure runs (optimizers do this).

    Inside the ``with`` block every [`batched_closure`][torch_mbd.closure.batched_closure] that is called, directly or through
    any wrapper that passes the candidate list on in its order, matches ``candidates[k]`` to
    ``params[k]`` by identity. The binding is per thread (and per asyncio task): a
    ``contextvars.ContextVar``.

    Args:
        params: the optimizer's tensors, in the order of the candidates it hands the closure.
    """
    token = _CALLER_PARAMS.set(tuple(params))
    try:
        yield
    finally:
        _CALLER_PARAMS.reset(token)


def _optimized_names(named: list[tuple[str, Tensor]], params, what: str = "params") -> list[str]:
    """Names (in ``named``, the model's ``named_parameters()``) of ``params``, in the order the optimizer sends them."""
    by_id = {id(p): name for name, p in named}
    if params is None:
        return list(by_id.values())
    if isinstance(params, torch.optim.Optimizer):
        params = [p for group in params.param_groups for p in group["params"]]
    elif isinstance(params, Tensor):
        raise TypeError(f"{what} must be an iterable of tensors or an optimizer, got a single tensor")
    names = []
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{what} must hold tensors, got {type(p).__name__}")
        if id(p) not in by_id:
            raise ValueError(f"{what} holds a tensor of shape {tuple(p.shape)} that is not a parameter of model")
        names.append(by_id[id(p)])
    if len(set(names)) != len(names):
        raise ValueError(f"{what} holds the same parameter twice")
    return names


def _memory_span(t: Tensor) -> tuple[int, int]:
    """``(first byte, one past the last byte)`` of the elements ``t`` can reach in its storage."""
    extent = 1 + sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride()))
    first = t.storage_offset() * t.element_size()
    return first, first + extent * t.element_size()


def _check_no_shared_memory(named: list[tuple[str, Tensor]], names: list[str]) -> None:
    """Refuse an optimized parameter (``names``) that shares memory with another tensor of ``named``
    (the model's named parameters and buffers).

    Tied tensors (the same tensor under two names) are fine: they are one tensor and get one
    candidate. Different tensors whose memory overlaps (``nn.Parameter(w[:2])`` next to ``w``)
    are not: a candidate for one would leave the other's values as they were. The check is
    conservative: two strided views that interleave without overlapping are refused too.
    """
    tensors: dict[int, tuple[str, Tensor]] = {}
    for name, t in named:
        if t.numel() and t.layout == torch.strided and t.device.type != "meta":  # dense tensors with memory
            tensors.setdefault(id(t), (name, t))
    optimized = set(names)
    by_storage: dict[int, list[tuple[str, Tensor]]] = {}  # only tensors of one storage can overlap
    for name, t in tensors.values():
        base = t.data_ptr() - t.storage_offset() * t.element_size()  # the storage's address, cheaper than untyped_storage()
        by_storage.setdefault(base, []).append((name, t))
    for shared in by_storage.values():
        if len(shared) == 1:
            continue
        spans = sorted(((name, *_memory_span(t)) for name, t in shared), key=lambda span: span[1])
        for i, (name_a, _, high_a) in enumerate(spans):
            for name_b, low_b, _ in spans[i + 1 :]:
                if low_b >= high_a:
                    break
                if name_a not in optimized and name_b not in optimized:
                    continue
                raise ValueError(
                    f"model's tensors {name_a!r} and {name_b!r} are different tensors sharing memory (views of "
                    "one tensor): a candidate for one would leave the other unchanged. Tie them (assign one "
                    "tensor to both attributes) or give each its own memory (.clone())"
                )


def _check_inputs(params: dict[str, Tensor], names: list[str], inputs: tuple) -> None:
    """Refuse inputs the forward pass would choke on deep inside torch: NumPy arrays, and
    floating-point tensors of another dtype or device than the optimized parameters (``names`` of ``params``)."""
    floating = {params[name].dtype for name in names if params[name].is_floating_point()}
    devices = {params[name].device for name in names}
    for k, value in enumerate(inputs):
        if type(value).__module__ == "numpy" and hasattr(value, "dtype"):
            raise TypeError(f"inputs[{k}] is a NumPy array: convert it with torch.as_tensor(...) on the model's device")
        if not isinstance(value, Tensor):
            continue  # other arguments of the forward pass (flags, sizes) are passed as they are
        if len(devices) == 1 and value.device not in devices:
            device = next(iter(devices))
            raise ValueError(f"inputs[{k}] is on {value.device}, the model's parameters on {device}: move it")
        if len(floating) == 1 and (value.is_floating_point() or value.is_complex()) and value.dtype not in floating:
            dtype = next(iter(floating))
            raise ValueError(
                f"inputs[{k}] has dtype {value.dtype}, the model's parameters {dtype}: convert it "
                f"(inputs[{k}].to({dtype})) or the model (model.to({value.dtype}))"
            )


def _check_integer_inputs(model: nn.Module, model_inputs: tuple) -> None:
    """Refuse integer (or bool) model inputs that the forward pass cannot combine with float weights.

    Integer inputs are right for some modules (``nn.Embedding`` takes indices) and wrong for
    most (``nn.Linear`` wants floats), and only the forward pass knows which. So when a model
    input is an integer tensor, the module runs once on the inputs, with its own parameters and
    a copy of its buffers (nothing is modified; a Dropout in training mode draws from the global
    RNG), and a dtype error there is reported now rather than at the first ``step``.
    """
    integer = [
        k for k, v in enumerate(model_inputs)
        if isinstance(v, Tensor) and not (v.is_floating_point() or v.is_complex())
    ]
    if not integer or not any(p.is_floating_point() for p in model.parameters()):
        return
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    try:
        with torch.no_grad():
            torch.func.functional_call(model, buffers, model_inputs, strict=False)
    except (RuntimeError, TypeError) as error:
        message = str(error)
        if not re.search(r"dtype|scalar type|type \(|Long|Int|Byte|Bool", message):  # not a dtype mismatch
            return  # left for the call to report
        k = integer[0]
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        raise TypeError(
            f"inputs[{k}] is an integer tensor ({model_inputs[k].dtype}) and the model computes in {dtype}: "
            f"its forward pass fails on it ({message.splitlines()[0]}). Convert it: inputs[{k}].to({dtype})"
        ) from error


# (what torch.vmap says, what the code does, what to do about it)
_VMAP_LIMITS = (
    ("random operation", "draws random numbers (Dropout in training mode, torch.rand*, torch.bernoulli, ...)",
     "turn dropout off with model.eval(), or pass randomness='same' (one draw for all candidates) or "
     "randomness='different' to batched_closure"),
    (".item()", "calls .item() (or float(), int() of a tensor)",
     "keep the loss a tensor (log it outside the closure), or pass vectorize=False"),
    ("data-dependent control flow", "branches on a tensor's value (a Python if / while on a tensor)",
     "use tensor operations such as torch.where, or pass vectorize=False"),
    ("dynamic shape", "uses an operation whose result's shape depends on the values (boolean-mask indexing, "
     "nonzero, unique)", "use torch.where or masked sums, or pass vectorize=False"),
    ("doesn't have storage", "reads a tensor's memory directly (.numpy(), .tolist(), .data_ptr())",
     "stay with torch operations, or pass vectorize=False"),
)
_RECURRENT = ("aten::lstm", "aten::gru", "aten::rnn_")


def _explain(error: RuntimeError, place: str) -> str | None:
    """The message for a ``torch.vmap`` limit hit in ``place`` (``"model.1 (Dropout)"``), or ``None``."""
    message = str(error)
    torch_says = message.splitlines()[0] if message else type(error).__name__
    for pattern, does, todo in _VMAP_LIMITS:
        if pattern in message:
            return f"batched_closure: {place} {does}, which torch.vmap cannot batch: {todo} (torch: {torch_says})"
    if "Batching rule not implemented for " in message:
        op = message.split("Batching rule not implemented for ", 1)[1].split(".")[0].split()[0]
        if op.startswith(_RECURRENT):
            does = f"runs a recurrent layer's fused kernel ({op}: nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell)"
        else:
            does = f"calls {op}"
        return (
            f"batched_closure: {place} {does}, which torch.vmap cannot batch: pass vectorize=False (one "
            f"candidate at a time) or write a closure of your own for this model (torch: {torch_says})"
        )
    return None


def _failing_place(model: nn.Module, error: BaseException, stage: str) -> str:
    """``"loss_fn"``, or the innermost module of ``model`` whose code raised ``error`` (from its traceback)."""
    if stage == "loss_fn":
        return "loss_fn"
    modules = {id(m): name for name, m in model.named_modules()}
    place = f"the model ({type(model).__name__})"
    tb = error.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if owner is not None and id(owner) in modules:
            name = modules[id(owner)]
            mode = " in training mode" if isinstance(owner, nn.modules.dropout._DropoutNd) and owner.training else ""
            place = f"model.{name} ({type(owner).__name__}{mode})" if name else f"the model ({type(owner).__name__})"
        tb = tb.tb_next
    return place


def batched_closure(
    model: nn.Module,
    loss_fn: Callable[..., Tensor],
    *inputs,
    chunk_size: int | None = None,
    params: Iterable[Tensor] | torch.optim.Optimizer | None = None,
    randomness: str = "error",
    vectorize: bool = True,
) -> Callable[[Sequence[Tensor]], Tensor]:
    """Build the closure [`MBDOptimizer.step`][torch_mbd.MBDOptimizer.step] takes, for a module.

    The closure maps candidates (one ``[n, *p.shape]`` tensor per optimized parameter, in
    the optimizer's parameter-group order) to losses ``[n]``:
    ``loss_j = loss_fn(model_j(*inputs[:-1]), inputs[-1])`` where ``model_j`` is ``model`` with
    candidate ``j``'s parameters. Parameters the optimizer does not hold keep their values.

    * The module is never modified: its parameters and buffers are untouched. Buffers the
      forward pass updates in place (BatchNorm running statistics in training mode) are
      updated in a throw-away copy per candidate. To refresh them for the final parameters,
      run ``model(x)`` once in training mode after the step.
    * ``model.training`` is respected as it is (e.g. BatchNorm uses batch statistics in training
      mode). Random operations (Dropout in training mode) are refused unless ``randomness`` says
      how to draw them.
    * Tied parameters (``m[2].weight = m[0].weight``) and modules used twice get the candidate
      of their one tensor at every use, as loading the candidate into the model would.
    * Called by an optimizer of this package (directly or through a wrapper such as
      ``lambda c: log(closure(c))``), the candidates are matched to the optimizer's own
      parameters by identity (see [`candidate_params`][torch_mbd.closure.candidate_params]); ``params`` is for other callers.

    Args:
        model: the network.
        loss_fn: ``loss_fn(output, target) -> 0-dim loss`` for one candidate, e.g.
            ``torch.nn.functional.cross_entropy``. It must reduce to a scalar.
        *inputs: the model's inputs followed by the target (at least one tensor: with a single
            one the loss is ``loss_fn(model(inputs[0]))``, e.g. an unsupervised objective).
            They are shared by all candidates (a minibatch), not batched per candidate.
        chunk_size: evaluate at most this many candidates at once (``None``: all at once).
            Memory grows linearly with it; the result does not depend on it.
        params: the optimizer's parameters in its order, or the optimizer itself. ``None``
            means ``model.parameters()`` in order, which is right for
            ``MBDOptimizer(model.parameters(), ...)``. When the closure is called by an
            optimizer of this package, the optimizer's own order wins.
        randomness: what random operations in the forward pass or the loss do under
            ``torch.vmap``: ``"error"`` (default: refused, with a message naming the module),
            ``"same"`` (one draw from the global RNG shared by all candidates: common random
            numbers, so candidates are compared under the same dropout mask) or ``"different"``
            (an independent draw per candidate).
        vectorize: ``True`` (default) evaluates all candidates in one ``torch.vmap`` call;
            ``False`` evaluates them one at a time (a Python loop over ``n``, slower), for modules
            vmap cannot batch (``nn.LSTM``, ``.item()``, data-dependent ``if``). Random
            operations then draw from the global RNG per candidate.

    Returns:
        ``closure(candidates: list[Tensor]) -> Tensor [n]``, with a method
        ``closure.bind_params(params)`` that fixes the tensors the candidates stand for (the
        optimizer's tensors, in the candidates' order) for later calls outside
        [`candidate_params`][torch_mbd.closure.candidate_params]; it raises ``ValueError`` if one of them is not a parameter of
        ``model``.

    Raises:
        TypeError: ``model`` is not a module, ``loss_fn`` not callable, ``params`` not tensors,
            an input is a NumPy array, or an integer model input that the forward pass cannot
            take (an ``nn.Linear`` given ``torch.long`` features; checked by running the model once
            when a model input is an integer tensor).
        ValueError: bad ``chunk_size``, ``randomness`` or ``vectorize``; ``params`` not parameters
            of ``model``; an optimized parameter sharing memory with another tensor of the model;
            a floating-point input of another dtype (or an input on another device) than the
            parameters. At call time: candidates of the wrong number, shape, dtype or device, or
            an optimizer whose parameters are not this model's (pass ``params=``).
        RuntimeError: at call time, an operation ``torch.vmap`` cannot batch (random numbers,
            ``.item()``, data-dependent control flow, boolean-mask indexing, recurrent kernels),
            naming the module or ``loss_fn`` and what to do.

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> x, y = torch.randn(8, 3), torch.randn(8, 1)
        >>> closure = batched_closure(model, torch.nn.functional.mse_loss, x, y)
        >>> closure([torch.zeros(5, 1, 3), torch.zeros(5, 1)]).shape
        torch.Size([5])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (output, target) -> loss, got {type(loss_fn).__name__}")
    if not inputs:
        raise ValueError("inputs: expected at least one tensor (the model's input, then the target)")
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    if not isinstance(randomness, str) or randomness not in RANDOMNESS:
        raise ValueError(f"Invalid randomness: expected one of {RANDOMNESS}, got {randomness!r}")
    vectorize = check_bool("vectorize", vectorize)
    named = list(model.named_parameters())
    named_buffers = list(model.named_buffers())
    names = _optimized_names(named, params)
    if not names:
        raise ValueError("params: the model has no parameters to optimize")
    _check_no_shared_memory(named + named_buffers, names)
    _check_inputs(dict(named), names, inputs)
    model_inputs, target = (inputs[:-1], inputs[-1]) if len(inputs) > 1 else (inputs, None)
    _check_integer_inputs(model, model_inputs)
    by_id = {id(p): name for name, p in named}
    meta = {name: (tuple(p.shape), p.dtype, p.device) for name, p in named}
    parameter_ids = set(by_id)
    # Buffers that are one of the parameters (tied) follow the candidate, they get no copy of their own.
    buffer_names = [name for name, b in named_buffers if id(b) not in parameter_ids]
    own = {"explicit": params is not None}  # whether names came from the caller (params= or bind_params)

    def bind_params(optimized: Sequence[Tensor]) -> None:
        """Match the candidates of later calls to ``optimized`` (tensors of ``model``, in order) by identity."""
        names[:] = _optimized_names(list(model.named_parameters()), list(optimized), "the optimizer's params")
        own["explicit"] = True

    def names_for(count: int) -> list[str]:
        """The parameter names of this call's candidates: the calling optimizer's, else ``names``."""
        caller = _CALLER_PARAMS.get()
        if caller is None:
            return names
        if len(caller) == count and all(id(p) in by_id for p in caller):
            return [by_id[id(p)] for p in caller]
        if own["explicit"]:  # the closure scores part of what the optimizer holds, as params= says
            return names
        stranger = next((p for p in caller if id(p) not in by_id), None)
        what = (
            f"a tensor of shape {tuple(stranger.shape)} that is not a parameter of model" if stranger is not None
            else f"{len(caller)} tensors for {count} candidate tensors"
        )
        raise ValueError(
            f"the optimizer evaluating this closure holds {what}: pass params= (the tensors the "
            "candidates stand for, in order) to batched_closure"
        )

    def closure(candidates: Sequence[Tensor]) -> Tensor:
        call_names = names_for(len(candidates))
        if len(candidates) != len(call_names):
            raise ValueError(f"closure got {len(candidates)} candidate tensors, the model has {len(call_names)} optimized parameters")
        for k, c in enumerate(candidates):
            if not isinstance(c, Tensor):
                raise TypeError(f"candidates[{k}] must be a tensor [n, *p.shape], got {type(c).__name__}")
        n = candidates[0].shape[0] if candidates[0].dim() > 0 else 0
        for name, c in zip(call_names, candidates):
            shape, dtype, device = meta[name]
            if tuple(c.shape) != (n, *shape):
                raise ValueError(f"candidates for {name!r} must have shape {(n, *shape)}, got {tuple(c.shape)}")
            if c.dtype != dtype or c.device != device:
                raise ValueError(
                    f"candidates for {name!r} must be {dtype} on {device} like the parameter, "
                    f"got {c.dtype} on {c.device}"
                )
        if n == 0:  # vmap cannot map over an empty dimension
            return torch.empty(0, dtype=meta[call_names[0]][1], device=meta[call_names[0]][2])
        stage = {"now": "forward"}

        def one(candidate: dict, buffers: dict) -> Tensor:
            stage["now"] = "forward"
            output = torch.func.functional_call(model, (candidate, buffers), model_inputs, strict=False)
            stage["now"] = "loss_fn"
            loss = loss_fn(output) if target is None else loss_fn(output, target)
            if not isinstance(loss, Tensor) or loss.dim() != 0:
                shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
                raise ValueError(f"loss_fn must return a 0-dim loss per candidate, got {shape}")
            return loss

        buffers = dict(model.named_buffers())
        buffers = {name: buffers[name] for name in buffer_names}
        candidate = dict(zip(call_names, candidates))
        try:
            with torch.no_grad():
                if not vectorize:  # one candidate at a time, each with a private copy of the buffers
                    return torch.stack([
                        one({k: v[j] for k, v in candidate.items()}, {k: b.clone() for k, b in buffers.items()})
                        for j in range(n)
                    ])
                # Buffers the forward pass may update in place get a private copy per candidate.
                copies = {name: b.unsqueeze(0).expand(n, *b.shape).clone() for name, b in buffers.items()}
                batched = torch.vmap(one, in_dims=(0, 0), chunk_size=chunk_size, randomness=randomness)
                return batched(candidate, copies)
        except RuntimeError as error:
            place = _failing_place(model, error, stage["now"])
            message = _explain(error, place) if vectorize else None
            if message is None:
                error.add_note(f"batched_closure: raised in {place}")
                raise
            raise RuntimeError(message) from error

    closure.bind_params = bind_params
    return closure
