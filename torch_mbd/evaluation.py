"""Scoring a step's samples: closure or rollout, output checks, process-group sharding.

`Evaluator` is the one place that shapes what the user's objective is given and checks what it
returns, in two halves around the call (made by ``SamplingOptimizer.step``, or by the user between
``ask()`` and ``tell()``): [`Evaluator.inputs`][torch_mbd.evaluation.Evaluator.inputs] gives the closure one candidate tensor per
parameter, or the rollout ``[..., n, H, nu]`` actions; [`Evaluator.score`][torch_mbd.evaluation.Evaluator.score] checks the losses, or the
[`Trajectory`][torch_mbd.rollout.Trajectory] (shape, device, real dtype), and turns them into per-sample rewards ``[B, n]``. Under
a ``torch.distributed`` process group each rank scores its contiguous shard of the samples and
the scores are all-gathered, so every rank continues with the same numbers.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .rollout import as_trajectory


class Evaluation(NamedTuple):
    """The scores of one step's samples, gathered from every rank.

    Attributes:
        rewards: ``[B, n]`` mean step reward (rollout mode) or ``-loss`` (closure mode), in the
            statistics dtype (at least float32).
        feasible: boolean ``[B, n]``, or ``None`` where the objective says nothing about feasibility.
        log_likelihood: the demonstration log-likelihood ``[B, n]``, or ``None`` without a demonstration.
        trajectory: this rank's rollout [`Trajectory`][torch_mbd.rollout.Trajectory], or ``None`` in closure mode.
    """

    rewards: Tensor
    feasible: Tensor | None
    log_likelihood: Tensor | None
    trajectory: object | None


def check_real_dtype(name: str, values: Tensor) -> None:
    """Losses, rewards and states must be real numbers: floating or integer tensors, not bool or complex."""
    if values.dtype == torch.bool or values.is_complex():
        raise TypeError(f"{name} must be real numbers (a floating-point or integer tensor), got dtype {values.dtype}")


def mean_objective(rewards: Tensor, feasible: Tensor | None, rollout_mode: bool) -> Tensor:
    """What ``step()`` returns: the mean reward (rollout mode) or mean loss (closure mode) over the
    finite, feasible samples of ``rewards [B, n]``, a 0-dim tensor (0 without one)."""
    ok = torch.isfinite(rewards) if feasible is None else torch.isfinite(rewards) & feasible
    mean = torch.where(ok, rewards, torch.zeros_like(rewards)).sum() / ok.sum().clamp(min=1)
    return mean if rollout_mode else -mean


class Evaluator:
    """Shapes samples for a closure or a rollout and scores what it returned, on this rank's shard.

    Args:
        rollout: the batched rollout (``actions[..., n, H, nu] -> Trajectory``), or ``None`` for closure mode.
        params: the optimizer's parameters (their device and dtype).
        batch_shape: the parameters' batch dimensions (rollout mode), ``()`` in closure mode.
        compute_dtype: the dtype rewards come back in (at least float32).
        process_group: a ``torch.distributed`` group to shard the samples over, or ``None``.
    """

    def __init__(
        self, rollout: Callable | None, params: list[Tensor], batch_shape: tuple, compute_dtype, process_group=None
    ):
        if rollout is not None and not callable(rollout):
            raise TypeError(f"rollout must be callable (actions -> Trajectory), got {type(rollout).__name__}")
        self.rollout, self.batch_shape = rollout, batch_shape
        self.device, self.dtype, self.compute_dtype = params[0].device, params[0].dtype, compute_dtype
        self.event_shape = tuple(params[0].shape[len(batch_shape) :])  # [H, nu] in rollout mode
        self.process_group = process_group

    def broadcast_generator_state(self, generator: torch.Generator) -> None:
        """Give every rank of the process group rank 0's generator state (same noise everywhere)."""
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise ValueError("process_group was given but torch.distributed is not initialized")
        state = [generator.get_state()]
        src = dist.get_global_rank(self.process_group, 0) if self.process_group is not dist.group.WORLD else 0
        dist.broadcast_object_list(state, src=src, group=self.process_group)
        generator.set_state(state[0])

    def shard(self, n: int) -> tuple[int, int, int]:
        """``(start, stop, size)`` of this rank's share of the ``n`` samples (all of them alone)."""
        if self.process_group is None:
            return 0, n, n
        import torch.distributed as dist

        world, rank = dist.get_world_size(self.process_group), dist.get_rank(self.process_group)
        size = -(-n // world)
        start = min(rank * size, n)
        return start, min(start + size, n), size

    def gather(self, local: Tensor, size: int, n: int) -> Tensor:
        """All-gather ``[B, k]`` shards (padded to ``size``) into ``[B, n]`` on every rank."""
        if self.process_group is None:
            return local
        import torch.distributed as dist

        padded = torch.full((local.shape[0], size), float("nan"), dtype=local.dtype, device=local.device)
        padded[:, : local.shape[1]] = local
        parts = [torch.empty_like(padded) for _ in range(dist.get_world_size(self.process_group))]
        dist.all_gather(parts, padded, group=self.process_group)
        return torch.cat(parts, dim=1)[:, :n]

    def inputs(self, samples: Tensor, segments: list) -> tuple[list[Tensor] | Tensor, tuple[int, int, int]]:
        """This rank's shard of ``samples [B, n, D]`` as the objective takes it, and ``(start, stop, size)``.

        Closure mode: one tensor ``[k, *param.shape]`` per parameter (``segments``: the flat layout's
        ``(offset, numel, shape)`` per parameter); rollout mode: the actions ``[..., k, H, nu]``.
        Both are views of ``samples``. ``k = n`` without a process group.
        """
        n = samples.shape[1]
        start, stop, size = self.shard(n)
        shard = samples[:, start:stop]
        if self.rollout is not None:
            return shard.reshape(*self.batch_shape, stop - start, *self.event_shape), (start, stop, size)
        flat = shard[0]
        return [flat[:, o : o + k].unflatten(-1, shape) if shape else flat[:, o] for o, k, shape in segments], (
            start, stop, size,
        )

    def score(
        self, output, samples: Tensor, inputs, shard: tuple[int, int, int], log_likelihood=None, what: str = "closure"
    ) -> Evaluation:
        """Check what the objective returned for this rank's shard and gather the scores from every rank.

        Args:
            output: closure mode: the losses ``[k]``; rollout mode: the rollout's
                [`Trajectory`][torch_mbd.rollout.Trajectory] or ``(rewards, states, feasible)`` tuple.
                Ignored on a rank whose shard is empty (``k = 0``).
            samples: the step's samples ``[B, n, D]``.
            inputs: what [`inputs`][torch_mbd.evaluation.Evaluator.inputs] returned for them.
            shard: ``(start, stop, size)`` of this rank's share.
            log_likelihood: ``(shard [B, k, D], trajectory or None) -> [B, k]`` for a demonstration, or ``None``.
            what: how an error names ``output`` in closure mode (``"closure"``, ``"tell() losses"``).

        Raises:
            TypeError, ValueError: ``output`` is not what the mode expects (shape, device, dtype).
        """
        B, n, _ = samples.shape
        start, stop, size = shard
        k = stop - start
        feasible = loglik = trajectory = None
        if k == 0:  # more ranks than samples: nothing was evaluated here
            rewards = samples.new_empty(B, 0, dtype=self.compute_dtype)
            feasible = torch.ones(B, 0, dtype=torch.bool, device=self.device) if self.rollout is not None else None
            loglik = samples.new_empty(B, 0, dtype=self.compute_dtype) if log_likelihood is not None else None
        elif self.rollout is not None:
            rewards, feasible, trajectory = self._rollout_scores(output, inputs, B, k)
        else:
            rewards = self._losses(output, k, what)
        if k > 0 and log_likelihood is not None:
            loglik = log_likelihood(samples[:, start:stop], trajectory)
        rewards = self.gather(rewards, size, n)
        if feasible is not None:
            feasible = self.gather(feasible.to(self.dtype), size, n) == 1
        if loglik is not None:
            loglik = self.gather(loglik, size, n)
        return Evaluation(rewards, feasible, loglik, trajectory)

    def _losses(self, losses, n: int, what: str) -> Tensor:
        """``[1, n]`` rewards ``-losses`` from checked losses ``[n]``."""
        must = "closure must return" if what == "closure" else f"{what} must be"
        if not isinstance(losses, Tensor):
            raise TypeError(f"{must} a tensor of {n} losses, got {type(losses).__name__}")
        if losses.shape != (n,):
            raise ValueError(f"{must} one loss per candidate, shape ({n},), got {tuple(losses.shape)}")
        if losses.device != self.device:
            raise ValueError(f"{what}: losses on {losses.device}, params are on {self.device}")
        check_real_dtype(f"{what} losses", losses)
        return (-losses.to(self.compute_dtype)).unsqueeze(0)

    def _rollout_scores(self, output, actions: Tensor, B: int, n: int):
        traj = as_trajectory(output, actions)
        if traj.rewards.device != self.device:
            raise ValueError(f"rollout returned rewards on {traj.rewards.device}, params are on {self.device}")
        check_real_dtype("rollout rewards", traj.rewards)
        rewards = traj.rewards.to(self.compute_dtype).mean(-1).reshape(B, n)
        feasible = None if traj.feasible is None else traj.feasible.reshape(B, n)  # boolean: as_trajectory converts it
        return rewards, feasible, traj
