"""Keep the best: every method tracks the best valid sample it evaluated.

``opt.best_reward [B]``, ``opt.best_candidate [B, D]`` and ``opt.best_params()``, kept by the shared
loop of :class:`~torch_mbd.sampling.SamplingOptimizer` and saved in ``state_dict()``.
"""

from __future__ import annotations

import io
import math
import os
import warnings

import pytest
import torch
from _methods import TABLE

from torch_mbd import MBDOptimizer, Trajectory
from torch_mbd.baselines import optimizer_class
from torch_mbd.denoise import best_sample

METHODS = [m.name for m in TABLE]  # every registered method (tests/_methods.py)


def make(method, params, **options):
    return optimizer_class(method)(params, **options)


def nan_sphere(candidates):
    """Two parameters; NaN losses where the first coordinate is above 0.4 (never a best)."""
    x, y = candidates
    loss = ((x - 0.3) ** 2).sum(-1) + (y**2).sum(-1)
    return torch.where(x[:, 0] > 0.4, torch.full_like(loss, math.nan), loss)


def lying_rollout(actions):
    """Rewards toward the target; samples that leave |x| < 0.6 are infeasible and get a huge reward."""
    states = torch.cumsum(actions * 0.5, dim=-2)
    rewards = -((states - torch.tensor([1.0, -0.5])) ** 2).sum(-1)
    feasible = states[..., 0].abs().amax(-1) < 0.6
    rewards = torch.where(feasible.unsqueeze(-1), rewards, torch.full_like(rewards, 1e6))
    return Trajectory(states=states, rewards=rewards, feasible=feasible)


def valid_max(rewards, feasible=None):
    ok = torch.isfinite(rewards) if feasible is None else torch.isfinite(rewards) & feasible
    return torch.where(ok, rewards, torch.full_like(rewards, -math.inf)).amax(-1)


