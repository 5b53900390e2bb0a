"""``plan``: trajectory optimization of a [`RolloutModel`][torch_mbd.rollout.RolloutModel] with MBD.

Beyond the paper, two options change what is optimized and what is returned (issue 14):

* ``num_knots``: optimize ``K`` knots per action dimension, interpolated to the ``H`` controls
  ([`torch_mbd.knots`][torch_mbd.knots]), instead of one action per control step (``num_knots=None``, the paper).
* ``keep_best``: return the better of the final estimate and the best sample evaluated during
  the run (with a deterministic model the best sample's reward is a reward the plan can have).

Their defaults, and the temperature's, come from a named preset ([`PRESETS`][torch_mbd.plan.PRESETS]): ``"default"``
(the combination measured best in ``benchmarks/sample_efficiency.py``) or ``"paper"`` (the paper's
algorithm: one action per step, the final estimate). An argument given explicitly always wins.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .baselines import optimizer_class
from .callbacks import StepLog, as_float, check_callback
from .checks import check_bool, check_device, check_int, check_seed, check_tensor
from .knots import INTERPOLATIONS, KnotRollout, fit_knots
from .optim import check_temperature
from .progress import progress_bar
from .rollout import RolloutModel, Trajectory, as_trajectory
from .threads import use_threads

PRESETS: dict[str, dict] = {
    "default": dict(num_knots=None, interpolation="cubic", temperature="auto", keep_best=True),
    "paper": dict(num_knots=None, interpolation="cubic", temperature=0.1, keep_best=False),
}
"""The defaults of [`plan`][torch_mbd.plan.plan]'s ``num_knots``, ``interpolation``, ``temperature`` and ``keep_best``.

``"default"`` is what ``plan(model, num_samples=n, num_steps=k, seed=s)`` uses; its values are the
ones measured best over every task in ``benchmarks/sample_efficiency.py`` (this one dict is where
they live). Neither uses knots (``num_knots=None``); an explicit ``num_knots`` must be ``<= H``.
``"paper"`` is the paper's algorithm (one action per control step, the final estimate, ``lambda = 0.1``)."""


class _FromPreset:
    """The default of an argument whose value comes from the preset (see [`PRESETS`][torch_mbd.plan.PRESETS])."""

    def __repr__(self) -> str:
        return "<from preset>"


FROM_PRESET = _FromPreset()


@dataclass
class PlanResult:
    """What [`plan`][torch_mbd.plan.plan] returns (``K`` = number of diffusion steps; ``...`` = batch dimensions).

    Attributes:
        actions: ``[H, nu]`` the optimized control sequence (``[..., H, nu]`` for batched problems):
            the controls the rollout saw (with knots: interpolated and clamped to the action bounds).
        states: ``[H, nx]`` its rollout, or ``None`` when the model's rollout returns no states
            (``Trajectory.states=None``, which the protocol allows; demonstrations need states).
        rewards: ``[H]`` its step rewards.
        feasible: whether its rollout satisfies the model's constraints: a boolean tensor ``[...]``
            (0-dim when not batched).
        reward: its mean step reward, a float; for batched problems the mean over problems (each
            problem's own is in [`problem_rewards`][torch_mbd.plan.PlanResult.problem_rewards]).
        history: ``[K, H, nu]`` the estimate's controls after every diffusion step (for figures).
        reward_history: ``[K]`` mean sample reward of every step.
        time: wall time in seconds.
        source: where ``actions`` come from: ``"estimate"`` (the final estimate) or ``"sample"``
            (the best sample evaluated during the run, with ``keep_best``); for batched problems
            ``"mixed"`` when some problems took the estimate and others a sample (see ``from_sample``).
        from_sample: boolean ``[...]`` (0-dim when not batched): which problems took the best sample.
        estimate_reward: the final estimate's mean step reward (mean over problems).
        best_sample_reward: the best evaluated sample's mean step reward as the optimizer measured
            it during the run (mean over problems; ``-inf`` if some problem saw no valid sample).
        knots: ``[..., num_knots, nu]`` the knots of ``actions``, or ``None`` without knots.
        stop: why the run stopped: ``"num_steps"`` (every step ran) or ``"callback"`` (the
            callback returned ``True``; ``history`` and ``reward_history`` then hold the steps run).
    """

    actions: Tensor
    states: Tensor | None
    rewards: Tensor
    feasible: Tensor
    reward: float
    history: Tensor
    reward_history: Tensor
    time: float
    source: str = "estimate"
    from_sample: Tensor | None = None
    estimate_reward: float = math.nan
    best_sample_reward: float = math.nan
    knots: Tensor | None = None
    stop: str = "num_steps"

    @property
    def problem_rewards(self) -> Tensor:
        """``[...]`` each problem's mean step reward (0-dim when not batched); `reward` is their mean."""
        return self.rewards.mean(-1)

    def __repr__(self) -> str:
        """One line; for batched problems the mean reward and how many of them are feasible."""
        if self.feasible.dim() == 0:
            reward, feasible = f"{self.reward:.4f}", str(bool(self.feasible))
        else:
            count = self.feasible.numel()
            reward = f"{self.reward:.4f} (mean of {count} problems)"
            feasible = f"{int(self.feasible.sum())}/{count}"
        return (
            f"PlanResult(reward={reward}, feasible={feasible}, source={self.source!r}, "
            f"steps={len(self.reward_history)}, time={self.time:.3g}s)"
        )


