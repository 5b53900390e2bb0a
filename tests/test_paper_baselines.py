"""Tests of torch_mbd.paper_baselines: the paper's MPPI, CEM and "CMA-ES" as the authors ran them."""

from __future__ import annotations

import math

import pytest
import torch

from torch_mbd import Trajectory, minimize, plan
from torch_mbd.baselines import optimizer_class
from torch_mbd.paper_baselines import (
    PAPER_OPTIMIZERS,
    PaperCEMOptimizer,
    PaperCMAESOptimizer,
    PaperMPPIOptimizer,
    paper_cem_update,
    paper_cmaes_update,
    paper_mppi_update,
)

PAPER_METHODS = ["paper-mppi", "paper-cem", "paper-cmaes"]


class Recorder:
    """A RolloutModel on ``[H, 1]`` actions that records every batch it is asked to roll out.

    Reward per step: ``-(a - 0.4)^2``, so the best plan is ``a = 0.4`` everywhere.
    """

    action_dim, state_dim, horizon = 1, 1, 3

    def __init__(self):
        self.action_bounds = (torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
        self.device = torch.device("cpu")
        self.batches: list[torch.Tensor] = []

    def rollout(self, actions: torch.Tensor) -> Trajectory:
        self.batches.append(actions.clone())
        rewards = -((actions[..., 0] - 0.4) ** 2)
        return Trajectory(states=actions.clone(), rewards=rewards, feasible=None)


def softmax_weights(rewards: list[float], temperature: float) -> list[float]:
    """The authors' weights, by hand: ``softmax((R - mean) / pop_std / temperature)``."""
    n = len(rewards)
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / n)
    logits = [(r - mean) / std / temperature for r in rewards]
    top = max(logits)
    exp = [math.exp(v - top) for v in logits]
    return [e / sum(exp) for e in exp]


SAMPLES = torch.tensor([[[0.5, -1.0], [0.25, 0.0], [-0.5, 1.0], [1.0, 0.5]]], dtype=torch.float64)  # [1, 4, 2]
REWARDS = torch.tensor([[1.0, 3.0, 2.0, 0.0]], dtype=torch.float64)


# --------------------------------------------------------------------------- pure updates
def test_paper_mppi_update_is_the_softmax_mean():
    w = softmax_weights(REWARDS[0].tolist(), 0.5)
    expected = [sum(w[k] * float(SAMPLES[0, k, d]) for k in range(4)) for d in range(2)]
    mean, weights, valid = paper_mppi_update(SAMPLES, REWARDS, 0.5)
    assert valid.tolist() == [True]
    torch.testing.assert_close(weights[0], torch.tensor(w, dtype=torch.float64))
    torch.testing.assert_close(mean[0], torch.tensor(expected, dtype=torch.float64))


def test_paper_cem_update_averages_the_ten_best_whatever_n():
    g = torch.Generator().manual_seed(3)
    samples = torch.randn(2, 25, 4, generator=g, dtype=torch.float64)
    rewards = torch.randn(2, 25, generator=g, dtype=torch.float64)
    mean, weights, valid = paper_cem_update(samples, rewards)
    for b in range(2):
        order = sorted(range(25), key=lambda k: -float(rewards[b, k]))[:10]
        by_hand = [sum(float(samples[b, k, d]) for k in order) / 10 for d in range(4)]
        torch.testing.assert_close(mean[b], torch.tensor(by_hand, dtype=torch.float64))
        assert sorted(torch.nonzero(weights[b]).flatten().tolist()) == sorted(order)
    assert valid.all()
    # Fewer samples than elites: all of them are averaged (the authors' slice [:10]).
    mean, _, _ = paper_cem_update(SAMPLES, REWARDS)
    torch.testing.assert_close(mean[0], SAMPLES[0].mean(0))


def test_paper_cem_update_skips_infeasible_samples():
    feasible = torch.tensor([[True, False, True, True]])
    mean, _, _ = paper_cem_update(SAMPLES, REWARDS, num_elites=2, feasible=feasible)
    # Rewards 1, (3 infeasible), 2, 0: the elites are samples 2 and 0.
    torch.testing.assert_close(mean[0], (SAMPLES[0, 2] + SAMPLES[0, 0]) / 2)


