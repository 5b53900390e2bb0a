"""AsyncMPC and run_closed_loop: the planner thread, the shift by elapsed time, and sync equality."""

import threading
import time

import pytest
import torch

from torch_mbd import MPC
from torch_mbd.async_mpc import AsyncMPC, run_closed_loop
from torch_mbd.mpc import shift_actions
from torch_mbd.rollout import Trajectory


class Integrator:
    """``x_{t+1} = x_t + dt * u_t``, reward ``-(x - target)^2``: a deterministic planner model."""

    action_dim = 1
    state_dim = 1

    def __init__(self, horizon=8, target=1.0, delay=0.0):
        self.horizon, self.target, self.dt, self.delay = horizon, target, 0.5, delay
        self.device = torch.device("cpu")
        self.action_bounds = (-torch.ones(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64))
        self.initial_state = torch.zeros(1, dtype=torch.float64)
        self.threads = set()

    def rollout(self, actions):
        self.threads.add(threading.get_ident())
        if self.delay:
            time.sleep(self.delay)
        states = self.initial_state + self.dt * actions.cumsum(-2)
        return Trajectory(states=states, rewards=-(states[..., 0] - self.target) ** 2)


class IntegratorSystem:
    """The "real" integrator, with a drift the planner does not know about."""

    def __init__(self, drift=0.05):
        self.x, self.drift, self.dt = torch.zeros(1, dtype=torch.float64), drift, 0.5
        self.threads = set()

    def state(self):
        return self.x.clone()

    def step(self, action):
        self.threads.add(threading.get_ident())
        self.x = self.x + self.dt * action.to(torch.float64) + self.drift
        return float(-(self.x[0] - 1.0) ** 2)


def controller(model=None, **kwargs):
    options = dict(num_samples=16, initial_steps=5, diffusion_steps=2, warm_noise=0.3, seed=0)
    options.update(kwargs)
    return MPC(model or Integrator(), **options)


def plain_loop(ctrl, system, steps):
    """What a user writes: ``a = controller(state)``; returns the rewards and the actions."""
    rewards, actions = [], []
    for _ in range(steps):
        action = ctrl(system.state())
        actions.append(action)
        rewards.append(system.step(action))
    return torch.tensor(rewards, dtype=torch.float64), torch.stack(actions)


class Recording(IntegratorSystem):
    def __init__(self):
        super().__init__()
        self.actions = []

    def step(self, action):
        self.actions.append(action.clone())
        return super().step(action)


@pytest.mark.parametrize("knots", [None, 3])
def test_lockstep_gives_exactly_the_synchronous_result(knots):
    reference, ref_actions = plain_loop(controller(num_knots=knots), IntegratorSystem(), 12)
    for mode in ("sync", "lockstep"):
        system = Recording()
        result = run_closed_loop(controller(num_knots=knots), system, 12, 0.5, mode=mode, speed=None)
        assert torch.equal(result.rewards, reference), mode
        assert torch.equal(torch.stack(system.actions), ref_actions), mode
        assert result.plan_age == 0 and result.iterations == 11
        assert result.reward == pytest.approx(float(reference.mean()))


def test_lockstep_equals_sync_on_a_mujoco_task():
    pytest.importorskip("mujoco")
    from dynamics.closed_loop import MujocoSystem
    from dynamics.model import MujocoModel

    rewards = {}
    for mode in ("sync", "lockstep"):
        planner = MujocoModel("hopper", seed=3)
        ctrl = MPC(planner, horizon=4, num_samples=4, initial_steps=2, diffusion_steps=1, keep_best="sample", seed=3)
        system = MujocoSystem(planner)
        rewards[mode] = run_closed_loop(ctrl, system, 5, system.control_dt, mode=mode, speed=None).rewards
    assert torch.equal(rewards["sync"], rewards["lockstep"])


def test_the_planner_runs_in_its_own_thread_and_the_system_never_waits():
    model = Integrator(delay=0.03)  # one plan (2 diffusion steps) takes >= 60 ms: 3 control steps at 50 ms
    system = IntegratorSystem()
    result = run_closed_loop(controller(model), system, 12, 0.05, mode="async", speed=1.0)
    main = threading.get_ident()
    assert system.threads == {main} and len(model.threads - {main}) == 1  # the first plan here, then the planner thread
    assert result.wall_time >= 12 * 0.05 * 0.999  # paced to real time, never faster
    assert result.realtime_factor > 0.5  # the system does not wait for the slow planner
    assert 1 <= result.iterations < 12 and result.plan_age > 0.5


