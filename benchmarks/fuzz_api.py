"""Bad and unusual inputs to ``batched_closure``, ``minimize``, the argument checks and the
closure-mode demonstration, each classified by what the library does with it.

Outcomes: ``clear error`` (an exception whose message names the cause), ``correct`` (the
result is checked against a reference), ``unhelpful error`` (an exception, but not the one
that names the cause), ``silently wrong`` (a result that fails its check), ``crash`` (the
process died) and ``hang`` (no answer within ``--timeout`` seconds). The cases run in one
child process; a crash or hang is recorded and a new child goes on with the next case.

    python benchmarks/fuzz_api.py            # every case, then the count per outcome
    python benchmarks/fuzz_api.py --list     # the case names

"round 1" cases are the earlier robustness round's inputs to this area; "round 2" the new ones.
The same inputs are kept as tests in tests/test_closure.py, test_minimize.py, test_checks.py,
test_optim.py, test_plan.py, test_mpc.py and test_temperature.py.
"""

from __future__ import annotations

import argparse
import functools
import json
import queue
import re
import subprocess
import sys
import threading
from copy import deepcopy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import torch_mbd
from torch_mbd import MBDOptimizer, batched_closure

CASES: dict[str, tuple[str, object]] = {}  # name -> (round, function)


def case(round_: str):
    """Register a case: it returns ``True`` (correct) / ``False`` (silently wrong), or raises
    :class:`Expected` when a clear error was the right answer."""

    def register(fn):
        CASES[fn.__name__] = (round_, fn)
        return fn

    return register


class Expected(Exception):
    """Raised by a case when the library raised the error that names the cause."""


def expect_error(fn, error, pattern):
    """Run ``fn``; raise :class:`Expected` if it raises ``error`` matching ``pattern``, re-raise otherwise."""
    try:
        fn()
    except error as err:
        if re.search(pattern, str(err), flags=re.S):
            raise Expected(str(err).splitlines()[0][:160]) from None
        raise
    return False  # it passed without an error: silently accepted


# ----------------------------------------------------------------------------------------- helpers
def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def twin_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))


