"""The ``torch-mbd`` command: listing the tasks, and no finished plan lost to a missing dependency.

Missing dependencies are simulated: ``sys.modules[name] = None`` makes ``import name`` fail as if
the package were not installed, and a ``mujoco.Renderer`` that raises stands for a machine with
no OpenGL. Planning itself is replaced by a sentinel where a test asserts it never starts.
"""

from __future__ import annotations

import sys
import time

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import dynamics  # noqa: E402
import torch_mbd  # noqa: E402
from torch_mbd import cli  # noqa: E402

FAST = ["--samples", "8", "--steps", "2", "--no-progress"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("torch-mbd: error: ")
    return lines[0]


@pytest.fixture
def no_planning(monkeypatch):
    """Fail the test if planning starts (the check under test must come before it)."""

    def plan(*args, **kwargs):
        raise AssertionError("planning started although the output cannot be written")

    monkeypatch.setattr(torch_mbd, "plan", plan)


# ----------------------------------------------------------------------------- tasks
def test_tasks_lists_every_registered_task_with_its_horizon_budget_and_backends(capsys):
    assert cli.main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:] if line and line.split()[0] in dynamics.task_names()}
    assert sorted(rows) == dynamics.task_names()
    for name, line in rows.items():
        info = dynamics.task_info(name)
        samples, steps, temperature = cli.default_budget(info)
        cells = line.split()
        assert cells[1] == str(info.horizon)
        assert f"{samples} x {steps}" in line and info.description in line
        assert ", ".join(info.backends) in line
    # the budget is what 'plan' uses; the horizon and backends what the model has
    car = dynamics.make("car2d")
    assert rows["car2d"].split()[1] == str(car.horizon) and "torch" in rows["car2d"]
    assert cli.default_budget(car) == cli.default_budget(dynamics.task_info("car2d")) == (256, 100, 0.1)


def test_task_info_matches_the_built_models():
    for name in ("car2d", "hopper", "push_t"):
        info, model = dynamics.task_info(name), dynamics.make(name)
        assert info.horizon == model.horizon
        assert cli.default_budget(info) == cli.default_budget(model)
    assert dynamics.task_info("hopper").backends == ("mujoco", "warp", "mjx")
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        dynamics.task_info("nope")


def test_tasks_compiles_no_mujoco_model(monkeypatch, capsys):
    from dynamics.tasks import Task

    def compile(self):
        raise AssertionError("listing the tasks compiled a MuJoCo model")

    monkeypatch.setattr(Task, "compile", compile)
    assert cli.main(["tasks"]) == 0
    assert "push_t" in capsys.readouterr().out


def test_plan_list_lists_the_tasks_instead_of_unknown_task(capsys):
    assert cli.main(["plan", "list"]) == 0
    out = capsys.readouterr().out
    assert "unknown task" not in out and all(name in out for name in dynamics.task_names())


def test_registered_task_is_listed_with_its_description(monkeypatch, capsys):
    from dynamics import registry
    from dynamics.car import Car2D

    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    monkeypatch.setattr(registry, "_METADATA", dict(registry._METADATA))
    monkeypatch.setattr(registry, "_DESCRIPTIONS", dict(registry._DESCRIPTIONS))
    dynamics.register("short_car", lambda **kw: Car2D(horizon=7, **kw), description="a car with 7 steps")
    info = dynamics.task_info("short_car")
    assert (info.horizon, info.backends, info.description) == (7, ("torch",), "a car with 7 steps")
    assert cli.main(["tasks"]) == 0
    assert any(line.split()[:2] == ["short_car", "7"] for line in capsys.readouterr().out.splitlines())


# ----------------------------------------------------------------------------- no lost work
def test_missing_matplotlib_fails_before_planning(tmp_path, monkeypatch, capsys, no_planning):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    out = tmp_path / "car.png"
    assert cli.main(["plan", "car2d", "--out", str(out), *FAST]) == 2
    line = one_line_error(capsys)
    assert "figures need matplotlib" in line and "pip install" in line
    assert list(tmp_path.iterdir()) == []


def test_no_opengl_fails_before_planning(tmp_path, monkeypatch, capsys, no_planning):
    from dynamics.tasks import import_mujoco

    mujoco = import_mujoco()

    def renderer(*args, **kwargs):
        raise mujoco.FatalError("gladLoadGL error")  # what a machine without OpenGL raises

    monkeypatch.setattr(mujoco, "Renderer", renderer)
    assert cli.main(["plan", "push_t", "--out", str(tmp_path / "push_t.gif"), *FAST]) == 2
    line = one_line_error(capsys)
    assert "libosmesa6" in line and "MUJOCO_GL" in line
    assert list(tmp_path.iterdir()) == []


