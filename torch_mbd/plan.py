"""``plan``: trajectory optimization of a :class:`~torch_mbd.rollout.RolloutModel` with MBD."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from .baselines import optimizer_class
from .checks import check_device, check_int, check_positive, check_seed, check_tensor
from .progress import progress_bar
from .rollout import RolloutModel, Trajectory, as_trajectory
from .threads import use_threads


@dataclass
class PlanResult:
    """What :func:`plan` returns (``K`` = number of diffusion steps).

    Attributes:
        actions: ``[H, nu]`` the optimized control sequence (``[..., H, nu]`` for batched problems).
        states: ``[H, nx]`` its rollout, or ``None`` when the model's rollout returns no states
            (``Trajectory.states=None``, which the protocol allows; demonstrations need states).
        rewards: ``[H]`` its step rewards.
        feasible: whether its rollout satisfies the model's constraints.
        reward: its mean step reward, a float (mean over problems when batched).
        history: ``[K, H, nu]`` the estimate after every diffusion step (for figures).
        reward_history: ``[K]`` mean sample reward of every step.
        time: wall time in seconds.
    """

    actions: Tensor
    states: Tensor | None
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
    torch_threads: int | str | None = None,
    **options,
) -> PlanResult:
    """Optimize an open-loop control sequence for ``model`` with Model-Based Diffusion (or a baseline).

    Args:
        model: a :class:`~torch_mbd.rollout.RolloutModel` (e.g. ``dynamics.car.Car2D()``).
        horizon: number of control steps ``H``; default ``model.horizon``.
        num_samples: rollouts per diffusion step ``n``.
        num_steps: diffusion steps.
        temperature: ``lambda`` (the paper: 0.1 for most tasks).
        demo: demonstrated states ``[H, nx]`` (or ``[H, k]`` with ``demo_mask``), Eq. (11)-(13);
            a tensor or a NumPy array, cast to the model's device and action dtype.
        demo_mask: boolean ``[nx]`` or ``[H, nx]`` of the state dimensions the demo covers (a
            tensor or a NumPy array).
        seed: seed of the sampling generator, an integer in ``[0, 2**64 - 1]``.
        device: must match ``model.device`` when given (build the model on the device you want).
        progress: show a tqdm progress bar.
        init: initial control sequence ``[..., H, nu]`` (a tensor or a NumPy array); default zeros
            (the paper's ``Y^(N) = 0``).
        method: ``"mbd"`` (default), or a baseline at the same budget (``num_samples`` rollouts per
            step, ``num_steps`` steps, same bounds and initial guess): ``"cem"``, ``"mppi"`` or
            ``"cmaes"`` (:mod:`torch_mbd.baselines`), or the paper's baselines as the authors ran
            them, ``"paper-mppi"``, ``"paper-cem"``, ``"paper-cmaes"`` (reproductions, not
            recommendations: :mod:`torch_mbd.paper_baselines`). Demonstrations are MBD-only.
        **options: any other option of the chosen optimizer (for MBD ``beta0``, ``noise``,
            ``demo_sigma``, ``demo_reward``, ...; for CEM ``elite_fraction``; for MPPI ``noise_std``;
            for CMA-ES ``sigma0``, ``cma_options``).
        torch_threads: torch intra-op threads while planning (restored afterwards): default 1, or
            ``$TORCH_MBD_THREADS``; ``"torch"`` keeps torch's setting (:mod:`torch_mbd.threads`).

    Returns:
        A :class:`PlanResult`.

    Raises:
        TypeError: ``model`` lacks part of the protocol; ``demo``, ``demo_mask`` or ``init`` is
            not a tensor or NumPy array of the right kind.
        ValueError: a bad number (``horizon``, ``num_samples``, ``num_steps``, ``temperature``,
            ``seed``), a device this process cannot use or other than the model's, a wrongly
            shaped or non-finite ``init``, or a ``demo`` for a rollout that returns no states. Every argument is
            checked before the model is rolled out.
    """
    for attr in ("action_dim", "action_bounds", "horizon", "rollout"):
        if not hasattr(model, attr):
            raise TypeError(f"model must implement the RolloutModel protocol; it has no {attr!r}")
    H = check_int("horizon", model.horizon if horizon is None else horizon, minimum=1)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    num_steps = check_int("num_steps", num_steps, minimum=1)
    temperature = check_positive("temperature", temperature)
    seed = check_seed(seed)
    nu = check_int("model.action_dim", model.action_dim, minimum=1)
    model_device = check_device(getattr(model, "device", "cpu"), "model.device")
    if device is not None and not _same_device(check_device(device), model_device):
        raise ValueError(f"device={device!r} but the model lives on {model_device}; build the model on that device")
    lower, upper = (torch.as_tensor(b, device=model_device) for b in model.action_bounds)
    dtype = lower.dtype if lower.is_floating_point() else torch.get_default_dtype()
    if init is None:
        actions = torch.zeros(H, nu, dtype=dtype, device=model_device)
    else:
        init = check_tensor("init", init)
        if init.dim() < 2 or tuple(init.shape[-2:]) != (H, nu):
            raise ValueError(f"init must have shape [..., {H}, {nu}], got {tuple(init.shape)}")
        actions = init.detach().to(model_device, dtype).clone()
        if not bool(torch.isfinite(actions).all()):
            raise ValueError("init must be finite, got NaN or inf")
    optimizer = optimizer_class(method)
    if method != "mbd":
        if demo is not None or demo_mask is not None:
            raise ValueError(f"demo: demonstrations are MBD-only, got method={method!r}")
        demo_options = {}
    else:
        demo_options = dict(
            demo=None if demo is None else check_tensor("demo", demo).to(model_device, dtype),
            demo_mask=None if demo_mask is None else check_tensor("demo_mask", demo_mask, kind="bool").to(model_device),
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
    with use_threads(torch_threads), progress_bar(num_steps, f"{method.upper()} plan", progress) as bar:
        for _ in range(num_steps):
            reward_history.append(opt.step())
            history.append(actions.clone())
            bar.update()
            if progress:
                bar.set_postfix(reward=f"{float(reward_history[-1]):.4f}")
    with torch.no_grad(), use_threads(torch_threads):
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
        states=None if traj.states is None else traj.states.squeeze(-3),
        rewards=rewards,
        feasible=feasible,
        reward=float(rewards.mean()),
        history=torch.stack(history),
        reward_history=torch.stack(reward_history).cpu(),
        time=elapsed,
    )


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are one device when the current CUDA device is 0."""
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        current = torch.cuda.current_device() if a.type == "cuda" else 0
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return a.index == b.index
