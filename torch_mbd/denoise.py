"""One reverse-diffusion step of Model-Based Diffusion, as pure functions over tensors.

Every function works on ``B`` independent problems at once (a leading batch dimension),
``n`` samples each, on any device and in float32 or float64, without a Python loop over
samples or problems. Shapes use ``B`` (problems), ``n`` (samples), ``D`` (decision
variables, e.g. ``H * nu`` for a control sequence) and ``F`` (compared features, e.g. the
flattened state trajectory ``H * nx``).

The step, for diffusion level ``i`` (paper, Algorithm 2):

1. [`sample_candidates`][torch_mbd.denoise.sample_candidates]: ``Y0s = Ybar + sigma_i * eps``, clipped to the bounds;
2. the model evaluates them (a closure or a rollout; not here);
3. [`normalized_log_weights`][torch_mbd.denoise.normalized_log_weights]: ``logp = (R - mean R) / std R / temperature``, ``-inf`` for
   infeasible or non-finite samples; [`demo_log_weights`][torch_mbd.denoise.demo_log_weights] applies the max rule of Eq. (13);
4. [`weighted_mean`][torch_mbd.denoise.weighted_mean]: ``Ybar0 = sum softmax(logp) * Y0s`` (Eq. 10d);
5. [`score_ascent`][torch_mbd.denoise.score_ascent] / [`reverse_step`][torch_mbd.denoise.reverse_step]: Eq. (6) with the score of Eq. (9)/(10c).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .checks import check_int, check_positive, check_real
from .schedule import Schedule


def sample_candidates(
    y_bar: Tensor,
    noise: Tensor,
    sigma: float | Tensor,
    lower: Tensor | float | None = None,
    upper: Tensor | float | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """Draw candidates around the current estimate: ``clip(Ybar + sigma * eps)``.

    Args:
        y_bar: current estimate, ``[B, D]``.
        noise: standard normal noise ``eps``, ``[B, n, D]``.
        sigma: noise scale, a float or a tensor broadcastable to ``[D]`` (per coordinate).
        lower: lower bound broadcastable to ``[D]``, or ``None`` for unbounded.
        upper: upper bound broadcastable to ``[D]``, or ``None`` for unbounded.
        out: optional ``[B, n, D]`` buffer to write into (may be ``noise`` itself).

    Returns:
        The candidates ``[B, n, D]``.
    """
    if out is None:
        out = torch.empty_like(noise)
    if isinstance(sigma, Tensor):
        torch.addcmul(y_bar.unsqueeze(-2), noise, sigma, out=out)
    else:
        torch.add(y_bar.unsqueeze(-2), noise, alpha=float(sigma), out=out)
    if lower is not None or upper is not None:
        out.clamp_(min=lower, max=upper)
    return out


SPREAD_TOLERANCE = 64
"""Valid rewards whose spread is at most ``SPREAD_TOLERANCE * eps * |R|`` count as constant.

The test is relative to the rewards' own size (a float32 objective scaled by ``1e-8`` still has a
spread), and ``eps`` is the machine epsilon of the dtype the statistics are computed in.
"""


def statistics_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype weights and reward statistics are computed in: ``dtype``, at least float32.

    float16 / bfloat16 rewards of a few hundred overflow when squared (float16 tops out at 65504) and
    hold three significant digits; float32 and float64 are kept as they are.
    """
    return torch.promote_types(dtype, torch.float32)


def _power_of_two_below(x: Tensor) -> Tensor:
    """``2**floor(log2(x))`` elementwise for ``x > 0`` (so ``x / result`` is in ``[1, 2)``), 1 where ``x == 0``."""
    _, exponent = torch.frexp(x)  # x = m * 2**e, 0.5 <= m < 1
    power = torch.ldexp(torch.ones_like(x), exponent - 1)
    return torch.where(x > 0, power, torch.ones_like(x))


