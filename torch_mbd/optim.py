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
from .rollout import as_trajectory
from .schedule import linear_schedule


class StepInfo(NamedTuple):
    """What the last :meth:`MBDOptimizer.step` did (``optimizer.last_step``).

    Attributes:
        level: the diffusion level ``i`` used.
        sigma: the sampling standard deviation ``sigma_i`` (before per-group ``noise_scale``).
        rewards: per-sample rewards ``[B, n]`` (``-loss`` in closure mode).
        weights: the softmax weights ``[B, n]``.
        valid: boolean ``[B]``, False where every sample had zero weight (estimate kept).
        demo_wins: boolean ``[B, n]`` of samples weighted by the demonstration, or ``None``.
        trajectory: the rollout's :class:`~torch_mbd.rollout.Trajectory` (rollout mode; this rank's
            shard under a process group), or ``None``.
        samples: the candidates ``[B, n, D]`` (flattened decision variables): a view of the buffer
            the next step overwrites; clone what you keep.
    """

    level: int
    sigma: float
    rewards: Tensor
    weights: Tensor
    valid: Tensor
    demo_wins: Tensor | None
    trajectory: object | None
    samples: Tensor


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


def _check_positive(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        raise ValueError(f"Invalid {name}: expected a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Invalid {name}: expected {bound}, got {value!r}")
    return float(value)


class MBDOptimizer(Optimizer):
    r"""Model-Based Diffusion (Pan et al.), one reverse-diffusion step per :meth:`step`.

    The parameters are the decision variables ``Ybar``: a control sequence ``[..., H, nu]``
    in trajectory optimization, or ``model.parameters()`` for gradient-free training. Each
    step draws ``num_samples`` candidates ``Ybar + sigma_i * eps`` (clipped to ``bounds``),
    scores them, weights them by ``softmax((R - mean R) / std R / temperature)`` (infeasible
    and non-finite samples get weight 0; with a demonstration, the max rule of Eq. 13),
    and moves ``Ybar`` by Monte Carlo score ascent (Eq. 6), which with the default step
    size lands on the weighted mean. After every step the parameters hold the new
    estimate, so the model is usable at any time.

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
        temperature: ``lambda > 0``; lower is greedier.
        num_steps: diffusion steps ``N``; the optimizer walks the schedule from level ``N-1``
            to ``0`` and **stays at level 0 (the final, smallest noise) for any further step**.
        beta0: first beta of the linear schedule, in ``(0, 1)``.
        beta1: last beta of the linear schedule, in ``(0, 1)``.
        noise: sampling-noise convention, ``"official"`` (``sqrt(1 - alpha_bar_i)``, default) or
            ``"paper"`` (``sqrt(1/alpha_bar_i - 1)``); see :mod:`torch_mbd.schedule`.
        bounds: ``(lower, upper)``: floats or tensors broadcastable to each parameter's shape
            (without its batch dimensions); candidates are clipped to them.
        noise_scale: per-group multiplier of ``sigma_i``, a number ``>= 0`` or ``"auto"`` (default).
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
            dimensions selected by ``demo_mask``); in closure mode a tensor of the single
            parameter's shape. Entries ``demo_mask`` excludes are ignored.
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
            step's samples, so the demonstration attracts until the samples beat it.
        generator: a ``torch.Generator`` on the parameters' device; ``None`` makes one seeded by
            ``seed``, or by the global RNG when ``seed`` is ``None``.
        seed: seed for the generator made when ``generator`` is ``None``.
        process_group: a ``torch.distributed`` process group (e.g. ``torch.distributed.group.WORLD``
            under ``torchrun``) to spread the evaluation of the samples over. Every rank draws the
            same samples (rank 0's generator state is broadcast at construction), evaluates its
            contiguous shard of them, and the rewards are all-gathered, so every rank holds the
            same estimate after every step, bit for bit the single-process result for an
            objective that scores each sample independently. ``None``: one process.

    Example:
        >>> x = torch.zeros(5)
        >>> opt = MBDOptimizer([x], num_samples=64, temperature=0.1, num_steps=50, seed=0)
        >>> for _ in range(50):
        ...     _ = opt.step(lambda cands: ((cands[0] - 0.5) ** 2).sum(-1))
        >>> bool(((x - 0.5).abs() < 0.1).all())
        True
    """

    def __init__(
        self,
        params,
        num_samples: int = 256,
        temperature: float = 0.1,
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
    ):
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"Invalid num_samples: expected an integer >= 1, got {num_samples!r}")
        self.num_samples = num_samples
        self.temperature = _check_positive("temperature", temperature)
        self.step_scale = _check_positive("step_scale", step_scale)
        if demo_units not in denoise.DEMO_UNITS:
            raise ValueError(f"Invalid demo_units: expected one of {denoise.DEMO_UNITS}, got {demo_units!r}")
        self.demo_units = demo_units
        self.schedule = linear_schedule(num_steps, beta0, beta1, noise)
        self.num_steps, self.beta0, self.beta1, self.noise = num_steps, float(beta0), float(beta1), noise
        if rollout is not None and not callable(rollout):
            raise TypeError(f"rollout must be callable (actions -> Trajectory), got {type(rollout).__name__}")
        self.rollout = rollout
        defaults = dict(bounds=bounds, noise_scale=noise_scale, fraction=fraction)
        super().__init__(params, defaults)

        self._params: list[Tensor] = [p for g in self.param_groups for p in g["params"]]
        first = self._params[0]
        for p in self._params:
            if not p.is_floating_point():
                raise TypeError(f"params must be floating-point tensors, got dtype {p.dtype}")
            if p.device != first.device:
                raise ValueError(f"params must all be on one device, got {first.device} and {p.device}")
            if p.dtype != first.dtype:
                raise ValueError(f"params must all have one dtype, got {first.dtype} and {p.dtype}")
        self.device, self.dtype = first.device, first.dtype
        if rollout is not None:
            if len(self._params) != 1 or first.dim() < 2:
                shapes = [tuple(p.shape) for p in self._params]
                raise ValueError(
                    "with a rollout, params must be exactly one action tensor of shape [..., H, nu], "
                    f"got shapes {shapes}"
                )
            self.batch_shape = tuple(first.shape[:-2])
        else:
            self.batch_shape = ()

        if generator is None:
            generator = torch.Generator(device=self.device)
            if seed is None:
                seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
            generator.manual_seed(int(seed))
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
        self._demo_flat: tuple | None = None  # (nx, demo, mask, sigma) flattened by _demo_features
        self.demo_reward = None if demo_reward is None else float(demo_reward)
        self.steps_done = 0
        self.last_step: StepInfo | None = None
        self._layout = None
        self._buffer: Tensor | None = None

    # ----------------------------------------------------------------- set-up helpers
    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group["noise_scale"] != "auto":
            group["noise_scale"] = _check_positive("noise_scale", group["noise_scale"], allow_zero=True)
        frac = group["fraction"]
        if frac != "auto" and (isinstance(frac, bool) or not isinstance(frac, (int, float)) or not (0.0 < frac <= 1.0)):
            raise ValueError(f"Invalid fraction: expected a number in (0, 1] or 'auto', got {frac!r}")
        group["bounds"] = self._check_bounds(group["bounds"], group["params"])
        if hasattr(self, "_params"):  # a group added after construction
            self._params = [p for g in self.param_groups for p in g["params"]]
            self._layout = None

    @staticmethod
    def _check_bounds(bounds, params):
        if bounds is None:
            return None
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise ValueError(f"bounds must be None or a (lower, upper) pair, got {bounds!r}")
        lower, upper = bounds
        for name, b in (("lower", lower), ("upper", upper)):
            if isinstance(b, Tensor):
                for p in params:
                    if b.device != p.device:
                        raise ValueError(f"bounds {name} is on {b.device}, params on {p.device}")
                    if b.dtype != p.dtype:
                        raise ValueError(f"bounds {name} has dtype {b.dtype}, params {p.dtype}")
            elif b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or math.isnan(b)):
                raise ValueError(f"bounds {name} must be a number, a tensor or None, got {b!r}")
        if lower is not None and upper is not None and bool(torch.any(torch.as_tensor(lower) > torch.as_tensor(upper))):
            raise ValueError("bounds lower must be <= upper everywhere")
        return (lower, upper)

    def _prepare_demo(self, demo, mask):
        if demo is None:
            if mask is not None:
                raise ValueError("demo_mask was given without demo")
            return None, None
        if not isinstance(demo, Tensor):
            raise TypeError(f"demo must be a tensor, got {type(demo).__name__}")
        if demo.device != self.device or demo.dtype != self.dtype:
            raise ValueError(f"demo must be on {self.device} with dtype {self.dtype}, got {demo.device}, {demo.dtype}")
        if mask is not None:
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
                raise TypeError("demo_mask must be a boolean tensor")
            mask = mask.to(self.device)
        p = self._params[0]
        if self.rollout is None:
            if len(self._params) != 1 or tuple(demo.shape) != tuple(p.shape):
                raise ValueError(
                    f"in closure mode demo must have the shape of the single parameter {tuple(p.shape)}, "
                    f"got {tuple(demo.shape)}"
                )
            if mask is not None and tuple(mask.shape) != tuple(p.shape):
                raise ValueError(f"demo_mask must have shape {tuple(p.shape)}, got {tuple(mask.shape)}")
            flat_mask = None if mask is None else mask.reshape(1, -1)
            return demo.reshape(1, -1), flat_mask
        # Rollout mode: demo describes states [..., H, nx]; nx is known after the first rollout.
        horizon = p.shape[-2]
        if demo.dim() < 2 or demo.shape[-2] != horizon:
            raise ValueError(f"demo must have shape [..., H={horizon}, nx], got {tuple(demo.shape)}")
        if mask is not None and mask.dim() not in (1, 2):
            raise ValueError(f"demo_mask must have shape [nx] or [H, nx], got {tuple(mask.shape)}")
        return demo, mask

    def _prepare_demo_sigma(self, sigma):
        """``demo_sigma`` checked: a float, or a tensor of the demo's shape (flat ``[1, D]`` in closure mode)."""
        if not isinstance(sigma, Tensor):
            return _check_positive("demo_sigma", sigma)
        if not sigma.is_floating_point():
            raise TypeError(f"demo_sigma must be a number or a floating-point tensor, got dtype {sigma.dtype}")
        sigma = sigma.to(self.device, self.dtype)
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

    def _demo_features(self, nx: int) -> tuple[Tensor, Tensor | None, float | Tensor]:
        """Flatten the rollout-mode demo, mask and sigma to ``[B, H*nx]`` once ``nx`` is known (then reused)."""
        if self._demo_flat is not None and self._demo_flat[0] == nx:
            return self._demo_flat[1:]
        demo, mask, sigma = self._demo, self._demo_mask, self.demo_sigma
        horizon = demo.shape[-2]
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
        self._demo_flat = (nx, demo, mask, sigma)
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
                if scale == "auto":
                    scale = auto_noise_scale(shape) if network else 1.0
                if frac == "auto":
                    frac = auto_fraction(total) if network else 1.0
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

    def _flat_estimate(self, B: int) -> Tensor:
        if len(self._params) == 1:
            return self._params[0].detach().reshape(B, -1)
        return torch.cat([p.detach().reshape(B, -1) for p in self._params], dim=-1)

    @torch.no_grad()
    def step(self, closure: Callable[[list[Tensor]], Tensor] | None = None) -> Tensor:
        """One reverse-diffusion step.

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
        i = self.level
        sigma = float(self.schedule.sigmas[i])

        if self._buffer is None or self._buffer.shape != (B, n, D):
            self._buffer = torch.empty((B, n, D), dtype=self.dtype, device=self.device)
        samples = self._buffer
        y_bar = self._flat_estimate(B)
        torch.randn(samples.shape, generator=self.generator, out=samples, dtype=self.dtype, device=self.device)
        if layout["fraction"] is not None:
            keep = torch.rand(samples.shape, generator=self.generator, dtype=self.dtype, device=self.device)
            samples.mul_(keep < layout["fraction"])
        noise_scale = sigma if layout["scale"] is None else layout["scale"] * sigma
        denoise.sample_candidates(y_bar, samples, noise_scale, layout["lower"], layout["upper"], out=samples)

        rewards, feasible, loglik, trajectory = self._evaluate(closure, samples)
        logp, mean, std = denoise.normalized_log_weights(rewards, self.temperature, feasible)
        demo_wins = None
        if loglik is not None:
            if self.demo_reward is None:
                finite = torch.where(torch.isfinite(logp), rewards, torch.full_like(rewards, -math.inf))
                self.demo_reward = float(finite.max())
            logp, demo_wins = denoise.demo_log_weights(
                logp, loglik, self.demo_reward, mean, std, self.temperature, self.demo_units
            )

        y_bar0, weights, valid = denoise.weighted_mean(samples, logp)
        new = denoise.reverse_step(y_bar, y_bar0, i, self.schedule, self.step_scale)
        if not bool(valid.all()):
            warnings.warn(
                f"MBDOptimizer step {self.steps_done}: every sample of {int((~valid).sum())} problem(s) was "
                "infeasible or non-finite; keeping the previous estimate there",
                RuntimeWarning,
                stacklevel=2,
            )
            new = torch.where(valid.unsqueeze(-1), new, y_bar)
        for p, (offset, numel, _) in zip(self._params, layout["segments"]):
            p.copy_(new[:, offset : offset + numel].reshape(p.shape))
        self.steps_done += 1
        self.last_step = StepInfo(i, sigma, rewards, weights, valid, demo_wins, trajectory, samples)

        finite = torch.isfinite(rewards) if feasible is None else torch.isfinite(rewards) & feasible
        mean_reward = torch.where(finite, rewards, torch.zeros_like(rewards)).sum() / finite.sum().clamp(min=1)
        return mean_reward if self.rollout is not None else -mean_reward

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
            rewards = shard.new_empty(B, 0)
            feasible = torch.ones(B, 0, dtype=torch.bool, device=self.device) if self.rollout is not None else None
            loglik = shard.new_empty(B, 0) if self._demo is not None else None
        elif self.rollout is not None:
            rewards, feasible, loglik, trajectory = self._evaluate_rollout(shard, B, k)
        else:
            rewards = self._evaluate_closure(closure, shard, k)
            if self._demo is not None:
                loglik = denoise.demo_log_likelihood(shard, self._demo, self._demo_mask, self.demo_sigma)
        rewards = self._gather(rewards, size, n)
        if feasible is not None:
            feasible = self._gather(feasible.to(self.dtype), size, n) == 1
        if loglik is not None:
            loglik = self._gather(loglik, size, n)
        return rewards, feasible, loglik, trajectory

    def _evaluate_closure(self, closure, samples: Tensor, n: int) -> Tensor:
        flat = samples[0]
        candidates = [flat[:, o : o + k].unflatten(-1, shape) if shape else flat[:, o] for o, k, shape in self._layout["segments"]]
        losses = closure(candidates)
        if not isinstance(losses, Tensor):
            raise TypeError(f"closure must return a tensor of {n} losses, got {type(losses).__name__}")
        if losses.shape != (n,):
            raise ValueError(f"closure must return one loss per candidate, shape ({n},), got {tuple(losses.shape)}")
        if losses.device != self.device:
            raise ValueError(f"closure returned losses on {losses.device}, params are on {self.device}")
        return (-losses.to(self.dtype)).unsqueeze(0)

    def _evaluate_rollout(self, samples: Tensor, B: int, n: int):
        p = self._params[0]
        actions = samples.reshape(*self.batch_shape, n, *p.shape[len(self.batch_shape) :])
        traj = as_trajectory(self.rollout(actions), actions)
        if traj.rewards.device != self.device:
            raise ValueError(f"rollout returned rewards on {traj.rewards.device}, params are on {self.device}")
        rewards = traj.rewards.to(self.dtype).mean(-1).reshape(B, n)
        feasible = None if traj.feasible is None else traj.feasible.reshape(B, n).to(torch.bool)
        loglik = None
        if self._demo is not None:
            demo, mask, sigma = self._demo_features(traj.states.shape[-1])
            loglik = denoise.demo_log_likelihood(traj.states.to(self.dtype).reshape(B, n, -1), demo, mask, sigma)
        return rewards, feasible, loglik, traj

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """The ``torch.optim`` state plus the schedule position, the RNG state and the schedule."""
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
        )
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a :meth:`state_dict`; the schedule and sample count must match this optimizer's."""
        state_dict = dict(state_dict)
        if "mbd" not in state_dict:
            raise ValueError("state_dict has no 'mbd' entry: it was not saved by MBDOptimizer")
        mbd = state_dict.pop("mbd")
        for key in ("num_steps", "beta0", "beta1", "noise", "num_samples"):
            if mbd[key] != getattr(self, key):
                raise ValueError(f"state_dict was saved with {key}={mbd[key]!r}, this optimizer has {getattr(self, key)!r}")
        super().load_state_dict(state_dict)
        self.steps_done = int(mbd["steps_done"])
        self.generator.set_state(mbd["rng_state"])
        self.demo_reward = mbd["demo_reward"]
        self._layout = None
