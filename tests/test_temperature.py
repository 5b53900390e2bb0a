"""The temperature that needs no tuning (issue 14 part 3): ``temperature="auto"`` and its pure functions."""

from __future__ import annotations

import io
import math

import pytest
import torch

from torch_mbd import MBDOptimizer, Trajectory
from torch_mbd.baselines import optimizer_class
from torch_mbd.denoise import (
    DEFAULT_TARGET_ESS,
    TEMPERATURE_BRACKET,
    demo_log_weights,
    effective_sample_size,
    ess_temperature,
    normalized_log_weights,
    weighted_mean,
)
from torch_mbd.optim import check_temperature

REWARDS = torch.tensor(
    [
        [0.3, -1.2, 2.5, 0.0, 1.1, -0.4, 0.9, 3.0, -2.2, 0.5, 1.7, -0.8, 0.2, 2.1, -1.5, 0.7],
        [5.0, 4.0, 3.5, 1.0, 0.5, 0.0, -1.0, -3.0, 2.0, 2.5, 6.0, -2.0, 1.5, 3.0, 0.25, 4.5],
    ],
    dtype=torch.float64,
)


def standardized(rewards, feasible=None):
    z, _, _ = normalized_log_weights(rewards, 1.0, feasible)
    return z, torch.isfinite(z)


# --------------------------------------------------------------------------- effective_sample_size
def test_effective_sample_size_by_hand():
    inf = math.inf
    logp = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, -inf, -inf, -inf], [math.log(3.0), 0.0, -inf, -inf]])
    ess = effective_sample_size(logp)
    # uniform over 4: 4; a single sample: 1; weights (3/4, 1/4): 1 / (9/16 + 1/16) = 1.6
    assert torch.allclose(ess, torch.tensor([4.0, 1.0, 1.6]))
    assert effective_sample_size(torch.full((2, 3), -math.inf)).tolist() == [0.0, 0.0]
    assert effective_sample_size(torch.tensor([[math.nan, 0.0]])).item() == pytest.approx(1.0)


# --------------------------------------------------------------------------- ess_temperature
@pytest.mark.parametrize("target", [0.1, 0.25, 0.5, 0.9])
def test_the_weights_reach_the_target_ess(target):
    feasible = torch.ones_like(REWARDS, dtype=torch.bool)
    feasible[1, :4] = False  # 12 valid samples in the second problem
    z, valid = standardized(REWARDS, feasible)
    lam = ess_temperature(z, valid, target)
    assert lam.shape == (2,) and lam.dtype == torch.float64
    logp, _, _ = normalized_log_weights(REWARDS, lam, feasible)
    ess = effective_sample_size(logp)
    goal = target * valid.sum(-1).double()
    assert torch.allclose(ess, goal, rtol=1e-3, atol=0), (ess, goal)


def test_the_target_is_reached_in_float32():
    z, valid = standardized(REWARDS.float())
    lam = ess_temperature(z, valid, 0.2)
    assert lam.dtype == torch.float32
    ess = effective_sample_size(z / lam.unsqueeze(-1))
    assert torch.allclose(ess, torch.full((2,), 0.2 * 16), rtol=1e-3, atol=0)


def test_the_ess_rises_monotonically_with_the_temperature():
    z, _ = standardized(REWARDS)
    lams = torch.logspace(-4, 4, 200, dtype=torch.float64)
    ess = torch.stack([effective_sample_size(z / lam) for lam in lams])  # [200, 2]
    assert bool((ess[1:] >= ess[:-1] - 1e-9).all())
    assert ess[0].tolist() == pytest.approx([1.0, 1.0]) and ess[-1].tolist() == pytest.approx([16.0, 16.0], rel=1e-3)
    # so the temperature found rises with the target
    valid = torch.ones_like(z, dtype=torch.bool)
    found = torch.stack([ess_temperature(z, valid, t) for t in (0.1, 0.2, 0.4, 0.8)])
    assert bool((found[1:] > found[:-1]).all())


def test_problems_are_solved_independently():
    z, valid = standardized(REWARDS)
    both = ess_temperature(z, valid, 0.3)
    alone = torch.cat([ess_temperature(z[b : b + 1], valid[b : b + 1], 0.3) for b in range(2)])
    # a [2, n] and a [1, n] reduction may take different kernels: equal up to rounding, not bit for bit
    torch.testing.assert_close(both, alone, rtol=1e-6, atol=0)


