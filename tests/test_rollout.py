"""The rollout protocol's checks: ``as_trajectory`` and the one rule for ``feasible`` (``as_feasible``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_mbd
from torch_mbd.checks import as_feasible, check_bool
from torch_mbd.rollout import Trajectory, as_trajectory

NAN = float("nan")


def test_a_boolean_mask_passes_unchanged():
    mask = torch.tensor([True, False, True])
    assert as_feasible(mask) is mask
    assert as_feasible(None) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.uint8])
def test_zero_one_masks_become_boolean(dtype):
    got = as_feasible(torch.tensor([1, 0, 1, 0], dtype=dtype))
    assert got.dtype == torch.bool and got.tolist() == [True, False, True, False]


def test_nan_means_infeasible():
    assert as_feasible(torch.tensor([1.0, NAN, 0.0])).tolist() == [True, False, False]


@pytest.mark.parametrize(
    "values, shown",
    [([1.0, 0.5], "0.5"), ([2.0, 1.0], "2"), ([-1.0], "-1"), ([float("inf"), 0.0], "inf"), ([3], "3")],
)
def test_any_other_value_is_refused_and_shown(values, shown):
    """0.5, 2 or infinity used to count as feasible: a probability or a count is not a constraint."""
    with pytest.raises(ValueError, match=rf"rollout feasible must be boolean, or 0/1 .* value\(s\) {shown}"):
        as_feasible(torch.tensor(values))


def test_complex_and_non_tensor_masks_are_type_errors():
    with pytest.raises(TypeError, match="boolean tensor"):
        as_feasible(torch.tensor([1 + 0j]))
    with pytest.raises(TypeError, match="boolean tensor .* got list"):
        as_feasible([True, False])


def test_as_trajectory_returns_a_boolean_mask():
    actions = torch.zeros(3, 4, 2)
    rewards, states = torch.zeros(3, 4), torch.zeros(3, 4, 5)
    traj = as_trajectory(Trajectory(states, rewards, torch.tensor([1.0, 0.0, NAN])), actions)
    assert traj.feasible.dtype == torch.bool and traj.feasible.tolist() == [True, False, False]
    traj = as_trajectory((rewards, states, torch.tensor([1, 1, 0])), actions)
    assert traj.feasible.tolist() == [True, True, False]
    with pytest.raises(ValueError, match="rollout feasible must be boolean"):
        as_trajectory((rewards, states, torch.tensor([0.5, 1.0, 1.0])), actions)


class Reach:
    """A 1-D point driven to 1; samples whose last action is above 0.05 are infeasible.

    ``kind`` says how ``feasible`` is reported: ``"bool"``, ``"float"`` (1 / 0), ``"nan"`` (1 / NaN)
    or ``"half"`` (1 / 0.5, which is not a constraint).
    """

    action_dim, state_dim, horizon = 1, 1, 4
    device = torch.device("cpu")

    def __init__(self, kind: str):
        self.kind = kind
        self.action_bounds = (-torch.ones(1), torch.ones(1))
        self.initial_state = torch.zeros(1)

    def rollout(self, actions):
        states = actions.cumsum(-2)
        rewards = -(states[..., 0] - 1.0).abs()
        ok = actions[..., -1, 0] <= 0.05
        if self.kind == "bool":
            feasible = ok
        else:
            bad = {"float": 0.0, "nan": NAN, "half": 0.5}[self.kind]
            feasible = torch.where(ok, torch.ones(()), torch.full((), bad))
        return Trajectory(states=states, rewards=rewards, feasible=feasible)


@pytest.mark.parametrize("kind", ["float", "nan"])
def test_a_plan_with_a_zero_one_or_nan_mask_equals_the_boolean_plan(kind):
    budget = dict(num_samples=32, num_steps=5, seed=0, progress=False)
    expected = torch_mbd.plan(Reach("bool"), **budget)
    got = torch_mbd.plan(Reach(kind), **budget)
    assert torch.equal(got.actions, expected.actions) and got.reward == expected.reward
    assert got.feasible.dtype == torch.bool


def test_a_plan_with_a_half_feasible_mask_is_refused():
    with pytest.raises(ValueError, match=r"rollout feasible must be boolean, or 0/1 .* 0\.5"):
        torch_mbd.plan(Reach("half"), num_samples=32, num_steps=5, seed=0, progress=False)


def test_check_bool_takes_python_numpy_and_tensor_booleans():
    for value, expected in ((True, True), (np.True_, True), (np.bool_(False), False), (torch.tensor(True), True)):
        got = check_bool("flag", value)
        assert got is expected
    for bad in (1, 0, np.int64(1), "yes", None, np.array([True]), torch.tensor([True]), torch.tensor(1)):
        with pytest.raises(ValueError, match="Invalid flag: expected True or False"):
            check_bool("flag", bad)
