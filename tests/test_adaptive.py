"""Adaptive MBD (torch_mbd/adaptive.py, torch_mbd/adaptation.py): what each adaptation is for.

The generic behaviour every method shares (bounds, NaN, groups, resume, keep-best, dtypes) runs over
it in tests/test_sampling.py through tests/_methods.py; this file tests what is its own: the noise
level without an absolute floor, the learnt shape, the warm-up, stop_reason, the per-problem state.
"""

from __future__ import annotations

import math

import pytest
import torch

from torch_mbd import AdaptiveMBDOptimizer, MBDOptimizer, adaptation
from torch_mbd.adaptive import FULL_DIM


def sphere(c):
    return c[0].square().sum(-1)


def run(opt, f, steps):
    for _ in range(steps):
        opt.step(f)
        if opt.stop_reason() is not None:
            break
    return opt


def rotated_ellipsoid(D, condition=1e6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    scales = torch.logspace(0, math.log10(condition), D, dtype=torch.float64)
    return lambda c: ((c[0] @ q.T).square() * scales).sum(-1)


def test_the_sphere_reaches_1e_minus_8_which_the_paper_schedule_cannot():
    # the schedule's last level, sqrt(beta_first) = 0.01, is absolute: the paper's MBD stalls near 1e-4
    x = torch.full((10,), 3.0, dtype=torch.float64)
    run(AdaptiveMBDOptimizer([x], num_samples=32, seed=0), sphere, 400)
    assert float(sphere([x[None]])) < 1e-8
    y = torch.full((10,), 3.0, dtype=torch.float64)
    paper = MBDOptimizer([y], num_samples=32, seed=0, num_steps=400)
    for _ in range(400):
        paper.step(sphere)
    assert float(sphere([y[None]])) > 1e-6


def test_the_noise_level_is_relative_a_scaled_problem_runs_the_same_scaled():
    # f(x / s) from x0 * s with sigma0 * s: the same run in other units (no absolute floor anywhere)
    runs = []
    for s in (1.0, 1e-4):
        x = torch.full((6,), 2.0 * s, dtype=torch.float64)
        opt = AdaptiveMBDOptimizer([x], num_samples=16, seed=3, sigma0=0.5 * s)
        for _ in range(60):
            opt.step(lambda c, s=s: (c[0] / s).square().sum(-1))
        runs.append(x / s)
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-6, atol=1e-12)
    assert float(runs[0].abs().max()) < 1e-3


def test_a_rotated_ill_conditioned_quadratic_is_solved_by_learning_the_shape():
    f = rotated_ellipsoid(8, condition=1e6)
    x = torch.full((8,), 2.0, dtype=torch.float64)
    opt = run(AdaptiveMBDOptimizer([x], num_samples=24, seed=1), f, 700)
    assert opt.covariance == "full"
    assert float(f([x[None]])) < 1e-8
    # the learnt shape's condition tracks the problem's (1e6 in f, so 1e6 in variances)
    assert float(opt.adaptation["condition"][0]) > 1e4
    diag = AdaptiveMBDOptimizer([torch.full((8,), 2.0, dtype=torch.float64)], num_samples=24, seed=1,
                                covariance="diagonal")
    z = diag.param_groups[0]["params"][0]
    for _ in range(700):
        diag.step(f)
    assert float(f([z[None]])) > 1e3 * float(f([x[None]]))  # a diagonal cannot follow a rotation


def test_above_full_dim_the_shape_is_diagonal_and_learns_per_coordinate_scales():
    D = FULL_DIM + 20
    scales = torch.logspace(0, 4, D, dtype=torch.float64)
    x = torch.ones(D, dtype=torch.float64)
    opt = AdaptiveMBDOptimizer([x], num_samples=32, seed=0)
    assert opt.covariance == "diagonal" and opt.adaptation is None
    f0 = float((x.square() * scales).sum())
    run(opt, lambda c: (c[0].square() * scales).sum(-1), 300)
    assert opt.adaptation["shape"].shape == (1, D)
    stds = opt.sampling_stds()[0]
    assert float(stds[0] / stds[-1]) > 10  # the steep coordinates are searched more narrowly
    assert float((x.square() * scales).sum()) < 1e-3 * f0


