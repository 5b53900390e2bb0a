"""Tests of benchmarks/sample_efficiency.py: resumable runs, run-time options, the report's cells and targets."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest
from _scripts import load_script

se = load_script("benchmarks/sample_efficiency.py", "sample_efficiency_under_test")

TINY = ["--tasks", "hopper", "--samples", "4", "--steps", "2", "--seeds", "1", "--no-write"]


def counting_plan(monkeypatch) -> list[dict]:
    """Replace the script's ``plan`` by a wrapper that records the options of every call."""
    calls, real = [], se.plan

    def wrapper(model, **kwargs):
        calls.append(kwargs)
        return real(model, **kwargs)

    monkeypatch.setattr(se, "plan", wrapper)
    return calls


@pytest.mark.slow
def test_runs_are_stored_skipped_when_present_and_rerun_when_settings_change(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs.json"
    se.main(TINY + ["--configs", "mbd", "mppi-knots", "--runs", str(runs)])
    first = json.loads(runs.read_text())
    assert sorted((r["config"], r["n"], r["seed"]) for r in first) == [("mbd", 4, 0), ("mppi-knots", 4, 0)]
    model = se.make_model("hopper", 0, se.parse_args(TINY))
    by_config = {r["config"]: r for r in first}
    for rec in first:
        assert (rec["task"], rec["steps"], rec["rollouts"], rec["horizon"]) == ("hopper", 2, 8, model.horizon)
        assert len(rec["reward_history"]) == 2 and isinstance(rec["reward"], float)
        assert rec["machine"] and rec["command"].startswith("python -m benchmarks.sample_efficiency")
        assert "zero_reward" in rec and isinstance(rec["feasible"], bool) and rec["time"] > 0
        assert rec["source"] in ("estimate", "sample")
    preset = se.default_preset()
    assert by_config["mbd"]["kwargs"] == {} and by_config["mbd"]["preset_default"] == se.as_json(preset)  # no option
    knots = by_config["mppi-knots"]["kwargs"]
    assert (knots["method"], knots["preset"]) == ("mppi", "paper")
    assert knots["temperature"] == pytest.approx(model.temperature)  # the task's, read at run time
    assert (knots["num_knots"], knots["interpolation"], knots["keep_best"]) == (se.KNOTS, "cubic", True)
    capsys.readouterr()

    # Same settings: nothing is planned (not even a warm-up), both runs are skipped.
    calls = counting_plan(monkeypatch)
    se.main(TINY + ["--configs", "mbd", "mppi-knots", "--runs", str(runs)])
    assert calls == []
    assert "2 run(s) already stored, skipped" in capsys.readouterr().out
    assert json.loads(runs.read_text()) == first

    # The ablation's "default" row has the options and settings of "mbd": copied, not rerun.
    se.main(["--ablation", "--configs", "default"] + TINY + ["--runs", str(runs)])
    assert calls == []
    copy = next(r for r in json.loads(runs.read_text()) if r["config"] == "ablation:default")
    assert copy["copied_from"] == "mbd" and copy["reward"] == by_config["mbd"]["reward"]
    capsys.readouterr()

    # Other settings (3 steps): the stored run does not match, so it is rerun and replaced.
    se.main([a if a != "2" else "3" for a in TINY] + ["--configs", "mbd", "--runs", str(runs)])
    assert "0 run(s) already stored" in capsys.readouterr().out
    timed = [c for c in calls if c["num_steps"] == 3]
    assert len(timed) == 1 and set(timed[0]) == {"num_samples", "num_steps", "seed", "progress"}
    third = {(r["config"], r["n"], r["seed"]): r for r in json.loads(runs.read_text())}
    assert len(third) == 3 and third[("mbd", 4, 0)]["steps"] == 3
    assert third[("mppi-knots", 4, 0)] == by_config["mppi-knots"]


def test_grid_order_leaves_complete_task_and_n_blocks():
    args = se.parse_args(
        ["--tasks", "hopper", "ant", "--configs", "mbd", "cem", "--samples", "16", "64", "--seeds", "2"]
    )
    order = se.grid(args)
    blocks = [block for block, _ in itertools.groupby((task, n) for task, n, _, _ in order)]
    assert blocks == [("hopper", 16), ("hopper", 64), ("ant", 16), ("ant", 64)]  # each (task, n) contiguous
    assert order[:4] == [  # seeds, then configurations innermost
        ("hopper", 16, 0, "mbd"), ("hopper", 16, 0, "cem"), ("hopper", 16, 1, "mbd"), ("hopper", 16, 1, "cem")
    ]  # fmt: skip


def test_parse_args_defaults_and_errors():
    args = se.parse_args([])
    assert args.samples == [16, 64, 256] and args.steps == 100 and args.seeds == 4
    assert args.configs == ["mbd", "mbd-paper", "cem", "mppi", "cmaes"] and args.runs.name == "sample_efficiency.json"
    tasks = {"hopper", "half_cheetah", "walker2d", "ant", "humanoid_standup", "humanoid_run", "push_t"}
    assert set(args.tasks) == tasks
    abl = se.parse_args(["--ablation"])
    assert abl.samples == [64] and abl.configs == ["ablation:" + a for a in se.ABLATIONS]
    for bad in (["--configs", "nope"], ["--ablation", "--configs", "mbd"], ["--samples", "0"], ["--steps", "0"]):
        with pytest.raises(SystemExit):
            se.parse_args(bad)


def test_configs_resolve_the_task_temperature_and_the_default_preset_at_run_time(monkeypatch):
    preset = dict(num_knots=6, interpolation="cubic", keep_best=True, temperature="auto")
    monkeypatch.setattr(se, "default_preset", lambda: dict(preset))
    model = SimpleNamespace(temperature=0.4)
    assert se.resolve(se.CONFIGS["mbd"], model) == {}
    assert se.resolve(se.CONFIGS["mbd-paper"], model) == dict(preset="paper", temperature=0.4)
    assert se.resolve(se.CONFIGS["mppi"], model) == dict(method="mppi", preset="paper", temperature=0.4)
    knots = dict(num_knots=se.KNOTS, interpolation="cubic", keep_best=True)  # fixed, not the default preset's
    assert se.resolve(se.CONFIGS["cem-knots"], model) == dict(method="cem", preset="paper", **knots)
    assert se.resolve(se.CONFIGS["mppi-knots"], model) == dict(method="mppi", preset="paper", temperature=0.4, **knots)
    plus_knots = dict(preset="paper", temperature=0.4, num_knots=se.KNOTS, interpolation="cubic")
    assert se.resolve(se.ABLATIONS["+knots"], model) == plus_knots
    assert se.resolve(se.ABLATIONS["default - auto temperature"], model) == dict(temperature=0.4)


def record(task, config, n, seed, reward, feasible=True):
    return dict(
        task=task, config=config, n=n, seed=seed, reward=reward, feasible=feasible, time=1.0, steps=100,
        rollouts=100 * n, horizon=50, backend="mujoco", reset_noise=1.0, kwargs={}, zero_reward=-0.25,
    )


def cells(table: str) -> list[list[str]]:
    """The body cells of a markdown table."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_task_table_bold_best_per_column_missing_cell_and_infeasible():
    records = [record("hopper", "mbd", n, s, r + 0.1 * s) for n, r in ((16, 1.0), (64, 2.0)) for s in range(2)]
    records += [record("hopper", "cem", 16, s, 1.5 + 0.1 * s, feasible=s == 0) for s in range(2)]  # n=64 missing
    table = se.task_table(records, "hopper", ["mbd", "cem"], [16, 64])
    assert table.splitlines()[0] == "| config | n = 16 | n = 64 |"
    assert cells(table) == [
        ["MBD (default)", "1.050 ± 0.050", "**2.050 ± 0.050**"],
        ["CEM", "**1.550 ± 0.050 (1 infeasible)**", "-"],
    ]


def main_grid(task, means: dict, seeds=2) -> list[dict]:
    """Records of ``task`` with mean reward ``means[(config, n)]`` (± 0.05 over 2 seeds)."""
    return [record(task, c, n, s, m - 0.05 + 0.1 * s) for (c, n), m in means.items() for s in range(seeds)]


def test_target_lines_per_task_yes_no_and_undecided():
    full = {(c, n): 1.0 for c in se.BASELINES for n in (64, 256)}
    win = {**full, ("mbd", 64): 2.0, ("mbd", 256): 2.5, ("mbd-paper", 256): 1.5}
    lose = {**win, ("cmaes-knots", 256): 3.0, ("mbd-paper", 256): 2.2}  # a baseline above MBD at n = 256
    partial = {k: v for k, v in win.items() if k != ("cem", 64)}  # one baseline cell missing, none above MBD
    records = main_grid("hopper", win) + main_grid("ant", lose) + main_grid("push_t", partial)
    stats = se.cell_stats(records)
    assert se.beats_baselines(stats, "hopper") == ("yes", "")
    assert se.beats_baselines(stats, "ant") == ("no", "CMA-ES (knots) at n=256: 3.000 > 2.500")
    assert se.beats_baselines(stats, "push_t") == ("-", "missing CEM at n=64")
    assert se.beats_baselines(stats, "walker2d") == ("-", f"missing {2 * (1 + len(se.BASELINES))} cells")  # no runs
    assert se.fewer_rollouts(stats, "hopper") == ("yes", "2.000 vs 1.500")
    assert se.fewer_rollouts(stats, "ant") == ("no", "2.000 vs 2.200")
    assert se.fewer_rollouts(stats, "walker2d") == ("-", "missing runs")

    first, second = se.target_lines(records, tasks=["hopper", "ant", "push_t"])
    assert "Hopper yes; Ant no (CMA-ES (knots) at n=256: 3.000 > 2.500); Push T - (missing CEM at n=64)" in first
    assert "Yes on 1 of 3 tasks, 1 undecided (needed: 3): **not met**" in first
    assert "Hopper yes (2.000 vs 1.500); Ant no (2.000 vs 2.200); Push T yes (2.000 vs 1.500)" in second
    assert "Yes on 2 of 3 tasks (needed: 3): **not met**" in second
    # On all 7 tasks target 2 needs 5: two wins and five tasks without runs leave it open.
    assert "Yes on 2 of 7 tasks, 4 undecided (needed: 5): **open (runs missing)**" in se.target_lines(records)[1]
    wins = [r for t in ("hopper", "ant", "walker2d", "half_cheetah", "push_t") for r in main_grid(t, win)]
    assert "(needed: 5): **met**" in se.target_lines(wins)[1]


def test_targets_count_a_cell_short_of_seeds_as_missing():
    full = {(c, n): 1.0 for c in ["mbd", *se.BASELINES] for n in (64, 256)}
    records = main_grid("hopper", {**full, ("mbd", 64): 2.0, ("mbd", 256): 2.0, ("mbd-paper", 256): 1.5}, seeds=4)
    short = [r for r in records if not (r["config"] == "cem" and r["n"] == 256 and r["seed"] >= 2)]  # 2 of 4 seeds
    assert se.beats_baselines(se.cell_stats(short), "hopper") == ("yes", "")  # every cell present
    assert set(se.complete_cell_stats(short)) == set(se.cell_stats(short)) - {("hopper", "cem", 256)}
    assert "Hopper - (missing CEM at n=256)" in se.target_lines(short, tasks=["hopper"])[0]
    assert "Hopper yes" in se.target_lines(records, tasks=["hopper"])[0]


def test_ablation_table_and_missing_run_count():
    records = [
        record("hopper", "ablation:" + a, 64, s, k + 0.1 * s) for k, a in enumerate(se.ABLATIONS) for s in range(2)
    ]
    records = [r for r in records if r["config"] != "ablation:+keep_best"]
    table = se.ablation_table(records, ["hopper"], 64)
    assert table.splitlines()[0] == "| option set | plan options | Hopper |"
    rows = {row[0]: row for row in cells(table)}
    assert list(rows) == list(se.ABLATIONS)
    assert rows["paper"][1] == "preset='paper', temperature=the task's temperature"
    assert rows["paper"][2] == "0.050 ± 0.050"
    assert rows["default"][1] == "none (the defaults)"
    assert rows["+keep_best"][2] == "-"
    assert rows["default - auto temperature"][2] == f"**{len(se.ABLATIONS) - 1 + 0.05:.3f} ± 0.050**"
    lost, total, lost_abl, total_abl = se.missing_runs(records)
    assert (lost, total) == (7 * len(se.MAIN_CONFIGS) * 3 * 4, 7 * len(se.MAIN_CONFIGS) * 3 * 4)
    assert (lost_abl, total_abl) == (7 * len(se.ABLATIONS) * 4 - 2 * (len(se.ABLATIONS) - 1), 7 * len(se.ABLATIONS) * 4)


def test_summary_states_zero_reward_missing_cells_and_runs(tmp_path):
    records = main_grid("hopper", {("mbd", 16): 1.0, ("mbd", 64): 2.0, ("cem", 16): 1.5})
    text = se.summary(records)
    assert "### Hopper" in text and "Zero-action reward -0.250; H = 50, 100 steps, 2 seeds (0, 1)." in text
    assert "| CEM | **1.500 ± 0.050** | - |" in text
    assert f"Missing runs: {7 * len(se.MAIN_CONFIGS) * 3 * 4 - 6} of the {7 * len(se.MAIN_CONFIGS) * 3 * 4} runs" in text
    assert "### Targets of issue 14" in text and "- Target 1," in text and "- Target 2," in text
    path = se.figure(records, tmp_path / "fig.png")
    assert path.stat().st_size > 1000


def test_report_runs_nothing_and_summarizes_the_stored_runs(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs.json"
    se._runs.save_runs(runs, [record("hopper", "mbd", 64, 0, 2.5), record("hopper", "cem", 64, 0, 2.0)])

    def no_plan(*args, **kwargs):
        raise AssertionError("--report must not plan")

    monkeypatch.setattr(se, "plan", no_plan)
    se.main(["--report", "--runs", str(runs), "--no-write"])
    out = capsys.readouterr().out
    assert "2.500" in out and "2.000" in out


def test_the_report_shows_commands_that_run_into_the_stored_file():
    reproducing_command = se.reproducing_command
    scratch = "python -m benchmarks.sample_efficiency --no-write --runs /tmp/se/p1.json --tasks hopper --samples 64"
    assert reproducing_command(scratch) == "python -m benchmarks.sample_efficiency --tasks hopper --samples 64"
    assert reproducing_command("python -m benchmarks.sample_efficiency --runs=/tmp/a.json --ablation") == (
        "python -m benchmarks.sample_efficiency --ablation"
    )
    assert reproducing_command(scratch, "runs/se.json").endswith("--samples 64 --runs runs/se.json")
    # the stored report names no scratch file
    from _scripts import ROOT

    results = (ROOT / "docs" / "results.md").read_text()
    section = results[results.index("<!-- sample_efficiency:start -->") : results.index("<!-- sample_efficiency:end -->")]
    assert "/tmp/" not in section and "--no-write" not in section
