"""Videos of MuJoCo rollouts (:mod:`dynamics.render`): a few small frames to a GIF and an MP4.

Rendering needs an offscreen OpenGL backend (``MUJOCO_GL=osmesa`` with Debian's ``libosmesa6``
on a CPU machine, which CI installs; ``egl`` on a GPU machine). The rendering tests skip, with
the reason, only when no such context can be created; the argument checks run everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _hide_gl import HIDE_LIBRARIES

import dynamics.render as render_module
from dynamics.model import MujocoModel
from dynamics.render import render, render_frames, simulate_qpos
from dynamics.tasks import import_mujoco

mujoco = import_mujoco()

W, H = 64, 48  # small frames: fast on OSMesa's software rasterizer
STEPS = 3  # control steps: STEPS + 1 frames


@pytest.fixture(scope="module")
def gl():
    """Skip the module's rendering tests when no offscreen OpenGL context can be made."""
    model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
    try:
        renderer = mujoco.Renderer(model, height=H, width=W)
    except Exception as err:  # which exception depends on the GL backend
        pytest.skip(
            f"no offscreen OpenGL backend (MUJOCO_GL={os.environ.get('MUJOCO_GL', '<unset>')}): {err}; "
            "install libosmesa6 (Debian/Ubuntu) or run on a machine with EGL"
        )
    renderer.close()


@pytest.fixture(scope="module")
def hopper():
    return MujocoModel("hopper", horizon=STEPS)


def hopper_actions() -> torch.Tensor:
    return torch.full((STEPS, 3), 0.8)  # the hopper moves: the frames differ


def test_gif_of_actions(gl, hopper, tmp_path):
    from PIL import Image

    path = render(hopper, hopper_actions(), tmp_path / "sub" / "hopper.gif", width=W, height=H)
    assert path == tmp_path / "sub" / "hopper.gif" and path.stat().st_size > 0
    with Image.open(path) as gif:
        assert gif.size == (W, H) and gif.n_frames == STEPS + 1
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB"), dtype=np.float64))
        # real time by default: one frame per control step of 0.002 s x 20
        assert gif.info["duration"] == 40
    assert all(frame.std() > 1.0 for frame in frames)  # a scene, not a blank image
    assert np.abs(frames[-1] - frames[0]).mean() > 0.5  # the hopper moved


def test_frames_follow_the_simulated_configurations(gl, hopper):
    qpos = simulate_qpos(hopper, hopper_actions())
    assert qpos.shape == (STEPS + 1, hopper.nq)
    np.testing.assert_allclose(qpos[0], hopper.qpos0.numpy())
    # the replay is the CPU backend's rollout
    states = hopper.rollout(hopper_actions()[None]).states[0]
    np.testing.assert_allclose(qpos[1:], states[:, : hopper.nq].double().numpy(), atol=1e-5)
    frames = render_frames(hopper, qpos, width=W, height=H)
    assert frames.shape == (STEPS + 1, H, W, 3) and frames.dtype == np.uint8
    again = render_frames(hopper, qpos[[0, 0]], width=W, height=H)
    assert np.array_equal(again[0], again[1]) and np.array_equal(again[0], frames[0])  # deterministic


