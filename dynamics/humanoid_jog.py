"""Humanoid jogging (paper, section 5.2): humanoid running steered by partial-state mocap data.

The task is the authors' ``humanoidtrack`` (LeCAR-Lab/model-based-diffusion,
``mbd/envs/humanoidtrack.py``): the humanoid of `dynamics.tasks.humanoid_run` (gymnasium's
``humanoid.xml`` with the authors' physics: Euler at 0.006 s, 8 solver iterations, gears 350 /
100, only the feet touch the floor), 5 physics steps per control step (0.03 s, one clip frame),
no reset noise, and the authors' reward read from the state *before* each control step,
``1 - |vx - 1.6| - |z - 1.3| - 0.1 |y|`` of the torso (`jog_reward`). Five more
``framepos`` sensors, one per tracked point, are added through ``mujoco.MjSpec`` (the authors
compare the body origins of the torso, thighs and shins with the clip; these sensors read the
midpoints the clip describes):

================  ===================================================================
sensor            site (fixed in the body named first)
================  ===================================================================
``torso_track``   torso: midpoint of the pelvis body origin and the head, at rest
``*_thigh_track``  thigh: midpoint of hip (thigh origin) and knee (shin origin)
``*_shin_track``   shin: midpoint of knee (shin origin) and ankle (foot origin)
================  ===================================================================

These are the points the mocap clip describes: in the authors' ``jog_xref`` clip
``torso = (pelvis + head) / 2``, ``thigh = (hip + knee) / 2`` and ``shin = (knee + toe) / 2``
exactly (``toe`` is the clip's ankle-level point).

The demonstration (`HumanoidJog.demonstration`) maps a clip onto the robot:

1. `load_clip`: read an ``.npz`` of ``(T, 3)`` world positions (metres, z up) and check it
   (``"mocap"``, the default source, is the authors' clip: [`dynamics.data.clip_path`][dynamics.data.clip_path] finds it
   in ``$TORCH_MBD_DATA/mocap/jog_xref.npz`` or the user cache, or downloads it once from the
   authors' repository);
2. `retarget_clip`: turn the clip so the torso's net travel points along ``+x`` (the
   task's forward direction), scale it about the ground by the ratio of the robot's leg
   length to the clip's (`clip_leg_length`), and move it so the clip's first torso
   position sits over the robot's initial torso point;
3. `resample_clip`: interpolate it at the times of the ``H`` control steps (the state
   after step ``k`` is at ``(k + 1) * control_dt``), holding the last frame past the clip's end.

The result is a ``[H, 15]`` demo of the 15 sensor readings and an ``[nx]`` mask selecting
them in the state ``[qpos, qvel, sensordata]``, which ``MBDOptimizer(demo=..., demo_mask=...)``
consumes by the max rule of Eq. (13), with a per-coordinate ``demo_sigma`` (heights tighter
than horizontal positions) and ``demo_units="reward"`` (the authors' weighting);
``demonstration(likelihood="authors")`` gives the authors' likelihood instead, ``-mean (min(|d|,
0.5 m) / 0.5 m)^2`` over the points' distances ``|d|`` to the reference, as the optimizer's
``demo_log_likelihood`` with demonstration reward 1.0. The clip's
frame period is not in the file: the default ``CLIP_DT = 0.03`` s is the rate at which the
authors' code plays it (one frame per 0.03 s control step); an ``.npz`` may carry its own as a
scalar ``dt`` entry.
"""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from torch_mbd.checks import check_int, check_positive
from torch_mbd.denoise import clipped_distance_log_likelihood

from .data import clip_path
from .model import MujocoModel
from .tasks import AUTHORS_HUMANOID_TIMESTEP, Task, humanoid_run_spec, import_mujoco