def plan(
    model: RolloutModel,
    horizon: int | None = None,
    num_samples: int = 256,
    num_steps: int = 100,
    temperature: float | str = FROM_PRESET,
    demo: Tensor | None = None,
    demo_mask: Tensor | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    init: Tensor | None = None,
    method: str = "mbd",
    torch_threads: int | str | None = None,
    num_knots: int | None = FROM_PRESET,
    interpolation: str = FROM_PRESET,
    keep_best: bool = FROM_PRESET,
    preset: str = "default",
    callback: Callable[[StepLog], object] | None = None,
    **options,
) -> PlanResult:
    """Optimize an open-loop control sequence for ``model`` with Model-Based Diffusion (or a baseline).

    Args:
        model: a [`RolloutModel`][torch_mbd.rollout.RolloutModel] (e.g. ``dynamics.car.Car2D()``).
        horizon: number of control steps ``H``; default ``model.horizon``.
        num_samples: rollouts per diffusion step ``n``.
        num_steps: diffusion steps.
        temperature: ``lambda`` (the paper: 0.1 for most tasks), or ``"auto"`` where the method
            supports it; default the preset's.
        demo: demonstrated states ``[H, nx]`` (or ``[H, k]`` with ``demo_mask``), Eq. (11)-(13);
            a tensor or a NumPy array, cast to the model's device and action dtype. With knots the
            demonstration still describes the ``H`` states.
        demo_mask: boolean ``[nx]`` or ``[H, nx]`` of the state dimensions the demo covers (a
            tensor or a NumPy array).
        seed: seed of the sampling generator, an integer in ``[0, 2**64 - 1]``.
        device: must match ``model.device`` when given (build the model on the device you want).
        progress: show a tqdm progress bar.
        init: initial control sequence ``[..., H, nu]`` (a tensor or a NumPy array); default zeros
            (the paper's ``Y^(N) = 0``). With knots it is fitted to knots in least squares
            ([`fit_knots`][torch_mbd.knots.fit_knots]).
        method: ``"mbd"`` (default), or a baseline at the same budget (``num_samples`` rollouts per
            step, ``num_steps`` steps, same bounds, initial guess and parameterization): ``"cem"``,
            ``"mppi"``, ``"cmaes"`` or ``"predictive"`` (`torch_mbd.baselines`), or the paper's
            baselines as the authors ran them, ``"paper-mppi"``, ``"paper-cem"``, ``"paper-cmaes"``
            (reproductions, not recommendations: [`torch_mbd.paper_baselines`][torch_mbd.paper_baselines]): any name of
            [`torch_mbd.METHODS`][torch_mbd.METHODS]. Demonstrations are MBD-only.
        torch_threads: torch intra-op threads while planning (restored afterwards): default 1, or
            ``$TORCH_MBD_THREADS``; ``"torch"`` keeps torch's setting ([`torch_mbd.threads`][torch_mbd.threads]).
        num_knots: optimize ``K`` knots per action dimension, spaced evenly over the horizon and
            interpolated to the ``H`` controls ([`torch_mbd.knots`][torch_mbd.knots]; the optimizer's parameter
            is ``[..., K, nu]`` within the action bounds), ``1 <= K <= H``; ``None``: one action per
            control step (the paper). ``K = H`` gives the per-step result bit for bit. Default the
            preset's.
        interpolation: ``"zero"`` (hold), ``"linear"`` or ``"cubic"`` (not-a-knot spline; the
            controls are clamped to the action bounds); default the preset's.
        keep_best: return the better of the final estimate and the best sample the optimizer
            evaluated (by the mean step reward of their rollouts, per problem; feasible first; on a
            tie the estimate). Both are rolled out in one call of two samples. Default the preset's.
        preset: the defaults of ``num_knots``, ``interpolation``, ``temperature`` and ``keep_best``:
            ``"default"`` or ``"paper"`` ([`PRESETS`][torch_mbd.plan.PRESETS]).
        callback: called after every step with a [`StepLog`][torch_mbd.callbacks.StepLog] (rewards: higher is
            better; e.g. a [`HistoryLogger`][torch_mbd.callbacks.HistoryLogger] or [`PrintLogger`][torch_mbd.callbacks.PrintLogger]); returning ``True``
            stops planning after that step (``stop="callback"``; the result is then made from that
            step's estimate as usual); what it raises propagates.
        **options: any other option of the chosen optimizer (for MBD ``beta_first``, ``noise_convention``,
            ``demo_sigma``, ``demo_reward``, ...; for CEM ``elite_fraction``; for MPPI ``noise_std``;
            for CMA-ES ``sigma0``, ``cma_options``).

    Returns:
        A [`PlanResult`][torch_mbd.plan.PlanResult].

    Raises:
        TypeError: ``model`` lacks part of the protocol; ``demo``, ``demo_mask`` or ``init`` is
            not a tensor or NumPy array of the right kind; ``callback`` is not callable.
        ValueError: a bad number (``horizon``, ``num_samples``, ``num_steps``, ``temperature``,
            ``seed``, ``num_knots``), an unknown ``interpolation`` or ``preset``, a ``keep_best``
            that is not a bool, a device this process cannot use or other than the model's, a
            wrongly shaped or non-finite ``init``, or a ``demo`` for a rollout that returns no
            states. Every argument is checked before the model is rolled out.
    """
    for attr in ("action_dim", "action_bounds", "horizon", "rollout"):
        if not hasattr(model, attr):
            raise TypeError(f"model must implement the RolloutModel protocol; it has no {attr!r}")
    H = check_int("horizon", model.horizon if horizon is None else horizon, minimum=1)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    num_steps = check_int("num_steps", num_steps, minimum=1)
    settings = _resolve_preset(preset, H, num_knots=num_knots, interpolation=interpolation,
                               temperature=temperature, keep_best=keep_best)
    num_knots, interpolation = settings["num_knots"], settings["interpolation"]
    temperature, keep_best = settings["temperature"], settings["keep_best"]
    seed = check_seed(seed)
    progress = check_bool("progress", progress)
    callback = check_callback(callback)
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
    if num_knots is None:
        knot_model, params, rollout = None, actions, model.rollout
    else:
        knot_model = KnotRollout(model, num_knots, interpolation, horizon=H)
        params, rollout = fit_knots(actions, num_knots, interpolation), knot_model.rollout

    def controls(knots: Tensor) -> Tensor:
        return knots if knot_model is None else knot_model.to_controls(knots)

    opt = optimizer(
        [params],
        num_samples=num_samples,
        temperature=temperature,
        num_steps=num_steps,
        bounds=(lower.to(dtype), upper.to(dtype)),
        rollout=rollout,
        seed=seed,
        torch_threads="torch",  # the threads of use_threads(torch_threads) below
        **demo_options,
        **options,
    )
    history, reward_history, stop = [], [], "num_steps"
    start = time.perf_counter()
    with use_threads(torch_threads), progress_bar(num_steps, f"{method.upper()} plan", progress) as bar:
        for step in range(1, num_steps + 1):
            reward_history.append(opt.step())
            history.append(controls(params).clone())
            bar.update()
            if progress:
                bar.set_postfix(reward=f"{float(reward_history[-1]):.4f}")
            if callback is not None and callback(_step_log(opt, step, num_samples, reward_history[-1], start)):
                stop = "callback"
                break
    best_sample_reward = float(opt.best_reward.mean())
    with torch.no_grad(), use_threads(torch_threads):
        if keep_best:
            final = _estimate_and_best(params, opt)  # [..., 2, K, nu]
        else:
            final = params.unsqueeze(-3)  # [..., 1, K, nu]
        final_controls = controls(final)
        traj: Trajectory = as_trajectory(model.rollout(final_controls), final_controls)
    elapsed = time.perf_counter() - start
    feasible = (
        torch.ones(final.shape[:-2], dtype=torch.bool, device=model_device)
        if traj.feasible is None
        else traj.feasible
    )
    rewards = traj.rewards
    estimate_reward = float(rewards[..., 0, :].mean())
    if keep_best:
        from_sample = _sample_wins(rewards, feasible, opt.best_reward.reshape(params.shape[:-2]))

        def pick(values: Tensor) -> Tensor:  # [..., 2, *event] -> [..., *event], per problem
            wins = from_sample.reshape(from_sample.shape + (1,) * (values.dim() - from_sample.dim() - 1))
            return torch.where(wins, values.select(from_sample.dim(), 1), values.select(from_sample.dim(), 0))
    else:
        from_sample = torch.zeros(params.shape[:-2], dtype=torch.bool, device=model_device)

        def pick(values: Tensor) -> Tensor:
            return values.squeeze(from_sample.dim())

    rewards = pick(rewards)
    source = "sample" if bool(from_sample.all()) else "estimate" if not bool(from_sample.any()) else "mixed"
    return PlanResult(
        actions=pick(final_controls),
        states=None if traj.states is None else pick(traj.states),
        rewards=rewards,
        feasible=pick(feasible),
        reward=float(rewards.mean()),
        history=torch.stack(history),
        reward_history=torch.stack(reward_history).cpu(),
        time=elapsed,
        source=source,
        from_sample=from_sample,
        estimate_reward=estimate_reward,
        best_sample_reward=best_sample_reward,
        knots=None if knot_model is None else pick(final),
        stop=stop,
    )


