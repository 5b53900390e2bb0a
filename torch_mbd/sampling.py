"""``SamplingOptimizer``: the one sampling loop every method of torch-mbd runs.

A method is a distribution over candidates and a rule that turns scored candidates into a new
estimate. Everything else is shared and lives here: the flat layout of the parameter groups
(`torch_mbd.layout`), drawing Gaussian samples within the bounds, scoring them
(`torch_mbd.evaluation`), keeping the best valid sample, writing the estimate back into the
parameters, the warnings, the thread policy and a generic, fully checked ``state_dict``.

One [`SamplingOptimizer.step`][torch_mbd.sampling.SamplingOptimizer.step] is [`ask`][torch_mbd.sampling.SamplingOptimizer.ask], the closure or rollout,
then [`tell`][torch_mbd.sampling.SamplingOptimizer.tell]::

    y_bar = the parameters, flat [B, D]              # ask()
    samples, sigma = self.sample(y_bar)              # hook: [B, n, D]
    hand the candidates to the closure (the actions to the rollout)
    evaluation = check what came back                # tell(losses)
    keep the best valid sample
    result = self.update(samples, evaluation, y_bar) # hook: UpdateResult
    keep y_bar where result.valid is False (warn); write result.estimate into the parameters

[`MBDOptimizer`][torch_mbd.MBDOptimizer], [`CEMOptimizer`][torch_mbd.CEMOptimizer], [`MPPIOptimizer`][torch_mbd.MPPIOptimizer],
[`CMAESOptimizer`][torch_mbd.CMAESOptimizer], the paper's baselines and predictive sampling are siblings
over this class (``docs/architecture.md`` shows how to add one).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import warnings
from typing import Callable, NamedTuple

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import denoise, layout as flat
from .checks import check_device, check_int, check_positive, check_real, check_seed
from .closure import candidate_params
from .evaluation import Evaluation, Evaluator, mean_objective
from .schedule import NOISE_CONVENTIONS, Schedule, check_beta, linear_schedule
from .threads import resolve_threads, use_threads


class StepInfo(NamedTuple):
    """What the last [`SamplingOptimizer.step`][torch_mbd.sampling.SamplingOptimizer.step] did (``optimizer.last_step``).

    Attributes:
        level: the diffusion level ``i`` used (MBD); 0 for a method without levels.
        sigma: the sampling standard deviation ``sigma_i`` (MBD, before per-group ``noise_scale``); the
            mean sampling standard deviation of another method (CMA-ES: pycma's step size after the step).
        rewards: per-sample rewards ``[B, n]`` (``-loss`` in closure mode).
        weights: the update's weights ``[B, n]`` (MBD's softmax weights, ``1/k`` on CEM's elites,
            zeros for CMA-ES, whose weights are pycma's).
        valid: boolean ``[B]``, False where every sample had zero weight (estimate kept).
        demo_wins: boolean ``[B, n]`` of samples weighted by the demonstration, or ``None``.
        trajectory: the rollout's [`Trajectory`][torch_mbd.rollout.Trajectory] (rollout mode; this rank's
            shard under a process group), or ``None``.
        samples: the candidates ``[B, n, D]`` (flattened decision variables): a view of the buffer
            the next step overwrites; clone what you keep.
        temperature: the temperature the weights used: the float given, a ``[B]`` tensor under
            ``temperature="auto"`` (one per problem), or ``None`` for a method without one (CEM,
            CMA-ES).
        feasible: boolean ``[B, n]`` of the feasible samples (gathered from every rank), or ``None``
            where the objective says nothing about feasibility (closure mode).
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
    feasible: Tensor | None = None


class UpdateResult(NamedTuple):
    """What a method's [`SamplingOptimizer.update`][torch_mbd.sampling.SamplingOptimizer.update] returns to the loop.

    Attributes:
        estimate: the new estimate ``[B, D]`` (any floating dtype; written in the parameters' dtype).
        weights: ``[B, n]`` the weight each sample had in it (``StepInfo.weights``).
        valid: boolean ``[B]``; where False the loop keeps the previous estimate and warns.
        temperature: the temperature the weights used, or ``None`` (``StepInfo.temperature``).
        demo_wins: boolean ``[B, n]`` of samples the demonstration weighted, or ``None``.
        sigma: overrides the sampling ``sigma`` reported in ``StepInfo`` (CMA-ES: its step size
            after the update), or ``None``.
    """

    estimate: Tensor
    weights: Tensor
    valid: Tensor
    temperature: float | Tensor | None = None
    demo_wins: Tensor | None = None
    sigma: float | None = None


class Asked(NamedTuple):
    """What [`SamplingOptimizer.ask`][torch_mbd.sampling.SamplingOptimizer.ask] drew, waiting for ``tell()``: the estimate ``y_bar [B, D]``,
    the samples ``[B, n, D]``, their sampling ``sigma`` and ``level``, the ``inputs`` handed out
    (candidates or actions) and this rank's ``shard`` ``(start, stop, size)``."""

    y_bar: Tensor
    samples: Tensor
    sigma: float
    level: int
    inputs: list | Tensor
    shard: tuple