@pytest.mark.parametrize("method", METHODS)
def test_closure_best_is_the_best_valid_sample_ever_evaluated(method):
    x, y = torch.zeros(3, dtype=torch.float64), torch.full((2,), 0.5, dtype=torch.float64)
    opt = make(method, [dict(params=[x]), dict(params=[y])], num_samples=16, num_steps=8, seed=0)
    assert opt.best_candidate is None and opt.best_reward.shape == (1,) and opt.best_reward.item() == -math.inf
    seen = torch.tensor([-math.inf], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(8):
            opt.step(nan_sphere)
            seen = torch.maximum(seen, valid_max(opt.last_step.rewards))
            assert torch.equal(opt.best_reward, seen)  # never worse than any valid sample, and one of them
    assert opt.best_reward.dtype == torch.float64 and opt.best_candidate.shape == (1, 5)
    bx, by = opt.best_params()
    assert bx.shape == x.shape and by.shape == y.shape
    # the kept candidate is the sample that scored it: evaluating it again gives the same loss
    loss = nan_sphere([bx[None], by[None]])
    assert torch.isfinite(loss).all() and float(-loss) == float(opt.best_reward)
    assert float(bx[0]) <= 0.4  # the NaN region never supplied the best
    # clones: editing them changes nothing kept
    bx.fill_(7.0)
    assert not bool((opt.best_params()[0] == 7.0).any())


@pytest.mark.parametrize("method", METHODS)
def test_rollout_infeasible_samples_never_become_best(method):
    actions = torch.zeros(2, 5, 2)  # two problems
    opt = make(method, [dict(params=[actions], noise_scale=4.0)], num_samples=12, num_steps=6, rollout=lying_rollout,
               seed=1, bounds=(-1.0, 1.0))
    seen = torch.full((2,), -math.inf)
    infeasible = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(6):
            opt.step()
            step = opt.last_step
            feasible = lying_rollout(step.samples.reshape(2, 12, 5, 2)).feasible
            infeasible += int((~feasible).sum())
            seen = torch.maximum(seen, valid_max(step.rewards, feasible))
            assert torch.equal(opt.best_reward, seen)
    assert infeasible > 0  # the test is only worth something if some samples were infeasible
    assert bool((opt.best_reward < 1e5).all())  # the huge infeasible rewards were never kept
    best = opt.best_params()[0]
    assert best.shape == actions.shape
    traj = lying_rollout(best.unsqueeze(-3))
    assert traj.feasible.all()
    assert torch.allclose(traj.rewards.mean(-1).squeeze(-1), opt.best_reward.to(traj.rewards.dtype))


def test_best_equals_a_hand_computation():
    x = torch.zeros(2, dtype=torch.float64)
    opt = MBDOptimizer([x], num_samples=4, num_steps=3, seed=0)
    losses = []

    def f(c):
        loss = ((c[0] - 0.5) ** 2).sum(-1)
        losses.append(loss.clone())
        return loss

    samples = []
    for _ in range(3):
        opt.step(f)
        samples.append(opt.last_step.samples[0].clone())
    all_losses, all_samples = torch.cat(losses), torch.cat(samples)  # [12], [12, 2]
    k = int(all_losses.argmin())
    assert float(opt.best_reward) == float(-all_losses[k])
    assert torch.equal(opt.best_candidate, all_samples[k : k + 1])


def test_best_sample_skips_nan_samples_and_infeasible_ones():
    samples = torch.tensor([[[0.0], [math.nan], [2.0], [3.0]]])
    rewards = torch.tensor([[1.0, 9.0, 5.0, 4.0]])
    feasible = torch.tensor([[True, True, False, True]])
    reward, sample = best_sample(samples, rewards, feasible)
    assert reward.tolist() == [4.0] and sample.tolist() == [[3.0]]
    reward, _ = best_sample(samples, torch.full((1, 4), math.nan))
    assert reward.tolist() == [-math.inf]
    # ties go to the first
    reward, sample = best_sample(torch.arange(3.0).reshape(1, 3, 1), torch.ones(1, 3))
    assert sample.tolist() == [[0.0]]


def test_nothing_valid_keeps_minus_inf_and_the_first_estimate():
    x = torch.full((2,), 0.25)
    opt = MBDOptimizer([x], num_samples=4, num_steps=3, seed=0)
    with pytest.raises(RuntimeError, match="no step"):
        opt.best_params()
    with pytest.warns(RuntimeWarning):
        opt.step(lambda c: torch.full((4,), math.nan))
    assert opt.best_reward.item() == -math.inf
    assert torch.equal(opt.best_params()[0], torch.full((2,), 0.25))
    opt.step(lambda c: (c[0] ** 2).sum(-1))
    assert math.isfinite(opt.best_reward.item())


def test_best_is_per_problem():
    actions = torch.zeros(3, 4, 2)
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]).unsqueeze(-2).unsqueeze(-2)  # [3, 1, 1, 2]

    def rollout(a):
        states = a.cumsum(-2) * 0.5
        return Trajectory(states=states, rewards=-((states - target) ** 2).sum(-1))

    opt = MBDOptimizer([actions], num_samples=10, num_steps=4, rollout=rollout, seed=2)
    best = torch.full((3,), -math.inf)
    for _ in range(4):
        opt.step()
        best = torch.maximum(best, opt.last_step.rewards.amax(-1))
    assert torch.equal(opt.best_reward, best)
    again = rollout(opt.best_params()[0].unsqueeze(-3)).rewards.mean(-1).squeeze(-1)
    assert torch.allclose(again, best)


@pytest.mark.parametrize("method", METHODS)
def test_state_dict_round_trips_the_best(method):
    def fresh():
        return make(method, [torch.zeros(3)], num_samples=8, num_steps=5, seed=0)

    opt = fresh()
    for _ in range(2):
        opt.step(lambda c: ((c[0] - 0.3) ** 2).sum(-1))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    other = fresh()
    other.load_state_dict(torch.load(buffer, weights_only=False))
    assert torch.equal(other.best_reward, opt.best_reward)
    assert torch.equal(other.best_candidate, opt.best_candidate)
    # the saved copy is a copy
    state = opt.state_dict()
    state["sampling"]["best_reward"].fill_(123.0)
    assert float(opt.best_reward) != 123.0