def candidates_for(model, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [p.detach() + torch.randn(n, *p.shape, generator=g) for p in model.parameters()]


def loaded_losses(model, candidates, loss_fn, *inputs):
    """The reference: each candidate loaded into a copy of the model (ties kept by deepcopy)."""
    out = []
    for j in range(candidates[0].shape[0]):
        copy = deepcopy(model)
        with torch.no_grad():
            for p, c in zip(copy.parameters(), candidates):
                p.copy_(c[j])
            out.append(loss_fn(copy(*inputs[:-1]), inputs[-1]))
    return torch.stack(out)


def optimizer_losses_match(model, opt, loss_fn, x, y):
    """Whether the optimizer's last losses equal its samples loaded into the model by identity."""
    names = {id(p): name for name, p in model.named_parameters()}
    expected = []
    for row in opt.last_step.samples[0]:
        copy = deepcopy(model)
        params = dict(copy.named_parameters())
        offset = 0
        with torch.no_grad():
            for p in opt.param_groups[0]["params"]:
                params[names[id(p)]].copy_(row[offset : offset + p.numel()].reshape(p.shape))
                offset += p.numel()
            expected.append(loss_fn(copy(x), y))
    return torch.allclose(-opt.last_step.rewards[0], torch.stack(expected), atol=1e-5)


def xy():
    torch.manual_seed(3)
    return torch.randn(6, 5), torch.randint(0, 3, (6,))


# ------------------------------------------------------------------------------ batched_closure
@case("round 1")
def closure_optimizer_in_another_order():
    model = twin_net()
    w1, b1, w2, b2 = model.parameters()
    x, y = torch.randn(8, 4), torch.randn(8, 4)
    opt = MBDOptimizer([w2, b2, w1, b1], num_samples=6, num_steps=3, seed=0)
    opt.step(batched_closure(model, F.mse_loss, x, y))
    return optimizer_losses_match(model, opt, F.mse_loss, x, y)


@case("round 1")
def closure_float64_input_to_float32_model():
    return expect_error(lambda: batched_closure(small_net(), F.cross_entropy, torch.randn(4, 5).double(),
                                                torch.randint(0, 3, (4,))), ValueError, r"inputs\[0\].*float64")


@case("round 1")
def closure_numpy_input():
    return expect_error(lambda: batched_closure(small_net(), F.cross_entropy, np.zeros((4, 5), np.float32),
                                                torch.randint(0, 3, (4,))), TypeError, r"inputs\[0\].*NumPy")


@case("round 1")
def closure_candidates_of_the_wrong_shape():
    model = small_net()
    closure = batched_closure(model, F.cross_entropy, *xy())
    c = candidates_for(model)
    return expect_error(lambda: closure([c[0][:, :2]] + c[1:]), ValueError, r"candidates for '0.weight'.*shape")


@case("round 1")
def closure_loss_not_reduced():
    model = small_net()
    closure = batched_closure(model, lambda o, t: F.cross_entropy(o, t, reduction="none"), *xy())
    return expect_error(lambda: closure(candidates_for(model)), ValueError, "0-dim")


@case("round 1")
def closure_batchnorm_training_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    before = {k: v.clone() for k, v in model.named_buffers()}
    x, y = xy()
    c = candidates_for(model)
    ok = torch.allclose(batched_closure(model, F.cross_entropy, x, y)(c), loaded_losses(model, c, F.cross_entropy, x, y))
    return ok and all(torch.equal(v, before[k]) for k, v in model.named_buffers())


@case("round 2")
def closure_tied_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 5))
    model[2].weight = model[0].weight
    x, y = torch.randn(6, 5), torch.randn(6, 5)
    c = candidates_for(model)
    return torch.allclose(batched_closure(model, F.mse_loss, x, y)(c), loaded_losses(model, c, F.mse_loss, x, y))


@case("round 2")
def closure_module_used_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(5, 5)

        def forward(self, x):
            return self.layer(torch.tanh(self.layer(x)))

    torch.manual_seed(0)
    model = Twice()
    x, y = torch.randn(6, 5), torch.randn(6, 5)
    c = candidates_for(model)
    return torch.allclose(batched_closure(model, F.mse_loss, x, y)(c), loaded_losses(model, c, F.mse_loss, x, y))


@case("round 2")
def closure_parameters_sharing_memory():
    class Views(nn.Module):
        def __init__(self):
            super().__init__()
            base = torch.randn(6)
            self.a, self.b = nn.Parameter(base[:4]), nn.Parameter(base[2:])

        def forward(self, x):
            return x * self.a.sum() + self.b.sum()

    return expect_error(lambda: batched_closure(Views(), F.mse_loss, torch.randn(3), torch.randn(3)),
                        ValueError, r"'a' and 'b' .*sharing memory")


def _wrapped(wrap):
    model = twin_net()
    w1, b1, w2, b2 = model.parameters()
    x, y = torch.randn(8, 4), torch.randn(8, 4)
    opt = MBDOptimizer([w2, b2, w1, b1], num_samples=6, num_steps=3, seed=0)
    inner = batched_closure(model, F.mse_loss, x, y)
    opt.step(wrap(inner))
    return optimizer_losses_match(model, opt, F.mse_loss, x, y)


@case("round 2")
def closure_wrapped_in_a_lambda():
    return _wrapped(lambda inner: (lambda c: inner(c)))


@case("round 2")
def closure_wrapped_in_a_partial():
    return _wrapped(functools.partial)


@case("round 2")
def closure_wrapper_that_copies_the_candidates():
    return _wrapped(lambda inner: (lambda c: inner([t.clone() for t in c])))


@case("round 2")
def closure_over_two_models_without_params():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    x, y = torch.randn(5, 3), torch.randn(5, 3)
    opt = MBDOptimizer([a.weight, a.bias, b.weight, b.bias], num_samples=4, num_steps=2, seed=0)
    closure = batched_closure(a, F.mse_loss, x, y)
    return expect_error(lambda: opt.step(lambda c: closure(c[:2]) + closure(c[2:])), ValueError, "pass params=")


