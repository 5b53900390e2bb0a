"""The rollout protocol: what torch-mbd needs from a dynamics model.

``torch_mbd`` consumes this protocol and never imports a simulator. The package
``dynamics`` (analytic torch models, MuJoCo on the CPU, MuJoCo Warp, MJX) implements it,
and so can any user object with the same attributes.

A model rolls a batch of control sequences out from its initial state::

    traj = model.rollout(actions)       # actions: [..., n, H, nu], in the model's action bounds
    traj.states                         # [..., n, H, nx]  state after each control step, or None
    traj.rewards                        # [..., n, H]      reward of each step (higher is better)
    traj.feasible                       # [..., n] bool, or None when every sample is feasible
                                        # (0 / 1 / NaN accepted: 1 feasible, 0 and NaN not)

A sample whose path violates a constraint (``p_g = 0`` in the paper) or whose simulation
diverged is marked infeasible; its rewards may be anything, NaN included. Tensors are on
the model's ``device``. A model that does not report states may return ``states=None``:
[`torch_mbd.plan`][torch_mbd.plan] then returns ``PlanResult.states = None``, and demonstrations (which
score states) are refused with a ``ValueError``.

Controllers that move a model's ``initial_state`` ([`torch_mbd.MPC`][torch_mbd.MPC]) put it back after a
failed call with [`snapshot_initial_state`][torch_mbd.rollout.snapshot_initial_state]. A model (or a wrapper around one) that keeps its
state somewhere the snapshot cannot see may define two optional methods,
``initial_state_snapshot() -> object`` and ``restore_initial_state(snapshot)``, which the snapshot
then uses instead ([`torch_mbd.knots.KnotRollout`][torch_mbd.knots.KnotRollout] does, delegating to the model it wraps).
"""

from __future__ import annotations

import inspect
from typing import Callable, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

from .checks import as_feasible


class Trajectory(NamedTuple):
    """The result of a batched rollout.

    Attributes:
        states: ``[..., n, H, nx]``, the state after each of the ``H`` control steps, or ``None``
            when the model reports no states (then no demonstration can be used).
        rewards: ``[..., n, H]``, the reward of each step.
        feasible: ``[..., n]`` boolean, or ``None`` when every sample is feasible. A real
            ``0`` / ``1`` mask is accepted too (NaN counts as infeasible; see
            `torch_mbd.checks.as_feasible`).
    """

    states: Tensor | None
    rewards: Tensor
    feasible: Tensor | None = None


@runtime_checkable
class RolloutModel(Protocol):
    """A batched dynamics model that [`torch_mbd.plan`][torch_mbd.plan] can optimize.

    Attributes:
        action_dim: ``nu``.
        state_dim: ``nx``, the size of ``Trajectory.states``' last dimension.
        action_bounds: ``(lower, upper)``, each a ``[nu]`` tensor.
        horizon: the default number of control steps ``H``.
        initial_state: the state the rollouts start from, ``[nx]`` (or the backend's own).
        device: where the rollout's input and output tensors live.
    """

    action_dim: int
    state_dim: int
    action_bounds: tuple[Tensor, Tensor]
    horizon: int
    initial_state: Tensor
    device: torch.device

    def rollout(self, actions: Tensor) -> Trajectory:
        """Roll ``actions[..., n, H, nu]`` out from the initial state."""
        ...


