import math

import pytest
import torch

from torch_mbd import denoise
from torch_mbd.schedule import linear_schedule


def test_sample_candidates_add_and_clip(dtype):
    y = torch.tensor([[0.0, 0.5]], dtype=dtype)
    eps = torch.tensor([[[1.0, 1.0], [-1.0, -3.0]]], dtype=dtype)
    out = denoise.sample_candidates(y, eps, 0.5, -1.0, 0.8)
    expected = torch.tensor([[[0.5, 0.8], [-0.5, -1.0]]], dtype=dtype)
    torch.testing.assert_close(out, expected)
    # per-coordinate sigma and tensor bounds, written in place
    sigma = torch.tensor([1.0, 0.0], dtype=dtype)
    denoise.sample_candidates(y, eps, sigma, torch.tensor([-0.6, 0.0], dtype=dtype), None, out=eps)
    torch.testing.assert_close(eps, torch.tensor([[[1.0, 0.5], [-0.6, 0.5]]], dtype=dtype))


def test_normalized_log_weights_masks_infeasible_and_nan():
    rewards = torch.tensor([[1.0, 2.0, 3.0, float("nan"), 100.0, float("inf")]])
    feasible = torch.tensor([[True, True, True, True, False, True]])
    logp, mean, std = denoise.normalized_log_weights(rewards, 0.5, feasible)
    # statistics over the three valid samples only
    assert mean.item() == pytest.approx(2.0)
    assert std.item() == pytest.approx(math.sqrt(2 / 3))
    assert logp[0, :3].tolist() == pytest.approx([-1 / std.item() / 0.5, 0.0, 1 / std.item() / 0.5])
    assert torch.isneginf(logp[0, 3:]).all()


def test_zero_spread_does_not_divide_by_zero():
    for rewards in (torch.full((2, 5), 3.0), torch.full((1, 1), -7.0), torch.full((1, 4), 1e6)):
        logp, _, std = denoise.normalized_log_weights(rewards, 0.1)
        assert torch.isfinite(logp).all()
        assert (std == 1).all()
        y_bar0, w, valid = denoise.weighted_mean(torch.randn(rewards.shape[0], rewards.shape[1], 3), logp)
        torch.testing.assert_close(w, torch.full_like(w, 1 / rewards.shape[1]))
        assert valid.all()


