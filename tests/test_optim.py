import math
import warnings

import pytest
import torch

from torch_mbd import MBDOptimizer, Trajectory
from torch_mbd.optim import ConstantObjectiveWarning


def sphere(target):
    return lambda cands: ((cands[0] - target) ** 2).sum(-1)


def test_one_step_is_the_cross_entropy_method(device, dtype):
    """N = 1: the update is CEM's weighted mean of the samples (paper, section 4.1)."""
    x = torch.full((4,), 0.3, device=device, dtype=dtype)
    opt = MBDOptimizer([x], num_samples=50, temperature=0.7, num_steps=1, beta_first=0.04, seed=3)
    seen = {}

    def closure(cands):
        seen["samples"] = cands[0].clone()
        return (cands[0] ** 2).sum(-1) + torch.sin(5 * cands[0]).sum(-1)

    opt.step(closure)
    samples = seen["samples"]
    # the samples are N(x0, sigma^2) with sigma = sqrt(1 - alpha_bar_0) = sqrt(beta_first)
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


def test_identical_losses_do_not_divide_by_zero_and_warn_once():
    """A constant objective: uniform weights (no division by zero), one warning that names it."""
    x = torch.ones(5)
    opt = MBDOptimizer([x], num_samples=16, num_steps=5, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            opt.step(lambda c: torch.full((16,), 7.0))
            torch.testing.assert_close(opt.last_step.weights, torch.full((1, 16), 1 / 16))
    assert [w.category for w in caught] == [ConstantObjectiveWarning]
    assert "objective is constant" in str(caught[0].message)
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
    # temperature 0.1: "auto" (the default) has no temperature to find on a flat objective
    opt = MBDOptimizer([x], num_samples=64, num_steps=30, demo=demo, demo_sigma=0.1, demo_reward=1.0, seed=0,
                       temperature=0.1)
    for _ in range(30):
        opt.step(lambda c: torch.zeros(c[0].shape[0]))
    assert (x - demo).abs().max() < 0.05
    assert opt.last_step.demo_wins.any()
    # a demo no better than the samples never wins: the estimate does not follow it
    y = torch.zeros(2)
    opt = MBDOptimizer([y], num_samples=64, num_steps=30, demo=demo, demo_sigma=0.1, demo_reward=0.0, seed=0,
                       temperature=0.1)
    opt.step(lambda c: torch.zeros(c[0].shape[0]))
    assert not opt.last_step.demo_wins.any()


def test_per_coordinate_demo_sigma_in_closure_mode():
    """A huge sigma on one coordinate is the same as leaving it out of the demonstration's mask."""
    demo = torch.tensor([0.6, -0.4], dtype=torch.float64)

    def run(**options):
        x = torch.zeros(2, dtype=torch.float64)
        opt = MBDOptimizer([x], num_samples=64, num_steps=20, demo=demo, demo_reward=1.0, seed=0, temperature=0.1,
                           **options)
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
        (dict(beta_first=0.0), ValueError, "beta_first"),
        (dict(beta_last=1.5), ValueError, "beta_last"),
        (dict(num_steps=0), ValueError, "num_steps"),
        (dict(noise_convention="cosine"), ValueError, "noise_convention"),
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
    bad = MBDOptimizer([torch.zeros(5, 1)], num_samples=8,
                       rollout=lambda a: Trajectory(torch.zeros(8, 5, 2), torch.zeros(7, 5)))
    with pytest.raises(ValueError, match="rewards"):
        bad.step()
    with pytest.raises(ValueError, match="without a closure"):
        bad.step(lambda c: torch.zeros(8))


# --------------------------------------------------------------------------- robustness
import copy  # noqa: E402
import io  # noqa: E402

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TARGET = torch.tensor([0.5, -0.3, 0.2, 0.1])


def run_estimates(loss, dtype=torch.float32, steps=8, **options):
    """The estimate after each of ``steps`` steps of a 4-D problem, ``[steps, 4]`` (float64)."""
    x = torch.zeros(4, dtype=dtype)
    opt = MBDOptimizer([x], num_samples=32, num_steps=steps, seed=5, **options)
    out = []
    for _ in range(steps):
        opt.step(loss)
        out.append(x.double().clone())
    return torch.stack(out)


def sphere64(c):
    """The objective in float64 whatever the candidates' dtype (so only the optimizer's rounding differs)."""
    return ((c[0].double() - TARGET.double()) ** 2).sum(-1) + 0.3 * torch.sin(4 * c[0].double()).sum(-1)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    log_a=st.floats(-20, 20),
    shift=st.floats(-10, 10),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_estimates_are_invariant_to_affine_objectives(log_a, shift, dtype):
    """Same seed, ``a * f + b`` (a > 0, finite b): the same trajectory of estimates, up to float rounding.

    ``b = shift * a`` keeps ``b`` within what the objective's own dtype can resolve next to ``a * f``.
    """
    a = 10.0**log_a
    b = shift * a
    base = run_estimates(lambda c: sphere64(c).to(dtype), dtype)
    scaled = run_estimates(lambda c: (a * sphere64(c) + b).to(dtype), dtype)
    tol = 1e-3 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(scaled, base, rtol=0, atol=tol)


@pytest.mark.parametrize("scale", [1e-8, 1e19, 3e37])
def test_float32_objectives_of_any_scale_optimize(scale):
    """The spread tolerance is relative and nothing is squared in loss units: 1e-8 and 1e19 both optimize."""
    x = torch.zeros(4)
    opt = MBDOptimizer([x], num_samples=64, num_steps=30, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(30):
            opt.step(lambda c: scale * ((c[0] - TARGET) ** 2).sum(-1))
    assert (x - TARGET).abs().max() < 0.05


def test_constant_is_relative_to_the_loss_size():
    """Losses equal up to float rounding of their size are constant; a spread of 1e-30 around 0 is not."""
    x = torch.zeros(3, dtype=torch.float64)
    opt = MBDOptimizer([x], num_samples=16, num_steps=5, seed=0)
    with pytest.warns(ConstantObjectiveWarning):
        opt.step(lambda c: 1e6 + 1e-12 * c[0].sum(-1))  # 1e-12 next to 1e6: below float64 rounding
    y = torch.zeros(3, dtype=torch.float64)
    opt = MBDOptimizer([y], num_samples=16, num_steps=5, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step(lambda c: 1e-30 * c[0].sum(-1))
    assert not (opt.last_step.weights == 1 / 16).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_params_optimize_losses_of_a_few_hundred(dtype):
    """float16 / bfloat16 parameters: rewards, weights and the weighted mean are computed in float32."""
    x = torch.zeros(4, dtype=dtype)
    opt = MBDOptimizer([x], num_samples=64, num_steps=30, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(30):
            opt.step(lambda c: 300.0 * ((c[0].float() - TARGET) ** 2).sum(-1) + 400.0)
    assert x.dtype == dtype
    assert opt.last_step.weights.dtype == torch.float32 and opt.last_step.rewards.dtype == torch.float32
    assert (x.float() - TARGET).abs().max() < 0.05


def test_low_precision_rollout_with_demo():
    """float16 actions in rollout mode with a demonstration: states are compared in float32."""
    H = 5

    def rollout(actions):
        states = actions.float().cumsum(-2) * 100.0  # large states: float16 squares would overflow
        return -(states[..., 0] - 250.0).abs(), states, None

    u = torch.zeros(H, 2, dtype=torch.float16)
    demo = torch.full((H, 1), 50.0, dtype=torch.float16)
    opt = MBDOptimizer([u], num_samples=32, num_steps=10, rollout=rollout, demo=demo,
                       demo_mask=torch.tensor([False, True]), demo_reward=0.0, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(10):
            opt.step()
    assert torch.isfinite(u).all() and opt.last_step.demo_wins.any()


# ----- demonstrations
def test_all_invalid_first_step_does_not_switch_the_demo_off():
    """demo_reward=None waits for a step with a finite reward instead of taking -inf from an all-invalid one."""
    x = torch.zeros(2)
    demo = torch.tensor([0.6, -0.4])
    opt = MBDOptimizer([x], num_samples=32, num_steps=20, demo=demo, demo_sigma=0.1, seed=0)
    with pytest.warns(RuntimeWarning, match="infeasible or non-finite"):
        opt.step(lambda c: torch.full((32,), float("nan")))
    assert opt.demo_reward is None and not opt.last_step.demo_wins.any()
    opt.step(lambda c: 10.0 + (c[0] ** 2).sum(-1))  # the samples nearest the demo are not the best
    assert opt.demo_reward is not None and math.isfinite(opt.demo_reward)
    assert opt.last_step.demo_wins.any()


ROLLOUT_H = 4


def state_rollout(actions):
    states = actions.cumsum(-2)  # [..., n, H, 2]
    return -(states[..., 0] - 1.0).abs(), states, None


@pytest.mark.parametrize(
    "params, kwargs, error, match",
    [
        # closure mode
        ((3,), dict(demo=torch.tensor([0.0, float("nan"), 1.0])), ValueError, "NaN or infinite"),
        ((3,), dict(demo=torch.tensor([0.0, float("inf"), 1.0])), ValueError, "NaN or infinite"),
        ((3,), dict(demo=torch.zeros(3), demo_mask=torch.zeros(3, dtype=torch.bool)), ValueError, "covers no entry"),
        ((3,), dict(demo=torch.zeros(3), demo_mask=torch.ones(2, dtype=torch.bool)), ValueError, "demo_mask"),
        ((3,), dict(demo=torch.zeros(3), demo_mask=torch.ones(3)), TypeError, "demo_mask"),
        ((3,), dict(demo=torch.zeros(3), demo_reward=float("nan")), ValueError, "demo_reward"),
        ((3,), dict(demo=torch.zeros(3), demo_reward=float("inf")), ValueError, "demo_reward"),
        ((3,), dict(demo=torch.zeros(3), demo_reward="1.0"), ValueError, "demo_reward"),
        ((3,), dict(demo=[0.0, 0.0, 0.0]), TypeError, "demo"),
        # rollout mode
        ((ROLLOUT_H, 2), dict(demo=torch.zeros(2)), ValueError, "demo"),
        ((ROLLOUT_H, 2), dict(demo=torch.zeros(ROLLOUT_H, 3), demo_mask=torch.tensor([True, False])),
         ValueError, "demo has 3"),
        ((ROLLOUT_H, 2), dict(demo=torch.zeros(ROLLOUT_H, 2), demo_mask=torch.ones(ROLLOUT_H + 1, 2, dtype=torch.bool)),
         ValueError, "demo_mask"),
        ((ROLLOUT_H, 2), dict(demo=torch.zeros(ROLLOUT_H, 2), demo_mask=torch.ones(2, 2, 2, dtype=torch.bool)),
         ValueError, "demo_mask"),
        ((2, ROLLOUT_H, 2), dict(demo=torch.zeros(3, ROLLOUT_H, 2)), ValueError, "batch dimensions"),
        ((ROLLOUT_H, 2), dict(demo=torch.full((ROLLOUT_H, 2), float("nan")), demo_mask=torch.tensor([True, False])),
         ValueError, "NaN"),
        ((ROLLOUT_H, 2), dict(demo=torch.zeros(ROLLOUT_H, 1), demo_mask=torch.tensor([False, False])),
         ValueError, "covers no entry"),
    ],
)
def test_bad_demonstrations_are_refused_at_construction(params, kwargs, error, match):
    rollout = state_rollout if len(params) >= 2 else None
    with pytest.raises(error, match=match):
        MBDOptimizer([torch.zeros(params)], rollout=rollout, **kwargs)


def test_nan_outside_the_mask_is_allowed():
    demo = torch.tensor([[0.5, float("nan")]] * ROLLOUT_H)
    u = torch.zeros(ROLLOUT_H, 2)
    opt = MBDOptimizer([u], num_samples=16, num_steps=3, rollout=state_rollout, demo=demo,
                       demo_mask=torch.tensor([True, False]), demo_reward=1.0, seed=0)
    opt.step()
    assert torch.isfinite(u).all() and opt.last_step.demo_wins.any()
    # a NumPy demonstration is taken in the params' dtype
    opt = MBDOptimizer([torch.zeros(3)], num_samples=8, demo=np.zeros(3), demo_reward=0.0, seed=0)
    assert opt.demonstration.demo.dtype == torch.float32


def test_a_demo_of_other_length_than_the_states_is_refused_at_the_first_step():
    opt = MBDOptimizer([torch.zeros(ROLLOUT_H, 2)], num_samples=8, rollout=state_rollout, seed=0,
                       demo=torch.zeros(ROLLOUT_H + 1, 2))
    with pytest.raises(ValueError, match="demo describes 5 steps"):
        opt.step()


def test_a_demo_may_describe_more_steps_than_the_decision_variables():
    # e.g. 2 knots standing for 4 control steps: the demo has one state per control step
    def knot_rollout(knots):
        controls = knots.repeat_interleave(2, dim=-2)  # [..., n, 4, 2]
        return state_rollout(controls)

    opt = MBDOptimizer([torch.zeros(2, 2)], num_samples=8, num_steps=2, rollout=knot_rollout, seed=0,
                       demo=torch.ones(ROLLOUT_H, 2), demo_reward=1.0)
    opt.step()
    assert opt.last_step.demo_wins.any()


def test_rollout_without_states_and_a_demo_is_a_clear_error():
    opt = MBDOptimizer([torch.zeros(ROLLOUT_H, 2)], num_samples=8, demo=torch.zeros(ROLLOUT_H, 2), seed=0,
                       rollout=lambda a: Trajectory(states=None, rewards=a.sum(-1)))
    with pytest.raises(ValueError, match="no states"):
        opt.step()
    # without a demo, no states are needed
    free = MBDOptimizer([torch.zeros(ROLLOUT_H, 2)], num_samples=8, seed=0,
                        rollout=lambda a: Trajectory(states=None, rewards=a.sum(-1)))
    free.step()


# ----- bounds
@pytest.mark.parametrize(
    "bounds, match",
    [
        ((torch.tensor([0.0, float("nan"), 0.0]), 1.0), "NaN"),
        ((-1.0, torch.tensor([1.0, float("nan"), 1.0])), "NaN"),
        ((float("nan"), 1.0), "bounds lower"),
        ((math.inf, math.inf), "bounds lower"),
        ((-1.0, -math.inf), "bounds upper"),
        ((torch.tensor([0.0, math.inf, 0.0]), math.inf), "bounds lower"),
        ((torch.zeros(4), 1.0), "shape"),
        ((-1.0, torch.ones(2, 3)), "shape"),
        ((torch.zeros(3, dtype=torch.int64), 1.0), "floating-point"),
        (("a", 1.0), "bounds lower"),
        ((torch.ones(3), torch.zeros(3)), "lower must be <= upper"),
    ],
)
def test_bad_bounds_are_refused_at_construction(bounds, match):
    with pytest.raises(ValueError, match=match):
        MBDOptimizer([torch.zeros(3)], bounds=bounds)


def test_infinite_bound_leaves_a_coordinate_unbounded():
    """``-inf`` / ``inf`` in a bounds tensor: that coordinate is free on that side, the others are clipped."""
    target = torch.tensor([-3.0, 0.5, 4.0])
    x = torch.zeros(3)
    lower = torch.tensor([-math.inf, 0.0, 0.0])
    upper = torch.tensor([1.0, 1.0, math.inf])
    opt = MBDOptimizer([x], num_samples=64, num_steps=60, bounds=(lower, upper), seed=0)
    for _ in range(60):
        opt.step(lambda c: ((c[0] - target) ** 2).sum(-1))
        samples = opt.last_step.samples[0]
        assert (samples >= lower).all() and (samples <= upper).all()
    # coordinate 0 reaches -3 below no bound, 2 goes past 1 (only its lower bound 0 holds), 1 is clipped
    assert x[0] < -1.5 and x[2] > 1.5 and 0.0 <= x[1] <= 1.0
    # in rollout mode a bounds tensor broadcasts over [H, nu] (batch dimensions excluded)
    u = torch.zeros(2, ROLLOUT_H, 2)
    MBDOptimizer([u], rollout=state_rollout, bounds=(torch.tensor([-math.inf, -1.0]), 1.0), num_samples=8).step()


def test_numpy_bounds_numbers():
    x = torch.zeros(3)
    opt = MBDOptimizer([x], num_samples=16, num_steps=3, bounds=(np.float32(-0.1), np.float64(0.1)), seed=0)
    opt.step(lambda c: c[0].sum(-1))
    assert opt.param_groups[0]["bounds"] == (pytest.approx(-0.1), 0.1)
    assert (x.abs() <= 0.1 + 1e-6).all()


# ----- empty, numpy scalars, seeds, devices
def test_empty_problems_are_refused():
    with pytest.raises(ValueError, match="empty batch"):
        MBDOptimizer([torch.zeros(0, ROLLOUT_H, 2)], rollout=state_rollout)
    with pytest.raises(ValueError, match="no element"):
        MBDOptimizer([torch.zeros(ROLLOUT_H, 0)], rollout=state_rollout)
    with pytest.raises(ValueError, match="no element"):
        MBDOptimizer([torch.zeros(0), torch.zeros(0, 3)])


def test_a_single_sample_is_followed():
    x = torch.zeros(3)
    opt = MBDOptimizer([x], num_samples=1, num_steps=5, seed=0)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one valid sample is not a "constant objective"
        opt.step(lambda c: (seen.append(c[0].clone()) or c[0].sum(-1)))
    torch.testing.assert_close(x, seen[0][0])


def test_numpy_scalars_are_accepted_everywhere():
    def run(**numbers):
        x = torch.zeros(3)
        opt = MBDOptimizer([x], seed=numbers.pop("seed"), **numbers)
        for _ in range(3):
            opt.step(lambda c: ((c[0] - 0.2) ** 2).sum(-1))
        return x

    plain = dict(temperature=0.25, num_samples=8, num_steps=4, beta_first=1e-3, beta_last=2e-2, step_scale=0.5,
                 noise_scale=0.8, fraction=1.0, seed=3)
    numpy = dict(temperature=np.float32(0.25), num_samples=np.int64(8), num_steps=np.int32(4), beta_first=np.float64(1e-3),
                 beta_last=np.float32(2e-2), step_scale=np.float16(0.5), noise_scale=np.float64(0.8),
                 fraction=np.float64(1.0), seed=np.uint64(3))
    torch.testing.assert_close(run(**numpy), run(**plain), rtol=1e-6, atol=1e-7)  # np.float32(2e-2) != 2e-2 exactly


@pytest.mark.parametrize("seed", [1.5, "abc", 2**70, -1, True, np.float64(2.0)])
def test_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        MBDOptimizer([torch.zeros(3)], seed=seed)


def test_meta_device_params_are_refused():
    with pytest.raises(ValueError, match="meta"):
        MBDOptimizer([torch.zeros(3, device="meta")])


def test_bool_and_complex_losses_are_refused_integer_accepted():
    opt = MBDOptimizer([torch.zeros(3)], num_samples=8, seed=0)
    with pytest.raises(TypeError, match="real"):
        opt.step(lambda c: torch.zeros(8, dtype=torch.bool))
    with pytest.raises(TypeError, match="real"):
        opt.step(lambda c: torch.zeros(8, dtype=torch.complex64))
    opt.step(lambda c: torch.arange(8))
    assert opt.last_step.weights[0, 0] > opt.last_step.weights[0, -1]  # loss 0 beats loss 7


# ----- state_dict
def fresh(x, **options):
    base = dict(num_samples=8, num_steps=10, seed=123)
    base.update(options)
    return MBDOptimizer([x], **base)


def test_state_dict_refuses_other_shapes_and_missing_keys():
    opt = fresh(torch.zeros(3))
    opt.step(lambda c: c[0].sum(-1))
    state = opt.state_dict()
    with pytest.raises(ValueError, match="shapes"):
        fresh(torch.zeros(4)).load_state_dict(state)
    broken = copy.deepcopy(state)
    del broken["sampling"]["rng_state"]
    with pytest.raises(ValueError, match="rng_state"):
        fresh(torch.zeros(3)).load_state_dict(broken)
    broken = copy.deepcopy(state)
    del broken["param_groups"]
    with pytest.raises(ValueError, match="param_groups"):
        fresh(torch.zeros(3)).load_state_dict(broken)
    with pytest.raises(TypeError, match="dict"):
        fresh(torch.zeros(3)).load_state_dict([1, 2])


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s["param_groups"][0].update(bounds=(1.0, -1.0)), "lower must be <= upper"),
        (lambda s: s["param_groups"][0].update(bounds=(torch.zeros(5), 1.0)), "shape"),
        (lambda s: s["param_groups"][0].update(fraction=1.5), "fraction"),
        (lambda s: s["param_groups"][0].update(noise_scale=-1.0), "noise_scale"),
        (lambda s: s["sampling"].update(temperature=0.0), "temperature"),
        (lambda s: s["sampling"].update(steps_done=-3), "steps_done"),
        (lambda s: s["sampling"].update(demo_reward=float("nan")), "demo_reward"),
        (lambda s: s["sampling"].update(rng_state=torch.zeros(3, dtype=torch.uint8)), "rng_state"),
        (lambda s: s["param_groups"].append(dict(s["param_groups"][0])), "param groups"),
    ],
)
def test_a_rejected_state_dict_changes_nothing(edit, match):
    """Every restored option is checked as the constructor checks it, before anything changes."""
    x = torch.zeros(3)
    donor = fresh(x.clone(), bounds=(-1.0, 1.0), temperature=0.3)
    for _ in range(3):
        donor.step(lambda c: c[0].sum(-1))
    state = copy.deepcopy(donor.state_dict())
    edit(state)
    target = fresh(x, bounds=(-2.0, 2.0), temperature=0.7)
    target.step(lambda c: c[0].sum(-1))
    before = copy.deepcopy(target.state_dict())
    with pytest.raises(ValueError, match=match):
        target.load_state_dict(state)
    after = target.state_dict()
    assert after["sampling"]["steps_done"] == before["sampling"]["steps_done"] == 1
    assert torch.equal(after["sampling"]["rng_state"], before["sampling"]["rng_state"])
    assert after["param_groups"] == before["param_groups"] and target.temperature == 0.7


def test_state_dict_restores_the_temperature():
    donor = fresh(torch.zeros(3), temperature=0.05)
    target = fresh(torch.zeros(3), temperature=2.0)
    target.load_state_dict(donor.state_dict())
    assert target.temperature == 0.05
    # a state without the temperature is incomplete: refused by name, nothing changed
    old = donor.state_dict()
    del old["sampling"]["temperature"]
    older = fresh(torch.zeros(3), temperature=2.0)
    with pytest.raises(ValueError, match="lacks.*temperature"):
        older.load_state_dict(old)
    assert older.temperature == 2.0
    with pytest.raises(ValueError, match="state"):
        older.load_state_dict(dict(donor.state_dict(), state=[]))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    num_samples=st.integers(1, 12),
    num_steps=st.integers(1, 6),
    before=st.integers(0, 7),
    temperature=st.floats(0.01, 2.0),
    noise=st.sampled_from(["official", "paper"]),
    bounded=st.booleans(),
    fraction=st.sampled_from([1.0, 0.5]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    rollout_mode=st.booleans(),
)
def test_state_dict_round_trip_is_bit_identical(
    num_samples, num_steps, before, temperature, noise, bounded, fraction, dtype, rollout_mode
):
    """Save after ``before`` steps, load into a fresh optimizer (other seed, other temperature): the next
    steps are identical bit for bit, in closure or rollout mode (with a demonstration there)."""
    shape = (2, ROLLOUT_H, 2) if rollout_mode else (5,)
    options = dict(num_samples=num_samples, num_steps=num_steps, noise_convention=noise, temperature=temperature,
                   bounds=(-0.8, 0.9) if bounded else None)
    if rollout_mode:
        options.update(rollout=state_rollout, demo=torch.full((ROLLOUT_H, 1), 0.5, dtype=dtype),
                       demo_mask=torch.tensor([True, False]))
    else:
        options.update(fraction=fraction)

    def step(opt):
        return opt.step() if rollout_mode else opt.step(lambda c: torch.cos(3 * c[0]).sum(-1) + (c[0] ** 2).sum(-1))

    x = torch.full(shape, 0.1, dtype=dtype)
    opt = MBDOptimizer([x], seed=7, **options)
    for _ in range(before):
        step(opt)
    buffer = io.BytesIO()
    torch.save({"x": x.clone(), "opt": opt.state_dict()}, buffer)
    expected = []
    for _ in range(3):
        step(opt)
        expected.append(x.clone())
    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=False)
    y = ckpt["x"]
    resumed = MBDOptimizer([y], seed=99, **dict(options, temperature=1.0))
    resumed.load_state_dict(ckpt["opt"])
    for k in range(3):
        step(resumed)
        assert torch.equal(y, expected[k]), k


def test_a_rejected_param_group_is_not_added():
    x, y = torch.zeros(3), torch.zeros(2)
    opt = MBDOptimizer([x], num_samples=8, seed=0)
    for bad, match in ((dict(fraction=2.0), "fraction"), (dict(noise_scale=float("nan")), "noise_scale"),
                       (dict(bounds=(torch.zeros(3), 1.0)), "shape")):
        with pytest.raises(ValueError, match=match):
            opt.add_param_group({"params": [y], **bad})
        assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [y], "fraction": np.float32(0.5), "bounds": (-1.0, np.float64(1.0))})
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["fraction"] == 0.5
    opt.step(lambda c: c[0].sum(-1) + c[1].sum(-1))


