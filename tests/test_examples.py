"""The examples a newcomer runs first: ``--help`` shows every default and does nothing else.

Each example parses its arguments with ``argparse.ArgumentDefaultsHelpFormatter`` (so the help
cannot disagree with the defaults), ``--help`` exits 0 without planning or writing a file, and
every command line the docs and the examples' own docstrings show parses.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys

import pytest

from _scripts import ROOT, load_script

EXAMPLES = ("car_umaze", "humanoid_jog", "mpc_hopper", "mnist_mlp")


@pytest.fixture(scope="module", params=EXAMPLES)
def example(request):
    return request.param, load_script(f"examples/{request.param}.py", f"{request.param}_example_help")


@pytest.mark.parametrize("name", EXAMPLES)
def test_help_exits_zero_and_writes_nothing(name, tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--help"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("usage:") and "(default:" in out.stdout
    assert list(tmp_path.iterdir()) == []  # no figure, no .npz, no folder: nothing ran


def test_every_option_has_help_that_shows_its_default(example):
    name, module = example
    parser = module.build_parser()
    assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter), name
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name}: {action.option_strings} has no help text"
        # the formatter writes the default; a hand-written one could disagree with it
        assert "default" not in action.help.replace("%(default)s", ""), f"{name}: {action.option_strings}"
        shown = str(action.default)
        assert f"(default: {shown})" in text, f"{name}: {action.option_strings} does not show its default {shown!r}"


def _documented_commands(name: str) -> list[list[str]]:
    """Every ``python examples/NAME.py ...`` command in the docs, the README and the example's docstring."""
    sources = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / f"{name}.py"]
    commands = []
    for path in sources:
        for line in path.read_text().splitlines():
            match = re.search(rf"python examples/{name}\.py([^`#\n]*)", line)
            if match:
                commands.append(shlex.split(match.group(1)))
    return commands


def test_documented_command_lines_parse(example, tmp_path, monkeypatch):
    name, module = example
    commands = _documented_commands(name)
    assert commands, f"no documented command line for examples/{name}.py"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # the docs write into runs/
    for argv in commands:
        if "--help" in argv:
            continue
        argv = [a for a in argv if a != "--download"]  # parsing only: nothing is fetched either way
        if name == "mnist_mlp":
            argv = [a if a != "cuda" else "cpu" for a in argv]  # this machine may have no GPU
        module.build_parser().parse_args(argv)  # raises SystemExit(2) on an unknown flag or bad value


