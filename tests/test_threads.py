"""torch's intra-op threads while planning (torch_mbd.threads): the policy, its overrides, and
that the same seed gives the same plan with 1 and with 2 threads (the car and a MuJoCo task)."""

from __future__ import annotations

import pytest
import torch

from dynamics.car import Car2D
from torch_mbd import MPC, minimize, plan
from torch_mbd.threads import DEFAULT_THREADS, ENV_VAR, resolve_threads, use_threads


@pytest.fixture(autouse=True)
def _restore_torch_threads(monkeypatch):
    """Every test starts without ``TORCH_MBD_THREADS`` and leaves torch's setting as it found it."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


class ThreadSpy:
    """A car whose rollout records torch's intra-op thread count at every call."""

    def __init__(self, car: Car2D):
        self.car = car
        self.seen: list[int] = []

    def __getattr__(self, name):
        return getattr(self.car, name)

    @property
    def initial_state(self):
        return self.car.initial_state

    @initial_state.setter
    def initial_state(self, value):
        self.car.initial_state = value

    def rollout(self, actions):
        self.seen.append(torch.get_num_threads())
        return self.car.rollout(actions)


def small_plan(model, **kwargs):
    return plan(model, num_samples=32, num_steps=3, seed=0, progress=False, **kwargs)


# ---------------------------------------------------------------- the context manager
@pytest.mark.parametrize("outside, inside", [(2, 1), (1, 2), (3, 2)])
def test_use_threads_sets_then_restores(outside, inside):
    torch.set_num_threads(outside)
    with use_threads(inside) as n:
        assert n == inside == torch.get_num_threads()
    assert torch.get_num_threads() == outside


def test_use_threads_restores_after_an_exception():
    torch.set_num_threads(2)
    with pytest.raises(KeyError, match="inside"):
        with use_threads(1):
            assert torch.get_num_threads() == 1
            raise KeyError("inside")
    assert torch.get_num_threads() == 2


def test_use_threads_default_is_one_and_torch_keeps_the_setting():
    torch.set_num_threads(2)
    with use_threads() as n:
        assert n == DEFAULT_THREADS == torch.get_num_threads() == 1
    with use_threads("torch") as n:
        assert n == torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2


def test_environment_variable_sets_the_default(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv(ENV_VAR, "2")
    assert resolve_threads(None) == 2
    with use_threads() as n:
        assert n == torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1
    assert resolve_threads(3) == 3  # the argument wins over the variable
    monkeypatch.setenv(ENV_VAR, "torch")
    assert resolve_threads(None) is None
    monkeypatch.setenv(ENV_VAR, " ")
    assert resolve_threads(None) == DEFAULT_THREADS


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_bad_environment_variable_names_it(monkeypatch, bad):
    monkeypatch.setenv(ENV_VAR, bad)
    with pytest.raises(ValueError, match=f"Invalid environment variable {ENV_VAR}"):
        resolve_threads(None)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "two", "Torch"])
def test_bad_torch_threads_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="Invalid torch_threads"):
        resolve_threads(bad)
    spy = ThreadSpy(Car2D())
    with pytest.raises(ValueError, match="Invalid torch_threads"):
        small_plan(spy, torch_threads=bad)
    assert spy.seen == []  # rejected before any rollout
    with pytest.raises(ValueError, match="Invalid torch_threads"):
        minimize(lambda x: (x**2).sum(-1), torch.ones(3), num_steps=2, progress=False, torch_threads=bad)
    with pytest.raises(ValueError, match="Invalid torch_threads"):
        MPC(spy, num_samples=8, initial_steps=2, torch_threads=bad)


# ---------------------------------------------------------------- plan, minimize, MPC apply it
@pytest.mark.parametrize("torch_threads, expected", [(None, 1), (2, 2), ("torch", 3)])
def test_plan_rolls_out_with_the_chosen_threads_and_restores(torch_threads, expected):
    torch.set_num_threads(3)
    spy = ThreadSpy(Car2D())
    small_plan(spy, torch_threads=torch_threads)
    assert spy.seen and set(spy.seen) == {expected}
    assert torch.get_num_threads() == 3


