"""``ask()`` / ``tell()`` on every method: the same run as ``step(closure)``, bit for bit (issue 23).

``step()`` is ``ask()``, the closure (or rollout), then ``tell()`` inside: the tests here hold the
two ways of driving an optimizer to the same parameters, best sample and state, and check the
errors of a misordered or mis-shaped ``ask`` / ``tell``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _methods import method_params

from torch_mbd import MBDOptimizer, SamplingOptimizer, Trajectory

MBD = next(p.values[0] for p in method_params() if p.values[0].name == "mbd")

TARGET_A = torch.tensor([0.5, -0.3, 0.2])
TARGET_B = torch.tensor([[0.1, -0.2], [0.3, 0.0]])


def loss(candidates):
    """Two parameters, ``a [n, 3]`` and ``b [n, 2, 2]``; one candidate in eight is invalid (NaN)."""
    a, b = candidates
    value = ((a - TARGET_A) ** 2).sum(-1) + ((b - TARGET_B) ** 2).sum((-2, -1))
    return torch.where(a[:, 0] > 0.9, torch.full_like(value, math.nan), value)


def rollout(actions):
    """``x_{t+1} = x_t + u_t / 2``, reward toward (1, -0.5); leaving ``|x| < 0.9`` is infeasible."""
    states = torch.cumsum(actions * 0.5, dim=-2)
    rewards = -((states - torch.tensor([1.0, -0.5])) ** 2).sum(-1)
    return Trajectory(states=states, rewards=rewards, feasible=states[..., 0].abs().amax(-1) < 0.9)


def closure_optimizer(m, **options):
    a, b = torch.zeros(3), torch.full((2, 2), 0.2)
    options = dict(num_samples=16, num_steps=5, seed=3, bounds=(-1.0, 1.0), **options)
    return m.cls([a, b], **options), [a, b]


def rollout_optimizer(m, **options):
    actions = torch.zeros(2, 4, 2)  # two problems, H = 4, nu = 2
    options = dict(num_samples=12, num_steps=5, seed=5, bounds=(-1.0, 1.0), rollout=rollout, **options)
    return m.cls([actions], **options), actions


def assert_same_state(x: SamplingOptimizer, y: SamplingOptimizer) -> None:
    """The two optimizers are in the same state: every entry of their state_dicts, and the last step."""
    sx, sy = x.state_dict()["sampling"], y.state_dict()["sampling"]
    assert sx.keys() == sy.keys()
    for key in sx:
        assert_same(sx[key], sy[key], key)
    for field in x.last_step._fields:
        if field != "trajectory":
            assert_same(getattr(x.last_step, field), getattr(y.last_step, field), f"last_step.{field}")


def assert_same(a, b, what: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))), what
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for u, v in zip(a, b):
            assert_same(u, v, what)
    elif isinstance(a, dict):  # a method's state (adaptive MBD's adaptation)
        assert a.keys() == b.keys(), what
        for key in a:
            assert_same(a[key], b[key], f"{what}[{key!r}]")
    elif type(a).__name__ == "CMAEvolutionStrategy":  # pycma: its mean, step size and covariance
        assert np.array_equal(a.mean, b.mean) and a.sigma == b.sigma and np.array_equal(a.C, b.C), what
        assert a.countiter == b.countiter and a.countevals == b.countevals, what
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), what


# --------------------------------------------------------------------------- the same run, bit for bit
@pytest.mark.parametrize("m", method_params())
def test_ask_tell_is_step_bit_for_bit_in_closure_mode(m):
    stepped, (a1, b1) = closure_optimizer(m)
    told, (a2, b2) = closure_optimizer(m)
    for _ in range(4):
        by_step = stepped.step(loss)
        candidates = told.ask()
        by_tell = told.tell(loss(candidates))
        assert torch.equal(by_step, by_tell)
        assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert torch.equal(stepped.best_reward, told.best_reward)
    assert told.steps_done == stepped.steps_done == 4
    assert_same_state(stepped, told)
    assert (a1 != 0).any()  # the run moved


@pytest.mark.parametrize("m", method_params())
def test_ask_tell_is_step_bit_for_bit_in_rollout_mode(m):
    stepped, x1 = rollout_optimizer(m)
    told, x2 = rollout_optimizer(m)
    for _ in range(3):
        by_step = stepped.step()
        actions = told.ask()
        by_tell = told.tell(rollout(actions))
        assert torch.equal(by_step, by_tell) and torch.equal(x1, x2)
    assert torch.equal(stepped.best_reward, told.best_reward) and torch.isfinite(told.best_reward).all()
    assert_same_state(stepped, told)


def test_a_demonstration_and_a_tuple_rollout_output_through_tell():
    # MBD's demonstration log-likelihood is computed in tell(); a (rewards, states, feasible) tuple is accepted
    demo = torch.cumsum(torch.full((4, 2), 0.25), dim=0)
    x1, x2 = torch.zeros(4, 2), torch.zeros(4, 2)
    options = dict(num_samples=12, num_steps=4, seed=1, bounds=(-1.0, 1.0), rollout=rollout, demo=demo)
    stepped, told = MBDOptimizer([x1], **options), MBDOptimizer([x2], **options)
    for _ in range(4):
        stepped.step()
        traj = rollout(told.ask())
        told.tell((traj.rewards, traj.states, traj.feasible))
    assert torch.equal(x1, x2) and told.last_step.demo_wins is not None
    assert torch.equal(stepped.last_step.demo_wins, told.last_step.demo_wins)


# --------------------------------------------------------------------------- what ask() hands out
def test_ask_returns_what_the_closure_would_get():
    seen = []
    stepped, _ = closure_optimizer(MBD)
    stepped.step(lambda c: seen.append([t.clone() for t in c]) or loss(c))
    told, _ = closure_optimizer(MBD)
    candidates = told.ask()
    assert [tuple(t.shape) for t in candidates] == [(16, 3), (16, 2, 2)]
    assert all(torch.equal(u, v) for u, v in zip(candidates, seen[0]))
    # views of the sample buffer: unchanged by tell(), overwritten by the next ask()
    kept = [t.clone() for t in candidates]
    told.tell(loss(candidates))
    assert told.last_step.samples.untyped_storage().data_ptr() == candidates[0].untyped_storage().data_ptr()
    assert all(torch.equal(u, v) for u, v in zip(candidates, kept))
    told.ask()
    assert not torch.equal(candidates[0], kept[0])


def test_ask_returns_the_rollouts_actions():
    opt, _ = rollout_optimizer(MBD)
    actions = opt.ask()
    assert actions.shape == (2, 12, 4, 2)
    assert bool((actions.abs() <= 1.0).all())  # within the bounds, as the rollout would get them
    assert bool((actions != 0).any())


# --------------------------------------------------------------------------- errors
def make_mbd(**options):
    x = torch.zeros(3)
    return MBDOptimizer([x], num_samples=8, num_steps=4, seed=0, **options), x


def test_tell_without_ask_and_ask_twice_are_errors():
    opt, _ = make_mbd()
    with pytest.raises(RuntimeError, match=r"tell\(\) without ask\(\)"):
        opt.tell(torch.zeros(8))
    opt.ask()
    with pytest.raises(RuntimeError, match=r"ask\(\): the candidates of the last ask\(\) were not told"):
        opt.ask()
    with pytest.raises(RuntimeError, match=r"step\(\): the candidates of the last ask\(\) were not told"):
        opt.step(lambda c: c[0].sum(-1))
    opt.tell(torch.arange(8.0))
    with pytest.raises(RuntimeError, match=r"tell\(\) without ask\(\)"):
        opt.tell(torch.zeros(8))  # a tell consumes its ask


@pytest.mark.parametrize(
    "losses, error, match",
    [
        (torch.zeros(7), ValueError, r"tell\(\) losses must be one loss per candidate, shape \(8,\), got \(7,\)"),
        (torch.zeros(8, 1), ValueError, r"shape \(8,\)"),
        ([0.0] * 8, TypeError, r"tell\(\) losses must be a tensor of 8 losses, got list"),
        (torch.zeros(8, dtype=torch.bool), TypeError, "real numbers"),
        (torch.zeros(8, device="meta"), ValueError, "meta"),
    ],
)
def test_bad_losses_are_refused_and_the_ask_still_waits(losses, error, match):
    opt, x = make_mbd()
    twin, y = make_mbd()
    candidates = opt.ask()
    with pytest.raises(error, match=match):
        opt.tell(losses)
    assert opt.steps_done == 0 and torch.equal(x, torch.zeros(3))  # nothing changed
    opt.tell(candidates[0].square().sum(-1))  # the corrected tell is the step
    twin.step(lambda c: c[0].square().sum(-1))
    assert torch.equal(x, y)


def test_bad_rollout_output_through_tell():
    opt, _ = rollout_optimizer(MBD)
    actions = opt.ask()
    with pytest.raises(ValueError, match="rollout rewards must have shape"):
        opt.tell(Trajectory(states=None, rewards=torch.zeros(2, 11, 4)))
    with pytest.raises(TypeError, match="Trajectory"):
        opt.tell(torch.zeros(2, 12))
    opt.tell(rollout(actions))
    assert opt.steps_done == 1


def test_a_closure_that_raises_in_step_leaves_no_pending_ask():
    opt, x = make_mbd()

    def broken(c):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        opt.step(broken)
    opt.step(lambda c: c[0].square().sum(-1))  # not "ask() twice"
    assert opt.steps_done == 1


def test_bad_losses_in_step_raise_and_leave_no_pending_ask():
    opt, _ = make_mbd()
    with pytest.raises(ValueError, match=r"closure must return one loss per candidate"):
        opt.step(lambda c: torch.zeros(3))
    opt.step(lambda c: c[0].square().sum(-1))
    assert opt.steps_done == 1


def test_state_changes_between_ask_and_tell():
    opt, _ = make_mbd()
    saved = opt.state_dict()
    opt.ask()
    with pytest.raises(RuntimeError, match=r"state_dict\(\) between ask\(\) and tell\(\)"):
        opt.state_dict()
    with pytest.raises(RuntimeError, match=r"add_param_group\(\) between ask\(\) and tell\(\)"):
        opt.add_param_group({"params": [torch.zeros(2)]})
    assert len(opt.param_groups) == 1
    opt.load_state_dict(saved)  # discards the pending ask: back to before it
    with pytest.raises(RuntimeError, match=r"tell\(\) without ask\(\)"):
        opt.tell(torch.zeros(8))
    twin, y = make_mbd()
    for o in (opt, twin):
        o.tell(o.ask()[0].square().sum(-1))
    assert torch.equal(opt.param_groups[0]["params"][0], y)


def test_stop_reason_is_none_by_default():
    opt, _ = make_mbd()
    assert opt.stop_reason() is None
    opt.step(lambda c: c[0].square().sum(-1))
    assert opt.stop_reason() is None