def test_degenerate_problems_get_the_top_of_the_bracket():
    top, bottom = TEMPERATURE_BRACKET[1], TEMPERATURE_BRACKET[0]
    z = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, -1.0, 0.5, 0.2], [1.0, -1.0, 0.5, 0.2]])
    valid = torch.tensor([[True] * 4, [True, False, False, False], [False] * 4, [True] * 4])
    lam = ess_temperature(z, valid, 0.5)
    # constant rewards, a single valid sample, none: any temperature weights alike
    assert lam[:3].tolist() == [top, top, top]
    assert bottom < lam[3].item() < top
    # target 1 is only reached by equal weights (to float rounding): far up the bracket
    lam = ess_temperature(z[3:], valid[3:], 1.0)
    assert lam.item() > 1e3 and effective_sample_size(z[3:] / lam).item() == pytest.approx(4.0, rel=1e-6)
    assert ess_temperature(z[3:].double(), valid[3:], 1.0).item() > 1e3
    # a target below one sample cannot be reached: as sharp as the bracket allows
    assert ess_temperature(z[3:], valid[3:], 0.1).item() == pytest.approx(bottom)


@pytest.mark.parametrize("target", [0.0, -0.1, 1.5, math.nan, "0.1", True])
def test_a_target_outside_0_1_is_an_error(target):
    z, valid = standardized(REWARDS)
    with pytest.raises(ValueError, match="target"):
        ess_temperature(z, valid, target)


# --------------------------------------------------------------------------- a [B] temperature
def test_a_tensor_temperature_is_one_float_per_problem():
    temperature = torch.tensor([0.3, 2.0], dtype=torch.float64)
    logp, mean, std = normalized_log_weights(REWARDS, temperature)
    for b in range(2):
        row, m, s = normalized_log_weights(REWARDS[b : b + 1], float(temperature[b]))
        for batched, alone in ((logp[b : b + 1], row), (mean[b : b + 1], m), (std[b : b + 1], s)):
            torch.testing.assert_close(batched, alone, rtol=1e-12, atol=1e-12)  # other reduction shapes
    loglik = -torch.linspace(0.0, 3.0, 16, dtype=torch.float64).expand(2, 16)
    for units in ("logit", "reward"):
        both, wins = demo_log_weights(logp, loglik, 4.0, mean, std, temperature, units)
        for b in range(2):
            row, _, _ = normalized_log_weights(REWARDS[b : b + 1], float(temperature[b]))
            alone, alone_wins = demo_log_weights(row, loglik[b : b + 1], 4.0, mean[b : b + 1], std[b : b + 1],
                                                 float(temperature[b]), units)
            assert torch.allclose(both[b : b + 1], alone) and torch.equal(wins[b : b + 1], alone_wins)


# --------------------------------------------------------------------------- the optimizers
def sphere(c):
    return ((c[0] - 0.5) ** 2).sum(-1)


def test_auto_converges_on_the_sphere_and_reports_its_temperature():
    x = torch.zeros(5)
    opt = MBDOptimizer([x], num_samples=64, temperature="auto", num_steps=50, seed=0)
    assert opt.target_ess == DEFAULT_TARGET_ESS
    for _ in range(50):
        opt.step(sphere)
    assert bool(((x - 0.5).abs() < 0.1).all())
    assert opt.temperature == "auto"
    lam = opt.last_step.temperature
    assert isinstance(lam, torch.Tensor) and lam.shape == (1,)
    ess = effective_sample_size(opt.last_step.weights.log())
    assert ess.item() == pytest.approx(DEFAULT_TARGET_ESS * 64, rel=1e-3)


def test_a_number_is_reported_as_given():
    opt = MBDOptimizer([torch.zeros(2)], num_samples=8, temperature=0.25, num_steps=3, seed=0)
    opt.step(sphere)
    assert opt.last_step.temperature == 0.25


@pytest.mark.parametrize("method", ["mbd", "mppi", "paper-mppi", "paper-cmaes"])
def test_every_softmax_method_reaches_the_target_per_problem(method):
    target = torch.tensor([0.4, -0.3])

    def rollout(actions):
        states = actions.cumsum(-2)
        return Trajectory(states=states, rewards=-((states - target) ** 2).sum(-1))

    actions = torch.zeros(3, 4, 2, dtype=torch.float64)  # three problems
    opt = optimizer_class(method)([actions], num_samples=32, num_steps=4, temperature="auto", target_ess=0.25,
                                  rollout=rollout, seed=1)
    for _ in range(3):
        opt.step()
        lam = opt.last_step.temperature
        assert lam.shape == (3,)
        ess = effective_sample_size(opt.last_step.weights.log())
        assert torch.allclose(ess, torch.full((3,), 0.25 * 32, dtype=ess.dtype), rtol=1e-3)