TRACKED = ("torso", "left_thigh", "right_thigh", "left_shin", "right_shin")
LEG_KEYS = ("lhip", "lknee", "ltoe", "rhip", "rknee", "rtoe")
CLIP_DT = 0.03
# the source name of the authors' jogging clip (dynamics.data.clip_path); any other string is a path
MOCAP_CLIP = "mocap"
DEFAULT_CLIP = MOCAP_CLIP
# The demo likelihood's std per coordinate, in metres per unit of reward (demo_units="reward"): the
# heights (posture: upright, knee lift) are trusted 3x more than the horizontal positions (the human's
# pace and stride, which a robot starting from rest cannot match). Chosen on seeds 0-4 of
# benchmarks/humanoid_jog.py and checked on seeds 5-9; see docs/trajopt.md for the sensitivity.
DEFAULT_DEMO_SIGMA = 0.35
DEFAULT_HEIGHT_SIGMA = 0.12


# ----------------------------------------------------------------------------- the task
def _track_sites(spec) -> dict[str, tuple[str, list[float]]]:
    """``{point: (body, position in the body's frame)}`` of the tracked points of ``spec``."""
    mujoco = import_mujoco()
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    torso = model.body("torso").id
    middle = (data.xpos[model.body("pelvis").id] + data.geom_xpos[model.geom("head").id]) / 2
    torso_local = data.xmat[torso].reshape(3, 3).T @ (middle - data.xpos[torso])
    sites = {"torso": ("torso", [float(v) for v in torso_local])}
    for side in ("left", "right"):
        knee = np.asarray(spec.body(f"{side}_shin").pos, dtype=float)
        ankle = np.asarray(spec.body(f"{side}_foot").pos, dtype=float)
        sites[f"{side}_thigh"] = (f"{side}_thigh", [float(v) for v in knee / 2])
        sites[f"{side}_shin"] = (f"{side}_shin", [float(v) for v in ankle / 2])
    return sites


def humanoid_jog_spec():
    """The authors' running humanoid (`humanoid_run_spec`, ``torso_pos``
    sensor included) with the five ``{point}_track`` sensors."""
    mujoco = import_mujoco()
    spec = humanoid_run_spec(timestep=AUTHORS_HUMANOID_TIMESTEP)  # the authors' 0.006 s, 5 per control step
    sites = _track_sites(spec)
    for point in TRACKED:  # sensor order = TRACKED order = the demo's column order
        body, pos = sites[point]
        spec.body(body).add_site(name=f"{point}_track", pos=pos, size=[0.02, 0.02, 0.02], group=4)
        spec.add_sensor(
            name=f"{point}_track",
            type=mujoco.mjtSensor.mjSENS_FRAMEPOS,
            objtype=mujoco.mjtObj.mjOBJ_SITE,
            objname=f"{point}_track",
        )
    return spec


JOG_SPEED, JOG_HEIGHT = 1.6, 1.3  # the authors' target forward speed (m/s) and torso height (m)
AUTHORS_DEMO_REWARD = 1.0  # the authors' ``rew_xref``: the demonstration's reward
AUTHORS_DEMO_CLIP = 0.5  # metres: the authors' tracking term counts a point this far off or farther as fully off
LIKELIHOODS = ("gaussian", "authors")


def jog_reward(qpos, qvel, sensors, action, previous_qpos, previous_qvel):
    """``1 - |vx - 1.6| - |z - 1.3| - 0.1 |y|`` of the torso at the *start* of the control step.

    As the authors' ``HumanoidTrack``: the reward of a step reads the state before it
    (``previous_qvel[..., 0]`` is the torso's world forward velocity, ``previous_qpos[..., :3]``
    its position; free joint). ``[...]``.
    """
    vx, y, z = previous_qvel[..., 0], previous_qpos[..., 1], previous_qpos[..., 2]
    return 1.0 - (vx - JOG_SPEED).abs() - (z - JOG_HEIGHT).abs() - 0.1 * y.abs()


def humanoid_jog(frame_skip: int = 5) -> Task:
    """Humanoid jogging: the authors' running humanoid plus the tracked-point sensors, `jog_reward`.

    Args:
        frame_skip: physics steps (0.006 s each) per control step; 5 (default) is the authors'
            0.03 s control step (one clip frame per step, a 1.5 s horizon over 50 steps).
    """
    return Task(
        "humanoid_jog", humanoid_jog_spec, jog_reward, frame_skip=frame_skip, horizon=50,
        reset_noise_scale=0.0, reward_reads_previous=True,
    )