def test_weighted_mean_is_stable_and_flags_all_invalid():
    samples = torch.tensor([[[1.0], [3.0]], [[5.0], [7.0]]])
    logp = torch.tensor([[1e4, 1e4 - math.log(3.0)], [float("-inf"), float("-inf")]])
    y_bar0, w, valid = denoise.weighted_mean(samples, logp)
    torch.testing.assert_close(w[0], torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(y_bar0[0], torch.tensor([1.5]))
    assert valid.tolist() == [True, False]
    assert torch.isfinite(y_bar0).all()


def test_weighted_mean_matches_hand_softmax(dtype):
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(3, 16, 5, generator=g, dtype=dtype)
    logp = torch.randn(3, 16, generator=g, dtype=dtype)
    y_bar0, w, _ = denoise.weighted_mean(samples, logp)
    e = logp.exp()
    expected = (e.unsqueeze(-1) * samples).sum(1) / e.sum(1, keepdim=True)
    torch.testing.assert_close(y_bar0, expected)


def test_score_ascent_default_step_is_weighted_mean(dtype):
    s = linear_schedule()
    g = torch.Generator().manual_seed(1)
    y_bar = torch.randn(2, 6, generator=g, dtype=dtype)
    y_bar0 = torch.randn(2, 6, generator=g, dtype=dtype)
    for i in (99, 50, 1, 0):
        torch.testing.assert_close(denoise.reverse_step(y_bar, y_bar0, i, s), y_bar0)
    # the general form by hand (Eq. 6, 9b): Y_{i-1} = (Y_i + (1 - ab) score) / sqrt(alpha)
    i = 40
    ab, a = float(s.alpha_bars[i]), float(s.alphas[i])
    y_i = y_bar * math.sqrt(ab)
    score = -y_i / (1 - ab) + math.sqrt(ab) / (1 - ab) * y_bar0
    torch.testing.assert_close(denoise.score_ascent(y_i, y_bar0, a, ab), (y_i + (1 - ab) * score) / math.sqrt(a))
    # a partial step follows the general form of Eq. (6)
    half = denoise.reverse_step(y_bar, y_bar0, i, s, step_scale=0.5)
    expected_half = ((y_i + 0.5 * (1 - ab) * score) / math.sqrt(a)) / math.sqrt(float(s.alpha_bars[i - 1]))
    torch.testing.assert_close(half, expected_half)


def test_batched_problems_equal_separate_calls(dtype):
    """B problems in one call give the same as B calls with the same noise."""
    g = torch.Generator().manual_seed(2)
    B, n, D = 4, 32, 7
    y_bar = torch.randn(B, D, generator=g, dtype=dtype)
    eps = torch.randn(B, n, D, generator=g, dtype=dtype)
    target = torch.randn(B, D, generator=g, dtype=dtype)
    s = linear_schedule()

    def one_step(y, e, t):
        cands = denoise.sample_candidates(y, e, 0.3, -2.0, 2.0)
        rewards = -((cands - t.unsqueeze(-2)) ** 2).sum(-1)
        logp, _, _ = denoise.normalized_log_weights(rewards, 0.1)
        y0, _, _ = denoise.weighted_mean(cands, logp)
        return denoise.reverse_step(y, y0, 10, s)

    together = one_step(y_bar, eps, target)
    apart = torch.cat([one_step(y_bar[b : b + 1], eps[b : b + 1], target[b : b + 1]) for b in range(B)])
    torch.testing.assert_close(together, apart)


def test_demo_log_likelihood_partial_mask():
    features = torch.tensor([[[1.0, 100.0, 3.0], [0.0, 0.0, 0.0], [float("nan"), 0.0, 1.0]]])
    demo = torch.tensor([1.0, float("nan"), 1.0])
    mask = torch.tensor([True, False, True])
    ll = denoise.demo_log_likelihood(features, demo, mask, sigma=2.0)
    # mean over the two covered entries of ((f - d) / 2)^2, times -1/2
    assert ll[0, 0].item() == pytest.approx(-0.5 * (0 + 1.0) / 2)
    assert ll[0, 1].item() == pytest.approx(-0.5 * (0.25 + 0.25) / 2)
    assert ll[0, 2].item() == float("-inf")  # a non-finite covered feature


def test_demo_log_likelihood_per_entry_sigma():
    """A tensor sigma is a diagonal covariance: each entry's error is divided by its own sigma."""
    features = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, 3.0], [1.0, 1.0]]])  # [B=2, n=2, F=2]
    demo = torch.tensor([0.0, 0.0])
    sigma = torch.tensor([1.0, 0.5])
    ll = denoise.demo_log_likelihood(features, demo, None, sigma)
    expected = -0.5 * ((features / sigma) ** 2).mean(-1)
    torch.testing.assert_close(ll, expected)
    assert ll[0, 0].item() == pytest.approx(-0.5 * (1.0 + 16.0) / 2)
    # one sigma row per problem, [B, F]
    per_problem = torch.tensor([[1.0, 0.5], [2.0, 2.0]])
    ll2 = denoise.demo_log_likelihood(features, demo, None, per_problem)
    torch.testing.assert_close(ll2[0], expected[0])
    torch.testing.assert_close(ll2[1], -0.5 * ((features[1] / 2.0) ** 2).mean(-1))


def test_demo_max_rule():
    logp_model = torch.tensor([[-2.0, 0.0, 2.0, 1.5]])
    loglik = torch.tensor([[-1.0, -11.0, -1.0, -1.1]])
    mean, std = torch.tensor([0.0]), torch.tensor([1.0])
    # demo reward 1.0 at temperature 1: log w_demo = (loglik - max loglik) + 1
    logp, wins = denoise.demo_log_weights(logp_model, loglik, 1.0, mean, std, 1.0)
    assert wins.tolist() == [[True, False, False, False]]
    assert logp[0].tolist() == pytest.approx([1.0, 0.0, 2.0, 1.5])


