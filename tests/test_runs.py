"""Tests of benchmarks/_runs.py: the run store and the resumable grid loop the benchmarks share."""

from __future__ import annotations

import json

import pytest
from _scripts import ROOT

from benchmarks import _runs as runs


def key(record):
    return record["task"], record["method"], record["seed"]


def rec(task, method, seed, reward=0.0, steps=2):
    return dict(task=task, method=method, seed=seed, reward=reward, steps=steps)


def test_store_replaces_a_key_saves_every_put_and_reloads(tmp_path):
    path = tmp_path / "sub" / "runs.json"
    store = runs.RunStore(path, key)
    assert store.records == [] and not path.exists()  # no file yet: an empty store
    store.put(rec("hopper", "mbd", 0, 1.0))
    store.put(rec("hopper", "cem", 0, 2.0))
    assert json.loads(path.read_text()) == store.records  # saved after each put
    store.put(rec("hopper", "mbd", 0, 3.0))  # the same key: replaced, and now last
    assert [(r["method"], r["reward"]) for r in store.records] == [("cem", 2.0), ("mbd", 3.0)]
    assert store.get(("hopper", "mbd", 0))["reward"] == 3.0 and store.get(("hopper", "mbd", 1)) is None
    again = runs.RunStore(path, key)
    assert again.records == store.records and again.get(("hopper", "cem", 0))["reward"] == 2.0
    assert not list(tmp_path.glob("sub/*.tmp"))  # the atomic write leaves no temporary file
    fresh = runs.RunStore(path, key, fresh=True)
    assert fresh.records == [] and json.loads(path.read_text()) == store.records  # the file stays until a put
    fresh.put(rec("ant", "mbd", 0))
    assert json.loads(path.read_text()) == [rec("ant", "mbd", 0)]


def test_same_settings_compares_every_setting_and_nothing_else():
    stored = rec("hopper", "mbd", 0, reward=1.5, steps=2)
    assert runs.same_settings(stored, dict(steps=2))
    assert not runs.same_settings(stored, dict(steps=3))
    assert not runs.same_settings(stored, dict(steps=2, horizon=50))  # a setting the record lacks


class Grid:
    """A fake benchmark: records every callback so that the loop's bookkeeping can be checked."""

    def __init__(self, steps=2, fail_at=None):
        self.steps, self.fail_at = steps, fail_at
        self.built, self.warmed, self.ran = [], [], []

    def build(self, model_key):
        self.built.append(model_key)
        return f"model{model_key}"

    def settings(self, item, model):
        return dict(steps=self.steps)

    def run(self, item, model, cfg):
        if item.key == self.fail_at:
            raise KeyboardInterrupt  # an interrupted benchmark
        self.ran.append(item.key)
        task, method, seed = item.key
        assert model == f"model{item.model}"
        return rec(task, method, seed, reward=float(len(self.ran)), **cfg)

    def warm_up(self, item, model):
        self.warmed.append(item.model[0])

    def __call__(self, store, grid, **options):
        return runs.run_grid(
            store, grid, build=self.build, settings=self.settings, run=self.run, warm_up=self.warm_up, **options
        )


def grid_of(tasks, methods, seeds):
    return [
        runs.GridRun(key=(t, m, s), model=(t, s)) for t in tasks for s in range(seeds) for m in methods
    ]  # fmt: skip


def test_grid_runs_what_is_missing_and_resumes_after_an_interruption(tmp_path):
    path = tmp_path / "runs.json"
    grid = grid_of(["hopper", "ant"], ["mbd", "cem"], 2)
    interrupted = Grid(fail_at=("ant", "mbd", 1))
    with pytest.raises(KeyboardInterrupt):
        interrupted(runs.RunStore(path, key), grid)
    done = [key(r) for r in json.loads(path.read_text())]
    assert done == [item.key for item in grid[:6]]  # everything before the interruption is saved
    # one model per (task, seed), built once; each task warmed up once, before its first run
    assert interrupted.built == [("hopper", 0), ("hopper", 1), ("ant", 0), ("ant", 1)]
    assert interrupted.warmed == ["hopper", "ant"]

    resumed = Grid()
    store = runs.RunStore(path, key)
    assert resumed(store, grid) == 6  # the stored runs are skipped
    assert resumed.ran == [("ant", "mbd", 1), ("ant", "cem", 1)] and resumed.warmed == ["ant"]
    assert [key(r) for r in store.records] == [item.key for item in grid]

    again = Grid()
    assert again(runs.RunStore(path, key), grid) == 8 and again.ran == [] and again.warmed == []


def test_grid_reruns_runs_of_other_settings_and_everything_with_rerun(tmp_path):
    path = tmp_path / "runs.json"
    grid = grid_of(["hopper"], ["mbd", "cem"], 1)
    Grid(steps=2)(runs.RunStore(path, key), grid)
    other = Grid(steps=3)
    store = runs.RunStore(path, key)
    assert other(store, grid[:1]) == 0 and other.ran == [("hopper", "mbd", 0)]
    assert {key(r): r["steps"] for r in store.records} == {("hopper", "cem", 0): 2, ("hopper", "mbd", 0): 3}
    everything = Grid(steps=3)
    assert everything(runs.RunStore(path, key), grid, rerun=True) == 0 and len(everything.ran) == 2


def test_grid_copies_what_copy_returns_instead_of_running(tmp_path):
    path = tmp_path / "runs.json"
    grid = grid_of(["hopper"], ["mbd", "mbd-again"], 1)
    copying = Grid()
    store = runs.RunStore(path, key)

    def copy(item, cfg):
        original = store.get(("hopper", "mbd", 0))
        return None if original is None else dict(original, method=item.key[1], copied_from="mbd")

    assert copying(store, grid, copy=copy) == 1  # a copy counts as not run
    assert copying.ran == [("hopper", "mbd", 0)]
    copied = store.get(("hopper", "mbd-again", 0))
    assert copied["copied_from"] == "mbd" and copied["reward"] == store.get(("hopper", "mbd", 0))["reward"]
    rerun = Grid()
    assert rerun(runs.RunStore(path, key), grid, copy=copy, rerun=True) == 0 and len(rerun.ran) == 2


def test_both_benchmarks_use_the_shared_store():
    """The trajopt and sample-efficiency scripts carry no run store or grid loop of their own."""
    for script in ("benchmarks/trajopt.py", "benchmarks/sample_efficiency.py"):
        text = (ROOT / script).read_text()
        assert "_runs.RunStore(" in text and "_runs.run_grid(" in text
        assert "def save_runs" not in text and "def load_runs" not in text and "def merge_runs" not in text
