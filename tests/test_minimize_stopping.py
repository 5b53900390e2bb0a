"""``minimize``'s stopping criteria, IPOP restarts and the ``callback`` of ``minimize`` and ``plan`` (issue 23)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from _methods import method_params

import torch_mbd
from torch_mbd import METHODS, HistoryLogger, MBDOptimizer, PrintLogger, StepLog, linear_schedule, minimize
from torch_mbd.minimize import DEFAULT_STEPS


def sphere(x):
    return (x**2).sum(-1)


class Counting:
    """``f`` that records the size of every batch it is given and the lowest cost it returned."""

    def __init__(self, f=sphere):
        self.f, self.batches, self.lowest = f, [], math.inf

    def __call__(self, x):
        self.batches.append(x.shape[0])
        costs = self.f(x)
        self.lowest = min(self.lowest, float(costs.min()))
        return costs


QUIET = dict(seed=0, progress=False)


# --------------------------------------------------------------------------- max_evals
@pytest.mark.parametrize(
    "num_samples, max_evals, num_steps, restarts",
    [(16, 100, None, None), (16, 17, None, None), (16, 1000, 5, None), (10, 333, 3, 1), (16, 500, 50, 0),
     (7, 200, None, 0)],
)
def test_the_budget_is_never_exceeded(num_samples, max_evals, num_steps, restarts):
    f = Counting()
    res = minimize(f, torch.ones(3), num_samples=num_samples, num_steps=num_steps, max_evals=max_evals,
                   restarts=restarts, **QUIET)
    assert sum(f.batches) == res.nfev <= max_evals
    assert res.nit == len(res.history.best) == sum(1 for b in f.batches if b > 1)
    assert res.fun == pytest.approx(f.lowest)


@pytest.mark.parametrize("m", method_params())
def test_every_method_keeps_to_the_budget(m):
    f = Counting()
    res = minimize(f, torch.ones(4), num_samples=12, num_steps=None, max_evals=150, bounds=(-2.0, 2.0),
                   method=m.name, **QUIET)
    assert sum(f.batches) == res.nfev <= 150
    assert res.stop == "max_evals" and res.nfev > 150 - 12  # a step of 12 more would not fit with the final estimate
    assert f.batches == [12] * res.nit + [1]


def test_num_steps_none_spreads_the_schedule_over_the_budget():
    f = Counting()
    res = minimize(f, torch.ones(3), num_samples=16, num_steps=None, max_evals=16 * 20 + 1, method="mbd", **QUIET)
    assert res.nit == 20 and res.nfev == 16 * 20 + 1 and res.stop == "max_evals" and res.restarts == 0
    # MBD's schedule had exactly those 20 steps: the last one sampled at level 0, sigma_0
    log = HistoryLogger()
    minimize(sphere, torch.ones(3), num_samples=16, num_steps=None, max_evals=16 * 20 + 1, callback=log, method="mbd",
             **QUIET)
    assert log.rows[-1].sigma == pytest.approx(float(linear_schedule(20, 1e-4, 1e-2, "official").sigmas[0]))


def test_a_budget_cut_short_a_fixed_num_steps():
    f = Counting()
    res = minimize(f, torch.ones(3), num_samples=16, num_steps=100, max_evals=16 * 7 + 10, restarts=0, **QUIET)
    assert res.nit == 7 and res.nfev == 16 * 7 + 1 and res.stop == "max_evals"


# --------------------------------------------------------------------------- ftarget
def test_ftarget_stops_at_the_first_step_that_reaches_it():
    f = Counting()
    res = minimize(f, torch.ones(5), num_samples=32, num_steps=100, ftarget=0.05, **QUIET)
    assert res.stop == "ftarget" and res.fun <= 0.05 and res.nit < 100
    assert float(res.history.best_so_far[-2]) > 0.05 >= float(res.history.best_so_far[-1])
    assert res.nfev == sum(f.batches) == res.nit * 32 + 1


def test_ftarget_ends_every_run_and_no_restart_follows():
    res = minimize(sphere, torch.ones(3), num_samples=16, num_steps=50, ftarget=0.5, restarts=3, **QUIET)
    assert res.stop == "ftarget" and res.restarts == 0


# --------------------------------------------------------------------------- restarts
def test_restarts_grow_the_population():
    f = Counting()
    res = minimize(f, torch.ones(3), num_samples=8, num_steps=3, restarts=2, **QUIET)
    assert f.batches == [8, 8, 8, 1, 16, 16, 16, 1, 32, 32, 32, 1]
    assert res.restarts == 2 and res.stop == "num_steps" and res.nit == 9 and res.nfev == sum(f.batches)
    assert res.history.restart.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert res.fun == pytest.approx(f.lowest) and res.fun == float(res.history.best_so_far.min())


def test_restarts_until_the_budget_is_spent_with_a_growth_of_one_and_a_half():
    f = Counting()
    res = minimize(f, torch.ones(3), num_samples=10, num_steps=4, max_evals=300, restart_growth=1.5, **QUIET)
    sizes = [b for b in f.batches if b > 1]
    # round(10 * 1.5 ** r); 41 + 61 + 89 = 191 evaluations for three runs, then 3 steps of 34 and the final estimate
    assert sizes == [10] * 4 + [15] * 4 + [22] * 4 + [34] * 3
    assert res.restarts == 3 and res.stop == "max_evals" and sum(f.batches) == res.nfev == 191 + 3 * 34 + 1


def test_each_restart_starts_from_x0_with_a_seed_of_its_own_and_is_reproducible():
    one = minimize(sphere, torch.ones(3), num_samples=8, num_steps=4, **QUIET)
    two = minimize(sphere, torch.ones(3), num_samples=8, num_steps=4, restarts=1, restart_growth=1, **QUIET)
    again = minimize(sphere, torch.ones(3), num_samples=8, num_steps=4, restarts=1, restart_growth=1, **QUIET)
    assert torch.equal(two.history.best[:4], one.history.best)  # the first run is the run without restarts
    assert not torch.equal(two.history.best[4:], one.history.best)  # the second draws other samples
    assert torch.equal(two.history.best, again.history.best) and torch.equal(two.x, again.x)
    assert torch.equal(two.x_final, two.history.estimate[-1])  # x_final: the last run's estimate


def test_the_history_grows_across_restarts_and_keeps_the_last_k():
    full = minimize(sphere, torch.ones(3), num_samples=8, num_steps=4, restarts=3, **QUIET)
    last = minimize(sphere, torch.ones(3), num_samples=8, num_steps=4, restarts=3, keep_history=6, **QUIET)
    assert full.history.estimate.shape == (16, 3) and full.history.best.shape == (16,)
    assert torch.equal(last.history.estimate, full.history.estimate[-6:])


# --------------------------------------------------------------------------- tol_x, tol_fun, stop_reason
def test_tol_x_stops_a_run_when_the_sampling_std_falls_below_it():
    sigmas = linear_schedule(30, 1e-4, 1e-2, "official").sigmas  # step k samples at level 30 - k
    tol = float(sigmas[30 - 6] + sigmas[30 - 5]) / 2  # below the 5th step's sigma, above the 6th's
    res = minimize(sphere, torch.ones(3), num_samples=8, num_steps=30, tol_x=tol, method="mbd", **QUIET)
    assert res.stop == "tol_x" and res.nit == 6
    twice = minimize(sphere, torch.ones(3), num_samples=8, num_steps=30, tol_x=tol, restarts=1, restart_growth=1,
                     method="mbd", **QUIET)
    assert twice.stop == "tol_x" and twice.nit == 12 and twice.restarts == 1


def test_tol_fun_stops_when_the_best_costs_of_the_last_patience_steps_span_less():
    res = minimize(sphere, torch.ones(3), num_samples=16, num_steps=50, tol_fun=1e3, patience=5, **QUIET)
    assert res.stop == "tol_fun" and res.nit == 5
    default = minimize(sphere, torch.ones(3), num_samples=16, num_steps=50, tol_fun=1e3, **QUIET)
    assert default.stop == "tol_fun" and default.nit == 10 + math.ceil(30 * 3 / 16)
    tight = minimize(sphere, torch.ones(3), num_samples=16, num_steps=30, tol_fun=1e-30, patience=5, **QUIET)
    assert tight.stop == "num_steps" and tight.nit == 30  # the costs kept moving by more than 1e-30


class _Converges(MBDOptimizer):
    method = "converges-after-4"

    def stop_reason(self):
        return "step size collapsed" if self.steps_done >= 4 else None


def test_the_methods_own_stop_reason_ends_a_run(monkeypatch):
    monkeypatch.setitem(METHODS, _Converges.method, _Converges)
    res = minimize(sphere, torch.ones(3), num_samples=8, num_steps=30, method=_Converges.method, **QUIET)
    assert res.stop == "step size collapsed" and res.nit == 4
    res = minimize(sphere, torch.ones(3), num_samples=8, num_steps=30, method=_Converges.method, restarts=2, **QUIET)
    assert res.stop == "step size collapsed" and res.nit == 12 and res.restarts == 2


# --------------------------------------------------------------------------- callback
def test_the_callback_gets_every_step():
    log = HistoryLogger()
    res = minimize(sphere, torch.ones(3), num_samples=8, num_steps=3, restarts=1, callback=log, method="mbd", **QUIET)
    assert [r.step for r in log.rows] == [1, 2, 3, 4, 5, 6]
    assert [r.restart for r in log.rows] == [0, 0, 0, 1, 1, 1]
    assert [r.nfev for r in log.rows] == [8, 16, 24, 25 + 16, 25 + 32, 25 + 48]  # 25: run 0 and its final estimate
    assert log.column("best").tolist() == res.history.best_so_far.double().tolist()
    assert log.column("step_best").tolist() == res.history.best.double().tolist()
    assert log.column("step_mean").tolist() == res.history.mean.double().tolist()
    assert all(r.objective == "cost" and r.elapsed >= 0 for r in log.rows)
    # temperature=None: MBD's own default ("auto": the ESS temperature of the step), not a forced 1.0
    assert log.rows[0].temperature != 1.0 and 0 < log.rows[0].temperature <= 1e4
    assert log.rows[0].sigma == pytest.approx(float(linear_schedule(3, 1e-4, 1e-2, "official").sigmas[2]))
    with pytest.raises(ValueError, match="name.*step_best"):
        log.column("objective")


def test_an_explicit_temperature_reaches_the_method():
    log = HistoryLogger()
    minimize(sphere, torch.ones(3), num_samples=8, num_steps=2, temperature=1.0, callback=log, **QUIET)
    assert log.column("temperature").tolist() == [1.0, 1.0]
    cem = HistoryLogger()
    minimize(sphere, torch.ones(3), num_samples=8, num_steps=2, method="cem", callback=cem, **QUIET)
    assert cem.rows[0].temperature is None and math.isnan(float(cem.column("temperature")[0]))


def test_a_callback_returning_true_stops_the_run_and_every_restart():
    f = Counting()
    res = minimize(f, torch.ones(3), num_samples=8, num_steps=20, restarts=2, callback=lambda log: log.step == 3,
                   **QUIET)
    assert res.stop == "callback" and res.nit == 3 and res.restarts == 0
    assert f.batches == [8, 8, 8, 1]  # the final estimate is still evaluated


def test_an_error_in_the_callback_propagates():
    class Stop(Exception):
        pass

    def callback(log):
        raise Stop

    with pytest.raises(Stop):
        minimize(sphere, torch.ones(3), num_samples=8, num_steps=5, callback=callback, **QUIET)


def test_the_print_logger():
    out = io.StringIO()
    minimize(sphere, torch.ones(3), num_samples=8, num_steps=4, restarts=1, callback=PrintLogger(every=3, file=out),
             **QUIET)
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["1", "3", "5", "6"]  # first, every 3rd, the first of the restart
    assert lines[0].startswith("step 1  nfev 8  best ") and lines[-1].split()[-2:-1] == ["1"]
    with pytest.raises(ValueError, match="every"):
        PrintLogger(every=0)


def test_plan_calls_the_callback_and_can_be_stopped():
    import dynamics

    model = dynamics.make("point_mass")
    log = HistoryLogger()
    res = torch_mbd.plan(model, num_samples=16, num_steps=4, callback=log, **QUIET)
    assert res.stop == "num_steps" and [r.step for r in log.rows] == [1, 2, 3, 4]
    assert [r.nfev for r in log.rows] == [16, 32, 48, 64] and all(r.objective == "reward" for r in log.rows)
    assert log.column("step_mean").tolist() == res.reward_history.double().tolist()
    assert log.rows[-1].best == pytest.approx(res.best_sample_reward)
    assert all(r.step_best >= r.step_mean for r in log.rows)
    stopped = torch_mbd.plan(model, num_samples=16, num_steps=10, callback=lambda r: r.step >= 2, **QUIET)
    assert stopped.stop == "callback" and len(stopped.reward_history) == 2 and len(stopped.history) == 2
    with pytest.raises(TypeError, match="callback must be callable"):
        torch_mbd.plan(model, num_samples=16, num_steps=2, callback="print", **QUIET)

    def broken(log):
        raise KeyError(log.step)

    with pytest.raises(KeyError):
        torch_mbd.plan(model, num_samples=16, num_steps=2, callback=broken, **QUIET)


def test_step_log_is_a_frozen_record():
    log = StepLog(step=1, nfev=8, best=1.0, step_best=1.0, step_mean=2.0, sigma=0.5, temperature=None, restart=0,
                  elapsed=0.0, objective="cost")
    with pytest.raises(AttributeError):
        log.step = 2


# --------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(max_evals=-1), ValueError, "max_evals"),
        (dict(max_evals=0), ValueError, "max_evals"),
        (dict(max_evals=1.5), ValueError, "max_evals"),
        (dict(max_evals=True), ValueError, "max_evals"),
        (dict(max_evals=16), ValueError, r"max_evals.*>= 17"),
        (dict(ftarget=math.nan), ValueError, "ftarget"),
        (dict(ftarget="low"), ValueError, "ftarget"),
        (dict(ftarget=-math.inf), ValueError, "ftarget"),
        (dict(tol_fun=0.0), ValueError, "tol_fun"),
        (dict(tol_fun=-1e-3), ValueError, "tol_fun"),
        (dict(tol_x=math.nan), ValueError, "tol_x"),
        (dict(patience=0), ValueError, "patience"),
        (dict(restarts=-1), ValueError, "restarts"),
        (dict(restarts=1.5), ValueError, "restarts"),
        (dict(restart_growth=0.5), ValueError, "restart_growth"),
        (dict(restart_growth=math.inf), ValueError, "restart_growth"),
        (dict(callback=3), TypeError, "callback must be callable"),
    ],
)
def test_bad_stopping_arguments(kwargs, error, match):
    f = Counting()
    args = dict(num_samples=16, num_steps=4, **QUIET)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        minimize(f, torch.ones(2), **args)
    assert f.batches == []  # checked before anything is evaluated


def test_without_a_budget_or_a_step_count_a_run_takes_the_default_steps():
    calls = []

    def f(x):
        calls.append(x.shape[0])
        return x.square().sum(-1)

    res = minimize(f, torch.ones(3), num_samples=8, **QUIET)
    assert res.nit == DEFAULT_STEPS and res.stop == "num_steps" and res.restarts == 0
    assert calls == [8] * DEFAULT_STEPS + [1]  # the steps, then the final estimate