def test_demo_likelihood_is_relative_to_the_closest_sample():
    """Shifting every log-likelihood by a constant (samples farther from the demo) changes nothing."""
    logp_model = torch.tensor([[-2.0, 0.0, 2.0], [0.5, -1.0, 0.0]])
    loglik = torch.tensor([[-3.0, -4.0, -9.0], [-0.5, -0.2, -7.0]])
    mean, std = torch.zeros(2), torch.ones(2)
    near, wins_near = denoise.demo_log_weights(logp_model, loglik, 1.0, mean, std, 0.5)
    far, wins_far = denoise.demo_log_weights(logp_model, loglik - 50.0, 1.0, mean, std, 0.5)
    torch.testing.assert_close(near, far)
    assert torch.equal(wins_near, wins_far)
    # the closest sample of each problem gets exactly the demonstration's own weight
    assert near[0, 0].item() == pytest.approx(2.0) and near[1, 1].item() == pytest.approx(2.0)


def test_demo_reward_units_follow_the_authors_formula():
    """units="reward": log p_demo joins the rewards before normalization, then the logits are re-standardized."""
    logp_model = torch.tensor([[-2.0, 0.0, 2.0, float("-inf"), 1.0]], dtype=torch.float64)
    loglik = torch.tensor([[-0.1, -2.0, -0.5, 0.0, -0.3]], dtype=torch.float64)
    mean, std, temperature = torch.tensor([0.2], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64), 0.1
    logp, wins = denoise.demo_log_weights(logp_model, loglik, 0.4, mean, std, temperature, units="reward")
    # by hand: the closest allowed sample is the first (-0.1); the infeasible one takes no part
    demo = (loglik - (-0.1) + 0.4 - 0.2) / (0.5 * 0.1)
    combined = torch.where(demo > logp_model, demo, logp_model)
    assert wins.tolist() == [[True, False, False, False, False]]
    finite = combined[0, [0, 1, 2, 4]]
    standardized = (finite - finite.mean()) / finite.std(unbiased=False) / temperature
    torch.testing.assert_close(logp[0, [0, 1, 2, 4]], standardized)
    assert logp[0, 3].item() == float("-inf")
    # the combined log-weights have the spread of model-only ones, 1 / temperature
    assert logp[0, [0, 1, 2, 4]].std(unbiased=False).item() == pytest.approx(1 / temperature)
    with pytest.raises(ValueError, match="units"):
        denoise.demo_log_weights(logp_model, loglik, 0.4, mean, std, temperature, units="nats")


def test_reward_units_keep_the_weights_sharp_as_samples_converge():
    """When the demonstration leads, "logit" weights flatten as the samples' spread shrinks; "reward" ones do not."""
    torch.manual_seed(0)
    n = 64
    logp_model, _, _ = denoise.normalized_log_weights(torch.randn(1, n, dtype=torch.float64), 0.1)
    distance = torch.rand(1, n, dtype=torch.float64)

    def ess(units, spread):
        loglik = -0.5 * (spread * distance) ** 2
        zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
        logp, wins = denoise.demo_log_weights(logp_model, loglik, 1e4, zero, one, 0.1, units)  # demo far ahead
        assert wins.all()
        w = torch.softmax(logp, -1)
        return float(1 / (w**2).sum())

    # early (samples spread far from the demo) vs late (100x closer together)
    assert ess("logit", 50.0) < 5 and ess("logit", 0.1) > 0.99 * n
    assert ess("reward", 50.0) == pytest.approx(ess("reward", 0.1), rel=1e-3)
    assert ess("reward", 0.1) < n / 4


