import math

import numpy as np
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


# --------------------------------------------------------------------------- robustness (issue 15)
QUICK = dict(num_samples=16, num_steps=8, seed=0, progress=False)


def sphere(x):
    return (x**2).sum(-1)


def test_integer_costs_are_computed_in_floating_point():
    # costs near 9e18 (int64 max ~9.22e18): any integer arithmetic (negation, an inf fill) would overflow
    def f_int(x):
        return (x.clamp(-3, 3) * 1e9).round().long().square().sum(-1)

    x0 = torch.full((2,), 2.0)
    ints = torch_mbd.minimize(f_int, x0, **QUICK)
    floats = torch_mbd.minimize(lambda x: f_int(x).to(torch.float32), x0, **QUICK)
    assert torch.equal(ints.x, floats.x) and ints.fun == floats.fun
    assert ints.history.best.is_floating_point() and ints.fun < float(f_int(x0.unsqueeze(0)))


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex64])
def test_bool_and_complex_costs_are_refused(dtype):
    with pytest.raises(TypeError, match="real.*costs"):
        torch_mbd.minimize(lambda x: sphere(x).to(dtype), torch.ones(2), **QUICK)


def test_the_final_evaluation_is_checked_too():
    # right shape for the n candidates of every step, wrong for the single final estimate
    with pytest.raises(ValueError, match=r"f must map.*\(1,\)"):
        torch_mbd.minimize(lambda x: sphere(x) if x.shape[0] > 1 else sphere(x).reshape(1, 1), torch.ones(2), **QUICK)


def test_costs_on_another_device_are_refused():
    with pytest.raises(ValueError, match="device|meta"):
        torch_mbd.minimize(lambda x: torch.zeros(x.shape[0], device="meta"), torch.ones(2), **QUICK)


def test_minus_inf_is_never_the_best_cost():
    def f(x):  # -inf only at the final estimate
        return torch.full((1,), -math.inf) if x.shape[0] == 1 else sphere(x)

    res = torch_mbd.minimize(f, torch.ones(2), **QUICK)
    assert math.isfinite(res.fun) and res.fun_final == -math.inf
    assert res.fun == pytest.approx(float(sphere(res.x.unsqueeze(0))))
    assert res.fun == float(res.history.best_so_far[-1])


@pytest.mark.parametrize("value", [-math.inf, math.inf, math.nan])
@pytest.mark.filterwarnings("ignore:MBDOptimizer step:RuntimeWarning")  # every sample is invalid
def test_no_finite_cost_at_all_is_a_clear_error(value):
    with pytest.raises(ValueError, match="no finite cost"):
        torch_mbd.minimize(lambda x: torch.full((x.shape[0],), value), torch.ones(2), **QUICK)


def test_integer_and_numpy_x0():
    reference = torch_mbd.minimize(sphere, torch.full((3,), 2.0, dtype=torch.float64), **QUICK)
    numpy = torch_mbd.minimize(sphere, np.full(3, 2.0), **QUICK)
    assert isinstance(numpy.x, torch.Tensor) and torch.equal(numpy.x, reference.x)
    ints = torch_mbd.minimize(sphere, torch.full((3,), 2), **QUICK)
    assert ints.x.dtype == torch.get_default_dtype()
    as_float = torch_mbd.minimize(sphere, torch.full((3,), 2.0), **QUICK)
    assert torch.equal(ints.x, as_float.x)


@pytest.mark.parametrize(
    "x0, error, match",
    [
        (torch.zeros(0), ValueError, "x0.*at least one"),
        (torch.zeros(3, 0), ValueError, "x0.*at least one"),
        (torch.tensor([1.0, math.nan]), ValueError, "x0.*finite"),
        (torch.tensor([True, False]), TypeError, "x0"),
        (torch.ones(2, dtype=torch.complex64), TypeError, "x0"),
        (np.array(["a", "b"]), TypeError, "x0"),
        (torch.ones(2, device="meta"), ValueError, "x0"),
    ],
)
def test_bad_x0(x0, error, match):
    with pytest.raises(error, match=match):
        torch_mbd.minimize(sphere, x0, **QUICK)


