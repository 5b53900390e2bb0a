import math

import pytest
import torch

from torch_mbd.schedule import linear_schedule


def test_paper_defaults():
    s = linear_schedule()
    assert s.num_steps == 100
    assert s.betas[0].item() == pytest.approx(1e-4)
    assert s.betas[-1].item() == pytest.approx(1e-2)
    torch.testing.assert_close(s.alphas, 1 - s.betas)
    # alpha_bar is the running product
    assert s.alpha_bars[10].item() == pytest.approx(math.prod((1 - s.betas[: 11]).tolist()))
    assert s.alpha_bar_prev(0) == 1.0
    assert s.alpha_bar_prev(5) == pytest.approx(s.alpha_bars[4].item())


def test_noise_conventions():
    official = linear_schedule(noise="official")
    paper = linear_schedule(noise="paper")
    torch.testing.assert_close(official.sigmas, torch.sqrt(1 - official.alpha_bars))
    torch.testing.assert_close(paper.sigmas, torch.sqrt(1 / paper.alpha_bars - 1))
    assert (paper.sigmas > official.sigmas).all()
    # noise shrinks along the reverse process (level N-1 -> 0)
    assert (official.sigmas[1:] > official.sigmas[:-1]).all()


def test_settable():
    s = linear_schedule(num_steps=7, beta0=1e-3, beta1=5e-2)
    assert s.num_steps == 7
    assert s.betas[-1].item() == pytest.approx(5e-2)
    one = linear_schedule(num_steps=1, beta0=0.02)
    assert one.betas.tolist() == [pytest.approx(0.02)]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_steps=0), "num_steps"),
        (dict(num_steps=2.5), "num_steps"),
        (dict(beta0=0.0), "beta0"),
        (dict(beta1=1.0), "beta1"),
        (dict(beta0=-1e-3), "beta0"),
        (dict(beta1=float("nan")), "beta1"),
        (dict(noise="ddim"), "noise"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        linear_schedule(**kwargs)


def test_numpy_scalars_are_accepted():
    np = pytest.importorskip("numpy")
    a = linear_schedule(num_steps=np.int64(7), beta0=np.float32(1e-3), beta1=np.float64(5e-2))
    b = linear_schedule(num_steps=7, beta0=float(np.float32(1e-3)), beta1=5e-2)
    assert a.num_steps == 7 and torch.equal(a.sigmas, b.sigmas)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_steps=True), "num_steps"),
        (dict(num_steps="10"), "num_steps"),
        (dict(beta0="0.1"), "beta0"),
        (dict(beta0=True), "beta0"),
        (dict(beta1=float("inf")), "beta1"),
        (dict(beta1=1j), "beta1"),
        (dict(noise=None), "noise"),
        (dict(noise=["official"]), "noise"),
    ],
)
def test_bad_types_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        linear_schedule(**kwargs)