def test_missing_video_encoder_fails_before_planning(tmp_path, monkeypatch, capsys, no_planning):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    assert cli.main(["plan", "push_t", "--out", str(tmp_path / "push_t.mp4"), *FAST]) == 2
    assert "pip install imageio imageio-ffmpeg" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_npz_is_written_before_a_figure_or_video_that_fails(suffix, tmp_path, monkeypatch, capsys):
    """The plan is saved first; an output that fails afterwards loses nothing and says where the plan is."""
    out = tmp_path / f"plan{suffix}"
    npz = out.with_suffix(".npz")
    seen = {}

    def failing_output(*args, **kwargs):
        seen["npz existed"] = npz.exists()
        raise ImportError("simulated: the figure's library vanished")

    if suffix == ".png":
        monkeypatch.setattr(cli, "write_figure", failing_output)
        task = "car2d"
    else:
        from dynamics import render as render_module

        monkeypatch.setattr(render_module, "check_rendering", lambda: None)  # pass the pre-check
        monkeypatch.setattr(render_module, "render", failing_output)
        task = "push_t"
    assert cli.main(["plan", task, "--out", str(out), *FAST]) == 2
    assert seen == {"npz existed": True}
    captured = capsys.readouterr()
    assert f"wrote: {npz}" in captured.out
    line = captured.err.strip()
    assert len(line.splitlines()) == 1 and f"the plan is saved in {npz}" in line
    arrays = np.load(npz)
    assert arrays["actions"].shape[-1] == dynamics.make(task).action_dim and arrays["history"].shape[0] == 2


def test_without_out_the_arrays_go_to_task_npz_in_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["plan", "car2d", *FAST]) == 0
    out = capsys.readouterr().out
    assert "wrote: car2d.npz" in out and "--out" in out  # says so, and how to get a figure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["car2d.npz"]
    arrays = np.load(tmp_path / "car2d.npz")
    assert arrays["actions"].shape == (dynamics.task_info("car2d").horizon, 2)


def test_out_npz_writes_the_arrays_there_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert cli.main(["plan", "car2d", "--out", "runs/h.npz", "--knots", "4", *FAST]) == 0
    assert "wrote: runs/h.npz" in capsys.readouterr().out
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == ["runs/h.npz"]
    arrays = np.load(tmp_path / "runs" / "h.npz")
    # a knots plan keeps its knots, and its actions are their interpolation
    import torch

    from torch_mbd.knots import interpolate

    assert arrays["knots"].shape == (4, 2) and arrays["actions"].shape == (dynamics.task_info("car2d").horizon, 2)
    expected = interpolate(torch.as_tensor(arrays["knots"]), arrays["actions"].shape[0]).clamp(-1.0, 1.0)
    np.testing.assert_allclose(arrays["actions"], expected.numpy(), rtol=0, atol=1e-6)
    assert cli.main(["plan", "car2d", "--out", "h.npz", *FAST]) == 0  # per-step: no knots entry
    assert "knots" not in np.load(tmp_path / "h.npz").files
    assert cli.main(["plan", "car2d", "--out", "h.txt", *FAST]) == 2
    assert ".npz" in one_line_error(capsys)


def test_unwritable_folder_fails_before_planning(tmp_path, monkeypatch, capsys, no_planning):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)
    assert cli.main(["plan", "car2d", *FAST]) == 2
    assert "not writable" in one_line_error(capsys)


