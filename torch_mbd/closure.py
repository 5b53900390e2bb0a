"""``batched_closure``: score many candidate parameter sets of an ``nn.Module`` in one call.

[`MBDOptimizer.step`][torch_mbd.MBDOptimizer.step] hands its closure a list of candidate
tensors, one ``[n, *p.shape]`` per optimized parameter, and wants ``[n]`` losses back. For a
network this is ``torch.func.functional_call`` (run the module with other parameters) under
``torch.vmap`` (over the candidate dimension): no Python loop over candidates, and for linear
and convolutional layers vmap turns the per-candidate products into batched matrix products.
``chunk_size`` bounds memory by evaluating the candidates a slice at a time.

Candidates are matched to parameters by identity, not by position: before every call an
[`MBDOptimizer`][torch_mbd.MBDOptimizer] (or a baseline) hands the closure its parameters through
``closure.bind_params(params)``, so an optimizer whose parameters are listed in another order
than the model's (or than ``params=``) still evaluates every candidate on the right layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from .checks import check_int


def _optimized_names(model: nn.Module, params, what: str = "params") -> list[str]:
    """Names (in ``model.named_parameters()``) of ``params``, in the order the optimizer sends them."""
    by_id = {id(p): name for name, p in model.named_parameters()}
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


def _check_inputs(model: nn.Module, names: list[str], inputs: tuple) -> None:
    """Refuse inputs the forward pass would choke on deep inside torch: NumPy arrays, and
    floating-point tensors of another dtype or device than the optimized parameters."""
    params = dict(model.named_parameters())
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


def batched_closure(
    model: nn.Module,
    loss_fn: Callable[..., Tensor],
    *inputs,
    chunk_size: int | None = None,
    params: Iterable[Tensor] | torch.optim.Optimizer | None = None,
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
      mode). Dropout under ``vmap`` needs ``randomness="different"``, which this closure does not
      set: evaluate with dropout off (``model.eval()``) or without dropout layers.

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
            optimizer of this package, the optimizer's own order wins (see ``bind_params``).

    Returns:
        ``closure(candidates: list[Tensor]) -> Tensor [n]``, with a method
        ``closure.bind_params(params)`` that [`MBDOptimizer.step`][torch_mbd.MBDOptimizer.step]
        calls before every evaluation: it maps the candidates to ``params`` (the optimizer's
        tensors, in the candidates' order) by identity, and raises ``ValueError`` if one of them
        is not a parameter of ``model``.

    Raises:
        TypeError: ``model`` is not a module, ``loss_fn`` not callable, ``params`` not tensors,
            or an input is a NumPy array.
        ValueError: bad ``chunk_size``; ``params`` not parameters of ``model``; a floating-point
            input of another dtype (or an input on another device) than the parameters. At call
            time: candidates of the wrong number, shape, dtype or device.

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
    names = _optimized_names(model, params)
    if not names:
        raise ValueError("params: the model has no parameters to optimize")
    _check_inputs(model, names, inputs)
    meta = {name: (tuple(p.shape), p.dtype, p.device) for name, p in model.named_parameters()}
    bound = {"ids": None}  # the ids of the optimizer's tensors names was last matched to
    model_inputs, target = (inputs[:-1], inputs[-1]) if len(inputs) > 1 else (inputs, None)

    def one(candidate: dict, buffers: dict) -> Tensor:
        output = torch.func.functional_call(model, (candidate, buffers), model_inputs, strict=False, tie_weights=False)
        loss = loss_fn(output) if target is None else loss_fn(output, target)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a 0-dim loss per candidate, got {shape}")
        return loss

    def bind_params(optimized: Sequence[Tensor]) -> None:
        """Map the candidates to ``optimized`` (the optimizer's parameters, in its order) by identity."""
        ids = tuple(id(p) for p in optimized)
        if ids != bound["ids"]:
            names[:] = _optimized_names(model, list(optimized), "the optimizer's params")
            bound["ids"] = ids

    def closure(candidates: Sequence[Tensor]) -> Tensor:
        if len(candidates) != len(names):
            raise ValueError(f"closure got {len(candidates)} candidate tensors, the model has {len(names)} optimized parameters")
        for k, c in enumerate(candidates):
            if not isinstance(c, Tensor):
                raise TypeError(f"candidates[{k}] must be a tensor [n, *p.shape], got {type(c).__name__}")
        n = candidates[0].shape[0] if candidates[0].dim() > 0 else 0
        for name, c in zip(names, candidates):
            shape, dtype, device = meta[name]
            if tuple(c.shape) != (n, *shape):
                raise ValueError(f"candidates for {name!r} must have shape {(n, *shape)}, got {tuple(c.shape)}")
            if c.dtype != dtype or c.device != device:
                raise ValueError(
                    f"candidates for {name!r} must be {dtype} on {device} like the parameter, "
                    f"got {c.dtype} on {c.device}"
                )
        if n == 0:  # vmap cannot map over an empty dimension
            return torch.empty(0, dtype=meta[names[0]][1], device=meta[names[0]][2])
        # Buffers the forward pass may update in place get a private copy per candidate.
        buffers = {name: b.unsqueeze(0).expand(n, *b.shape).clone() for name, b in model.named_buffers()}
        batched = torch.vmap(one, in_dims=(0, 0), chunk_size=chunk_size)
        with torch.no_grad():
            return batched(dict(zip(names, candidates)), buffers)

    closure.bind_params = bind_params
    return closure
