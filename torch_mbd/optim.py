"""``MBDOptimizer``: Model-Based Diffusion as a ``torch.optim.Optimizer``.

The math lives in :mod:`torch_mbd.denoise` and :mod:`torch_mbd.schedule`; this class keeps
the bookkeeping: which tensors are the decision variables, where the schedule stands,
the random generator, the sample buffer reused between steps, and checks on what the
user hands in.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import denoise
from .checks import check_device, check_int, check_positive, check_real, check_seed, check_tensor
from .closure import candidate_params
from .denoise import DEFAULT_TARGET_ESS
from .rollout import as_trajectory
from .schedule import linear_schedule


class StepInfo(NamedTuple):
    """What the last :meth:`MBDOptimizer.step` did (``optimizer.last_step``).

    Attributes:
        level: the diffusion level ``i`` used.
        sigma: the sampling standard deviation ``sigma_i`` (before per-group ``noise_scale``); a
            baseline's mean sampling standard deviation.
        rewards: per-sample rewards ``[B, n]`` (``-loss`` in closure mode).
        weights: the softmax weights ``[B, n]`` (a baseline's update weights: ``1/k`` on CEM's elites).
        valid: boolean ``[B]``, False where every sample had zero weight (estimate kept).
        demo_wins: boolean ``[B, n]`` of samples weighted by the demonstration, or ``None``.
        trajectory: the rollout's :class:`~torch_mbd.rollout.Trajectory` (rollout mode; this rank's
            shard under a process group), or ``None``.
        samples: the candidates ``[B, n, D]`` (flattened decision variables): a view of the buffer
            the next step overwrites; clone what you keep.
        temperature: the temperature the weights used: the float given, a ``[B]`` tensor under
            ``temperature="auto"`` (one per problem), or ``None`` for a method without one (CEM,
            CMA-ES).
    """

    level: int
    sigma: float
    rewards: Tensor
    weights: Tensor
    valid: Tensor
    demo_wins: Tensor | None
    trajectory: object | None
    samples: Tensor
    temperature: float | Tensor | None = None


AUTO_NOISE_GAIN = 4.0
"""``noise_scale="auto"`` of a network weight is ``AUTO_NOISE_GAIN / sqrt(fan_in)``."""
AUTO_FRACTION_DIM = 1000
"""``fraction="auto"`` of a network is ``min(1, AUTO_FRACTION_DIM / D)``: about this many coordinates per sample."""


def auto_noise_scale(shape: Sequence[int], gain: float = AUTO_NOISE_GAIN) -> float:
    """The automatic ``noise_scale`` of one network parameter tensor.

    A layer weight ``[out, in, *kernel]`` (2 or more dimensions) gets ``gain / sqrt(fan_in)``,
    ``fan_in = in * prod(kernel)``: a perturbation ``sigma * eps`` of it then moves each
    pre-activation by about ``sigma * gain * rms(input)``, whatever the layer's width, so a wide
    first layer (MNIST's 784 inputs) is not drowned in noise. Anything else (biases, norm
    scales) gets ``1.0``.

    Args:
        shape: the tensor's shape.
        gain: the multiplier of ``1 / sqrt(fan_in)``.

    Returns:
        The multiplier of ``sigma_i`` for this tensor.
    """
    if len(shape) < 2:
        return 1.0
    return gain / math.sqrt(max(math.prod(shape[1:]), 1))


def auto_fraction(dim: int, full_dim: int = AUTO_FRACTION_DIM) -> float:
    """The automatic ``fraction`` of coordinates perturbed per sample, for a network of ``dim`` parameters.

    ``min(1, full_dim / dim)``: every coordinate up to ``full_dim`` parameters, about ``full_dim``
    coordinates per sample above (a random-subspace step; the official MNIST script perturbs a
    hand-picked 20%).

    Args:
        dim: total number of optimized coordinates ``D``.
        full_dim: the dimension up to which every coordinate is perturbed.

    Returns:
        A fraction in ``(0, 1]``.
    """
    return min(1.0, full_dim / max(int(dim), 1))


class ConstantObjectiveWarning(RuntimeWarning):
    """Every valid sample of a step scored the same: the objective does not tell candidates apart.

    The samples are then weighted equally and the estimate moves to their plain mean (a random
    walk). :class:`MBDOptimizer` warns once per optimizer.
    """


def _check_fraction(value) -> float | str:
    if isinstance(value, str) and value == "auto":
        return value
    try:
        frac = check_real("fraction", value)
    except ValueError:
        raise ValueError(f"Invalid fraction: expected a number in (0, 1] or 'auto', got {value!r}") from None
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"Invalid fraction: expected a number in (0, 1] or 'auto', got {value!r}")
    return frac


def check_temperature(name: str, value, *, allow_auto: bool = True) -> float | str:
    """A temperature checked: a finite number ``> 0``, or ``"auto"`` (with ``allow_auto``).

    Args:
        name: the argument's name, for the error message.
        value: what the user gave (numbers may be numpy scalars or 0-dim tensors).
        allow_auto: whether ``"auto"`` (:func:`~torch_mbd.denoise.ess_temperature` each step) is accepted.

    Returns:
        ``"auto"`` or the temperature as a float.

    Raises:
        ValueError: anything else, naming ``name``.
    """
    if isinstance(value, str):
        if allow_auto and value == "auto":
            return value
        expected = "a number > 0 or 'auto'" if allow_auto else "a number > 0"
        raise ValueError(f"Invalid {name}: expected {expected}, got {value!r}")
    return check_positive(name, value)


def check_target_ess(name: str, value) -> float:
    """An effective-sample-size fraction checked: a number in ``(0, 1]``, returned as a float."""
    target = check_positive(name, value)
    if target > 1.0:
        raise ValueError(f"Invalid {name}: expected a fraction of the samples in (0, 1], got {target!r}")
    return target


def _check_option_tensor(name: str, value: Tensor, event_shapes: list[tuple], params: list[Tensor]) -> None:
    """A per-coordinate group option (a bound, ``noise_scale``): floating, on the params' device and
    dtype, broadcastable to each parameter's shape without its batch dimensions."""
    if not value.is_floating_point():
        raise ValueError(f"Invalid {name}: expected a floating-point tensor, got dtype {value.dtype}")
    for p, shape in zip(params, event_shapes):
        if value.device != p.device:
            raise ValueError(f"Invalid {name}: it is on {value.device}, params on {p.device}")
        if value.dtype != p.dtype:
            raise ValueError(f"Invalid {name}: it has dtype {value.dtype}, params {p.dtype}")
        try:
            fits = torch.broadcast_shapes(tuple(value.shape), shape) == shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"Invalid {name}: shape {tuple(value.shape)} does not broadcast to the parameter's shape {shape}"
                " (without its batch dimensions)"
            )


def _check_noise_scale(value, event_shapes: list[tuple], params: list[Tensor]) -> float | str | Tensor:
    """``noise_scale``: ``"auto"``, a number ``>= 0``, or a tensor of them (per coordinate)."""
    if isinstance(value, str) and value == "auto":
        return value
    if isinstance(value, Tensor) and value.dim() > 0:
        _check_option_tensor("noise_scale", value, event_shapes, params)
        if not bool((torch.isfinite(value) & (value >= 0)).all()):
            raise ValueError("Invalid noise_scale: every entry of the tensor must be a finite number >= 0")
        return value
    return check_positive("noise_scale", value, allow_zero=True)


