import math

import pytest
import torch

import torch_mbd


def ackley(x):
    """Ackley on [n, D]; minimum 0 at the origin."""
    d = x.shape[-1]
    a = -20 * torch.exp(-0.2 * torch.sqrt((x**2).sum(-1) / d))
    b = -torch.exp(torch.cos(2 * math.pi * x).sum(-1) / d)
    return a + b + 20 + math.e


def test_quadratic_to_near_zero():
    res = torch_mbd.minimize(lambda x: (x**2).sum(-1), torch.ones(10), seed=0, progress=False)
    assert res.fun < 1e-2
    assert res.fun_final < 1e-2
    assert res.nfev == 100 * 64 + 1 and res.nit == 100
    assert res.history.best.shape == (100,) and res.history.estimate.shape == (100, 10)
    # the running best never increases
    assert (res.history.best_so_far[1:] <= res.history.best_so_far[:-1]).all()


def test_ackley_20d_well_below_start():
    x0 = torch.full((20,), 3.0)
    start = ackley(x0.unsqueeze(0)).item()
    res = torch_mbd.minimize(ackley, x0, num_samples=128, bounds=(-5.0, 10.0), temperature=0.1, seed=0, progress=False)
    assert start > 7.0
    assert res.fun < 0.25 * start
    assert ackley(res.x.unsqueeze(0)).item() == pytest.approx(res.fun, rel=1e-5)


def test_same_seed_same_result_and_different_seed_differs():
    f = lambda x: (torch.sin(3 * x) + x**2).sum(-1)  # noqa: E731
    a = torch_mbd.minimize(f, torch.ones(5), num_steps=20, seed=1, progress=False)
    b = torch_mbd.minimize(f, torch.ones(5), num_steps=20, seed=1, progress=False)
    c = torch_mbd.minimize(f, torch.ones(5), num_steps=20, seed=2, progress=False)
    assert torch.equal(a.x, b.x) and torch.equal(a.history.mean, b.history.mean)
    assert not torch.equal(a.x_final, c.x_final)


def test_bounds_and_float64():
    res = torch_mbd.minimize(
        lambda x: ((x - 3.0) ** 2).sum(-1), torch.zeros(4, dtype=torch.float64), bounds=(-1.0, 1.0), num_steps=30, seed=0, progress=False
    )
    assert res.x.dtype == torch.float64
    assert res.x.max() <= 1.0
    torch.testing.assert_close(res.x_final, torch.ones(4, dtype=torch.float64), atol=0.05, rtol=0)


def test_nan_costs_never_reach_the_solution():
    def f(x):
        c = (x**2).sum(-1)
        return torch.where(x[:, 0] > 0, torch.full_like(c, float("nan")), c)

    res = torch_mbd.minimize(f, torch.full((3,), -0.5), num_steps=30, seed=0, progress=False)
    assert math.isfinite(res.fun) and torch.isfinite(res.x).all()
    assert res.x_final[0] <= 0


def test_bad_input():
    with pytest.raises(TypeError, match="x0"):
        torch_mbd.minimize(lambda x: x.sum(-1), [1.0, 2.0], progress=False)
    with pytest.raises(TypeError, match="f must be callable"):
        torch_mbd.minimize(None, torch.ones(2), progress=False)
    with pytest.raises(ValueError, match=r"f must map"):
        torch_mbd.minimize(lambda x: x, torch.ones(2), progress=False)
    with pytest.raises(ValueError, match="temperature"):
        torch_mbd.minimize(lambda x: x.sum(-1), torch.ones(2), temperature=-1, progress=False)
