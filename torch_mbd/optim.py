"""``MBDOptimizer``: Model-Based Diffusion as a ``torch.optim.Optimizer``.

The math lives in [`torch_mbd.denoise`][torch_mbd.denoise] and [`torch_mbd.schedule`][torch_mbd.schedule]; the loop every method
shares (sampling, evaluation, keep-best, state_dict) in `torch_mbd.sampling`. This class
adds what is MBD's own: the noise schedule, the temperature (``"auto"`` included), the
demonstration (`torch_mbd.demonstrations`) and the reverse-diffusion update.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
from torch import Tensor

from . import denoise
from .checks import check_positive, check_real
from .demonstrations import Demonstration
from .denoise import DEFAULT_TARGET_ESS
from .layout import AUTO_FRACTION_DIM, AUTO_NOISE_GAIN, auto_fraction, auto_noise_scale  # noqa: F401 (public here too)
from .sampling import (  # noqa: F401 (StepInfo, ConstantObjectiveWarning: public here too)
    RENAMED,
    ConstantObjectiveWarning,
    Evaluation,
    SamplingOptimizer,
    StepInfo,
    UpdateResult,
    check_number_field,
    checked_schedule,
    check_target_ess,
    check_temperature,
    renamed_options,
    resolve_temperature,
)


_SCHEDULE_DEFAULTS = dict(beta_first=1e-4, beta_last=1e-2, noise_convention="official")


class MBDOptimizer(SamplingOptimizer):
    r"""Model-Based Diffusion (Pan et al.), one reverse-diffusion step per [`step`][torch_mbd.optim.MBDOptimizer.step].

    The parameters are the decision variables ``Ybar``: a control sequence ``[..., H, nu]``
    in trajectory optimization, or ``model.parameters()`` for gradient-free training. Each
    step draws ``num_samples`` candidates ``Ybar + sigma_i * eps`` (clipped to ``bounds``),
    scores them, weights them by ``softmax((R - mean R) / std R / temperature)`` (infeasible
    and non-finite samples get weight 0; with a demonstration, the max rule of Eq. 13),
    and moves ``Ybar`` by Monte Carlo score ascent (Eq. 6), which with the default step
    size lands on the weighted mean. After every step the parameters hold the new
    estimate, so the model is usable at any time. The best valid sample evaluated so far is
    kept beside it (`best_reward`, `best_candidate`, [`best_params`][torch_mbd.optim.MBDOptimizer.best_params]).

    [`step`][torch_mbd.optim.MBDOptimizer.step] is the loop every method shares ([`SamplingOptimizer`][torch_mbd.sampling.SamplingOptimizer],
    the common type of MBD and the baselines); this class adds MBD's schedule, temperature,
    demonstration and update. This docstring documents the options every method shares.

    The objective comes from one of two places:

    * ``rollout`` (trajectory optimization): a callable
      ``actions[..., n, H, nu] -> Trajectory(states[..., n, H, nx], rewards[..., n, H], feasible[..., n] | None)``
      (or the tuple ``(rewards, states, feasible)``), e.g. a [`RolloutModel`][torch_mbd.rollout.RolloutModel]'s
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
        temperature: ``lambda > 0``; lower is greedier. ``"auto"`` (default, as [`plan`][torch_mbd.plan.plan]'s and
            [`minimize`][torch_mbd.minimize.minimize]'s) sets it each step, per problem, from the rewards themselves: the ``lambda`` at which the weights keep an effective
            sample size of ``target_ess`` times the number of valid samples
            ([`ess_temperature`][torch_mbd.denoise.ess_temperature]); ``last_step.temperature`` says which.
        target_ess: the fraction in ``(0, 1]`` ``temperature="auto"`` aims at (default
            `DEFAULT_TARGET_ESS`); unused with a number.
        num_steps: diffusion steps ``N``; the optimizer walks the schedule from level ``N-1``
            to ``0`` and **stays at level 0 (the final, smallest noise) for any further step**.
        beta_first: first beta of the linear schedule, in ``(0, 1)`` (deprecated name ``beta0``).
        beta_last: last beta of the linear schedule, in ``(0, 1)`` (deprecated name ``beta1``).
        noise_convention: which sampling-noise formula, ``"official"`` (``sqrt(1 - alpha_bar_i)``, default) or
            ``"paper"`` (``sqrt(1/alpha_bar_i - 1)``); see [`torch_mbd.schedule`][torch_mbd.schedule] (deprecated name ``noise``).
        bounds: ``(lower, upper)``: numbers or tensors broadcastable to each parameter's shape
            (without its batch dimensions); candidates are clipped to them. ``-inf`` / ``inf`` (also
            per coordinate, inside a tensor) leaves that side unbounded; NaN is refused.
        noise_scale: per-group multiplier of ``sigma_i``, a number ``>= 0``, a tensor of them or
            ``"auto"`` (default). A tensor (on the params' device, in their dtype) multiplies per
            coordinate and must broadcast to each parameter's shape without its batch dimensions
            (rollout mode: ``[H, nu]``, e.g. ``[H, 1]`` to make later controls noisier).
            ``"auto"`` is ``1.0`` for plain tensors (control sequences, black-box vectors: the
            paper's behaviour, unchanged) and in rollout mode; for an ``nn.Parameter`` (a network,
            ``model.parameters()``) it is `auto_noise_scale`: ``4 / sqrt(fan_in)`` for
            layer weights, ``1.0`` for biases.
        fraction: per-group fraction of coordinates perturbed in each candidate, in ``(0, 1]``, or
            ``"auto"`` (default): ``1.0`` for plain tensors and in rollout mode; for
            ``nn.Parameter`` tensors `auto_fraction` of the total dimension ``D``,
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
            See [`torch_mbd.denoise.demo_log_weights`][torch_mbd.denoise.demo_log_weights].
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
            e.g. [`clipped_distance_log_likelihood`][torch_mbd.denoise.clipped_distance_log_likelihood] of points read from the
            states. ``B`` is the number of problems (the params' batch dimensions flattened), ``n`` the
            samples (this rank's shard under a process group), ``T`` and ``nx`` the rollout's; the
            states come in at least float32 (as the Gaussian compares them). It must return a
            floating-point tensor of shape ``[B, n]`` on the params' device; NaN and
            infinite values mean "no demonstration weight" for that sample (as the Gaussian's
            ``-inf``). Its values meet the rewards by the same max rule (``demo_reward``,
            ``demo_units``) and are shifted per step so that the best sample's is 0, so only their
            differences matter. Give it instead of ``demo`` (not both); ``demo_sigma`` is then
            unused. It is not part of [`state_dict`][torch_mbd.optim.MBDOptimizer.state_dict]: pass it again to the optimizer a state is
            loaded into.
        torch_threads: torch intra-op threads during each [`step`][torch_mbd.optim.MBDOptimizer.step] (restored afterwards): ``None``
            (default: ``$TORCH_MBD_THREADS``, else 1, the policy of [`torch_mbd.threads`][torch_mbd.threads]), an
            integer ``>= 1``, or ``"torch"`` to keep torch's setting (a large network's forward pass
            over a batch of candidates may gain from torch's threads).

    Numbers may be Python numbers, NumPy scalars or 0-dim tensors. Rewards, weights and the weighted
    mean are computed in at least float32 (float16 / bfloat16 parameters are sampled in their own
    dtype); the weights are invariant to ``a * loss + b`` (``a > 0``); a step whose valid samples all
    score the same warns once with [`ConstantObjectiveWarning`][torch_mbd.sampling.ConstantObjectiveWarning]. See "Errors and edge cases"
    in the user guide for what happens with NaN, infinite, infeasible, constant and empty input.

    Example:
        >>> x = torch.zeros(5)
        >>> opt = MBDOptimizer([x], num_samples=64, temperature=0.1, num_steps=50, seed=0)
        >>> for _ in range(50):
        ...     _ = opt.step(lambda cands: ((cands[0] - 0.5) ** 2).sum(-1))
        >>> bool(((x - 0.5).abs() < 0.1).all())
        True
    """

    method = "mbd"
    uses_fraction = True
    fixed_state_fields = ("num_steps", "beta_first", "beta_last", "noise_convention")
    state_fields = ("temperature", "target_ess", "demo_reward")
    _label = "MBDOptimizer"

    def __init__(
        self,
        params,
        num_samples: int = 256,
        temperature: float | str = "auto",
        num_steps: int = 100,
        beta_first: float = 1e-4,
        beta_last: float = 1e-2,
        noise_convention: str = "official",
        bounds: tuple | None = None,
        noise_scale: float | str | Tensor = "auto",
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
        torch_threads: int | str | None = None,
        **deprecated,
    ):
        renamed = renamed_options(deprecated, "MBDOptimizer")
        given = dict(beta_first=beta_first, beta_last=beta_last, noise_convention=noise_convention)
        for old, new in RENAMED.items():
            if new in renamed and given[new] != _SCHEDULE_DEFAULTS[new]:  # a default value cannot be told apart
                raise TypeError(
                    f"MBDOptimizer got both {old}= and {new}=; give only {new}= ({old}= is its deprecated name)"
                )
        beta_first = renamed.pop("beta_first", beta_first)
        beta_last = renamed.pop("beta_last", beta_last)
        noise_convention = renamed.pop("noise_convention", noise_convention)
        if renamed:
            raise TypeError(f"MBDOptimizer got unexpected option(s) {sorted(renamed)}")
        self.temperature = check_temperature("temperature", temperature)
        self.target_ess = check_target_ess("target_ess", target_ess)
        self.step_scale = check_positive("step_scale", step_scale)
        if not isinstance(demo_units, str) or demo_units not in denoise.DEMO_UNITS:
            raise ValueError(f"Invalid demo_units: expected one of {denoise.DEMO_UNITS}, got {demo_units!r}")
        self.demo_units = demo_units
        self.schedule = checked_schedule(num_steps, beta_first, beta_last, noise_convention)  # checks the four
        self.num_steps, self.noise_convention = self.schedule.num_steps, noise_convention
        self.beta_first, self.beta_last = check_real("beta_first", beta_first), check_real("beta_last", beta_last)
        self.demo_reward = None if demo_reward is None else check_real("demo_reward", demo_reward)
        self._given_demo_reward = self.demo_reward
        super().__init__(
            params, num_samples, bounds=bounds, noise_scale=noise_scale, fraction=fraction, rollout=rollout,
            generator=generator, seed=seed, process_group=process_group, torch_threads=torch_threads,
        )
        self.demonstration = Demonstration(
            self._params, self.batch_shape, rollout is not None, self.compute_dtype,
            demo=demo, mask=demo_mask, sigma=demo_sigma, log_likelihood=demo_log_likelihood,
        )
        self.demo_sigma = self.demonstration.sigma
        """The demonstration likelihood's standard deviation, checked (a float or a tensor)."""
        self.demo_log_likelihood = demo_log_likelihood
        """The callable of ``demo_log_likelihood`` (rollout mode), or ``None`` (the Gaussian of ``demo``, if any)."""

    def _restart(self) -> None:
        """Start over from the parameters' current values, as a new optimizer built with the same
        arguments and generator would: no step done (the schedule from its top), no best sample,
        no last step, the constant-objective warning not yet given, ``demo_reward`` as given.

        Kept: the generator (not reseeded: its state goes on), the group options, the layout and
        the sample buffer. Under a process group rank 0's generator state is broadcast again, as at
        construction. [`MPC`][torch_mbd.mpc.MPC] restarts one optimizer at every control step
        instead of building one (the same plans, bit for bit).
        """
        self.steps_done = 0
        self.last_step = None
        self._warned_constant = False
        self._reset_best()
        self.demo_reward = self._given_demo_reward
        if self.process_group is not None:
            self.evaluator.broadcast_generator_state(self.generator)

    def __getattr__(self, name: str):
        """The deprecated attribute names ``beta0``, ``beta1``, ``noise`` read the new ones, with a warning."""
        if name in RENAMED:
            warnings.warn(f"MBDOptimizer.{name} is deprecated, use .{RENAMED[name]}", DeprecationWarning, stacklevel=2)
            return getattr(self, RENAMED[name])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def level(self) -> int:
        """The diffusion level ``i`` the next step uses (``0`` once the schedule is spent)."""
        return max(self.num_steps - 1 - self.steps_done, 0)

    def _sample_log_likelihood(self):
        return self.demonstration.log_likelihood if self.demonstration.active else None

    def sample(self, y_bar: Tensor) -> tuple[Tensor, float]:
        """``clip(Ybar + sigma_i * noise_scale * eps)`` at [`level`][torch_mbd.optim.MBDOptimizer.level]; reports ``sigma_i``."""
        sigma = float(self.schedule.sigmas[self.level])
        scale = self.layout.scale
        return self.gaussian_samples(y_bar, sigma if scale is None else scale * sigma), sigma

    def update(self, samples: Tensor, evaluation: Evaluation, y_bar: Tensor) -> UpdateResult:
        """MBD's update: the normalized softmax weights (with a demonstration, the max rule of Eq. 13),
        their weighted mean ``Ybar0`` and the reverse step of Eq. (6) at [`level`][torch_mbd.optim.MBDOptimizer.level]."""
        rewards, feasible, loglik = evaluation.rewards, evaluation.feasible, evaluation.log_likelihood
        temperature = resolve_temperature(self.temperature, self.target_ess, rewards, feasible)
        logp, mean, std, constant = denoise.normalized_log_weights(rewards, temperature, feasible, return_constant=True)
        self.warn_if_constant(constant, demo=self.demonstration.active)
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
        y_bar0, weights, valid = denoise.weighted_mean(samples, logp)
        new = denoise.reverse_step(y_bar.to(y_bar0.dtype), y_bar0, self.level, self.schedule, self.step_scale)
        return UpdateResult(new, weights, valid, temperature=temperature, demo_wins=demo_wins)

    def check_state_fields(self, saved: dict) -> dict:
        return dict(
            temperature=check_temperature("state_dict temperature", saved["temperature"]),
            target_ess=check_target_ess("state_dict target_ess", saved["target_ess"]),
            demo_reward=check_number_field("demo_reward", saved["demo_reward"], allow_none=True),
        )