def test_a_fast_planner_refines_the_plan_between_control_steps():
    ctrl = controller(num_samples=4, diffusion_steps=1)
    refined = run_closed_loop(ctrl, IntegratorSystem(), 5, 0.1, mode="async", speed=1.0)
    assert refined.iterations_per_step > 1  # a plan takes ~1 ms, a control step 100 ms
    once = run_closed_loop(controller(num_samples=4, diffusion_steps=1), IntegratorSystem(), 5, 0.1, mode="async",
                           speed=1.0, refine=False)
    assert once.iterations <= 4  # one plan per new state


def test_actions_are_the_plan_shifted_by_the_elapsed_steps():
    ctrl = controller(shift="repeat")
    planner = AsyncMPC(ctrl, refine=False, predict=False)
    with planner.start(torch.zeros(1)):
        plan = ctrl.actions.clone()
        for k in range(ctrl.horizon):
            assert torch.equal(planner.action(k), plan[k]) and planner.last_age == k
        assert torch.equal(planner.action(ctrl.horizon + 3), plan[-1])  # past the horizon: held
        planner.observe(torch.full((1,), 0.2), 2)
        assert planner.wait_for_plan(2, timeout=10)
        assert planner.plan_step == 2 and torch.equal(planner.action(2), ctrl.actions[0])
        assert torch.equal(planner.action(1), plan[1])  # a late caller still gets the plan before
        planner.observe(torch.full((1,), 0.3), 5)
        assert planner.wait_for_plan(5, timeout=10)
        with pytest.raises(ValueError, match="before the state of the current plan"):
            planner.action(1)
        with pytest.raises(ValueError, match="back in time"):
            planner.observe(torch.zeros(1), 1)
    zero = AsyncMPC(controller(shift="zero"))
    with zero.start(torch.zeros(1)):
        assert torch.equal(zero.action(50), torch.zeros(1, dtype=torch.float64))


def test_plan_with_elapsed_steps_shifts_the_previous_plan_by_them():
    ctrl = controller(warm_noise=1e-9)  # a vanishing warm noise returns the shifted plan
    first = ctrl.plan(torch.zeros(1)).clone()
    assert torch.allclose(ctrl.plan(torch.zeros(1), elapsed=3), shift_actions(first, 3), atol=1e-6)
    again = ctrl.actions.clone()
    assert torch.allclose(ctrl.plan(torch.zeros(1), elapsed=0), again, atol=1e-6)
    with pytest.raises(ValueError, match="elapsed"):
        ctrl.plan(torch.zeros(1), elapsed=ctrl.horizon + 1)


def test_a_failing_planner_thread_is_reported_to_the_system():
    class Failing(Integrator):
        calls = 0

        def rollout(self, actions):
            self.calls += 1
            if self.calls > 3:
                raise FloatingPointError("the simulator diverged")
            return super().rollout(actions)

    with pytest.raises(RuntimeError, match="planner thread failed.*diverged"):
        run_closed_loop(controller(Failing(), initial_steps=2, diffusion_steps=1), IntegratorSystem(), 50, 0.01,
                        mode="async", speed=1.0)