# ----------------------------------------------------------------------------- the clip
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (what np.savez writes), or an empty one
_NPY_MAGIC = b"\x93NUMPY"


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays of the ``.npz`` archive at ``path``: ``(arrays, unreadable {name: why})``.

    The file is opened once. A regular file is read in place; anything that cannot seek (a named
    pipe, ``/dev/stdin``, a process substitution ``<(...)``) is read once, to its end, into memory,
    so that a pipe's writer is served by one reader (opening a pipe twice waits forever for a
    second writer).

    Pickled (object) entries are never loaded; they, and entries that fail to decode, are
    returned in ``unreadable`` so that only an entry the caller needs rejects the file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a directory, an empty file, a single ``.npy`` array, not a zip
            archive at all, or a damaged one; the message names the file.
    """
    where = f"mocap clip {str(path)!r}"
    if path.is_dir():
        raise ValueError(f"{where} is a directory, not an .npz file")
    if not path.exists():
        raise FileNotFoundError(f"{where} does not exist")
    try:
        with path.open("rb") as f:
            if f.seekable():
                head = f.read(len(_NPY_MAGIC))
                f.seek(0)
                return _read_archive(f, head, where)
            data = f.read()  # a pipe or a device: read once, to its end
    except OSError as err:
        raise ValueError(f"{where} cannot be read ({err.strerror or err})") from err
    return _read_archive(io.BytesIO(data), data[: len(_NPY_MAGIC)], where)


def _read_archive(f, head: bytes, where: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays of the ``.npz`` archive in the open binary file ``f`` whose first bytes are ``head``."""
    if not head:
        raise ValueError(f"{where} is an empty file (0 bytes), not an .npz archive")
    if head.startswith(_NPY_MAGIC):
        raise ValueError(
            f"{where} is a single .npy array, not an .npz archive of named arrays (write one with np.savez)"
        )
    if head[:4] not in _ZIP_MAGIC:
        raise ValueError(f"{where} is not an .npz archive (not a zip file; write one with np.savez)")
    arrays: dict[str, np.ndarray] = {}
    unreadable: dict[str, str] = {}
    try:
        with np.load(f, allow_pickle=False) as npz:
            for name in npz.files:
                try:
                    arrays[name] = np.asarray(npz[name])
                except ValueError as err:
                    pickled = "pickle" in str(err).lower()
                    unreadable[name] = "it holds Python objects (pickled data), not numbers" if pickled else str(err)
                except (OSError, EOFError, zipfile.BadZipFile) as err:
                    unreadable[name] = f"it is damaged ({err})"
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{where} is not a readable .npz archive ({err})") from err
    return arrays, unreadable


def _not_real(array: np.ndarray) -> str | None:
    """Why ``array`` does not hold real numbers (e.g. ``"complex128 numbers"``), or ``None``."""
    if np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating):
        return None
    if np.issubdtype(array.dtype, np.complexfloating):
        return f"{array.dtype} (complex) numbers"
    kinds = {"b": "booleans", "U": "text", "S": "bytes", "O": "Python objects", "M": "dates", "m": "time spans"}
    return kinds.get(array.dtype.kind, f"{array.dtype} values")


def _clip_dt(value, where: str) -> float:
    """A clip's ``dt`` entry as a positive, finite number of seconds per frame."""
    array = np.asarray(value)
    why = _not_real(array)
    if why is None and array.size != 1:
        why = f"an array of shape {array.shape}"
    if why is None:
        dt = float(array.reshape(()))
        if math.isfinite(dt) and dt > 0:
            return dt
        why = repr(dt)
    raise ValueError(f"{where}: 'dt' must be one positive, finite number of seconds per frame, got {why}")


