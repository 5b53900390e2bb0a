"""Videos of MuJoCo rollouts: ``render(model, actions, path)`` writes a GIF or an MP4.

Frames come from ``mujoco.Renderer``, offscreen. It needs an OpenGL backend chosen through
``MUJOCO_GL`` before ``mujoco`` is imported (`dynamics.tasks.import_mujoco` picks ``egl``
on machines with an NVIDIA device and ``osmesa`` where Debian's ``libosmesa6`` is installed).
A GIF is written with pillow (which matplotlib already brings); an MP4 needs ``imageio`` and
``imageio-ffmpeg`` (``pip install imageio imageio-ffmpeg``; the ffmpeg binary comes with it).

The rollout is replayed on the CPU with plain ``mujoco.mj_step`` from the model's initial
state, one frame per control step (plus the initial frame), so the video shows exactly what
the model's ``rollout`` scores, whatever backend produced the actions.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from torch import Tensor

from torch_mbd.checks import check_int, check_real

from .gl import has_display, offscreen_backend
from .tasks import import_mujoco

VIDEO_SUFFIXES = (".gif", ".mp4")
# cameras tried, in order, when none is given: gymnasium's locomotion models have "track",
# push-T has "top"; otherwise MuJoCo's free camera
DEFAULT_CAMERAS = ("track", "top")


def _as_mujoco_model(model):
    """A [`MujocoModel`][dynamics.model.MujocoModel] from a model, a task name or a ``Task``."""
    from .model import MujocoModel
    from .tasks import Task

    if isinstance(model, MujocoModel):
        return model
    if isinstance(model, (str, Task)):
        return MujocoModel(model, backend="mujoco")
    raise TypeError(f"model must be a MujocoModel, a Task or a task name, got {type(model).__name__}")


def simulate_qpos(model, actions: Tensor) -> np.ndarray:
    """Replay ``actions [H, nu]`` (in ``[-1, 1]``) on the CPU: ``qpos [H + 1, nq]`` from the initial state.

    Args:
        model: a [`MujocoModel`][dynamics.model.MujocoModel].
        actions: ``[H, nu]`` control sequence.
    """
    mujoco = import_mujoco()
    if not isinstance(actions, Tensor):
        raise TypeError(f"actions must be a tensor, got {type(actions).__name__}")
    if actions.dim() != 2 or actions.shape[-1] != model.action_dim:
        raise ValueError(f"actions must have shape [H, {model.action_dim}] ([H, nu]), got {tuple(actions.shape)}")
    ctrl = model.controls(actions.detach().to(model.device, model.dtype)).cpu().double().numpy()
    data = mujoco.MjData(model.mj_model)
    data.qpos[:], data.qvel[:] = model.qpos0.numpy(), model.qvel0.numpy()
    mujoco.mj_forward(model.mj_model, data)
    qpos = [data.qpos.copy()]
    for u in ctrl:
        data.ctrl[:] = u
        mujoco.mj_step(model.mj_model, data, nstep=model.frame_skip)
        qpos.append(data.qpos.copy())
    return np.stack(qpos)


def _qpos_of_states(model, states: Tensor) -> np.ndarray:
    if not isinstance(states, Tensor):
        raise TypeError(f"states must be a tensor, got {type(states).__name__}")
    if states.dim() != 2 or states.shape[-1] not in (model.state_dim, model.nq + model.nv, model.nq):
        raise ValueError(
            f"states must have shape [T, {model.state_dim}] ([T, state_dim]), [T, nq + nv] or [T, nq], "
            f"got {tuple(states.shape)}"
        )
    return states[:, : model.nq].detach().cpu().double().numpy()


def _camera_id(mj_model, camera) -> int | str:
    mujoco = import_mujoco()
    if camera is not None:
        if isinstance(camera, str) and mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise ValueError(f"camera {camera!r} is not a camera of the model")
        return camera
    for name in DEFAULT_CAMERAS:
        if mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_CAMERA, name) >= 0:
            return name
    return -1


# Why the first offscreen context failed in this process: MuJoCo's context setup is not safe to
# retry after a failure (a second attempt aborts the process with libc++abi's "__cxa_guard_acquire
# detected recursive initialization"), so later renders raise this again instead of retrying.
_context_failure: str | None = None


def _gl_context_module(mujoco):
    """The module ``mujoco.Renderer`` takes its ``GLContext`` class from (``gl_context``)."""
    return getattr(sys.modules.get(mujoco.Renderer.__module__), "gl_context", None)


def use_offscreen_context(mujoco) -> str | None:
    """Point ``mujoco.Renderer`` at an offscreen context when ``mujoco`` chose GLFW with no display.

    MuJoCo picks its context class once, when it is imported, from ``MUJOCO_GL``; imported before
    ``dynamics`` (which sets ``MUJOCO_GL`` first, [`dynamics.gl.choose_gl_backend`][dynamics.gl.choose_gl_backend]) with
    ``MUJOCO_GL`` unset, it takes GLFW, which cannot open a window on a machine without a display.
    There, the renderer's context class becomes that of [`dynamics.gl.offscreen_backend`][dynamics.gl.offscreen_backend]
    (``mujoco.egl`` or ``mujoco.osmesa``). Elsewhere nothing changes.

    Returns:
        The backend switched to (``"egl"`` or ``"osmesa"``), or ``None`` when nothing changed.
    """
    module = _gl_context_module(mujoco)
    context = getattr(module, "GLContext", None)
    if context is None or not getattr(context, "__module__", "").startswith("mujoco.glfw") or has_display():
        return None
    backend = offscreen_backend()
    if backend is None:
        return None
    try:
        module.GLContext = importlib.import_module(f"mujoco.{backend}").GLContext
    except (ImportError, OSError, AttributeError):  # e.g. PyOpenGL already bound to another platform
        return None
    return backend


def _renderer(mj_model, width: int, height: int):
    """A ``mujoco.Renderer``, or an error saying which OpenGL backend to install."""
    global _context_failure
    mujoco = import_mujoco()
    if _context_failure is not None:
        raise RuntimeError(_context_failure)
    use_offscreen_context(mujoco)
    mj_model.vis.global_.offwidth = max(mj_model.vis.global_.offwidth, width)
    mj_model.vis.global_.offheight = max(mj_model.vis.global_.offheight, height)
    # GLFW (MUJOCO_GL unset or glfw) reports its failures as warnings before MuJoCo raises: they go
    # into the one error below instead of being printed; a working renderer's are shown as usual
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            renderer, failure = mujoco.Renderer(mj_model, height=height, width=width), None
        except Exception as err:
            renderer, failure = None, err
    if failure is None:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return renderer
    gl = os.environ.get("MUJOCO_GL", "<unset>")
    said = "".join(f"; {text}" for text in dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
    _context_failure = (
        f"offscreen MuJoCo rendering failed with MUJOCO_GL={gl} ({' '.join(str(failure).split())}{said}). Rendering "
        "needs an OpenGL backend chosen before mujoco is imported: MUJOCO_GL=egl on a machine with an NVIDIA GPU (or "
        "with Mesa's EGL, apt-get install libegl1), or MUJOCO_GL=osmesa with OSMesa installed (Debian/Ubuntu: "
        "apt-get install libosmesa6)"
    )
    raise RuntimeError(_context_failure) from failure


def check_rendering() -> None:
    """Make (and close) a tiny offscreen OpenGL context: fail now, not after a long plan.

    Raises:
        RuntimeError: one line naming the OpenGL backend to install when none works.
    """
    mujoco = import_mujoco()
    probe = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
    _renderer(probe, 16, 16).close()


def render_frames(model, qpos: np.ndarray, width: int = 480, height: int = 360, camera=None) -> np.ndarray:
    """Frames ``[T, height, width, 3]`` uint8 of the configurations ``qpos [T, nq]``."""
    mujoco = import_mujoco()
    mj_model = model.mj_model
    camera = _camera_id(mj_model, camera)
    data = mujoco.MjData(mj_model)
    renderer = _renderer(mj_model, width, height)
    try:
        frames = np.empty((len(qpos), height, width, 3), dtype=np.uint8)
        for t, q in enumerate(qpos):
            data.qpos[:] = q
            mujoco.mj_forward(mj_model, data)
            renderer.update_scene(data, camera=camera)
            frames[t] = renderer.render()
    finally:
        renderer.close()
    return frames


def video_writer(suffix: str):
    """The encoder module of a video suffix: pillow's ``Image`` for ``.gif``, ``imageio.v2`` for ``.mp4``.

    Raises:
        ValueError: for another suffix.
        ImportError: naming what to install when the encoder is missing.
    """
    suffix = suffix.lower()
    if suffix == ".gif":
        try:
            from PIL import Image
        except ImportError as err:
            raise ImportError("writing a GIF needs pillow: pip install pillow") from err
        return Image
    if suffix == ".mp4":
        try:
            import imageio.v2 as imageio
            import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio writes MP4 with)
        except ImportError as err:
            raise ImportError(
                "writing an MP4 needs imageio and imageio-ffmpeg: pip install imageio imageio-ffmpeg "
                "(or write a .gif, which needs only pillow)"
            ) from err
        return imageio
    raise ValueError(f"path must end in {' or '.join(VIDEO_SUFFIXES)}, got suffix {suffix!r}")


def write_video(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """Write ``frames [T, height, width, 3]`` uint8 as a GIF (pillow) or an MP4 (imageio-ffmpeg, H.264)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"path must end in {' or '.join(VIDEO_SUFFIXES)}, got {str(path)!r}")
    encoder = video_writer(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        images = [encoder.fromarray(frame) for frame in frames]
        duration = max(int(round(1000.0 / fps)), 20)  # ms per frame; viewers ignore < 20 ms
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)
    else:
        with encoder.get_writer(path, fps=fps, codec="libx264", macro_block_size=2) as writer:
            for frame in frames:
                writer.append_data(frame)
    return path