@pytest.mark.parametrize(
    "name, words",
    [
        ("mnist_mlp", ("--download", "torch-mbd[mnist]", "--data", "TORCH_MBD_DATA")),
        ("humanoid_jog", ("--clip mocap", "TORCH_MBD_DATA=", "path of an .npz clip", "download it once")),
    ],
)
def test_default_run_without_data_is_one_line_and_status_2(name, words, tmp_path):
    """A clone without the data and without a network: one line naming the ways to get it, no traceback."""
    if name == "humanoid_jog":
        pytest.importorskip("mujoco")
        pytest.importorskip("gymnasium")
    env = dict(os.environ, TORCH_MBD_DATA=str(tmp_path / "empty"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith(f"{name}.py: error: ") and "Traceback" not in out.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, nothing cached


def test_bad_values_are_rejected_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    car = load_script("examples/car_umaze.py", "car_umaze_example_bad")
    for argv, message in (
        (["--samples", "0"], "--samples must be >= 1"),
        (["--temperature", "0"], "--temperature must be > 0"),
        (["--out", str(tmp_path / "no" / "such" / "car.png")], "does not exist"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            car.parse_args(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- figures
@pytest.fixture
def kept_figures(monkeypatch):
    """Keep the figures the plotting functions close, to inspect them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    monkeypatch.setattr(plt, "close", lambda *args: None)
    yield plt
    plt.close("all")  # the restored close


def _legends_below_every_panel(fig) -> None:
    fig.canvas.draw()
    assert fig.legends, "the figure has no legend"
    lowest = min(ax.get_tightbbox().y0 for ax in fig.axes)  # panels with their tick labels
    for legend in fig.legends:
        assert legend.get_window_extent().y1 <= lowest + 1, "the legend overlaps a panel"
    assert all(ax.get_legend() is None for ax in fig.axes)


class _JogModel:
    control_dt = 0.03

    def __init__(self):
        import torch

        self._torso_offset = torch.tensor([0.0, 0.0, 0.05], dtype=torch.float64)


def test_mpc_example_plot_labels_the_push_in_a_legend_below_the_panels(kept_figures, tmp_path):
    import numpy as np

    example = load_script("examples/mpc_hopper.py", "mpc_hopper_example_plot")
    t = np.arange(11)
    run = dict(torso=np.stack([0.1 * t, 0 * t, 1.0 + 0 * t], 1), rewards=np.ones(10))
    runs = {"open loop": run, "MPC (closed loop)": dict(run, torso=run["torso"] + [0.0, 0.0, 0.1])}
    example.plot(runs, run["torso"], 0.04, 5, tmp_path / "mpc.png")
    fig = kept_figures.gcf()
    _legends_below_every_panel(fig)
    assert not any(ax.texts for ax in fig.axes)  # no free text label to run into anything
    labels = fig.legends[0].get_texts()
    assert any(text.get_text() == "push at t = 0.20 s" for text in labels)
    # the open loop and the prediction coincide here: different widths and styles keep both visible
    open_loop, _, prediction = fig.axes[0].get_lines()[:3]
    assert (open_loop.get_linewidth(), open_loop.get_linestyle()) != (prediction.get_linewidth(), prediction.get_linestyle())


def test_jog_figures_keep_coinciding_curves_distinguishable(kept_figures, tmp_path):
    import numpy as np
    import torch

    example = load_script("examples/humanoid_jog.py", "humanoid_jog_example_plot")
    H = 8
    torso = np.zeros((H, 3)) + [0.0, 0.0, 1.2]
    same = dict(torso=torso, ankles=np.zeros((H, 2, 3)))  # both plans identical: the worst case
    reference = torch.zeros(H, 5, 3, dtype=torch.float64)
    example.plot(_JogModel(), {"no demo": same, "demo": same}, reference, np.zeros((H, 2, 3)), tmp_path / "jog.png")
    fig = kept_figures.gcf()
    _legends_below_every_panel(fig)
    red, blue = (next(l for l in fig.axes[0].get_lines() if l.get_color() == c) for c in ("tab:red", "tab:blue"))
    assert red.get_linewidth() > 1.5 * blue.get_linewidth() and blue.get_marker() not in (None, "None", "")

    bench = load_script("benchmarks/humanoid_jog.py", "humanoid_jog_bench_plot")
    per_seed = [dict(torso_z=torch.full((H,), 1.2), torso_x=torch.zeros(H), distance=0.4) for _ in range(3)]
    bench.figure({"no demo": per_seed, "demo": per_seed}, reference, _JogModel(), tmp_path / "bench.png")
    fig = kept_figures.gcf()
    _legends_below_every_panel(fig)
    styles = {l.get_color(): l.get_linestyle() for l in fig.axes[0].get_lines() if l.get_color() in ("tab:red", "tab:blue")}
    assert styles["tab:red"] != styles["tab:blue"]
    assert all(float(t).is_integer() for t in fig.axes[2].get_xticks())  # seeds


def test_mpc_benchmark_figure_legend_covers_no_bar(kept_figures, tmp_path):
    bench = load_script("benchmarks/mpc.py", "mpc_bench_plot")
    rows = [dict(task=task, condition=c, replay=-1.5, mpc=-1.3) for task in ("car2d", "hopper") for c in ("nominal", "pushes")]
    bench.figure(rows, tmp_path / "mpc.png")
    fig = kept_figures.gcf()
    _legends_below_every_panel(fig)
    assert "per control step" in fig.axes[0].get_ylabel()
