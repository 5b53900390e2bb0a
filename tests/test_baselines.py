"""CEM, MPPI and CMA-ES (pycma): their updates and behaviour (generic loop tests: test_sampling.py)."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from _methods import TABLE

from torch_mbd import MBDOptimizer, Trajectory, minimize, plan
from torch_mbd.sampling import first_sigma
from torch_mbd.baselines import (
    CEMOptimizer,
    CMAESOptimizer,
    MPPIOptimizer,
    cem_update,
    elite_log_weights,
    mppi_update,
    optimizer_class,
)

BASELINES = [CEMOptimizer, MPPIOptimizer, CMAESOptimizer]
METHODS = [m.name for m in TABLE]  # every registered method (tests/_methods.py)


def shifted_sphere(x: torch.Tensor) -> torch.Tensor:
    """``[n, D] -> [n]``, minimum 0 at ``x = 0.3``."""
    return ((x - 0.3) ** 2).sum(-1)


class DoubleIntegrator:
    """A tiny analytic RolloutModel: 1-D point mass, action = acceleration in [-1, 1].

    State ``[position, velocity]`` from ``[0, 0]``; reward ``-(position - 1)^2 - 0.1 velocity^2``
    per step, so a good plan pushes the mass to 1 and brakes.
    """

    action_dim, state_dim, horizon = 1, 2, 15
    dt = 0.2

    def __init__(self):
        self.action_bounds = (torch.tensor([-1.0]), torch.tensor([1.0]))
        self.initial_state = torch.zeros(2)
        self.device = torch.device("cpu")
        self.calls = 0
        self.evaluated = 0

    def rollout(self, actions: torch.Tensor) -> Trajectory:
        self.calls += 1
        self.evaluated += math.prod(actions.shape[:-2])
        acc = actions[..., 0]  # [..., n, H]
        vel = torch.cumsum(acc * self.dt, dim=-1)
        pos = torch.cumsum(vel * self.dt, dim=-1)
        states = torch.stack([pos, vel], dim=-1)
        rewards = -((pos - 1.0) ** 2) - 0.1 * vel**2
        return Trajectory(states=states, rewards=rewards, feasible=None)


# --------------------------------------------------------------------------- pure updates
def test_cem_update_is_the_elite_mean_and_std():
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(2, 10, 3, generator=g, dtype=torch.float64)
    rewards = torch.randn(2, 10, generator=g, dtype=torch.float64)
    mean, std, weights, valid = cem_update(samples, rewards, 4)
    for b in range(2):
        elite = samples[b, rewards[b].argsort(descending=True)[:4]]
        torch.testing.assert_close(mean[b], elite.mean(0))
        torch.testing.assert_close(std[b], elite.std(0, unbiased=False))
    assert valid.all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, dtype=torch.float64))
    assert int((weights > 0).sum()) == 8


def test_elites_skip_invalid_samples():
    rewards = torch.tensor([[5.0, float("nan"), 1.0, 2.0, float("inf")]])
    feasible = torch.tensor([[False, True, True, True, True]])
    logp = elite_log_weights(rewards, 2, feasible)
    # 5.0 is infeasible, NaN and inf are not finite: the elites are 2.0 and 1.0.
    assert torch.isfinite(logp).tolist() == [[False, False, True, True, False]]


def test_mppi_update_is_the_softmax_weighted_mean():
    g = torch.Generator().manual_seed(1)
    samples = torch.randn(1, 8, 4, generator=g, dtype=torch.float64)
    rewards = torch.randn(1, 8, generator=g, dtype=torch.float64)
    mean, weights, valid = mppi_update(samples, rewards, 0.5)
    z = (rewards - rewards.mean()) / rewards.std(unbiased=False) / 0.5
    w = torch.softmax(z, -1)
    torch.testing.assert_close(weights, w)
    torch.testing.assert_close(mean[0], (w[0, :, None] * samples[0]).sum(0))
    assert valid.all()


# --------------------------------------------------------------------------- improvement
@pytest.mark.parametrize("cls", BASELINES)
def test_baseline_improves_an_analytic_objective(cls):
    x = torch.full((8,), -0.8)
    start = float(shifted_sphere(x[None]))
    opt = cls([x], num_samples=32, num_steps=40, bounds=(-1.0, 1.0), seed=0)
    for _ in range(40):
        opt.step(lambda c: shifted_sphere(c[0]))
    final = float(shifted_sphere(x[None]))
    assert final < 0.5 * start, (cls.__name__, start, final)
    assert bool(((x >= -1) & (x <= 1)).all())


@pytest.mark.parametrize("method", ["cem", "mppi", "cmaes"])
def test_baseline_improves_a_rollout_model(method):
    model = DoubleIntegrator()
    start = float(model.rollout(torch.zeros(1, model.horizon, 1)).rewards.mean())
    res = plan(model, num_samples=32, num_steps=30, seed=0, progress=False, method=method)
    assert res.reward > start + 0.3 * abs(start), (method, start, res.reward)
    assert bool(((res.actions >= -1) & (res.actions <= 1)).all())


@pytest.mark.parametrize("method", ["cem", "mppi", "cmaes"])
def test_baseline_improves_the_car_task(method):
    car_module = pytest.importorskip("dynamics.car")
    model = car_module.Car2D()
    start = model.rollout(torch.zeros(1, model.horizon, model.action_dim))
    res = plan(model, num_samples=32, num_steps=15, seed=0, progress=False, method=method)
    # Standing still at the start scores -4 per step (the goal is 4 m away); a feasible plan that
    # drives towards the goal around the U-maze scores clearly better.
    assert bool(res.feasible)
    assert res.reward > float(start.rewards.mean()) + 0.5, (method, float(start.rewards.mean()), res.reward)
    assert bool(((res.actions >= -1) & (res.actions <= 1)).all())


@pytest.mark.parametrize("cls", [CEMOptimizer, MPPIOptimizer, CMAESOptimizer])
def test_batched_problems_in_rollout_mode(cls):
    model = DoubleIntegrator()
    actions = torch.zeros(3, model.horizon, 1)  # three independent problems
    opt = cls([actions], num_samples=16, num_steps=10, bounds=model.action_bounds, rollout=model.rollout, seed=0)
    for _ in range(10):
        opt.step()
    assert actions.shape == (3, model.horizon, 1)
    final = model.rollout(actions.unsqueeze(-3)).rewards.mean(-1).squeeze(-1)
    assert final.shape == (3,)
    assert bool((final > float(model.rollout(torch.zeros(1, model.horizon, 1)).rewards.mean())).all())


# --------------------------------------------------------------------------- equal budgets
def test_equal_evaluation_budget_in_minimize():
    counts = {}
    for method in METHODS:
        seen = []

        def f(x, seen=seen):
            seen.append(x.shape[0])
            return shifted_sphere(x)

        res = minimize(f, torch.zeros(5), num_samples=24, num_steps=12, bounds=(-1.0, 1.0), seed=0, progress=False, method=method)
        counts[method] = sum(seen)
        assert res.nfev == counts[method]
        assert res.nit == 12
        assert len(seen) == 13  # one batch per step + the final estimate
    assert len(set(counts.values())) == 1, counts
    assert counts["mbd"] == 24 * 12 + 1


@pytest.mark.parametrize("preset", ["paper", "default"])
def test_equal_rollout_budget_in_plan(preset):
    counts = {}
    for method in METHODS:
        model = DoubleIntegrator()
        plan(model, num_samples=20, num_steps=9, seed=0, progress=False, method=method, preset=preset)
        counts[method] = (model.calls, model.evaluated)
    assert len(set(counts.values())) == 1, counts
    if preset == "paper":  # one rollout per step and one of the final estimate
        assert counts["mbd"] == (10, 20 * 9 + 1)


# --------------------------------------------------------------------------- CMA-ES is pycma
def test_cmaes_runs_pycma_and_its_step_size_adapts():
    cma = pytest.importorskip("cma")
    x = torch.full((6,), 0.9, dtype=torch.float64)
    opt = CMAESOptimizer([x], num_samples=16, num_steps=40, seed=0)
    opt.step(lambda c: shifted_sphere(c[0]))
    (es,) = opt.strategies
    assert isinstance(es, cma.CMAEvolutionStrategy)
    assert es.popsize == 16
    assert es.sigma0 == pytest.approx(first_sigma(40))  # MBD's first level of a 40-step schedule
    for _ in range(39):
        opt.step(lambda c: shifted_sphere(c[0]))
    assert es.countevals == 40 * 16
    # On a sphere pycma shrinks its step size by orders of magnitude while converging.
    assert opt.sigma[0] < 0.1 * es.sigma0
    assert float(shifted_sphere(x[None])) < 1e-3
    torch.testing.assert_close(x, torch.as_tensor(es.result.xfavorite))


def test_cmaes_handles_bounds():
    pytest.importorskip("cma")
    # The unconstrained optimum (x = 3) lies outside the box: every candidate must stay in it.
    lower = torch.tensor([-1.0, -1.0, -0.5, 0.0])
    upper = torch.tensor([1.0, 0.5, 1.0, 2.0])
    x = torch.zeros(4)
    seen = []

    def loss(c):
        seen.append(c[0].clone())
        return ((c[0] - 3.0) ** 2).sum(-1)

    opt = CMAESOptimizer([x], num_samples=16, num_steps=60, bounds=(lower, upper), seed=0)
    for _ in range(60):
        opt.step(loss)
    cands = torch.cat(seen)
    assert bool(((cands >= lower) & (cands <= upper)).all())
    assert bool(((x >= lower) & (x <= upper)).all())
    torch.testing.assert_close(x, upper, atol=0.05, rtol=0)


def test_cmaes_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cma", None)  # makes `import cma` raise ImportError
    with pytest.raises(ImportError, match=r"torch-mbd\[baselines\]"):
        CMAESOptimizer([torch.zeros(3)], num_samples=4)


def test_cmaes_leaves_numpy_global_rng_alone():
    np = pytest.importorskip("numpy")
    pytest.importorskip("cma")
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    opt = CMAESOptimizer([torch.zeros(3)], num_samples=8, seed=0)
    for _ in range(3):
        opt.step(lambda c: shifted_sphere(c[0]))
    assert np.random.rand() == expected


# --------------------------------------------------------------------------- robustness
# (same seed, NaN, all-invalid steps and resume for every method: tests/test_sampling.py)
def test_mppi_noise_is_fixed_and_cem_std_shrinks():
    x = torch.zeros(5)
    mppi = MPPIOptimizer([x], num_samples=32, noise_std=0.4, seed=0)
    sigmas = []
    for _ in range(5):
        mppi.step(lambda c: shifted_sphere(c[0]))
        sigmas.append(mppi.last_step.sigma)
    assert sigmas == pytest.approx([0.4] * 5)
    y = torch.zeros(5)
    cem = CEMOptimizer([y], num_samples=32, seed=0)
    cem.step(lambda c: shifted_sphere(c[0]))
    first = cem.std.clone()
    for _ in range(5):
        cem.step(lambda c: shifted_sphere(c[0]))
    assert float(cem.std.mean()) < float(first.mean()) < first_sigma()


# --------------------------------------------------------------------------- bad input
def test_bad_input_raises():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="elite_fraction"):
        CEMOptimizer([x], elite_fraction=0.0)
    with pytest.raises(ValueError, match="init_std"):
        CEMOptimizer([x], init_std=-1.0)
    with pytest.raises(ValueError, match="min_std"):
        CEMOptimizer([x], min_std=float("nan"))
    with pytest.raises(ValueError, match="noise_std"):
        MPPIOptimizer([x], noise_std=0.0)
    with pytest.raises(ValueError, match="temperature"):
        MPPIOptimizer([x], temperature=0.0)
    with pytest.raises(ValueError, match="demo"):
        CEMOptimizer([x], demo=torch.zeros(3))
    with pytest.raises(ValueError, match="fraction"):
        MPPIOptimizer([{"params": [x], "fraction": 0.2}])
    with pytest.raises(ValueError, match="sigma0"):
        CMAESOptimizer([x], sigma0=float("inf"))
    with pytest.raises(ValueError, match="num_samples"):
        CMAESOptimizer([x], num_samples=1)
    with pytest.raises(TypeError, match="cma_options"):
        CMAESOptimizer([x], cma_options=[1])
    with pytest.raises(ValueError, match="method"):
        optimizer_class("adam")
    opt = CEMOptimizer([x], num_samples=4)
    with pytest.raises(ValueError, match="shape"):
        opt.step(lambda c: torch.zeros(5))
    assert optimizer_class("mbd") is MBDOptimizer


# --------------------------------------------------------------------------- robustness
def test_numpy_scalars_are_accepted_by_every_baseline():
    np = pytest.importorskip("numpy")
    x = torch.zeros(3)
    cem = CEMOptimizer([x], num_samples=np.int64(10), elite_fraction=np.float32(0.2), init_std=np.float64(0.3),
                       min_std=np.float32(0.01), seed=np.int32(0))
    assert cem.num_elites == 2 and cem.init_std == pytest.approx(0.3)
    mppi = MPPIOptimizer([torch.zeros(3)], num_samples=np.int64(8), temperature=np.float32(0.2), noise_std=np.float64(0.4))
    assert mppi.noise_std == pytest.approx(0.4) and mppi.temperature == pytest.approx(0.2)
    cma = CMAESOptimizer([torch.zeros(3)], num_samples=np.int64(6), sigma0=np.float32(0.5), seed=1)
    cma.step(lambda c: shifted_sphere(c[0]))
    assert cma.sigma0 == pytest.approx(0.5)
    with pytest.raises(ValueError, match="num_samples"):
        CMAESOptimizer([torch.zeros(3)], num_samples=np.int64(1))
    with pytest.raises(ValueError, match="elite_fraction"):
        CEMOptimizer([torch.zeros(3)], elite_fraction=1.5)
    with pytest.raises(ValueError, match="seed"):
        CEMOptimizer([torch.zeros(3)], seed=0.5)


@pytest.mark.parametrize("cls", BASELINES)
def test_infinite_bound_leaves_a_coordinate_unbounded(cls):
    """``-inf`` in a bounds tensor: that coordinate is free, the other one is clipped (pycma too)."""
    target = torch.tensor([-1.5, 0.5])
    x = torch.zeros(2)
    lower, upper = torch.tensor([-math.inf, -1.0]), torch.tensor([1.0, 1.0])
    extra = dict(min_std=0.1) if cls is CEMOptimizer else {}  # plain CEM's std collapses before it travels 1.5
    opt = cls([x], num_samples=32, num_steps=40, bounds=(lower, upper), seed=0, **extra)
    for _ in range(40):
        opt.step(lambda c: ((c[0] - target) ** 2).sum(-1))
        assert (opt.last_step.samples[0] >= lower).all() and (opt.last_step.samples[0] <= upper).all()
    assert x[0] < -1.0 and 0.2 <= x[1] <= 0.8, (cls.__name__, x)  # below -1: no bound held coordinate 0


@pytest.mark.parametrize("cls", BASELINES)
def test_float16_params_run_and_improve(cls):
    x = torch.full((4,), -0.8, dtype=torch.float16)

    def loss(c):
        return 300.0 * shifted_sphere(c[0].float()) + 400.0

    start = float(loss([x[None]]))
    opt = cls([x], num_samples=16, num_steps=20, seed=0)
    for _ in range(20):
        opt.step(loss)
    assert x.dtype == torch.float16 and torch.isfinite(x).all()
    assert float(loss([x[None]])) < start - 0.5 * (start - 400.0)


def test_a_rejected_baseline_state_changes_nothing():
    x = torch.zeros(3)
    donor = CEMOptimizer([x.clone()], num_samples=8, seed=0)
    donor.step(lambda c: shifted_sphere(c[0]))
    target = CEMOptimizer([x], num_samples=8, seed=1)
    target.step(lambda c: shifted_sphere(c[0]))
    std, steps = target.std.clone(), target.steps_done
    for bad in (torch.ones(2, 3), torch.full((1, 3), float("nan")), "std"):
        state = donor.state_dict()
        state["sampling"]["std"] = bad
        with pytest.raises(ValueError, match="std"):
            target.load_state_dict(state)
        assert torch.equal(target.std, std) and target.steps_done == steps
    # a valid std with a bad shared part: the std is not half-restored either
    state = donor.state_dict()
    state["sampling"]["steps_done"] = -3
    with pytest.raises(ValueError, match="steps_done"):
        target.load_state_dict(state)
    assert torch.equal(target.std, std)
    cma = CMAESOptimizer([torch.zeros(3)], num_samples=6, seed=0)
    cma.step(lambda c: shifted_sphere(c[0]))
    state = cma.state_dict()
    state["sampling"]["strategies"] = state["sampling"]["strategies"] * 2
    before = cma.strategies
    with pytest.raises(ValueError, match="strategies"):
        cma.load_state_dict(state)
    assert cma.strategies is before


def test_mppi_state_restores_the_temperature():
    donor = MPPIOptimizer([torch.zeros(3)], num_samples=8, temperature=0.05, seed=0)
    target = MPPIOptimizer([torch.zeros(3)], num_samples=8, temperature=2.0, seed=0)
    target.load_state_dict(donor.state_dict())
    assert target.temperature == 0.05


# --------------------------------------------------------------------------- one shared loop
from torch_mbd import SamplingOptimizer, UpdateResult  # noqa: E402


class GreedyRandomSearch(SamplingOptimizer):
    """A whole method in two hooks: sample a fixed Gaussian, move to the best sample of the step."""

    method = "greedy"

    def sampling_std(self, B):
        return self.initial_std(0.2).expand(B, -1)

    def update(self, samples, evaluation, y_bar):
        logp = elite_log_weights(evaluation.rewards, 1, evaluation.feasible)
        from torch_mbd.denoise import weighted_mean

        return UpdateResult(*weighted_mean(samples, logp))


def test_a_new_method_is_two_hooks():
    x = torch.zeros(3)
    opt = GreedyRandomSearch([x], num_samples=16, seed=0)
    for _ in range(30):
        opt.step(lambda c: shifted_sphere(c[0]))
    assert shifted_sphere(x[None]).item() < 0.05
    # the shared step did the rest: the best sample is kept, StepInfo filled in
    assert opt.best_reward.item() >= -shifted_sphere(x[None]).item() - 1e-7  # x is one of the samples
    assert opt.last_step.sigma == pytest.approx(0.2) and opt.last_step.temperature is None
    # rollout mode and invalid samples come for free too
    model = DoubleIntegrator()
    u = torch.zeros(model.horizon, 1)
    opt = GreedyRandomSearch([u], num_samples=8, seed=0,
                             rollout=lambda a: Trajectory(None, torch.full(a.shape[:-1], math.nan)))
    with pytest.warns(RuntimeWarning, match="greedy step 0: every sample"):
        opt.step()
    assert (u == 0).all()


@pytest.mark.parametrize("method", ["cem", "mppi", "cmaes", "paper-mppi", "paper-cem", "paper-cmaes"])
@pytest.mark.parametrize("option", ["demo_sigma", "demo_reward", "demo_log_likelihood", "step_scale"])
def test_mbd_only_options_are_refused_by_every_baseline(method, option):
    from torch_mbd.baselines import optimizer_class

    value = (lambda states: states.sum((-1, -2))) if option == "demo_log_likelihood" else 0.5
    with pytest.raises(ValueError, match=option):
        optimizer_class(method)([torch.zeros(3)], num_samples=4, **{option: value})