def render(
    model,
    actions: Tensor | None,
    path: str | Path,
    fps: float | None = None,
    width: int = 480,
    height: int = 360,
    camera: str | int | None = None,
    states: Tensor | None = None,
) -> Path:
    """Write a video of ``actions`` played on ``model`` (or of given ``states``) to ``path``.

    Args:
        model: a [`MujocoModel`][dynamics.model.MujocoModel] (any backend; the video is replayed on the
            CPU from its ``initial_state``, with its edited ``mj_model``), a ``Task`` or a task name.
        actions: ``[H, nu]`` control sequence in ``[-1, 1]`` (e.g. ``plan(...).actions``); ``None``
            when ``states`` is given.
        path: the output file, ending in ``.gif`` (pillow) or ``.mp4`` (imageio-ffmpeg).
        fps: frames per second; default real time, one frame per control step
            (``1 / (timestep * frame_skip)``).
        width: frame width in pixels.
        height: frame height in pixels.
        camera: a camera name or id of the model; default its ``"track"`` or ``"top"`` camera when
            it has one, else MuJoCo's free camera.
        states: ``[T, state_dim]`` (or ``[T, nq + nv]``, ``[T, nq]``) states to show instead of
            simulating ``actions``.

    Returns:
        The path written.

    Raises:
        ValueError: for a bad path suffix, shape, size or camera.
        RuntimeError: when no offscreen OpenGL backend works (the message says what to install).
        ImportError: for an MP4 without imageio-ffmpeg (a GIF without pillow), before rendering.
    """
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"path must end in {' or '.join(VIDEO_SUFFIXES)}, got {str(path)!r}")
    width, height = (check_int(name, value, minimum=16, maximum=4096) for name, value in (("width", width), ("height", height)))
    if path.suffix.lower() == ".mp4" and (width % 2 or height % 2):
        raise ValueError(f"an MP4 needs an even width and height, got {width}x{height}")
    if (actions is None) == (states is None):
        raise ValueError("give exactly one of actions [H, nu] and states [T, state_dim]")
    video_writer(path.suffix)  # a missing encoder fails here, before any simulation or rendering
    model = _as_mujoco_model(model)
    control_dt = float(model.mj_model.opt.timestep) * model.frame_skip
    fps = 1.0 / control_dt if fps is None else check_real("fps", fps)
    if not 0 < fps < 1000:
        raise ValueError(f"Invalid fps: expected a number in (0, 1000), got {fps!r}")
    qpos = simulate_qpos(model, actions) if states is None else _qpos_of_states(model, states)
    frames = render_frames(model, qpos, width=width, height=height, camera=camera)
    return write_video(frames, path, fps)



