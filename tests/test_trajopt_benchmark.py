"""Tests of benchmarks/trajopt.py: the table is resumable run by run and states its settings."""

from __future__ import annotations

import json

import pytest
from _scripts import load_script

trajopt = load_script("benchmarks/trajopt.py", "trajopt_under_test")

TINY = ["--tasks", "push_t", "--samples", "4", "--steps", "2", "--seeds", "1", "--no-write"]


@pytest.mark.slow
def test_runs_are_stored_and_skipped_when_present(tmp_path, capsys):
    runs = tmp_path / "runs.json"
    trajopt.main(TINY + ["--methods", "mbd", "paper-cem", "--runs", str(runs)])
    first = json.loads(runs.read_text())
    assert sorted((r["method"], r["seed"]) for r in first) == [("mbd", 0), ("paper-cem", 0)]
    rec = first[0]
    horizon = trajopt.make_model("push_t", 0, trajopt.parse_args(TINY)).horizon  # the task's, read at run time
    assert (rec["samples"], rec["steps"], rec["horizon"]) == (4, 2, horizon)
    assert "zero_reward" in rec and rec["scale"] == "cpu"
    capsys.readouterr()

    # Same settings plus one more method: the two stored runs are skipped, one is added.
    trajopt.main(TINY + ["--methods", "mbd", "paper-cem", "paper-mppi", "--runs", str(runs)])
    assert "2 run(s) already stored, skipped" in capsys.readouterr().out
    second = json.loads(runs.read_text())
    assert [r for r in second if r["method"] != "paper-mppi"] == first
    assert [r["method"] for r in second].count("paper-mppi") == 1

    # Other settings: the stored run does not match, so it is rerun and replaced.
    trajopt.main([a if a != "2" else "3" for a in TINY] + ["--methods", "mbd", "--runs", str(runs)])
    assert "0 run(s) already stored" in capsys.readouterr().out
    third = {(r["method"], r["seed"]): r for r in json.loads(runs.read_text())}
    assert len(third) == 3 and third[("mbd", 0)]["steps"] == 3


def record(task, method, seed, reward, zero=0.0):
    return dict(
        task=task, method=method, seed=seed, reward=reward, feasible=True, time=1.0, samples=128, steps=100,
        horizon=50, temperature=0.1, backend="mujoco", reset_noise=1.0, zero_reward=zero,
    )


def test_reward_table_states_budget_zero_action_target_and_table2():
    means = [("mbd", 1.0), ("paper-cem", 0.5), ("paper-mppi", 1.2)]
    records = [record("hopper", m, s, r + 0.1 * s, zero=-0.2) for m, r in means for s in range(2)]
    table = trajopt.reward_table(records)
    header, _, row = table.splitlines()
    assert "zero action" in header and "MBD ≥ paper" in header and "paper: MBD" in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "Hopper" and cells[1] == "H=50, n=128, 100 steps, λ=0.1, 2 seeds"
    assert cells[2] == "-0.200"
    # columns in METHODS order: MBD, paper MPPI (the best here, in bold), paper CEM
    assert cells[3:6] == ["1.050 ± 0.050", "**1.250 ± 0.050**", "0.550 ± 0.050"]
    assert cells[6] == "+1.450"  # best - zero
    assert cells[7] == "no"  # MBD's mean is below paper MPPI's
    assert cells[8] == "1.53 ± 0.03" and cells[9] == "1.12 / 0.65 / 0.91"


def test_paper_scale_is_the_authors_budget():
    assert trajopt.PAPER_SCALE["hopper"] == dict(samples=2048, steps=100)
    assert trajopt.PAPER_SCALE["humanoid_run"] == dict(samples=8192, steps=300)
    assert trajopt.PAPER_SCALE["push_t"] == dict(samples=2048, steps=200)
    args = trajopt.parse_args(["--scale", "paper"])
    assert args.runs.name == "trajopt_table_paper.json"
    assert set(trajopt.METHODS) >= {"paper-mppi", "paper-cem", "paper-cmaes"}
