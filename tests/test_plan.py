"""plan: rollouts without states, NumPy inputs, and every bad argument refused before a rollout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torch_mbd import PlanResult, Trajectory, plan


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