def test_infeasible_samples_get_no_demo_weight():
    """A sample with w_model = 0 (infeasible, NaN reward) stays at weight 0, however close to the demo."""
    logp_model = torch.tensor([[float("-inf"), -1.0, float("-inf")], [float("-inf")] * 3])
    loglik = torch.tensor([[0.0, -5.0, -0.1], [0.0, -1.0, -2.0]])
    logp, wins = denoise.demo_log_weights(logp_model, loglik, 3.0, torch.zeros(2), torch.ones(2), 1.0)
    assert logp[0, 0].item() == float("-inf") and logp[0, 2].item() == float("-inf")
    # the closest *feasible* sample is the reference: it gets the demonstration's weight 3
    assert logp[0, 1].item() == pytest.approx(3.0) and wins[0].tolist() == [False, True, False]
    assert torch.isneginf(logp[1]).all() and not wins[1].any()


# --------------------------------------------------------------------------- robustness (issue 15)
@pytest.mark.parametrize("scale, shift", [(1e-30, 0.0), (1e-8, 3e-8), (1.0, -50.0), (1e19, 1e20), (1e35, -1e36)])
def test_log_weights_are_invariant_to_affine_rewards(dtype, scale, shift):
    """``a * R + b`` gives the log-weights of ``R``, in float32 too, with no overflow near the dtype's max."""
    if dtype == torch.float32 and abs(scale) > 1e37:
        pytest.skip("beyond float32")
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(3, 40, generator=g, dtype=torch.float64)
    base, _, _ = denoise.normalized_log_weights(rewards.to(dtype), 0.1)
    logp, mean, std = denoise.normalized_log_weights((scale * rewards + shift).to(dtype), 0.1)
    assert torch.isfinite(logp).all() and torch.isfinite(mean).all() and torch.isfinite(std).all()
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(logp, base, rtol=0, atol=tol)
    torch.testing.assert_close(std.double(), scale * rewards.std(-1, unbiased=False), rtol=tol, atol=0)


def test_statistics_do_not_overflow_at_the_largest_float32():
    big = torch.finfo(torch.float32).max
    rewards = torch.tensor([[big, -big, 0.5 * big, -0.25 * big]])
    logp, mean, std = denoise.normalized_log_weights(rewards, 1.0)
    expected = rewards.double()
    z = (expected - expected.mean()) / expected.std(unbiased=False)
    torch.testing.assert_close(logp.double(), z, rtol=0, atol=1e-5)
    assert torch.isfinite(mean).all() and torch.isfinite(std).all()


def test_constant_rewards_are_flagged_relative_to_their_size():
    rewards = torch.tensor([[1e6, 1e6 + 1e-10, 1e6], [0.0, 1e-30, 0.0], [5.0, 5.0, 5.0], [2.0, 0.0, 0.0]], dtype=torch.float64)
    valid = torch.tensor([[True] * 3, [True] * 3, [True] * 3, [True, False, False]])
    logp, _, std, constant = denoise.normalized_log_weights(rewards, 0.1, valid, return_constant=True)
    # rounding-level differences at 1e6 are constant; 1e-30 around 0 is a real spread; one valid sample is not "constant"
    assert constant.tolist() == [True, False, True, False]
    assert (logp[0] == 0).all() and (logp[2] == 0).all() and std[0] == 1 and std[2] == 1
    assert logp[1, 1] > 0


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_low_precision_rewards_are_standardized_in_float32(half):
    """float16 rewards of a few hundred: squares overflow float16 (65504); the statistics are float32."""
    rewards = torch.tensor([[300.0, 420.0, 380.0, 500.0]], dtype=half)
    logp, mean, std = denoise.normalized_log_weights(rewards, 0.5)
    assert logp.dtype == mean.dtype == torch.float32 and torch.isfinite(logp).all()
    r = rewards.double()
    torch.testing.assert_close(std.double(), r.std(-1, unbiased=False), rtol=1e-6, atol=0)
    samples = torch.randn(1, 4, 3).to(half)
    y_bar0, w, valid = denoise.weighted_mean(samples, logp)
    assert y_bar0.dtype == torch.float32 and valid.all()
    torch.testing.assert_close(y_bar0, (torch.softmax(logp, -1).unsqueeze(-1) * samples.float()).sum(1))


