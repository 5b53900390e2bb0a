"""The starter tasks (:mod:`dynamics.classic`): physics checks, and MBD solving each at a tiny budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dynamics
from dynamics.classic import (
    CartPole,
    Pendulum,
    PointMass,
    cartpole_derivative,
    point_mass_derivative,
    rk4,
    wrap_angle,
)
from torch_mbd import cli, plan
from torch_mbd.rollout import RolloutModel

F64 = torch.float64


def test_wrap_angle():
    angles = torch.tensor([0.0, math.pi, -math.pi, 3 * math.pi, 2 * math.pi + 0.5, -0.5, 7.0], dtype=F64)
    wrapped = wrap_angle(angles)
    assert bool(((wrapped > -math.pi) & (wrapped <= math.pi)).all())
    np.testing.assert_allclose(torch.cos(wrapped), torch.cos(angles), atol=1e-12)
    np.testing.assert_allclose(torch.sin(wrapped), torch.sin(angles), atol=1e-12)
    np.testing.assert_allclose(wrapped[[0, 1, 2, 4, 5]], [0.0, math.pi, math.pi, 0.5, -0.5], atol=1e-12)


@pytest.mark.parametrize("theta0", [1.0, 2.0, 3.0])
def test_the_undamped_pendulum_keeps_its_energy_over_1000_steps(theta0):
    model = Pendulum(damping=0.0, start=(theta0, 0.0), dtype=F64)
    states = model.simulate(torch.zeros(1000, 1, dtype=F64))
    m, g, l = model.mass, model.gravity, model.length
    energy = 0.5 * m * l**2 * states[:, 1] ** 2 - m * g * l * torch.cos(states[:, 0])
    assert float((energy + m * g * l * math.cos(theta0)).abs().max()) < 2e-4 * m * g * l
    assert float(states[:, 0].max()) == pytest.approx(theta0, abs=1e-3)  # swings back to where it started


def test_the_free_cart_pole_keeps_its_energy_and_horizontal_momentum():
    """No force: the Lagrangian system conserves energy and ``(m_c + m_p) v + m_p l cos(theta) omega``."""
    mc, mp, l, g = 1.0, 0.1, 0.5, 9.81

    def derivative(state, control):
        return cartpole_derivative(state, control, mc, mp, l, g)

    state = torch.tensor([0.0, 2.5, 0.3, -1.0], dtype=F64)
    zero = torch.zeros(1, dtype=F64)

    def invariants(s):
        _, theta, v, omega = s
        tip_vx, tip_vy = v + l * torch.cos(theta) * omega, l * torch.sin(theta) * omega
        energy = 0.5 * mc * v**2 + 0.5 * mp * (tip_vx**2 + tip_vy**2) - mp * g * l * torch.cos(theta)
        return float(energy), float((mc + mp) * v + mp * l * torch.cos(theta) * omega)

    e0, p0 = invariants(state)
    for _ in range(500):
        state = rk4(derivative, state, zero, 0.01)
    e1, p1 = invariants(state)
    assert abs(e1 - e0) < 1e-6 and abs(p1 - p0) < 1e-6


def test_a_force_on_a_hanging_cart_pole_moves_the_cart_and_tilts_the_pole_back():
    # at theta = 0 the rod is vertical: the force accelerates the cart alone, the pole lags behind
    rest = torch.zeros(4, dtype=F64)
    d = cartpole_derivative(rest, torch.tensor([2.0], dtype=F64), 1.0, 0.1, 0.5, 9.81)
    np.testing.assert_allclose(d, [0.0, 0.0, 2.0, -4.0], atol=1e-12)  # x'' = f / m_c, theta'' = -f / (l m_c)


def test_point_mass_under_constant_acceleration_follows_the_parabola():
    model = PointMass(damping=0.0, dtype=F64)
    actions = torch.tensor([[0.5, -0.25]], dtype=F64).expand(10, 2)
    states = model.simulate(actions)
    t = model.dt * torch.arange(1, 11, dtype=F64).unsqueeze(-1)
    accel = actions[0] * model.max_accel
    np.testing.assert_allclose(states[:, :2], model.initial_state[:2] + 0.5 * accel * t**2, atol=1e-12)
    np.testing.assert_allclose(states[:, 2:], accel * t, atol=1e-12)
    drag = point_mass_derivative(torch.tensor([0.0, 0.0, 1.0, -2.0]), torch.zeros(2), damping=0.5)
    np.testing.assert_allclose(drag, [1.0, -2.0, -0.5, 1.0])


@pytest.mark.parametrize("cls", [Pendulum, CartPole, PointMass])
def test_batched_rollouts_in_float32_and_float64(cls):
    for dtype in (torch.float32, F64):
        model = cls(dtype=dtype)
        assert isinstance(model, RolloutModel)
        actions = torch.rand(2, 3, 7, model.action_dim, generator=torch.Generator().manual_seed(0), dtype=dtype) * 2 - 1
        traj = model.rollout(actions)
        assert traj.states.shape == (2, 3, 7, model.state_dim) and traj.states.dtype == dtype
        assert traj.rewards.shape == (2, 3, 7) and traj.feasible.shape == (2, 3)
        # one problem at a time gives the same (no mixing across the batch)
        single = model.rollout(actions[1, 2])
        torch.testing.assert_close(single.states, traj.states[1, 2])
        torch.testing.assert_close(single.rewards, traj.rewards[1, 2])
        # actions beyond [-1, 1] act as the bound
        torch.testing.assert_close(model.rollout(actions * 5).states, model.rollout((actions * 5).clamp(-1, 1)).states)


def test_the_terminal_term_is_on_the_last_step_only():
    model, plain = Pendulum(), Pendulum(terminal_weight=0.0)
    actions = torch.full((1, 5, 1), 0.3)
    with_term, without = model.rollout(actions).rewards, plain.rollout(actions).rewards
    torch.testing.assert_close(with_term[..., :-1], without[..., :-1])
    final = model.simulate(actions)[..., -1, :]
    torch.testing.assert_close(with_term[..., -1], without[..., -1] - 200.0 * model.terminal_cost(final))


def test_a_cart_off_its_track_is_infeasible():
    model = CartPole(track_limit=0.5)
    push = torch.ones(2, 30, 1)
    push[1] = 0.0  # no force: the cart stays put
    feasible = model.rollout(push).feasible
    assert feasible.tolist() == [False, True]


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        Pendulum(horizon=0)
    with pytest.raises(ValueError, match="max_torque must be a finite number > 0"):
        Pendulum(max_torque=-1.0)
    with pytest.raises(ValueError, match="damping must be a finite number >= 0"):
        PointMass(damping=float("nan"))
    with pytest.raises(ValueError, match="start must have 4 entries"):
        CartPole(start=(0.0, 0.0))
    with pytest.raises(ValueError, match="off the track"):
        CartPole(start=(3.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="goal must be a finite"):
        PointMass(goal=(1.0, 2.0, 3.0))
    with pytest.raises(TypeError, match="dtype must be a floating-point"):
        Pendulum(dtype=torch.int64)
    with pytest.raises(ValueError, match=r"actions must have shape \[\.\.\., H, 2\]"):
        PointMass().rollout(torch.zeros(4, 10, 1))
    with pytest.raises(ValueError, match="actions have dtype"):
        Pendulum().rollout(torch.zeros(4, 10, 1, dtype=F64))


# ----------------------------------------------------------------------------- MBD solves them
# Eight independent problems diffuse in one call (a batch of initial guesses). Each test asks most
# of them to succeed, not one seed: the swing-ups are chaotic, so another CPU's last-bit differences
# can turn one seed's run into another run (cart-pole: 7 and 6 of 8 ended within 0.2 rad here).
PROBLEMS = 8


def plan_batch(model, num_samples: int, num_steps: int):
    init = torch.zeros(PROBLEMS, model.horizon, model.action_dim)
    return plan(model, num_samples=num_samples, num_steps=num_steps, seed=0, progress=False, init=init)


def test_mbd_swings_the_pendulum_up_at_a_tiny_budget():
    model = Pendulum()
    final = plan_batch(model, 256, 50).states[:, -1]  # [8, 2]
    error = model.upright_error(final).abs()  # rad from upright (the start hangs pi away)
    up = (error < 0.3) & (final[:, 1].abs() < 1.5)  # upright and arrived, not swinging through
    assert int(up.sum()) >= 6, error
    assert float(error.median()) < 0.2


def test_mbd_swings_the_cart_pole_up_at_a_tiny_budget():
    model = CartPole()
    result = plan_batch(model, 256, 50)
    final = result.states[:, -1]  # [8, 4]
    error = model.upright_error(final).abs()
    up = (error < 0.3) & (final[:, 3].abs() < 1.5)
    up &= (final[:, 0].abs() < 0.5) & result.feasible  # over the track's centre, never off the track
    assert int(up.sum()) >= 5, error
    assert float(error.median()) < 0.2


def test_mbd_brings_the_point_mass_to_the_goal_at_a_tiny_budget():
    model = PointMass()
    final = plan_batch(model, 64, 20).states[:, -1]  # [8, 4]
    distance = model.goal_distance(final)  # m, from 2.83 m away
    arrived = (distance < 0.15) & (torch.linalg.vector_norm(final[:, 2:], dim=-1) < 0.3)  # and stopped
    assert int(arrived.sum()) >= 7, distance
    assert float(distance.median()) < 0.1


# ----------------------------------------------------------------------------- registry and command line
def test_registered_with_their_budget_and_listed_by_torch_mbd_tasks(capsys):
    expected = {"pendulum": (Pendulum, 80), "cart_pole": (CartPole, 60), "point_mass": (PointMass, 30)}
    for name, (cls, horizon) in expected.items():
        info = dynamics.task_info(name)
        assert info.backends == ("torch",) and info.horizon == horizon
        assert isinstance(dynamics.make(name), cls)
        assert cli.default_budget(info) == cli.default_budget(dynamics.make(name)) == (cls.num_samples, cls.num_steps, 0.1)
    assert cli.main(["tasks"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    for name, (cls, horizon) in expected.items():
        assert rows[name].split()[1] == str(horizon) and f"{cls.num_samples} x {cls.num_steps}" in rows[name]


@pytest.mark.parametrize("task", ["pendulum", "cart_pole", "point_mass"])
def test_torch_mbd_plan_writes_the_arrays_and_a_figure_the_task_draws(task, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / f"{task}.png"
    assert cli.main(["plan", task, "--samples", "16", "--steps", "3", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "goal reached:" in text and "final distance to the goal:" in text
    arrays = np.load(tmp_path / f"{task}.npz")
    model = dynamics.make(task)
    assert arrays["actions"].shape == (model.horizon, model.action_dim)
    assert arrays["states"].shape == (model.horizon, model.state_dim)
    assert out.stat().st_size > 10_000  # a drawn figure, not an empty canvas