def load_clip(
    source: str | Path | Mapping, keys: tuple[str, ...] = TRACKED, optional: tuple[str, ...] = ()
) -> dict[str, Tensor]:
    """Read and check a mocap clip: ``{key: [T, 3]}`` float64 tensors (plus ``"dt"`` when present).

    Args:
        source: path of an ``.npz`` with one ``(T, 3)`` array of world positions per body
            point (the layout of ``jog_xref.npz``), ``"mocap"`` for the authors' clip
            ([`dynamics.data.clip_path`][dynamics.data.clip_path]: ``$TORCH_MBD_DATA``, the user cache, or a one-time
            download), or a mapping of such arrays.
        keys: the points that must be present and well formed.
        optional: points that need not be present but, when they are, must be well formed
            (`HumanoidJog.reference` passes the leg keys when it computes the scale).

    Every other entry is kept when it is a ``(T, 3)`` real, finite array with the clip's ``T``
    frames and ignored otherwise: an entry the clip does not need never rejects it. A ``dt``
    entry (seconds per frame) must be one positive number.

    Raises:
        FileNotFoundError: when ``source`` is a path that does not exist;
            [`dynamics.data.DataNotFoundError`][dynamics.data.DataNotFoundError] (one line naming every way to get it) when
            ``source`` is ``"mocap"`` and the clip is nowhere to be found or downloaded.
        ValueError: naming the file and what is wrong: a directory, an empty file, a ``.npy``
            array or any file that is not an ``.npz`` archive, a damaged archive; a missing or
            unreadable key, an entry with a wrong shape, complex or non-numeric values, a length
            that differs from the others, fewer than 2 frames, non-finite values; a bad ``dt``.
        TypeError: when ``source`` is neither a path nor a mapping.
    """
    if isinstance(source, str) and source == MOCAP_CLIP:
        source = clip_path()
    unreadable: dict[str, str] = {}
    if isinstance(source, (str, Path)):
        path = Path(source)
        raw, unreadable = _read_npz(path)
        where = f"mocap clip {str(path)!r}"
    elif isinstance(source, Mapping):
        raw, where = {}, "mocap clip"
        for name, value in source.items():
            try:
                raw[name] = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
            except (TypeError, ValueError, RuntimeError) as err:
                unreadable[name] = f"it is not an array ({err})"
    else:
        raise TypeError(f"source must be a path to an .npz file or a mapping of arrays, got {type(source).__name__}")
    needed = tuple(dict.fromkeys(keys))
    missing = [k for k in needed if k not in raw and k not in unreadable]
    if missing:
        raise ValueError(f"{where} is missing the key(s) {missing}; it has {sorted(set(raw) | set(unreadable))}")
    for key in needed + tuple(optional):
        if key in unreadable:
            raise ValueError(f"{where}: {key!r} cannot be read: {unreadable[key]}")
    clip: dict[str, Tensor] = {}
    length, first = None, None
    strict = needed + tuple(k for k in optional if k in raw and k not in needed)
    for key in strict:  # the clip's length comes from the first needed key
        array = raw[key]
        if array.ndim != 2 or array.shape[1] != 3:
            raise ValueError(f"{where}: {key!r} must be a (T, 3) array of positions, got shape {array.shape}")
        why = _not_real(array)
        if why is not None:
            raise ValueError(f"{where}: {key!r} must hold real positions, got {why}")
        if length is None:
            length, first = array.shape[0], key
        elif array.shape[0] != length:
            raise ValueError(f"{where}: {key!r} has {array.shape[0]} frames, {first!r} has {length}")
        if not np.isfinite(array).all():
            raise ValueError(f"{where}: {key!r} has non-finite values")
        clip[key] = torch.as_tensor(array, dtype=torch.float64)
    for key, array in raw.items():
        if key == "dt":
            clip["dt"] = torch.tensor(_clip_dt(array, where), dtype=torch.float64)
            continue
        if key in clip or array.ndim != 2 or array.shape[1] != 3 or _not_real(array) is not None:
            continue  # an unrelated entry: ignored
        if length is None:
            length, first = array.shape[0], key
        if array.shape[0] == length and np.isfinite(array).all():
            clip[key] = torch.as_tensor(array, dtype=torch.float64)
    if length is None or length < 2:
        raise ValueError(f"{where} must have at least 2 frames, got {length}")
    return clip


