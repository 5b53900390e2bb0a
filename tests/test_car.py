"""The bicycle car in the U-maze, RRT demonstrations, the demonstration term, ``plan`` and the CLI."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from dynamics.car import Car2D, bicycle_derivative, path_hits_boxes, rk4_step, segments_hit_boxes, stopping_cost
from dynamics.planning import PlanningError, rrt, rrt_demo, xy_mask
from torch_mbd import MBDOptimizer, plan
from torch_mbd.cli import build_parser, main

DT, L, MAX_STEER = 0.1, 0.3, 0.6


# ----------------------------------------------------------------------------- dynamics
def hand_derivative(s, u):
    """``[v cos th, v sin th, v / L tan(delta), a, delta_rate]`` in plain floats."""
    _, _, th, v, d = s
    return [v * math.cos(th), v * math.sin(th), v / L * math.tan(d), u[0], u[1]]


def hand_rk4(s, u):
    add = lambda a, b, h: [ai + h * bi for ai, bi in zip(a, b)]
    k1 = hand_derivative(s, u)
    k2 = hand_derivative(add(s, k1, DT / 2), u)
    k3 = hand_derivative(add(s, k2, DT / 2), u)
    k4 = hand_derivative(add(s, k3, DT), u)
    return [si + DT / 6 * (a + 2 * b + 2 * c + d) for si, a, b, c, d in zip(s, k1, k2, k3, k4)]


def test_one_rk4_step_matches_a_hand_computation():
    s, u = [0.5, -0.2, 0.3, 1.2, 0.1], [0.8, -0.5]
    got = rk4_step(torch.tensor(s, dtype=torch.float64), torch.tensor(u, dtype=torch.float64), DT, L, MAX_STEER)
    np.testing.assert_allclose(got.numpy(), hand_rk4(s, u), rtol=0, atol=1e-12)
    # The derivative itself, entry by entry.
    der = bicycle_derivative(torch.tensor(s, dtype=torch.float64), torch.tensor(u, dtype=torch.float64), L, MAX_STEER)
    np.testing.assert_allclose(der.numpy(), hand_derivative(s, u), rtol=0, atol=1e-15)


def test_car_step_scales_the_normalized_action():
    car = Car2D(dtype=torch.float64)  # max_accel = max_steer_rate = 2
    s = torch.tensor([0.5, -0.2, 0.3, 1.2, 0.1], dtype=torch.float64)
    got = car.step(s, torch.tensor([0.4, -0.25], dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), hand_rk4(s.tolist(), [0.8, -0.5]), rtol=0, atol=1e-12)


def test_straight_driving_matches_the_closed_form():
    theta, v = 0.7, 1.5
    car = Car2D(start=(-2.0, 0.5, theta, v, 0.0), dtype=torch.float64, obstacles=torch.zeros(0, 4))
    states = car.simulate(torch.zeros(30, 2, dtype=torch.float64))  # coast: a = 0, delta_rate = 0
    t = torch.arange(1, 31, dtype=torch.float64) * car.dt
    np.testing.assert_allclose(states[:, 0].numpy(), (-2.0 + v * t * math.cos(theta)).numpy(), atol=1e-12)
    np.testing.assert_allclose(states[:, 1].numpy(), (0.5 + v * t * math.sin(theta)).numpy(), atol=1e-12)
    assert bool((states[:, 2] == theta).all()) and bool((states[:, 3] == v).all())
    # Constant acceleration from rest: RK4 is exact for x = a t^2 / 2 (below the speed limit).
    car = Car2D(dtype=torch.float64, obstacles=torch.zeros(0, 4))
    states = car.simulate(torch.tensor([[0.5, 0.0]], dtype=torch.float64).expand(10, 2))  # a = 1 m/s^2
    t = torch.arange(1, 11, dtype=torch.float64) * car.dt
    np.testing.assert_allclose(states[:, 0].numpy(), (-2.0 + 0.5 * t**2).numpy(), atol=1e-12)
    np.testing.assert_allclose(states[:, 3].numpy(), t.numpy(), atol=1e-12)


def test_action_bounds_are_respected():
    car = Car2D(dtype=torch.float64)
    lower, upper = car.action_bounds
    assert lower.tolist() == [-1.0, -1.0] and upper.tolist() == [1.0, 1.0]
    # Actions beyond [-1, 1] act as the bound itself.
    wild = torch.tensor([[[5.0, -7.0]] * 20], dtype=torch.float64)
    np.testing.assert_array_equal(car.simulate(wild).numpy(), car.simulate(wild.clamp(-1, 1)).numpy())
    # Full throttle and steering saturate at max_speed and max_steer.
    states = car.simulate(torch.ones(40, 2, dtype=torch.float64))
    assert float(states[0, 3]) == pytest.approx(car.max_accel * car.dt)
    assert float(states[:, 3].max()) == pytest.approx(car.max_speed) and float(states[:, 4].max()) == pytest.approx(
        car.max_steer
    )
    # The control cost reads the clipped action.
    traj = car.rollout(wild.expand(3, 20, 2))
    assert traj.states.shape == (3, 20, 5) and traj.rewards.shape == (3, 20) and traj.feasible.shape == (3,)


# ----------------------------------------------------------------------------- reward and goal
def test_the_goal_terms_of_the_reward_match_a_hand_computation():
    # No obstacles (no clearance term), goal (2, 0): every term by hand.
    car = Car2D(
        dtype=torch.float64, obstacles=torch.zeros(0, 4), goal=(2.0, 0.0), control_weight=0.5,
        terminal_weight=5.0, stop_weight=2.0, stop_radius=1.0, horizon=3,
    )
    states = torch.tensor(
        [[0.5, 0.0, 0.0, 1.5, 0.0], [1.6, 0.0, 0.0, 1.0, 0.0], [2.0, 0.3, 0.0, -0.5, 0.0]], dtype=torch.float64
    )
    # distances 1.5, 0.4, 0.3; speed term |v| * relu(1 - g / 1): 0, 1.0 * 0.6, 0.5 * 0.7
    expected = [-1.5, -0.4 - 2.0 * 0.6, -0.3 - 2.0 * 0.35 - 5.0 * 0.3]  # the last step carries the terminal term
    np.testing.assert_allclose(car.path_reward(states).numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(car.state_reward(states).numpy(), [-1.5, -1.6, -1.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        stopping_cost(torch.tensor([0.0, 0.5, 1.0, 3.0]), torch.tensor([-2.0, 2.0, 2.0, 2.0]), 1.0).numpy(),
        [2.0, 1.0, 0.0, 0.0],
    )
    # A batch of paths: the terminal term lands on each path's last step only.
    batch = torch.stack([states, states.flip(0)])
    rewards = car.path_reward(batch)
    assert rewards.shape == (2, 3)
    np.testing.assert_allclose(rewards[1].numpy(), [-1.0, -1.6, -1.5 - 5.0 * 1.5], rtol=0, atol=1e-12)
    # rollout() = path_reward of the simulated states - control_weight * ||u||^2 per step.
    actions = torch.tensor([[[0.2, -0.4], [1.0, 0.0], [-0.6, 0.8]]], dtype=torch.float64)
    traj = car.rollout(actions)
    np.testing.assert_allclose(
        traj.rewards.numpy(),
        (car.path_reward(traj.states) - 0.5 * torch.tensor([[0.2, 1.0, 1.0]], dtype=torch.float64)).numpy(),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [({"terminal_weight": -1.0}, "terminal_weight"), ({"stop_weight": float("nan")}, "stop_weight"),
     ({"stop_radius": 0.0}, "stop_radius"), ({"terminal_weight": True}, "terminal_weight")],
)
def test_bad_goal_term_weights_are_rejected_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Car2D(**kwargs)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"start": (NAN, 0.0, 0.0, 0.0, 0.0)}, "start"),
        ({"start": (-2.0, 0.0, 0.0, INF, 0.0)}, "start"),
        ({"goal": (2.0, NAN)}, "goal"),
        ({"goal": np.array([-INF, 0.0])}, "goal"),
        ({"obstacles": torch.tensor([[0.4, -1.2, NAN, 1.2]])}, "obstacles"),
        ({"obstacles": [[-INF, -1.0, 0.0, 1.0]]}, "obstacles"),
        ({"workspace": ((-3.0, -3.0), (INF, 3.0))}, "workspace"),
    ],
    ids=["nan-start", "inf-speed", "nan-goal", "inf-goal", "nan-obstacle", "inf-obstacle", "inf-workspace"],
)
def test_non_finite_start_goal_or_obstacles_are_refused(kwargs, name):
    """A NaN start, goal or obstacle used to plan NaN silently."""
    with pytest.raises(ValueError, match=f"{name} must be finite"):
        Car2D(**kwargs)


def test_start_goal_and_obstacles_of_the_wrong_shape_or_kind_are_refused():
    with pytest.raises(ValueError, match=r"start must be \[x, y, theta, v, delta\], got shape \(2,\)"):
        Car2D(start=(0.0, 0.0))
    with pytest.raises(ValueError, match="goal must be"):
        Car2D(goal=("a", "b"))
    with pytest.raises(ValueError, match=r"obstacles must be \[k, 4\]"):
        Car2D(obstacles=[0.0, 1.0, 2.0, 3.0])


@pytest.mark.parametrize("value", [INF, -INF, NAN])
def test_a_non_finite_action_makes_its_sample_infeasible(value):
    """An infinite action used to be clipped to +-1 and counted as feasible."""
    car = Car2D(horizon=5)
    actions = torch.zeros(3, 5, 2)
    actions[1, 2, 0] = value
    traj = car.rollout(actions)
    assert traj.feasible.tolist() == [True, False, True]
    clean = car.rollout(torch.zeros(3, 5, 2))
    assert torch.equal(traj.states[0], clean.states[0]) and torch.equal(traj.states[2], clean.states[2])


def test_zero_control_steps_are_a_clear_error():
    car = Car2D(horizon=5)
    with pytest.raises(ValueError, match=r"at least one control step \(H >= 1\)"):
        car.rollout(torch.zeros(4, 0, 2))
    with pytest.raises(ValueError, match="Invalid horizon"):
        Car2D(horizon=0)
    with pytest.raises(ValueError, match="Invalid horizon"):
        plan(car, horizon=0, num_samples=4, num_steps=2, progress=False)


def test_numpy_and_tensor_scalars_are_accepted_as_numbers():
    """``np.int64``, ``np.float32`` and 0-dim tensors wherever a Python int or float is taken."""
    plain = Car2D(horizon=8, dt=0.1, max_speed=3.0, stop_weight=2.0, clearance=0.15)
    numpy = Car2D(horizon=np.int64(8), dt=np.float32(0.1), max_speed=np.float64(3.0), stop_weight=np.int32(2),
                  clearance=torch.tensor(0.15))
    assert numpy.horizon == 8 and type(numpy.horizon) is int and type(numpy.dt) is float
    actions = torch.rand(2, 8, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    torch.testing.assert_close(numpy.rollout(actions).rewards, plain.rollout(actions).rewards)
    for bad in (True, np.True_, "0.1", np.array([0.1, 0.2])):
        with pytest.raises(ValueError, match="Invalid dt"):
            Car2D(dt=bad)


def test_arriving_and_stopping_beats_driving_through_the_goal():
    def path(xs, speeds):
        return torch.tensor([[x, 0.0, 0.0, v, 0.0] for x, v in zip(xs, speeds)], dtype=torch.float64)

    # Through the goal (2, 0) at 2 m/s, mean distance 0.3 m; or later, braking onto it, mean distance 0.35 m.
    through = path([1.5, 1.7, 1.9, 2.1, 2.3, 2.5], [2.0] * 6)
    stop = path([1.2, 1.4, 1.6, 1.8, 1.9, 2.0], [2.0, 2.0, 2.0, 2.0, 1.0, 1.0])
    distance_only = Car2D(dtype=torch.float64, terminal_weight=0.0, stop_weight=0.0)
    assert float(distance_only.path_reward(through).mean()) == pytest.approx(-0.3)
    assert float(distance_only.path_reward(stop).mean()) == pytest.approx(-0.35)  # the paper's goal term prefers passing
    car = Car2D(dtype=torch.float64)  # the defaults: the task the CLI and the benchmark plan
    assert (car.terminal_weight, car.stop_weight, car.stop_radius) == (25.0, 2.0, 1.0)
    # By hand: speed terms 2 * 2 * (0.5 + 0.7 + 0.9 + 0.9 + 0.7 + 0.5) and 2 * (2 * (0.2 + 0.4 + 0.6 + 0.8) + 0.9 + 1.0),
    # terminal terms 25 * 0.5 and 0.
    assert float(car.path_reward(through).mean()) == pytest.approx(-(1.8 + 16.8 + 12.5) / 6)
    assert float(car.path_reward(stop).mean()) == pytest.approx(-(2.1 + 11.8) / 6)
    assert bool(car.reached_goal(stop)) and not bool(car.reached_goal(through))
    assert bool(car.passed_goal(through)) and bool(car.passed_goal(stop))


def test_reached_goal_means_ending_in_the_goal_region():
    car = Car2D()  # goal (2, 0), goal_radius 0.3
    path = torch.tensor([[1.0, 0.0], [1.9, 0.0], [2.5, 0.0]])
    assert not bool(car.reached_goal(path)) and bool(car.passed_goal(path))  # went through, ended 0.5 m off
    assert bool(car.reached_goal(path[:2])) and bool(car.passed_goal(path[:2]))
    assert not bool(car.passed_goal(path[:1]))
    batch = torch.stack([path, path.flip(0)])
    assert car.reached_goal(batch).tolist() == [False, False] and car.passed_goal(batch).tolist() == [True, True]


# ----------------------------------------------------------------------------- obstacle
def test_the_obstacle_test_flags_a_path_through_the_u_and_passes_one_around_it():
    car = Car2D()
    start = car.initial_state[:2]
    through = torch.stack([torch.linspace(-1.9, 2.0, 50), torch.zeros(50)], dim=-1)  # straight at the goal
    corners = torch.tensor([[-2.0, -2.0], [2.0, -2.0], [2.0, 0.0]])
    around = torch.cat(
        [
            torch.linspace(0, 1, 20)[1:, None] * (b - a) + a
            for a, b in zip(torch.cat([start[None], corners[:-1]]), corners)
        ]
    )
    assert not bool(car.path_feasible(through)) and bool(car.path_feasible(around))
    assert bool(path_hits_boxes(start, through, car.obstacles)) and not bool(
        path_hits_boxes(start, around, car.obstacles)
    )
    # One long step straight through the 0.3 m wall is still caught (no tunnelling).
    assert bool(segments_hit_boxes(torch.tensor([0.2, 0.0]), torch.tensor([1.5, 0.0]), car.obstacles))
    # A rollout that drives full speed into the cup is infeasible; standing still is feasible.
    assert not bool(car.rollout(torch.tensor([[[1.0, 0.0]] * 50])).feasible)
    assert bool(car.rollout(torch.zeros(1, 50, 2)).feasible)


# ----------------------------------------------------------------------------- RRT
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_rrt_returns_a_collision_free_path_from_start_to_goal(seed):
    car = Car2D()
    path = rrt(car.initial_state[:2], car.goal, car.obstacles, car.workspace, seed=seed)
    assert torch.equal(path[0], car.initial_state[:2]) and torch.equal(path[-1], car.goal)
    assert not bool(segments_hit_boxes(path[:-1], path[1:], car.obstacles).any())
    assert float((path[1:] - path[:-1]).norm(dim=-1).max()) <= 0.2 + 1e-6  # the paper's max step
    demo = rrt_demo(car, seed=seed)
    assert demo.shape == (car.horizon, 5) and demo.dtype == car.dtype
    assert bool(car.path_feasible(demo)), "the demonstration's x, y path must miss the obstacle"
    # At its default 1.2 m/s the 5.7-6.7 m path takes longer than H = 50 steps (5 s): it stops short
    # of the goal; given time, it brakes onto the goal and waits there.
    speeds = demo[:, 3]
    assert float(speeds.max()) <= 1.2 + 1e-4 and float((demo[-1, :2] - car.goal).norm()) > 0.05
    long = rrt_demo(car, seed=seed, horizon=80)
    assert float((long[-1, :2] - car.goal).norm()) < 1e-5 and float(long[-1, 3]) < 1e-4


def test_rrt_fails_with_a_clear_error_when_the_goal_is_unreachable():
    walls = torch.tensor([[1.5, -0.6, 2.5, -0.5], [1.5, 0.5, 2.5, 0.6], [1.5, -0.6, 1.6, 0.6], [2.4, -0.6, 2.5, 0.6]])
    workspace = torch.tensor([[-3.0, -3.0], [3.0, 3.0]])
    begin = time.perf_counter()
    with pytest.raises(PlanningError, match="no path .* 1000 iterations"):
        rrt(torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 0.0]), walls, workspace, seed=0)
    assert time.perf_counter() - begin < 30.0
    with pytest.raises(ValueError, match="goal .* inside an obstacle"):
        rrt(torch.tensor([-2.0, 0.0]), torch.tensor([0.5, 0.0]), Car2D().obstacles, workspace)


def test_car_demonstration_options():
    car = Car2D()
    opts = car.demonstration("rrt", seed=0)
    assert set(opts) == {"demo", "demo_mask", "demo_reward", "demo_sigma"}
    assert opts["demo"].shape == (car.horizon, 5) and opts["demo_mask"].tolist() == xy_mask().tolist()
    assert opts["demo_reward"] == pytest.approx(float(car.path_reward(opts["demo"]).mean()))
    assert car.demonstration("rrt", seed=0, horizon=20)["demo"].shape == (20, 5)
    with pytest.raises(ValueError, match="source"):
        car.demonstration("mocap")


# ----------------------------------------------------------------------------- demonstration term (Fig. 6)
OPTIMUM, DEMO, LOCAL = -2.35, -2.0, 0.9


def fig6_loss(y: torch.Tensor) -> torch.Tensor:
    """A non-convex 1-D loss with the constraint ``||y| - 0.4| > 0.3`` (infinite loss where violated).

    Global minimum at -2.35 (narrow), a broad suboptimal basin around the demonstration -2.0,
    and a broad local minimum at +0.9 that plain MBD starting from 0 tends to fall into.
    """
    loss = (
        1.0
        - 0.85 * torch.exp(-(((y - DEMO) / 0.3) ** 2))
        - 0.9 * torch.exp(-(((y - OPTIMUM) / 0.1) ** 2))
        - 0.75 * torch.exp(-(((y - LOCAL) / 0.4) ** 2))
    )
    return torch.where(((y.abs() - 0.4).abs() <= 0.3), torch.full_like(loss, math.inf), loss)


def run_fig6(seed: int, demo: float | None) -> list[float]:
    x = torch.zeros(1)
    kwargs = (
        {}
        if demo is None
        else {"demo": torch.tensor([demo]), "demo_sigma": 0.3, "demo_reward": -float(fig6_loss(torch.tensor(demo)))}
    )
    opt = MBDOptimizer([x], num_samples=64, num_steps=100, temperature=0.1, seed=seed, **kwargs)
    estimates = []
    for _ in range(100):
        opt.step(lambda cands: fig6_loss(cands[0][:, 0]))
        estimates.append(float(x))
    return estimates


def test_demonstration_steers_to_the_optimum_not_to_the_demo():
    # The demonstration is suboptimal (worse than the optimum, better than the local minimum).
    assert (
        float(fig6_loss(torch.tensor(OPTIMUM)))
        < float(fig6_loss(torch.tensor(DEMO)))
        < float(fig6_loss(torch.tensor(LOCAL)))
    )
    free_local = 0
    for seed in range(4):
        with_demo = run_fig6(seed, DEMO)
        assert abs(with_demo[-1] - OPTIMUM) < 0.05, (seed, with_demo[-1])
        assert abs(with_demo[-1] - DEMO) > 0.25  # the model took over: not stuck on the demonstration
        assert with_demo[4] < -1.5  # the first steps were pulled to the demonstration's side
        free_local += abs(run_fig6(seed, None)[-1] - LOCAL) < 0.05
    assert free_local >= 2, "without the demonstration MBD should mostly fall into the local minimum"


# ----------------------------------------------------------------------------- plan and the CLI
def test_plan_on_the_car_is_quick_and_feasible():
    car = Car2D()
    begin = time.perf_counter()
    res = plan(car, num_samples=64, num_steps=20, seed=0, progress=False)
    assert time.perf_counter() - begin < 30.0
    assert res.actions.shape == (50, 2) and res.states.shape == (50, 5) and res.history.shape == (20, 50, 2)
    assert bool(res.feasible) and bool(car.path_feasible(res.states))
    standing = float(car.rollout(torch.zeros(1, 50, 2)).rewards.mean())
    assert res.reward > standing + 0.5
    assert bool(((res.actions >= -1) & (res.actions <= 1)).all())


@pytest.mark.slow
def test_plan_with_the_rrt_demo_follows_it_and_stays_feasible():
    car = Car2D()
    opts = car.demonstration("rrt", seed=0)
    res = plan(car, num_samples=256, num_steps=100, seed=0, progress=False, **opts)
    free = plan(car, num_samples=256, num_steps=100, seed=0, progress=False)
    assert res.history.shape == (100, 50, 2)

    def gap(actions):  # mean distance of the rollout's x, y to the demonstration
        return float((car.rollout(actions[None]).states[0, :, :2] - opts["demo"][:, :2]).norm(dim=-1).mean())

    assert gap(res.actions) < 0.6 * gap(free.actions)
    assert bool(res.feasible)  # infeasible samples never weigh in through the demonstration


@pytest.mark.slow
def test_the_readme_command_arrives_at_the_goal(tmp_path, monkeypatch, capsys):
    # `torch-mbd plan car2d --demo rrt --out car.png`, default seed: the plan ends in the goal region.
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "car2d", "--demo", "rrt", "--out", "car.png"]) == 0
    text = capsys.readouterr().out
    assert "goal reached: yes" in text and "feasible: yes" in text
    states = torch.as_tensor(np.load(tmp_path / "car.npz")["states"])
    car = Car2D()
    assert bool(car.reached_goal(states)) and bool(car.path_feasible(states))
    assert float(car.goal_distance(states)[-1]) < 0.1


def test_cli_writes_its_figure_and_arrays(tmp_path, capsys):
    out = tmp_path / "car.png"
    argv = [
        "plan",
        "car2d",
        "--demo",
        "rrt",
        "--samples",
        "32",
        "--steps",
        "4",
        "--seed",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for line in ("final reward:", "feasible:", "goal reached:", f"wrote: {out}", f"wrote: {out.with_suffix('.npz')}"):
        assert line in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    arrays = np.load(out.with_suffix(".npz"))
    assert arrays["actions"].shape == (50, 2) and arrays["states"].shape == (50, 5)
    assert arrays["history"].shape == (4, 50, 2) and arrays["demo"].shape == (50, 5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["plan", "car2d", "--samples", "0"], "--samples: expected an integer >= 1"),
        (["plan", "car2d", "--temperature", "-1"], "--temperature: expected a finite number > 0"),
        (["plan", "car2d", "--device", "tpu"], "invalid choice: 'tpu'"),
        (["plan", "car2d", "--bogus"], "unrecognized arguments: --bogus"),
        (["plan"], "the following arguments are required: TASK"),
    ],
)
def test_bad_flags_exit_non_zero_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["plan", "no_such_task"], "unknown task 'no_such_task'"),
        (["plan", "car2d", "--backend", "mujoco"], "car2d is analytic torch dynamics"),
        (["plan", "car2d", "--demo", "mocap", "--steps", "1"], "source must be 'rrt'"),
        (["plan", "car2d", "--out", "car.txt"], "expected the arrays (.npz), a figure"),
        (["plan", "car2d", "--out", "/no/such/folder/car.png"], "does not exist"),
    ],
)
def test_bad_values_exit_non_zero_with_a_message(argv, message, capsys):
    assert main(argv + ["--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("torch-mbd: error:") and message in err


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    plan_parser = build_parser()._subparsers._group_actions[0].choices["plan"]
    flags = [s for action in plan_parser._actions for s in action.option_strings]
    assert {"--demo", "--samples", "--steps", "--temperature", "--seed", "--device", "--out"} <= set(flags)
    for action in plan_parser._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, f"{action.option_strings or action.dest} has no help text"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "plan" in capsys.readouterr().out