@pytest.mark.parametrize(
    "out, words",
    [
        ("afile/plan.png", ["--out afile/plan.png: afile is a file, not a folder"]),
        ("/sys/plan.png", ["cannot write /sys/plan.npz"]),  # a virtual file system: even root cannot write
        (None, ["cannot write car2d.npz: a folder of that name exists"]),  # TASK.npz is a folder
        ("taken.png", ["cannot write taken.npz: a folder of that name exists"]),
        ("figure.png", ["cannot write figure.png: a folder of that name exists"]),
        ("locked.png", ["cannot write locked.png", "Permission denied"]),
    ],
    ids=["folder-is-a-file", "system-path", "task-npz-is-a-folder", "npz-is-a-folder", "figure-is-a-folder",
         "read-only-file"],
)
def test_an_output_that_cannot_be_written_fails_at_once(out, words, tmp_path, monkeypatch, capsys, no_planning):
    """Every output file is opened for writing before planning: exit status 2, one line, within a second."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file, not a folder")
    for folder in ("car2d.npz", "taken.npz", "figure.png"):
        (tmp_path / folder).mkdir()
    (tmp_path / "locked.npz").write_bytes(b"kept")
    real_open = open

    def no_write(path, mode="r", *args, **kwargs):  # stands for a read-only file (root may write to any)
        if str(path).endswith("locked.png") and any(c in mode for c in "wa"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_write)
    before = sorted(p.name for p in tmp_path.iterdir())
    start = time.perf_counter()
    assert cli.main(["plan", "car2d", *FAST] + ([] if out is None else ["--out", out])) == 2
    assert time.perf_counter() - start < 1.0
    line = one_line_error(capsys)
    for word in words:
        assert word in line, line
    # nothing was created or changed: a probe file is removed, an existing file kept as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "locked.npz").read_bytes() == b"kept"


def test_the_output_probe_leaves_an_existing_file_unchanged_and_plans(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "car2d.npz").write_bytes(b"an older plan")
    assert cli.probe_writable(tmp_path / "car2d.npz") is None
    assert (tmp_path / "car2d.npz").read_bytes() == b"an older plan"
    cli.probe_writable(tmp_path / "new.npz")
    assert not (tmp_path / "new.npz").exists()
    assert cli.main(["plan", "car2d", *FAST]) == 0  # the real write replaces the old file
    assert np.load(tmp_path / "car2d.npz")["actions"].shape[-1] == 2


@pytest.mark.parametrize("content", [None, b"", b"just some text\n", b"PK\x03\x04 truncated"])
def test_missing_or_unreadable_demo_file_is_one_line_with_status_2(content, tmp_path, capsys, no_planning):
    path = tmp_path / "clip.npz"
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["plan", "humanoid_jog", "--demo", str(path), *FAST]) == 2
    line = one_line_error(capsys)
    assert f"--demo {path}" in line
    if content is None:
        assert "no such file" in line


def test_a_task_without_demonstrations_names_those_that_have_them(capsys, no_planning):
    assert cli.main(["plan", "hopper", "--demo", "rrt", *FAST]) == 2
    line = one_line_error(capsys)
    assert "--demo rrt: hopper has no demonstrations" in line and "MujocoModel" not in line
    for task in cli.DEMO_SOURCES:
        assert task in line
    assert "'rrt'" in line and "'mocap'" in line


def test_the_tasks_said_to_have_demonstrations_have_them():
    from dynamics.humanoid_jog import HumanoidJog

    assert set(cli.DEMO_SOURCES) <= set(dynamics.task_names())
    assert hasattr(dynamics.make("car2d"), "demonstration") and hasattr(HumanoidJog, "demonstration")
    assert not hasattr(dynamics.make("hopper", horizon=2), "demonstration")


def test_the_authors_clip_missing_offline_is_one_line_naming_both_ways(tmp_path, monkeypatch, capsys, no_planning):
    from dynamics import data

    monkeypatch.setenv("TORCH_MBD_DATA", str(tmp_path))  # an offline folder without the clip: no download
    assert cli.main(["plan", "humanoid_jog", "--demo", "mocap", *FAST]) == 2
    line = one_line_error(capsys)
    assert "--demo mocap" in line and f"TORCH_MBD_DATA={tmp_path}" in line and data.CLIP_URL in line


def test_a_folder_as_demo_file(tmp_path, capsys, no_planning):
    assert cli.main(["plan", "humanoid_jog", "--demo", str(tmp_path), *FAST]) == 2
    assert f"--demo {tmp_path}" in one_line_error(capsys)


# ----------------------------------------------------------------------------- figures
def _small_plan(model, steps=3):
    return torch_mbd.plan(model, num_samples=8, num_steps=steps, seed=0, progress=False)


def test_car_figure_has_units_integer_step_ticks_and_a_legend_off_the_map():
    import matplotlib.pyplot as plt

    car = dynamics.make("car2d")
    result = _small_plan(car)
    fig, (ax_map, ax_opt) = plt.subplots(1, 2)
    cli.draw_map(ax_map, car, result)
    cli.draw_optimization(ax_opt, result)
    fig.canvas.draw()
    assert (ax_map.get_xlabel(), ax_map.get_ylabel()) == ("x (m)", "y (m)")
    assert ax_opt.get_xlabel() == "diffusion step"
    ticks = [t for t in ax_opt.get_xticks() if ax_opt.get_xlim()[0] <= t <= ax_opt.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)  # 3 steps: no 0.5 ticks
    legend = ax_map.get_legend().get_window_extent()
    assert legend.y1 <= ax_map.get_window_extent().y0  # entirely below the map: it covers no data
    plt.close(fig)


def test_a_model_that_draws_its_plans_is_asked_for_its_figure(tmp_path):
    """write_figure hands the model an empty figure and the plan's states (push-T draws the T itself)."""
    model = dynamics.make("push_t")
    result = _small_plan(model, steps=2)
    seen = []
    draw_plan = model.draw_plan

    def spy(fig, states):
        seen.append((len(fig.axes), states))
        return draw_plan(fig, states)

    model.draw_plan = spy
    path = cli.write_figure(tmp_path / "push_t.png", model, result, title="push-T")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(seen) == 1 and seen[0][0] == 0 and seen[0][1] is result.states