# --------------------------------------------------------------------------- a tensor noise_scale
# (per method: tests/test_sampling.py)
def test_a_closure_mode_tensor_noise_scale():
    x = torch.zeros(3, 2)
    opt = MBDOptimizer([dict(params=[x], noise_scale=torch.tensor([1.0, 0.0]))], num_samples=16, num_steps=3, seed=0)
    seen = []
    opt.step(lambda c: (seen.append(c[0].clone()) or c[0].sum((1, 2))))
    assert (seen[0][..., 1] == 0).all() and (seen[0][..., 0] != 0).all()


@pytest.mark.parametrize(
    "scale, match",
    [
        (torch.ones(ROLLOUT_H + 1, 1), "does not broadcast"),
        (torch.ones(2, ROLLOUT_H, 2), "does not broadcast"),
        (torch.tensor([[1.0], [-1.0], [1.0], [1.0]]), ">= 0"),
        (torch.tensor([[1.0], [math.nan], [1.0], [1.0]]), ">= 0"),
        (torch.tensor([[1.0], [math.inf], [1.0], [1.0]]), ">= 0"),
        (torch.ones(ROLLOUT_H, 1, dtype=torch.float64), "dtype"),
        (torch.ones(ROLLOUT_H, 1, dtype=torch.int64), "floating-point"),
    ],
)
def test_bad_tensor_noise_scales_are_refused(scale, match):
    with pytest.raises(ValueError, match=f"Invalid noise_scale.*{match}"):
        MBDOptimizer([dict(params=[torch.zeros(ROLLOUT_H, 2)], noise_scale=scale)], rollout=state_rollout)


