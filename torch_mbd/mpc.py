"""``MPC``: receding-horizon control with Model-Based Diffusion.

The paper plans open loop and names receding-horizon use as future work. [`MPC`][torch_mbd.mpc.MPC] closes
the loop: at every control step it plans from the system's current state and applies only
the first action of the plan.

* The first call (and the first after [`MPC.reset`][torch_mbd.mpc.MPC.reset]) is a **cold start**: a full diffusion
  of ``initial_steps`` steps of the paper's linear schedule from the zero sequence.
* Every later call is a **warm start**: the previous plan shifted by one control step
  (`shift_actions`; the last action repeated, or zeroed), then a short diffusion of
  ``diffusion_steps`` steps whose sampling noise starts at ``warm_noise`` instead of the cold
  start's ``sqrt(1 - alpha_bar_{N-1})`` (0.63 with the default schedule).

How the short diffusion is built (with [`MBDOptimizer`][torch_mbd.optim.MBDOptimizer]'s own options, no
new schedule code): the linear schedule with the same ``beta0``, ``beta1`` and noise convention,
compressed to ``diffusion_steps`` levels, every ``sigma`` multiplied by the group option
``noise_scale = warm_noise / sigma_top`` so that the first step samples at exactly
``warm_noise`` and the following ones shrink in the schedule's proportions
(`warm_start_sigmas`). The alternatives (the tail of the full schedule, or new betas)
tie the starting noise to the number of steps; this keeps the two options independent.
With the default step size the score-ascent update lands on the weighted mean whatever the
betas, so the schedule acts only through these sigmas.

Two options beyond the paper (issue 14):

* ``num_knots``: plan ``K`` knots per action dimension ([`torch_mbd.knots`][torch_mbd.knots]) instead of one
  action per control step. The warm start shifts the knots by one control step
  ([`shift_knots`][torch_mbd.knots.shift_knots]: the interpolated sequence, evaluated one step later at
  every knot), and [`MPC.act`][torch_mbd.mpc.MPC.act] returns the first interpolated control.
* ``horizon_noise`` (DIAL-MPC's annealing along the horizon): on warm starts the sampling noise
  of control step (or knot time) ``t`` is multiplied by
  ``exp(horizon_noise * (t / (H - 1) - 1))`` (`horizon_noise_scale`): the last control
  samples at the warm noise, the first at ``exp(-horizon_noise)`` times it. The near controls were
  refined at every earlier control step; the far ones are new and need the exploration.
  ``0`` (default) samples every control at the warm noise, as before.

The model is any [`RolloutModel`][torch_mbd.rollout.RolloutModel] whose ``initial_state`` can be set:
before each plan, ``MPC`` assigns ``model.initial_state = state`` (for
``dynamics.car.Car2D`` a plain attribute; for ``dynamics.model.MujocoModel`` a property taking
``[state_dim]`` or ``[nq + nv]``). The model is therefore left at the last state planned from.
The state is checked first (a tensor, NumPy array or list of real, finite numbers; the shape of
the current ``initial_state`` unless the model's ``initial_state`` is a property, whose setter
then decides), and a call that fails leaves the model's ``initial_state``, the generator and the controller's
plan as they were: the model's state is snapshot and restored through its own protocol
([`snapshot_initial_state`][torch_mbd.rollout.snapshot_initial_state]), so a wrapper whose ``initial_state``
delegates to another model ([`KnotRollout`][torch_mbd.knots.KnotRollout] included) is restored too.
"""

from __future__ import annotations

import math
import time
import types
from typing import NamedTuple

import torch
from torch import Tensor

from .checks import check_bool, check_int, check_positive, check_real, check_seed, check_tensor
from .knots import INTERPOLATIONS, SHIFT_FILLS, KnotRollout, fit_knots, knot_times, shift_matrix
from .optim import MBDOptimizer, check_temperature
from .rollout import as_trajectory, snapshot_initial_state
from .schedule import linear_schedule
from .threads import resolve_threads, use_threads


# MBDOptimizer options that MPC sets itself and that ``**options`` may not override.
_RESERVED = ("params", "num_samples", "temperature", "num_steps", "beta0", "beta1", "noise", "beta_first", "beta_last",
             "noise_convention", "bounds",
             "noise_scale", "rollout", "generator", "seed", "process_group")