@pytest.mark.parametrize("D", [2, 10, 100, 1_000, 10_000, 100_000, 1_000_000])
def test_the_defaults_never_end_worse_than_they_started_on_a_convex_problem(D):
    # the paper's absolute schedule took a 1000-D sphere from 90 to 955; the warm-up halves a noise
    # level that makes the estimate worse until it improves three steps in a row
    shift = torch.linspace(-1, 1, D)
    f = lambda c: (c[0] - shift).square().sum(-1) + 0.5 * (c[0] - shift).abs().sum(-1)  # convex, not smooth at 0
    x = torch.zeros(D)
    start = float(f([x[None]]))
    opt = AdaptiveMBDOptimizer([x], seed=0)  # every option at its default (64 samples)
    steps = 6 if D >= 100_000 else 40
    history = []
    for _ in range(steps):
        opt.step(f)
        history.append(float(f([x[None]])))
    assert history[-1] <= start
    if D <= 10_000:
        assert history[-1] < 0.99 * start  # and it made progress, not merely stood still


def test_warm_up_takes_a_worse_estimate_back_and_halves_the_noise():
    D = 2000
    x = torch.ones(D)  # sigma0 = 0.63 per coordinate: far too large in 2000 dimensions
    opt = AdaptiveMBDOptimizer([x], num_samples=8, seed=0)
    values, sigmas = [float(sphere([x[None]]))], []
    for _ in range(12):
        opt.step(sphere)
        values.append(float(sphere([x[None]])))
        sigmas.append(float(opt.adaptation["sigma"][0]))
    assert min(sigmas) <= 0.63 / 4  # halved at least twice
    # the estimate is taken back to the previous one on a failed step: it never walks far up
    assert max(values) <= values[0] * 1.5
    # warm_up=False (for a stochastic objective) keeps the first noise level: the estimate walks away
    y = torch.ones(D)
    off = AdaptiveMBDOptimizer([y], num_samples=8, seed=0, warm_up=False)
    for _ in range(12):
        off.step(sphere)
    assert float(sphere([y[None]])) > values[0] * 1.5


def test_stop_reason_reports_a_collapsed_noise_level_and_a_flat_objective():
    x = torch.ones(3, dtype=torch.float64)
    opt = AdaptiveMBDOptimizer([x], num_samples=12, seed=0, tol_x=1e-6, tol_fun=1e-300)
    assert opt.stop_reason() is None
    run(opt, sphere, 2000)
    assert opt.stop_reason() == "tol_x"
    y = torch.ones(3, dtype=torch.float64)
    flat = AdaptiveMBDOptimizer([y], num_samples=12, seed=0)
    with pytest.warns(RuntimeWarning, match="constant"):
        run(flat, lambda c: torch.zeros(c[0].shape[0], dtype=torch.float64), 200)
    assert flat.stop_reason() == "tol_fun"


def test_each_problem_of_a_batch_adapts_its_own_noise_level():
    # rollout mode with 2 problems whose scales differ by 1e3: each gets its own sigma and shape
    target = torch.tensor([1.0, 1e-3], dtype=torch.float64).view(2, 1, 1)

    def rollout(actions):  # [2, n, H, nu]
        rewards = -((actions / target.unsqueeze(1) - 1).square()).sum((-1, -2), keepdim=False)
        return rewards.unsqueeze(-1).expand(*rewards.shape, 3), torch.zeros(*actions.shape[:2], 3, 1), None

    u = torch.zeros(2, 3, 2, dtype=torch.float64)
    opt = AdaptiveMBDOptimizer([u], num_samples=16, seed=0, rollout=rollout)
    for _ in range(150):
        opt.step()
    assert opt.adaptation["sigma"].shape == (2,)
    relative = (u / target - 1).abs().amax((-1, -2))
    # both reach a relative precision that an absolute noise floor of 0.01 could not give the 1e-3 problem
    assert float(relative.max()) < 1e-4