def test_a_tensor_noise_scale_round_trips_through_the_state_dict():
    scale = torch.tensor([[0.5], [1.0], [1.5], [2.0]])

    def fresh_opt(s):
        u = torch.zeros(ROLLOUT_H, 2)
        group = dict(params=[u], noise_scale=s)
        return u, MBDOptimizer([group], num_samples=8, num_steps=4, rollout=state_rollout, seed=0)

    u, opt = fresh_opt(scale)
    opt.step()
    buffer = io.BytesIO()
    torch.save({"u": u.clone(), "opt": opt.state_dict()}, buffer)
    opt.step()
    expected = u.clone()
    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=False)
    v, other = fresh_opt(1.0)
    v.copy_(ckpt["u"])
    other.load_state_dict(ckpt["opt"])
    assert torch.equal(other.param_groups[0]["noise_scale"], scale)
    other.step()
    assert torch.equal(v, expected)
    # a bad saved one is refused, naming the group and the option
    state = opt.state_dict()
    state["param_groups"][0]["noise_scale"] = -scale
    with pytest.raises(ValueError, match="param group 0.*noise_scale"):
        other.load_state_dict(state)


# ----------------------------------------------------------------------------- a custom demonstration likelihood
def _point_rollout(actions):
    """A 2-D point whose velocity is the action: states = positions ``[..., n, H, 2]``, reward = x."""
    pos = torch.cumsum(actions, dim=-2) * 0.1
    return Trajectory(states=pos, rewards=pos[..., 0], feasible=None)


