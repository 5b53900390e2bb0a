"""Tests of benchmarks/gpu_check.py: the --smoke run on the CPU (so the GPU script cannot rot)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from _scripts import load_script

gpu_check = load_script("benchmarks/gpu_check.py", "gpu_check_under_test")


@pytest.mark.slow
def test_smoke_runs_every_part_on_the_cpu(tmp_path):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--smoke", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["device"] == "cpu"
    parts = report["parts"]
    assert list(parts) == gpu_check.PARTS
    for name in ("tests", "throughput", "hopper"):
        assert parts[name]["status"] in ("ok", "over budget"), (name, parts[name]["result"])
    tests = parts["tests"]["result"]
    assert tests["returncode"] == 0 and sum(tests["counts"].get(k, 0) for k in ("passed", "skipped")) >= 1
    rows = parts["throughput"]["result"]["rows"]
    assert {r["backend"] for r in rows if r["status"] == "ok"} == {"warp", "mjx"}
    assert all(r["steps_per_s"] > 0 for r in rows if r["status"] == "ok")
    hopper = parts["hopper"]["result"]
    assert (hopper["samples"], hopper["steps"]) == (8, 2) and math.isfinite(hopper["reward"])
    assert hopper["paper_seconds"] == 26.5
    mnist = parts["mnist"]
    if mnist["status"] != "not run":  # the MNIST files are optional (../shared/data/mnist)
        assert mnist["status"] in ("ok", "over budget"), mnist["result"]
        assert mnist["result"]["steps"] == 2 and 0.0 <= mnist["result"]["test_accuracy"] <= 1.0


def test_a_failing_part_is_reported_and_fails_the_check(tmp_path, monkeypatch):
    def broken(cfg, device, budget, args):
        raise RuntimeError("simulated failure")

    def missing(cfg, device, budget, args):
        raise gpu_check.NotRun("no such package")

    monkeypatch.setitem(gpu_check.RUNNERS, "hopper", broken)
    monkeypatch.setitem(gpu_check.RUNNERS, "mnist", missing)
    out = tmp_path / "check.json"
    assert gpu_check.main(["--smoke", "--parts", "hopper", "mnist", "--out", str(out)]) == 1
    parts = json.loads(out.read_text())["parts"]
    assert parts["hopper"]["status"] == "error" and "simulated failure" in parts["hopper"]["result"]["error"]
    assert parts["mnist"] == dict(parts["mnist"], status="not run", result={"reason": "no such package"})
    # "not run" alone does not fail the check
    assert gpu_check.main(["--smoke", "--parts", "mnist", "--out", str(out)]) == 0


def test_over_budget_is_flagged(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.BUDGET_S, "mnist", 0.0)
    monkeypatch.setitem(gpu_check.RUNNERS, "mnist", lambda cfg, device, budget, args: {"steps": 1})
    record = gpu_check.run_part("mnist", gpu_check.SMOKE, "cpu", None)
    assert record["status"] == "over budget" and record["result"] == {"steps": 1}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--out", str(tmp_path / "x.json")])
    assert "--smoke" in capsys.readouterr().err