def _check_bound(name: str, bound, event_shapes: list[tuple], params: list[Tensor]):
    """One side of ``bounds``: ``None``, a number (numpy scalars too) or a tensor; returns it checked."""
    side = name.split()[-1]
    if bound is None:
        return None
    if not isinstance(bound, Tensor):
        try:
            value = check_real(name, bound, finite=False)
        except ValueError:
            raise ValueError(f"Invalid {name}: expected a number, a tensor or None, got {bound!r}") from None
        if (side == "lower" and value == math.inf) or (side == "upper" and value == -math.inf):
            raise ValueError(f"Invalid {name}: {value} leaves no value a candidate can take")
        return value
    _check_option_tensor(name, bound, event_shapes, params)
    if bool(torch.isnan(bound).any()):
        raise ValueError(f"Invalid {name}: it holds NaN; use -inf / inf for an unbounded coordinate")
    if side == "lower" and bool((bound == math.inf).any()):
        raise ValueError(f"Invalid {name}: it holds +inf, which leaves no value a candidate can take")
    if side == "upper" and bool((bound == -math.inf).any()):
        raise ValueError(f"Invalid {name}: it holds -inf, which leaves no value a candidate can take")
    return bound


def _mean_objective(rewards: Tensor, feasible: Tensor | None, rollout_mode: bool) -> Tensor:
    """What :meth:`MBDOptimizer.step` returns: the mean reward (rollout mode) or mean loss (closure
    mode) over the finite, feasible samples, a 0-dim tensor (0 without one)."""
    ok = torch.isfinite(rewards) if feasible is None else torch.isfinite(rewards) & feasible
    mean = torch.where(ok, rewards, torch.zeros_like(rewards)).sum() / ok.sum().clamp(min=1)
    return mean if rollout_mode else -mean


def _check_real_dtype(name: str, values: Tensor) -> None:
    """Losses and rewards must be real numbers: floating or integer tensors, not bool or complex."""
    if values.dtype == torch.bool or values.is_complex():
        raise TypeError(f"{name} must be real numbers (a floating-point or integer tensor), got dtype {values.dtype}")