def _along_y(states):
    """A demo log-likelihood ``[B, n, H, 2] -> [B, n]``: stay on the y axis; NaN for samples going -y."""
    loglik = -states[..., 0].square().mean(-1)
    return torch.where(states[..., -1, 1] < 0, torch.full_like(loglik, float("nan")), loglik)


@pytest.mark.parametrize("units", ["logit", "reward"])
def test_demo_log_likelihood_callable_goes_through_the_max_rule(units):
    from torch_mbd import denoise

    actions = torch.zeros(2, 6, 2)  # two problems: the callable sees [B=2, n, H, 2]
    seen = []

    def loglik(states):
        seen.append(states.clone())
        return _along_y(states)

    opt = MBDOptimizer(
        [actions], num_samples=16, temperature=0.5, num_steps=3, rollout=_point_rollout, seed=0,
        demo_log_likelihood=loglik, demo_reward=0.05, demo_units=units,
    )
    won = excluded = 0
    for _ in range(3):
        opt.step()
        info = opt.last_step
        states = seen[-1]
        assert states.shape == (2, 16, 6, 2)
        torch.testing.assert_close(states, info.trajectory.states)
        logp, mean, std = denoise.normalized_log_weights(info.rewards, 0.5)
        scores = torch.nan_to_num(_along_y(states), nan=-math.inf)  # NaN: no demo weight, as the Gaussian's -inf
        expected, wins = denoise.demo_log_weights(logp, scores, 0.05, mean, std, 0.5, units)
        assert torch.equal(info.demo_wins, wins)
        torch.testing.assert_close(info.weights, torch.softmax(expected, -1))
        # no demo weight where the callable gave NaN
        nan = states[..., -1, 1] < 0
        assert not bool(info.demo_wins[nan].any())
        won, excluded = won + int(info.demo_wins.sum()), excluded + int(nan.sum())
    assert won > 0 and excluded > 0