def shift_actions(actions: Tensor, steps: int = 1, fill: str = "repeat") -> Tensor:
    """Shift a control sequence forward in time: drop the first ``steps`` actions, pad the end.

    ``out[..., t, :] = actions[..., t + steps, :]`` for ``t < H - steps``; the last ``steps``
    rows are the last action repeated (``fill="repeat"``) or zeros (``fill="zero"``).

    Args:
        actions: ``[..., H, nu]``.
        steps: how many control steps have elapsed, ``0 <= steps <= H``.
        fill: ``"repeat"`` or ``"zero"``.

    Returns:
        A new tensor ``[..., H, nu]``.

    Example:
        >>> shift_actions(torch.tensor([[1.0], [2.0], [3.0]]))[:, 0].tolist()
        [2.0, 3.0, 3.0]
        >>> shift_actions(torch.tensor([[1.0], [2.0], [3.0]]), fill="zero")[:, 0].tolist()
        [2.0, 3.0, 0.0]
    """
    if not isinstance(actions, Tensor) or actions.dim() < 2:
        got = tuple(actions.shape) if isinstance(actions, Tensor) else type(actions).__name__
        raise ValueError(f"actions must be a tensor [..., H, nu], got {got}")
    horizon = actions.shape[-2]
    steps = check_int("steps", steps, minimum=0, maximum=horizon)
    if fill not in SHIFT_FILLS:
        raise ValueError(f"fill must be one of {SHIFT_FILLS}, got {fill!r}")
    if steps == 0:
        return actions.clone()
    if fill == "zero":
        pad = torch.zeros_like(actions[..., :steps, :])
    else:
        pad = actions[..., -1:, :].expand(*actions.shape[:-2], steps, actions.shape[-1])
    return torch.cat([actions[..., steps:, :], pad], dim=-2)


def warm_start_sigmas(
    num_steps: int, warm_noise: float, beta0: float = 1e-4, beta1: float = 1e-2, noise: str = "official"
) -> Tensor:
    """The sampling standard deviations of one warm-started control step, in the order used.

    The linear schedule of ``num_steps`` levels (same ``beta0``, ``beta1``, ``noise`` as a cold
    start), scaled so that the first step samples at ``warm_noise``:
    ``sigma'_i = sigma_i * warm_noise / sigma_{N-1}``, for ``i = N-1, ..., 0``.

    Args:
        num_steps: diffusion steps per control step ``K >= 1``.
        warm_noise: the first step's standard deviation, ``> 0``.
        beta0, beta1, noise: the schedule ([`linear_schedule`][torch_mbd.schedule.linear_schedule]).

    Returns:
        ``[K]`` float64, decreasing (constant for ``K = 1``), first entry ``warm_noise``.
    """
    warm_noise = check_positive("warm_noise", warm_noise)
    num_steps = check_int("num_steps", num_steps, minimum=1)
    sigmas = linear_schedule(num_steps, check_real("beta0", beta0), check_real("beta1", beta1), noise).sigmas.flip(0)
    return sigmas * (warm_noise / float(sigmas[0]))


def horizon_noise_scale(horizon: int, horizon_noise: float, num_knots: int | None = None) -> Tensor:
    """The multiplier of a warm start's sampling noise along the horizon (DIAL-MPC style).

    ``scale(t) = exp(horizon_noise * (t / (H - 1) - 1))`` at every control step ``t = 0 .. H-1``
    (or at every knot time, [`knot_times`][torch_mbd.knots.knot_times]): later controls are noisier, the
    last one gets ``1`` and the first ``exp(-horizon_noise)``. ``H = 1``: ``1``.

    Args:
        horizon: ``H >= 1``.
        horizon_noise: the annealing rate, ``>= 0`` (``0``: every entry is ``1``).
        num_knots: ``K`` for a knot plan, or ``None`` for one action per control step.

    Returns:
        ``[H, 1]`` (or ``[K, 1]``) float64, broadcastable to the plan's ``[H, nu]`` (``[K, nu]``).

    Example:
        >>> [round(x, 4) for x in horizon_noise_scale(3, 1.0)[:, 0].tolist()]  # exp(-1), exp(-1/2), 1
        [0.3679, 0.6065, 1.0]
    """
    horizon = check_int("horizon", horizon, minimum=1)
    horizon_noise = check_positive("horizon_noise", horizon_noise, allow_zero=True)
    if num_knots is None:
        times = torch.arange(horizon, dtype=torch.float64)
    else:
        times = knot_times(num_knots, horizon)
    if horizon == 1:
        return torch.ones(times.numel(), 1, dtype=torch.float64)
    return torch.exp(horizon_noise * (times / (horizon - 1) - 1)).unsqueeze(-1)