def test_a_state_dict_without_the_best_is_refused_by_name():
    opt = MBDOptimizer([torch.zeros(3)], num_samples=8, num_steps=5, seed=0)
    opt.step(lambda c: (c[0] ** 2).sum(-1))
    state = opt.state_dict()
    del state["sampling"]["best_reward"], state["sampling"]["best_candidate"]
    other = MBDOptimizer([torch.zeros(3)], num_samples=8, num_steps=5, seed=0)
    with pytest.raises(ValueError, match="lacks.*best_reward"):
        other.load_state_dict(state)
    assert other.best_candidate is None and other.best_reward.item() == -math.inf


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.update(best_reward=torch.zeros(2)), "best_reward"),
        (lambda m: m.update(best_reward=torch.tensor([math.nan])), "best_reward"),
        (lambda m: m.update(best_reward=torch.tensor([math.inf])), "best_reward"),
        (lambda m: m.update(best_reward=[0.0]), "best_reward"),
        (lambda m: m.update(best_candidate=torch.zeros(1, 4)), "best_candidate"),
        (lambda m: m.update(best_candidate=torch.zeros(1, 3, dtype=torch.int64)), "best_candidate"),
        (lambda m: m.update(best_candidate=None), "best_candidate is None"),
    ],
)
def test_a_bad_saved_best_is_refused_and_changes_nothing(edit, match):
    opt = MBDOptimizer([torch.zeros(3)], num_samples=8, num_steps=5, seed=0)
    opt.step(lambda c: (c[0] ** 2).sum(-1))
    state = opt.state_dict()
    edit(state["sampling"])
    before = (opt.best_reward.clone(), opt.best_candidate.clone(), opt.steps_done)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    assert torch.equal(opt.best_reward, before[0]) and torch.equal(opt.best_candidate, before[1])
    assert opt.steps_done == before[2]


def test_adding_a_param_group_forgets_the_best():
    opt = MBDOptimizer([torch.zeros(3)], num_samples=8, num_steps=5, seed=0)
    opt.step(lambda c: (c[0] ** 2).sum(-1))
    opt.add_param_group(dict(params=[torch.zeros(2)]))
    assert opt.best_candidate is None and opt.best_reward.item() == -math.inf
    opt.step(lambda c: (c[0] ** 2).sum(-1) + (c[1] ** 2).sum(-1))
    assert opt.best_candidate.shape == (1, 5)


def test_keeping_the_best_changes_no_estimate():
    # the same run with the tracking switched off gives the same estimates bit for bit
    def run(track):
        x = torch.zeros(4)
        opt = MBDOptimizer([x], num_samples=16, num_steps=5, seed=3)
        if not track:
            opt._track_best = lambda *args: None
        for _ in range(5):
            opt.step(lambda c: ((c[0] - 0.2) ** 2).sum(-1))
        return x

    assert torch.equal(run(True), run(False))


# --------------------------------------------------------------------------- under a process group
def _worker(rank, world, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{os.path.join(out, 'store')}", rank=rank, world_size=world)
    try:
        opt = MBDOptimizer([torch.zeros(4)], num_samples=9, num_steps=4, seed=5, process_group=dist.group.WORLD)
        for _ in range(4):
            opt.step(lambda c: ((c[0] - 0.4) ** 2).sum(-1))
        torch.save((opt.best_reward, opt.best_candidate), os.path.join(out, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    os._exit(0)  # as tests/test_distributed.py: skip the C++ teardown that now and then aborts


@pytest.mark.slow
def test_every_rank_keeps_the_single_process_best(tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    opt = MBDOptimizer([torch.zeros(4)], num_samples=9, num_steps=4, seed=5)
    for _ in range(4):
        opt.step(lambda c: ((c[0] - 0.4) ** 2).sum(-1))
    for rank in range(2):
        reward, candidate = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.equal(reward, opt.best_reward) and torch.equal(candidate, opt.best_candidate)
