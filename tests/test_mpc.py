"""Receding-horizon MPC: the shift, the warm start, and closing the loop on the car."""

import math

import numpy as np
import pytest
import torch

from torch_mbd import MPC
from torch_mbd.knots import fit_knots, interpolate, knot_times, shift_knots
from torch_mbd.mpc import horizon_noise_scale, shift_actions, warm_start_sigmas
from torch_mbd.rollout import Trajectory
from torch_mbd.schedule import linear_schedule


class Integrator:
    """Toy model: ``x_{t+1} = x_t + dt * u_t``, reward ``-(x - target)^2``; records what it rolls out."""

    action_dim = 1
    state_dim = 1

    def __init__(self, horizon=10, target=1.0, bound=1.0, dtype=torch.float64):
        self.horizon, self.target, self.dt = horizon, target, 0.5
        self.device = torch.device("cpu")
        self.action_bounds = (-bound * torch.ones(1, dtype=dtype), bound * torch.ones(1, dtype=dtype))
        self.initial_state = torch.zeros(1, dtype=dtype)
        self.seen = []

    def rollout(self, actions):
        self.seen.append(actions.clone())
        states = self.initial_state + self.dt * actions.cumsum(-2)
        return Trajectory(states=states, rewards=-(states[..., 0] - self.target) ** 2)


def test_shift_actions_repeat_and_zero():
    actions = torch.arange(12.0).reshape(2, 3, 2)  # two problems, H=3, nu=2
    repeat = shift_actions(actions)
    assert torch.equal(repeat[:, :2], actions[:, 1:])
    assert torch.equal(repeat[:, 2], actions[:, 2])
    zero = shift_actions(actions, fill="zero")
    assert torch.equal(zero[:, :2], actions[:, 1:])
    assert torch.equal(zero[:, 2], torch.zeros(2, 2))
    two = shift_actions(actions, steps=2)
    assert torch.equal(two, actions[:, 2:3].expand(2, 3, 2))
    assert torch.equal(shift_actions(actions, steps=0), actions)
    assert torch.equal(shift_actions(actions, steps=3, fill="zero"), torch.zeros_like(actions))
    out = shift_actions(actions)
    out += 1  # a new tensor: the input is untouched
    assert torch.equal(actions, torch.arange(12.0).reshape(2, 3, 2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(actions=torch.zeros(3)), "actions"),
        (dict(actions=torch.zeros(3, 1), steps=4), "steps"),
        (dict(actions=torch.zeros(3, 1), steps=-1), "steps"),
        (dict(actions=torch.zeros(3, 1), fill="last"), "fill"),
    ],
)
def test_shift_actions_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        shift_actions(**kwargs)


def test_warm_start_sigmas_start_at_warm_noise_in_schedule_proportions():
    sigmas = warm_start_sigmas(5, 0.3)
    assert sigmas.shape == (5,)
    assert math.isclose(float(sigmas[0]), 0.3, rel_tol=1e-12)
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    reference = linear_schedule(5).sigmas.flip(0)
    torch.testing.assert_close(sigmas / sigmas[-1], reference / reference[-1])
    assert torch.equal(warm_start_sigmas(1, 0.25), torch.tensor([0.25], dtype=torch.float64))
    with pytest.raises(ValueError, match="warm_noise"):
        warm_start_sigmas(5, 0.0)


@pytest.mark.parametrize("fill", ["repeat", "zero"])
def test_warm_start_is_the_shifted_previous_plan(fill):
    # with a vanishing warm-start noise the short diffusion cannot move: the new plan is the shift
    model = Integrator(horizon=8)
    controller = MPC(model, num_samples=32, initial_steps=10, diffusion_steps=2, warm_noise=1e-9, shift=fill, seed=0)
    first = controller.plan(torch.zeros(1, dtype=torch.float64)).clone()
    assert not controller.last_step.warm and controller.last_step.diffusion_steps == 10
    assert first.abs().max() > 0.05  # the cold start did plan something
    action = controller.act(torch.tensor([0.3], dtype=torch.float64))
    assert controller.last_step.warm and controller.last_step.diffusion_steps == 2
    torch.testing.assert_close(controller.actions, shift_actions(first, 1, fill), atol=1e-7, rtol=0)
    torch.testing.assert_close(action, first[1], atol=1e-7, rtol=0)
    assert torch.equal(model.initial_state, torch.tensor([0.3], dtype=torch.float64))


