"""benchmarks/mnist.py: the shared vectorized loss, the method table, equal evaluations, resuming."""

import importlib
import json
import math

import pytest
import torch
import torch.nn.functional as F
from test_training import fake_mnist

from torch_mbd import MBDOptimizer, batched_closure

bench = importlib.import_module("benchmarks.mnist")
example = bench.example


def _data(tmp_path, n_train=64):
    fake_mnist(tmp_path / "mnist", n_train=n_train)
    return example.load_mnist(tmp_path / "mnist")


def test_flat_loss_equals_the_batched_closure_and_the_python_loop():
    model = example.mlp(3)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 784, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    candidates = [p.detach() + 0.05 * torch.randn(5, *p.shape, generator=gen) for p in model.parameters()]
    loss = bench.FlatLoss(model)
    flat = loss.flatten(candidates)
    assert flat.shape == (5, 26506) == (5, loss.size)
    new = loss(flat, x, y)
    old = batched_closure(model, F.cross_entropy, x, y)(candidates)
    loop = batched_closure(model, F.cross_entropy, x, y, vectorize=False)(candidates)
    torch.testing.assert_close(new, old)
    torch.testing.assert_close(new, loop)
    assert loss.evaluations == 5
    # candidate j's loss is the model loaded with candidate j
    loss.load(flat[2])
    torch.testing.assert_close(F.cross_entropy(model(x), y), new[2])
    torch.testing.assert_close(loss.flatten(), flat[2])
    with pytest.raises(ValueError, match=r"candidates \[n, 26506\]"):
        loss(flat[:, :-1], x, y)


@pytest.mark.parametrize("name", ["mbd", "auto"])
def test_mbd_methods_follow_the_examples_path_exactly(tmp_path, name):
    """The table's MBD rows through FlatLoss == the example's MBDOptimizer + batched_closure loop (same steps)."""
    data = _data(tmp_path)
    old_model = example.mlp(0)
    params = old_model.parameters() if name == "auto" else example.official_param_groups(old_model)
    opt = MBDOptimizer(params, num_samples=8, num_steps=3, seed=0, **bench.AUTHORS_MBD)
    loss = bench.FlatLoss(example.mlp(0))
    trainer = bench.METHODS[name].trainer(loss, 8, 3, 0, "cpu")
    batches = bench.minibatches(64, 16, 0)
    for _ in range(3):
        idx = next(batches)
        x, y = data["train_x"][idx], data["train_y"][idx]
        old = float(opt.step(batched_closure(old_model, F.cross_entropy, x, y)))
        assert trainer.step(x, y) == pytest.approx(old, rel=1e-6)
    torch.testing.assert_close(trainer.solution(), bench.FlatLoss(old_model).flatten())
    assert loss.evaluations == 3 * 8


def _args(tmp_path, methods, budgets=("1", "3"), seeds="1"):
    return bench.parse_args([
        "--methods", *methods, "--seeds", seeds, "--budgets", *budgets, "--samples", "20", "--batch-size", "8",
        "--train-size", "48", "--data", str(tmp_path / "mnist"), "--runs", str(tmp_path / "runs.json"),
        "--state-dir", str(tmp_path / "state"), "--no-write",
    ])  # fmt: skip


def test_every_method_runs_with_the_same_evaluations(tmp_path):
    pytest.importorskip("evotorch")
    data = _data(tmp_path)
    methods = [*bench.DEFAULT_METHODS, "torch_mbd:cem:elite_fraction=0.5"]
    args = _args(tmp_path, methods)
    assert bench.run_grid(args.method_table, data, args) == 2 * len(methods)
    records = json.loads((tmp_path / "runs.json").read_text())
    assert sorted({r["method"] for r in records}) == sorted(methods)
    for r in records:
        assert isinstance(r["test_acc"], float) and 0.0 <= r["test_acc"] <= 1.0, r
    free = [r for r in records if not bench.parse_method(r["method"]).gradient]
    for steps in (1, 3):
        evals = {r["method"]: r["evaluations"] for r in free if r["steps"] == steps}
        assert set(evals.values()) == {steps * 20}, evals  # every gradient-free method: steps x samples
    # a second invocation finds everything stored and runs nothing
    assert bench.run_grid(args.method_table, data, args) == 0
    table = bench.summary_table(records, methods, {m: m for m in methods}, 1)
    assert table.count("\n") == len(methods) + 1 and "not run" in table  # no 500/5000-step runs here
    path = bench.curve_plot(records, methods, {m: m for m in methods}, 20, tmp_path / "curve.png")
    assert path.stat().st_size > 0


