import math
import warnings

import pytest
import torch

from torch_mbd import MBDOptimizer, Trajectory


def sphere(target):
    return lambda cands: ((cands[0] - target) ** 2).sum(-1)


def test_one_step_is_the_cross_entropy_method(device, dtype):
    """N = 1: the update is CEM's weighted mean of the samples (paper, section 4.1)."""
    x = torch.full((4,), 0.3, device=device, dtype=dtype)
    opt = MBDOptimizer([x], num_samples=50, temperature=0.7, num_steps=1, beta0=0.04, seed=3)
    seen = {}

    def closure(cands):
        seen["samples"] = cands[0].clone()
        return (cands[0] ** 2).sum(-1) + torch.sin(5 * cands[0]).sum(-1)

    opt.step(closure)
    samples = seen["samples"]
    # the samples are N(x0, sigma^2) with sigma = sqrt(1 - alpha_bar_0) = sqrt(beta0)
    g = torch.Generator(device=device).manual_seed(3)
    eps = torch.randn(1, 50, 4, generator=g, device=device, dtype=dtype)
    torch.testing.assert_close(samples, 0.3 + math.sqrt(0.04) * eps[0])
    cost = closure([samples])
    r = -cost
    logp = (r - r.mean()) / r.std(unbiased=False) / 0.7
    w = torch.softmax(logp, 0)
    torch.testing.assert_close(x, (w.unsqueeze(-1) * samples).sum(0))


def test_default_step_lands_on_weighted_mean():
    x = torch.zeros(3, dtype=torch.float64)
    opt = MBDOptimizer([x], num_samples=20, num_steps=10, seed=0)
    seen = []
    for _ in range(3):
        opt.step(lambda c: (seen.append(c[0].clone()) or ((c[0] - 1.0) ** 2).sum(-1)))
        w = opt.last_step.weights[0]
        torch.testing.assert_close(x, (w.unsqueeze(-1) * seen[-1]).sum(0))


def test_converges_and_holds_final_level():
    x = torch.zeros(6)
    opt = MBDOptimizer([x], num_samples=128, temperature=0.1, num_steps=30, seed=0)
    levels = []
    for _ in range(35):
        levels.append(opt.level)
        opt.step(sphere(0.5))
    assert levels[:3] == [29, 28, 27]
    assert levels[29:] == [0] * 6  # after the schedule it stays at the final noise level
    assert (x - 0.5).abs().max() < 0.05


def test_same_seed_same_run_and_resume_is_bit_identical(tmp_path):
    def run(steps, resume_at=None):
        x = torch.zeros(8)
        opt = MBDOptimizer([x], num_samples=32, num_steps=20, seed=11, bounds=(-1.0, 1.0))
        for k in range(steps):
            if k == resume_at:
                path = tmp_path / "ckpt.pt"
                torch.save({"x": x, "opt": opt.state_dict()}, path)
                del opt
                ckpt = torch.load(path, weights_only=False)
                x = ckpt["x"]
                opt = MBDOptimizer([x], num_samples=32, num_steps=20, seed=999, bounds=(-1.0, 1.0))
                opt.load_state_dict(ckpt["opt"])
            opt.step(lambda c: torch.cos(3 * c[0]).sum(-1) + (c[0] ** 2).sum(-1))
        return x

    a, b, c = run(20), run(20), run(20, resume_at=7)
    assert torch.equal(a, b)
    assert torch.equal(a, c)


def test_state_dict_rejects_other_schedule():
    x = torch.zeros(2)
    opt = MBDOptimizer([x], num_steps=10, seed=0)
    other = MBDOptimizer([torch.zeros(2)], num_steps=20, seed=0)
    with pytest.raises(ValueError, match="num_steps"):
        other.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="mbd"):
        other.load_state_dict({"state": {}, "param_groups": []})


def test_nan_losses_get_zero_weight():
    x = torch.zeros(3)
    opt = MBDOptimizer([x], num_samples=64, num_steps=5, seed=0)

    def closure(c):
        loss = (c[0] ** 2).sum(-1)
        loss[::2] = float("nan")
        loss[1] = float("inf")
        return loss

    opt.step(closure)
    assert torch.isfinite(x).all()
    w = opt.last_step.weights[0]
    assert (w[::2] == 0).all() and w[1] == 0
    assert w.sum().item() == pytest.approx(1.0)


def test_all_infeasible_keeps_estimate_and_warns():
    x = torch.tensor([0.25, -0.5])
    opt = MBDOptimizer([x], num_samples=16, num_steps=5, seed=0)
    with pytest.warns(RuntimeWarning, match="infeasible or non-finite"):
        opt.step(lambda c: torch.full((16,), float("nan")))
    assert x.tolist() == [0.25, -0.5]
    assert opt.steps_done == 1