def as_trajectory(result, actions: Tensor) -> Trajectory:
    """Validate a rollout's return value against the actions that produced it.

    Accepts a [`Trajectory`][torch_mbd.rollout.Trajectory] or a ``(rewards, states, feasible)`` tuple (the order of
    the optimizer's ``rollout`` callable). Raises ``ValueError`` naming what is wrong. The
    returned ``feasible`` is boolean: a real mask is converted by
    `torch_mbd.checks.as_feasible` (``1`` feasible, ``0`` and NaN infeasible, any other
    value a ``ValueError``).

    The rewards must be ``[..., n, T]`` and the states ``[..., n, T, nx]`` for the actions'
    ``[..., n]``; ``T`` is usually the actions' ``H``, but may differ when the decision variables
    stand for a longer control sequence (knots, [`torch_mbd.knots`][torch_mbd.knots]).

    Args:
        result: what the rollout returned.
        actions: the ``[..., n, H, nu]`` actions (decision variables) it was given.
    """
    if isinstance(result, Trajectory):
        traj = result
    elif isinstance(result, tuple) and len(result) in (2, 3):
        rewards, states = result[0], result[1]
        traj = Trajectory(states=states, rewards=rewards, feasible=result[2] if len(result) == 3 else None)
    else:
        raise TypeError(
            "rollout must return a Trajectory or a (rewards, states, feasible) tuple, "
            f"got {type(result).__name__}"
        )
    batch = tuple(actions.shape[:-2])  # [..., n]
    rewards = traj.rewards
    if not isinstance(rewards, Tensor) or rewards.dim() != len(batch) + 1 or tuple(rewards.shape[:-1]) != batch:
        got = tuple(rewards.shape) if isinstance(rewards, Tensor) else type(rewards).__name__
        raise ValueError(f"rollout rewards must have shape {batch} + (T,) ([..., n, T]), got {got}")
    lead = tuple(rewards.shape)  # [..., n, T]: T is the actions' H, or the control steps knots stand for
    if traj.states is not None and (
        not isinstance(traj.states, Tensor) or tuple(traj.states.shape[:-1]) != lead
    ):
        got = tuple(traj.states.shape) if isinstance(traj.states, Tensor) else type(traj.states).__name__
        raise ValueError(f"rollout states must have shape {lead} + (nx,) ([..., n, T, nx]), got {got}")
    if traj.feasible is not None and (
        not isinstance(traj.feasible, Tensor) or tuple(traj.feasible.shape) != batch
    ):
        got = tuple(traj.feasible.shape) if isinstance(traj.feasible, Tensor) else type(traj.feasible).__name__
        raise ValueError(f"rollout feasible must have shape {batch} ([..., n]), got {got}")
    return traj._replace(feasible=as_feasible(traj.feasible))


_MISSING = object()


def snapshot_initial_state(model) -> Callable[[], None]:
    """Snapshot ``model``'s initial state; returns ``restore()``, which puts it back as it is now.

    Through the model's own protocol, never by copying private state:

    * a model with ``initial_state_snapshot()`` and ``restore_initial_state(snapshot)`` (e.g. a
      wrapper that delegates ``initial_state`` to the model it wraps, like
      [`KnotRollout`][torch_mbd.knots.KnotRollout]) is restored by those methods;
    * otherwise ``initial_state`` is read now and, when it is a property, assigned back through
      its setter (a tensor is cloned first, in case the setter reuses its storage); then every
      attribute of the model's own ``__dict__`` that was rebound since (a setter may set several,
      e.g. ``MujocoModel``'s ``qpos0`` and ``qvel0`` next to the state) gets its old object back,
      so that nothing is lost to a round trip through the setter's dtype.

    A delegating property without the two methods is restored through its setter: exact in value
    where the wrapped model keeps what it is given (a plain attribute), up to the setter's dtype
    otherwise.

    Args:
        model: any object with a readable ``initial_state``.

    Returns:
        ``restore()``: no arguments, returns ``None``; may be called more than once.
    """
    own, back = getattr(model, "initial_state_snapshot", None), getattr(model, "restore_initial_state", None)
    if callable(own) and callable(back):
        snapshot = own()
        return lambda: back(snapshot)
    attrs = getattr(model, "__dict__", None)
    through_setter = attrs is None or isinstance(inspect.getattr_static(type(model), "initial_state", None), property)
    previous = model.initial_state
    if through_setter and isinstance(previous, Tensor):
        previous = previous.clone()
    before = dict(attrs) if attrs is not None else None

    def restore() -> None:
        if through_setter:
            model.initial_state = previous
        if before is not None:
            for key, value in before.items():
                if attrs.get(key, _MISSING) is not value:
                    attrs[key] = value
            if "initial_state" not in before:  # a plain attribute created by the assignment
                attrs.pop("initial_state", None)

    return restore