def test_warm_start_samples_around_the_shift_at_warm_noise():
    model = Integrator(horizon=10, bound=100.0)  # bounds far away: no clipping
    controller = MPC(model, num_samples=4000, initial_steps=3, diffusion_steps=3, warm_noise=0.25, seed=1)
    first = controller.plan(torch.zeros(1, dtype=torch.float64)).clone()
    model.seen.clear()
    controller.plan(torch.zeros(1, dtype=torch.float64))
    assert len(model.seen) == 3  # one rollout per diffusion step
    expected = warm_start_sigmas(3, 0.25)
    first_samples = model.seen[0][:, :, 0]  # [n, H]
    deviation = first_samples - shift_actions(first)[:, 0]
    assert deviation.mean().abs() < 0.01  # centred on the shifted plan
    assert math.isclose(float(deviation.std()), 0.25, rel_tol=0.03)
    last_spread = float(model.seen[-1][:, :, 0].std(0).mean())
    assert math.isclose(last_spread, float(expected[-1]), rel_tol=0.05)


def test_same_seed_same_controls_and_different_seed_different():
    def run(seed):
        model = Integrator()
        controller = MPC(model, num_samples=16, initial_steps=5, diffusion_steps=2, seed=seed)
        state, actions = torch.zeros(1, dtype=torch.float64), []
        for _ in range(4):
            action = controller(state)
            state = state + model.dt * action
            actions.append(action)
        return torch.stack(actions)

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_closed_loop_rejects_a_push_that_the_open_loop_plan_cannot_see():
    model = Integrator(horizon=10, target=1.0)
    controller = MPC(model, num_samples=64, initial_steps=20, diffusion_steps=3, warm_noise=0.3, seed=0)
    open_loop = controller.plan(torch.zeros(1, dtype=torch.float64)).clone()
    controller.reset()

    def episode(policy):
        x = torch.zeros(1, dtype=torch.float64)
        for t in range(16):
            if t == 6:
                x = x - 1.5  # a push
            x = x + model.dt * policy(t, x)
        return float(x)

    replay = episode(lambda t, x: open_loop[min(t, 9)] if t < 10 else torch.zeros(1, dtype=torch.float64))
    closed = episode(lambda t, x: controller(x))
    assert abs(replay - 1.0) > 1.0  # the replayed plan ends where the push left it
    assert abs(closed - 1.0) < 0.15


def test_reset_cold_starts_from_init():
    model = Integrator(horizon=4)
    controller = MPC(model, num_samples=8, initial_steps=2, diffusion_steps=1, seed=0)
    controller(torch.zeros(1, dtype=torch.float64))
    init = torch.full((4, 1), 0.5, dtype=torch.float64)
    controller.reset(init)
    assert controller.actions is None
    model.seen.clear()
    controller.plan(torch.zeros(1, dtype=torch.float64))
    assert not controller.last_step.warm and len(model.seen) == 2
    assert abs(float(model.seen[0].mean()) - 0.5) < 0.2  # sampled around init, not zeros
    with pytest.raises(ValueError, match="init"):
        controller.reset(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="init"):
        controller.reset(warm=True)


def test_reset_warm_refines_an_offline_plan_without_shifting_it():
    model = Integrator(horizon=4)
    controller = MPC(model, num_samples=8, initial_steps=5, diffusion_steps=2, warm_noise=1e-9, seed=0)
    offline = torch.tensor([[0.1], [0.2], [0.3], [0.4]], dtype=torch.float64)
    controller.reset(offline, warm=True)
    action = controller(torch.zeros(1, dtype=torch.float64))
    assert controller.last_step.warm and len(model.seen) == 2
    torch.testing.assert_close(controller.actions, offline, atol=1e-7, rtol=0)  # not shifted
    torch.testing.assert_close(action, offline[0], atol=1e-7, rtol=0)
    controller(torch.zeros(1, dtype=torch.float64))  # and the next call shifts as usual
    torch.testing.assert_close(controller.actions, shift_actions(offline), atol=1e-7, rtol=0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(horizon=0), ValueError, "horizon"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(temperature=-1.0), ValueError, "temperature"),
        (dict(diffusion_steps=0), ValueError, "diffusion_steps"),
        (dict(initial_steps=1.5), ValueError, "initial_steps"),
        (dict(warm_noise=0), ValueError, "warm_noise"),
        (dict(shift="last"), ValueError, "shift"),
        (dict(beta0=2.0), ValueError, "beta0"),
        (dict(generator=3), TypeError, "generator"),
        (dict(bounds=(-1, 1)), TypeError, "bounds"),
        (dict(num_knots=0), ValueError, "num_knots"),
        (dict(num_knots=11), ValueError, "num_knots"),  # > H = 10
        (dict(num_knots=2.0), ValueError, "num_knots"),
        (dict(num_knots=3, interpolation="spline"), ValueError, "interpolation"),
        (dict(horizon_noise=-0.5), ValueError, "horizon_noise"),
        (dict(horizon_noise=float("nan")), ValueError, "horizon_noise"),
        (dict(noise_scale=2.0), TypeError, "noise_scale"),
        (dict(temperature="Auto"), ValueError, "temperature"),
        (dict(keep_best=1), TypeError, "keep_best"),
        (dict(keep_best="best"), TypeError, "keep_best"),
    ],
)
def test_mpc_rejects_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        MPC(Integrator(), **kwargs)