def _step_log(opt, step: int, num_samples: int, mean_reward: Tensor, start: float) -> StepLog:
    """The [`StepLog`][torch_mbd.callbacks.StepLog] of plan's step ``step``: rewards averaged over the problems."""
    info = opt.last_step
    valid = torch.isfinite(info.rewards) if info.feasible is None else torch.isfinite(info.rewards) & info.feasible
    step_best = torch.where(valid, info.rewards, torch.full_like(info.rewards, -math.inf)).amax(-1).mean()
    return StepLog(
        step=step, nfev=step * num_samples, best=float(opt.best_reward.mean()), step_best=float(step_best),
        step_mean=float(mean_reward), sigma=float(info.sigma), temperature=as_float(info.temperature), restart=0,
        elapsed=time.perf_counter() - start, objective="reward",
    )


def _resolve_preset(preset, horizon: int, **given) -> dict:
    """The preset's values for the arguments left at `FROM_PRESET`, every value checked."""
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"Invalid preset: expected one of {tuple(PRESETS)}, got {preset!r}")
    settings = dict(PRESETS[preset])
    explicit = {name: value for name, value in given.items() if value is not FROM_PRESET}
    settings.update(explicit)
    num_knots = settings["num_knots"]
    if num_knots is not None:
        settings["num_knots"] = check_int("num_knots", num_knots, minimum=1, maximum=horizon)
    interpolation = settings["interpolation"]
    if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS:
        raise ValueError(f"Invalid interpolation: expected one of {INTERPOLATIONS}, got {interpolation!r}")
    settings["temperature"] = check_temperature("temperature", settings["temperature"])
    settings["keep_best"] = check_bool("keep_best", settings["keep_best"])
    return settings