def test_demo_log_likelihood_callable_decides_where_the_demo_wins():
    def sharp(states):
        return 100 * _along_y(states)

    actions = torch.zeros(5, 2, dtype=torch.float64)
    opt = MBDOptimizer(
        [actions], num_samples=32, temperature=0.1, num_steps=2, rollout=_point_rollout, seed=1,
        demo_log_likelihood=sharp, demo_reward=10.0,  # a demo far better than any sample
    )
    opt.step()
    info = opt.last_step
    states = info.trajectory.states.unsqueeze(0)
    scores = sharp(states)
    assert torch.equal(info.demo_wins, torch.isfinite(scores))  # every scored sample, none of the NaN ones
    assert 0 < int(info.demo_wins.sum()) < 32
    # "logit": the winners share the demo's lead, so their weights follow exp(log-likelihood); the rest ~ 0
    wins = info.demo_wins
    torch.testing.assert_close(info.weights[wins], torch.softmax(scores[wins], -1))
    assert float(info.weights[~wins].sum()) < 1e-12
    # the callable is not saved: the state_dict is the one without it, and restores with it given again
    other_actions = torch.zeros(5, 2, dtype=torch.float64)
    other = MBDOptimizer(
        [other_actions], num_samples=32, temperature=0.1, num_steps=2, rollout=_point_rollout, seed=7,
        demo_log_likelihood=sharp, demo_reward=3.0,
    )
    state = opt.state_dict()
    assert "demo_log_likelihood" not in state["sampling"]
    other_actions.copy_(actions)
    other.load_state_dict(state)
    opt.step()
    other.step()
    assert torch.equal(other_actions, actions)


