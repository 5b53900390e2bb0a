"""The shared loop (torch_mbd.sampling.SamplingOptimizer), run over every method of the table.

Each generic test (bounds, NaN, groups, resume, keep-best, devices, dtypes, warnings, bad
parameters) is parameterized over ``tests/_methods.py``'s table, built from ``torch_mbd.METHODS``.
"""

from __future__ import annotations

import ast
import copy
import io
import math
import pathlib
import warnings

import pytest
import torch
from _methods import FLAGS, TABLE, method_params

import torch_mbd
from torch_mbd import (
    METHODS,
    CEMOptimizer,
    MBDOptimizer,
    SamplingOptimizer,
    Trajectory,
    UpdateResult,
    minimize,
    plan,
    register_method,
)
from torch_mbd.cem import elite_log_weights
from torch_mbd.denoise import weighted_mean

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = torch.tensor([0.5, -0.3, 0.2])
H = 4


def sphere(c):
    return ((c[0] - TARGET.to(c[0].dtype)) ** 2).sum(-1)


def state_rollout(actions):
    """x_{t+1} = x_t + u_t / 2 in 2-D, reward toward (1, -0.5); samples leaving |x| < 0.9 are infeasible."""
    states = torch.cumsum(actions * 0.5, dim=-2)
    rewards = -((states - torch.tensor([1.0, -0.5], dtype=states.dtype)) ** 2).sum(-1)
    return Trajectory(states=states, rewards=rewards, feasible=states[..., 0].abs().amax(-1) < 0.9)


def make(m, params, **options):
    options.setdefault("num_samples", 16)
    options.setdefault("num_steps", 6)
    options.setdefault("seed", 0)
    return m.cls(params, **options)


# --------------------------------------------------------------------------- the table itself
def test_every_registered_method_has_a_row_in_the_test_table():
    assert set(FLAGS) == set(METHODS), "give a new method its flags in tests/_methods.py"


def test_the_methods_are_siblings_over_the_shared_loop():
    for m in TABLE:
        assert issubclass(m.cls, SamplingOptimizer) and m.cls.method == m.name
        assert issubclass(m.cls, MBDOptimizer) == (m.name == "mbd")
    assert not isinstance(CEMOptimizer([torch.zeros(2)]), MBDOptimizer)


def test_the_cli_offers_exactly_the_table():
    from torch_mbd.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    (action,) = [a for a in sub.choices["plan"]._actions if a.dest == "method"]
    assert tuple(action.choices) == tuple(METHODS)


# --------------------------------------------------------------------------- generic behaviour
@pytest.mark.parametrize("m", method_params())
def test_improves_a_closure_objective(m):
    x = torch.zeros(3, dtype=torch.float64)
    opt = make(m, [x], num_samples=32, num_steps=30)
    start = float(sphere([x[None]]))
    for _ in range(30):
        opt.step(sphere)
    assert float(sphere([x[None]])) < 0.5 * start


@pytest.mark.parametrize("m", method_params())
def test_same_seed_same_run(m):
    runs = [minimize(lambda x: ((x - 0.3) ** 2).sum(-1), torch.zeros(4), num_samples=16, num_steps=8, seed=7,
                     progress=False, method=m.name) for _ in range(2)]
    assert torch.equal(runs[0].x, runs[1].x) and torch.equal(runs[0].history.best, runs[1].history.best)