def test_gif_of_states_and_of_a_task_name(gl, hopper, tmp_path):
    from PIL import Image

    states = hopper.rollout(hopper_actions()[None]).states[0]  # [STEPS, state_dim]
    path = render(hopper, None, tmp_path / "states.gif", states=states, width=W, height=H, fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == STEPS and gif.info["duration"] == 100
    # a task name works too (push-T, seen through its "top" camera); the pusher moves, so no two
    # frames are equal (pillow merges equal consecutive frames of a GIF into one longer frame)
    path = render("push_t", torch.ones(2, 2), tmp_path / "push_t.gif", width=W, height=H)
    with Image.open(path) as gif:
        assert gif.n_frames == 3


def test_mp4(gl, hopper, tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="MP4 needs imageio-ffmpeg")
    pytest.importorskip("imageio", reason="MP4 needs imageio")
    path = render(hopper, hopper_actions(), tmp_path / "hopper.mp4", width=W, height=H)
    assert path.read_bytes()[4:8] == b"ftyp"  # an ISO media file
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert tuple(meta["size"]) == (W, H) and meta["fps"] == pytest.approx(25.0)
    frames = [np.frombuffer(frame, dtype=np.uint8) for frame in reader]
    assert len(frames) == STEPS + 1 and frames[0].size == H * W * 3


def test_mp4_without_encoder_is_an_import_error_before_rendering(hopper, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install imageio imageio-ffmpeg"):
        render(hopper, hopper_actions(), tmp_path / "hopper.mp4", width=W, height=H)
    assert not (tmp_path / "hopper.mp4").exists()


def test_bad_arguments(hopper, tmp_path):
    actions = hopper_actions()
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        render(hopper, actions, tmp_path / "hopper.png")
    with pytest.raises(ValueError, match="exactly one of actions"):
        render(hopper, actions, tmp_path / "a.gif", states=torch.zeros(2, hopper.state_dim))
    with pytest.raises(ValueError, match="exactly one of actions"):
        render(hopper, None, tmp_path / "a.gif")
    with pytest.raises(ValueError, match=r"actions must have shape \[H, 3\]"):
        render(hopper, torch.zeros(STEPS, 2), tmp_path / "a.gif", width=W, height=H)
    with pytest.raises(ValueError, match="states must have shape"):
        render(hopper, None, tmp_path / "a.gif", states=torch.zeros(STEPS, 5), width=W, height=H)
    with pytest.raises(ValueError, match=r"Invalid width: expected an integer in \[16, 4096\]"):
        render(hopper, actions, tmp_path / "a.gif", width=8)
    with pytest.raises(ValueError, match="even width and height"):
        render(hopper, actions, tmp_path / "a.mp4", width=65, height=48)
    with pytest.raises(ValueError, match="Invalid fps"):
        render(hopper, actions, tmp_path / "a.gif", fps=0, width=W, height=H)
    with pytest.raises(ValueError, match="Invalid fps"):
        render(hopper, actions, tmp_path / "a.gif", fps=True, width=W, height=H)
    with pytest.raises(TypeError, match="model must be a MujocoModel"):
        render(42, actions, tmp_path / "a.gif")
    assert not any(tmp_path.iterdir())


@pytest.fixture(autouse=True)
def _no_cached_context_failure(monkeypatch):
    """render caches a failed context for the process: a test that makes it fail must not fail later tests."""
    monkeypatch.setattr(render_module, "_context_failure", None)


def test_unknown_camera(hopper, tmp_path):
    with pytest.raises(ValueError, match="camera 'nope'"):
        render(hopper, hopper_actions(), tmp_path / "a.gif", camera="nope", width=W, height=H)


def test_check_rendering_fails_in_one_line_naming_what_to_install(monkeypatch):
    from dynamics.render import check_rendering

    def renderer(*args, **kwargs):
        raise mujoco.FatalError("an OpenGL platform library has not been loaded\ninto this process")

    monkeypatch.setattr(mujoco, "Renderer", renderer)
    monkeypatch.setattr(render_module, "_context_failure", None)  # restored after: later tests render
    with pytest.raises(RuntimeError) as info:
        check_rendering()
    message = str(info.value)
    assert "\n" not in message and "apt-get install libosmesa6" in message and "MUJOCO_GL=egl" in message
    monkeypatch.setattr(mujoco, "Renderer", lambda *args, **kwargs: pytest.fail("a failed context was retried"))
    with pytest.raises(RuntimeError) as again:
        check_rendering()
    assert str(again.value) == message


class GLFWError(UserWarning):
    """What the ``glfw`` package warns with (its own class; any warning category behaves alike)."""


def test_glfw_warnings_of_a_failed_context_go_into_the_one_error(monkeypatch):
    import warnings

    from dynamics.render import check_rendering

    def renderer(*args, **kwargs):  # GLFW with no display: two warnings, then MuJoCo's error
        warnings.warn("(65550) b'X11: The DISPLAY environment variable is missing'", GLFWError)
        warnings.warn("(65537) b'The GLFW library is not initialized'", GLFWError)
        raise mujoco.FatalError("an OpenGL platform library has not been loaded into this process")

    monkeypatch.setattr(mujoco, "Renderer", renderer)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError) as info:
            check_rendering()
    assert shown == []  # nothing printed besides the error
    message = str(info.value)
    assert "\n" not in message and "DISPLAY environment variable is missing" in message
    assert "GLFW library is not initialized" in message and "libosmesa6" in message


def test_a_working_renderers_warnings_are_shown(monkeypatch):
    import warnings

    from dynamics.render import check_rendering

    class Renderer:
        def __init__(self, *args, **kwargs):
            warnings.warn("a harmless note", GLFWError)

        def close(self):
            pass

    monkeypatch.setattr(mujoco, "Renderer", Renderer)
    with pytest.warns(GLFWError, match="a harmless note"):
        check_rendering()


def test_check_rendering_passes_with_a_working_backend(gl):
    from dynamics.render import check_rendering

    check_rendering()


def _box_fixture():
    """A body on slide x, slide y and hinge z with one box, 0.1 x 0.04 (half sizes 0.05, 0.02), offset 0.1 in x."""
    return mujoco.MjModel.from_xml_string(
        """<mujoco><worldbody><body name="b" pos="0 0 0.02">
        <joint type="slide" axis="1 0 0"/><joint type="slide" axis="0 1 0"/><joint type="hinge" axis="0 0 1"/>
        <geom name="box" type="box" pos="0.1 0 0" size="0.05 0.02 0.02"/>
        <geom name="ball" type="sphere" pos="0 0 0" size="0.03"/>
        </body></worldbody></mujoco>"""
    )


def test_planar_poses_and_outlines_follow_the_joints():
    from dynamics.render import planar_outlines, planar_poses

    model = _box_fixture()
    qpos = np.array([[0.0, 0.0, 0.0], [0.3, -0.2, np.pi / 2]])
    np.testing.assert_allclose(planar_poses(model, qpos, "b"), qpos, atol=1e-12)
    box, ball = planar_outlines(model, qpos, "b", points=8)
    assert box.shape == (2, 4, 2) and ball.shape == (2, 8, 2)
    # at rest: the box spans x in [0.05, 0.15], y in [-0.02, 0.02]
    np.testing.assert_allclose(box[0].min(0), [0.05, -0.02], atol=1e-12)
    np.testing.assert_allclose(box[0].max(0), [0.15, 0.02], atol=1e-12)
    # turned 90 degrees about the body origin, then moved by (0.3, -0.2): the offset points along +y
    np.testing.assert_allclose(box[1].min(0), [0.3 - 0.02, -0.2 + 0.05], atol=1e-12)
    np.testing.assert_allclose(box[1].max(0), [0.3 + 0.02, -0.2 + 0.15], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(ball[1] - [0.3, -0.2], axis=-1), 0.03, atol=1e-12)
    with pytest.raises(ValueError, match="body 'nope'"):
        planar_poses(model, qpos, "nope")
    with pytest.raises(ValueError, match=r"qpos must have shape \[T, 3\]"):
        planar_outlines(model, qpos[:, :2], "b")


# Imports mujoco *before* dynamics (MUJOCO_GL unset: MuJoCo picks GLFW), hides the OpenGL libraries
# named in argv[1] (comma separated) the way tests/test_gl.py does, then renders a small hopper
# GIF twice in the same process and prints what each call did.
IMPORT_ORDER_PROBE = HIDE_LIBRARIES + r"""
import json, sys, warnings
import mujoco  # first, as a user's own script does
import torch
from dynamics.model import MujocoModel
from dynamics.render import render

model = MujocoModel("hopper", horizon=2)
calls = []
for i in range(2):
    try:
        render(model, torch.full((2, 3), 0.5), f"{sys.argv[2]}/{i}.gif", width=32, height=24)
        calls.append("ok")
    except RuntimeError as err:
        calls.append(str(err))
print(json.dumps(calls))
"""


def run_import_order_probe(hide: str, folder: Path) -> tuple[subprocess.CompletedProcess, list | None]:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ORDER_PROBE, hide, str(folder)],
        capture_output=True, text=True, timeout=300, cwd=root, env=env, check=False,
    )
    calls = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else None
    return done, calls