def test_nan_and_infeasible_samples_get_no_weight_and_never_poison_the_state():
    x = torch.full((4,), 2.0, dtype=torch.float64)

    def f(c):
        loss = sphere(c)
        return torch.where(c[0][:, 0] > 1.5, torch.full_like(loss, float("nan")), loss)

    opt = run(AdaptiveMBDOptimizer([x], num_samples=16, seed=0), f, 100)
    state = opt.adaptation
    assert all(bool(torch.isfinite(state[k]).all()) for k in ("sigma", "shape", "path_sigma", "path_c"))
    assert float(x[0]) <= 1.5 + 1e-9 and float(sphere([x[None]])) < 1e-2


def test_a_state_dict_resumes_the_same_run_and_refuses_a_bad_adaptation():
    x = torch.zeros(5)
    a = AdaptiveMBDOptimizer([x], num_samples=8, seed=1)
    f = lambda c: (c[0] - 1).square().sum(-1)
    for _ in range(5):
        a.step(f)
    saved = a.state_dict()
    y = x.clone()
    b = AdaptiveMBDOptimizer([y], num_samples=8, seed=9)
    b.load_state_dict(saved)
    for _ in range(5):
        a.step(f), b.step(f)
    assert torch.equal(x, y)
    bad = a.state_dict()
    bad["sampling"]["adaptation"]["sigma"] = torch.tensor([float("nan")])
    with pytest.raises(ValueError, match="adaptation\\['sigma'\\] must be finite"):
        b.load_state_dict(bad)
    wrong = a.state_dict()
    wrong["sampling"]["covariance"] = "diagonal"
    with pytest.raises(ValueError, match="covariance"):
        b.load_state_dict(wrong)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_samples=1), "num_samples"),
        (dict(covariance="low-rank"), "covariance"),
        (dict(sigma0=-1.0), "sigma0"),
        (dict(target_ess=1.5), "target_ess"),
        (dict(temperature="hot"), "temperature"),
        (dict(tol_x=0.0), "tol_x"),
        (dict(warm_up="yes"), "warm_up"),
    ],
)
def test_bad_options_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdaptiveMBDOptimizer([torch.zeros(3)], **kwargs)


def test_the_rates_are_cma_es_formulas_and_the_paths_are_normalized():
    r = adaptation.rates(10, 16.0, diagonal=False)
    assert r.c_sigma == pytest.approx(18 / 31)
    assert r.c_1 == pytest.approx(2 / (11.3**2 + 16))
    assert r.chi == pytest.approx(math.sqrt(10) * (1 - 1 / 40 + 1 / 2100))
    # under blind weights the cumulated path keeps unit variance per coordinate
    g = torch.Generator().manual_seed(0)
    path = torch.zeros(4000, 10, dtype=torch.float64)
    mu = torch.full((4000,), 16.0, dtype=torch.float64)
    for _ in range(40):
        step = torch.randn(4000, 10, generator=g, dtype=torch.float64) / 4.0  # N(0, I / mu_eff)
        path = adaptation.cumulate(path, step, r.c_sigma, mu)
    assert float(path.var()) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("D", [2, 100, 10_000])
def test_minimize_with_its_defaults_ends_no_worse_than_it_started_on_a_convex_problem(D):
    from torch_mbd import minimize

    shift = torch.linspace(-1, 1, D)
    f = lambda x: (x - shift).square().sum(-1) + 0.5 * (x - shift).abs().sum(-1)  # noqa: E731
    x0 = torch.zeros(D)
    start = float(f(x0[None]))
    res = minimize(f, x0, seed=0, progress=False)  # every option at its default: adaptive MBD, 64 x 100
    assert res.fun_final <= start and res.fun <= res.fun_final  # the final estimate, and the best point
    assert res.fun < 0.9 * start