def test_weighted_mean_never_returns_nan():
    """+inf log-weights share the weight, NaN ones get none: the mean stays finite."""
    samples = torch.tensor([[[1.0], [3.0], [5.0]]])
    y_bar0, w, valid = denoise.weighted_mean(samples, torch.tensor([[float("inf"), float("nan"), float("inf")]]))
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.0, 0.5]]))
    torch.testing.assert_close(y_bar0, torch.tensor([[3.0]]))
    assert valid.all()


def test_demo_weights_do_not_overflow_with_huge_rewards():
    logp_model = torch.tensor([[0.0, 1.0, -1.0]])
    loglik = torch.tensor([[-1.0, -2.0, 0.0]])
    big = torch.finfo(torch.float32).max
    mean, std = torch.tensor([-0.9 * big]), torch.tensor([1e-30])
    logp, wins = denoise.demo_log_weights(logp_model, loglik, 0.9 * big, mean, std, 0.1)
    y_bar0, w, valid = denoise.weighted_mean(torch.randn(1, 3, 2), logp)
    assert torch.isfinite(y_bar0).all() and wins.all() and valid.all()
    assert w.sum().item() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- clipped-distance demo likelihood
def test_clipped_distance_log_likelihood_is_the_hand_computation(dtype):
    # B = 1, n = 2 samples, T = 2 steps, P = 2 points; clip 0.5
    reference = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], [[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]], dtype=dtype)
    points = reference.expand(1, 2, 2, 2, 3).clone()
    points[0, 0, 0, 0] += torch.tensor([0.3, 0.0, -0.4], dtype=dtype)  # |d| = 0.5: exactly at the clip
    points[0, 0, 1, 1] += torch.tensor([0.0, 0.2, 0.0], dtype=dtype)  # |d| = 0.2: inside
    points[0, 1, 0, 1, 2] += 3.0  # |d| = 3: beyond the clip, counts as 0.5
    points[0, 1, 1, 0, 0] -= 0.1  # |d| = 0.1
    got = denoise.clipped_distance_log_likelihood(points, reference, clip=0.5)
    expected = torch.tensor([[-(1.0 + (0.2 / 0.5) ** 2) / 4, -(1.0 + (0.1 / 0.5) ** 2) / 4]], dtype=dtype)
    assert got.shape == (1, 2) and got.dtype == dtype
    torch.testing.assert_close(got, expected)
    # the clip sets the scale: a wider one halves the distances' share; a sample on the reference gets 0
    wide = denoise.clipped_distance_log_likelihood(points, reference, clip=1.0)
    torch.testing.assert_close(wide, torch.tensor([[-(0.5**2 + 0.2**2) / 4, -(1.0 + 0.1**2) / 4]], dtype=dtype))
    on = denoise.clipped_distance_log_likelihood(reference.expand(3, 2, 2, 3), reference)
    assert torch.equal(on, torch.zeros(3, dtype=dtype))


def test_clipped_distance_log_likelihood_non_finite_and_bad_input():
    reference = torch.zeros(2, 1, 3)
    points = torch.zeros(1, 3, 2, 1, 3)
    points[0, 0, 1, 0, 0] = float("nan")
    points[0, 1, 0, 0, 2] = float("inf")
    got = denoise.clipped_distance_log_likelihood(points, reference)
    assert got[0, :2].tolist() == [float("-inf")] * 2 and got[0, 2] == 0
    with pytest.raises(ValueError, match="reference of shape"):
        denoise.clipped_distance_log_likelihood(points, torch.zeros(3, 1, 3))
    for clip in (0.0, -1.0, float("inf"), True, "0.5"):
        with pytest.raises(ValueError, match="clip"):
            denoise.clipped_distance_log_likelihood(points, reference, clip=clip)
