"""``method=`` in minimize and plan: every method, one result type, one budget."""

from __future__ import annotations

import pytest
import torch
from _methods import TABLE

from torch_mbd import MinimizeResult, PlanResult, Trajectory, minimize, plan

METHODS = [m.name for m in TABLE]  # every registered method (tests/_methods.py)


class Reach:
    """RolloutModel: x_{t+1} = x_t + u_t in 2-D, reward -|x - target|^2; the target is reachable."""

    action_dim, state_dim, horizon = 2, 2, 6

    def __init__(self):
        self.action_bounds = (-torch.ones(2), torch.ones(2))
        self.initial_state = torch.zeros(2)
        self.device = torch.device("cpu")

    def rollout(self, actions):
        states = torch.cumsum(actions * 0.5, dim=-2)
        rewards = -((states - torch.tensor([1.0, -0.5])) ** 2).sum(-1)
        return Trajectory(states=states, rewards=rewards)


@pytest.mark.parametrize("method", METHODS)
def test_minimize_every_method_same_result_type(method):
    x0 = torch.full((6,), 0.8, dtype=torch.float64)
    res = minimize(lambda x: (x**2).sum(-1), x0, num_samples=32, num_steps=30, seed=0, progress=False, method=method)
    assert isinstance(res, MinimizeResult)
    assert res.x.shape == x0.shape and res.x.dtype == torch.float64
    assert res.history.best.shape == (30,) and res.history.estimate.shape == (30, 6)
    assert res.nfev == 30 * 32 + 1 and res.nit == 30
    assert res.fun < 0.2 * float((x0**2).sum())
    assert res.fun <= res.history.best_so_far[-1] + 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_plan_every_method_same_result_type(method):
    model = Reach()
    start = float(model.rollout(torch.zeros(1, 6, 2)).rewards.mean())
    res = plan(model, num_samples=32, num_steps=20, seed=0, progress=False, method=method)
    assert isinstance(res, PlanResult)
    assert res.actions.shape == (6, 2) and res.states.shape == (6, 2)
    assert res.history.shape == (20, 6, 2) and res.reward_history.shape == (20,)
    assert res.reward > start


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="method"):
        minimize(lambda x: x.sum(-1), torch.zeros(2), method="sgd", progress=False)
    with pytest.raises(ValueError, match="method"):
        plan(Reach(), method="random", progress=False)


def test_demo_is_mbd_only():
    with pytest.raises(ValueError, match="demo"):
        plan(Reach(), num_samples=8, num_steps=2, demo=torch.zeros(6, 2), method="cem", progress=False)
    with pytest.raises(ValueError, match="demo"):
        minimize(lambda x: x.sum(-1), torch.zeros(2), demo=torch.zeros(2), method="mppi", progress=False)


def test_method_options_reach_the_baseline():
    # CEM with every sample an elite and MPPI with a tiny fixed noise behave measurably differently.
    f = lambda x: ((x - 0.5) ** 2).sum(-1)  # noqa: E731
    greedy = minimize(f, torch.zeros(4), num_samples=32, num_steps=20, seed=0, progress=False, method="cem", elite_fraction=0.1)
    everyone = minimize(f, torch.zeros(4), num_samples=32, num_steps=20, seed=0, progress=False, method="cem", elite_fraction=1.0)
    assert greedy.fun < everyone.fun
    tiny = minimize(f, torch.zeros(4), num_samples=32, num_steps=5, seed=0, progress=False, method="mppi", noise_std=1e-4,
                   temperature=1.0)  # the temperature minimize forced before issue 23
    assert (tiny.x_final - 0.0).abs().max() < 1e-3
