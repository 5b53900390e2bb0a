"""Tests of benchmarks/bbob.py: budgets, targets, COCO's data files, the resumable run store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _scripts import load_script

cocoex = pytest.importorskip("cocoex", reason="needs coco-experiment (pip install -e '.[bbob]')")
bbob = load_script("benchmarks/bbob.py", "bbob_under_test")

TINY = ["--dims", "2", "--functions", "1", "15", "--instances", "1", "--budget", "200", "--no-write"]


def test_optimum_value_is_the_minimum_of_the_problem():
    fopt = bbob.optimum_value(1, 2, 1)
    suite = cocoex.Suite("bbob", "", "dimensions: 2 function_indices: 1 instance_indices: 1")
    problem = suite.get_problem_by_function_dimension_instance(1, 2, 1)
    rng = np.random.default_rng(0)
    values = [problem(x) for x in rng.uniform(-5, 5, (200, 2))]
    problem.free()
    assert min(values) > fopt  # the sphere's minimum is unique: random points lie above it
    assert np.isfinite(fopt)


class _Sphere:
    """A stand-in problem: f(x) = 3 + |x|^2, f_opt = 3."""

    def __call__(self, x):
        return 3.0 + float(np.sum(np.square(x)))


def test_evaluator_counts_stops_at_the_budget_and_records_first_hits():
    ev = bbob.Evaluator(_Sphere(), fopt=3.0, budget=5)
    out = ev.evaluate(np.array([[4.0, 0.0], [0.1, 0.0], [0.0, 0.0]]))
    assert out.tolist() == [19.0, 3.01, 3.0]
    assert ev.evals == 3 and ev.best == 0.0
    # precision 16 hits no target, 0.01 hits 1e1 and 1e-1 at evaluation 2, 0.0 the rest at 3
    assert ev.hits == {1e1: 2, 1e-1: 2, 1e-3: 3, 1e-5: 3}
    with pytest.raises(bbob.BudgetSpent):  # solved (precision 0 <= 1e-8): no further evaluation
        ev.evaluate(np.zeros((1, 2)))
    assert ev.evals == 3

    ev = bbob.Evaluator(_Sphere(), fopt=3.0, budget=4)
    with pytest.raises(bbob.BudgetSpent):
        ev.evaluate(np.ones((6, 2)))  # the first 4 rows are evaluated, then the budget is spent
    record = ev.record()
    assert record["evals"] == 4 and record["best"] == 2.0
    assert record["hits"] == {"10.0": 1, "0.1": None, "0.001": None, "1e-05": None}
    assert len(record["curve"]) == len(record["checkpoints"]) and record["curve"][-1] == 2.0


def test_fraction_reached_counts_function_instance_target_triples():
    runs = [
        dict(function=1, hits={str(t): 10 for t in bbob.TARGETS}),  # all 4 targets
        dict(function=2, hits={str(t): (5 if t >= 1e-1 else None) for t in bbob.TARGETS}),  # 2 of 4
        dict(function=15, hits={str(t): None for t in bbob.TARGETS}),  # none
    ]
    assert bbob.fraction_reached(runs, range(1, 6)) == 6 / 8
    assert bbob.fraction_reached(runs, range(15, 20)) == 0.0
    assert bbob.fraction_reached(runs, range(20, 25)) is None


@pytest.mark.slow
def test_grid_writes_coco_data_respects_budgets_and_resumes(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    args = TINY + ["--solvers", "mbd", "cmaes", "random", "--runs", str(runs), "--coco-data", str(tmp_path / "coco")]
    assert bbob.main(args) == 0
    records = [json.loads(line) for line in runs.read_text().splitlines()]
    assert sorted((r["solver"], r["function"]) for r in records) == sorted(
        (s, f) for s in ("mbd", "cmaes", "random") for f in (1, 15)
    )
    for r in records:
        assert r["budget"] == 400 and 0 < r["evals"] <= 400  # 200 x D
        assert r["best"] >= 0.0  # precision f - f_opt can never be negative
    # pycma solves the 2-D sphere within 400 evaluations; random search does not
    best = {(r["solver"], r["function"]): r["best"] for r in records}
    assert best[("cmaes", 1)] <= 1e-5 < best[("random", 1)]
    # COCO's own data format, one folder per solver, that cocopp reads
    for solver in ("mbd", "cmaes", "random"):
        assert list((tmp_path / "coco" / "exdata" / solver).rglob("*.info")), solver
    out = capsys.readouterr().out
    assert "fraction of (f, instance, target) reached" in out and "IPOP-CMA-ES" in out

    # a second call with the same settings runs nothing and prints the same tables
    assert bbob.main(args) == 0
    assert len(runs.read_text().splitlines()) == len(records)
    assert "[bbob " not in capsys.readouterr().out
    # a cut last line (an interrupted run) is dropped, and that run is done again
    runs.write_text(runs.read_text()[:-20])
    assert bbob.main(args) == 0
    assert len(bbob.load_runs(runs)) == len(records)


def test_bad_arguments_are_refused(capsys):
    for bad in (["--functions", "25"], ["--dims", "7"], ["--budget", "0"], ["--instances", "0"]):
        with pytest.raises(SystemExit) as exc:
            bbob.main(bad + ["--no-write"])
        assert exc.value.code == 2
    assert "--functions must lie in 1-24" in capsys.readouterr().err


def _record(solver, fid, iid, hit_all):
    hits = {str(t): (7 if hit_all else None) for t in bbob.TARGETS}
    return dict(solver=solver, function=fid, dim=2, instance=iid, budget=200, seconds=0.1, fopt=0.0, evals=200,
                best=0.0 if hit_all else 1.0, hits=hits, checkpoints=[1, 200], curve=[1.0, 0.0])


def test_report_runs_nothing_and_leaves_an_unfinished_solver_out(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    records = [_record("cmaes", f, 1, True) for f in (1, 15)] + [_record("random", 1, 1, False)]
    runs.write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["--dims", "2", "--functions", "1", "15", "--instances", "1", "--budget", "100",
            "--solvers", "cmaes", "random", "--runs", str(runs), "--coco-data", "none", "--report", "--no-write"]
    assert bbob.main(argv) == 0
    out = capsys.readouterr().out
    assert "[bbob " not in out and len(runs.read_text().splitlines()) == 3  # nothing ran
    header = next(line for line in out.splitlines() if "fraction of (f, instance, target)" in line)
    assert "IPOP-CMA-ES" in header and "random search" not in header  # 1 of 2 runs: no column
    assert "random search: 1 of 2 runs so far, left out" in out
    assert "| all functions | 1.00 |" in out


def test_ecdf_is_the_fraction_of_triples_reached_within_each_budget(tmp_path):
    # one run at D = 2: targets 1e1 and 1e-1 hit after 4 and 40 evaluations (2 and 20 per dimension)
    run = dict(solver="mbd", function=1, dim=2, instance=1, hits={"10.0": 4, "0.1": 40, "0.001": None, "1e-05": None})
    x, y = bbob.ecdf([run], 2, 100, points=5)  # budgets 1, ~3.2, 10, ~31.6, 100 evaluations per dimension
    assert x[0] == 1 and x[-1] == pytest.approx(100)
    assert y.tolist() == [0.0, 0.25, 0.25, 0.5, 0.5]
    path = bbob.ecdf_figure([run], ["mbd"], [2], 100, tmp_path / "ecdf.png", "test")
    assert path.stat().st_size > 1000