@pytest.mark.parametrize("name", ["pgpe", "snes", "cem", "sgd"])
def test_an_interrupted_anytime_run_resumes_to_the_same_result(tmp_path, name):
    if name != "sgd":
        pytest.importorskip("evotorch")
    data = _data(tmp_path)
    args = _args(tmp_path, [name])
    method = bench.METHODS[name]
    straight = bench.run_method(name, method, data, 0, [2, 4], args)
    state = tmp_path / "state.pkl"
    first = bench.run_method(name, method, data, 0, [2], args, state_path=state)
    assert state.is_file()
    resumed = bench.run_method(name, method, data, 0, [4], args, state_path=state)  # starts at step 2
    assert first[0]["test_acc"] == straight[0]["test_acc"]
    assert resumed[0]["steps"] == 4 and resumed[0]["evaluations"] == straight[1]["evaluations"]
    assert resumed[0]["test_acc"] == straight[1]["test_acc"]
    assert not math.isnan(straight[1]["minibatch_loss"])
    assert resumed[0]["minibatch_loss"] == pytest.approx(straight[1]["minibatch_loss"], rel=1e-6)


def test_mbd_runs_once_per_budget(tmp_path):
    data = _data(tmp_path)
    args = _args(tmp_path, ["mbd"])
    with pytest.raises(ValueError, match="one budget per run"):
        bench.run_method("mbd", bench.METHODS["mbd"], data, 0, [1, 3], args)
    plan = bench.plan_runs({"mbd": bench.METHODS["mbd"], "pgpe": bench.METHODS["pgpe"]}, 2, [50, 500, 5000])
    assert plan[:6] == [("mbd", 0, [50]), ("mbd", 0, [500]), ("pgpe", 0, [50, 500]),
                        ("mbd", 1, [50]), ("mbd", 1, [500]), ("pgpe", 1, [50, 500])]
    assert plan[6:] == [("mbd", 0, [5000]), ("pgpe", 0, [5000]), ("mbd", 1, [5000]), ("pgpe", 1, [5000])]


def test_method_specs():
    m = bench.parse_method("torch_mbd:mppi:temperature=0.3,noise_convention=paper")
    assert (m.kind, m.name, m.options) == ("torch_mbd", "mppi", {"temperature": 0.3, "noise_convention": "paper"})
    assert bench.parse_method("pgpe") is bench.METHODS["pgpe"] and bench.METHODS["pgpe"].options["optimizer"] == "clipup"
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        bench.parse_method("nope")
    with pytest.raises(ValueError, match="not in torch_mbd.METHODS"):
        bench.parse_method("torch_mbd:mbd-nonexistent")
    with pytest.raises(ValueError, match="not key=value"):
        bench.parse_method("torch_mbd:mbd:0.3")
    with pytest.raises(SystemExit):
        bench.parse_args(["--methods", "nope"])
    # one line adds a torch_mbd method to the table
    row = bench.torch_mbd_method("mbd", "MBD (tempered)", temperature=1.0)
    assert row.settings() == {"kind": "torch_mbd", "name": "mbd", "options": {"temperature": 1.0}, "param_groups": None}


def test_estimate_times_every_method(tmp_path):
    pytest.importorskip("evotorch")
    data = _data(tmp_path)
    args = _args(tmp_path, ["mbd", "pgpe"], budgets=("2", "5"), seeds="2")
    rows = bench.estimate(args.method_table, data, args, steps=1)
    assert [r[0] for r in rows] == ["mbd", "pgpe", "all"]
    assert rows[0][2] == str(2 * (2 + 5)) and rows[1][2] == str(2 * 5)  # MBD: one run per budget; PGPE: one to the largest
    assert float(rows[0][1]) >= 0 and rows[-1][2] == str(14 + 10)


def test_sweep_needs_its_own_runs_file_and_tables_every_variant(tmp_path):
    with pytest.raises(SystemExit):
        bench.parse_args(["--sweep"])  # would mix the variants into docs/figures/mnist_runs.json
    args = bench.parse_args(["--sweep", "--runs", str(tmp_path / "s.json")])
    assert args.method_table == bench.SWEEP
    records = [{"method": "a", "label": "A", "seed": 0, "steps": 50, "test_acc": 0.5}, {"method": "a", "label": "A", "seed": 0, "steps": 160, "test_acc": 0.75},
               {"method": "b", "label": "B", "seed": 0, "steps": 160, "test_acc": 0.8}]  # fmt: skip
    table = bench.sweep_table(records)
    assert "| A | 50.00 | 75.00 |" in table and "| B | not run | 80.00 |" in table


def test_rerunning_an_early_budget_keeps_the_state_further_on(tmp_path):
    data = _data(tmp_path)
    args = _args(tmp_path, ["sgd"])
    state = tmp_path / "state.pkl"
    bench.run_method("sgd", bench.METHODS["sgd"], data, 0, [2, 4], args, state_path=state)
    assert bench._saved_steps(state, bench.METHODS["sgd"], args, 0) == 4
    bench.run_method("sgd", bench.METHODS["sgd"], data, 0, [2], args, state_path=state)  # a lost record of budget 2
    assert bench._saved_steps(state, bench.METHODS["sgd"], args, 0) == 4
    assert bench._saved_steps(state, bench.METHODS["sgd"], args, 1) == -1  # another seed's run
