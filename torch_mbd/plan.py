"""``plan``: trajectory optimization of a :class:`~torch_mbd.rollout.RolloutModel` with MBD."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from .baselines import optimizer_class
from .progress import progress_bar
from .rollout import RolloutModel, Trajectory, as_trajectory


@dataclass
class PlanResult:
    """What :func:`plan` returns (``K`` = number of diffusion steps).

    Attributes:
        actions: ``[H, nu]`` the optimized control sequence (``[..., H, nu]`` for batched problems).
        states: ``[H, nx]`` its rollout.
        rewards: ``[H]`` its step rewards.
        feasible: whether its rollout satisfies the model's constraints.
        reward: its mean step reward, a float (mean over problems when batched).
        history: ``[K, H, nu]`` the estimate after every diffusion step (for figures).
        reward_history: ``[K]`` mean sample reward of every step.
        time: wall time in seconds.
    """

    actions: Tensor
    states: Tensor
    rewards: Tensor
    feasible: Tensor
    reward: float
    history: Tensor
    reward_history: Tensor
    time: float

    def __repr__(self) -> str:
        feas = bool(self.feasible.all())
        return f"PlanResult(reward={self.reward:.4f}, feasible={feas}, steps={len(self.reward_history)}, time={self.time:.3g}s)"


def plan(
    model: RolloutModel,
    horizon: int | None = None,
    num_samples: int = 256,
    num_steps: int = 100,
    temperature: float = 0.1,
    demo: Tensor | None = None,
    demo_mask: Tensor | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    init: Tensor | None = None,
    method: str = "mbd",
    **options,
) -> PlanResult:
    """Optimize an open-loop control sequence for ``model`` with Model-Based Diffusion (or a baseline).

    Args:
        model: a :class:`~torch_mbd.rollout.RolloutModel` (e.g. ``dynamics.car.Car2D()``).
        horizon: number of control steps ``H``; default ``model.horizon``.
        num_samples: rollouts per diffusion step ``n``.
        num_steps: diffusion steps.
        temperature: ``lambda`` (the paper: 0.1 for most tasks).
        demo: demonstrated states ``[H, nx]`` (or ``[H, k]`` with ``demo_mask``), Eq. (11)-(13).
        demo_mask: boolean ``[nx]`` or ``[H, nx]`` of the state dimensions the demo covers.
        seed: seed of the sampling generator.
        device: must match ``model.device`` when given (build the model on the device you want).
        progress: show a tqdm progress bar.
        init: initial control sequence ``[..., H, nu]``; default zeros (the paper's ``Y^(N) = 0``).
        method: ``"mbd"`` (default), or a baseline at the same budget (``num_samples`` rollouts per
            step, ``num_steps`` steps, same bounds and initial guess): ``"cem"``, ``"mppi"`` or
            ``"cmaes"`` (:mod:`torch_mbd.baselines`). Demonstrations are MBD-only.
        **options: any other option of the chosen optimizer (for MBD ``beta0``, ``noise``,
            ``demo_sigma``, ``demo_reward``, ...; for CEM ``elite_fraction``; for MPPI ``noise_std``;
            for CMA-ES ``sigma0``, ``cma_options``).

    Returns:
        A :class:`PlanResult`.
    """
    for attr in ("action_dim", "action_bounds", "horizon", "rollout"):
        if not hasattr(model, attr):
            raise TypeError(f"model must implement the RolloutModel protocol; it has no {attr!r}")
    model_device = torch.device(getattr(model, "device", "cpu"))
    if device is not None and torch.device(device) != model_device:
        raise ValueError(f"device={device!r} but the model lives on {model_device}; build the model on that device")
    lower, upper = (torch.as_tensor(b, device=model_device) for b in model.action_bounds)
    dtype = lower.dtype if lower.is_floating_point() else torch.get_default_dtype()
    H = model.horizon if horizon is None else horizon
    if isinstance(H, bool) or not isinstance(H, int) or H < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {H!r}")
    if init is None:
        actions = torch.zeros(H, model.action_dim, dtype=dtype, device=model_device)
    else:
        if init.shape[-2:] != (H, model.action_dim):
            raise ValueError(f"init must have shape [..., {H}, {model.action_dim}], got {tuple(init.shape)}")
        actions = init.detach().to(model_device, dtype).clone()
    optimizer = optimizer_class(method)
    if method != "mbd":
        if demo is not None or demo_mask is not None:
            raise ValueError(f"demo: demonstrations are MBD-only, got method={method!r}")
        demo_options = {}
    else:
        demo_options = dict(
            demo=None if demo is None else demo.to(model_device, dtype),
            demo_mask=None if demo_mask is None else demo_mask.to(model_device),
        )
    opt = optimizer(
        [actions],
        num_samples=num_samples,
        temperature=temperature,
        num_steps=num_steps,
        bounds=(lower.to(dtype), upper.to(dtype)),
        rollout=model.rollout,
        seed=seed,
        **demo_options,
        **options,
    )
    history, reward_history = [], []
    start = time.perf_counter()
    with progress_bar(num_steps, f"{method.upper()} plan", progress) as bar:
        for _ in range(num_steps):
            reward_history.append(opt.step())
            history.append(actions.clone())
            bar.update()
            if progress:
                bar.set_postfix(reward=f"{float(reward_history[-1]):.4f}")
    with torch.no_grad():
        final = actions.unsqueeze(-3)  # [..., 1, H, nu]
        traj: Trajectory = as_trajectory(model.rollout(final), final)
    elapsed = time.perf_counter() - start
    feasible = (
        torch.ones(actions.shape[:-2], dtype=torch.bool, device=model_device)
        if traj.feasible is None
        else traj.feasible.squeeze(-1)
    )
    rewards = traj.rewards.squeeze(-2)
    return PlanResult(
        actions=actions,
        states=traj.states.squeeze(-3),
        rewards=rewards,
        feasible=feasible,
        reward=float(rewards.mean()),
        history=torch.stack(history),
        reward_history=torch.stack(reward_history).cpu(),
        time=elapsed,
    )