def _standardize(rewards: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``R - mean R`` and ``std R`` over the valid rewards, without overflow, in units of a power of two.

    The rewards are divided by the power of two just below their largest valid ``|R|`` before the
    mean and spread are taken: nothing is squared in reward units (a float32 objective of size
    ``1e19`` would overflow), and since dividing by a power of two rounds nothing, the result is
    bit for bit the plain formula wherever that one does not overflow. The test for a constant
    objective is relative to the rewards' size ([`SPREAD_TOLERANCE`][torch_mbd.denoise.SPREAD_TOLERANCE]), not an absolute threshold
    (a spread of ``1e-8`` is a spread), so ``a * R + b`` is treated like ``R``.

    Args:
        rewards: ``[B, n]``, any floating dtype (computed in [`statistics_dtype`][torch_mbd.denoise.statistics_dtype]).
        valid: boolean ``[B, n]``; invalid entries are ignored (they may be NaN or infinite).

    Returns:
        ``(centered, mean, std, unit, constant)``: ``centered = (R - mean R) / unit`` ``[B, n]`` (0
        where invalid); ``mean = mean R / unit`` (0 for a problem with no valid reward) and
        ``std = std R / unit``, each ``[B, 1]``; the power of two ``unit`` ``[B, 1]``; and the boolean
        ``[B]`` of problems whose valid rewards are equal to within float rounding (a single valid
        reward, or none, included).
    """
    dtype = statistics_dtype(rewards.dtype)
    rewards = rewards.to(dtype)
    zero = torch.zeros((), dtype=dtype, device=rewards.device)
    safe = torch.where(valid, rewards, zero)
    unit = _power_of_two_below(safe.abs().amax(-1, keepdim=True))  # [B, 1]
    scaled = safe / unit  # every valid value in (-2, 2): no square below can overflow
    count = valid.sum(-1, keepdim=True).clamp(min=1).to(dtype)
    mean = scaled.sum(-1, keepdim=True) / count
    centered = torch.where(valid, scaled - mean, zero)
    std = (centered.square().sum(-1, keepdim=True) / count).sqrt()
    constant = std <= SPREAD_TOLERANCE * torch.finfo(dtype).eps * mean.abs()  # includes std == 0
    return centered, mean, std, unit, constant.squeeze(-1)


def reward_statistics(rewards: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of the valid rewards of each problem.

    Args:
        rewards: ``[B, n]``.
        valid: boolean ``[B, n]``; invalid entries are ignored.

    Returns:
        ``(mean, std)``, each ``[B]``, in [`statistics_dtype`][torch_mbd.denoise.statistics_dtype] of the rewards. A problem with no
        valid sample gets mean 0; a spread too small to divide by (identical rewards to within
        ``SPREAD_TOLERANCE`` float roundings of their size, a single sample) is replaced by 1, so
        normalization never divides by zero. Computed without squaring in reward units (no
        overflow for rewards near the dtype's largest value; the results are clamped to it).
    """
    _, mean, std, unit, constant = _standardize(rewards, valid)
    return _in_reward_units(mean, std, unit, constant)


def _in_reward_units(mean: Tensor, std: Tensor, unit: Tensor, constant: Tensor) -> tuple[Tensor, Tensor]:
    """``[B]`` mean and std in reward units from `_standardize`'s, clamped to the dtype; std 1 where constant."""
    big = torch.finfo(std.dtype).max
    mean = (mean * unit).clamp(-big, big).squeeze(-1)
    std = (std * unit).clamp(min=torch.finfo(std.dtype).tiny, max=big).squeeze(-1)
    return mean, torch.where(constant, torch.ones_like(std), std)


def _per_problem(temperature: float | Tensor, like: Tensor) -> float | Tensor:
    """A float temperature unchanged; a ``[B]`` tensor as ``[B, 1]`` in ``like``'s dtype and device."""
    if isinstance(temperature, Tensor):
        return temperature.to(like.device, like.dtype).reshape(-1, 1)
    return temperature


def normalized_log_weights(
    rewards: Tensor, temperature: float | Tensor, feasible: Tensor | None = None, *, return_constant: bool = False
):
    """Model log-weights ``log p_J p_g = (R - mean R) / std R / temperature`` (Eq. 10d).

    Invariant to ``a * R + b`` for any ``a > 0`` and finite ``b`` (up to float rounding), in every
    dtype; float16 / bfloat16 rewards are standardized in float32 ([`statistics_dtype`][torch_mbd.denoise.statistics_dtype]).
    Rewards that are constant to within float rounding ([`SPREAD_TOLERANCE`][torch_mbd.denoise.SPREAD_TOLERANCE]) get log-weight 0.

    Args:
        rewards: per-sample reward (higher is better), ``[B, n]``.
        temperature: ``lambda > 0``, a float or a ``[B]`` tensor (one per problem, e.g. from
            [`ess_temperature`][torch_mbd.denoise.ess_temperature]).
        feasible: optional boolean ``[B, n]``; infeasible samples (``p_g = 0``) get ``-inf``.
        return_constant: also return the boolean ``[B]`` of problems whose 2 or more valid rewards
            are all equal (their log-weights are all 0: a plain mean).

    Returns:
        ``(logp, mean, std)`` (and ``constant`` with ``return_constant``): log-weights ``[B, n]``
        (``-inf`` for infeasible, NaN or infinite rewards) and the statistics ``[B]`` used to
        normalize (as [`reward_statistics`][torch_mbd.denoise.reward_statistics]), computed over the feasible, finite samples only.
    """
    valid = torch.isfinite(rewards)
    if feasible is not None:
        valid = valid & feasible
    centered, mean_u, std_u, unit, constant = _standardize(rewards, valid)
    flat = constant.unsqueeze(-1)
    temperature = _per_problem(temperature, std_u)
    logp = centered / (torch.where(flat, torch.ones_like(std_u), std_u) * temperature)
    logp = torch.where(valid & ~flat, logp, torch.zeros_like(logp))
    logp = torch.where(valid, logp, torch.full_like(logp, float("-inf")))
    mean, std = _in_reward_units(mean_u, std_u, unit, constant)
    if return_constant:
        return logp, mean, std, constant & (valid.sum(-1) >= 2)
    return logp, mean, std


def demo_log_likelihood(features: Tensor, demo: Tensor, mask: Tensor | None, sigma: float | Tensor) -> Tensor:
    """Gaussian log-likelihood of each sample's features under the demonstration.

    ``log p_demo(Y) = -0.5 * mean_{covered}((f(Y) - f_demo) / sigma)^2``: the mean over the
    entries the demonstration covers, so the scale does not grow with the horizon.

    Args:
        features: what the demonstration describes, per sample, ``[B, n, F]`` (e.g. the
            flattened state trajectory).
        demo: demonstrated features, ``[B, F]`` or ``[F]``; entries outside ``mask`` are ignored
            (they may be NaN).
        mask: boolean ``[F]`` or ``[B, F]`` of the covered entries (partial demonstrations);
            ``None`` covers all.
        sigma: standard deviation of the demonstration's Gaussian likelihood: a number, or a
            positive ``[F]`` or ``[B, F]`` tensor of one per entry (a diagonal covariance).

    Returns:
        ``[B, n]`` log-likelihoods; ``-inf`` where a sample's covered features are not finite.
    """
    if mask is None:
        mask = torch.ones(demo.shape[-1], dtype=torch.bool, device=demo.device)
    if isinstance(sigma, Tensor) and sigma.dim() == 2:
        sigma = sigma.unsqueeze(-2)
    diff = (features - demo.unsqueeze(-2)) / sigma
    covered = mask.unsqueeze(-2) if mask.dim() == 2 else mask
    sq = torch.where(covered, diff.square(), torch.zeros((), dtype=diff.dtype, device=diff.device))
    count = covered.sum(-1).clamp(min=1).to(features.dtype)
    loglik = -0.5 * sq.sum(-1) / count
    return torch.nan_to_num(loglik, nan=float("-inf"), neginf=float("-inf"), posinf=float("-inf"))


def clipped_distance_log_likelihood(points: Tensor, reference: Tensor, clip: float = 0.5) -> Tensor:
    """Demonstration log-likelihood from clipped point distances (the authors' humanoid tracking term).

    ``log p_demo = -mean_{T, P} (min(|d|, clip) / clip)^2``, ``|d|`` the Euclidean distance of each
    point to its reference point: 0 for a sample on the reference, down to ``-1`` for one every
    point of which is ``clip`` or farther away. A building block for [`MBDOptimizer`][torch_mbd.MBDOptimizer]'s
    ``demo_log_likelihood``, e.g. with ``demo_units="reward"`` and the demonstration reward 1.0.

    Args:
        points: positions of ``P`` tracked points over ``T`` steps, ``[B, n, T, P, 3]`` (any
            leading dimensions; the last may be any number of coordinates, matching ``reference``).
        reference: the demonstrated positions, ``[T, P, 3]``; cast to ``points``' dtype and device.
        clip: the distance beyond which a point counts as fully off, ``> 0`` (same units as
            ``points``).

    Returns:
        ``[B, n]`` log-likelihoods in ``points``' dtype; ``-inf`` where a sample's points are not
        all finite (no demonstration weight, as [`demo_log_likelihood`][torch_mbd.denoise.demo_log_likelihood]).

    Raises:
        ValueError: ``clip`` not a positive finite number (`check_positive`),
            or ``reference``'s shape is not the last three dimensions of ``points``.
    """
    clip = check_positive("clip", clip)
    if points.dim() < 3 or reference.dim() != 3 or tuple(points.shape[-3:]) != tuple(reference.shape):
        raise ValueError(
            f"reference of shape {tuple(reference.shape)} must be [T, P, 3], the last three dimensions of "
            f"points {tuple(points.shape)}"
        )
    distance = (points - reference.to(points)).norm(dim=-1)  # [..., T, P]
    loglik = -(distance.clamp(max=clip) / clip).square().mean((-1, -2))
    finite = torch.isfinite(points).flatten(-3).all(-1) & ~torch.isnan(loglik)  # NaN: no point (T or P = 0)
    return torch.where(finite, loglik, torch.full_like(loglik, float("-inf")))


DEMO_UNITS = ("logit", "reward")


def demo_log_weights(
    logp_model: Tensor,
    demo_loglik: Tensor,
    demo_reward: Tensor | float,
    mean: Tensor,
    std: Tensor,
    temperature: float | Tensor,
    units: str = "logit",
) -> tuple[Tensor, Tensor]:
    """The max rule of Eq. (13): ``w = max(w_model, w_demo)``.

    ``log w_demo = log p_demo(Y) + log p_J(Y_demo)``, with ``p_J(Y_demo)`` normalized exactly as
    the model rewards are (same mean, spread and temperature) and ``p_g(Y_demo) = 1``. Two
    choices the paper leaves open, made as the authors' code makes them:

    * ``p_demo`` is known up to a constant (``p_demo(Y) ∝ N(Y | Y_demo, sigma^2)``); it is
      normalized over each step's samples so that the sample closest to the demonstration has
      ``p_demo = 1``. Without this the demonstration's pull depends on how far the samples
      happen to be from it: metres away early on, an absolute Gaussian likelihood is so small
      that the demonstration never wins, and it can only steer with a ``sigma`` too wide to
      tell nearby samples apart.
    * A sample the model rules out (``w_model = 0``: infeasible, ``p_g(Y) = 0``, or a non-finite
      reward) gets no demonstration weight either, so the estimate is a mean of feasible
      samples only. (On the car of ``dynamics.car``, letting infeasible samples near the
      demonstration weigh in gave final plans that clip the obstacle in half the seeds.)

    ``units`` says how ``log p_demo`` meets the normalized model log-weights:

    * ``"logit"``: added as is, ``log w_demo = log p_demo + (R_demo - mean) / (std * temperature)``.
      How sharply the demonstration tells samples apart then depends on ``sigma`` against the
      samples' spread, which shrinks with the noise: on the humanoid of ``dynamics.humanoid_jog``
      the weights of a demonstration-led run went from one sample (effective sample size 1.5
      of 64) at the first step to nearly uniform (62 of 64) at the last.
    * ``"reward"``: the authors' code. ``log p_demo`` is a reward, normalized with the rewards,
      ``log w_demo = (log p_demo + R_demo - mean) / (std * temperature)``, and after the max the
      combined log-weights are standardized again to spread ``1 / temperature`` over the
      allowed samples, so the softmax is as sharp as the model's alone whichever term wins.
      ``sigma`` is then in the demonstration's units per unit of reward: a sample whose
      normalized squared error is 1 higher than the closest one's loses half a unit of reward.

    Early on, when samples are worse than the demonstration, samples near it get its weight;
    once a sample's own model weight exceeds that, the model decides.

    Args:
        logp_model: ``[B, n]`` from [`normalized_log_weights`][torch_mbd.denoise.normalized_log_weights] (``-inf`` where ``w_model = 0``).
        demo_loglik: ``[B, n]`` from [`demo_log_likelihood`][torch_mbd.denoise.demo_log_likelihood].
        demo_reward: reward of the demonstration, a float or ``[B]``, in the units of the
            per-sample rewards.
        mean: ``[B]`` reward mean returned by [`normalized_log_weights`][torch_mbd.denoise.normalized_log_weights].
        std: ``[B]`` reward spread returned by [`normalized_log_weights`][torch_mbd.denoise.normalized_log_weights].
        temperature: ``lambda > 0``, a float or a ``[B]`` tensor (the one the model weights used).
        units: ``"logit"`` (default) or ``"reward"``, see above.

    Returns:
        ``(logp, demo_wins)``: combined log-weights ``[B, n]`` and the boolean ``[B, n]`` mask of
        samples whose weight came from the demonstration.
    """
    if units not in DEMO_UNITS:
        raise ValueError(f"units must be one of {DEMO_UNITS}, got {units!r}")
    allowed = torch.isfinite(logp_model)
    neg_inf = torch.full_like(demo_loglik, float("-inf"))
    demo_loglik = torch.where(allowed, demo_loglik, neg_inf)
    best = demo_loglik.amax(-1, keepdim=True)
    demo_loglik = demo_loglik - torch.where(torch.isfinite(best), best, torch.zeros_like(best))
    dtype = logp_model.dtype
    demo_reward = torch.as_tensor(demo_reward, dtype=dtype, device=logp_model.device)
    if isinstance(temperature, Tensor):
        temperature = temperature.to(std.device, std.dtype).reshape(std.shape)
    scale = (std * temperature).unsqueeze(-1)
    lead = (demo_reward - mean).unsqueeze(-1)
    if units == "logit":
        logp_demo = demo_loglik + lead / scale
    else:
        logp_demo = (demo_loglik + lead) / scale
    overflow = torch.isposinf(logp_demo) | torch.isnan(logp_demo)
    if bool(overflow.any()):  # huge rewards: the same terms in float64, clamped to the working dtype
        wide = torch.float64 if logp_model.device.type != "mps" else torch.float32
        lead, scale = lead.to(wide), scale.to(wide)
        if units == "logit":
            again = demo_loglik.to(wide) + (lead / scale).clamp(max=torch.finfo(dtype).max)
        else:
            again = (demo_loglik.to(wide) + lead) / scale
        # below -max the cast gives -inf: weight 0 either way
        again = again.clamp(max=torch.finfo(dtype).max).to(dtype)
        logp_demo = torch.where(overflow, again, logp_demo)
    demo_wins = logp_demo > logp_model
    logp = torch.where(demo_wins, logp_demo, logp_model)
    if units == "reward":
        logp, _, _ = normalized_log_weights(logp, temperature, allowed)
    return logp, demo_wins


def weighted_mean(samples: Tensor, logp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``Ybar0 = sum_j softmax(logp)_j * Y0s_j`` (Eq. 10d), log-sum-exp stable.

    Args:
        samples: ``[B, n, D]``.
        logp: ``[B, n]`` log-weights; ``-inf`` gives weight 0.

    Computed in [`statistics_dtype`][torch_mbd.denoise.statistics_dtype] (at least float32: float16 samples are averaged in float32).

    Returns:
        ``(y_bar0, weights, valid)``: the weighted mean ``[B, D]``, the weights ``[B, n]`` and a
        boolean ``[B]`` that is False for a problem whose samples all have weight 0 (its
        ``y_bar0`` is then the plain mean, finite but meaningless: keep the previous estimate).
    """
    dtype = statistics_dtype(torch.promote_types(samples.dtype, logp.dtype))
    logp = logp.to(dtype)
    # NaN counts as -inf (weight 0); +inf as the largest finite log-weight (softmax stays finite)
    logp = torch.nan_to_num(logp, nan=float("-inf"), posinf=torch.finfo(dtype).max, neginf=float("-inf"))
    valid = torch.isfinite(logp).any(-1)
    safe = torch.where(valid.unsqueeze(-1), logp, torch.zeros_like(logp))
    weights = torch.softmax(safe, dim=-1)
    y_bar0 = torch.bmm(weights.unsqueeze(-2), samples.to(dtype)).squeeze(-2)
    return y_bar0, weights, valid


def best_sample(samples: Tensor, rewards: Tensor, feasible: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The best valid sample of each problem: the largest finite reward of a feasible, finite sample.

    Args:
        samples: ``[B, n, D]``.
        rewards: ``[B, n]`` (higher is better).
        feasible: optional boolean ``[B, n]``.

    Returns:
        ``(reward [B], sample [B, D])``: on a tie the first such sample; a problem without a valid
        sample gets reward ``-inf`` (its sample is then meaningless).
    """
    valid = torch.isfinite(rewards) & torch.isfinite(samples).all(-1)
    if feasible is not None:
        valid = valid & feasible
    score = torch.where(valid, rewards, torch.full_like(rewards, float("-inf")))
    index = score.argmax(-1, keepdim=True)  # [B, 1]: the first maximum
    reward = score.gather(-1, index).squeeze(-1)
    sample = samples.gather(-2, index.unsqueeze(-1).expand(-1, 1, samples.shape[-1])).squeeze(-2)
    return reward, sample


DEFAULT_TARGET_ESS = 0.1
"""Default ``target_ess`` of ``temperature="auto"``: the softmax weights keep an effective sample size
of this fraction of the valid samples ([`ess_temperature`][torch_mbd.denoise.ess_temperature])."""
TEMPERATURE_BRACKET = (1e-4, 1e4)
"""The temperatures [`ess_temperature`][torch_mbd.denoise.ess_temperature] searches between."""
TEMPERATURE_ITERATIONS = 60
"""Bisection steps of [`ess_temperature`][torch_mbd.denoise.ess_temperature] (the bracket's width in ``log lambda`` halves each time)."""
_CHECK_AFTER = 16  # from this step on, ess_temperature stops at the fixed point of its float bisection


def effective_sample_size(logp: Tensor) -> Tensor:
    """Kish's effective sample size ``1 / sum_j w_j^2`` of the weights ``w = softmax(logp)``.

    Args:
        logp: ``[B, n]`` log-weights; ``-inf`` (or NaN) gives weight 0.

    Returns:
        ``[B]`` in [`statistics_dtype`][torch_mbd.denoise.statistics_dtype] of ``logp``: between 1 (one sample holds all the weight)
        and the number of valid samples (equal weights); 0 for a problem without a valid sample.
    """
    dtype = statistics_dtype(logp.dtype)
    logp = torch.nan_to_num(logp.to(dtype), nan=float("-inf"), posinf=torch.finfo(dtype).max, neginf=float("-inf"))
    valid = torch.isfinite(logp).any(-1)
    safe = torch.where(valid.unsqueeze(-1), logp, torch.zeros_like(logp))
    weights = torch.softmax(safe, dim=-1)
    ess = 1.0 / weights.square().sum(-1)
    return torch.where(valid, ess, torch.zeros_like(ess))


def ess_temperature(
    z: Tensor,
    valid: Tensor,
    target: float = DEFAULT_TARGET_ESS,
    bracket: tuple[float, float] = TEMPERATURE_BRACKET,
    iterations: int = TEMPERATURE_ITERATIONS,
) -> Tensor:
    """The temperature at which the softmax weights keep a target effective sample size.

    Finds ``lambda`` such that ``w = softmax(z / lambda)`` over the valid entries has
    [`effective_sample_size`][torch_mbd.denoise.effective_sample_size] ``target * m``, ``m`` the number of valid samples of the problem.
    The effective sample size rises monotonically with ``lambda`` (from the number of samples tied
    at the best ``z`` towards ``m``), so a bisection in ``log lambda`` over ``bracket`` finds it:
    ``iterations`` halvings, vectorized over problems, no data-dependent loop. The result is the
    upper end of the final interval, so the weights keep at least the target (to within the
    interval's width). A target the bracket cannot reach returns its end: the lower end when even
    ``bracket[0]`` keeps more than the target (e.g. ``target * m < 1``: no weighting is sharper than
    one sample), the upper end when even ``bracket[1]`` keeps less. A problem with fewer than 2
    valid samples or with all valid ``z`` equal (any ``lambda`` gives the same weights) gets
    ``bracket[1]``.

    Args:
        z: ``[B, n]`` standardized rewards ``(R - mean R) / std R`` (the log-weights of
            [`normalized_log_weights`][torch_mbd.denoise.normalized_log_weights] at temperature 1); invalid entries are ignored.
        valid: boolean ``[B, n]`` of the samples that take part (feasible, finite reward).
        target: the fraction of the valid samples the weights should keep, in ``(0, 1]``.
        bracket: ``(lowest, highest)`` temperature searched, ``0 < lowest < highest``.
        iterations: bisection steps, ``>= 1``.

    Returns:
        ``[B]`` temperatures in [`statistics_dtype`][torch_mbd.denoise.statistics_dtype] of ``z``.

    Raises:
        ValueError: ``target`` outside ``(0, 1]``, a bad ``bracket`` or ``iterations``.
    """
    try:
        fraction = check_real("target", target)
    except ValueError:
        fraction = math.nan
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"Invalid target: expected an effective-sample-size fraction in (0, 1], got {target!r}")
    target = fraction
    low, high = float(bracket[0]), float(bracket[1])
    if not 0.0 < low < high < float("inf"):
        raise ValueError(f"Invalid bracket: expected 0 < lowest < highest < inf, got {bracket!r}")
    iterations = check_int("iterations", iterations, minimum=1)
    dtype = statistics_dtype(z.dtype)
    valid = valid & torch.isfinite(z)
    z = torch.where(valid, z.to(dtype), torch.zeros((), dtype=dtype, device=z.device))
    count = valid.sum(-1).to(dtype)  # [B]
    goal = float(target) * count
    inf = torch.full_like(z, float("inf"))
    z_max = torch.where(valid, z, -inf).amax(-1, keepdim=True)
    z_min = torch.where(valid, z, inf).amin(-1, keepdim=True)
    undecided = (count >= 2) & (z_max > z_min).squeeze(-1)  # otherwise every temperature weights alike
    centered = torch.where(valid, z - torch.where(valid.any(-1, keepdim=True), z_max, 0.0), -inf)  # <= 0
    log_low = torch.full_like(count, math.log(low))
    log_high = torch.full_like(count, math.log(high))
    for k in range(iterations):
        mid = 0.5 * (log_low + log_high)
        # effective_sample_size inlined: ``centered`` is finite or -inf, and a problem without a valid
        # sample (NaN weights) compares like its 0 (never ``short``)
        weights = torch.softmax(centered / mid.exp().unsqueeze(-1), dim=-1)
        short = 1.0 / weights.square().sum(-1) < goal  # too sharp: the temperature must rise
        new_low = torch.where(short, mid, log_low)
        new_high = torch.where(short, log_high, mid)
        # once the interval cannot shrink in this dtype, every further step is a no-op: stop (same result)
        if k >= _CHECK_AFTER and bool(((new_low == log_low) & (new_high == log_high)).all()):
            break
        log_low, log_high = new_low, new_high
    temperature = log_high.exp()
    return torch.where(undecided, temperature, torch.full_like(temperature, high))


def score_ascent(
    y_i: Tensor,
    y_bar0: Tensor,
    alpha: float,
    alpha_bar: float,
    step_size: float | None = None,
) -> Tensor:
    """Monte Carlo score ascent, Eq. (6) with the score of Eq. (9)/(10c).

    ``score = (-Y_i + sqrt(alpha_bar_i) Ybar0) / (1 - alpha_bar_i)`` and
    ``Y_{i-1} = (Y_i + step_size * score) / sqrt(alpha_i)``. The default step size
    ``1 - alpha_bar_i`` (optimal for the ``1/(1 - alpha_bar_i)``-smooth ``log p_i``) gives
    ``Y_{i-1} = sqrt(alpha_bar_i / alpha_i) Ybar0``.

    Args:
        y_i: the noisy iterate ``Y^(i)``, ``[B, D]``.
        y_bar0: the Monte Carlo estimate of ``E[Y^(0)]``, ``[B, D]``.
        alpha: ``alpha_i``.
        alpha_bar: ``alpha_bar_i``.
        step_size: gradient step; ``None`` means ``1 - alpha_bar_i``.

    Returns:
        ``Y^(i-1)``, ``[B, D]``.
    """
    if step_size is None:
        step_size = 1.0 - alpha_bar
    score = (y_bar0 * alpha_bar**0.5 - y_i) / (1.0 - alpha_bar)
    return (y_i + step_size * score) / alpha**0.5


def reverse_step(
    y_bar: Tensor, y_bar0: Tensor, i: int, schedule: Schedule, step_scale: float = 1.0
) -> Tensor:
    """One reverse step on the estimate ``Ybar = Y^(i) / sqrt(alpha_bar_i)``.

    Scales ``Ybar`` to ``Y^(i)``, applies [`score_ascent`][torch_mbd.denoise.score_ascent] with step size
    ``step_scale * (1 - alpha_bar_i)`` and scales back by ``sqrt(alpha_bar_{i-1})``.
    With ``step_scale = 1`` the result is exactly ``Ybar0``; with ``step_scale < 1`` the
    estimate moves only part of the way (``(1 - s) * Ybar + s * Ybar0`` up to rounding).

    Args:
        y_bar: current estimate ``[B, D]``.
        y_bar0: weighted mean of the samples ``[B, D]``.
        i: diffusion level, ``0 <= i < schedule.num_steps``.
        schedule: the [`Schedule`][torch_mbd.schedule.Schedule].
        step_scale: multiple of the optimal step size ``1 - alpha_bar_i``.

    Returns:
        The new estimate ``[B, D]``.
    """
    alpha = float(schedule.alphas[i])
    alpha_bar = float(schedule.alpha_bars[i])
    y_i = y_bar * alpha_bar**0.5
    y_prev = score_ascent(y_i, y_bar0, alpha, alpha_bar, step_scale * (1.0 - alpha_bar))
    return y_prev / schedule.alpha_bar_prev(i) ** 0.5