def test_auto_changes_the_weights():
    # a sharper target gives sharper weights: "auto" is not ignored
    def weights(target):
        opt = MBDOptimizer([torch.zeros(3)], num_samples=32, temperature="auto", target_ess=target, seed=0)
        opt.step(sphere)
        return effective_sample_size(opt.last_step.weights.log()).item()

    assert weights(0.1) == pytest.approx(3.2, rel=1e-3) and weights(0.5) == pytest.approx(16.0, rel=1e-3)


@pytest.mark.parametrize("method", ["cem", "cmaes", "paper-cem"])
def test_methods_without_a_temperature_accept_auto_and_report_none(method):
    opt = optimizer_class(method)([torch.zeros(3)], num_samples=8, temperature="auto", seed=0)
    opt.step(sphere)
    assert opt.last_step.temperature is None


def test_auto_round_trips_through_the_state_dict():
    opt = MBDOptimizer([torch.zeros(3)], num_samples=8, temperature="auto", target_ess=0.3, seed=0)
    opt.step(sphere)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    other = MBDOptimizer([torch.zeros(3)], num_samples=8, temperature=0.1, seed=1)
    other.load_state_dict(torch.load(buffer, weights_only=False))
    assert other.temperature == "auto" and other.target_ess == 0.3
    # and back to a number
    other.load_state_dict(MBDOptimizer([torch.zeros(3)], num_samples=8, temperature=0.2).state_dict())
    assert other.temperature == 0.2 and other.target_ess == DEFAULT_TARGET_ESS
    # a bad saved temperature is refused, naming it
    state = opt.state_dict()
    state["sampling"]["temperature"] = "hot"
    with pytest.raises(ValueError, match="state_dict temperature"):
        other.load_state_dict(state)
    state = opt.state_dict()
    state["sampling"]["target_ess"] = 2.0
    with pytest.raises(ValueError, match="state_dict target_ess"):
        other.load_state_dict(state)
    assert other.temperature == 0.2


@pytest.mark.parametrize("method", ["mbd", "cem", "mppi", "paper-mppi", "paper-cem", "paper-cmaes"])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature="Auto"), "Invalid temperature: expected a number > 0 or 'auto', got 'Auto'"),
        (dict(temperature=""), "temperature"),
        (dict(temperature=0.0), "temperature"),
        (dict(target_ess=0.0), "target_ess"),
        (dict(target_ess=1.01), "target_ess"),
        (dict(target_ess="0.1"), "target_ess"),
    ],
)
def test_bad_temperatures_name_the_argument(method, kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizer_class(method)([torch.zeros(3)], **kwargs)


def test_check_temperature():
    assert check_temperature("t", "auto") == "auto"
    assert check_temperature("t", 0.5) == 0.5
    with pytest.raises(ValueError, match="Invalid t: expected a number > 0, got 'auto'"):
        check_temperature("t", "auto", allow_auto=False)


def test_auto_with_a_demonstration():
    # the demonstration's max rule runs with the per-problem temperature, in both units
    for units in ("logit", "reward"):
        x = torch.zeros(3)
        opt = MBDOptimizer([x], num_samples=16, temperature="auto", demo=torch.full((3,), 0.5), demo_units=units,
                           demo_reward=0.0, seed=0)
        opt.step(lambda c: ((c[0] + 1.0) ** 2).sum(-1))
        assert opt.last_step.demo_wins.any()
        _, _, valid = weighted_mean(opt.last_step.samples, opt.last_step.weights.log())
        assert bool(valid.all()) and torch.isfinite(x).all()


def test_ess_temperature_takes_numpy_numbers_and_refuses_booleans():
    import numpy as np

    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    valid = torch.ones(2, 32, dtype=torch.bool)
    expected = ess_temperature(z, valid, 0.25, iterations=30)
    assert torch.equal(ess_temperature(z, valid, np.float32(0.25), iterations=np.int64(30)), expected)
    with pytest.raises(ValueError, match="target"):
        ess_temperature(z, valid, np.True_)
    with pytest.raises(ValueError, match="iterations"):
        ess_temperature(z, valid, 0.25, iterations=np.True_)