def test_plan_restores_threads_when_the_rollout_raises():
    torch.set_num_threads(2)

    class Failing(ThreadSpy):
        def rollout(self, actions):
            super().rollout(actions)
            raise RuntimeError("simulator failed")

    spy = Failing(Car2D())
    with pytest.raises(RuntimeError, match="simulator failed"):
        small_plan(spy)
    assert spy.seen == [1]
    assert torch.get_num_threads() == 2


def test_minimize_and_mpc_use_one_thread_by_default():
    torch.set_num_threads(2)
    seen = []

    def f(x):
        seen.append(torch.get_num_threads())
        return (x**2).sum(-1)

    minimize(f, torch.ones(3), num_samples=8, num_steps=3, seed=0, progress=False)
    assert set(seen) == {1} and len(seen) == 4  # 3 steps and the final estimate
    assert torch.get_num_threads() == 2
    spy = ThreadSpy(Car2D())
    controller = MPC(spy, num_samples=8, initial_steps=2, diffusion_steps=2, seed=0)
    controller.act(spy.initial_state)
    controller.act(spy.initial_state)
    assert set(spy.seen) == {1} and len(spy.seen) == 4
    assert torch.get_num_threads() == 2
    spy.seen.clear()
    MPC(spy, num_samples=8, initial_steps=2, seed=0, torch_threads="torch").act(spy.initial_state)
    assert set(spy.seen) == {2}


# ---------------------------------------------------------------- same seed, same plan
def _same(a, b):
    assert torch.equal(a.actions, b.actions)
    assert torch.equal(a.rewards, b.rewards)
    assert torch.equal(a.history, b.history)
    assert a.reward == b.reward


def test_car_plan_is_the_same_with_one_and_two_threads():
    runs = []
    for outside in (1, 2):  # what the process was set to: the default pins 1 while planning
        torch.set_num_threads(outside)
        runs.append(plan(Car2D(), num_samples=128, num_steps=8, seed=3, progress=False))
    for torch_threads in (1, 2):  # planning itself with 1 and with 2 threads
        runs.append(plan(Car2D(), num_samples=128, num_steps=8, seed=3, progress=False, torch_threads=torch_threads))
    for other in runs[1:]:
        _same(runs[0], other)


class ReductionCar(Car2D):
    """A car whose reward adds a full-tensor sum per sample (a Python loop over samples, as a
    hand-written model might have): torch splits a sum of 100000 elements over its threads, so
    with 2 threads it adds in another order than with 1 (the test checks that it does)."""

    def rollout(self, actions):
        traj = super().rollout(actions)
        freqs = torch.linspace(0.5, 3.0, 1000, dtype=actions.dtype)
        flat = actions.reshape(-1, actions.shape[-2] * actions.shape[-1])
        extra = torch.stack([torch.sin(row[:, None] * freqs).sum() for row in flat]).reshape(actions.shape[:-2])
        return traj._replace(rewards=traj.rewards + 1e-3 * extra[..., None])


def test_thread_sensitive_model_plans_the_same_whatever_torch_was_set_to():
    probe = torch.rand(50 * 2, generator=torch.Generator().manual_seed(0))[:, None] * torch.linspace(0.5, 3.0, 1000)
    sums = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        sums.append(torch.sin(probe).sum())
    if torch.equal(sums[0], sums[1]):
        pytest.skip("this torch build sums 100000 elements in the same order with 1 and 2 threads")
    runs = []
    for outside in (1, 2):
        torch.set_num_threads(outside)
        runs.append(plan(ReductionCar(), num_samples=16, num_steps=4, seed=1, progress=False))
    _same(runs[0], runs[1])


def test_mujoco_plan_is_the_same_with_one_and_two_threads():
    pytest.importorskip("mujoco")
    import dynamics

    runs = {}
    for nthread in (1, 2):  # MuJoCo's rollout pool: each rollout runs on one thread start to end
        model = dynamics.make("hopper", horizon=6, nthread=nthread)
        for torch_threads in (1, 2):
            runs[nthread, torch_threads] = plan(
                model, num_samples=16, num_steps=3, seed=2, progress=False, torch_threads=torch_threads
            )
    first = runs[1, 1]
    assert torch.isfinite(first.actions).all() and first.actions.abs().sum() > 0
    for key, other in runs.items():
        _same(first, other)
        assert torch.equal(first.states, other.states), key