def test_identical_losses_do_not_divide_by_zero():
    x = torch.ones(5)
    opt = MBDOptimizer([x], num_samples=16, num_steps=5, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step(lambda c: torch.zeros(16))
    assert torch.isfinite(x).all()


def test_param_groups_override_noise_scale_and_fraction():
    a, b = torch.zeros(10), torch.zeros(10)
    opt = MBDOptimizer(
        [{"params": [a]}, {"params": [b], "noise_scale": 0.0}], num_samples=8, num_steps=5, seed=0
    )
    seen = []
    opt.step(lambda c: (seen.append([t.clone() for t in c]) or (c[0].sum(-1) + c[1].sum(-1))))
    assert (seen[0][1] == 0).all()  # noise_scale 0: group b is never perturbed
    assert (seen[0][0] != 0).all()
    frac = torch.zeros(2000)
    opt = MBDOptimizer([{"params": [frac], "fraction": 0.2}], num_samples=16, num_steps=5, seed=0)
    opt.step(lambda c: (seen.append(c[0].clone()) or c[0].sum(-1)))
    perturbed = (seen[-1] != 0).double().mean().item()
    assert 0.17 < perturbed < 0.23


def test_multiple_params_and_closure_shapes():
    w = torch.zeros(3, 2)
    b = torch.zeros(2)
    opt = MBDOptimizer([w, b], num_samples=12, num_steps=5, seed=0)
    shapes = []
    opt.step(lambda c: (shapes.append([tuple(t.shape) for t in c]) or (c[0].sum((1, 2)) + c[1].sum(-1))))
    assert shapes == [[(12, 3, 2), (12, 2)]]


def toy_rollout(actions):
    """A 1-D double integrator: states [..., n, H, 2], reward -|pos - 1|."""
    vel = torch.cumsum(actions[..., 0], dim=-1) * 0.1
    pos = torch.cumsum(vel, dim=-1) * 0.1
    states = torch.stack([pos, vel], dim=-1)
    return Trajectory(states=states, rewards=-(pos - 1.0).abs(), feasible=None)


def test_rollout_mode_batched_problems():
    actions = torch.zeros(3, 20, 1)  # three independent problems
    opt = MBDOptimizer([actions], num_samples=64, num_steps=40, rollout=toy_rollout, bounds=(-1.0, 1.0), seed=0)
    first = opt.step()
    for _ in range(39):
        last = opt.step()
    assert last > first
    assert actions.abs().max() <= 1.0
    assert opt.last_step.rewards.shape == (3, 64)


def test_rollout_infeasible_samples_are_ignored():
    def rollout(actions):
        traj = toy_rollout(actions)
        # a sample is infeasible when its first action is positive
        return traj._replace(feasible=actions[..., 0, 0] <= 0)

    actions = torch.zeros(10, 1)
    opt = MBDOptimizer([actions], num_samples=64, num_steps=10, rollout=rollout, seed=0)
    for _ in range(10):
        opt.step()
        w = opt.last_step.weights[0]
        assert (w[opt.last_step.trajectory.feasible.reshape(-1) == 0] == 0).all()
    assert actions[0, 0] <= 0


def test_demo_pulls_toward_demonstration_in_closure_mode():
    """With a flat objective and a demo better than every sample, the demo moves the estimate."""
    x = torch.zeros(2)
    demo = torch.tensor([0.6, -0.4])
    opt = MBDOptimizer([x], num_samples=64, num_steps=30, demo=demo, demo_sigma=0.1, demo_reward=1.0, seed=0)
    for _ in range(30):
        opt.step(lambda c: torch.zeros(c[0].shape[0]))
    assert (x - demo).abs().max() < 0.05
    assert opt.last_step.demo_wins.any()
    # a demo no better than the samples never wins: the estimate does not follow it
    y = torch.zeros(2)
    opt = MBDOptimizer([y], num_samples=64, num_steps=30, demo=demo, demo_sigma=0.1, demo_reward=0.0, seed=0)
    opt.step(lambda c: torch.zeros(c[0].shape[0]))
    assert not opt.last_step.demo_wins.any()


def test_per_coordinate_demo_sigma_in_closure_mode():
    """A huge sigma on one coordinate is the same as leaving it out of the demonstration's mask."""
    demo = torch.tensor([0.6, -0.4], dtype=torch.float64)

    def run(**options):
        x = torch.zeros(2, dtype=torch.float64)
        opt = MBDOptimizer([x], num_samples=64, num_steps=20, demo=demo, demo_reward=1.0, seed=0, **options)
        for _ in range(20):
            opt.step(lambda c: torch.zeros(c[0].shape[0], dtype=torch.float64))  # flat: the demo leads throughout
        return x

    loose = torch.tensor([0.05, 1e6], dtype=torch.float64)
    only_first = torch.tensor([True, False])
    # the mean over 2 covered entries halves the log-likelihood: sigma * sqrt(2) over 1 entry
    for units in ("logit", "reward"):
        a = run(demo_sigma=loose, demo_units=units)
        b = run(demo_sigma=0.05 * 2**0.5, demo_mask=only_first, demo_units=units)
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0)
        assert abs(a[0] - 0.6) < 0.05, units
        # the same float sigma on both coordinates pulls the second one too
        both = run(demo_sigma=0.05, demo_units=units)
        assert abs(both[1] + 0.4) < abs(a[1] + 0.4), units