class _Captured(Exception):
    pass


def _captured_plan(monkeypatch, argv) -> dict:
    seen = {}

    def plan(model, **kwargs):
        seen.update(kwargs, horizon_of_model=model.horizon)
        raise _Captured

    monkeypatch.setattr(torch_mbd, "plan", plan)
    with pytest.raises(_Captured):
        cli.main(argv)
    return seen


@pytest.mark.parametrize("task", ["car2d", "push_t"])
def test_plan_uses_the_budget_that_tasks_lists(task, monkeypatch):
    info = dynamics.task_info(task)
    samples, steps, temperature = cli.default_budget(info)
    seen = _captured_plan(monkeypatch, ["plan", task, "--no-progress", "--preset", "paper"])
    assert (seen["num_samples"], seen["num_steps"], seen["temperature"]) == (samples, steps, temperature)
    assert seen["preset"] == "paper" and "num_knots" not in seen
    assert seen["horizon"] is None and seen["horizon_of_model"] == info.horizon
    # the default preset: the task's budget, the preset's temperature (the task's is the paper's algorithm's)
    seen = _captured_plan(monkeypatch, ["plan", task, "--no-progress"])
    assert (seen["num_samples"], seen["num_steps"]) == (samples, steps) and seen["preset"] == "default"
    assert seen["temperature"] == cli.PRESETS["default"]["temperature"]


def test_plan_passes_knots_and_an_explicit_temperature(monkeypatch):
    seen = _captured_plan(monkeypatch, ["plan", "car2d", "--no-progress", "--knots", "7", "--temperature", "0.3"])
    assert seen["num_knots"] == 7 and seen["temperature"] == 0.3
    seen = _captured_plan(monkeypatch, ["plan", "car2d", "--no-progress", "--temperature", "auto", "--preset", "paper"])
    assert seen["temperature"] == "auto" and seen["preset"] == "paper"


def test_a_bad_temperature_names_auto(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["plan", "car2d", "--temperature", "hot"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "expected a finite number > 0 or 'auto', got 'hot'" in err


@pytest.mark.parametrize("method", cli.METHODS)
def test_the_header_shows_the_temperature_only_for_methods_that_have_one(method, monkeypatch, capsys):
    _captured_plan(monkeypatch, ["plan", "car2d", "--no-progress", "--method", method])
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith(f"torch-mbd plan car2d: method={method}") and "preset=" in header
    assert ("temperature=" in header) == (method in cli.TEMPERATURE_METHODS), header


@pytest.mark.parametrize("method", cli.METHODS)
def test_temperature_methods_are_those_whose_plan_the_temperature_changes(method):
    pytest.importorskip("cma")
    car = dynamics.make("car2d", horizon=6)
    runs = [torch_mbd.plan(car, num_samples=8, num_steps=2, seed=0, progress=False, method=method,
                           temperature=t, keep_best=False).actions for t in (0.05, 5.0)]
    assert (not np.array_equal(runs[0].numpy(), runs[1].numpy())) == (method in cli.TEMPERATURE_METHODS)


@pytest.mark.parametrize("argv", [["--knots", "0"], ["--temperature", "hot"], ["--preset", "fast"]])
def test_bad_planner_flags_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["plan", "car2d", *argv])
    assert exc.value.code == 2 and argv[0] in capsys.readouterr().err