class MBDOptimizer(Optimizer):
    r"""Model-Based Diffusion (Pan et al.), one reverse-diffusion step per :meth:`step`.

    The parameters are the decision variables ``Ybar``: a control sequence ``[..., H, nu]``
    in trajectory optimization, or ``model.parameters()`` for gradient-free training. Each
    step draws ``num_samples`` candidates ``Ybar + sigma_i * eps`` (clipped to ``bounds``),
    scores them, weights them by ``softmax((R - mean R) / std R / temperature)`` (infeasible
    and non-finite samples get weight 0; with a demonstration, the max rule of Eq. 13),
    and moves ``Ybar`` by Monte Carlo score ascent (Eq. 6), which with the default step
    size lands on the weighted mean. After every step the parameters hold the new
    estimate, so the model is usable at any time. The best valid sample evaluated so far is
    kept beside it (:attr:`best_reward`, :attr:`best_candidate`, :meth:`best_params`).

    :meth:`step` is the one sampling step of every method (the baselines of
    :mod:`torch_mbd.baselines` and :mod:`torch_mbd.paper_baselines` subclass this class): draw
    ``Ybar + std * eps`` with ``std`` from :meth:`_sampling_std`, clip, evaluate, keep the best,
    and let :meth:`_update` turn the evaluated samples into the new estimate. A method is those
    two hooks.

    The objective comes from one of two places:

    * ``rollout`` (trajectory optimization): a callable
      ``actions[..., n, H, nu] -> Trajectory(states[..., n, H, nx], rewards[..., n, H], feasible[..., n] | None)``
      (or the tuple ``(rewards, states, feasible)``), e.g. a :class:`~torch_mbd.rollout.RolloutModel`'s
      ``rollout``. There must be exactly one parameter, of shape ``[..., H, nu]``; leading
      dimensions are independent problems, diffused together. The reward of a sample is
      its mean step reward. Call ``step()`` without a closure.
    * ``closure`` (anything else): ``step(closure)`` calls ``closure(candidates)`` with a list of
      tensors, one per parameter in parameter-group order, each ``[n, *param.shape]``
      (views into a buffer reused between steps: read them, do not keep or modify them),
      and expects one **loss** per candidate, a ``[n]`` tensor (lower is better). Unlike
      ``LBFGS``'s closure it scores a batch of candidates and needs no ``backward()``.

    Args:
        params: tensors or parameter groups. Group options: ``bounds``, ``noise_scale``, ``fraction``.
        num_samples: candidates per step ``n``.
        temperature: ``lambda > 0``; lower is greedier. ``"auto"`` sets it each step, per problem,
            from the rewards themselves: the ``lambda`` at which the weights keep an effective
            sample size of ``target_ess`` times the number of valid samples
            (:func:`~torch_mbd.denoise.ess_temperature`); ``last_step.temperature`` says which.
        target_ess: the fraction in ``(0, 1]`` ``temperature="auto"`` aims at (default
            :data:`DEFAULT_TARGET_ESS`); unused with a number.
        num_steps: diffusion steps ``N``; the optimizer walks the schedule from level ``N-1``
            to ``0`` and **stays at level 0 (the final, smallest noise) for any further step**.
        beta0: first beta of the linear schedule, in ``(0, 1)``.
        beta1: last beta of the linear schedule, in ``(0, 1)``.
        noise: sampling-noise convention, ``"official"`` (``sqrt(1 - alpha_bar_i)``, default) or
            ``"paper"`` (``sqrt(1/alpha_bar_i - 1)``); see :mod:`torch_mbd.schedule`.
        bounds: ``(lower, upper)``: numbers or tensors broadcastable to each parameter's shape
            (without its batch dimensions); candidates are clipped to them. ``-inf`` / ``inf`` (also
            per coordinate, inside a tensor) leaves that side unbounded; NaN is refused.
        noise_scale: per-group multiplier of ``sigma_i``, a number ``>= 0``, a tensor of them or
            ``"auto"`` (default). A tensor (on the params' device, in their dtype) multiplies per
            coordinate and must broadcast to each parameter's shape without its batch dimensions
            (rollout mode: ``[H, nu]``, e.g. ``[H, 1]`` to make later controls noisier).
            ``"auto"`` is ``1.0`` for plain tensors (control sequences, black-box vectors: the
            paper's behaviour, unchanged) and in rollout mode; for an ``nn.Parameter`` (a network,
            ``model.parameters()``) it is :func:`auto_noise_scale`: ``4 / sqrt(fan_in)`` for
            layer weights, ``1.0`` for biases.
        fraction: per-group fraction of coordinates perturbed in each candidate, in ``(0, 1]``, or
            ``"auto"`` (default): ``1.0`` for plain tensors and in rollout mode; for
            ``nn.Parameter`` tensors :func:`auto_fraction` of the total dimension ``D``,
            ``min(1, 1000 / D)``.
        step_scale: multiple of the optimal score-ascent step ``1 - alpha_bar_i`` (``1`` moves
            to the weighted mean; smaller values move part of the way).
        rollout: the batched rollout callable described above, or ``None`` for closure mode.
        demo: optional demonstration (section 4.3): in rollout mode demonstrated states
            ``[H, nx]`` (or ``[..., H, nx]`` per problem, or ``[H, k]`` holding only the ``k``
            dimensions selected by ``demo_mask``), one per step of the states the rollout returns
            (usually the actions' ``H``; with knots, the control steps they stand for: checked at
            the first step); in closure mode a tensor of the single parameter's shape. Entries
            ``demo_mask`` excludes are ignored.
        demo_mask: boolean ``[nx]`` or ``[H, nx]`` (rollout mode) of the dimensions the
            demonstration covers; ``None`` covers all.
        demo_sigma: standard deviation of the demonstration likelihood ``N(Y | Y_demo, sigma^2)``: a
            number, or a positive tensor broadcastable to ``demo`` (one per demonstrated entry, a
            diagonal covariance: e.g. trust some coordinates of the demonstration more than others).
        demo_units: how the demonstration likelihood meets the rewards in Eq. (13):
            ``"logit"`` (default) adds ``log p_demo`` to the normalized log-weights; ``"reward"`` (the
            authors' code) normalizes it with the rewards and re-standardizes the combined
            log-weights, so the weights stay as sharp as the model's while the demonstration leads.
            See :func:`torch_mbd.denoise.demo_log_weights`.
        demo_reward: the demonstration's reward ``p_J(Y_demo)`` in per-sample reward units (mean
            step reward; ``-loss`` in closure mode). ``None`` takes the best reward of the first
            step's samples, so the demonstration attracts until the samples beat it (with either
            likelihood).
        generator: a ``torch.Generator`` on the parameters' device; ``None`` makes one seeded by
            ``seed``, or by the global RNG when ``seed`` is ``None``.
        seed: seed for the generator made when ``generator`` is ``None``.
        process_group: a ``torch.distributed`` process group (e.g. ``torch.distributed.group.WORLD``
            under ``torchrun``) to spread the evaluation of the samples over. Every rank draws the
            same samples (rank 0's generator state is broadcast at construction), evaluates its
            contiguous shard of them, and the rewards are all-gathered, so every rank holds the
            same estimate after every step, bit for bit the single-process result for an
            objective that scores each sample independently. ``None``: one process.
        demo_log_likelihood: rollout mode only: a callable ``states [B, n, T, nx] -> [B, n]`` that
            replaces the Gaussian demonstration likelihood (``demo``, ``demo_mask``, ``demo_sigma``),
            e.g. :func:`~torch_mbd.denoise.clipped_distance_log_likelihood` of points read from the
            states. ``B`` is the number of problems (the params' batch dimensions flattened), ``n`` the
            samples (this rank's shard under a process group), ``T`` and ``nx`` the rollout's; the
            states come in at least float32 (as the Gaussian compares them). It must return a
            floating-point tensor of shape ``[B, n]`` on the params' device; NaN and
            infinite values mean "no demonstration weight" for that sample (as the Gaussian's
            ``-inf``). Its values meet the rewards by the same max rule (``demo_reward``,
            ``demo_units``) and are shifted per step so that the best sample's is 0, so only their
            differences matter. Give it instead of ``demo`` (not both); ``demo_sigma`` is then
            unused. It is not part of :meth:`state_dict`: pass it again to the optimizer a state is
            loaded into.

    Numbers may be Python numbers, NumPy scalars or 0-dim tensors. Rewards, weights and the weighted
    mean are computed in at least float32 (float16 / bfloat16 parameters are sampled in their own
    dtype); the weights are invariant to ``a * loss + b`` (``a > 0``); a step whose valid samples all
    score the same warns once with :class:`ConstantObjectiveWarning`. See "Errors and edge cases"
    in the user guide for what happens with NaN, infinite, infeasible, constant and empty input.

    Example:
        >>> x = torch.zeros(5)
        >>> opt = MBDOptimizer([x], num_samples=64, temperature=0.1, num_steps=50, seed=0)
        >>> for _ in range(50):
        ...     _ = opt.step(lambda cands: ((cands[0] - 0.5) ** 2).sum(-1))
        >>> bool(((x - 0.5).abs() < 0.1).all())
        True
    """

    supports_fraction = True
    """Whether the group option ``fraction`` is used (baselines perturb every coordinate)."""

    def __init__(
        self,
        params,
        num_samples: int = 256,
        temperature: float | str = 0.1,
        num_steps: int = 100,
        beta0: float = 1e-4,
        beta1: float = 1e-2,
        noise: str = "official",
        bounds: tuple | None = None,
        noise_scale: float | str = "auto",
        fraction: float | str = "auto",
        step_scale: float = 1.0,
        rollout: Callable | None = None,
        demo: Tensor | None = None,
        demo_mask: Tensor | None = None,
        demo_sigma: float | Tensor = 1.0,
        demo_reward: float | None = None,
        demo_units: str = "logit",
        generator: torch.Generator | None = None,
        seed: int | None = None,
        process_group=None,
        target_ess: float = DEFAULT_TARGET_ESS,
        demo_log_likelihood: Callable[[Tensor], Tensor] | None = None,
    ):
        self.num_samples = check_int("num_samples", num_samples, minimum=1)
        self.temperature = check_temperature("temperature", temperature)
        self.target_ess = check_target_ess("target_ess", target_ess)
        self.step_scale = check_positive("step_scale", step_scale)
        if not isinstance(demo_units, str) or demo_units not in denoise.DEMO_UNITS:
            raise ValueError(f"Invalid demo_units: expected one of {denoise.DEMO_UNITS}, got {demo_units!r}")
        self.demo_units = demo_units
        self.schedule = linear_schedule(num_steps, beta0, beta1, noise)  # checks the four arguments
        self.num_steps, self.noise = self.schedule.num_steps, noise
        self.beta0, self.beta1 = check_real("beta0", beta0), check_real("beta1", beta1)
        seed = check_seed(seed)
        demo_reward = None if demo_reward is None else check_real("demo_reward", demo_reward)
        if rollout is not None and not callable(rollout):
            raise TypeError(f"rollout must be callable (actions -> Trajectory), got {type(rollout).__name__}")
        self.rollout = rollout
        if demo_log_likelihood is not None:
            if not callable(demo_log_likelihood):
                raise TypeError(
                    "demo_log_likelihood must be callable (states [B, n, T, nx] -> log-likelihood [B, n]), "
                    f"got {type(demo_log_likelihood).__name__}"
                )
            if rollout is None:
                raise ValueError(
                    "demo_log_likelihood needs rollout mode: it scores the rollout's states, and closure mode has none"
                )
            if demo is not None or demo_mask is not None:
                raise ValueError(
                    "give demo (with demo_mask, the Gaussian likelihood) or demo_log_likelihood, not both"
                )
        self.demo_log_likelihood = demo_log_likelihood
        """The callable of ``demo_log_likelihood`` (rollout mode), or ``None`` (the Gaussian of ``demo``, if any)."""
        defaults = dict(bounds=bounds, noise_scale=noise_scale, fraction=fraction)
        super().__init__(params, defaults)

        self._params: list[Tensor] = [p for g in self.param_groups for p in g["params"]]
        first = self._params[0]
        for p in self._params:
            if not p.is_floating_point():
                raise TypeError(f"params must be floating-point tensors, got dtype {p.dtype}")
            check_device(p.device, "params")  # the meta device holds no data to optimize
            if p.device != first.device:
                raise ValueError(f"params must all be on one device, got {first.device} and {p.device}")
            if p.dtype != first.dtype:
                raise ValueError(f"params must all have one dtype, got {first.dtype} and {p.dtype}")
        self.device, self.dtype = first.device, first.dtype
        self.compute_dtype = denoise.statistics_dtype(self.dtype)  # rewards, weights, means: >= float32
        if rollout is not None:
            if len(self._params) != 1 or first.dim() < 2:
                shapes = [tuple(p.shape) for p in self._params]
                raise ValueError(
                    "with a rollout, params must be exactly one action tensor of shape [..., H, nu], "
                    f"got shapes {shapes}"
                )
            self.batch_shape = tuple(first.shape[:-2])
            if math.prod(self.batch_shape) == 0:
                raise ValueError(
                    f"params: the action tensor has shape {tuple(first.shape)}, an empty batch of problems; "
                    "give at least one problem ([..., H, nu] with every leading size >= 1)"
                )
        else:
            self.batch_shape = ()
        if self._flat_dim() == 0:
            raise ValueError(
                f"params hold no element to optimize (shapes {[tuple(p.shape) for p in self._params]})"
            )

        if generator is None:
            generator = torch.Generator(device=self.device)
            if seed is None:
                seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
            generator.manual_seed(seed)
        elif not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        elif generator.device.type != self.device.type:
            raise ValueError(f"generator is on {generator.device}, params on {self.device}: they must match")
        self.generator = generator
        self.process_group = process_group
        if process_group is not None:
            self._broadcast_generator_state()

        self._demo, self._demo_mask = self._prepare_demo(demo, demo_mask)
        self.demo_sigma = self._prepare_demo_sigma(demo_sigma)
        self._demo_flat: tuple | None = None  # ((T, nx), demo, mask, sigma) flattened by _demo_features
        self.demo_reward = demo_reward
        self.steps_done = 0
        self.last_step: StepInfo | None = None
        self._layout = None
        self._buffer: Tensor | None = None
        self._warned_constant = False
        self._notes: dict = {}  # what this step's _update reports in StepInfo (demo_wins, temperature)
        self._reset_best()

    @property
    def _has_demo(self) -> bool:
        """Whether a demonstration weighs in (a Gaussian ``demo`` or a ``demo_log_likelihood``)."""
        return self._demo is not None or getattr(self, "demo_log_likelihood", None) is not None

    # ----------------------------------------------------------------- set-up helpers
    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            group.update(self._checked_group_options(group, group["params"]))
        except (ValueError, TypeError):
            self.param_groups.pop()  # a rejected group leaves the optimizer as it was
            raise
        if hasattr(self, "_params"):  # a group added after construction
            self._params = [p for g in self.param_groups for p in g["params"]]
            self._layout = None
            self._reset_best()  # the candidates had other coordinates

    def _checked_group_options(self, group: dict, params: list[Tensor]) -> dict:
        """``noise_scale``, ``fraction`` and ``bounds`` of a param group, checked (nothing is changed)."""
        return dict(
            noise_scale=_check_noise_scale(group["noise_scale"], self._event_shapes(params), params),
            fraction=_check_fraction(group["fraction"]),
            bounds=self._check_bounds(group["bounds"], params),
        )

    def _event_shapes(self, params: list[Tensor]) -> list[tuple]:
        """Each parameter's shape without its batch dimensions (rollout mode: ``[H, nu]``)."""
        rollout_mode = getattr(self, "rollout", None) is not None
        return [tuple(p.shape[-2:]) if rollout_mode and p.dim() >= 2 else tuple(p.shape) for p in params]

    def _check_bounds(self, bounds, params):
        """``bounds`` checked against ``params``: ``None`` or ``(lower, upper)``.

        Each side is ``None`` (unbounded), a number or a tensor broadcastable to each parameter's shape
        without its batch dimensions; ``-inf`` (lower) and ``inf`` (upper) leave a coordinate unbounded
        on that side. NaN, ``lower = inf``, ``upper = -inf``, ``lower > upper``, other shapes, dtypes or
        devices are rejected.
        """
        if bounds is None:
            return None
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise ValueError(f"Invalid bounds: expected None or a (lower, upper) pair, got {bounds!r}")
        shapes = self._event_shapes(params)  # what a bound must broadcast to
        lower = _check_bound("bounds lower", bounds[0], shapes, params)
        upper = _check_bound("bounds upper", bounds[1], shapes, params)
        if lower is not None and upper is not None:
            if bool(torch.any(torch.as_tensor(lower) > torch.as_tensor(upper))):
                raise ValueError("Invalid bounds: lower must be <= upper everywhere")
        return (lower, upper)

    def _prepare_demo(self, demo, mask):
        """``demo`` and ``demo_mask`` checked; returned as ``(demo, mask)`` in :attr:`compute_dtype`.

        Closure mode: both flat ``[1, D]``. Rollout mode: ``demo [..., H, nx or k]`` and ``mask [nx]`` or
        ``[H, nx]`` as given (``nx`` is checked against the first rollout's states).
        """
        if demo is None:
            if mask is not None:
                raise ValueError("demo_mask was given without demo")
            return None, None
        if not isinstance(demo, Tensor):  # a NumPy array is taken in the params' dtype, on their device
            demo = check_tensor("demo", demo).to(self.device, self.dtype)
        if demo.device != self.device or demo.dtype != self.dtype:
            raise ValueError(f"demo must be on {self.device} with dtype {self.dtype}, got {demo.device}, {demo.dtype}")
        if mask is not None:
            mask = check_tensor("demo_mask", mask, kind="bool").to(self.device)
            if not bool(mask.any()):
                raise ValueError("Invalid demo_mask: it covers no entry of the demonstration (every entry is False)")
        demo = demo.to(self.compute_dtype)
        p = self._params[0]
        if self.rollout is None:
            if len(self._params) != 1:
                shapes = ", ".join(str(tuple(q.shape)) for q in self._params)
                raise ValueError(
                    f"in closure mode demo needs exactly one parameter, got {len(self._params)} ({shapes}): "
                    "optimize a single tensor (e.g. one flat vector split in the closure), or give no demo"
                )
            if tuple(demo.shape) != tuple(p.shape):
                raise ValueError(
                    f"in closure mode demo must have the shape of the single parameter {tuple(p.shape)}, "
                    f"got {tuple(demo.shape)}"
                )
            if mask is not None and tuple(mask.shape) != tuple(p.shape):
                raise ValueError(f"demo_mask must have shape {tuple(p.shape)}, got {tuple(mask.shape)}")
            covered = demo if mask is None else demo[mask]
            self._check_demo_finite(covered)
            flat_mask = None if mask is None else mask.reshape(1, -1)
            return demo.reshape(1, -1), flat_mask
        # Rollout mode: demo describes states [..., T, nx]; T and nx are checked against the first
        # rollout's states (T is the action tensor's H, unless the decision variables stand for a longer
        # control sequence, e.g. knots).
        if demo.dim() < 2:
            raise ValueError(f"demo must have shape [..., T, nx] (T = H, the states' steps), got {tuple(demo.shape)}")
        horizon = demo.shape[-2]
        try:
            fits = torch.broadcast_shapes(tuple(demo.shape[:-2]), self.batch_shape) == self.batch_shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"demo of shape {tuple(demo.shape)}: its leading dimensions {tuple(demo.shape[:-2])} must "
                f"broadcast to the params' batch dimensions {self.batch_shape}"
            )
        if mask is None:
            self._check_demo_finite(demo)
            return demo, None
        if mask.dim() not in (1, 2) or (mask.dim() == 2 and mask.shape[0] != horizon):
            raise ValueError(
                f"demo_mask must have shape [nx] or [T={horizon}, nx] (the demo's T), got {tuple(mask.shape)}"
            )
        if demo.shape[-1] == mask.shape[-1]:  # a full demo [..., H, nx]: only the covered entries count
            self._check_demo_finite(demo[..., mask])
        elif mask.dim() == 1 and demo.shape[-1] == int(mask.sum()):  # a partial demo [..., H, k]
            self._check_demo_finite(demo)
        else:
            raise ValueError(
                f"demo has {demo.shape[-1]} dimensions per step and demo_mask covers {mask.shape[-1]} state "
                f"dimensions ({int(mask.sum())} selected): demo must have nx = {mask.shape[-1]} dimensions, or "
                "as many as a [nx] demo_mask selects"
            )
        return demo, mask

    @staticmethod
    def _check_demo_finite(covered: Tensor) -> None:
        if not bool(torch.isfinite(covered).all()):
            bad = int((~torch.isfinite(covered)).sum())
            raise ValueError(
                f"Invalid demo: {bad} entr{'y' if bad == 1 else 'ies'} the demonstration covers "
                "(demo_mask True) is NaN or infinite; exclude them with demo_mask"
            )

    def _prepare_demo_sigma(self, sigma):
        """``demo_sigma`` checked: a float, or a tensor of the demo's shape (flat ``[1, D]`` in closure mode)."""
        if not isinstance(sigma, Tensor):
            return check_positive("demo_sigma", sigma)
        if not sigma.is_floating_point():
            raise TypeError(f"demo_sigma must be a number or a floating-point tensor, got dtype {sigma.dtype}")
        sigma = sigma.to(self.device, self.compute_dtype)
        if not bool(torch.isfinite(sigma).all()) or not bool((sigma > 0).all()):
            raise ValueError("Invalid demo_sigma: every entry must be a finite number > 0")
        if self._demo is None:
            return sigma
        shape = self._demo.shape if self.rollout is not None else self._params[0].shape  # closure: demo is flat
        try:
            sigma = sigma.expand(shape)
        except RuntimeError:
            raise ValueError(
                f"demo_sigma of shape {tuple(sigma.shape)} must broadcast to the demo's shape {tuple(shape)}"
            ) from None
        return sigma.reshape(1, -1) if self.rollout is None else sigma

    def _demo_features(self, nx: int, steps: int) -> tuple[Tensor, Tensor | None, float | Tensor]:
        """Flatten the rollout-mode demo, mask and sigma to ``[B, T*nx]`` once the states' ``T = steps``
        and ``nx`` are known (then reused)."""
        if self._demo_flat is not None and self._demo_flat[0] == (steps, nx):
            return self._demo_flat[1:]
        demo, mask, sigma = self._demo, self._demo_mask, self.demo_sigma
        horizon = demo.shape[-2]
        if horizon != steps:
            raise ValueError(
                f"demo describes {horizon} steps ([..., T={horizon}, nx]), the rollout returned states of "
                f"{steps} steps: the demonstration must have one state per step of the rollout"
            )
        if mask is not None and mask.shape[-1] != nx:
            raise ValueError(f"demo_mask covers {mask.shape[-1]} state dimensions, the rollout has nx={nx}")
        if demo.shape[-1] != nx:
            if mask is None or mask.dim() != 1 or int(mask.sum()) != demo.shape[-1]:
                raise ValueError(
                    f"demo has {demo.shape[-1]} dimensions per step; it must have nx={nx}, or as many as "
                    "demo_mask [nx] selects"
                )
            full = torch.full((*demo.shape[:-1], nx), float("nan"), dtype=demo.dtype, device=demo.device)
            full[..., mask] = demo
            demo = full
            if isinstance(sigma, Tensor):  # entries outside the mask are never read; 1 keeps them finite
                full_sigma = torch.ones_like(full)
                full_sigma[..., mask] = sigma
                sigma = full_sigma
        B = math.prod(self.batch_shape)
        demo = demo.expand(*self.batch_shape, horizon, nx).reshape(B, horizon * nx)
        if isinstance(sigma, Tensor):
            sigma = sigma.expand(*self.batch_shape, horizon, nx).reshape(B, horizon * nx)
        if mask is not None:
            mask = mask.expand(horizon, nx).reshape(1, horizon * nx)
        self._demo_flat = ((steps, nx), demo, mask, sigma)
        return demo, mask, sigma

    def _build_layout(self):
        """Per-coordinate scale, fraction and bounds vectors over the flat ``[D]`` layout."""
        segments, scales, fracs, lowers, uppers = [], [], [], [], []
        nbatch = len(self.batch_shape)
        offset = 0
        total = sum(math.prod(p.shape[nbatch:]) for p in self._params)
        for group in self.param_groups:
            for p in group["params"]:
                shape = tuple(p.shape[nbatch:])
                numel = math.prod(shape)
                segments.append((offset, numel, shape))
                offset += numel
                kw = dict(dtype=self.dtype, device=self.device)
                # "auto": network rules for nn.Parameter tensors in closure mode, the paper's 1.0 otherwise.
                network = self.rollout is None and isinstance(p, torch.nn.Parameter)
                scale, frac = group["noise_scale"], group["fraction"]
                if isinstance(scale, str):  # "auto"
                    scale = auto_noise_scale(shape) if network else 1.0
                if frac == "auto":
                    frac = auto_fraction(total) if network else 1.0
                if not self.supports_fraction:
                    frac = 1.0
                if isinstance(scale, Tensor):  # per coordinate, checked to broadcast to the shape
                    scales.append(scale.to(**kw).expand(shape).reshape(-1))
                else:
                    scales.append(torch.full((numel,), scale, **kw))
                fracs.append(torch.full((numel,), frac, **kw))
                lo, hi = group["bounds"] if group["bounds"] is not None else (None, None)
                lo = -math.inf if lo is None else lo
                hi = math.inf if hi is None else hi
                lowers.append(torch.as_tensor(lo, **kw).expand(shape).reshape(-1))
                uppers.append(torch.as_tensor(hi, **kw).expand(shape).reshape(-1))
        scale, frac = torch.cat(scales), torch.cat(fracs)
        lower, upper = torch.cat(lowers), torch.cat(uppers)
        layout = dict(segments=segments, D=offset)
        layout["scale"] = None if bool((scale == 1).all()) else scale
        layout["fraction"] = None if bool((frac == 1).all()) else frac
        bounded = bool(torch.isfinite(lower).any() or torch.isfinite(upper).any())
        if not bounded:
            layout["lower"] = layout["upper"] = None
        elif bool((lower == lower[0]).all() and (upper == upper[0]).all()):
            layout["lower"], layout["upper"] = float(lower[0]), float(upper[0])  # one clamp with scalars
        else:
            layout["lower"], layout["upper"] = lower, upper
        return layout

    def _broadcast_generator_state(self) -> None:
        """Give every rank of the process group rank 0's generator state (same noise everywhere)."""
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise ValueError("process_group was given but torch.distributed is not initialized")
        state = [self.generator.get_state()]
        src = dist.get_global_rank(self.process_group, 0) if self.process_group is not dist.group.WORLD else 0
        dist.broadcast_object_list(state, src=src, group=self.process_group)
        self.generator.set_state(state[0])

    # ----------------------------------------------------------------- the step
    @property
    def level(self) -> int:
        """The diffusion level ``i`` the next step uses (``0`` once the schedule is spent)."""
        return max(self.num_steps - 1 - self.steps_done, 0)

    def _flat_dim(self) -> int:
        """``D``: the number of optimized coordinates per problem (parameters without batch dimensions)."""
        nbatch = len(self.batch_shape)
        return sum(math.prod(p.shape[nbatch:]) for p in self._params)

    def _flat_estimate(self, B: int) -> Tensor:
        if len(self._params) == 1:
            return self._params[0].detach().reshape(B, -1)
        return torch.cat([p.detach().reshape(B, -1) for p in self._params], dim=-1)

    @torch.no_grad()
    def step(self, closure: Callable[[list[Tensor]], Tensor] | None = None) -> Tensor:
        """One step: sample, evaluate, keep the best, update (one reverse-diffusion step for MBD).

        The shared step of every method: draws ``num_samples`` candidates ``clip(Ybar + std * eps)``
        with ``std`` from :meth:`_sampling_std` (MBD: ``sigma_i`` times ``noise_scale``; with
        ``fraction < 1`` only that fraction of the coordinates is perturbed), evaluates them (on
        this rank's shard under a process group), updates :attr:`best_reward` /
        :attr:`best_candidate`, and hands the evaluated samples to :meth:`_update` for the new
        estimate. A problem whose samples all have weight 0 keeps its estimate (with a warning).

        Args:
            closure: ``candidates -> losses[n]`` (see the class docstring); required unless a
                ``rollout`` was given at construction.

        Returns:
            The mean loss (closure mode) or mean per-sample reward (rollout mode) over the
            finite, feasible samples of this step, a 0-dim tensor.
        """
        if closure is None and self.rollout is None:
            raise ValueError("step() needs a closure, or a rollout given at construction")
        if closure is not None and self.rollout is not None:
            raise ValueError("this optimizer has a rollout; call step() without a closure")
        if self._layout is None:
            self._layout = self._build_layout()
        layout = self._layout
        B, n, D = math.prod(self.batch_shape), self.num_samples, layout["D"]
        level = self.level
        std = self._sampling_std(layout, B)

        if self._buffer is None or self._buffer.shape != (B, n, D):
            self._buffer = torch.empty((B, n, D), dtype=self.dtype, device=self.device)
        samples = self._buffer
        y_bar = self._flat_estimate(B)
        torch.randn(samples.shape, generator=self.generator, out=samples, dtype=self.dtype, device=self.device)
        if layout["fraction"] is not None:
            keep = torch.rand(samples.shape, generator=self.generator, dtype=self.dtype, device=self.device)
            samples.mul_(keep < layout["fraction"])
        scale = std.unsqueeze(-2) if isinstance(std, Tensor) and std.dim() == 2 else std  # [B, 1, D]
        denoise.sample_candidates(y_bar, samples, scale, layout["lower"], layout["upper"], out=samples)

        rewards, feasible, loglik, trajectory = self._evaluate(closure, samples)
        self._track_best(samples, rewards, feasible, y_bar)
        self._notes = {}
        new, weights, valid = self._update(samples, rewards, feasible, loglik, y_bar)
        if not bool(valid.all()):
            self._warn_invalid(valid)
            new = torch.where(valid.unsqueeze(-1), new, y_bar)
        self._write_estimate(new)
        self.last_step = StepInfo(
            level=level, sigma=self._reported_sigma(std), rewards=rewards, weights=weights, valid=valid,
            demo_wins=self._notes.get("demo_wins"), trajectory=trajectory, samples=samples,
            temperature=self._notes.get("temperature"),
        )
        self.steps_done += 1
        return _mean_objective(rewards, feasible, self.rollout is not None)

    # ----------------------------------------------------------------- the two hooks of a method
    _label = "MBDOptimizer"
    """How warnings name the method."""

    def _warn_invalid(self, valid: Tensor) -> None:
        """Warn that the problems where ``valid [B]`` is False had no usable sample (estimate kept)."""
        warnings.warn(
            f"{self._label} step {self.steps_done}: every sample of {int((~valid).sum())} problem(s) was "
            "infeasible or non-finite; keeping the previous estimate there",
            RuntimeWarning,
            stacklevel=3,  # as before the helper: the frame above step()
        )

    def _sampling_std(self, layout: dict, B: int) -> float | Tensor:
        """The sampling standard deviation of this step: a float, a ``[D]`` tensor or ``[B, D]``.

        MBD's: the schedule's ``sigma_i`` at :attr:`level`, times the groups' ``noise_scale``
        (a ``[D]`` tensor when some coordinate's scale is not 1).

        Args:
            layout: the flat layout (``D``, ``scale``, bounds) of :meth:`_build_layout`.
            B: the number of problems.
        """
        sigma = float(self.schedule.sigmas[self.level])
        return sigma if layout["scale"] is None else layout["scale"] * sigma

    def _reported_sigma(self, std: float | Tensor) -> float:
        """``StepInfo.sigma`` of a step that sampled with ``std``: MBD reports ``sigma_i``."""
        return float(self.schedule.sigmas[self.level])

    def _update(
        self, samples: Tensor, rewards: Tensor, feasible: Tensor | None, loglik: Tensor | None, y_bar: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The new estimate from this step's evaluated samples.

        MBD's: the normalized softmax weights (with a demonstration, the max rule of Eq. 13), their
        weighted mean ``Ybar0`` and the reverse step of Eq. (6) at :attr:`level`. A method may
        record ``demo_wins`` and ``temperature`` in ``self._notes`` for :class:`StepInfo`.

        Args:
            samples: the candidates ``[B, n, D]``.
            rewards: ``[B, n]`` (``-loss`` in closure mode), gathered from every rank.
            feasible: boolean ``[B, n]`` or ``None``.
            loglik: the demonstration log-likelihood ``[B, n]``, or ``None`` without a demonstration.
            y_bar: the estimate the samples were drawn around, ``[B, D]``.

        Returns:
            ``(new [B, D], weights [B, n], valid [B])``; where ``valid`` is False the step keeps ``y_bar``.
        """
        temperature = self._resolve_temperature(rewards, feasible)
        logp, mean, std, constant = denoise.normalized_log_weights(
            rewards, temperature, feasible, return_constant=True
        )
        self._warn_if_constant(constant)
        demo_wins = None
        if loglik is not None:
            if self.demo_reward is None:
                finite = torch.where(torch.isfinite(logp), rewards, torch.full_like(rewards, -math.inf))
                best = float(finite.max())
                # an all-invalid step has no reward to give the demonstration: wait for a finite one
                self.demo_reward = best if math.isfinite(best) else None
            if self.demo_reward is not None:
                logp, demo_wins = denoise.demo_log_weights(
                    logp, loglik, self.demo_reward, mean, std, temperature, self.demo_units
                )
            else:
                demo_wins = torch.zeros_like(logp, dtype=torch.bool)
        self._notes["demo_wins"] = demo_wins
        y_bar0, weights, valid = denoise.weighted_mean(samples, logp)
        new = denoise.reverse_step(y_bar.to(y_bar0.dtype), y_bar0, self.level, self.schedule, self.step_scale)
        return new, weights, valid

    # ----------------------------------------------------------------- shared by the methods
    def _resolve_temperature(self, rewards: Tensor, feasible: Tensor | None) -> float | Tensor:
        """This step's temperature (recorded for ``StepInfo.temperature``): the number given, or
        under ``"auto"`` the ``[B]`` :func:`~torch_mbd.denoise.ess_temperature` of the rewards."""
        temperature = self.temperature
        if temperature == "auto":
            z, _, _ = denoise.normalized_log_weights(rewards, 1.0, feasible)
            temperature = denoise.ess_temperature(z, torch.isfinite(z), self.target_ess)
        self._notes["temperature"] = temperature
        return temperature

    def _write_estimate(self, new: Tensor) -> None:
        """Copy the flat estimate ``[B, D]`` into the parameters."""
        for p, (offset, numel, _) in zip(self._params, self._layout["segments"]):
            p.copy_(new[:, offset : offset + numel].reshape(p.shape))

    # ----------------------------------------------------------------- keep the best
    def _reset_best(self) -> None:
        B = math.prod(self.batch_shape)
        self.best_reward: Tensor = torch.full((B,), -math.inf, dtype=self.compute_dtype, device=self.device)
        """``[B]`` the best reward of a valid sample evaluated so far (``-loss`` in closure mode),
        ``-inf`` where none was valid yet."""
        self.best_candidate: Tensor | None = None
        """``[B, D]`` that sample (flattened like ``last_step.samples``), ``None`` before the first step;
        where :attr:`best_reward` is ``-inf`` it holds the estimate the first step sampled around."""

    def _track_best(self, samples: Tensor, rewards: Tensor, feasible: Tensor | None, y_bar: Tensor) -> None:
        """Keep the best valid sample of this step if it beats :attr:`best_reward` (strictly).

        A valid sample has a finite reward, is feasible, and has finite coordinates. Every rank sees
        the same samples and the gathered rewards, so every rank keeps the same best.

        Args:
            samples: ``[B, n, D]``.
            rewards: ``[B, n]``.
            feasible: boolean ``[B, n]`` or ``None``.
            y_bar: ``[B, D]``, the estimate the samples were drawn around.
        """
        if self.best_candidate is None:
            self.best_candidate = y_bar.clone()
        value, chosen = denoise.best_sample(samples, rewards, feasible)
        better = value > self.best_reward
        chosen = chosen.to(self.best_candidate.dtype)
        self.best_candidate = torch.where(better.unsqueeze(-1), chosen, self.best_candidate)
        self.best_reward = torch.where(better, value.to(self.best_reward.dtype), self.best_reward)

    def best_params(self) -> list[Tensor]:
        """The best valid sample evaluated so far, shaped like the parameters (with their batch dimensions).

        Returns:
            One new tensor per parameter, in parameter-group order. A problem without a valid
            sample yet (``best_reward`` ``-inf``) gets the estimate its first step sampled around.

        Raises:
            RuntimeError: no step has run yet.
        """
        if self.best_candidate is None:
            raise RuntimeError("best_params(): no step has run yet, so no sample has been evaluated")
        layout = self._layout if self._layout is not None else self._build_layout()
        return [
            self.best_candidate[:, offset : offset + numel].reshape(p.shape).clone()
            for p, (offset, numel, _) in zip(self._params, layout["segments"])
        ]

    def _warn_if_constant(self, constant: Tensor) -> None:
        """Warn once (:class:`ConstantObjectiveWarning`) when some problem's valid samples all scored the same."""
        if self._warned_constant or not bool(constant.any()):
            return
        self._warned_constant = True
        what = "losses" if self.rollout is None else "rewards"
        effect = (
            "so the model weights them equally and only the demonstration tells them apart"
            if self._has_demo
            else "so they are weighted equally and the estimate moves to their plain mean"
        )
        warnings.warn(
            f"{type(self).__name__} step {self.steps_done}: the objective is constant: the valid samples of "
            f"{int(constant.sum())} of {constant.numel()} problem(s) all got the same {what} (to within float "
            f"rounding), {effect}. Check that the objective depends on the parameters. (Warned once per optimizer.)",
            ConstantObjectiveWarning,
            stacklevel=5,  # _warn_if_constant <- _update <- step <- torch.no_grad's wrapper <- the caller
        )

    def _shard(self, n: int) -> tuple[int, int, int]:
        """``(start, stop, size)`` of this rank's share of the ``n`` samples (all of them alone)."""
        if self.process_group is None:
            return 0, n, n
        import torch.distributed as dist

        world, rank = dist.get_world_size(self.process_group), dist.get_rank(self.process_group)
        size = -(-n // world)
        start = min(rank * size, n)
        return start, min(start + size, n), size

    def _gather(self, local: Tensor, size: int, n: int) -> Tensor:
        """All-gather ``[B, k]`` shards (padded to ``size``) into ``[B, n]`` on every rank."""
        if self.process_group is None:
            return local
        import torch.distributed as dist

        padded = torch.full((local.shape[0], size), float("nan"), dtype=local.dtype, device=local.device)
        padded[:, : local.shape[1]] = local
        parts = [torch.empty_like(padded) for _ in range(dist.get_world_size(self.process_group))]
        dist.all_gather(parts, padded, group=self.process_group)
        return torch.cat(parts, dim=1)[:, :n]

    def _evaluate(self, closure, samples: Tensor):
        """Score this rank's shard of ``samples [B, n, D]`` and gather the scores from every rank.

        Returns:
            ``(rewards [B, n], feasible [B, n] or None, demo log-likelihood [B, n] or None,
            trajectory of this rank's shard or None)``.
        """
        B, n, _ = samples.shape
        start, stop, size = self._shard(n)
        shard = samples[:, start:stop]
        k = stop - start
        feasible = loglik = trajectory = None
        if k == 0:  # more ranks than samples: nothing to evaluate here
            rewards = shard.new_empty(B, 0, dtype=self.compute_dtype)
            feasible = torch.ones(B, 0, dtype=torch.bool, device=self.device) if self.rollout is not None else None
            loglik = shard.new_empty(B, 0, dtype=self.compute_dtype) if self._has_demo else None
        elif self.rollout is not None:
            rewards, feasible, loglik, trajectory = self._evaluate_rollout(shard, B, k)
        else:
            rewards = self._evaluate_closure(closure, shard, k)
            if self._demo is not None:
                features = shard.to(self.compute_dtype)
                loglik = denoise.demo_log_likelihood(features, self._demo, self._demo_mask, self.demo_sigma)
        rewards = self._gather(rewards, size, n)
        if feasible is not None:
            feasible = self._gather(feasible.to(self.dtype), size, n) == 1
        if loglik is not None:
            loglik = self._gather(loglik, size, n)
        return rewards, feasible, loglik, trajectory

    def _evaluate_closure(self, closure, samples: Tensor, n: int) -> Tensor:
        flat = samples[0]
        candidates = [flat[:, o : o + k].unflatten(-1, shape) if shape else flat[:, o] for o, k, shape in self._layout["segments"]]
        with candidate_params(self._params):  # batched_closure matches candidates by identity, through any wrapper
            losses = closure(candidates)
        if not isinstance(losses, Tensor):
            raise TypeError(f"closure must return a tensor of {n} losses, got {type(losses).__name__}")
        if losses.shape != (n,):
            raise ValueError(f"closure must return one loss per candidate, shape ({n},), got {tuple(losses.shape)}")
        if losses.device != self.device:
            raise ValueError(f"closure returned losses on {losses.device}, params are on {self.device}")
        _check_real_dtype("closure losses", losses)
        return (-losses.to(self.compute_dtype)).unsqueeze(0)

    def _evaluate_rollout(self, samples: Tensor, B: int, n: int):
        p = self._params[0]
        actions = samples.reshape(*self.batch_shape, n, *p.shape[len(self.batch_shape) :])
        traj = as_trajectory(self.rollout(actions), actions)
        if traj.rewards.device != self.device:
            raise ValueError(f"rollout returned rewards on {traj.rewards.device}, params are on {self.device}")
        _check_real_dtype("rollout rewards", traj.rewards)
        rewards = traj.rewards.to(self.compute_dtype).mean(-1).reshape(B, n)
        feasible = None if traj.feasible is None else traj.feasible.reshape(B, n).to(torch.bool)
        loglik = None
        if self._has_demo:
            if traj.states is None:
                what = "a demo" if self._demo is not None else "demo_log_likelihood"
                raise ValueError(
                    f"rollout returned no states (Trajectory.states is None) but {what} was given: the "
                    "demonstration is compared with the states, so the rollout must return them"
                )
            _check_real_dtype("rollout states", traj.states)
        if self.demo_log_likelihood is not None:
            states = traj.states.to(self.device, self.compute_dtype).reshape(B, n, *traj.states.shape[-2:])
            loglik = self._custom_log_likelihood(states)
        elif self._demo is not None:
            demo, mask, sigma = self._demo_features(traj.states.shape[-1], traj.states.shape[-2])
            states = traj.states.to(self.device, self.compute_dtype).reshape(B, n, -1)
            loglik = denoise.demo_log_likelihood(states, demo, mask, sigma)
        return rewards, feasible, loglik, traj

    def _custom_log_likelihood(self, states: Tensor) -> Tensor:
        """``demo_log_likelihood(states [B, n, T, nx])`` checked: ``[B, n]`` in :attr:`compute_dtype`,
        non-finite values as ``-inf``."""
        B, n = states.shape[:2]
        loglik = self.demo_log_likelihood(states)
        if not isinstance(loglik, Tensor):
            raise TypeError(
                f"demo_log_likelihood must return a tensor of shape ({B}, {n}) (problems, samples), "
                f"got {type(loglik).__name__}"
            )
        if tuple(loglik.shape) != (B, n):
            raise ValueError(
                f"demo_log_likelihood must return one log-likelihood per sample, shape ({B}, {n}) (problems, "
                f"samples) for states of shape {tuple(states.shape)}, got {tuple(loglik.shape)}"
            )
        if loglik.device != self.device:
            raise ValueError(f"demo_log_likelihood returned a tensor on {loglik.device}, params are on {self.device}")
        if not loglik.is_floating_point():
            raise TypeError(f"demo_log_likelihood must return a floating-point tensor, got dtype {loglik.dtype}")
        loglik = loglik.to(self.compute_dtype)
        return torch.where(torch.isfinite(loglik), loglik, torch.full_like(loglik, float("-inf")))

    # ----------------------------------------------------------------- state
    _STATE_KEYS = ("steps_done", "rng_state", "demo_reward", "num_steps", "beta0", "beta1", "noise", "num_samples")
    """Keys every saved ``state_dict()["mbd"]`` holds (``temperature``, ``param_shapes``, ``target_ess``,
    ``best_reward`` and ``best_candidate`` are newer)."""

    def state_dict(self) -> dict:
        """The ``torch.optim`` state plus the schedule position, the RNG state, the schedule, the
        temperature (``"auto"`` or the number) and ``target_ess``, the parameters' shapes and the best
        sample so far. The demonstration itself (``demo``, ``demo_log_likelihood``) is not saved, only
        ``demo_reward``."""
        state = super().state_dict()
        state["mbd"] = dict(
            steps_done=self.steps_done,
            rng_state=self.generator.get_state(),
            demo_reward=self.demo_reward,
            num_steps=self.num_steps,
            beta0=self.beta0,
            beta1=self.beta1,
            noise=self.noise,
            num_samples=self.num_samples,
            temperature=self.temperature,
            target_ess=self.target_ess,
            param_shapes=[tuple(p.shape) for p in self._params],
            best_reward=self.best_reward.clone(),
            best_candidate=None if self.best_candidate is None else self.best_candidate.clone(),
        )
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a :meth:`state_dict`: all or nothing.

        The schedule, the sample count, the parameters' shapes and the param groups must match this
        optimizer's; the saved group options (``bounds``, ``noise_scale``, ``fraction``), temperature,
        step count, demonstration reward and RNG state are checked as the constructor checks them.
        Everything is checked before anything changes, so a rejected ``state_dict`` leaves the
        optimizer as it was. (A ``state_dict`` saved before ``temperature`` / ``target_ess`` were saved
        keeps this optimizer's; one saved before the best sample was saved starts with none.)

        Raises:
            TypeError: ``state_dict`` is not a dict.
            ValueError: not an ``MBDOptimizer`` state, a missing key, or a mismatch named in the message.
        """
        self._apply_state(self._checked_state(state_dict))

    def _checked_state(self, state_dict) -> dict:
        """Everything :meth:`load_state_dict` restores, checked; changes nothing."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        state_dict = dict(state_dict)
        if "mbd" not in state_dict:
            raise ValueError("state_dict has no 'mbd' entry: it was not saved by MBDOptimizer")
        mbd = state_dict.pop("mbd")
        if not isinstance(mbd, dict):
            raise ValueError(f"state_dict['mbd'] must be a dict, got {type(mbd).__name__}")
        missing = [k for k in self._STATE_KEYS if k not in mbd]
        missing += [k for k in ("state", "param_groups") if k not in state_dict]
        if missing:
            raise ValueError(f"state_dict lacks {missing}: it is not a complete MBDOptimizer state_dict")
        for key in ("num_steps", "beta0", "beta1", "noise", "num_samples"):
            if mbd[key] != getattr(self, key):
                raise ValueError(f"state_dict was saved with {key}={mbd[key]!r}, this optimizer has {getattr(self, key)!r}")
        shapes = [tuple(p.shape) for p in self._params]
        saved_shapes = mbd.get("param_shapes")
        if saved_shapes is not None and [tuple(s) for s in saved_shapes] != shapes:
            raise ValueError(
                f"state_dict was saved for parameters of shapes {[tuple(s) for s in saved_shapes]}, "
                f"this optimizer's are {shapes}"
            )
        if not isinstance(state_dict["state"], dict):
            raise ValueError(f"state_dict['state'] must be a dict, got {type(state_dict['state']).__name__}")
        groups = state_dict["param_groups"]
        if not isinstance(groups, (list, tuple)) or len(groups) != len(self.param_groups):
            count = len(groups) if isinstance(groups, (list, tuple)) else type(groups).__name__
            raise ValueError(f"state_dict has {count} param groups, this optimizer {len(self.param_groups)}")
        options = []
        for k, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if not isinstance(saved, dict) or len(saved.get("params", ())) != len(group["params"]):
                raise ValueError(f"state_dict param group {k} does not hold as many parameters as this optimizer's")
            absent = [key for key in ("bounds", "noise_scale", "fraction") if key not in saved]
            if absent:
                raise ValueError(f"state_dict param group {k} lacks {absent}")
            try:
                options.append(self._checked_group_options(saved, group["params"]))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"state_dict param group {k}: {exc}") from None
        steps_done = check_int("state_dict steps_done", mbd["steps_done"], minimum=0)
        temperature = self.temperature  # a state saved before the temperature was saved keeps ours
        if "temperature" in mbd:
            temperature = check_temperature("state_dict temperature", mbd["temperature"])
        target_ess = self.target_ess
        if "target_ess" in mbd:
            target_ess = check_target_ess("state_dict target_ess", mbd["target_ess"])
        best_reward, best_candidate = self._checked_best(mbd.get("best_reward"), mbd.get("best_candidate"))
        demo_reward = mbd["demo_reward"]
        demo_reward = None if demo_reward is None else check_real("state_dict demo_reward", demo_reward)
        rng_state = mbd["rng_state"]
        try:  # on a scratch generator: a bad state must not touch ours
            torch.Generator(device=self.generator.device).set_state(rng_state)
        except (RuntimeError, TypeError, ValueError) as exc:
            device = self.generator.device
            raise ValueError(f"state_dict rng_state is not a state of a {device} generator: {exc}") from None
        return dict(
            torch_state=state_dict, options=options, steps_done=steps_done, temperature=temperature,
            target_ess=target_ess, demo_reward=demo_reward, rng_state=rng_state,
            best_reward=best_reward, best_candidate=best_candidate,
        )

    def _checked_best(self, reward, candidate) -> tuple[Tensor | None, Tensor | None]:
        """A saved ``best_reward [B]`` and ``best_candidate [B, D]`` checked, on our device and dtypes
        (``(None, None)`` for a state saved before they were)."""
        if reward is None and candidate is None:
            return None, None
        B, D = math.prod(self.batch_shape), self._flat_dim()
        if not isinstance(reward, Tensor) or tuple(reward.shape) != (B,) or not reward.is_floating_point():
            got = tuple(reward.shape) if isinstance(reward, Tensor) else type(reward).__name__
            raise ValueError(f"state_dict best_reward must be a floating-point tensor of shape {(B,)}, got {got}")
        if bool((torch.isnan(reward) | torch.isposinf(reward)).any()):
            raise ValueError("state_dict best_reward must be finite or -inf (nothing valid seen) everywhere")
        if candidate is None:
            if bool(torch.isfinite(reward).any()):
                raise ValueError("state_dict best_reward has finite entries but best_candidate is None")
        elif not isinstance(candidate, Tensor) or tuple(candidate.shape) != (B, D) or not candidate.is_floating_point():
            got = tuple(candidate.shape) if isinstance(candidate, Tensor) else type(candidate).__name__
            raise ValueError(f"state_dict best_candidate must be a floating-point tensor of shape {(B, D)}, got {got}")
        else:
            candidate = candidate.to(self.device, self.dtype).clone()
        return reward.to(self.device, self.compute_dtype).clone(), candidate

    def _apply_state(self, checked: dict) -> None:
        """Apply what :meth:`_checked_state` returned."""
        super().load_state_dict(checked["torch_state"])
        for group, options in zip(self.param_groups, checked["options"]):
            group.update(options)
        self.steps_done = checked["steps_done"]
        self.temperature = checked["temperature"]
        self.target_ess = checked["target_ess"]
        self._reset_best()
        if checked["best_reward"] is not None:
            self.best_reward, self.best_candidate = checked["best_reward"], checked["best_candidate"]
        self.generator.set_state(checked["rng_state"])
        self.demo_reward = checked["demo_reward"]
        self._layout = None