def test_mpc_rejects_bad_model_and_state():
    class NoState:
        action_dim, action_bounds, horizon = 1, (torch.zeros(1), torch.ones(1)), 3

        def rollout(self, actions):
            raise AssertionError

    with pytest.raises(TypeError, match="initial_state"):
        MPC(NoState())
    controller = MPC(Integrator(), num_samples=4, initial_steps=1, seed=0)
    with pytest.raises(ValueError, match="state"):
        controller(torch.tensor([float("nan")]))
    with pytest.raises(TypeError, match="state"):
        controller("origin")


# --------------------------------------------------------------------------- the car, closed loop
def make_car(horizon):
    from dynamics.car import Car2D

    # explicit arguments: a box above the straight line from start to goal
    return Car2D(
        horizon=horizon, dt=0.1, wheelbase=0.3, max_accel=2.0, max_steer_rate=2.0, max_speed=3.0, max_steer=0.6,
        start=(-2.0, 0.0, 0.0, 0.0, 0.0), goal=(1.5, 0.0), goal_radius=0.3, control_weight=0.01,
        clearance=0.15, clearance_weight=1.0, obstacles=[[-0.5, 0.35, 0.5, 1.5]], terminal_weight=0.0, stop_weight=0.0,
    )


def drive(car, policy, steps, push_at=None, push=None):
    """Run ``policy(t, state)`` on the car; returns (collided, closest distance to the goal)."""
    from dynamics.car import segments_hit_boxes

    state, collided, closest = car.initial_state.clone(), False, math.inf
    for t in range(steps):
        if t == push_at:
            state = state + push
        nxt = car.step(state, policy(t, state))
        collided |= bool(segments_hit_boxes(state[:2], nxt[:2], car.obstacles))
        state = nxt
        closest = min(closest, float((state[:2] - car.goal).norm()))
    return collided, closest


@pytest.mark.slow
def test_car_closed_loop_recovers_from_a_push_where_the_open_loop_plan_collides():
    torch.manual_seed(0)
    from torch_mbd import plan

    steps = 40
    real = make_car(steps)
    push = torch.tensor([0.0, 0.0, 0.8, 0.0, 0.0])  # knocked 46 degrees to the left, towards the box
    open_loop = plan(make_car(steps), num_samples=32, num_steps=20, seed=0, progress=False, preset="paper").actions

    collided, closest = drive(real, lambda t, s: open_loop[t], steps)
    assert not collided and closest < real.goal_radius  # unperturbed, the plan works
    collided, closest = drive(real, lambda t, s: open_loop[t], steps, push_at=8, push=push)
    assert collided or closest > real.goal_radius  # pushed, it cannot know

    controller = MPC(make_car(20), num_samples=32, initial_steps=20, diffusion_steps=2, warm_noise=0.3, seed=0)
    collided, closest = drive(real, lambda t, s: controller(s), steps, push_at=8, push=push)
    assert not collided and closest < real.goal_radius


# --------------------------------------------------------------------------- a MuJoCo model
def test_mpc_plans_a_mujoco_model_from_the_measured_state():
    pytest.importorskip("mujoco")
    from dynamics.model import MujocoModel

    model = MujocoModel("hopper", backend="mujoco", horizon=3)
    controller = MPC(model, num_samples=4, initial_steps=2, diffusion_steps=1, warm_noise=0.1, seed=0)
    state = torch.cat([model.qpos0, model.qvel0])  # [nq + nv], as a simulator reports it
    state[model.nq] = 0.5  # moving forward
    action = controller(state)
    assert action.shape == (model.action_dim,) and bool(action.abs().le(1.0).all())
    assert torch.equal(model.qvel0, state[model.nq :])  # the rollouts start where the system is
    assert not controller.last_step.warm
    controller(state.numpy())  # a NumPy state works too
    assert controller.last_step.warm and controller.last_step.diffusion_steps == 1
    qpos, qvel = model.qpos0, model.qvel0
    with pytest.raises(ValueError, match="initial_state must have shape"):
        controller(state[:-1])  # the model's setter refuses it, and nothing changed
    assert model.qpos0 is qpos and model.qvel0 is qvel


# --------------------------------------------------------------------------- robustness (issue 15)
def _snapshot(controller, model):
    return model.initial_state.clone(), controller.generator.get_state(), controller.actions