class ConstantObjectiveWarning(RuntimeWarning):
    """Every valid sample of a step scored the same: the objective does not tell candidates apart.

    The samples are then weighted equally and the estimate moves to their plain mean (a random
    walk). A method that normalizes rewards ([`MBDOptimizer`][torch_mbd.MBDOptimizer]) warns once per optimizer.
    """


MBD_ONLY = ("demo", "demo_mask", "demo_sigma", "demo_reward", "demo_log_likelihood", "demo_units", "step_scale")
"""Options only [`MBDOptimizer`][torch_mbd.MBDOptimizer] takes; another method refuses them by name."""

RENAMED = {"noise": "noise_convention", "beta0": "beta_first", "beta1": "beta_last"}
"""Deprecated option names and the names that replaced them (accepted with a ``DeprecationWarning``)."""

_INTERNAL = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(torch.__file__)))


def caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning issued by the calling function name the first frame
    outside torch-mbd and torch: the user's line (``step()`` is wrapped by ``torch.no_grad``, and
    ``plan`` / ``minimize`` call ``step()``, so a fixed count would point into the library)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    return level


def renamed_options(options: dict, owner: str) -> dict:
    """``options`` with each deprecated name (`RENAMED`) moved to its new name, with a warning.

    Raises:
        TypeError: both the old and the new name were given.
    """
    options = dict(options)
    for old, new in RENAMED.items():
        if old in options:
            if new in options:
                raise TypeError(f"{owner} got both {old}= and {new}=; give only {new}= ({old}= is its deprecated name)")
            warnings.warn(
                f"{owner}: {old}= is deprecated, use {new}= (the same value)",
                DeprecationWarning,
                stacklevel=caller_stacklevel(),
            )
            options[new] = options.pop(old)
    return options


def check_temperature(name: str, value, *, allow_auto: bool = True) -> float | str:
    """A temperature checked: a finite number ``> 0``, or ``"auto"`` (with ``allow_auto``).

    Args:
        name: the argument's name, for the error message.
        value: what the user gave (numbers may be numpy scalars or 0-dim tensors).
        allow_auto: whether ``"auto"`` ([`ess_temperature`][torch_mbd.denoise.ess_temperature] each step) is accepted.

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


def resolve_temperature(temperature: float | str, target_ess: float, rewards: Tensor, feasible: Tensor | None):
    """This step's temperature: the number given, or under ``"auto"`` the ``[B]``
    [`ess_temperature`][torch_mbd.denoise.ess_temperature] of ``rewards [B, n]``."""
    if temperature != "auto":
        return temperature
    z, _, _ = denoise.normalized_log_weights(rewards, 1.0, feasible)
    return denoise.ess_temperature(z, torch.isfinite(z), target_ess)


def checked_schedule(num_steps, beta_first, beta_last, noise_convention) -> Schedule:
    """[`linear_schedule`][torch_mbd.schedule.linear_schedule] of the optimizers' options, each checked under its
    own name (``beta_first``, ``beta_last`` in ``(0, 1)``, ``noise_convention`` one of
    `NOISE_CONVENTIONS`)."""
    check_beta("beta_first", beta_first), check_beta("beta_last", beta_last)
    if not isinstance(noise_convention, str) or noise_convention not in NOISE_CONVENTIONS:
        raise ValueError(f"Invalid noise_convention: expected one of {NOISE_CONVENTIONS}, got {noise_convention!r}")
    return linear_schedule(num_steps, beta_first, beta_last, noise_convention)


def first_sigma(
    num_steps: int = 100, beta_first: float = 1e-4, beta_last: float = 1e-2, noise_convention: str = "official"
) -> float:
    """``sigma_{N-1}``, the first (largest) sampling level of MBD's schedule: the baselines' default
    initial standard deviation, so that every method starts from the same distribution."""
    return float(checked_schedule(num_steps, beta_first, beta_last, noise_convention).sigmas[-1])


def rollout_batch_shape(params: list[Tensor]) -> tuple:
    """The batch dimensions ``[...]`` of the one action tensor ``[..., H, nu]`` a rollout optimizes.

    Raises:
        ValueError: not exactly one tensor of at least two dimensions, or an empty batch.
    """
    if len(params) != 1 or params[0].dim() < 2:
        shapes = [tuple(p.shape) for p in params]
        raise ValueError(
            f"with a rollout, params must be exactly one action tensor of shape [..., H, nu], got shapes {shapes}"
        )
    batch_shape = tuple(params[0].shape[:-2])
    if math.prod(batch_shape) == 0:
        raise ValueError(
            f"params: the action tensor has shape {tuple(params[0].shape)}, an empty batch of problems; "
            "give at least one problem ([..., H, nu] with every leading size >= 1)"
        )
    return batch_shape


def warn_constant(owner: str, step: int, constant: Tensor, rollout_mode: bool, demo: bool) -> None:
    """Issue the [`ConstantObjectiveWarning`][torch_mbd.sampling.ConstantObjectiveWarning] of ``owner`` at ``step`` (``constant [B]``: the problems
    whose valid samples all scored the same), naming the user's line."""
    what = "losses" if not rollout_mode else "rewards"
    effect = (
        "so the model weights them equally and only the demonstration tells them apart"
        if demo
        else "so they are weighted equally and the estimate moves to their plain mean"
    )
    warnings.warn(
        f"{owner} step {step}: the objective is constant: the valid samples of "
        f"{int(constant.sum())} of {constant.numel()} problem(s) all got the same {what} (to within float "
        f"rounding), {effect}. Check that the objective depends on the parameters. (Warned once per optimizer.)",
        ConstantObjectiveWarning,
        stacklevel=caller_stacklevel(),
    )