def test_demo_log_likelihood_callable_with_demo_reward_none_takes_the_first_best():
    actions = torch.zeros(4, 2)
    opt = MBDOptimizer(
        [actions], num_samples=8, num_steps=2, rollout=_point_rollout, seed=0, demo_log_likelihood=_along_y
    )
    opt.step()
    assert opt.demo_reward == float(opt.last_step.rewards.max())
    assert opt.last_step.demo_wins.shape == (1, 8)


def test_demo_log_likelihood_bad_callables_are_refused():
    def make(loglik, **kw):
        return MBDOptimizer(
            [torch.zeros(4, 2)], num_samples=8, num_steps=2, rollout=kw.pop("rollout", _point_rollout), seed=0,
            demo_log_likelihood=loglik, **kw,
        )

    with pytest.raises(TypeError, match="demo_log_likelihood must be callable"):
        make(torch.zeros(1, 8))
    with pytest.raises(ValueError, match="demo_log_likelihood needs rollout mode"):
        MBDOptimizer([torch.zeros(3)], num_samples=8, demo_log_likelihood=_along_y)
    with pytest.raises(ValueError, match="not both"):
        make(_along_y, demo=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="not both"):
        make(_along_y, demo_mask=torch.tensor([True, False]))
    cases = [
        (lambda s: _along_y(s)[0], ValueError, r"shape \(1, 8\).*got \(8,\)"),
        (lambda s: _along_y(s).T, ValueError, r"shape \(1, 8\).*got \(8, 1\)"),
        (lambda s: _along_y(s).tolist(), TypeError, "must return a tensor.*got list"),
        (lambda s: torch.zeros(1, 8, dtype=torch.long), TypeError, "floating-point.*int64"),
        (lambda s: torch.zeros(1, 8, device="meta"), ValueError, "on meta, params are on cpu"),
    ]
    for loglik, error, words in cases:
        with pytest.raises(error, match=words):
            make(loglik).step()

    def no_states(actions):
        return Trajectory(states=None, rewards=actions[..., 0], feasible=None)

    with pytest.raises(ValueError, match="no states.*demo_log_likelihood"):
        make(_along_y, rollout=no_states).step()