def clip_leg_length(clip: Mapping[str, Tensor]) -> float:
    """Mean hip-knee plus knee-toe length of the clip, over both legs and all frames (metres).

    Raises:
        ValueError: naming the missing ``lhip, lknee, ltoe, rhip, rknee, rtoe`` keys.
    """
    missing = [k for k in LEG_KEYS if k not in clip]
    if missing:
        raise ValueError(
            f"the clip has no {missing} to measure its leg length; pass scale= explicitly (1.0 keeps its size)"
        )
    total = 0.0
    for side in "lr":
        hip, knee, toe = clip[f"{side}hip"], clip[f"{side}knee"], clip[f"{side}toe"]
        total += float((hip - knee).norm(dim=-1).mean() + (knee - toe).norm(dim=-1).mean())
    return total / 2


def retarget_clip(points: Tensor, start_xy: Tensor, scale: float = 1.0, root: int = 0) -> Tensor:
    """Turn, scale and move a clip onto the robot's start.

    The clip is rotated about z so that the root point's travel from the first to the last
    frame points along ``+x`` (no turn when it does not travel), scaled by ``scale`` about
    the root's first position on the ground (``z`` scales about ``z = 0``), and translated so
    the root's first position is over ``start_xy``.

    Args:
        points: ``[T, K, 3]`` world positions of ``K`` points over ``T`` frames.
        start_xy: ``[2]`` where the root's first position goes.
        scale: size of the robot relative to the clip.
        root: index of the root point (the torso) in ``K``.

    Returns:
        ``[T, K, 3]`` retargeted positions.
    """
    origin = points[0, root, :2]
    travel = points[-1, root, :2] - origin
    xy = points[..., :2] - origin
    if float(travel.norm()) > 1e-9:
        c, s = travel / travel.norm()
        rotation = torch.stack([torch.stack([c, s]), torch.stack([-s, c])])  # rotates travel onto +x
        xy = xy @ rotation.T
    xy = scale * xy + start_xy.to(points.dtype)
    return torch.cat([xy, scale * points[..., 2:]], dim=-1)


def resample_clip(frames: Tensor, frame_dt: float, times: Tensor) -> Tensor:
    """Linear interpolation of ``frames`` at ``times``, held at the first and last frame.

    Args:
        frames: ``[T, ...]`` samples at times ``0, frame_dt, ..., (T - 1) frame_dt`` (``T >= 2``).
        frame_dt: seconds between frames.
        times: ``[H]`` query times in seconds.

    Returns:
        ``[H, ...]``.
    """
    T = frames.shape[0]
    pos = (times.to(frames.dtype) / frame_dt).clamp(0, T - 1)
    low = pos.floor().long().clamp(max=T - 2)
    w = (pos - low).reshape(-1, *([1] * (frames.dim() - 1)))
    return frames[low] * (1 - w) + frames[low + 1] * w


