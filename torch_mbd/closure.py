"""``batched_closure``: score many candidate parameter sets of an ``nn.Module`` in one call.

:meth:`MBDOptimizer.step <torch_mbd.MBDOptimizer.step>` hands its closure a list of candidate
tensors, one ``[n, *p.shape]`` per optimized parameter, and wants ``[n]`` losses back. For a
network this is ``torch.func.functional_call`` (run the module with other parameters) under
``torch.vmap`` (over the candidate dimension): no Python loop over candidates, and for linear
and convolutional layers vmap turns the per-candidate products into batched matrix products.
``chunk_size`` bounds memory by evaluating the candidates a slice at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn


def _optimized_names(model: nn.Module, params) -> list[str]:
    """Names (in ``model.named_parameters()``) of ``params``, in the order the optimizer sends them."""
    by_id = {id(p): name for name, p in model.named_parameters()}
    if params is None:
        return list(by_id.values())
    if isinstance(params, torch.optim.Optimizer):
        params = [p for group in params.param_groups for p in group["params"]]
    elif isinstance(params, Tensor):
        raise TypeError("params must be an iterable of tensors or an optimizer, got a single tensor")
    names = []
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"params must hold tensors, got {type(p).__name__}")
        if id(p) not in by_id:
            raise ValueError(f"params holds a tensor of shape {tuple(p.shape)} that is not a parameter of model")
        names.append(by_id[id(p)])
    if len(set(names)) != len(names):
        raise ValueError("params holds the same parameter twice")
    return names


def batched_closure(
    model: nn.Module,
    loss_fn: Callable[..., Tensor],
    *inputs,
    chunk_size: int | None = None,
    params: Iterable[Tensor] | torch.optim.Optimizer | None = None,
) -> Callable[[Sequence[Tensor]], Tensor]:
    """Build the closure :meth:`MBDOptimizer.step <torch_mbd.MBDOptimizer.step>` takes, for a module.

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
            ``MBDOptimizer(model.parameters(), ...)``.

    Returns:
        ``closure(candidates: list[Tensor]) -> Tensor [n]``.

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
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"Invalid chunk_size: expected an integer >= 1 or None, got {chunk_size!r}")
    names = _optimized_names(model, params)
    if not names:
        raise ValueError("params: the model has no parameters to optimize")
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    model_inputs, target = (inputs[:-1], inputs[-1]) if len(inputs) > 1 else (inputs, None)

    def one(candidate: dict, buffers: dict) -> Tensor:
        output = torch.func.functional_call(model, (candidate, buffers), model_inputs, strict=False, tie_weights=False)
        loss = loss_fn(output) if target is None else loss_fn(output, target)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a 0-dim loss per candidate, got {shape}")
        return loss

    def closure(candidates: Sequence[Tensor]) -> Tensor:
        if len(candidates) != len(names):
            raise ValueError(f"closure got {len(candidates)} candidate tensors, the model has {len(names)} optimized parameters")
        n = candidates[0].shape[0]
        for name, c in zip(names, candidates):
            if tuple(c.shape) != (n, *shapes[name]):
                raise ValueError(f"candidates for {name!r} must have shape {(n, *shapes[name])}, got {tuple(c.shape)}")
        # Buffers the forward pass may update in place get a private copy per candidate.
        buffers = {name: b.unsqueeze(0).expand(n, *b.shape).clone() for name, b in model.named_buffers()}
        batched = torch.vmap(one, in_dims=(0, 0), chunk_size=chunk_size)
        with torch.no_grad():
            return batched(dict(zip(names, candidates)), buffers)

    return closure