# ----------------------------------------------------------------------------- renamed options
def test_the_old_schedule_option_names_still_work_and_warn():
    new = MBDOptimizer([torch.zeros(2)], num_steps=5, beta_first=2e-3, beta_last=3e-2, noise_convention="paper", seed=0)
    with pytest.warns(DeprecationWarning) as record:
        old = MBDOptimizer([torch.zeros(2)], num_steps=5, beta0=2e-3, beta1=3e-2, noise="paper", seed=0)
    assert sorted(str(w.message).split(":")[1].split("=")[0].strip() for w in record) == ["beta0", "beta1", "noise"]
    assert {w.filename for w in record} == {__file__}
    assert torch.equal(old.schedule.sigmas, new.schedule.sigmas) and old.noise_convention == "paper"
    assert old.beta_first == 2e-3 and old.beta_last == 3e-2
    with pytest.warns(DeprecationWarning, match="MBDOptimizer.beta0 is deprecated, use .beta_first"):
        assert old.beta0 == 2e-3
    with pytest.warns(DeprecationWarning, match="use .noise_convention"):
        assert old.noise == "paper"
    with pytest.raises(TypeError, match="both beta0= and beta_first="), pytest.warns(DeprecationWarning):
        MBDOptimizer([torch.zeros(2)], beta0=2e-3, beta_first=2e-3)
    with pytest.raises(TypeError, match="unexpected option.*beta2"):
        MBDOptimizer([torch.zeros(2)], beta2=0.1)

def test_a_closure_mode_demo_with_two_parameters_names_the_cause():
    with pytest.raises(ValueError, match=r"demo needs exactly one parameter, got 2 \(\(2,\), \(2,\)\)"):
        MBDOptimizer([torch.zeros(2), torch.zeros(2)], demo=torch.zeros(2))
    with pytest.raises(ValueError, match=r"shape of the single parameter \(2,\), got \(3,\)"):
        MBDOptimizer([torch.zeros(2)], demo=torch.zeros(3))
