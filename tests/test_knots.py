"""Knots: exact reproduction of polynomial control sequences, the identity at K = H, fitting,
the MPC time shift, bad values, and a rollout through the knots."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from torch_mbd.knots import (
    INTERPOLATIONS,
    KnotRollout,
    fit_knots,
    interpolate,
    interpolation_matrix,
    knot_times,
    shift_knots,
)
from torch_mbd.mpc import shift_actions
from torch_mbd.rollout import Trajectory

F64 = torch.float64


def _steps(horizon: int) -> Tensor:
    return torch.arange(horizon, dtype=F64)


def test_knot_times_span_the_control_steps():
    assert knot_times(4, 10).tolist() == [0.0, 3.0, 6.0, 9.0]
    assert knot_times(1, 7).tolist() == [0.0]
    assert torch.equal(knot_times(6, 6), _steps(6))
    times = knot_times(5, 20)
    assert times[0] == 0 and times[-1] == 19 and bool((times.diff() > 0).all())
    torch.testing.assert_close(times.diff(), torch.full((4,), 19 / 4, dtype=F64))


@pytest.mark.parametrize("kind", INTERPOLATIONS)
@pytest.mark.parametrize("num_knots", [1, 2, 3, 5, 9])
def test_every_kind_reproduces_a_constant(kind, num_knots):
    knots = torch.tensor([[0.3, -0.7]], dtype=F64).expand(num_knots, 2)
    out = interpolate(knots, 17, kind)
    assert out.shape == (17, 2)
    torch.testing.assert_close(out, torch.tensor([[0.3, -0.7]], dtype=F64).expand(17, 2), rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind", ["linear", "cubic"])
@pytest.mark.parametrize("num_knots", [2, 3, 4, 7])
def test_linear_and_cubic_reproduce_a_linear_sequence(kind, num_knots):
    H = 16
    line = lambda t: 0.25 - 0.1 * t  # noqa: E731
    out = interpolate(line(knot_times(num_knots, H)).unsqueeze(-1), H, kind)
    torch.testing.assert_close(out[:, 0], line(_steps(H)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_knots", [4, 5, 7, 11])
@pytest.mark.parametrize("coefficients", [(0.3, -1.2, 0.05, -0.002), (-1.0, 0.0, 0.0, 0.01), (0.0, 0.5, -0.3, 0.0)])
def test_cubic_reproduces_any_cubic_polynomial(num_knots, coefficients):
    H = 20
    c0, c1, c2, c3 = coefficients
    cubic = lambda t: c0 + c1 * t + c2 * t**2 + c3 * t**3  # noqa: E731
    out = interpolate(cubic(knot_times(num_knots, H)).unsqueeze(-1), H, "cubic")
    torch.testing.assert_close(out[:, 0], cubic(_steps(H)), rtol=0, atol=1e-10)


def test_cubic_with_three_knots_is_the_parabola_and_linear_cannot_bend():
    H = 11
    parabola = lambda t: 1.0 - 0.2 * t + 0.03 * t**2  # noqa: E731
    knots = parabola(knot_times(3, H)).unsqueeze(-1)
    torch.testing.assert_close(interpolate(knots, H, "cubic")[:, 0], parabola(_steps(H)), rtol=0, atol=1e-12)
    # the linear interpolation of the same knots is not the parabola (it is linear between them)
    assert (interpolate(knots, H, "linear")[:, 0] - parabola(_steps(H))).abs().max() > 1e-2
    # and a cubic polynomial is not reproduced by a quadratic: the test above can fail
    cubic = lambda t: 0.01 * t**3  # noqa: E731
    assert (interpolate(cubic(knot_times(3, H)).unsqueeze(-1), H, "cubic")[:, 0] - cubic(_steps(H))).abs().max() > 1e-2


def test_zero_order_hold_holds_the_last_knot_at_or_before_each_step():
    knots = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=F64)  # at steps 0, 3, 6, 9
    assert interpolate(knots, 10, "zero")[:, 0].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]


def test_queries_outside_the_knots_hold_the_end_values():
    times = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=F64)
    query = torch.tensor([-2.0, -0.5, 3.5, 10.0], dtype=F64)
    for kind in INTERPOLATIONS:
        M = interpolation_matrix(times, query, kind)
        assert M[:2].tolist() == [[1, 0, 0, 0]] * 2 and M[2:].tolist() == [[0, 0, 0, 1]] * 2


@pytest.mark.parametrize("kind", INTERPOLATIONS)
def test_the_matrix_rows_sum_to_one_and_knots_map_to_unit_rows(kind):
    times = knot_times(6, 25)
    M = interpolation_matrix(times, _steps(25), kind)
    assert M.shape == (25, 6) and M.dtype == F64
    torch.testing.assert_close(M.sum(-1), torch.ones(25, dtype=F64), rtol=0, atol=1e-14)
    at_knots = interpolation_matrix(times, times, kind)
    assert torch.equal(at_knots, torch.eye(6, dtype=F64))
    if kind != "cubic":
        assert bool((M >= 0).all())  # convex weights: no overshoot


@pytest.mark.parametrize("kind", INTERPOLATIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_as_many_knots_as_steps_is_the_identity_bit_for_bit(kind, dtype):
    controls = torch.randn(3, 12, 2, dtype=dtype, generator=torch.Generator().manual_seed(0))
    out = interpolate(controls, 12, kind)
    assert out is controls  # no matmul, the input itself
    fitted = fit_knots(controls, 12, kind)
    assert torch.equal(fitted, controls) and fitted is not controls


@pytest.mark.parametrize("kind", INTERPOLATIONS)
@pytest.mark.parametrize("num_knots", [1, 2, 4, 7])
def test_fit_inverts_interpolate(kind, num_knots):
    knots = torch.randn(2, num_knots, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    controls = interpolate(knots, 15, kind)
    assert controls.shape == (2, 15, 3)
    torch.testing.assert_close(fit_knots(controls, num_knots, kind), knots, rtol=0, atol=1e-10)
    again = interpolate(fit_knots(controls, num_knots, kind), 15, kind)
    torch.testing.assert_close(again, controls, rtol=0, atol=1e-10)


def test_fit_is_least_squares():
    # the zero-order-hold fit of an arbitrary sequence is the mean over each knot's steps
    controls = torch.tensor([1.0, 2.0, 6.0, 0.0, 4.0, 8.0, 5.0], dtype=F64).unsqueeze(-1)  # H = 7
    knots = fit_knots(controls, 3, "zero")  # knots at 0, 3, 6: steps {0,1,2}, {3,4,5}, {6}
    torch.testing.assert_close(knots[:, 0], torch.tensor([3.0, 4.0, 5.0], dtype=F64))


@pytest.mark.parametrize("kind", INTERPOLATIONS)
@pytest.mark.parametrize("fill", ["repeat", "zero"])
@pytest.mark.parametrize("horizon, num_knots, steps", [(10, 4, 1), (10, 4, 3), (13, 5, 2), (9, 9, 1), (10, 4, 10)])
def test_shifting_knots_equals_shifting_the_controls_at_the_knots(kind, fill, horizon, num_knots, steps):
    times = knot_times(num_knots, horizon)
    assert torch.equal(times, times.round())  # the knots sit on control steps
    at = times.long()
    knots = torch.randn(2, num_knots, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    shifted = interpolate(shift_knots(knots, horizon, steps, kind, fill), horizon, kind)
    expected = shift_actions(interpolate(knots, horizon, kind), steps, fill)
    torch.testing.assert_close(shifted[..., at, :], expected[..., at, :], rtol=0, atol=1e-12)
    if num_knots == horizon:  # one knot per step: the shift is exact everywhere
        assert torch.equal(shifted, expected)


def test_shifting_moves_the_spline_not_the_knot_values():
    # knots at 0, 3, 6, 9 on a line: one step later every knot reads the line one step on
    line = lambda t: 2.0 * t  # noqa: E731
    knots = line(knot_times(4, 10)).unsqueeze(-1)
    expected = torch.tensor([2.0, 8.0, 14.0, 18.0], dtype=F64)
    torch.testing.assert_close(shift_knots(knots, 10, 1, "linear")[:, 0], expected)
    assert torch.equal(shift_knots(knots, 10, 0, "cubic"), knots)
    assert shift_knots(knots, 10, 1, "linear", fill="zero")[-1, 0] == 0.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: knot_times(0, 10), "num_knots"),
        (lambda: knot_times(11, 10), "num_knots"),
        (lambda: knot_times(2.0, 10), "num_knots"),
        (lambda: knot_times(2, 0), "horizon"),
        (lambda: interpolate(torch.zeros(11, 1), 10), "num_knots"),
        (lambda: interpolate(torch.zeros(0, 1), 10), "num_knots"),
        (lambda: interpolate(torch.zeros(3, 1), 10, "quadratic"), "kind"),
        (lambda: interpolate(torch.zeros(3), 10), "knots"),
        (lambda: interpolate(torch.zeros(3, 1, dtype=torch.int64), 10), "knots"),
        (lambda: fit_knots(torch.zeros(10, 1), 0), "num_knots"),
        (lambda: fit_knots(torch.zeros(10, 1), 11), "num_knots"),
        (lambda: fit_knots(torch.zeros(10, 1), 3, "spline"), "kind"),
        (lambda: fit_knots([[0.0]] * 10, 3), "controls"),
        (lambda: shift_knots(torch.zeros(4, 1), 10, 11), "steps"),
        (lambda: shift_knots(torch.zeros(4, 1), 10, 1, fill="last"), "fill"),
        (lambda: shift_knots(torch.zeros(4, 1), 10, 1, "nearest"), "kind"),
        (lambda: interpolation_matrix(torch.tensor([0.0, 2.0, 1.0]), torch.zeros(3)), "knot_times"),
        (lambda: interpolation_matrix(torch.tensor([0.0, 1.0]), torch.tensor([0, 1])), "query_times"),
        (lambda: interpolation_matrix(torch.tensor([0.0, float("nan")]), torch.zeros(3)), "knot_times"),
    ],
)
def test_bad_values_are_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


class Pendulum:
    """Toy RolloutModel: a damped double integrator per action dimension, quadratic reward."""

    action_dim, state_dim, horizon = 2, 4, 12

    def __init__(self):
        self.action_bounds = (-torch.ones(2, dtype=F64), torch.ones(2, dtype=F64))
        self.initial_state = torch.tensor([0.5, -0.2, 0.0, 0.1], dtype=F64)
        self.device = torch.device("cpu")
        self.seen = []

    def rollout(self, actions):
        self.seen.append(actions)
        x = self.initial_state.expand(*actions.shape[:-2], 4)
        states, rewards = [], []
        for t in range(actions.shape[-2]):
            pos, vel = x[..., :2], x[..., 2:]
            vel = 0.9 * vel + 0.1 * actions[..., t, :]
            pos = pos + 0.1 * vel
            x = torch.cat([pos, vel], -1)
            states.append(x)
            rewards.append(-(pos**2).sum(-1) - 0.01 * (actions[..., t, :] ** 2).sum(-1))
        return Trajectory(states=torch.stack(states, -2), rewards=torch.stack(rewards, -1))


@pytest.mark.parametrize("kind", INTERPOLATIONS)
def test_knot_rollout_gives_the_models_rewards_on_the_interpolated_controls(kind):
    model = Pendulum()
    wrapper = KnotRollout(model, num_knots=4, kind=kind)
    assert (wrapper.horizon, wrapper.action_dim, wrapper.state_dim) == (12, 2, 4)
    assert wrapper.action_bounds is model.action_bounds and wrapper.device == model.device
    knots = 0.8 * torch.rand(5, 4, 2, dtype=F64, generator=torch.Generator().manual_seed(3)) - 0.4
    traj = wrapper.rollout(knots)
    controls = interpolate(knots, 12, kind)
    reference = Pendulum().rollout(controls)
    assert traj.rewards.shape == (5, 12) and traj.states.shape == (5, 12, 4)
    torch.testing.assert_close(traj.rewards, reference.rewards, rtol=0, atol=0)
    torch.testing.assert_close(traj.states, reference.states, rtol=0, atol=0)
    assert torch.equal(wrapper.to_controls(knots), controls)


def test_knot_rollout_clamps_a_cubic_overshoot_to_the_action_bounds():
    model = Pendulum()
    knots = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=F64)  # at the bounds
    raw = interpolate(knots, 12, "cubic")
    assert raw.abs().max() > 1.0  # a cubic through alternating extremes overshoots them
    wrapper = KnotRollout(model, 4, "cubic")
    wrapper.rollout(knots)
    seen = model.seen[-1]
    assert torch.equal(seen, raw.clamp(-1.0, 1.0)) and seen.abs().max() == 1.0
    # zero-order hold and linear cannot overshoot: they are not clamped (and need not be)
    assert not KnotRollout(model, 4, "linear").clamps and not KnotRollout(model, 12, "cubic").clamps


def test_knot_rollout_forwards_the_initial_state_and_refuses_bad_knots():
    model = Pendulum()
    wrapper = KnotRollout(model, 3, "linear", horizon=8)
    assert wrapper.horizon == 8 and wrapper.initial_state is model.initial_state
    wrapper.initial_state = torch.zeros(4, dtype=F64)
    assert torch.equal(model.initial_state, torch.zeros(4, dtype=F64))
    assert wrapper.rollout(torch.zeros(2, 3, 2, dtype=F64)).rewards.shape == (2, 8)
    with pytest.raises(ValueError, match="knots"):
        wrapper.rollout(torch.zeros(2, 4, 2, dtype=F64))
    with pytest.raises(ValueError, match="num_knots"):
        KnotRollout(model, 13)
    with pytest.raises(ValueError, match="kind"):
        KnotRollout(model, 3, "quintic")
    with pytest.raises(TypeError, match="RolloutModel"):
        KnotRollout(object(), 3)