# ----------------------------------------------------------------------------- the model
class HumanoidJog(MujocoModel):
    """The humanoid jogging task as a rollout model, with its mocap demonstration.

    Args:
        backend: ``"mujoco"``, ``"warp"`` or ``"mjx"`` (see [`MujocoModel`][dynamics.model.MujocoModel]).
        device: where the tensors live.
        frame_skip: physics steps per control step (`humanoid_jog`; default 5, the authors' 0.03 s).
        **options: any other [`MujocoModel`][dynamics.model.MujocoModel] option (``horizon``, ``reset_noise``, ...).

    Attributes:
        control_dt: seconds per control step (``timestep * frame_skip``).
        track_index: ``[15]`` state indices of the tracked points' readings (``TRACKED`` order, x y z).
        demo_mask: ``[nx]`` boolean, True at ``track_index``.
    """

    def __init__(self, backend: str = "mujoco", device: str | torch.device = "cpu", frame_skip: int = 5, **options):
        super().__init__(humanoid_jog(frame_skip), backend=backend, device=device, **options)
        self.control_dt = float(self.mj_model.opt.timestep) * self.frame_skip
        offset = self.state_slices["sensordata"].start
        index = []
        for point in TRACKED:
            s = self.sensor_slices[f"{point}_track"]
            index.extend(range(offset + s.start, offset + s.stop))
        self.track_index = torch.tensor(index, device=self.device)
        if bool((self.track_index.diff() <= 0).any()):  # the demo's columns follow the mask's order
            raise RuntimeError("tracked sensors must be laid out in TRACKED order")
        self.demo_mask = torch.zeros(self.state_dim, dtype=torch.bool, device=self.device)
        self.demo_mask[self.track_index] = True
        self.leg_length = float(
            np.linalg.norm(self.mj_model.body("left_shin").pos) + np.linalg.norm(self.mj_model.body("left_foot").pos)
        )
        torso_pos = self.sensor_slices["torso_pos"]
        sens0 = self.initial_state[self.state_slices["sensordata"]]
        # torso body origin minus the torso tracking point, at rest (what torso_pos reads above it)
        self._torso_offset = (sens0[torso_pos] - self.tracked_points(self.initial_state)[0]).to(torch.float64)

    def tracked_points(self, states: Tensor) -> Tensor:
        """Positions of the tracked points: ``states [..., nx] -> [..., 5, 3]`` (``TRACKED`` order)."""
        return states[..., self.track_index].unflatten(-1, (len(TRACKED), 3))

    def reference(
        self,
        source: str | Path | Mapping = DEFAULT_CLIP,
        horizon: int | None = None,
        clip_dt: float | None = None,
        scale: float | None = None,
        start_frame: int = 0,
        keys: tuple[str, ...] = TRACKED,
    ) -> Tensor:
        """The clip's tracked points mapped onto the robot at the control steps: ``[H, 5, 3]`` float64.

        Args:
            source: ``"mocap"`` (the authors' clip), an ``.npz`` path or a mapping in the layout of
                ``jog_xref.npz`` (`load_clip`).
            horizon: ``H``; default ``self.horizon``.
            clip_dt: seconds per clip frame; default the clip's ``dt`` entry, else ``CLIP_DT``.
            scale: robot size relative to the clip; default the ratio of leg lengths
                (``self.leg_length / clip_leg_length(clip)``).
            start_frame: first clip frame used (the clip's time 0 is this frame).
            keys: the clip points to return (``[H, len(keys), 3]``); the clip is always turned and
                placed by its torso. E.g. ``("ltoe", "rtoe")`` for the ankles.

        Raises:
            ValueError: for a malformed clip (see `load_clip`) or bad arguments.
        """
        horizon = self.horizon if horizon is None else check_int("horizon", horizon, minimum=1)
        clip_dt = None if clip_dt is None else check_positive("clip_dt", clip_dt)
        scale = None if scale is None else check_positive("scale", scale)
        # the leg points, when present, must be well formed if the scale is computed from them
        optional = LEG_KEYS if scale is None else ()
        clip = load_clip(source, keys=tuple(dict.fromkeys(TRACKED + tuple(keys))), optional=optional)
        length = clip[TRACKED[0]].shape[0]
        start_frame = check_int("start_frame", start_frame, minimum=0, maximum=length - 2)
        if clip_dt is None:
            clip_dt = float(clip["dt"]) if "dt" in clip else CLIP_DT
        if scale is None:
            clip_legs = clip_leg_length(clip)
            if not clip_legs > 0:
                raise ValueError(f"the clip's legs have length {clip_legs!r}; pass scale= explicitly")
            scale = self.leg_length / clip_legs
        points = torch.stack([clip[k][start_frame:] for k in ("torso",) + tuple(keys)], dim=1)  # [T, 1 + K, 3]
        start_xy = self.tracked_points(self.initial_state)[0, :2].to(torch.float64).cpu()
        points = retarget_clip(points, start_xy, float(scale), root=0)
        times = self.control_dt * torch.arange(1, horizon + 1, dtype=torch.float64)
        return resample_clip(points, float(clip_dt), times)[:, 1:]

    def reference_reward(self, reference: Tensor) -> float:
        """The task reward of a reference ``[H, 5, 3]``: mean `jog_reward` of the torso it implies.

        The torso body sits above the torso tracking point by the rest-pose offset; its forward
        velocity is the reference's, by central differences over the control steps. This is
        ``p_J(Y_demo)`` of Eq. (11)-(13) in per-sample reward units (the authors use a fixed
        1.0 instead: ``demonstration(demo_reward=AUTHORS_DEMO_REWARD)``).
        """
        torso = reference[..., 0, :].to(torch.float64) + self._torso_offset.cpu()  # [H, 3]
        vx = torch.gradient(torso[:, 0], spacing=self.control_dt)[0] if torso.shape[0] > 1 else torch.zeros(1)
        qvel = torch.zeros(torso.shape[0], self.nv, dtype=torch.float64)
        qvel[:, 0] = vx
        rewards = jog_reward(None, None, {}, None, torso, qvel)
        return float(rewards.mean())

    def tracking_log_likelihood(self, reference: Tensor, clip: float = AUTHORS_DEMO_CLIP):
        """The authors' demonstration likelihood against ``reference``, for ``demo_log_likelihood``.

        Args:
            reference: ``[H, 5, 3]`` tracked points to follow (`reference`).
            clip: metres beyond which a point counts as fully off (the authors' 0.5).

        Returns:
            A callable ``states [..., H, nx] -> [...]``:
            [`clipped_distance_log_likelihood`][torch_mbd.denoise.clipped_distance_log_likelihood] of `tracked_points`
            against ``reference`` (held in the model's dtype, on its device).
        """
        reference = reference.to(self.device, self.dtype)

        def log_likelihood(states: Tensor) -> Tensor:
            return clipped_distance_log_likelihood(self.tracked_points(states), reference, clip)

        return log_likelihood

    def demonstration(
        self,
        source: str | Path | Mapping = DEFAULT_CLIP,
        seed: int | None = None,
        horizon: int | None = None,
        demo_sigma: float = DEFAULT_DEMO_SIGMA,
        height_sigma: float | None = DEFAULT_HEIGHT_SIGMA,
        demo_reward: float | None = None,
        demo_units: str = "reward",
        axes: str = "xyz",
        likelihood: str = "gaussian",
        **reference_options,
    ) -> dict:
        """The partial-state demonstration for [`torch_mbd.plan`][torch_mbd.plan] / ``MBDOptimizer``.

        Two demonstration likelihoods over the tracked points:

        * ``"gaussian"`` (default, ours): a Gaussian over the points' coordinates, per-axis
          ``demo_sigma`` / ``height_sigma`` (``MBDOptimizer(demo=..., demo_mask=..., demo_sigma=...)``,
          [`torch_mbd.denoise.demo_log_likelihood`][torch_mbd.denoise.demo_log_likelihood]).
        * ``"authors"``: the authors' tracking term, ``log p_demo = -mean over the 5 points and the H
          steps of (min(|d|, 0.5 m) / 0.5 m)^2``, ``|d|`` the Euclidean distance of a point to the
          reference ([`torch_mbd.denoise.clipped_distance_log_likelihood`][torch_mbd.denoise.clipped_distance_log_likelihood]), handed to the
          optimizer as ``demo_log_likelihood``, with their demonstration reward
          ``AUTHORS_DEMO_REWARD = 1.0``. ``demo_sigma`` and ``height_sigma`` are unused (still
          checked), and ``axes`` must be ``"xyz"`` (the distance is over all three).

        Args:
            source: the clip (`reference`); default ``"mocap"``, the authors' clip.
            seed: unused (the mapping is deterministic); accepted for the command line's sake.
            horizon: ``H``; default ``self.horizon``.
            demo_sigma: standard deviation (metres) of the demo likelihood for the horizontal
                coordinates (x, y); with ``demo_units="reward"``, metres per unit of reward.
            height_sigma: the same for the heights (z); ``None`` uses ``demo_sigma``. The default
                trusts the heights (posture) 3 times more than the horizontal positions (pace).
            demo_reward: ``p_J(Y_demo)``; default `reference_reward` of the reference
                (``"gaussian"``) or ``AUTHORS_DEMO_REWARD`` (``"authors"``).
            demo_units: ``"reward"`` (default, the authors' weighting) or ``"logit"``, see
                [`torch_mbd.denoise.demo_log_weights`][torch_mbd.denoise.demo_log_weights].
            axes: the world axes of the tracked points the demonstration covers, e.g. ``"z"``
                for the heights only (the others are left to the model, a partial demonstration
                in space as well as in the body).
            likelihood: ``"gaussian"`` or ``"authors"``, see above.
            **reference_options: ``clip_dt``, ``scale``, ``start_frame`` (`reference`).

        Returns:
            ``dict(demo=[H, 5 * len(axes)], demo_mask=[nx] bool, demo_reward=float,
            demo_sigma=[5 * len(axes)], demo_units=str)``, the demo and its sigmas in the model's
            dtype and on its device (columns in ``TRACKED`` order, then ``axes`` in x y z order).
            With ``likelihood="authors"``: ``dict(demo_log_likelihood=callable, demo_reward=float,
            demo_units=str)``, the callable mapping states ``[B, n, H, nx]`` to ``[B, n]`` against the
            reference ``[H, 5, 3]`` (in the model's dtype, on its device).

        Raises:
            ValueError: for a ``likelihood`` other than ``"gaussian"`` / ``"authors"``, ``axes``
                that is not a non-empty subset of ``"xyz"`` (``"xyz"`` only with ``"authors"``), a
                sigma that is not a positive number, and as `reference`.
        """
        del seed
        if not isinstance(likelihood, str) or likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if not isinstance(axes, str) or not axes or set(axes) - set("xyz") or len(set(axes)) != len(axes):
            raise ValueError(f"axes must be a non-empty string of distinct letters from 'xyz', got {axes!r}")
        height_sigma = demo_sigma if height_sigma is None else height_sigma
        demo_sigma, height_sigma = check_positive("demo_sigma", demo_sigma), check_positive("height_sigma", height_sigma)
        if likelihood == "authors" and axes != "xyz":
            raise ValueError(
                f"axes must be 'xyz' with likelihood='authors' (its distance is over all three), got {axes!r}"
            )
        columns = [k for k, axis in enumerate("xyz") if axis in axes]
        sigmas = [float(height_sigma) if "xyz"[k] == "z" else float(demo_sigma) for k in columns]
        reference = self.reference(source, horizon=horizon, **reference_options)
        if likelihood == "authors":
            return dict(
                demo_log_likelihood=self.tracking_log_likelihood(reference),
                demo_reward=float(AUTHORS_DEMO_REWARD if demo_reward is None else demo_reward),
                demo_units=demo_units,
            )
        if demo_reward is None:
            demo_reward = self.reference_reward(reference)
        mask = torch.zeros_like(self.demo_mask)
        mask[self.track_index.view(len(TRACKED), 3)[:, columns]] = True
        return dict(
            demo=reference[..., columns].flatten(-2).to(self.device, self.dtype),
            demo_mask=mask,
            demo_reward=float(demo_reward),
            demo_sigma=torch.tensor(sigmas * len(TRACKED), dtype=self.dtype, device=self.device),
            demo_units=demo_units,
        )


def make_humanoid_jog(backend: str = "mujoco", device: str | torch.device = "cpu", **options) -> HumanoidJog:
    """``dynamics.make`` factory: `HumanoidJog` on ``backend``."""
    return HumanoidJog(backend=backend, device=device, **options)


# ----------------------------------------------------------------------------- metrics
def reference_distance(points: Tensor, reference: Tensor) -> Tensor:
    """Mean Euclidean distance of tracked points to the reference: ``[..., H, K, 3] x [H, K, 3] -> [...]``."""
    return (points - reference.to(points)).norm(dim=-1).mean((-1, -2))


def upright_fraction(qpos: Tensor, low: float = 1.0, high: float = 2.0) -> Tensor:
    """Fraction of steps whose root height ``qpos[..., 2]`` is in ``[low, high]`` (gymnasium's healthy range).

    ``qpos [..., H, nq] -> [...]``.
    """
    z = qpos[..., 2]
    return ((z >= low) & (z <= high)).to(qpos.dtype).mean(-1)