def _limit(make, loss_fn, pattern):
    torch.manual_seed(0)
    model = make()
    closure = batched_closure(model, loss_fn, *xy())
    return expect_error(lambda: closure(candidates_for(model)), RuntimeError, pattern)


class _Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 3)

    def forward(self, x):
        h = self.linear(x)
        return h if h.sum() > 0 else -h


class _Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 3)

    def forward(self, x):
        return self.linear(x) + torch.randn(3)


class _Recurrent(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(5, 3, batch_first=True)

    def forward(self, x):
        return self.rnn(x.unsqueeze(0))[0][0]


@case("round 2")
def closure_dropout_in_training_mode():
    return _limit(lambda: nn.Sequential(nn.Linear(5, 3), nn.Dropout(0.5)), F.cross_entropy,
                  r"model\.1 \(Dropout in training mode\).*model\.eval\(\)")


@case("round 2")
def closure_item_in_the_loss():
    return _limit(lambda: nn.Linear(5, 3), lambda o, t: F.cross_entropy(o, t) * o.mean().item(), r"loss_fn calls \.item")


@case("round 2")
def closure_lstm():
    return _limit(lambda: _Recurrent(nn.LSTM), F.cross_entropy, r"model\.rnn \(LSTM\).*recurrent")


@case("round 2")
def closure_gru():
    return _limit(lambda: _Recurrent(nn.GRU), F.cross_entropy, r"model\.rnn \(GRU\).*recurrent")


@case("round 2")
def closure_random_op_in_forward():
    return _limit(_Noisy, F.cross_entropy, r"\(_Noisy\) draws random numbers")


@case("round 2")
def closure_data_dependent_if():
    return _limit(_Branching, F.cross_entropy, r"\(_Branching\) branches on a tensor")


@case("round 2")
def closure_lstm_with_vectorize_false():
    torch.manual_seed(0)
    model = _Recurrent(nn.LSTM)
    x, y = xy()
    c = candidates_for(model)
    losses = batched_closure(model, F.cross_entropy, x, y, vectorize=False)(c)
    return torch.allclose(losses, loaded_losses(model, c, F.cross_entropy, x, y))


@case("round 2")
def closure_integer_inputs_to_a_float_model():
    return expect_error(lambda: batched_closure(small_net(), F.cross_entropy, torch.randint(0, 3, (4, 5)),
                                                torch.randint(0, 3, (4,))), TypeError, r"inputs\[0\] is an integer tensor")


# ------------------------------------------------------------------------------------- minimize
QUICK = dict(num_samples=16, num_steps=8, seed=0, progress=False)


def sphere(x):
    return (x**2).sum(-1)


@case("round 1")
def minimize_integer_costs():
    f = lambda x: (x.clamp(-2, 2) * 1e9).round().long().square().sum(-1)  # noqa: E731 - up to 8e18, near int64 max
    res = torch_mbd.minimize(f, torch.full((2,), 2.0), **QUICK)
    return res.history.best.is_floating_point() and 0 <= res.fun < float(f(torch.full((1, 2), 2.0)))


@case("round 1")
def minimize_nan_costs_never_best():
    f = lambda x: torch.where(x[:, 0] > 0, torch.full((x.shape[0],), float("nan")), sphere(x))  # noqa: E731
    res = torch_mbd.minimize(f, torch.full((3,), -0.5), **QUICK)
    return bool(torch.isfinite(res.x).all()) and res.fun == float(f(res.x[None]))


@case("round 1")
def minimize_bool_costs():
    return expect_error(lambda: torch_mbd.minimize(lambda x: sphere(x) > 1, torch.ones(2), **QUICK), TypeError, "real")


@case("round 1")
def minimize_list_x0():
    return expect_error(lambda: torch_mbd.minimize(sphere, [1.0, 2.0], **QUICK), TypeError, r"x0.*torch\.tensor")


@case("round 1")
def minimize_numpy_numbers():
    a = torch_mbd.minimize(sphere, torch.ones(3), num_samples=np.int64(16), num_steps=np.int32(8),
                           temperature=np.float32(1.0), seed=np.uint8(0), progress=False)
    return torch.equal(a.x, torch_mbd.minimize(sphere, torch.ones(3), temperature=1.0, **QUICK).x)


@case("round 2")
def minimize_f_clamps_in_place():
    def f(x):
        x.clamp_(-0.5, 0.5)
        return ((x - 0.7) ** 2).sum(-1) + torch.sin(5 * x).sum(-1)

    res = torch_mbd.minimize(f, torch.full((4,), 0.2), num_samples=16, num_steps=20, seed=0, progress=False)
    return (res.fun == float(f(res.x[None].clone())) and res.fun_final == float(f(res.x_final[None].clone()))
            and torch.equal(res.x_final, res.history.estimate[-1]))


@case("round 2")
def minimize_f_keeps_its_batches():
    kept, copies = [], []

    def f(x):
        kept.append(x)
        copies.append(x.clone())
        return sphere(x)

    torch_mbd.minimize(f, torch.ones(3), num_samples=4, num_steps=5, seed=0, progress=False)
    return len({t.untyped_storage().data_ptr() for t in kept}) == len(kept) and all(
        torch.equal(t, c) for t, c in zip(kept, copies))


@case("round 2")
def minimize_keep_history_false():
    res = torch_mbd.minimize(sphere, torch.ones(3), keep_history=False, **QUICK)
    return res.history.estimate.shape == (0, 3) and res.history.best.shape == (8,)


@case("round 2")
def minimize_keep_history_bound():
    full = torch_mbd.minimize(sphere, torch.ones(3), **QUICK)
    res = torch_mbd.minimize(sphere, torch.ones(3), keep_history=np.int64(3), **QUICK)
    return torch.equal(res.history.estimate, full.history.estimate[-3:])


@case("round 2")
def minimize_bad_keep_history():
    return expect_error(lambda: torch_mbd.minimize(sphere, torch.ones(3), keep_history=-1, **QUICK), ValueError,
                        "keep_history")


# ----------------------------------------------------------------------------- NumPy scalars
class _Reach:
    action_dim, state_dim, horizon = 2, 2, 6

    def __init__(self):
        self.action_bounds = (-torch.ones(2), torch.ones(2))
        self.initial_state = torch.zeros(2)
        self.device = torch.device("cpu")

    def rollout(self, actions):
        states = self.initial_state + torch.cumsum(actions * 0.5, dim=-2)
        return torch_mbd.Trajectory(states=states, rewards=-((states - torch.tensor([1.0, -0.5])) ** 2).sum(-1))


@case("round 2")
def numpy_bool_keep_best_in_plan():
    quick = dict(num_samples=16, num_steps=4, seed=0)
    a = torch_mbd.plan(_Reach(), keep_best=np.True_, progress=np.False_, **quick)
    return torch.equal(a.actions, torch_mbd.plan(_Reach(), keep_best=True, progress=False, **quick).actions)


@case("round 2")
def numpy_bool_keep_best_and_warm_in_mpc():
    a = torch_mbd.MPC(_Reach(), num_samples=16, seed=0, keep_best=np.True_)
    a.reset(torch.zeros(6, 2), warm=np.True_)
    b = torch_mbd.MPC(_Reach(), num_samples=16, seed=0, keep_best=True)
    b.reset(torch.zeros(6, 2), warm=True)
    return torch.equal(a.act(torch.zeros(2)), b.act(torch.zeros(2)))


@case("round 2")
def numpy_float32_target_in_ess_temperature():
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    valid = torch.ones(2, 32, dtype=torch.bool)
    a = torch_mbd.ess_temperature(z, valid, target=np.float32(0.25), iterations=np.int64(30))
    return torch.equal(a, torch_mbd.ess_temperature(z, valid, target=0.25, iterations=30))


@case("round 2")
def numpy_scalars_in_the_optimizer():
    def run(**kw):
        x = torch.zeros(3)
        opt = MBDOptimizer([x], seed=0, **kw)
        for _ in range(3):
            opt.step(lambda c: ((c[0] - 0.5) ** 2).sum(-1))
        return x

    a = run(num_samples=np.int64(8), num_steps=np.int16(3), temperature=np.float32(0.5), beta0=np.float64(1e-4),
            step_scale=np.float32(1.0), target_ess=np.float32(0.2), bounds=(np.float32(-1), np.int64(1)))
    b = run(num_samples=8, num_steps=3, temperature=0.5, beta0=1e-4, step_scale=1.0, target_ess=0.2, bounds=(-1.0, 1.0))
    return torch.equal(a, b)


@case("round 2")
def numpy_bool_refused_as_a_number():
    return expect_error(lambda: torch_mbd.minimize(sphere, torch.ones(2), num_samples=np.True_, progress=False),
                        ValueError, "num_samples")


@case("round 2")
def numpy_bool_vectorize_in_batched_closure():
    model = small_net()
    c = candidates_for(model)
    return torch.equal(batched_closure(model, F.cross_entropy, *xy(), vectorize=np.False_)(c),
                       batched_closure(model, F.cross_entropy, *xy(), vectorize=False)(c))


# ------------------------------------------------------------------------------- closure-mode demo
@case("round 2")
def demo_with_two_parameters_in_closure_mode():
    return expect_error(lambda: MBDOptimizer([torch.zeros(2), torch.zeros(2)], demo=torch.zeros(2)), ValueError,
                        r"needs exactly one parameter, got 2")


@case("round 1")
def demo_of_the_wrong_shape_in_closure_mode():
    return expect_error(lambda: MBDOptimizer([torch.zeros(2)], demo=torch.zeros(3)), ValueError,
                        r"shape of the single parameter \(2,\), got \(3,\)")


# ------------------------------------------------------------------------------------- runner
def run_case(name: str) -> tuple[str, str]:
    """``(outcome, detail)`` of one case, in this process."""
    _, fn = CASES[name]
    try:
        ok = fn()
    except Expected as clear:
        return "clear error", str(clear)
    except Exception as err:  # noqa: BLE001 - any other exception is an unhelpful answer
        return "unhelpful error", f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
    return ("correct", "") if ok else ("silently wrong", "")


def child(names: list[str]) -> None:
    import warnings

    warnings.simplefilter("ignore")
    for name in names:
        outcome, detail = run_case(name)
        print(json.dumps([name, outcome, detail]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a case may take before it counts as a hang")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    if args.list:
        print("\n".join(f"{r}: {n}" for n, (r, _) in CASES.items()))
        return
    pending = list(CASES)
    results: dict[str, tuple[str, str]] = {}
    while pending:
        proc = subprocess.Popen([sys.executable, __file__, "--child", *pending], stdout=subprocess.PIPE, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] + [lines.put(None)], daemon=True).start()
        hung = False
        while True:
            try:
                line = lines.get(timeout=args.timeout)
            except queue.Empty:  # the current case has run too long
                hung = True
                proc.kill()
                break
            if line is None:
                break
            name, outcome, detail = json.loads(line)
            results[name] = (outcome, detail)
            pending.remove(name)
        proc.wait()
        if pending:  # the first pending case hung or killed the child
            results[pending.pop(0)] = ("hang", f"over {args.timeout} s") if hung else ("crash", f"exit status {proc.returncode}")
    counts: dict[str, int] = {}
    for name in CASES:
        outcome, detail = results[name]
        counts[outcome] = counts.get(outcome, 0) + 1
        print(f"{CASES[name][0]:<8} {name:<45} {outcome:<15} {detail}")
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), f"(of {len(CASES)} cases)")


if __name__ == "__main__":
    main()