# ----------------------------------------------------------------------------- top-down drawings
_PLANAR_GEOMS = ("box", "sphere", "cylinder", "capsule", "ellipsoid")


def _body_id(mj_model, body: str) -> int:
    mujoco = import_mujoco()
    index = mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_BODY, body)
    if index < 0:
        raise ValueError(f"body {body!r} is not a body of the model")
    return index


def _kinematics(mj_model, qpos: np.ndarray):
    """Yield an ``MjData`` after ``mj_kinematics`` at each row of ``qpos [T, nq]``."""
    mujoco = import_mujoco()
    qpos = np.asarray(qpos, dtype=np.float64)
    if qpos.ndim != 2 or qpos.shape[1] != mj_model.nq:
        raise ValueError(f"qpos must have shape [T, {mj_model.nq}] ([T, nq]), got {qpos.shape}")
    data = mujoco.MjData(mj_model)
    for q in qpos:
        data.qpos[:] = q
        mujoco.mj_kinematics(mj_model, data)
        yield data


def planar_poses(mj_model, qpos: np.ndarray, body: str) -> np.ndarray:
    """World ``(x, y, yaw)`` of ``body`` at each configuration: ``qpos [T, nq] -> [T, 3]``.

    Forward kinematics, so it holds whatever joints move the body; yaw in radians, from the
    body's x axis projected on the ground plane.
    """
    index = _body_id(mj_model, body)
    out = []
    for data in _kinematics(mj_model, qpos):
        xmat = data.xmat[index].reshape(3, 3)
        out.append([data.xpos[index, 0], data.xpos[index, 1], np.arctan2(xmat[1, 0], xmat[0, 0])])
    return np.asarray(out, dtype=np.float64).reshape(-1, 3)


