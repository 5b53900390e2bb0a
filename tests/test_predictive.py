"""Predictive sampling (torch_mbd.predictive): the best of the estimate and its perturbations."""

from __future__ import annotations

import pytest
import torch

from torch_mbd import PredictiveSamplingOptimizer, Trajectory, plan


def sphere(c):
    return ((c[0] - torch.tensor([0.5, -0.3, 0.2])) ** 2).sum(-1)


def test_the_estimate_is_a_candidate_and_moves_to_the_best_sample():
    x = torch.tensor([0.1, 0.1, 0.1])
    opt = PredictiveSamplingOptimizer([x], num_samples=8, noise_std=0.3, seed=0)
    start = x.clone()
    opt.step(sphere)
    samples, rewards = opt.last_step.samples[0], opt.last_step.rewards[0]
    assert torch.equal(samples[0], start)  # sample 0 is the estimate itself, unperturbed
    best = int(torch.argmax(rewards))
    assert torch.equal(x, samples[best])  # the new estimate is exactly the best sample
    assert opt.last_step.weights[0, best] == 1 and opt.last_step.weights.sum() == 1
    assert samples[1:].sub(start).abs().gt(0).all()  # the others are perturbed


def test_the_loss_never_increases_and_converges():
    x = torch.zeros(3)
    opt = PredictiveSamplingOptimizer([x], num_samples=16, noise_std=0.1, seed=1)
    losses = [float(sphere([x[None]]))]
    for _ in range(40):
        opt.step(sphere)
        losses.append(float(sphere([x[None]])))
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 0.05 * losses[0]


def test_bounds_clip_the_estimate_sample_too():
    x = torch.full((3,), 2.0)  # starts outside the bounds: its candidate is clipped like the others
    opt = PredictiveSamplingOptimizer([x], num_samples=8, bounds=(-1.0, 1.0), seed=0)
    opt.step(sphere)
    assert torch.equal(opt.last_step.samples[0, 0], torch.ones(3)) and (x.abs() <= 1).all()


def test_plan_with_method_predictive():
    class Reach:
        action_dim, state_dim, horizon = 2, 2, 6
        action_bounds = (-torch.ones(2), torch.ones(2))

        def rollout(self, actions):
            states = torch.cumsum(actions * 0.5, dim=-2)
            return Trajectory(states, -((states - torch.tensor([1.0, -0.5])) ** 2).sum(-1))

    zero = float(Reach().rollout(torch.zeros(1, 6, 2)).rewards.mean())
    res = plan(Reach(), num_samples=32, num_steps=20, seed=0, progress=False, method="predictive")
    assert res.reward > zero + 0.5 * abs(zero)


def test_bad_options():
    with pytest.raises(ValueError, match="num_samples"):
        PredictiveSamplingOptimizer([torch.zeros(2)], num_samples=1)
    with pytest.raises(ValueError, match="noise_std"):
        PredictiveSamplingOptimizer([torch.zeros(2)], noise_std=0.0)
    with pytest.raises(ValueError, match="demo"):
        PredictiveSamplingOptimizer([torch.zeros(2)], demo=torch.zeros(2))