def test_paper_cmaes_update_multiplies_sigma_by_the_weighted_spread():
    old_mean = torch.tensor([[0.1, -0.2]], dtype=torch.float64)
    sigma = torch.tensor([0.8], dtype=torch.float64)
    w = softmax_weights(REWARDS[0].tolist(), 0.1)
    spread = [
        math.sqrt(sum(w[k] * (float(SAMPLES[0, k, d]) - float(old_mean[0, d])) ** 2 for k in range(4)))
        for d in range(2)
    ]
    expected_sigma = 0.8 * sum(spread) / 2
    expected_mean = [sum(w[k] * float(SAMPLES[0, k, d]) for k in range(4)) for d in range(2)]
    mean, new_sigma, weights, valid = paper_cmaes_update(SAMPLES, REWARDS, 0.1, old_mean, sigma)
    torch.testing.assert_close(new_sigma, torch.tensor([expected_sigma], dtype=torch.float64))
    torch.testing.assert_close(mean[0], torch.tensor(expected_mean, dtype=torch.float64))
    # The floor: samples on the old mean have no spread, so sigma drops to min_sigma.
    flat = old_mean.unsqueeze(1).expand(1, 4, 2).clone()
    _, floored, _, _ = paper_cmaes_update(flat, REWARDS, 0.1, old_mean, sigma)
    torch.testing.assert_close(floored, torch.tensor([1e-3], dtype=torch.float64))
    _, floored, _, _ = paper_cmaes_update(flat, REWARDS, 0.1, old_mean, sigma, min_sigma=0.25)
    torch.testing.assert_close(floored, torch.tensor([0.25], dtype=torch.float64))


def test_paper_cmaes_update_keeps_sigma_without_a_valid_sample():
    sigma = torch.tensor([0.5], dtype=torch.float64)
    feasible = torch.zeros(1, 4, dtype=torch.bool)
    _, new_sigma, _, valid = paper_cmaes_update(SAMPLES, REWARDS, 0.1, SAMPLES[:, 0], sigma, feasible)
    assert valid.tolist() == [False]
    torch.testing.assert_close(new_sigma, sigma)


# --------------------------------------------------------------------------- optimizers, by hand
def _one_step(cls, **options):
    model = Recorder()
    actions = torch.full((3, 1), 0.2, dtype=torch.float64)
    opt = cls(
        [actions], num_samples=6, temperature=0.3, bounds=model.action_bounds, rollout=model.rollout, seed=11, **options
    )
    before = actions.clone()
    opt.step()
    return model, opt, before, actions