class SamplingOptimizer(Optimizer):
    """The shared loop of every sampling method, a ``torch.optim.Optimizer``.

    A method subclasses this and implements [`update`][torch_mbd.sampling.SamplingOptimizer.update] and either [`sampling_std`][torch_mbd.sampling.SamplingOptimizer.sampling_std] (a
    Gaussian around the estimate, drawn by the default [`sample`][torch_mbd.sampling.SamplingOptimizer.sample]) or [`sample`][torch_mbd.sampling.SamplingOptimizer.sample] itself;
    it lists the attributes its checkpoints carry in [`state_fields`][torch_mbd.sampling.SamplingOptimizer.state_fields] (checked by
    [`check_state_fields`][torch_mbd.sampling.SamplingOptimizer.check_state_fields]) and those that must match in [`fixed_state_fields`][torch_mbd.sampling.SamplingOptimizer.fixed_state_fields].

    Args:
        params: tensors or parameter groups (group options ``bounds``, ``noise_scale``, ``fraction``),
            as for [`MBDOptimizer`][torch_mbd.MBDOptimizer], whose docstring documents every option.
        num_samples: candidates per step ``n``.
        bounds: ``(lower, upper)`` numbers or tensors; candidates are clipped to them.
        noise_scale: per-group multiplier of the sampling standard deviation.
        fraction: per-group fraction of coordinates perturbed (methods with ``uses_fraction``).
        rollout: a batched rollout (trajectory optimization), or ``None`` for ``step(closure)``.
        generator: a ``torch.Generator`` on the parameters' device, or ``None`` (made from ``seed``).
        seed: seed of the generator made when ``generator`` is ``None``.
        process_group: a ``torch.distributed`` group to shard the evaluation over, or ``None``.
        torch_threads: torch intra-op threads during [`step`][torch_mbd.sampling.SamplingOptimizer.step] (restored afterwards): ``None``
            (``$TORCH_MBD_THREADS`` or 1), an integer ``>= 1``, or ``"torch"`` (torch's own setting);
            see [`torch_mbd.threads`][torch_mbd.threads].
    """

    method = "sampling"
    """The method's name in [`torch_mbd.methods.METHODS`][torch_mbd.methods.METHODS] (saved in, and checked against, a state_dict)."""
    uses_fraction = False
    """Whether the group option ``fraction`` is used (only MBD perturbs a fraction of the coordinates)."""
    state_fields: tuple[str, ...] = ()
    """Attributes a ``state_dict`` saves and restores (checked by [`check_state_fields`][torch_mbd.sampling.SamplingOptimizer.check_state_fields])."""
    fixed_state_fields: tuple[str, ...] = ()
    """Attributes a ``state_dict`` saves and that must equal this optimizer's when it is loaded."""
    _BASE_FIELDS = ("steps_done", "rng_state", "num_samples", "param_shapes", "best_reward", "best_candidate")

    def __init__(
        self,
        params,
        num_samples: int = 256,
        *,
        bounds: tuple | None = None,
        noise_scale: float | str | Tensor = "auto",
        fraction: float | str = "auto",
        rollout: Callable | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        process_group=None,
        torch_threads: int | str | None = None,
        **unknown,
    ):
        given = [k for k in MBD_ONLY if unknown.get(k) is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: MBD-only option(s), not supported by {self.method}")
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected option(s) {sorted(unknown)}")
        self.num_samples = check_int("num_samples", num_samples, minimum=1)
        resolve_threads(torch_threads)  # checked now, read at every step
        self.torch_threads = torch_threads
        seed = check_seed(seed)
        if rollout is not None and not callable(rollout):
            raise TypeError(f"rollout must be callable (actions -> Trajectory), got {type(rollout).__name__}")
        self.rollout = rollout
        super().__init__(params, dict(bounds=bounds, noise_scale=noise_scale, fraction=fraction))

        self._params: list[Tensor] = [p for g in self.param_groups for p in g["params"]]
        for p in self._params:
            check_device(p.device, "params")  # the meta device holds no data to optimize
        flat.check_params(self._params)
        first = self._params[0]
        self.device, self.dtype = first.device, first.dtype
        self.compute_dtype = denoise.statistics_dtype(self.dtype)  # rewards, weights, means: >= float32
        self.batch_shape = () if rollout is None else rollout_batch_shape(self._params)
        if flat.flat_dim(self._params, self.batch_shape) == 0:
            raise ValueError(f"params hold no element to optimize (shapes {[tuple(p.shape) for p in self._params]})")

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
        self.evaluator = Evaluator(rollout, self._params, self.batch_shape, self.compute_dtype, process_group)
        if process_group is not None:
            self.evaluator.broadcast_generator_state(self.generator)
        self.steps_done = 0
        self.last_step: StepInfo | None = None
        self._layout: flat.FlatLayout | None = None
        self._layout_options: tuple | None = None  # flat.group_options_key when _layout was built
        self._buffer: Tensor | None = None
        self._pending: Asked | None = None  # the last ask() until its tell()
        self._warned_constant = False
        self._reset_best()

    # ----------------------------------------------------------------- parameter groups
    def add_param_group(self, param_group: dict) -> None:
        self._refuse_pending("add_param_group()")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            group.update(self._checked_group_options(group, group["params"]))
            if hasattr(self, "_params"):  # a group added after construction
                flat.check_params([p for g in self.param_groups for p in g["params"]])
        except (ValueError, TypeError):
            self.param_groups.pop()  # a rejected group leaves the optimizer as it was
            raise
        if hasattr(self, "_params"):
            self._params = [p for g in self.param_groups for p in g["params"]]
            self._layout = None
            self._reset_best()  # the candidates had other coordinates

    def _checked_group_options(self, group: dict, params: list[Tensor]) -> dict:
        """``noise_scale``, ``fraction`` and ``bounds`` of a param group, checked (nothing is changed)."""
        shapes = flat.event_shapes(params, self.rollout is not None)
        fraction = flat.check_fraction(group["fraction"])
        if not self.uses_fraction and fraction not in (1.0, "auto"):
            raise ValueError(f"fraction: an MBD-only option, {self.method} perturbs every coordinate")
        return dict(
            noise_scale=flat.check_noise_scale(group["noise_scale"], shapes, params),
            fraction=fraction,
            bounds=flat.check_bounds(group["bounds"], shapes, params),
        )

    @property
    def layout(self) -> flat.FlatLayout:
        """The flat layout of the parameter groups (built at the first use, rebuilt after a change).

        Group options set between steps (``noise_scale``, ``fraction``, ``bounds``) are checked and take
        effect at the next step (``step`` compares them once), the way a ``torch.optim`` optimizer reads
        ``lr`` from its groups.
        """
        if self._layout is None:
            for group in self.param_groups:
                group.update(self._checked_group_options(group, group["params"]))
            rollout_mode = self.rollout is not None
            self._layout = flat.build_layout(self.param_groups, self.batch_shape, rollout_mode, self.uses_fraction)
            self._layout_options = flat.group_options_key(self.param_groups)
        return self._layout

    # ----------------------------------------------------------------- the loop
    @property
    def level(self) -> int:
        """The diffusion level the next step uses: 0 for a method without levels."""
        return 0

    @property
    def _label(self) -> str:
        """How warnings name the method."""
        return self.method

    @torch.no_grad()
    def step(self, closure: Callable[[list[Tensor]], Tensor] | None = None) -> Tensor:
        """One step: sample, evaluate, keep the best, update, write the estimate into the parameters.

        The same as ``tell(closure(ask()))`` (``tell(rollout(ask()))`` in rollout mode), bit for bit:
        there is one code path.

        Args:
            closure: ``candidates -> losses [n]`` (one tensor ``[n, *param.shape]`` per parameter, in
                parameter-group order; views of a buffer the next step reuses); required unless a
                ``rollout`` was given at construction.

        Returns:
            The mean loss (closure mode) or mean per-sample reward (rollout mode) over the finite,
            feasible samples of this step, a 0-dim tensor.
        """
        if closure is None and self.rollout is None:
            raise ValueError("step() needs a closure, or a rollout given at construction")
        if closure is not None and self.rollout is not None:
            raise ValueError("this optimizer has a rollout; call step() without a closure")
        with use_threads(self.torch_threads):
            inputs = self._ask("step()")
            try:
                if self._pending.shard[1] == self._pending.shard[0]:  # this rank has no sample to evaluate
                    output = None
                elif closure is None:
                    output = self.rollout(inputs)
                else:
                    with candidate_params(self._params):  # batched_closure matches candidates by identity
                        output = closure(inputs)
                return self._tell(output, "closure")
            finally:
                self._pending = None  # a closure that raised leaves no pending ask behind

    @torch.no_grad()
    def ask(self) -> list[Tensor] | Tensor:
        """This step's candidates, to evaluate yourself and hand back to [`tell`][torch_mbd.sampling.SamplingOptimizer.tell].

        ``ask()`` then ``tell(losses)`` is the same step as ``step(closure)``, bit for bit. The
        candidates are views of the optimizer's sample buffer: they stay as they are until the next
        ``ask()`` or ``step()`` overwrites them (clone what you keep longer), and writing into them
        before ``tell()`` changes the samples the update reads.

        Returns:
            Closure mode: one tensor ``[n, *param.shape]`` per parameter, in parameter-group order, as
            ``step(closure)`` hands the closure. Rollout mode: the actions ``[..., n, H, nu]`` the
            rollout would get. Under a ``process_group``, this rank's shard of the ``n`` samples
            (``ceil(n / world)`` or fewer, possibly none); every rank calls ``ask()`` and ``tell()``.

        Raises:
            RuntimeError: the candidates of the last ``ask()`` were not told yet.
        """
        with use_threads(self.torch_threads):
            return self._ask("ask()")

    @torch.no_grad()
    def tell(self, losses) -> Tensor:
        """Score the candidates of the last [`ask`][torch_mbd.sampling.SamplingOptimizer.ask]: keep the best, update, write the estimate back.

        Args:
            losses: closure mode: the losses ``[n]`` of the candidates (lower is better; NaN and
                infinite losses are invalid); rollout mode: what the rollout returns for the
                actions, a [`Trajectory`][torch_mbd.rollout.Trajectory] or a ``(rewards, states, feasible)`` tuple.
                Under a ``process_group``: this rank's shard's (ignored where the shard is empty).

        Returns:
            What [`step`][torch_mbd.sampling.SamplingOptimizer.step] returns: the mean loss (mean reward in rollout mode) of the valid samples.

        Raises:
            RuntimeError: no ``ask()`` is waiting for its losses.
            TypeError, ValueError: ``losses`` of the wrong kind, shape or device (the pending ``ask()``
                then still waits, so a corrected ``tell()`` can follow).
        """
        if self._pending is None:
            raise RuntimeError("tell() without ask(): call ask() for the candidates, evaluate them, then tell()")
        with use_threads(self.torch_threads):
            return self._tell(losses, "tell() losses")

    def stop_reason(self) -> str | None:
        """Why further steps would not help (e.g. ``"step size collapsed"``), or ``None`` to go on.

        The default never stops; a method that can tell it has converged overrides this.
        [`minimize`][torch_mbd.minimize.minimize] reads it after every step and ends the run (and
        may restart) with this reason.
        """
        return None

    def _ask(self, caller: str) -> list[Tensor] | Tensor:
        if self._pending is not None:
            raise RuntimeError(
                f"{caller}: the candidates of the last ask() were not told yet; call tell() with their losses first"
            )
        if self._layout is not None and self._layout_options != flat.group_options_key(self.param_groups):
            self._layout = None  # group options set since the last step: checked and rebuilt by self.layout
        layout = self.layout
        level = self.level
        y_bar = flat.flat_estimate(self._params, math.prod(self.batch_shape))
        samples, sigma = self.sample(y_bar)
        inputs, shard = self.evaluator.inputs(samples, layout.segments)
        self._pending = Asked(y_bar, samples, sigma, level, inputs, shard)
        return inputs

    def _tell(self, output, what: str) -> Tensor:
        asked = self._pending
        samples, y_bar = asked.samples, asked.y_bar
        log_likelihood = self._sample_log_likelihood()
        evaluation = self.evaluator.score(output, samples, asked.inputs, asked.shard, log_likelihood, what)
        self._pending = None  # checked: from here on the step is told
        self._track_best(samples, evaluation.rewards, evaluation.feasible, y_bar)
        result = self.update(samples, evaluation, y_bar)
        new, valid = result.estimate, result.valid
        if not bool(valid.all()):
            self._warn_invalid(valid)
            new = torch.where(valid.unsqueeze(-1), new, y_bar)
        flat.write_estimate(self._params, self.layout, new)
        self.last_step = StepInfo(
            level=asked.level, sigma=asked.sigma if result.sigma is None else result.sigma,
            rewards=evaluation.rewards, weights=result.weights, valid=valid, demo_wins=result.demo_wins,
            trajectory=evaluation.trajectory, samples=samples, temperature=result.temperature,
            feasible=evaluation.feasible,
        )
        self.steps_done += 1
        return mean_objective(evaluation.rewards, evaluation.feasible, self.rollout is not None)

    def _sample_log_likelihood(self):
        """``(shard, trajectory) -> [B, k]`` of a demonstration the evaluation scores, or ``None``."""
        return None

    # ----------------------------------------------------------------- the hooks of a method
    def sample(self, y_bar: Tensor) -> tuple[Tensor, float]:
        """This step's candidates around the estimate ``y_bar [B, D]``: ``(samples [B, n, D], sigma)``.

        The default draws a Gaussian with [`sampling_std`][torch_mbd.sampling.SamplingOptimizer.sampling_std] ([`gaussian_samples`][torch_mbd.sampling.SamplingOptimizer.gaussian_samples]) and
        reports its mean standard deviation.
        """
        std = self.sampling_std(y_bar.shape[0])
        return self.gaussian_samples(y_bar, std), float(std.mean()) if isinstance(std, Tensor) else float(std)

    def sampling_std(self, B: int) -> float | Tensor:  # pragma: no cover - a method's hook
        """The sampling standard deviation of this step: a float, ``[D]`` or ``[B, D]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement sampling_std() or sample()")

    def update(self, samples: Tensor, evaluation: Evaluation, y_bar: Tensor) -> UpdateResult:  # pragma: no cover
        """The new estimate from the scored samples.

        Args:
            samples: the candidates ``[B, n, D]``.
            evaluation: their [`Evaluation`][torch_mbd.evaluation.Evaluation] (rewards, feasible, ...).
            y_bar: the estimate the samples were drawn around, ``[B, D]``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement update()")

    # ----------------------------------------------------------------- shared by the methods
    def gaussian_samples(self, y_bar: Tensor, std: float | Tensor) -> Tensor:
        """``clip(y_bar + std * eps)`` into the reused ``[B, n, D]`` buffer (``eps`` from the generator;
        with ``fraction < 1`` only that fraction of the coordinates is perturbed)."""
        layout = self.layout
        B, n, D = y_bar.shape[0], self.num_samples, layout.D
        if self._buffer is None or self._buffer.shape != (B, n, D):
            self._buffer = torch.empty((B, n, D), dtype=self.dtype, device=self.device)
        samples = self._buffer
        torch.randn(samples.shape, generator=self.generator, out=samples, dtype=self.dtype, device=self.device)
        if layout.fraction is not None:
            keep = torch.rand(samples.shape, generator=self.generator, dtype=self.dtype, device=self.device)
            samples.mul_(keep < layout.fraction)
        scale = std.unsqueeze(-2) if isinstance(std, Tensor) and std.dim() == 2 else std  # [B, 1, D]
        return denoise.sample_candidates(y_bar, samples, scale, layout.lower, layout.upper, out=samples)

    def sample_buffer(self, B: int) -> Tensor:
        """The reused ``[B, n, D]`` sample buffer, for a method that draws its own samples."""
        shape = (B, self.num_samples, self.layout.D)
        if self._buffer is None or self._buffer.shape != shape:
            self._buffer = torch.empty(shape, dtype=self.dtype, device=self.device)
        return self._buffer

    def initial_std(self, value: float) -> Tensor:
        """``[D]`` standard deviation ``value`` times each coordinate's ``noise_scale``."""
        std = torch.full((self.layout.D,), value, dtype=self.dtype, device=self.device)
        return std if self.layout.scale is None else std * self.layout.scale

    def _warn_invalid(self, valid: Tensor) -> None:
        """Warn that the problems where ``valid [B]`` is False had no usable sample (estimate kept)."""
        warnings.warn(
            f"{self._label} step {self.steps_done}: every sample of {int((~valid).sum())} problem(s) was "
            "infeasible or non-finite; keeping the previous estimate there",
            RuntimeWarning,
            stacklevel=caller_stacklevel(),
        )

    def warn_if_constant(self, constant: Tensor, demo: bool = False) -> None:
        """Warn once ([`ConstantObjectiveWarning`][torch_mbd.sampling.ConstantObjectiveWarning]) when some problem's valid samples all scored the same."""
        if not self._warned_constant and bool(constant.any()):
            self._warned_constant = True
            warn_constant(type(self).__name__, self.steps_done, constant, self.rollout is not None, demo)

    # ----------------------------------------------------------------- keep the best
    def _reset_best(self) -> None:
        B = math.prod(self.batch_shape)
        self.best_reward: Tensor = torch.full((B,), -math.inf, dtype=self.compute_dtype, device=self.device)
        """``[B]`` the best reward of a valid sample evaluated so far (``-loss`` in closure mode),
        ``-inf`` where none was valid yet."""
        self.best_candidate: Tensor | None = None
        """``[B, D]`` that sample (flattened like ``last_step.samples``), ``None`` before the first step;
        where `best_reward` is ``-inf`` it holds the estimate the first step sampled around."""

    def _track_best(self, samples: Tensor, rewards: Tensor, feasible: Tensor | None, y_bar: Tensor) -> None:
        """Keep the best valid sample of this step (finite reward, feasible, finite coordinates) if it
        beats `best_reward` strictly. Every rank sees the same samples and gathered rewards."""
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
        return flat.unflatten(self._params, self.layout, self.best_candidate)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """A deep, detached copy of the optimizer's state: ``torch.optim``'s (the param groups and their
        options) plus ``state_dict()["sampling"]``: the method's name, the step count, the RNG state,
        the best sample so far and the method's [`state_fields`][torch_mbd.sampling.SamplingOptimizer.state_fields] and [`fixed_state_fields`][torch_mbd.sampling.SamplingOptimizer.fixed_state_fields].
        Later steps never change a state_dict taken earlier. Refused between ``ask()`` and ``tell()``
        (the candidates drawn are not part of it)."""
        self._refuse_pending("state_dict()")
        state = super().state_dict()
        sampling = dict(
            method=self.method,
            optimizer=type(self).__name__,
            steps_done=self.steps_done,
            rng_state=self.generator.get_state(),
            num_samples=self.num_samples,
            param_shapes=[tuple(p.shape) for p in self._params],
            best_reward=self.best_reward,
            best_candidate=self.best_candidate,
        )
        for name in self.fixed_state_fields + self.state_fields:
            sampling[name] = getattr(self, name)
        state["sampling"] = sampling
        return copy.deepcopy(state)

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a [`state_dict`][torch_mbd.sampling.SamplingOptimizer.state_dict]: all or nothing.

        The method, sample count, parameters' shapes, param groups and [`fixed_state_fields`][torch_mbd.sampling.SamplingOptimizer.fixed_state_fields] must
        match this optimizer's; the group options, step count, RNG state, best sample and the method's
        [`state_fields`][torch_mbd.sampling.SamplingOptimizer.state_fields] are checked as the constructor checks them. Everything is checked before
        anything changes, so a rejected ``state_dict`` leaves the optimizer as it was. Loading one
        discards the candidates of an ``ask()`` not yet told.

        Raises:
            TypeError: ``state_dict`` is not a dict.
            ValueError: another method's state, a missing key, or a mismatch named in the message.
        """
        torch_state, checked = checked_state(self, state_dict)
        super().load_state_dict(torch_state)
        for group, options in zip(self.param_groups, checked.pop("options")):
            group.update(options)
        self.generator.set_state(checked.pop("rng_state"))
        for name, value in checked.items():
            setattr(self, name, value)
        self._layout, self._pending = None, None

    def _name(self) -> str:
        return f"{type(self).__name__} (method {self.method!r})"

    def _refuse_pending(self, what: str) -> None:
        if getattr(self, "_pending", None) is not None:  # add_param_group runs in torch's __init__ too
            raise RuntimeError(f"{what} between ask() and tell(): tell() the candidates of the last ask() first")

    def check_state_fields(self, saved: dict) -> dict:
        """The saved values of [`state_fields`][torch_mbd.sampling.SamplingOptimizer.state_fields], checked as the constructor checks them (a method
        overrides this for its fields); returns what to restore, or raises ``ValueError``."""
        return saved

    def _checked_tensor_field(self, name: str, value, shape: tuple) -> Tensor | None:
        """A saved ``None`` or a finite, ``>= 0`` floating tensor of ``shape``, in the statistics dtype."""
        return check_state_tensor(name, value, shape, self.device, self.compute_dtype)


def checked_state(opt: SamplingOptimizer, state_dict) -> tuple[dict, dict]:
    """``(torch.optim's part, everything else checked)`` of a state_dict for the optimizer ``opt``;
    changes nothing (`SamplingOptimizer.load_state_dict` applies it)."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    state_dict = copy.deepcopy(state_dict)  # nothing of the caller's is kept or changed
    if "sampling" not in state_dict and "mbd" in state_dict:
        state_dict = _from_previous_format(state_dict)
    saved = state_dict.pop("sampling", None)
    if not isinstance(saved, dict):
        raise ValueError(
            f"state_dict has no 'sampling' dict: it was not saved by a torch-mbd optimizer ({opt._name()})"
        )
    if saved.get("method") != opt.method:
        by = saved.get("optimizer", "an unknown optimizer")
        raise ValueError(
            f"state_dict was saved by {by} (method {saved.get('method')!r}); this is {opt._name()}: "
            "a state only loads into the method that saved it"
        )
    missing = [k for k in opt._BASE_FIELDS + opt.fixed_state_fields + opt.state_fields if k not in saved]
    missing += [k for k in ("state", "param_groups") if k not in state_dict]
    if missing:
        raise ValueError(f"state_dict lacks {missing}: it is not a complete {type(opt).__name__} state_dict")
    for key in ("num_samples",) + opt.fixed_state_fields:
        if saved[key] != getattr(opt, key):
            mine = getattr(opt, key)
            raise ValueError(f"state_dict was saved with {key}={saved[key]!r}, this optimizer has {mine!r}")
    shapes = [tuple(p.shape) for p in opt._params]
    if not isinstance(saved["param_shapes"], (list, tuple)) or [tuple(s) for s in saved["param_shapes"]] != shapes:
        raise ValueError(
            f"state_dict was saved for parameters of shapes {saved['param_shapes']}, this optimizer's are {shapes}"
        )
    if not isinstance(state_dict["state"], dict):
        raise ValueError(f"state_dict['state'] must be a dict, got {type(state_dict['state']).__name__}")
    checked = dict(options=checked_saved_groups(opt, state_dict["param_groups"]))
    checked["steps_done"] = check_int("state_dict steps_done", saved["steps_done"], minimum=0)
    B, D = math.prod(opt.batch_shape), flat.flat_dim(opt._params, opt.batch_shape)
    best = check_saved_best(saved["best_reward"], saved["best_candidate"], B, D, opt.device, opt.dtype)
    checked["best_reward"], checked["best_candidate"] = best[0].to(opt.compute_dtype), best[1]
    rng_state = saved["rng_state"]
    try:  # on a scratch generator: a bad state must not touch ours
        torch.Generator(device=opt.generator.device).set_state(rng_state)
    except (RuntimeError, TypeError, ValueError) as exc:
        device = opt.generator.device
        raise ValueError(f"state_dict rng_state is not a state of a {device} generator: {exc}") from None
    checked["rng_state"] = rng_state
    checked.update(opt.check_state_fields({name: saved[name] for name in opt.state_fields}))
    return state_dict, checked


def checked_saved_groups(opt: SamplingOptimizer, groups) -> list[dict]:
    """The group options of saved param groups, checked against the optimizer ``opt``'s groups."""
    if not isinstance(groups, (list, tuple)) or len(groups) != len(opt.param_groups):
        count = len(groups) if isinstance(groups, (list, tuple)) else type(groups).__name__
        raise ValueError(f"state_dict has {count} param groups, this optimizer {len(opt.param_groups)}")
    options = []
    for k, (saved, group) in enumerate(zip(groups, opt.param_groups)):
        if not isinstance(saved, dict) or len(saved.get("params", ())) != len(group["params"]):
            raise ValueError(f"state_dict param group {k} does not hold as many parameters as this optimizer's")
        absent = [key for key in ("bounds", "noise_scale", "fraction") if key not in saved]
        if absent:
            raise ValueError(f"state_dict param group {k} lacks {absent}")
        try:
            options.append(opt._checked_group_options(saved, group["params"]))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"state_dict param group {k}: {exc}") from None
    return options


def check_saved_best(reward, candidate, B: int, D: int, device, dtype) -> tuple[Tensor, Tensor | None]:
    """A saved ``best_reward [B]`` and ``best_candidate [B, D]`` checked; the candidate moved to ``device``
    and ``dtype``, the reward to ``device``."""
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
        candidate = candidate.to(device, dtype)
    return reward.to(device), candidate


def check_state_tensor(name: str, value, shape: tuple, device, dtype) -> Tensor | None:
    """A saved ``None``, or a finite, ``>= 0`` floating tensor of ``shape`` moved to ``device`` and ``dtype``."""
    if value is None:
        return None
    if not isinstance(value, Tensor) or tuple(value.shape) != shape or not value.is_floating_point():
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"state_dict {name} must be a floating-point tensor of shape {shape}, got {got}")
    if not bool((torch.isfinite(value) & (value >= 0)).all()):
        raise ValueError(f"state_dict {name} must be finite and >= 0 everywhere")
    return value.to(device, dtype)