@pytest.mark.skipif(sys.platform != "linux", reason="the offscreen backends (EGL, OSMesa) are Linux's")
def test_render_twice_after_importing_mujoco_first(gl, tmp_path):
    """``import mujoco`` before ``dynamics`` on a machine without a display: both renders work."""
    from dynamics.gl import offscreen_backend

    if offscreen_backend() is None:
        pytest.skip("no offscreen OpenGL library (EGL or OSMesa) on this machine")
    done, calls = run_import_order_probe("", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert calls == ["ok", "ok"]
    assert (tmp_path / "0.gif").stat().st_size > 0 and (tmp_path / "1.gif").stat().st_size > 0


@pytest.mark.skipif(sys.platform != "linux", reason="the offscreen backends (EGL, OSMesa) are Linux's")
def test_failed_rendering_fails_again_in_one_line_without_aborting(tmp_path):
    """No OpenGL at all: each render raises the same one-line error; the process does not abort.

    Without the cached failure MuJoCo's second context setup aborted the process
    (``libc++abi: __cxa_guard_acquire detected recursive initialization``).
    """
    done, calls = run_import_order_probe("OSMesa,EGL", tmp_path)
    assert done.returncode == 0, f"rc={done.returncode}: {done.stderr[-3000:]}"
    assert len(calls) == 2 and calls[0] == calls[1] and calls[0].startswith("offscreen MuJoCo rendering failed")
    assert "\n" not in calls[0] and "apt-get install libosmesa6" in calls[0]
    assert "GLFWError" not in done.stderr, done.stderr[-3000:]