class MPCStep(NamedTuple):
    """What the last [`MPC.act`][torch_mbd.mpc.MPC.act] did (``controller.last_step``).

    Attributes:
        action: ``[nu]`` the action returned.
        actions: ``[H, nu]`` the plan it came from (a copy; with knots, their interpolated controls).
        warm: whether the plan was warm-started from the previous one.
        diffusion_steps: diffusion steps run.
        sample_reward: mean per-sample reward of the last diffusion step (the model's prediction).
        time: wall time of the call in seconds.
        knots: ``[K, nu]`` the knots of the plan (a copy), or ``None`` without knots.
    """

    action: Tensor
    actions: Tensor
    warm: bool
    diffusion_steps: int
    sample_reward: float
    time: float
    knots: Tensor | None = None

    def __repr__(self) -> str:
        """One line: the action and the plan's shapes, not their values (a plan has ``H x nu`` numbers)."""
        knots = "" if self.knots is None else f", knots=[{', '.join(map(str, self.knots.shape))}]"
        action = ", ".join(f"{float(a):.4g}" for a in self.action.reshape(-1)[:4])
        more = ", ..." if self.action.numel() > 4 else ""
        return (
            f"MPCStep(action=[{action}{more}], actions=[{', '.join(map(str, self.actions.shape))}]{knots}, "
            f"warm={self.warm}, diffusion_steps={self.diffusion_steps}, sample_reward={self.sample_reward:.4g}, "
            f"time={self.time:.3g}s)"
        )