def _estimate_and_best(params: Tensor, opt) -> Tensor:
    """``[..., 2, K, nu]``: the estimate and the optimizer's best sample (the estimate where none was valid)."""
    best = opt.best_params()[0].to(params.device, params.dtype)
    seen = torch.isfinite(opt.best_reward).reshape(params.shape[:-2] + (1, 1))
    return torch.stack([params, torch.where(seen, best, params)], dim=-3)


def _sample_wins(rewards: Tensor, feasible: Tensor, best_reward: Tensor) -> Tensor:
    """Which problems take the best sample: ``rewards [..., 2, H]`` and ``feasible [..., 2]`` of the
    estimate and the sample, ``best_reward [...]`` the optimizer's (``-inf``: no valid sample).

    A rollout's score is its mean step reward where it is feasible and finite, ``-inf`` otherwise;
    the sample wins where its score is strictly higher (a tie keeps the estimate).
    """
    mean = rewards.mean(-1)
    score = torch.where(feasible & torch.isfinite(mean), mean, torch.full_like(mean, -math.inf))
    return torch.isfinite(best_reward) & (score[..., 1] > score[..., 0])


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are one device when the current CUDA device is 0."""
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        current = torch.cuda.current_device() if a.type == "cuda" else 0
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return a.index == b.index