def test_numpy_numbers_and_bounds_equal_python_ones():
    python = torch_mbd.minimize(sphere, torch.ones(3), num_samples=16, num_steps=8, temperature=0.5, seed=4,
                                bounds=(torch.full((3,), -0.5), 2.0), progress=False)
    numpy = torch_mbd.minimize(sphere, torch.ones(3), num_samples=np.int64(16), num_steps=np.int32(8),
                               temperature=np.float64(0.5), seed=np.int64(4),
                               bounds=(np.full(3, -0.5), np.float64(2.0)), progress=False)
    assert torch.equal(numpy.x, python.x) and numpy.nfev == python.nfev == 8 * 16 + 1
    assert type(numpy.nfev) is int and type(numpy.nit) is int
    assert torch_mbd.minimize(sphere, torch.ones(3), temperature=np.float32(0.5), **QUICK).fun < 3.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(seed=1.5), "seed"),
        (dict(seed="abc"), "seed"),
        (dict(seed=2**70), "seed"),
        (dict(num_samples=0), "num_samples"),
        (dict(num_steps=True), "num_steps"),
        (dict(temperature=math.inf), "temperature"),
        (dict(device="meta"), "device"),
        (dict(bounds=1.0), "bounds"),
        (dict(bounds=(0.0, 1.0, 2.0)), "bounds"),
    ],
)
def test_bad_numbers_devices_and_bounds(kwargs, match):
    args = dict(QUICK)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        torch_mbd.minimize(sphere, torch.ones(2), **args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="device.*cuda"):
        torch_mbd.minimize(sphere, torch.ones(2), device="cuda", **QUICK)


# --------------------------------------------------------------------------- fresh inputs, bounded history
def test_an_f_that_clamps_its_input_in_place_reports_a_best_it_reproduces():
    def f(x):
        x.clamp_(-0.5, 0.5)  # modifies what it is given
        return ((x - 0.7) ** 2).sum(-1) + torch.sin(5 * x).sum(-1)

    res = torch_mbd.minimize(f, torch.full((4,), 0.2), num_samples=16, num_steps=20, seed=0, progress=False)
    assert res.fun == float(f(res.x.unsqueeze(0).clone()))
    assert res.fun_final == float(f(res.x_final.unsqueeze(0).clone()))
    torch.testing.assert_close(res.x_final, res.history.estimate[-1], rtol=0, atol=0)  # f did not write into it
    assert (res.x.abs() > 0.5).any()  # res.x is the candidate as drawn, not the clamped copy f saw


def test_an_f_that_keeps_its_batches_gets_a_fresh_tensor_every_call():
    kept, copies = [], []

    def f(x):
        kept.append(x)
        copies.append(x.clone())
        return sphere(x)

    torch_mbd.minimize(f, torch.ones(3), num_samples=4, num_steps=5, seed=0, progress=False)
    assert len(kept) == 6  # 5 steps and the final estimate
    assert len({t.untyped_storage().data_ptr() for t in kept}) == 6
    for t, c in zip(kept, copies):
        assert torch.equal(t, c)  # nothing was written into a batch after f returned


def test_keep_history_bounds_the_estimates():
    full = torch_mbd.minimize(sphere, torch.ones(3), **QUICK)
    assert full.history.estimate.shape == (8, 3)
    for keep, count in [(False, 0), (0, 0), (3, 3), (np.int64(5), 5), (100, 8), (np.True_, 8)]:
        res = torch_mbd.minimize(sphere, torch.ones(3), keep_history=keep, **QUICK)
        assert res.history.estimate.shape == (count, 3), keep
        torch.testing.assert_close(res.history.estimate, full.history.estimate[8 - count :], rtol=0, atol=0)
        assert torch.equal(res.x, full.x) and torch.equal(res.history.best, full.history.best)
        assert res.history.best_so_far.shape == (8,)


@pytest.mark.parametrize("keep", [-1, 2.5, "yes", None])
def test_bad_keep_history(keep):
    with pytest.raises(ValueError, match="keep_history"):
        torch_mbd.minimize(sphere, torch.ones(3), keep_history=keep, **QUICK)


def test_numpy_and_tensor_flags_and_a_bad_progress():
    quiet = {k: v for k, v in QUICK.items() if k != "progress"}
    ref = torch_mbd.minimize(sphere, torch.ones(3), progress=False, **quiet)
    for flag in (np.False_, torch.tensor(False)):
        assert torch.equal(torch_mbd.minimize(sphere, torch.ones(3), progress=flag, **quiet).x, ref.x)
    with pytest.raises(ValueError, match="progress"):
        torch_mbd.minimize(sphere, torch.ones(3), progress="no", **quiet)