def test_start_twice_and_action_before_start_are_refused():
    planner = AsyncMPC(controller())
    with pytest.raises(RuntimeError, match="no plan yet"):
        planner.action(0)
    with planner.start(torch.zeros(1)):
        with pytest.raises(RuntimeError, match="already running"):
            planner.start(torch.zeros(1))
    assert not planner.running


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(mode="fast"), ValueError, "mode"),
        (dict(mode="async", speed=None), ValueError, "speed"),
        (dict(speed=0.0), ValueError, "speed"),
        (dict(num_steps=0), ValueError, "num_steps"),
        (dict(control_dt=-1.0), ValueError, "control_dt"),
        (dict(system=object()), TypeError, "system"),
        (dict(controller=object()), TypeError, "controller"),
    ],
)
def test_run_closed_loop_refuses_bad_arguments(kwargs, error, match):
    args = dict(controller=controller(), system=IntegratorSystem(), num_steps=3, control_dt=0.1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        run_closed_loop(**args)


def test_async_mpc_refuses_bad_arguments():
    with pytest.raises(TypeError, match="controller"):
        AsyncMPC(Integrator())
    with pytest.raises(TypeError, match="refine"):
        AsyncMPC(controller(), refine=1)


def test_disturbances_come_between_steps_and_the_planner_sees_them():
    seen = []

    def disturb(t, system):
        seen.append(t)
        if t == 3:
            system.x = system.x + 1.0

    result = run_closed_loop(controller(), IntegratorSystem(drift=0.0), 6, 0.1, mode="lockstep", speed=None,
                             disturb=disturb, on_step=lambda t, s: seen.append(-t - 1))
    assert seen == [1, -1, 2, -2, 3, -3, 4, -4, 5, -5, -6]
    assert result.rewards.shape == (6,)



@pytest.mark.parametrize(
    "rate, predict, ages",
    [
        (1.0, False, [0, 1, 1, 1, 1, 1]),  # plan k runs over [k-1, k] from the state of step k-1
        (0.5, False, [0, 1, 2, 3, 2, 3]),  # plans end at 2, 4: from the states of steps 0 and 2
        (3.0, False, [0, 1, 1, 1, 1, 1]),  # three plans per step: the last one began at t - 1/3, from step t - 1
        (1.0, True, [0, 0, 0, 0, 0, 0]),  # predicted one step on: plan k is for step k
        (0.5, True, [0, 1, 1, 2, 1, 2]),  # plans for steps 1 and 3, ready at 2 and 4
    ],
)
def test_the_simulated_clock_gives_the_latency_of_a_planner_of_that_rate(rate, predict, ages):
    from torch_mbd.async_mpc import SimulatedPlanner

    seen = []
    original = SimulatedPlanner.action

    def action(self, step):
        out = original(self, step)
        seen.append(self.last_age)
        return out

    SimulatedPlanner.action = action
    try:
        result = run_closed_loop(controller(), IntegratorSystem(), 6, 0.1, mode="simulated", speed=None,
                                 plans_per_step=rate, predict=predict)
    finally:
        SimulatedPlanner.action = original
    assert seen == ages
    assert result.iterations == int(5 * rate + 1e-9)  # the plans that ended by the last step
    assert result.plan_age == pytest.approx(sum(ages) / 6)


def test_the_simulated_clock_is_deterministic_and_differs_from_zero_latency():
    runs = [run_closed_loop(controller(), IntegratorSystem(), 10, 0.1, mode="simulated", speed=None,
                            plans_per_step=1.5) for _ in range(2)]
    assert torch.equal(runs[0].rewards, runs[1].rewards)
    sync = run_closed_loop(controller(), IntegratorSystem(), 10, 0.1, mode="sync", speed=None)
    assert not torch.equal(runs[0].rewards, sync.rewards)  # the latency changes the actions
    with pytest.raises(ValueError, match="plans_per_step"):
        run_closed_loop(controller(), IntegratorSystem(), 3, 0.1, mode="simulated", speed=None)
    with pytest.raises(ValueError, match="plans_per_step"):
        run_closed_loop(controller(), IntegratorSystem(), 3, 0.1, mode="simulated", speed=None, plans_per_step=0)


def test_an_async_plan_is_never_from_the_state_of_its_own_step_unless_predicted():
    ctrl = controller(num_samples=4, diffusion_steps=1)  # plans in ~1 ms, a control step is 50 ms
    result = run_closed_loop(ctrl, IntegratorSystem(), 8, 0.05, mode="async", speed=1.0, predict=False)
    assert result.plan_age >= 7 / 8 - 1e-9  # age 0 at step 0 only: a state is measured when its step ends
    ctrl = controller(num_samples=4, diffusion_steps=1)
    result = run_closed_loop(ctrl, IntegratorSystem(), 8, 0.05, mode="async", speed=1.0)
    assert result.plan_age < 0.5  # planned from the predicted state of the next step, in time for it


def test_predict_rolls_the_planner_model_on_and_leaves_its_state():
    ctrl = controller()
    ctrl.plan(torch.zeros(1, dtype=torch.float64))
    before = ctrl.model.initial_state
    predicted = ctrl.predict(torch.full((1,), 0.2, dtype=torch.float64), torch.tensor([[0.5], [1.0]]))
    assert torch.allclose(predicted, torch.tensor([0.2 + 0.5 * 0.5 + 0.5 * 1.0], dtype=torch.float64))
    assert ctrl.model.initial_state is before
    with pytest.raises(ValueError, match=r"actions must have shape \[k, 1\]"):
        ctrl.predict(torch.zeros(1), torch.zeros(2))

    class NoStates(Integrator):
        def rollout(self, actions):
            return Trajectory(states=None, rewards=super().rollout(actions).rewards)

    assert controller(NoStates()).predict(torch.zeros(1), torch.zeros(1, 1)) is None


def test_a_late_first_action_survives_refined_predicted_plans():
    # The system asks for step 0's action only after the planner has published several refined plans
    # from the predicted state of step 1 (a busy machine): step 0 still gets the plan made from step 0.
    first = controller(num_samples=4, diffusion_steps=1).plan(torch.zeros(1))  # what start() plans first
    ctrl = controller(num_samples=4, diffusion_steps=1)
    planner = AsyncMPC(ctrl, refine=True, predict=True)
    with planner.start(torch.zeros(1)):  # (the planner thread may replace ctrl.actions at once)
        deadline = time.perf_counter() + 30
        while planner.iterations < 4 and time.perf_counter() < deadline:
            time.sleep(0.005)
        assert planner.iterations >= 4 and planner.plan_step == 1  # refined from step 1 at least 3 times
        assert torch.equal(planner.action(0), first[0]) and planner.last_age == 0