class MPC:
    """Receding-horizon Model-Based Diffusion: plan from the current state, apply the first action.

    Each [`act`][torch_mbd.mpc.MPC.act] (also ``controller(state)``) sets ``model.initial_state = state``, runs a
    cold-start diffusion the first time and a short warm-started one afterwards (see
    `torch_mbd.mpc`), and returns the first action of the plan. Every diffusion step is one
    [`MBDOptimizer.step`][torch_mbd.optim.MBDOptimizer.step] over ``num_samples`` rollouts of
    ``horizon`` steps; one explicit generator carries the randomness from call to call.

    Args:
        model: a [`RolloutModel`][torch_mbd.rollout.RolloutModel] with a settable ``initial_state``.
        horizon: planning horizon ``H``; default ``model.horizon``.
        num_samples: rollouts per diffusion step ``n``.
        temperature: ``lambda`` of the softmax weights, or ``"auto"`` (set every step from the rewards to
            reach ``target_ess``, an [`MBDOptimizer`][torch_mbd.optim.MBDOptimizer] option). The default
            stays ``0.1`` (``MBDOptimizer``'s; [`plan`][torch_mbd.plan]'s is ``"auto"``), for a
            measured reason: on hopper's closed loop (5 settings, 18 deterministic episodes each)
            ``"auto"`` changed the mean reward by -0.03 to +0.09, each within one standard error of
            the paired difference, while its bisection costs 5-10 % more CPU per control step, which
            a real-time controller pays in rate; with ``keep_best="sample"`` and one diffusion step a
            warm start discards the weights anyway (docs/mpc.md, "Temperature").
        diffusion_steps: diffusion steps of every warm-started control step ``K``.
        warm_noise: the sampling standard deviation of a warm start's first step (actions are
            normalized to ``model.action_bounds``, usually ``[-1, 1]``).
        initial_steps: diffusion steps of a cold start (the paper plans with 100).
        shift: how the shifted plan is padded: ``"repeat"`` the last action or ``"zero"``.
        beta0: first beta of the linear schedule (both kinds of start).
        beta1: last beta of the linear schedule.
        noise: the noise convention, ``"official"`` or ``"paper"``.
        seed: seed of the sampling generator when ``generator`` is ``None``.
        generator: a ``torch.Generator`` on the model's device.
        num_knots: plan ``K`` knots per action dimension, interpolated to the ``H`` controls
            ([`torch_mbd.knots`][torch_mbd.knots]), ``1 <= K <= H``; ``None`` (default): one action per control step.
        interpolation: ``"zero"``, ``"linear"`` or ``"cubic"`` (with ``num_knots``).
        keep_best: ``False`` (default): the plan is the diffusion's final estimate. ``True``: the best
            sample the diffusion evaluated replaces the estimate when its reward is higher (one extra
            rollout per control step, of the estimate; with a deterministic model the plan is then
            never worse than any sample). ``"sample"``: the plan is always the best sample evaluated
            (predictive sampling's rule; no extra rollout).
        horizon_noise: annealing along the horizon on warm starts, ``>= 0``: the noise of control
            step (knot time) ``t`` is multiplied by ``exp(horizon_noise * (t / (H - 1) - 1))``
            (`horizon_noise_scale`); ``0`` (default) turns it off.
        process_group: spread each step's rollouts over ``torch.distributed`` ranks (every rank
            must call [`act`][torch_mbd.mpc.MPC.act] with the same state); see [`MBDOptimizer`][torch_mbd.optim.MBDOptimizer].
        torch_threads: torch intra-op threads while planning (restored after every call): default 1,
            or ``$TORCH_MBD_THREADS``; ``"torch"`` keeps torch's setting ([`torch_mbd.threads`][torch_mbd.threads]).
        **options: other [`MBDOptimizer`][torch_mbd.optim.MBDOptimizer] options (``step_scale``, ``fraction``, ...).

    Example:
        >>> controller = MPC(model, horizon=20, num_samples=128, diffusion_steps=3, seed=0)  # doctest: +SKIP
        >>> state = system.reset()                                                            # doctest: +SKIP
        >>> for t in range(100):                                                              # doctest: +SKIP
        ...     state = system.step(controller(state))
    """

    def __init__(
        self,
        model,
        horizon: int | None = None,
        num_samples: int = 256,
        temperature: float = 0.1,
        diffusion_steps: int = 5,
        warm_noise: float = 0.2,
        initial_steps: int = 100,
        shift: str = "repeat",
        beta0: float = 1e-4,
        beta1: float = 1e-2,
        noise: str = "official",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        process_group=None,
        torch_threads: int | str | None = None,
        num_knots: int | None = None,
        interpolation: str = "cubic",
        horizon_noise: float = 0.0,
        keep_best: bool | str = False,
        **options,
    ):
        for attr in ("action_dim", "action_bounds", "rollout", "initial_state"):
            if not hasattr(model, attr):
                raise TypeError(f"model must be a RolloutModel with a settable initial_state; it has no {attr!r}")
        reserved = sorted(set(options) & set(_RESERVED))
        if reserved:
            raise TypeError(f"MPC sets {reserved} itself; use its own arguments instead")
        self.model = model
        self.device = torch.device(getattr(model, "device", "cpu"))
        lower, upper = (torch.as_tensor(b, device=self.device) for b in model.action_bounds)
        self.dtype = lower.dtype if lower.is_floating_point() else torch.get_default_dtype()
        self.bounds = (lower.to(self.dtype), upper.to(self.dtype))
        self.horizon = check_int("horizon", getattr(model, "horizon", None) if horizon is None else horizon, minimum=1)
        self.action_dim = check_int("model.action_dim", model.action_dim, minimum=1)
        self.num_samples = check_int("num_samples", num_samples, minimum=1)
        self.temperature = check_temperature("temperature", temperature)
        if not (isinstance(keep_best, str) and keep_best == "sample"):
            try:
                keep_best = check_bool("keep_best", keep_best)
            except ValueError:
                raise TypeError(f"keep_best must be True, False or 'sample', got {keep_best!r}") from None
        self.keep_best = keep_best
        self.diffusion_steps = check_int("diffusion_steps", diffusion_steps, minimum=1)
        self.initial_steps = check_int("initial_steps", initial_steps, minimum=1)
        self.warm_noise = check_positive("warm_noise", warm_noise)
        if shift not in SHIFT_FILLS:
            raise ValueError(f"shift must be one of {SHIFT_FILLS}, got {shift!r}")
        self.shift = shift
        beta0, beta1 = check_real("beta0", beta0), check_real("beta1", beta1)
        self.schedule_options = dict(beta_first=beta0, beta_last=beta1, noise_convention=noise)
        # validates beta0, beta1 and noise now rather than at the first call
        top = float(linear_schedule(self.diffusion_steps, beta0, beta1, noise).sigmas[-1])
        self.warm_noise_scale = self.warm_noise / top
        if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS:
            raise ValueError(f"Invalid interpolation: expected one of {INTERPOLATIONS}, got {interpolation!r}")
        self.interpolation = interpolation
        if num_knots is None:
            self.num_knots, self.knot_model = None, None
        else:
            self.num_knots = check_int("num_knots", num_knots, minimum=1, maximum=self.horizon)
            self.knot_model = KnotRollout(model, self.num_knots, interpolation, horizon=self.horizon)
            self._knot_shifts: dict[int, Tensor] = {}  # elapsed steps -> [K, K] shift matrix, built once each
        self.horizon_noise = check_positive("horizon_noise", horizon_noise, allow_zero=True)
        # a warm start's noise_scale: the scalar, or (annealed) a tensor [H or K, 1]
        self.warm_scale = self.warm_noise_scale
        if self.horizon_noise > 0:
            along = horizon_noise_scale(self.horizon, self.horizon_noise, self.num_knots)
            self.warm_scale = (self.warm_noise_scale * along).to(self.device, self.dtype)
        seed = check_seed(seed)
        if generator is None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(torch.randint(0, 2**62, (), dtype=torch.int64)) if seed is None else seed)
        elif not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        self.process_group = process_group
        resolve_threads(torch_threads)  # a bad value fails here, not at the first call
        self.torch_threads = torch_threads
        self.options = options
        self.actions: Tensor | None = None
        self.knots: Tensor | None = None
        self.last_step: MPCStep | None = None
        self._next_init: Tensor | None = None
        self._next_warm = False
        self._optimizers: dict[bool, tuple[dict, MBDOptimizer, Tensor]] = {}  # warm -> (config, optimizer, params)

    def __repr__(self) -> str:
        knots = "" if self.num_knots is None else f", num_knots={self.num_knots}, interpolation={self.interpolation!r}"
        annealed = f", horizon_noise={self.horizon_noise}" if self.horizon_noise > 0 else ""
        return (
            f"MPC(horizon={self.horizon}, num_samples={self.num_samples}, diffusion_steps={self.diffusion_steps}, "
            f"warm_noise={self.warm_noise}, initial_steps={self.initial_steps}, shift={self.shift!r}{knots}{annealed})"
        )

    def reset(self, init: Tensor | None = None, warm: bool = False) -> None:
        """Forget the plan; the next [`act`][torch_mbd.mpc.MPC.act] starts from ``init [H, nu]`` (default zeros).

        Args:
            init: the control sequence to start from (with knots: fitted to knots in least squares,
                [`fit_knots`][torch_mbd.knots.fit_knots]).
            warm: ``False``: the next call cold-starts (``initial_steps`` steps at the full noise)
                from ``init``. ``True``: it warm-starts from ``init`` as it is, without a shift
                (``diffusion_steps`` steps from ``warm_noise``): to refine an offline plan, e.g.
                one from [`torch_mbd.plan`][torch_mbd.plan] for the same initial state, in closed loop.
        """
        warm = check_bool("warm", warm)
        if init is not None:
            shape = (self.horizon, self.action_dim)
            init = check_tensor("init", init)
            if tuple(init.shape) != shape:
                raise ValueError(f"init must be a tensor of shape {shape} ([H, nu]), got {tuple(init.shape)}")
            init = init.detach().to(self.device, self.dtype).clone()
            if not bool(torch.isfinite(init).all()):
                raise ValueError("init must be finite, got NaN or inf")
            if self.num_knots is not None:
                init = fit_knots(init, self.num_knots, self.interpolation)
        elif warm:
            raise ValueError("warm=True needs an init plan to warm-start from")
        self.actions = None
        self.knots = None
        self._next_init = init
        self._next_warm = warm

    def _state(self, state) -> Tensor:
        """``state`` checked and converted to the model's device and dtype; nothing is assigned yet."""
        current = self.model.initial_state
        dtype = current.dtype if isinstance(current, Tensor) and current.is_floating_point() else self.dtype
        if isinstance(state, (list, tuple)):
            try:
                state = torch.as_tensor(state, dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"state must be a tensor, NumPy array or list of numbers, got {state!r}") from None
        elif not isinstance(state, Tensor) and type(state).__module__ != "numpy":
            raise TypeError(f"state must be a tensor (or array) of the model's state, got {type(state).__name__}")
        state = check_tensor("state", state).detach()
        setter = _validating_setter(self.model)
        if setter and state.is_floating_point():
            dtype = state.dtype  # the setter converts; a float64 state (a simulator's) keeps its precision
        state = state.to(self.device, dtype)
        if isinstance(current, Tensor) and state.shape != current.shape and not setter:
            raise ValueError(
                f"state must have the shape of model.initial_state, {tuple(current.shape)}, got {tuple(state.shape)}"
            )
        if not bool(torch.isfinite(state).all()):
            raise ValueError("state must be finite: the system diverged or the state holds NaN")
        return state

    @torch.no_grad()
    def plan(self, state, elapsed: int = 1) -> Tensor:
        """Plan from ``state`` (cold or warm start) without moving time forward.

        Args:
            state: the system's state now.
            elapsed: control steps since the state of the previous plan, ``0 <= elapsed <= H``: a
                warm start drops that many actions of the previous plan (`shift_actions`;
                with knots, [`shift_knots`][torch_mbd.knots.shift_knots]). ``1`` (default): one control
                step went by, the previous plan's first action was applied. ``0``: refine the
                previous plan from the same time. [`AsyncMPC`][torch_mbd.async_mpc.AsyncMPC] passes
                what the wall clock says. Ignored by a cold start.

        Returns:
            The plan ``[H, nu]`` (also kept in `actions`); the next call warm-starts from it
            shifted by ``elapsed`` steps.
        """
        start = time.perf_counter()
        state = self._state(state)
        elapsed = check_int("elapsed", elapsed, minimum=0, maximum=self.horizon)
        rng = self.generator.get_state()
        restore = snapshot_initial_state(self.model)  # through the model's protocol: wrappers too
        try:
            self.model.initial_state = state
            return self._plan_from_here(start, elapsed)
        except BaseException:  # a failed call changes nothing: the model's state, the RNG, the plan
            restore()
            self.generator.set_state(rng)
            raise

    def _knot_shift(self, elapsed: int) -> Tensor:
        """``[K, K]``: knots -> the knots of the same controls ``elapsed`` steps later (cached)."""
        if elapsed not in self._knot_shifts:
            matrix = shift_matrix(self.num_knots, self.horizon, elapsed, self.interpolation, self.shift)
            self._knot_shifts[elapsed] = matrix.to(self.device, self.dtype)
        return self._knot_shifts[elapsed]

    def _plan_from_here(self, start: float, elapsed: int) -> Tensor:
        warm = self.actions is not None or self._next_warm
        size = self.horizon if self.num_knots is None else self.num_knots
        if self.actions is None:  # the plan's decision variables: [H, nu] actions or [K, nu] knots
            if self._next_init is not None:
                params = self._next_init.clone()
            else:
                params = torch.zeros(size, self.action_dim, dtype=self.dtype, device=self.device)
        elif self.num_knots is None:
            params = shift_actions(self.actions, elapsed, self.shift)
        else:
            params = torch.matmul(self._knot_shift(elapsed), self.knots)  # = shift_knots(knots, H, elapsed, ...)
        steps = self.diffusion_steps if warm else self.initial_steps
        optimizer, params = self._optimizer(warm, params)
        with use_threads(self.torch_threads):
            for _ in range(steps):
                reward = optimizer.step()
            if self.keep_best:
                self._keep_best(optimizer, params)
        params = params.clone()  # the optimizer's tensor is reused by the next call of the same kind
        if self.knot_model is None:
            actions, knots = params, None
        else:
            actions, knots = self.knot_model.to_controls(params).clone(), params
        self.actions, self.knots = actions, knots
        self.last_step = MPCStep(
            action=actions[0].clone(),
            actions=actions.clone(),
            warm=warm,
            diffusion_steps=steps,
            sample_reward=float(reward),
            time=time.perf_counter() - start,
            knots=None if knots is None else knots.clone(),
        )
        return actions

    def _optimizer(self, warm: bool, start: Tensor) -> tuple[MBDOptimizer, Tensor]:
        """The optimizer of a cold (``warm=False``) or warm start, and its parameter, holding ``start``.

        Built at the first call of each kind and reused by the later ones (restarted: step count,
        best sample, warning and ``demo_reward`` as new; the same generator), which gives the plans
        a new optimizer would give, bit for bit (tested), without checking the options, bounds and
        layout again at every control step. Rebuilt when what it was built from changed (e.g.
        ``controller.num_samples`` set between calls).
        """
        steps, noise_scale = (self.diffusion_steps, self.warm_scale) if warm else (self.initial_steps, 1.0)
        config = dict(
            num_samples=self.num_samples,
            temperature=self.temperature,
            num_steps=steps,
            bounds=self.bounds,
            noise_scale=noise_scale,
            rollout=self.model.rollout if self.knot_model is None else self.knot_model.rollout,
            generator=self.generator,
            process_group=self.process_group,
            torch_threads="torch",  # the threads of use_threads(self.torch_threads) in _plan_from_here
            **self.schedule_options,
            **self.options,
        )
        cached = self._optimizers.get(warm)
        if cached is not None and _same(cached[0], config):
            _, optimizer, params = cached
            if params.shape == start.shape and params.dtype == start.dtype:
                params.copy_(start)
                optimizer._restart()
                return optimizer, params
        params = start.clone()
        optimizer = MBDOptimizer([params], **config)
        self._optimizers[warm] = (config, optimizer, params)
        return optimizer, params

    def _keep_best(self, optimizer: MBDOptimizer, params: Tensor) -> None:
        """Replace ``params`` (in place) by the best evaluated sample: when it beats the estimate's reward
        (``keep_best=True``), or always (``"sample"``)."""
        best = float(optimizer.best_reward.max())
        if not math.isfinite(best):
            return
        if self.keep_best == "sample":
            params.copy_(optimizer.best_params()[0])
            return
        rollout = self.model.rollout if self.knot_model is None else self.knot_model.rollout
        traj = as_trajectory(rollout(params.unsqueeze(0)), params.unsqueeze(0))
        estimate = float(traj.rewards.to(optimizer.compute_dtype).mean())
        feasible = traj.feasible is None or bool(traj.feasible.all())
        if not (math.isfinite(estimate) and feasible) or best > estimate:
            params.copy_(optimizer.best_params()[0])

    def act(self, state) -> Tensor:
        """Plan from ``state`` and return the first action ``[nu]`` to apply now (with knots: the
        first interpolated control)."""
        return self.plan(state)[0].clone()

    @torch.no_grad()
    def predict(self, state, actions: Tensor) -> Tensor | None:
        """The state after ``actions [k, nu]`` from ``state``, as the planner's model predicts it.

        One rollout of one sample; the model's ``initial_state`` is put back afterwards. Used to
        plan from where the system will be when a plan can first be applied
        ([`AsyncMPC`][torch_mbd.async_mpc.AsyncMPC]'s latency compensation).

        Returns:
            The model's state after the last action (``Trajectory.states[..., -1, :]``, e.g.
            ``[state_dim]``), or ``None`` when the model reports no states or states of another
            shape than its ``initial_state``.
        """
        state = self._state(state)
        actions = check_tensor("actions", actions).to(self.device, self.dtype)
        if actions.dim() != 2 or actions.shape[-1] != self.action_dim or actions.shape[0] < 1:
            raise ValueError(f"actions must have shape [k, {self.action_dim}] ([k, nu], k >= 1), got {tuple(actions.shape)}")
        restore = snapshot_initial_state(self.model)
        try:
            self.model.initial_state = state
            traj = as_trajectory(self.model.rollout(actions[None]), actions[None])
            shape = tuple(torch.as_tensor(self.model.initial_state).shape)
        finally:
            restore()
        if traj.states is None or tuple(traj.states.shape[-1:]) != shape or traj.feasible is not None and not bool(traj.feasible.all()):
            return None
        return traj.states[0, -1].clone()

    __call__ = act


def _same(a, b) -> bool:
    """Whether two option values are the same for an optimizer: the same object, equal numbers or
    strings of one type, the same bound method, or tuples / dicts of such."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, (bool, int, float, str)):
        return a == b
    if isinstance(a, types.MethodType):
        return a.__self__ is b.__self__ and a.__func__ is b.__func__
    if isinstance(a, tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return False


def _validating_setter(model) -> bool:
    """Whether ``model.initial_state`` is a property with a setter (which then checks the shape)."""
    attr = getattr(type(model), "initial_state", None)
    return isinstance(attr, property) and attr.fset is not None