def test_tensor_demo_sigma_equal_to_a_float_changes_nothing():
    """Rollout mode with a partial [H, k] demo: a constant sigma tensor gives the float's result bit for bit."""
    H = 6

    def rollout(actions):
        states = actions.cumsum(-2)  # [n, H, 2]
        return states[..., 0], states, None

    demo, mask = torch.full((H, 1), 0.5), torch.tensor([True, False])
    results = []
    for sigma in (0.2, torch.full((H, 1), 0.2), torch.tensor(0.2)):
        u = torch.zeros(H, 2)
        opt = MBDOptimizer([u], num_samples=32, num_steps=5, rollout=rollout, demo=demo, demo_mask=mask,
                           demo_sigma=sigma, demo_reward=5.0, seed=1)
        for _ in range(5):
            opt.step()
        results.append(u.clone())
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


def test_float64_and_dtype_kept():
    x = torch.zeros(4, dtype=torch.float64)
    opt = MBDOptimizer([x], num_samples=8, num_steps=3, seed=0)
    opt.step(lambda c: (c[0].dtype == torch.float64 or pytest.fail("candidates not float64")) and c[0].sum(-1))
    assert x.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_is_used():
    x = torch.zeros(4, device="cuda")
    opt = MBDOptimizer([x], num_samples=8, num_steps=3, seed=0)
    devices = []
    opt.step(lambda c: (devices.append(c[0].device.type) or c[0].sum(-1)))
    assert devices == ["cuda"] and x.device.type == "cuda"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(temperature=0.0), ValueError, "temperature"),
        (dict(temperature=-1.0), ValueError, "temperature"),
        (dict(temperature=float("nan")), ValueError, "temperature"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(num_samples=2.0), ValueError, "num_samples"),
        (dict(beta0=0.0), ValueError, "beta0"),
        (dict(beta1=1.5), ValueError, "beta1"),
        (dict(num_steps=0), ValueError, "num_steps"),
        (dict(noise="cosine"), ValueError, "noise"),
        (dict(fraction=0.0), ValueError, "fraction"),
        (dict(noise_scale=-1.0), ValueError, "noise_scale"),
        (dict(step_scale=0.0), ValueError, "step_scale"),
        (dict(bounds=(1.0, -1.0)), ValueError, "bounds"),
        (dict(bounds=(0.0,)), ValueError, "bounds"),
        (dict(bounds=(torch.zeros(3, dtype=torch.float64), 1.0)), ValueError, "bounds"),
        (dict(rollout=42), TypeError, "rollout"),
        (dict(generator=42), TypeError, "generator"),
        (dict(demo=torch.zeros(5)), ValueError, "demo"),
        (dict(demo_sigma=0.0), ValueError, "demo_sigma"),
        (dict(demo_units="nats"), ValueError, "demo_units"),
        (dict(demo=torch.zeros(3), demo_sigma=torch.tensor([0.1, 0.1])), ValueError, "demo_sigma"),
        (dict(demo=torch.zeros(3), demo_sigma=torch.tensor([0.1, 0.0, 0.1])), ValueError, "demo_sigma"),
        (dict(demo=torch.zeros(3), demo_sigma=torch.tensor([1, 1, 1])), TypeError, "demo_sigma"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MBDOptimizer([torch.zeros(3)], **kwargs)


def test_bad_params():
    with pytest.raises(TypeError, match="floating-point"):
        MBDOptimizer([torch.zeros(3, dtype=torch.int64)])
    with pytest.raises(ValueError, match="dtype"):
        MBDOptimizer([torch.zeros(3), torch.zeros(3, dtype=torch.float64)])
    with pytest.raises(ValueError, match="exactly one action tensor"):
        MBDOptimizer([torch.zeros(3)], rollout=toy_rollout)


def test_bad_closure_and_rollout_results():
    opt = MBDOptimizer([torch.zeros(3)], num_samples=8, seed=0)
    with pytest.raises(ValueError, match="closure"):
        opt.step(lambda c: torch.zeros(7))
    with pytest.raises(TypeError, match="closure"):
        opt.step(lambda c: 1.0)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    bad = MBDOptimizer([torch.zeros(5, 1)], num_samples=8, rollout=lambda a: Trajectory(torch.zeros(8, 5, 2), torch.zeros(8, 4)))
    with pytest.raises(ValueError, match="rewards"):
        bad.step()
    with pytest.raises(ValueError, match="without a closure"):
        bad.step(lambda c: torch.zeros(8))