def planar_outlines(mj_model, qpos: np.ndarray, body: str, points: int = 24) -> list[np.ndarray]:
    """Top-down outlines of the geoms of ``body``: one ``[T, k, 2]`` polygon array per geom.

    Boxes are their rectangle (``k = 4``); spheres, cylinders, capsules and ellipsoids the circle
    or ellipse of their x and y extent (``k = points``); other geom types are left out.

    Args:
        mj_model: a compiled ``mujoco.MjModel``.
        qpos: ``[T, nq]`` configurations.
        body: the body's name.
        points: vertices of a round outline.
    """
    mujoco = import_mujoco()
    index = _body_id(mj_model, body)
    geoms = [g for g in range(mj_model.ngeom) if mj_model.geom_bodyid[g] == index]
    kinds = {g: mujoco.mjtGeom(mj_model.geom_type[g]).name.removeprefix("mjGEOM_").lower() for g in geoms}
    geoms = [g for g in geoms if kinds[g] in _PLANAR_GEOMS]
    shapes = {}
    for g in geoms:
        sx, sy = mj_model.geom_size[g][0], mj_model.geom_size[g][1]
        if kinds[g] == "box":
            shapes[g] = np.array([[-sx, -sy], [sx, -sy], [sx, sy], [-sx, sy]])
        else:  # round: a sphere / cylinder / capsule has one radius, an ellipsoid two
            ry = sy if kinds[g] == "ellipsoid" else sx
            angle = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
            shapes[g] = np.stack([sx * np.cos(angle), ry * np.sin(angle)], -1)
    outlines = {g: [] for g in geoms}
    for data in _kinematics(mj_model, qpos):
        for g in geoms:
            rotation = data.geom_xmat[g].reshape(3, 3)[:2, :2]
            outlines[g].append(data.geom_xpos[g][:2] + shapes[g] @ rotation.T)
    return [np.asarray(outlines[g]) for g in geoms]