@pytest.mark.parametrize(
    "state, error, match",
    [
        (torch.zeros(2, dtype=torch.float64), ValueError, r"shape.*\(1,\)"),
        (torch.zeros(1, 1, dtype=torch.float64), ValueError, "shape"),
        (torch.tensor(0.5), ValueError, "shape"),
        (torch.tensor([True]), TypeError, "state"),
        (torch.tensor([1 + 1j]), TypeError, "state"),
        (np.array(["a"]), TypeError, "state"),
        (["a"], TypeError, "state"),
        (torch.zeros(1, device="meta"), ValueError, "state"),
        (torch.tensor([float("inf")]), ValueError, "finite"),
    ],
)
def test_a_bad_state_changes_nothing(state, error, match):
    model = Integrator(horizon=4)
    controller = MPC(model, num_samples=8, initial_steps=2, diffusion_steps=1, seed=0)
    controller(torch.tensor([0.2], dtype=torch.float64))
    before, rng, actions = _snapshot(controller, model)
    with pytest.raises(error, match=match):
        controller(state)
    assert torch.equal(model.initial_state, before)
    assert torch.equal(controller.generator.get_state(), rng) and controller.actions is actions


def test_a_failing_rollout_restores_the_model_state_and_the_generator():
    model = Integrator(horizon=4)
    controller = MPC(model, num_samples=8, initial_steps=2, diffusion_steps=2, seed=0)
    controller(torch.tensor([0.2], dtype=torch.float64))
    before, rng, actions = _snapshot(controller, model)
    rollout = model.rollout
    model.rollout = lambda a: (_ for _ in ()).throw(RuntimeError("simulator died"))
    with pytest.raises(RuntimeError, match="simulator died"):
        controller(torch.tensor([0.7], dtype=torch.float64))
    assert torch.equal(model.initial_state, before) and controller.actions is actions
    assert torch.equal(controller.generator.get_state(), rng)
    # and the controller continues as if the failed call had not happened
    model.rollout = rollout
    twin_model = Integrator(horizon=4)
    twin = MPC(twin_model, num_samples=8, initial_steps=2, diffusion_steps=2, seed=0)
    twin(torch.tensor([0.2], dtype=torch.float64))
    state = torch.tensor([0.7], dtype=torch.float64)
    assert torch.equal(controller(state), twin(state))


class PropertyState(Integrator):
    """initial_state is a property whose setter takes [1] or [2] (position, velocity), like MujocoModel."""

    def __init__(self):
        self._state = torch.zeros(1, dtype=torch.float64)
        super().__init__(horizon=4)

    @property
    def initial_state(self):
        return self._state

    @initial_state.setter
    def initial_state(self, state):
        if state.shape not in ((1,), (2,)):
            raise ValueError(f"initial_state must have shape [1] or [2], got {tuple(state.shape)}")
        self._state = state[:1].clone()


def test_a_model_setter_decides_the_accepted_shapes():
    model = PropertyState()
    controller = MPC(model, num_samples=8, initial_steps=2, diffusion_steps=1, seed=0)
    controller(torch.tensor([0.3, 9.0], dtype=torch.float64))  # [2]: the setter takes it
    assert torch.equal(model.initial_state, torch.tensor([0.3], dtype=torch.float64))
    rng = controller.generator.get_state()
    with pytest.raises(ValueError, match="shape"):
        controller(torch.zeros(3, dtype=torch.float64))
    assert torch.equal(model.initial_state, torch.tensor([0.3], dtype=torch.float64))
    assert torch.equal(controller.generator.get_state(), rng)
    # a rollout that fails after the setter ran: the very tensor the setter replaced comes back
    before = model.initial_state
    model.rollout = lambda a: (_ for _ in ()).throw(RuntimeError("simulator died"))
    with pytest.raises(RuntimeError, match="simulator died"):
        controller(torch.tensor([0.9, 0.0], dtype=torch.float64))
    assert model.initial_state is before and torch.equal(controller.generator.get_state(), rng)


def test_numpy_numbers_equal_python_numbers():
    def run(**kw):
        model = Integrator(horizon=6)
        controller = MPC(model, **kw)
        return torch.stack([controller(torch.tensor([x], dtype=torch.float64)) for x in (0.0, 0.1, 0.3)])

    python = run(horizon=6, num_samples=8, temperature=0.2, diffusion_steps=2, warm_noise=0.3, initial_steps=3,
                 beta0=2e-4, beta1=2e-2, seed=5)
    numpy = run(horizon=np.int64(6), num_samples=np.int32(8), temperature=np.float64(0.2), diffusion_steps=np.int64(2),
                warm_noise=np.float64(0.3), initial_steps=np.int16(3), beta0=np.float64(2e-4), beta1=np.float64(2e-2),
                seed=np.uint32(5))
    assert torch.equal(numpy, python)
    float32 = run(num_samples=8, temperature=np.float32(0.1), warm_noise=np.float32(0.2), initial_steps=2, seed=0)
    assert float32.shape == (3, 1)
    assert torch.equal(warm_start_sigmas(np.int64(4), np.float64(0.3)), warm_start_sigmas(4, 0.3))
    actions = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(shift_actions(actions, np.int64(1)), shift_actions(actions, 1))