def _from_previous_format(state_dict: dict) -> dict:
    """A state_dict of the previous layout (``"mbd"`` and ``"baseline"`` entries) in today's (``"sampling"``)."""
    old = state_dict.pop("mbd")
    extra = state_dict.pop("baseline", None) or {}
    if not isinstance(old, dict) or not isinstance(extra, dict):
        raise ValueError("state_dict['mbd'] and state_dict['baseline'] must be dicts")
    fields = {RENAMED.get(k, k): v for k, v in {**old, **extra}.items()}
    fields["method"] = extra.get("method", "mbd")
    state_dict["sampling"] = fields
    return state_dict


def check_number_field(name: str, value, allow_none: bool = False) -> float | None:
    """A saved real number checked (``None`` allowed with ``allow_none``)."""
    if value is None and allow_none:
        return None
    return check_real(f"state_dict {name}", value)


SCHEDULE_OPTIONS = ("num_steps", "beta_first", "beta_last", "noise_convention")
"""The schedule options a method without a schedule takes for its default initial standard deviation."""


def pop_first_sigma(options: dict, owner: str) -> float:
    """Remove the schedule options (and their deprecated names) from ``options``, in place, and return
    the schedule's first sampling level ``sigma_{N-1}`` (`first_sigma`), checked."""
    old = {k: options.pop(k) for k in list(options) if k in RENAMED}
    options.update(renamed_options(old, owner))
    return first_sigma(**{k: options.pop(k) for k in SCHEDULE_OPTIONS if k in options})


def check_unused_temperature(temperature, target_ess=None) -> None:
    """A method without a temperature accepts ``temperature`` and ``target_ess`` (so that every method
    takes the same arguments of ``plan`` / ``minimize``) and checks them, but does not use them."""
    if temperature is not None:
        check_temperature("temperature", temperature)
    if target_ess is not None:
        check_target_ess("target_ess", target_ess)
