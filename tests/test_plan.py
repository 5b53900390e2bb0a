"""plan: rollouts without states, NumPy inputs, every bad argument refused before a rollout,
knots, keep-the-best and the presets."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from torch_mbd import PlanResult, Trajectory, plan
from torch_mbd.knots import interpolate
from torch_mbd.plan import PRESETS, _sample_wins


class Reach:
    """RolloutModel: x_{t+1} = x_t + u_t / 2 in 2-D, reward -|x - target|^2; counts its rollouts."""

    action_dim, state_dim, horizon = 2, 2, 6

    def __init__(self, with_states=True):
        self.action_bounds = (-torch.ones(2), torch.ones(2))
        self.initial_state = torch.zeros(2)
        self.device = torch.device("cpu")
        self.with_states = with_states
        self.calls = 0

    def rollout(self, actions):
        self.calls += 1
        states = torch.cumsum(actions * 0.5, dim=-2)
        rewards = -((states - torch.tensor([1.0, -0.5])) ** 2).sum(-1)
        return Trajectory(states=states if self.with_states else None, rewards=rewards)


QUICK = dict(num_samples=16, num_steps=4, seed=0, progress=False)


def test_a_rollout_without_states_plans_and_returns_no_states():
    with_states = plan(Reach(), **QUICK)
    without = plan(Reach(with_states=False), **QUICK)
    assert isinstance(without, PlanResult) and without.states is None
    # the states play no part in the optimization: the same plan, the same rewards
    assert torch.equal(without.actions, with_states.actions)
    torch.testing.assert_close(without.rewards, with_states.rewards)
    assert without.reward == with_states.reward and "reward=" in repr(without)


def test_a_demo_with_a_rollout_without_states_is_a_clear_error():
    with pytest.raises(ValueError, match="states"):
        plan(Reach(with_states=False), demo=torch.zeros(6, 2), **QUICK)


def test_numpy_demo_mask_and_init_equal_their_tensors():
    demo = torch.linspace(0, 1, 12).reshape(6, 2)
    mask = torch.tensor([True, False])
    init = torch.full((6, 2), 0.25)
    tensors = plan(Reach(), demo=demo, demo_mask=mask, init=init, **QUICK)
    arrays = plan(Reach(), demo=demo.double().numpy(), demo_mask=mask.numpy(), init=init.numpy(), **QUICK)
    assert torch.equal(arrays.actions, tensors.actions)
    assert arrays.actions.dtype == torch.float32  # cast to the model's dtype, not NumPy's float64


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(demo=[[0.0, 0.0]] * 6), TypeError, "demo"),
        (dict(demo=np.zeros((6, 2), dtype=complex)), TypeError, "demo"),
        (dict(demo=np.array([["a", "b"]] * 6)), TypeError, "demo"),
        (dict(demo=torch.zeros(6, 2), demo_mask=[True, False]), TypeError, "demo_mask"),
        (dict(demo=torch.zeros(6, 2), demo_mask=np.array([1, 0])), TypeError, "demo_mask"),
        (dict(init=[[0.0, 0.0]] * 6), TypeError, "init"),
        (dict(init=np.zeros(6)), ValueError, "init"),
        (dict(init=torch.zeros(5, 2)), ValueError, "init"),
        (dict(init=torch.zeros(6, 2, dtype=torch.bool)), TypeError, "init"),
        (dict(init=torch.full((6, 2), float("nan"))), ValueError, "init.*finite"),
        (dict(horizon=0), ValueError, "horizon"),
        (dict(horizon=True), ValueError, "horizon"),
        (dict(horizon=6.0), ValueError, "horizon"),
        (dict(horizon="6"), ValueError, "horizon"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(num_samples=True), ValueError, "num_samples"),
        (dict(num_steps=2.5), ValueError, "num_steps"),
        (dict(temperature=0.0), ValueError, "temperature"),
        (dict(temperature=float("nan")), ValueError, "temperature"),
        (dict(seed=1.5), ValueError, "seed"),
        (dict(seed="abc"), ValueError, "seed"),
        (dict(seed=2**70), ValueError, "seed"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(device="meta"), ValueError, "device"),
        (dict(device="nonsense"), ValueError, "device"),
        (dict(num_knots=0), ValueError, "num_knots"),
        (dict(num_knots=7), ValueError, "num_knots"),  # > H = 6
        (dict(num_knots=2.5), ValueError, "num_knots"),
        (dict(num_knots=True), ValueError, "num_knots"),
        (dict(num_knots=3, interpolation="quadratic"), ValueError, "interpolation"),
        (dict(interpolation=None), ValueError, "interpolation"),
        (dict(preset="fast"), ValueError, "preset.*default.*paper"),
        (dict(keep_best="yes"), ValueError, "keep_best"),
        (dict(keep_best=1), ValueError, "keep_best"),
        (dict(temperature="hot"), ValueError, "temperature"),
    ],
)
def test_bad_arguments_are_refused_before_any_rollout(kwargs, error, match):
    model = Reach()
    args = dict(QUICK)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        plan(model, **args)
    assert model.calls == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    model = Reach()
    with pytest.raises(ValueError, match="device.*cuda"):
        plan(model, device="cuda", **QUICK)
    assert model.calls == 0


def test_numpy_numbers_equal_python_numbers():
    python = plan(Reach(), horizon=6, num_samples=16, num_steps=4, temperature=0.2, seed=3, progress=False)
    numpy = plan(
        Reach(), horizon=np.int64(6), num_samples=np.int32(16), num_steps=np.int64(4), temperature=np.float64(0.2),
        seed=np.uint64(3), progress=False,
    )
    assert torch.equal(numpy.actions, python.actions)
    assert len(numpy.reward_history) == 4
    # a float32 temperature is a number too (it differs from 0.2 in the 9th digit)
    assert plan(Reach(), temperature=np.float32(0.2), **QUICK).actions.shape == (6, 2)


def test_device_string_matching_the_model_is_accepted():
    assert torch.equal(plan(Reach(), device="cpu", **QUICK).actions, plan(Reach(), **QUICK).actions)


# ---------------------------------------------------------------- knots, keep-the-best, presets
PAPER = dict(QUICK, preset="paper")
METHODS = ["mbd", "cem", "mppi", "cmaes", "paper-mppi", "paper-cem", "paper-cmaes"]


@pytest.mark.parametrize("keep_best", [False, True])
@pytest.mark.parametrize("method", ["mbd", "cem", "cmaes"])
def test_as_many_knots_as_steps_is_the_per_step_plan_bit_for_bit(method, keep_best):
    init = torch.full((6, 2), 0.1)
    per_step = plan(Reach(), method=method, init=init, keep_best=keep_best, **PAPER)
    knots = plan(Reach(), method=method, init=init, keep_best=keep_best, num_knots=6, **PAPER)
    assert per_step.knots is None and torch.equal(knots.knots, knots.actions)
    for field in ("actions", "states", "rewards", "history", "reward_history"):
        assert torch.equal(getattr(knots, field), getattr(per_step, field)), field
    assert knots.reward == per_step.reward and knots.source == per_step.source


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("interpolation", ["zero", "linear", "cubic"])
def test_a_knots_plan_is_feasible_and_its_actions_interpolate_its_knots(method, interpolation):
    model = Reach()
    model.horizon = 12
    res = plan(model, method=method, num_knots=4, interpolation=interpolation, **QUICK)
    assert res.knots.shape == (4, 2) and res.actions.shape == (12, 2) and res.states.shape == (12, 2)
    assert res.history.shape == (4, 12, 2) and bool(res.feasible)
    expected = interpolate(res.knots, 12, interpolation).clamp(-1.0, 1.0)
    # another code path (one [12, 4] @ [4, 2] product, not the batched one of the run): equal up to
    # the float32 rounding of a 4-term sum, which differs in the last bit between CPUs (AVX2, AVX-512)
    torch.testing.assert_close(res.actions, expected, rtol=0, atol=1e-6)
    assert bool((res.actions.abs() <= 1).all()) and bool((res.knots.abs() <= 1).all())
    # the reported rollout is the one of these controls
    again = Reach().rollout(res.actions.unsqueeze(0))
    torch.testing.assert_close(res.rewards, again.rewards[0], rtol=0, atol=0)
    # every rollout during the run saw H controls (the optimizer varied 4 knots per dimension)
    assert model.calls == 4 + 1


def test_a_knots_plan_starts_from_the_fitted_init():
    # with no sampling noise nothing moves: the result is the least-squares fit of init
    knots = torch.tensor([[0.2, -0.4], [0.6, 0.1], [-0.3, 0.5], [0.0, 0.2]])
    init = interpolate(knots, 12, "cubic")
    model = Reach()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every sample is the estimate: a constant objective
        res = plan(model, horizon=12, num_knots=4, init=init, noise_scale=0.0, keep_best=False, **QUICK)
    torch.testing.assert_close(res.knots, knots, rtol=0, atol=1e-6)
    torch.testing.assert_close(res.actions, init, rtol=0, atol=1e-6)


def test_a_knots_plan_keeps_demonstrations_of_the_h_states():
    demo = torch.linspace(0, 1, 12).reshape(6, 2)
    with_demo = plan(Reach(), num_knots=3, demo=demo, **QUICK)
    assert with_demo.knots.shape == (3, 2) and with_demo.states.shape == (6, 2)
    without = plan(Reach(), num_knots=3, **QUICK)
    assert not torch.equal(with_demo.knots, without.knots)  # the demonstration changed the weights


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keep_best_is_never_worse_than_the_estimate_and_says_which(method, seed):
    args = dict(QUICK, seed=seed, num_steps=3)
    res = plan(Reach(), method=method, keep_best=True, num_knots=3, **args)
    assert res.reward >= res.estimate_reward
    assert res.source in ("estimate", "sample") and res.from_sample.shape == ()
    assert (res.source == "sample") == bool(res.from_sample)
    if res.source == "sample":  # a deterministic model: the sample's rollout gives the reward measured in the run
        assert res.reward > res.estimate_reward
        assert math.isclose(res.reward, res.best_sample_reward, rel_tol=1e-6)
    else:
        assert res.reward == res.estimate_reward
    assert res.best_sample_reward <= res.reward + 1e-6  # else the sample would have won
    # without keep_best: the estimate, whatever the best sample
    plain = plan(Reach(), method=method, keep_best=False, num_knots=3, **args)
    assert plain.source == "estimate" and plain.reward == plain.estimate_reward == res.estimate_reward
    assert torch.equal(plain.history, res.history)


def test_keep_best_takes_the_sample_when_it_is_better():
    # one diffusion step from a bad init: the estimate is one weighted mean, the best of 64 samples is better
    res = plan(Reach(), keep_best=True, init=torch.full((6, 2), -1.0), **dict(QUICK, num_samples=64, num_steps=1))
    assert res.source == "sample" and res.reward > res.estimate_reward


def test_keep_best_on_a_tie_keeps_the_estimate():
    class Flat(Reach):
        def rollout(self, actions):
            self.calls += 1
            return Trajectory(states=actions.cumsum(-2), rewards=torch.zeros(actions.shape[:-1]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant objective
        res = plan(Flat(), keep_best=True, **QUICK)
    assert res.source == "estimate" and res.reward == res.estimate_reward == res.best_sample_reward == 0.0


def test_keep_best_per_problem_when_batched():
    init = torch.stack([torch.full((6, 2), -1.0), torch.zeros(6, 2), torch.full((6, 2), 1.0)])
    args = dict(QUICK, num_samples=32, num_steps=2)
    res = plan(Reach(), keep_best=True, init=init, num_knots=3, **args)
    plain = plan(Reach(), keep_best=False, init=init, num_knots=3, **args)
    assert res.from_sample.shape == (3,) and res.actions.shape == (3, 6, 2) and res.knots.shape == (3, 3, 2)
    assert res.source == {0: "estimate", 3: "sample"}.get(int(res.from_sample.sum()), "mixed")
    per_problem = res.rewards.mean(-1)
    estimate = plain.rewards.mean(-1)
    assert bool((per_problem >= estimate).all())
    assert torch.equal(per_problem > estimate, res.from_sample)
    assert torch.equal(res.actions[~res.from_sample], plain.actions[~res.from_sample])
    assert math.isclose(res.estimate_reward, plain.reward, rel_tol=1e-6)


def test_which_rollout_wins():
    rewards = torch.tensor(
        [
            [[1.0, 1.0], [2.0, 2.0]],  # the sample is better
            [[2.0, 2.0], [1.0, 1.0]],  # the estimate is better
            [[1.0, 1.0], [1.0, 1.0]],  # a tie: the estimate
            [[5.0, 5.0], [1.0, 1.0]],  # the estimate is infeasible: the sample
            [[float("nan"), 0.0], [1.0, 1.0]],  # the estimate diverged: the sample
            [[1.0, 1.0], [2.0, 2.0]],  # no valid sample was seen: the estimate
        ]
    )
    feasible = torch.tensor([[True, True]] * 3 + [[False, True]] + [[True, True]] * 2)
    best = torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0, -math.inf])
    assert _sample_wins(rewards, feasible, best).tolist() == [True, False, False, True, True, False]


def test_presets_hold_the_defaults_and_explicit_arguments_win():
    assert set(PRESETS) >= {"default", "paper"}
    for values in PRESETS.values():
        assert set(values) == {"num_knots", "interpolation", "temperature", "keep_best"}
    assert PRESETS["paper"]["num_knots"] is None and PRESETS["paper"]["keep_best"] is False
    model = Reach()
    model.horizon = 40
    default = plan(model, **QUICK)
    expected = PRESETS["default"]["num_knots"]
    assert (default.knots is None) if expected is None else default.knots.shape == (min(expected, 40), 2)
    # the default preset's num_knots is capped at the horizon
    capped = plan(Reach(), horizon=3, **QUICK)
    assert expected is None or capped.knots.shape == (3, 2)
    paper = plan(model, **PAPER)
    assert paper.knots is None and paper.source == "estimate"
    assert plan(model, num_knots=5, **PAPER).knots.shape == (5, 2)
    assert plan(model, num_knots=None, **QUICK).knots is None
    # temperature=0.1 is the presets' value: passing it explicitly changes nothing
    assert torch.equal(plan(Reach(), temperature=0.1, **PAPER).actions, plan(Reach(), **PAPER).actions)
    assert plan(Reach(), temperature="auto", **QUICK).actions.shape == (6, 2)


def test_a_batch_of_problems_reports_each_problems_reward_and_feasibility():
    class HalfFeasible(Reach):  # problem 1 of 3 can never be feasible
        def rollout(self, actions):
            traj = super().rollout(actions)
            feasible = torch.ones(actions.shape[:-2], dtype=torch.bool)
            feasible[1] = False
            return Trajectory(states=traj.states, rewards=traj.rewards, feasible=feasible)

    init = torch.stack([torch.full((6, 2), -1.0), torch.zeros(6, 2), torch.full((6, 2), 0.5)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # problem 1 has no valid sample
        res = plan(HalfFeasible(), init=init, **QUICK)
    assert res.problem_rewards.shape == (3,) and res.feasible.tolist() == [True, False, True]
    torch.testing.assert_close(res.problem_rewards, res.rewards.mean(-1))
    assert res.reward == pytest.approx(float(res.problem_rewards.mean()))
    text = repr(res)
    assert "feasible=2/3" in text and "(mean of 3 problems)" in text and "feasible=True" not in text
    single = plan(Reach(), **QUICK)
    assert single.problem_rewards.shape == () and single.problem_rewards.item() == pytest.approx(single.reward)
    assert "feasible=True" in repr(single) and "problems" not in repr(single)

def test_numpy_booleans_for_keep_best_and_progress():
    expected = plan(Reach(), keep_best=True, **QUICK)
    quick = {k: v for k, v in QUICK.items() if k != "progress"}
    same = plan(Reach(), keep_best=np.True_, progress=np.False_, **quick)
    assert torch.equal(same.actions, expected.actions)
    with pytest.raises(ValueError, match="progress"):
        plan(Reach(), progress="no", **quick)