def test_reset_takes_a_numpy_plan_and_refuses_bad_ones():
    model = Integrator(horizon=4)
    controller = MPC(model, num_samples=8, initial_steps=5, diffusion_steps=2, warm_noise=1e-9, seed=0)
    offline = np.array([[0.1], [0.2], [0.3], [0.4]])
    controller.reset(offline, warm=True)
    controller(torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(controller.actions, torch.from_numpy(offline), atol=1e-7, rtol=0)
    with pytest.raises(TypeError, match="init"):
        controller.reset([[0.1], [0.2], [0.3], [0.4]])
    with pytest.raises(ValueError, match="init.*finite"):
        controller.reset(np.full((4, 1), np.nan))


@pytest.mark.parametrize("seed", [1.5, "abc", 2**70, -1, True])
def test_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        MPC(Integrator(), seed=seed)


# ---------------------------------------------------------------- knots and annealing along the horizon
# Recorded with the code before knots and horizon annealing (issue 14): Integrator(horizon=8),
# MPC(num_samples=16, diffusion_steps=3, initial_steps=10, warm_noise=0.3, seed=3), 5 control steps.
BEFORE_ISSUE_14 = [
    0.9999887589992433, 0.6111526559310811, 0.6699889527264029, -0.022367529321690536, 0.04421242466721989,
]


def _episode(steps=5, **kwargs):
    model = Integrator(horizon=8)
    controller = MPC(model, num_samples=16, diffusion_steps=3, initial_steps=10, warm_noise=0.3, seed=3, **kwargs)
    state, actions, plans = torch.zeros(1, dtype=torch.float64), [], []
    for _ in range(steps):
        action = controller(state)
        actions.append(action)
        plans.append(controller.actions.clone())
        state = state + model.dt * action
    return torch.stack(actions), torch.stack(plans), controller


def test_no_knots_and_no_annealing_is_the_controller_of_before():
    actions, plans, _ = _episode(num_knots=None, horizon_noise=0.0)
    torch.testing.assert_close(actions[:, 0], torch.tensor(BEFORE_ISSUE_14, dtype=torch.float64), rtol=0, atol=1e-12)
    default_actions, default_plans, controller = _episode()
    assert torch.equal(default_actions, actions) and torch.equal(default_plans, plans)
    assert controller.knots is None and controller.last_step.knots is None


def test_as_many_knots_as_steps_is_the_per_step_controller_bit_for_bit():
    per_step = _episode()
    for interpolation in ("zero", "linear", "cubic"):
        knots = _episode(num_knots=8, interpolation=interpolation)
        assert torch.equal(knots[0], per_step[0]) and torch.equal(knots[1], per_step[1])
        assert torch.equal(knots[2].knots, knots[2].actions)


@pytest.mark.parametrize("interpolation", ["zero", "linear", "cubic"])
def test_a_knots_controller_acts_with_the_first_interpolated_control(interpolation):
    actions, plans, controller = _episode(num_knots=3, interpolation=interpolation)
    assert controller.knots.shape == (3, 1) and controller.actions.shape == (8, 1)
    assert controller.last_step.knots.shape == (3, 1) and "num_knots=3" in repr(controller)
    controls = interpolate(controller.knots, 8, interpolation).clamp(-1.0, 1.0)
    # interpolated here by another product than the controller's: equal up to float64 rounding
    torch.testing.assert_close(controller.actions, controls, rtol=0, atol=1e-12)
    torch.testing.assert_close(actions[-1], controls[0], rtol=0, atol=1e-12)
    assert torch.equal(controller.last_step.action, controller.actions[0])  # the very control it acts with
    assert not torch.equal(actions, _episode()[0])  # three knots are another plan than eight actions


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_a_knots_warm_start_is_the_shifted_knots(interpolation):
    # knots at 0, 3, 6, 9 of H = 10; a vanishing warm noise leaves the shifted knots as they are
    model = Integrator(horizon=10)
    controller = MPC(model, num_samples=32, initial_steps=10, diffusion_steps=2, warm_noise=1e-9, seed=0,
                     num_knots=4, interpolation=interpolation)
    controller.plan(torch.zeros(1, dtype=torch.float64))
    first = controller.knots.clone()
    model.seen.clear()
    action = controller.act(torch.tensor([0.3], dtype=torch.float64))
    assert model.seen[0].shape == (32, 10, 1)  # the model sees H controls
    torch.testing.assert_close(controller.knots, shift_knots(first, 10, 1, interpolation), atol=1e-7, rtol=0)
    # the knots sit on control steps: there the new controls are the old ones shifted by one step
    at = knot_times(4, 10).long()
    expected = shift_actions(interpolate(first, 10, interpolation))
    torch.testing.assert_close(interpolate(controller.knots, 10, interpolation)[at], expected[at], atol=1e-7, rtol=0)
    torch.testing.assert_close(action, controller.actions[0], atol=0, rtol=0)


def test_a_knots_controller_fits_its_init_to_knots():
    model = Integrator(horizon=10)
    controller = MPC(model, num_samples=8, initial_steps=2, diffusion_steps=2, warm_noise=1e-9, seed=0, num_knots=4)
    offline = interpolate(torch.tensor([[0.1], [0.4], [-0.2], [0.3]], dtype=torch.float64), 10)
    controller.reset(offline, warm=True)
    controller.plan(torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(controller.knots, fit_knots(offline, 4), atol=1e-7, rtol=0)
    torch.testing.assert_close(controller.actions, offline, atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="init"):
        controller.reset(torch.zeros(4, 1, dtype=torch.float64))  # init is controls [H, nu], not knots


def test_horizon_noise_scale_formula():
    scale = horizon_noise_scale(5, 2.0)
    assert scale.shape == (5, 1) and scale.dtype == torch.float64
    expected = [math.exp(2.0 * (t / 4 - 1)) for t in range(5)]
    torch.testing.assert_close(scale[:, 0], torch.tensor(expected, dtype=torch.float64), rtol=1e-15, atol=0)
    assert scale[-1, 0] == 1.0 and math.isclose(float(scale[0, 0]), math.exp(-2.0), rel_tol=1e-15)
    knots = horizon_noise_scale(10, 1.5, num_knots=4)  # at knot times 0, 3, 6, 9
    torch.testing.assert_close(knots[:, 0], torch.exp(1.5 * (torch.tensor([0.0, 3, 6, 9]) / 9 - 1)).double())
    assert torch.equal(horizon_noise_scale(6, 0.0), torch.ones(6, 1, dtype=torch.float64))
    assert torch.equal(horizon_noise_scale(1, 3.0), torch.ones(1, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="horizon_noise"):
        horizon_noise_scale(5, -1.0)


def test_horizon_noise_is_the_warm_noise_scale_along_the_horizon():
    controller = MPC(Integrator(horizon=10), warm_noise=0.2, horizon_noise=1.0, num_knots=4, seed=0)
    torch.testing.assert_close(controller.warm_scale, controller.warm_noise_scale * horizon_noise_scale(10, 1.0, 4))
    assert "horizon_noise=1.0" in repr(controller)
    assert MPC(Integrator(), seed=0).warm_scale == MPC(Integrator(), seed=0).warm_noise_scale  # off: the scalar


def test_annealed_warm_starts_sample_later_controls_noisier():
    model = Integrator(horizon=10, bound=100.0)  # bounds far away: no clipping
    controller = MPC(model, num_samples=4000, initial_steps=3, diffusion_steps=3, warm_noise=0.25, seed=1,
                     horizon_noise=1.0)
    first = controller.plan(torch.zeros(1, dtype=torch.float64)).clone()
    model.seen.clear()
    controller.plan(torch.zeros(1, dtype=torch.float64))
    deviation = model.seen[0][:, :, 0] - shift_actions(first)[:, 0]  # [n, H], the first warm step
    spread = deviation.std(0)
    expected = 0.25 * horizon_noise_scale(10, 1.0)[:, 0]
    torch.testing.assert_close(spread, expected, rtol=0.06, atol=0)
    assert spread[-1] > 2 * spread[0]


def _plan_reward(model, actions):
    return float(model.rollout(actions.unsqueeze(0)).rewards.mean())


@pytest.mark.parametrize("temperature", [0.1, "auto"])
def test_keep_best_plans_the_better_of_the_estimate_and_the_best_sample(temperature):
    model = Integrator()
    replaced = 0
    for seed in range(6):  # one cold start of two steps: the weighted mean may lose to a sample
        options = dict(horizon=10, num_samples=8, initial_steps=2, temperature=temperature, seed=seed)
        estimate = _plan_reward(model, MPC(model, **options).plan(torch.zeros(1, dtype=torch.float64)))
        plan = MPC(model, keep_best=True, **options).plan(torch.zeros(1, dtype=torch.float64))
        steps = torch.cat(model.seen[-3:-1], dim=0)  # the two diffusion steps' samples; [-1]: the estimate's rollout
        best = float(model.rollout(steps).rewards.mean(-1).max())
        assert _plan_reward(model, plan) == pytest.approx(max(estimate, best), abs=1e-12)
        replaced += best > estimate
    assert replaced > 0  # the case where keep_best changes the plan was exercised


def test_keep_best_sample_plans_the_best_sample_without_an_extra_rollout():
    model = Integrator()
    for seed in range(3):
        controller = MPC(model, horizon=10, num_samples=8, initial_steps=2, seed=seed, keep_best="sample")
        before = len(model.seen)
        plan = controller.plan(torch.zeros(1, dtype=torch.float64))
        assert len(model.seen) == before + 2  # the two diffusion steps' rollouts, nothing more
        steps = torch.cat(model.seen[-2:], dim=0)
        rewards = model.rollout(steps).rewards.mean(-1)
        assert torch.equal(plan, steps[int(rewards.argmax())])


def test_the_step_record_prints_one_short_line_not_the_plan():
    model = Integrator(horizon=64)
    controller = MPC(model, num_samples=8, diffusion_steps=1, initial_steps=2, seed=0, num_knots=4)
    controller(torch.zeros(1, dtype=torch.float64))
    step = controller.last_step
    text = repr(step)
    assert "\n" not in text and len(text) < 200, text
    assert text.startswith("MPCStep(action=[") and "actions=[64, 1]" in text and "knots=[4, 1]" in text
    assert f"{float(step.action[0]):.4g}" in text and "warm=False" in text and "diffusion_steps=2" in text
    assert "knots" not in repr(step._replace(knots=None))

def test_numpy_and_tensor_booleans_are_booleans():
    def first_action(flag, warm):
        controller = MPC(Integrator(), num_samples=16, seed=0, keep_best=flag)
        controller.reset(torch.zeros(10, 1, dtype=torch.float64), warm=warm)
        return controller.act(torch.zeros(1, dtype=torch.float64))

    expected = first_action(True, True)
    assert torch.equal(first_action(np.True_, np.True_), expected)
    assert torch.equal(first_action(torch.tensor(True), np.bool_(True)), expected)
    with pytest.raises(ValueError, match="warm"):
        MPC(Integrator()).reset(torch.zeros(10, 1), warm="yes")


# --------------------------------------------------------------------------- rollback through any model
class Delegating:
    """A user's wrapper whose ``initial_state`` is a property delegating to the model it wraps."""

    def __init__(self, model):
        self.inner = model
        self.action_dim, self.action_bounds, self.horizon = model.action_dim, model.action_bounds, model.horizon
        self.state_dim, self.device = model.state_dim, model.device

    @property
    def initial_state(self):
        return self.inner.initial_state

    @initial_state.setter
    def initial_state(self, state):
        self.inner.initial_state = state

    def rollout(self, actions):
        return self.inner.rollout(actions)


def _failing(model, monkeypatch):
    """Make ``model.rollout`` raise after the state was assigned (mid-plan)."""

    def rollout(actions):
        raise FloatingPointError("the simulator diverged")

    monkeypatch.setattr(model, "rollout", rollout)


@pytest.mark.parametrize("wrap", ["knots", "delegating", "delegating(knots)"])
def test_a_failed_call_restores_the_state_of_a_wrapped_model(wrap, monkeypatch):
    from torch_mbd.knots import KnotRollout

    inner = Integrator(horizon=6)
    model = {"knots": lambda m: KnotRollout(m, 3), "delegating": Delegating,
             "delegating(knots)": lambda m: Delegating(KnotRollout(m, 3))}[wrap](inner)
    horizon = 3 if "knots" in wrap else None  # a KnotRollout's decision variables are its 3 knots
    controller = MPC(model, horizon=horizon, num_samples=8, initial_steps=2, diffusion_steps=1, seed=0)
    controller(torch.zeros(1, dtype=torch.float64))
    before, rng = inner.initial_state, controller.generator.get_state()
    _failing(inner, monkeypatch)
    with pytest.raises(FloatingPointError):
        controller(torch.full((1,), 0.7, dtype=torch.float64))
    assert torch.equal(inner.initial_state, before) and torch.equal(controller.generator.get_state(), rng)
    if wrap == "knots":  # KnotRollout restores through its own snapshot methods: the very tensor
        assert inner.initial_state is before


def test_a_failed_call_restores_a_mujoco_model_inside_knot_rollout_exactly(monkeypatch):
    pytest.importorskip("mujoco")
    from dynamics.model import MujocoModel
    from torch_mbd.knots import KnotRollout

    inner = MujocoModel("hopper", horizon=4)
    controller = MPC(KnotRollout(inner, 2), horizon=2, num_samples=4, initial_steps=1, diffusion_steps=1, seed=0)
    qpos, qvel, state = inner.qpos0, inner.qvel0, inner.initial_state
    _failing(inner, monkeypatch)
    moved = torch.cat([qpos, qvel]) + 0.1
    with pytest.raises(FloatingPointError):
        controller(moved)
    # the float64 qpos0 and qvel0 themselves, not a round trip through the float32 initial_state
    assert inner.qpos0 is qpos and inner.qvel0 is qvel and inner.initial_state is state


def test_snapshot_initial_state_uses_a_models_own_methods():
    from torch_mbd.rollout import snapshot_initial_state

    class Custom:
        def __init__(self):
            self.where, self.calls = "start", []

        @property
        def initial_state(self):
            return torch.zeros(1)

        @initial_state.setter
        def initial_state(self, state):
            self.where = "moved"

        def initial_state_snapshot(self):
            self.calls.append("snapshot")
            return self.where

        def restore_initial_state(self, snapshot):
            self.calls.append(("restore", snapshot))
            self.where = snapshot

    model = Custom()
    restore = snapshot_initial_state(model)
    model.initial_state = torch.ones(1)
    restore()
    assert model.where == "start" and model.calls == ["snapshot", ("restore", "start")]
    plain = Integrator()
    first = plain.initial_state
    restore = snapshot_initial_state(plain)
    plain.initial_state = torch.ones(1, dtype=torch.float64)
    restore()
    assert plain.initial_state is first  # a plain attribute gets its very object back


# --------------------------------------------------------------------------- one optimizer per kind of start (issue 27)
def _fresh_each_call(controller):
    """The controller of before issue 27: a new MBDOptimizer at every call (the reuse cache emptied)."""
    plan = controller.plan

    def planned(state, elapsed=1):
        controller._optimizers.clear()
        return plan(state, elapsed)

    controller.plan = planned
    return controller


def _calls(controller, model, steps=6):
    """Plans, sample rewards and generator states of a short closed loop with a reset and odd elapsed steps."""
    state, out = torch.zeros(1, dtype=torch.float64), []
    for t in range(steps):
        if t == 3:
            controller.reset()  # a second cold start
        plan = controller.plan(state, elapsed=(0, 1, 2)[t % 3])
        out.append((plan.clone(), controller.last_step.sample_reward, controller.generator.get_state()))
        state = state + model.dt * plan[0]
    return out


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(keep_best=True, temperature="auto"),
        dict(keep_best="sample", num_knots=3, horizon_noise=1.0),
        # demo_reward: set by the first step of every call
        dict(demo=torch.full((8, 1), 0.5, dtype=torch.float64), demo_sigma=0.3),
    ],
    ids=["plain", "keep-best-auto", "sample-knots-annealed", "demo"],
)
def test_reusing_the_optimizers_gives_the_plans_of_a_new_optimizer_per_call_bit_for_bit(options):
    runs = []
    for fresh in (False, True):
        model = Integrator(horizon=8)
        controller = MPC(model, num_samples=16, diffusion_steps=2, initial_steps=4, warm_noise=0.3, seed=5, **options)
        runs.append(_calls(_fresh_each_call(controller) if fresh else controller, model))
    for (plan, reward, rng), (plan_, reward_, rng_) in zip(*runs):
        assert torch.equal(plan, plan_) and reward == reward_ and torch.equal(rng, rng_)


def test_the_optimizers_are_built_once_per_kind_of_start_and_rebuilt_when_an_option_changes():
    model = Integrator(horizon=8)
    controller = MPC(model, num_samples=16, diffusion_steps=1, initial_steps=3, seed=0)
    state = torch.zeros(1, dtype=torch.float64)
    controller.plan(state)
    controller.plan(state)
    cold, warm = controller._optimizers[False][1], controller._optimizers[True][1]
    plans = [controller.plan(state) for _ in range(3)]
    assert controller._optimizers[True][1] is warm and controller._optimizers[False][1] is cold
    assert all(p is not q for p, q in zip(plans, plans[1:]))  # each call returns a plan of its own
    assert not any(p is warm._params[0] for p in plans)  # never the optimizer's (reused) tensor
    controller.num_samples = 5  # an attribute set between calls takes effect, as with a new optimizer
    seen = len(model.seen)
    controller.plan(state)
    assert controller._optimizers[True][1] is not warm and model.seen[seen].shape[0] == 5


def test_a_reused_optimizer_warns_of_a_constant_objective_at_every_call_as_a_new_one_did():
    import warnings

    from torch_mbd.sampling import ConstantObjectiveWarning

    class Flat(Integrator):
        def rollout(self, actions):
            return Trajectory(states=actions, rewards=torch.zeros(actions.shape[:-1], dtype=actions.dtype))

    controller = MPC(Flat(horizon=4), num_samples=4, diffusion_steps=1, initial_steps=1, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            controller.plan(torch.zeros(1, dtype=torch.float64))
    assert sum(issubclass(w.category, ConstantObjectiveWarning) for w in caught) == 3


def test_reusing_the_optimizers_on_hopper_gives_the_same_plans_bit_for_bit():
    pytest.importorskip("mujoco")
    from dynamics.model import MujocoModel

    runs = []
    for fresh in (False, True):
        model = MujocoModel("hopper", horizon=5, seed=1)
        controller = MPC(model, num_samples=6, diffusion_steps=2, initial_steps=3, keep_best=True, seed=2)
        if fresh:
            _fresh_each_call(controller)
        state, plans = torch.cat([model.qpos0, model.qvel0]), []
        for t in range(4):
            plans.append(controller.plan(state + 0.01 * t).clone())
        runs.append(plans)
    assert all(torch.equal(a, b) for a, b in zip(*runs))