@pytest.mark.parametrize("cls", [PaperMPPIOptimizer, PaperCEMOptimizer, PaperCMAESOptimizer])
def test_samples_are_the_mean_plus_unit_noise_clipped(cls):
    model, _, before, _ = _one_step(cls)
    eps = torch.randn(1, 6, 3, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    expected = (before.reshape(1, 1, 3) + 1.0 * eps).clamp(-1.0, 1.0)
    torch.testing.assert_close(model.batches[0].reshape(1, 6, 3), expected)


def test_paper_mppi_step_is_the_hand_computed_mean_and_sigma_stays_one():
    model, opt, _, actions = _one_step(PaperMPPIOptimizer)
    samples = model.batches[0].reshape(6, 3)
    rewards = (-(samples - 0.4) ** 2).mean(-1).tolist()
    w = softmax_weights(rewards, 0.3)
    expected = [sum(w[k] * float(samples[k, t]) for k in range(6)) for t in range(3)]
    torch.testing.assert_close(actions.reshape(3), torch.tensor(expected, dtype=torch.float64))
    opt.step()
    assert opt.sigma.tolist() == [1.0]
    assert opt.last_step.sigma == 1.0


def test_paper_cem_step_is_the_hand_computed_elite_mean():
    model, opt, _, actions = _one_step(PaperCEMOptimizer, num_elites=2)
    samples = model.batches[0].reshape(6, 3)
    rewards = (-(samples - 0.4) ** 2).mean(-1)
    best = rewards.argsort(descending=True)[:2]
    torch.testing.assert_close(actions.reshape(3), samples[best].mean(0))
    assert opt.sigma.tolist() == [1.0]


def test_paper_cmaes_step_updates_sigma_by_hand():
    model, opt, before, actions = _one_step(PaperCMAESOptimizer)
    samples = model.batches[0].reshape(6, 3)
    rewards = (-(samples - 0.4) ** 2).mean(-1).tolist()
    w = softmax_weights(rewards, 0.3)
    spread = [
        math.sqrt(sum(w[k] * (float(samples[k, t]) - float(before[t, 0])) ** 2 for k in range(6))) for t in range(3)
    ]
    torch.testing.assert_close(opt.sigma, torch.tensor([1.0 * sum(spread) / 3], dtype=torch.float64))
    expected = [sum(w[k] * float(samples[k, t]) for k in range(6)) for t in range(3)]
    torch.testing.assert_close(actions.reshape(3), torch.tensor(expected, dtype=torch.float64))
    # The next step samples with the new sigma.
    sigma = float(opt.sigma)
    mean = actions.reshape(1, 1, 3).clone()
    state = opt.generator.get_state()
    opt.step()
    eps = torch.randn(1, 6, 3, generator=torch.Generator().set_state(state), dtype=torch.float64)
    torch.testing.assert_close(model.batches[1].reshape(1, 6, 3), (mean + sigma * eps).clamp(-1, 1))


def test_paper_cmaes_sigma_collapses_to_the_floor():
    model = Recorder()
    actions = torch.zeros(3, 1, dtype=torch.float64)
    opt = PaperCMAESOptimizer([actions], num_samples=32, bounds=model.action_bounds, rollout=model.rollout, seed=0)
    for _ in range(30):
        opt.step()
    torch.testing.assert_close(opt.sigma, torch.tensor([1e-3], dtype=torch.float64))


def test_state_dict_round_trip_gives_the_same_next_step():
    model = Recorder()
    a = torch.zeros(3, 1, dtype=torch.float64)
    opt = PaperCMAESOptimizer([a], num_samples=8, bounds=model.action_bounds, rollout=model.rollout, seed=5)
    opt.step()
    state = opt.state_dict()
    b = a.clone()
    other = PaperCMAESOptimizer([b], num_samples=8, bounds=model.action_bounds, rollout=model.rollout, seed=99)
    other.load_state_dict(state)
    opt.step()
    other.step()
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(opt.sigma, other.sigma)
    with pytest.raises(ValueError, match="saved by PaperCMAESOptimizer.*this is PaperCEMOptimizer"):
        PaperCEMOptimizer([b.clone()], rollout=model.rollout).load_state_dict(state)


# --------------------------------------------------------------------------- interface
def test_registered_for_plan_and_minimize():
    assert {m: optimizer_class(m) for m in PAPER_METHODS} == PAPER_OPTIMIZERS
    for method in PAPER_METHODS:
        res = plan(Recorder(), num_samples=64, num_steps=25, seed=0, progress=False, method=method)
        assert res.reward > -0.05, (method, res.reward)  # the zero plan gets -0.16
        out = minimize(
            lambda x: ((x - 0.3) ** 2).sum(-1), torch.zeros(2), num_samples=64, num_steps=40, bounds=(-1.0, 1.0),
            seed=0, progress=False, method=method,
        )
        assert out.fun_final < 0.09, (method, out.fun_final)  # half the cost of x0 (0.18)


def test_bad_options_name_the_argument():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="Invalid sigma"):
        PaperMPPIOptimizer([x], sigma=0.0)
    with pytest.raises(ValueError, match="Invalid num_elites"):
        PaperCEMOptimizer([x], num_elites=0)
    with pytest.raises(ValueError, match="Invalid min_sigma"):
        PaperCMAESOptimizer([x], min_sigma=-1.0)
    with pytest.raises(ValueError, match="demo"):
        PaperMPPIOptimizer([torch.zeros(3, 1)], rollout=Recorder().rollout, demo=torch.zeros(3, 1))
    with pytest.raises(ValueError, match="method must be one of"):
        optimizer_class("paper-sgd")


def test_load_state_dict_rejects_a_bad_sigma():
    model = Recorder()
    a = torch.zeros(3, 1, dtype=torch.float64)
    opt = PaperCMAESOptimizer([a], num_samples=8, rollout=model.rollout, seed=5)
    opt.step()
    for bad in (torch.tensor([1.0, 2.0]), torch.tensor([-1.0]), torch.tensor([float("nan")]), 0.5):
        state = opt.state_dict()
        state["sampling"]["sigma"] = bad
        with pytest.raises(ValueError, match="sigma"):
            opt.load_state_dict(state)
    torch.testing.assert_close(opt.sigma, opt.state_dict()["sampling"]["sigma"])  # unchanged


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_steps_on_every_device_and_dtype(method, device, dtype):
    x = torch.zeros(4, device=device, dtype=dtype)
    opt = optimizer_class(method)([x], num_samples=16, bounds=(-1.0, 1.0), seed=0)
    for _ in range(3):
        sigma = opt.sigma
        opt.step(lambda c: ((c[0] - 0.3) ** 2).sum(-1))
        if method != "paper-cmaes":
            assert opt.sigma.tolist() == [1.0]
        elif sigma is not None:
            assert bool((opt.sigma < sigma).all())  # the spread of clipped unit noise is below 1
    assert x.dtype == dtype and x.device.type == device.type
    assert opt.sigma.device.type == device.type and bool(torch.isfinite(x).all())