@pytest.mark.parametrize("m", method_params())
def test_bounds_hold_for_every_sample_and_the_estimate(m):
    lower = torch.tensor([[-0.2, -1.0]] * H)
    u = torch.zeros(2, H, 2)
    opt = make(m, [u], rollout=state_rollout, bounds=(lower, 0.3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(6):
            opt.step()
            s = opt.last_step.samples.reshape(2, -1, H, 2)
            assert (s >= lower).all() and (s <= 0.3).all()
            assert (u >= lower - 1e-6).all() and (u <= 0.3 + 1e-6).all()  # a mean of samples in bounds, rounded


@pytest.mark.parametrize("m", method_params())
def test_nan_losses_never_reach_the_parameters_and_all_nan_keeps_the_estimate(m):
    x = torch.zeros(3)

    def half_nan(c):
        loss = sphere(c)
        loss[1] = math.inf
        return torch.where(c[0][:, 0] > 0.0, torch.full_like(loss, math.nan), loss)

    opt = make(m, [x])
    for _ in range(4):
        opt.step(half_nan)
        assert torch.isfinite(x).all()
    before = x.clone()
    with pytest.warns(RuntimeWarning, match="keeping the previous estimate") as record:
        opt.step(lambda c: torch.full((c[0].shape[0],), math.nan))
    assert torch.equal(x, before)
    assert {w.filename for w in record} == {__file__}  # the warning names this line, not the library


@pytest.mark.parametrize("m", method_params())
def test_a_group_with_zero_noise_never_moves(m):
    x, y = torch.zeros(3), torch.full((2,), 0.25)
    groups = [dict(params=[x]), dict(params=[y], noise_scale=0.0)]
    opt = make(m, groups)
    for _ in range(4):
        opt.step(lambda c: sphere([c[0]]) + (c[1] ** 2).sum(-1))
    torch.testing.assert_close(y, torch.full((2,), 0.25), rtol=0, atol=1e-6)  # MBD's reverse step rounds
    assert (x - torch.zeros(3)).abs().max() > 1e-3


@pytest.mark.parametrize("m", method_params())
def test_a_uniform_tensor_noise_scale_equals_the_number(m):
    def run(scale):
        u = torch.zeros(2, H, 2)
        opt = make(m, [dict(params=[u], noise_scale=scale)], num_samples=8, rollout=state_rollout)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for _ in range(3):
                opt.step()
        return u

    assert torch.equal(run(0.5), run(torch.full((H, 1), 0.5)))


@pytest.mark.parametrize("m", method_params(lambda m: m.name != "cmaes"))  # pycma draws its own samples
def test_a_tensor_noise_scale_multiplies_sigma_per_coordinate(m):
    scale = torch.tensor([[0.0], [1.0], [2.0], [4.0]])  # [H, 1]: later controls noisier, the first frozen
    u = torch.zeros(H, 2)
    opt = make(m, [dict(params=[u], noise_scale=scale)], num_samples=4000, rollout=state_rollout)
    opt.step()
    noise = opt.last_step.samples[0].reshape(4000, H, 2)  # around the zero estimate
    spread = noise.std(dim=(0, 2))
    assert spread[0].item() == 0.0
    assert (spread[1:] / spread[1]).tolist() == pytest.approx([1.0, 2.0, 4.0], rel=0.05)


@pytest.mark.parametrize("m", method_params())
def test_the_best_is_kept_per_problem(m):
    u = torch.zeros(3, H, 2)
    opt = make(m, [u], rollout=state_rollout)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(4):
            opt.step()
    best = opt.best_params()[0]
    rewards = state_rollout(best.unsqueeze(-3))
    again = torch.where(rewards.feasible, rewards.rewards.mean(-1), -math.inf).squeeze(-1)
    torch.testing.assert_close(again, opt.best_reward.reshape(3), rtol=0, atol=1e-6)


@pytest.mark.parametrize("m", method_params())
def test_dtypes_are_kept(m, device, dtype):
    x = torch.zeros(3, dtype=dtype, device=device)
    opt = make(m, [x])
    for _ in range(3):
        loss = opt.step(sphere)
    assert x.dtype == dtype and x.device == device and torch.isfinite(x).all()
    assert opt.last_step.samples.dtype == dtype and torch.isfinite(loss)


@pytest.mark.parametrize("m", method_params())
def test_float16_params_run(m):
    x = torch.full((3,), -0.5, dtype=torch.float16)
    opt = make(m, [x])
    for _ in range(4):
        opt.step(lambda c: sphere([c[0].float()]))
    assert x.dtype == torch.float16 and torch.isfinite(x).all()


# --------------------------------------------------------------------------- state_dict
def _run(m, steps_before, steps_after, state=None):
    u = torch.zeros(2, H, 2, dtype=torch.float64)
    opt = make(m, [u], num_steps=8, rollout=state_rollout, bounds=(-1.0, 1.0))
    if state is not None:
        u.copy_(state[0])
        opt.load_state_dict(state[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(steps_before):
            opt.step()
        snapshot = (u.clone(), opt.state_dict())
        for _ in range(steps_after):
            opt.step()
    return u, snapshot, opt


@pytest.mark.parametrize("m", method_params())
def test_an_in_memory_state_dict_resumes_bit_for_bit_after_more_steps(m):
    """The state_dict is a deep copy: steps taken after it (CMA-ES's strategies too) do not change it."""
    uninterrupted, snapshot, _ = _run(m, 3, 3)
    resumed, _, _ = _run(m, 0, 3, state=snapshot)
    assert torch.equal(uninterrupted, resumed)


@pytest.mark.parametrize("m", method_params())
def test_a_saved_state_dict_resumes_bit_for_bit(m):
    uninterrupted, (u, state), _ = _run(m, 2, 2)
    buffer = io.BytesIO()
    torch.save((u, state), buffer)
    buffer.seek(0)
    resumed, _, _ = _run(m, 0, 2, state=torch.load(buffer, weights_only=False))
    assert torch.equal(uninterrupted, resumed)


@pytest.mark.parametrize("m", method_params())
def test_another_methods_state_is_refused_naming_both(m):
    _, (u, state), _ = _run(m, 1, 0)
    other = next(o for o in TABLE if o.name != m.name and o.needs is None)
    target = make(other, [torch.zeros(2, H, 2, dtype=torch.float64)], num_steps=8, rollout=state_rollout)
    with pytest.raises(ValueError, match=f"saved by {m.cls.__name__}.*this is {other.cls.__name__}"):
        target.load_state_dict(state)
    assert target.steps_done == 0


@pytest.mark.parametrize("m", method_params())
def test_a_rejected_state_changes_nothing(m):
    _, (u, state), opt = _run(m, 2, 0)
    before = opt.state_dict()
    broken = copy.deepcopy(state)
    broken["sampling"]["steps_done"] = -1
    with pytest.raises(ValueError, match="steps_done"):
        opt.load_state_dict(broken)
    after = opt.state_dict()
    assert after["sampling"]["steps_done"] == before["sampling"]["steps_done"]
    assert torch.equal(after["sampling"]["rng_state"], before["sampling"]["rng_state"])
    for name in m.cls.state_fields:
        if isinstance(before["sampling"][name], torch.Tensor):
            assert torch.equal(after["sampling"][name], before["sampling"][name])


def test_junk_cmaes_strategies_are_refused_at_load():
    pytest.importorskip("cma")
    m = next(m for m in TABLE if m.name == "cmaes")
    _, (u, state), opt = _run(m, 1, 0)
    for junk, match in ((["not a strategy"] * 2, "strategies\\[0\\] must be a pycma"), ([1], "list of 2")):
        broken = copy.deepcopy(state)
        broken["sampling"]["strategies"] = junk
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(broken)
    other = make(m, [torch.zeros(2, H + 1, 2, dtype=torch.float64)], num_steps=8, rollout=state_rollout)
    other.step()
    wrong = other.state_dict()["sampling"]["strategies"]
    broken = copy.deepcopy(state)
    broken["sampling"]["strategies"] = wrong
    with pytest.raises(ValueError, match="dimension"):
        opt.load_state_dict(broken)


def test_a_state_dict_of_the_previous_layout_still_loads():
    """``{"mbd": ..., "baseline": ...}`` with the old option names: the same next step."""
    m = next(m for m in TABLE if m.name == "cem")
    uninterrupted, (u, state), _ = _run(m, 2, 2)
    sampling = state.pop("sampling")
    sampling.pop("optimizer")
    state["mbd"] = {k: v for k, v in sampling.items() if k not in ("method", "std")}
    state["mbd"].update(num_steps=8, beta0=1e-4, beta1=1e-2, noise="official")
    state["baseline"] = dict(method="cem", std=sampling["std"])
    resumed, _, _ = _run(m, 0, 2, state=(u, state))
    assert torch.equal(uninterrupted, resumed)


# --------------------------------------------------------------------------- parameters that share memory
@pytest.mark.parametrize("m", method_params())
def test_overlapping_and_stride_zero_parameters_are_refused(m):
    base = torch.zeros(6)
    with pytest.raises(ValueError, match=r"params\[0\].*params\[1\].*share elements"):
        make(m, [base[:4], base[2:]])
    with pytest.raises(ValueError, match=r"params\[0\].*stride 0"):
        make(m, [torch.zeros(1).expand(3)])
    make(m, [base[0::2], base[1::2]])  # interleaved views share no element: fine
    opt = make(m, [torch.zeros(3)])
    with pytest.raises(ValueError, match="share elements"):
        x = torch.zeros(4)
        opt2 = make(m, [x[:3]])
        opt2.add_param_group(dict(params=[x[1:]]))
    assert len(opt.param_groups) == 1


# --------------------------------------------------------------------------- warnings name the caller
def test_the_constant_objective_warning_names_the_callers_line():
    opt = MBDOptimizer([torch.zeros(3)], num_samples=8, num_steps=3, seed=0)
    with pytest.warns(torch_mbd.ConstantObjectiveWarning) as record:
        opt.step(lambda c: torch.ones(c[0].shape[0]))
    assert {w.filename for w in record} == {__file__}


def test_a_warning_inside_plan_names_the_callers_line():
    class Nan:
        action_dim, state_dim, horizon = 2, 2, 3
        action_bounds = (-torch.ones(2), torch.ones(2))

        def rollout(self, actions):
            return Trajectory(None, torch.full(actions.shape[:-1], math.nan))

    with pytest.warns(RuntimeWarning, match="keeping the previous estimate") as record:
        plan(Nan(), num_samples=4, num_steps=1, seed=0, progress=False)
    assert __file__ in {w.filename for w in record}


def test_deprecated_option_names_warn_at_the_callers_line_and_mean_the_same():
    with pytest.warns(DeprecationWarning) as record:
        old = CEMOptimizer([torch.zeros(2)], num_steps=5, beta0=2e-3, noise="paper", seed=0)
    assert sorted(str(w.message) for w in record) == [
        "CEMOptimizer: beta0= is deprecated, use beta_first= (the same value)",
        "CEMOptimizer: noise= is deprecated, use noise_convention= (the same value)",
    ]
    assert {w.filename for w in record} == {__file__}
    new = CEMOptimizer([torch.zeros(2)], num_steps=5, beta_first=2e-3, noise_convention="paper", seed=0)
    assert old._first_std == new._first_std != CEMOptimizer([torch.zeros(2)], num_steps=5)._first_std


# --------------------------------------------------------------------------- threads
@pytest.mark.parametrize("m", method_params(lambda m: m.name in ("mbd", "cem")))
def test_step_runs_with_one_thread_by_default_and_restores_torch(m, monkeypatch):
    monkeypatch.delenv("TORCH_MBD_THREADS", raising=False)
    before = torch.get_num_threads()
    seen = []

    def loss(c):
        seen.append(torch.get_num_threads())
        return sphere(c)

    make(m, [torch.zeros(3)]).step(loss)
    make(m, [torch.zeros(3)], torch_threads="torch").step(loss)
    assert seen == [1, before] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="torch_threads"):
        make(m, [torch.zeros(3)], torch_threads=0)


# --------------------------------------------------------------------------- adding a method
class GreedySearch(SamplingOptimizer):
    """A method in two hooks: a fixed Gaussian, then the best sample of the step."""

    method = "test-greedy"

    def __init__(self, params, num_samples=256, temperature=None, num_steps=None, **options):
        super().__init__(params, num_samples, **options)  # plan / minimize pass every method these two

    def sampling_std(self, B):
        return self.initial_std(0.2).expand(B, -1)

    def update(self, samples, evaluation, y_bar):
        return UpdateResult(*weighted_mean(samples, elite_log_weights(evaluation.rewards, 1, evaluation.feasible)))


def test_a_registered_method_reaches_plan_and_minimize():
    register_method(GreedySearch)
    try:
        assert METHODS["test-greedy"] is GreedySearch
        register_method(GreedySearch)  # the same class again: no change
        res = minimize(lambda x: ((x - 0.5) ** 2).sum(-1), torch.zeros(3), num_samples=16, num_steps=20, seed=0,
                       progress=False, method="test-greedy")
        assert res.fun < 0.05
        with pytest.raises(ValueError, match="already registered to GreedySearch"):
            register_method(CEMOptimizer, "test-greedy")
        with pytest.raises(TypeError, match="SamplingOptimizer subclass"):
            register_method(torch.optim.SGD)
    finally:
        METHODS.pop("test-greedy", None)


# --------------------------------------------------------------------------- the house's shape
def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.update([node.module] if node.module else [a.name for a in node.names])
    return names


def test_no_import_cycle_in_torch_mbd():
    package = ROOT / "torch_mbd"
    graph = {p.stem: _imports(p) & {q.stem for q in package.glob("*.py")} for p in package.glob("*.py")}

    def reach(start, node, seen):
        for nxt in graph.get(node, ()):
            if nxt == start:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reach(start, nxt, seen):
                    return True
        return False

    cyclic = sorted(m for m in graph if m != "__init__" and reach(m, m, set()))
    assert cyclic == []


def test_no_class_in_torch_mbd_is_longer_than_450_lines():
    long = []
    for path in (ROOT / "torch_mbd").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 450:
                long.append(f"{path.name}:{node.name}")
    assert long == []
