"""Humanoid jogging: the mocap loader and retargeting, and the demonstration's max rule (Eq. 13)."""

import math
import os
import threading

import numpy as np
import pytest
import torch

from torch_mbd import MBDOptimizer, denoise
from torch_mbd.rollout import Trajectory

from dynamics.tasks import import_mujoco  # noqa: E402

try:  # through dynamics, so that MuJoCo imports with the OpenGL backend it chooses (dynamics.gl)
    import_mujoco()
except ImportError:
    pytest.skip("mujoco is not installed", allow_module_level=True)
pytest.importorskip("gymnasium")

from dynamics import make  # noqa: E402
from dynamics.humanoid_jog import (  # noqa: E402
    DEFAULT_DEMO_SIGMA,
    DEFAULT_HEIGHT_SIGMA,
    TRACKED,
    HumanoidJog,
    load_clip,
    reference_distance,
    resample_clip,
    retarget_clip,
    upright_fraction,
)

CLIP_DT = 0.03
SPEED = 1.5  # m/s along the clip's +y
FRAMES = 21  # 0.6 s
# offsets from the torso in the clip's frame (the clip travels along +y, so +x is its right)
OFFSETS = {
    "torso": (0.0, 0.0, 0.0),
    "left_thigh": (-0.1, 0.05, -0.5),
    "right_thigh": (0.1, -0.05, -0.5),
    "left_shin": (-0.1, 0.1, -0.9),
    "right_shin": (0.1, -0.1, -0.9),
}
TORSO0 = np.array([3.0, -2.0, 1.2])


def synthetic_clip(frames=FRAMES, dt=CLIP_DT, legs=True):
    t = np.arange(frames) * dt
    torso = TORSO0 + np.outer(t, [0.0, SPEED, 0.0])
    clip = {k: (torso + np.array(v)).astype(np.float32) for k, v in OFFSETS.items()}
    if legs:  # hip-knee 0.4 and knee-toe 0.45: leg length 0.85
        for side, y in (("l", -0.1), ("r", 0.1)):
            clip[f"{side}hip"] = (torso + [y, 0, -0.3]).astype(np.float32)
            clip[f"{side}knee"] = (torso + [y, 0, -0.7]).astype(np.float32)
            clip[f"{side}toe"] = (torso + [y, 0, -1.15]).astype(np.float32)
    return clip


@pytest.fixture(scope="module")
def model():
    return HumanoidJog()


def save(tmp_path, clip, name="clip.npz"):
    path = tmp_path / name
    np.savez(path, **clip)
    return path


# ----------------------------------------------------------------------------- the task
def test_registry_builds_the_task():
    m = make("humanoid_jog", horizon=7)
    assert isinstance(m, HumanoidJog) and m.horizon == 7


def test_tracking_sensors_sit_at_segment_midpoints(model):
    import mujoco

    data = mujoco.MjData(model.mj_model)
    mujoco.mj_forward(model.mj_model, data)
    body = lambda name: data.xpos[model.mj_model.body(name).id]  # noqa: E731
    points = model.tracked_points(model.initial_state).double().numpy()
    for i, side in ((1, "left"), (2, "right")):
        np.testing.assert_allclose(points[i], (body(f"{side}_thigh") + body(f"{side}_shin")) / 2, atol=1e-5)
        np.testing.assert_allclose(points[i + 2], (body(f"{side}_shin") + body(f"{side}_foot")) / 2, atol=1e-5)
    head = data.geom_xpos[model.mj_model.geom("head").id]
    np.testing.assert_allclose(points[0], (body("pelvis") + head) / 2, atol=1e-5)
    # the readings move with the body: after a rollout they are where the rollout put them
    traj = model.rollout(torch.zeros(1, 3, model.action_dim))
    assert not torch.allclose(model.tracked_points(traj.states[0, -1]), model.tracked_points(model.initial_state))


# ----------------------------------------------------------------------------- pure functions
def test_resample_clip_interpolates_and_holds():
    frames = torch.arange(4, dtype=torch.float64).reshape(4, 1) * 10  # 0, 10, 20, 30 at dt 0.5
    out = resample_clip(frames, 0.5, torch.tensor([0.0, 0.25, 0.5, 1.4, 1.5, 9.0]))
    torch.testing.assert_close(out[:, 0], torch.tensor([0.0, 5.0, 10.0, 28.0, 30.0, 30.0], dtype=torch.float64))


def test_retarget_clip_turns_scales_and_moves():
    # root travels along +y from (1, 1); a second point 1 m to the root's right (+x) and 0.5 m up
    points = torch.tensor(
        [[[1.0, 1.0, 1.0], [2.0, 1.0, 1.5]], [[1.0, 3.0, 1.0], [2.0, 3.0, 1.5]]], dtype=torch.float64
    )
    out = retarget_clip(points, torch.tensor([0.0, 0.5]), scale=2.0)
    expected = torch.tensor(
        [[[0.0, 0.5, 2.0], [0.0, -1.5, 3.0]], [[4.0, 0.5, 2.0], [4.0, -1.5, 3.0]]], dtype=torch.float64
    )
    torch.testing.assert_close(out, expected)


# ----------------------------------------------------------------------------- the loader
def test_reference_maps_a_known_clip(model, tmp_path):
    path = save(tmp_path, synthetic_clip())
    ref = model.reference(path, clip_dt=CLIP_DT, scale=1.0)
    assert ref.shape == (model.horizon, len(TRACKED), 3)
    start = model.tracked_points(model.initial_state)[0].double()
    t = model.control_dt * torch.arange(1, model.horizon + 1, dtype=torch.float64)
    travelled = SPEED * t.clamp(max=(FRAMES - 1) * CLIP_DT)  # held after the clip's end
    # the torso starts over the robot's torso point, runs along +x at the clip's speed, keeps its height
    torch.testing.assert_close(ref[:, 0, 0], start[0] + travelled)
    torch.testing.assert_close(ref[:, 0, 1], start[1].expand(model.horizon))
    torch.testing.assert_close(ref[:, 0, 2], torch.full((model.horizon,), TORSO0[2], dtype=torch.float64))
    # the clip's +x (its right) becomes the robot's -y; relative offsets are kept
    for i, name in enumerate(TRACKED):
        dx, dy, dz = OFFSETS[name]
        rel = ref[:, i] - ref[:, 0]
        torch.testing.assert_close(rel, torch.tensor([dy, -dx, dz], dtype=torch.float64).expand_as(rel), atol=1e-6, rtol=0)
    # other clip points, placed by the torso: the left hip is 0.1 m to the clip's left, 0.3 m below
    hip = model.reference(path, clip_dt=CLIP_DT, scale=1.0, keys=("lhip",))
    assert hip.shape == (model.horizon, 1, 3)
    torch.testing.assert_close(hip[:, 0] - ref[:, 0], torch.tensor([0.0, 0.1, -0.3], dtype=torch.float64).expand(model.horizon, 3), atol=1e-6, rtol=0)
    # a dt stored in the file is used; the default scale is the leg-length ratio (clip legs: 0.85 m)
    np.savez(tmp_path / "with_dt.npz", dt=0.06, **synthetic_clip())
    slow = model.reference(tmp_path / "with_dt.npz", scale=1.0)
    torch.testing.assert_close(slow[:, 0, 0], start[0] + (SPEED * t / 2).clamp(max=SPEED * (FRAMES - 1) * CLIP_DT))
    scaled = model.reference(path, clip_dt=CLIP_DT, horizon=5)
    assert scaled.shape[0] == 5
    torch.testing.assert_close(scaled[0, 0, 2], torch.tensor(TORSO0[2] * model.leg_length / 0.85, dtype=torch.float64))


def test_demonstration_dict_and_mask(model, tmp_path):
    path = save(tmp_path, synthetic_clip())
    demo = model.demonstration(path, seed=3, clip_dt=CLIP_DT, scale=1.0)
    assert set(demo) == {"demo", "demo_mask", "demo_reward", "demo_sigma", "demo_units"}
    assert demo["demo_units"] == "reward"
    # one sigma per demo column: x, y get demo_sigma, z the tighter height_sigma
    sigma = demo["demo_sigma"]
    assert sigma.shape == (15,) and sigma.dtype == model.dtype
    expected_sigma = torch.tensor([DEFAULT_DEMO_SIGMA, DEFAULT_DEMO_SIGMA, DEFAULT_HEIGHT_SIGMA] * 5, dtype=model.dtype)
    torch.testing.assert_close(sigma, expected_sigma)
    assert DEFAULT_HEIGHT_SIGMA < DEFAULT_DEMO_SIGMA
    same = model.demonstration(path, clip_dt=CLIP_DT, scale=1.0, demo_sigma=0.2, height_sigma=None, demo_units="logit")
    assert bool((same["demo_sigma"] == 0.2).all()) and same["demo_units"] == "logit"
    for bad in (dict(demo_sigma=0.0), dict(height_sigma=-1.0), dict(demo_sigma=float("nan")), dict(height_sigma="1")):
        with pytest.raises(ValueError, match=next(iter(bad))):
            model.demonstration(path, clip_dt=CLIP_DT, scale=1.0, **bad)
    assert demo["demo"].shape == (model.horizon, 15) and demo["demo"].dtype == model.dtype
    mask = demo["demo_mask"]
    assert mask.shape == (model.state_dim,) and mask.dtype == torch.bool and int(mask.sum()) == 15
    sens = model.state_slices["sensordata"].start
    expected = torch.zeros(model.state_dim, dtype=torch.bool)
    for name in TRACKED:
        s = model.sensor_slices[f"{name}_track"]
        expected[sens + s.start : sens + s.stop] = True
    assert torch.equal(mask, expected)
    assert not mask[model.state_slices["qpos"]].any() and not mask[model.state_slices["qvel"]].any()
    ref = model.reference(path, clip_dt=CLIP_DT, scale=1.0)
    torch.testing.assert_close(demo["demo"], ref.flatten(-2).to(model.dtype))
    # the demo's columns are what the mask selects from a state that follows the reference
    states = torch.zeros(model.horizon, model.state_dim, dtype=model.dtype)
    states[:, mask] = demo["demo"]
    torch.testing.assert_close(model.tracked_points(states), ref.to(model.dtype))
    # demo_reward: the task reward of the torso the reference implies (runs forward at 1.5 m/s)
    assert demo["demo_reward"] == pytest.approx(model.reference_reward(ref))
    assert demo["demo_reward"] > float(model.rollout(torch.zeros(1, model.horizon, 17)).rewards.mean())


def test_demonstration_on_a_subset_of_axes(model, tmp_path):
    path = save(tmp_path, synthetic_clip())
    ref = model.reference(path, clip_dt=CLIP_DT, scale=1.0)
    full = model.demonstration(path, clip_dt=CLIP_DT, scale=1.0)
    heights = model.demonstration(path, clip_dt=CLIP_DT, scale=1.0, axes="z")
    assert heights["demo"].shape == (model.horizon, 5)
    assert int(heights["demo_mask"].sum()) == 5 and bool((heights["demo_mask"] <= full["demo_mask"]).all())
    # the heights-only demo puts each point's z where a state following the reference has it
    states = torch.zeros(model.horizon, model.state_dim, dtype=model.dtype)
    states[:, heights["demo_mask"]] = heights["demo"]
    torch.testing.assert_close(model.tracked_points(states)[..., 2], ref[..., 2].to(model.dtype))
    assert not model.tracked_points(states)[..., :2].any()
    # "zx" is the same set as "xz": columns always come in x y z order
    xz = model.demonstration(path, clip_dt=CLIP_DT, scale=1.0, axes="zx")
    torch.testing.assert_close(xz["demo"], ref[..., [0, 2]].flatten(-2).to(model.dtype))
    xz_sigma = torch.tensor([DEFAULT_DEMO_SIGMA, DEFAULT_HEIGHT_SIGMA] * 5, dtype=model.dtype)
    torch.testing.assert_close(xz["demo_sigma"], xz_sigma)
    assert bool((heights["demo_sigma"] == DEFAULT_HEIGHT_SIGMA).all()) and heights["demo_sigma"].shape == (5,)
    assert heights["demo_reward"] == full["demo_reward"]
    for bad in ("", "w", "xx", 3):
        with pytest.raises(ValueError, match="axes"):
            model.demonstration(path, clip_dt=CLIP_DT, scale=1.0, axes=bad)


def test_frame_skip_sets_the_control_step():
    default = HumanoidJog(horizon=5)
    assert default.control_dt == pytest.approx(5 * 0.006)
    assert default.control_dt == pytest.approx(CLIP_DT)  # the authors' rate: one clip frame per control step
    slow = HumanoidJog(horizon=5, frame_skip=10)
    assert slow.control_dt == pytest.approx(10 * float(slow.mj_model.opt.timestep))
    assert slow.state_dim == default.state_dim
    with pytest.raises(ValueError, match="frame_skip"):
        HumanoidJog(horizon=5, frame_skip=0)


def test_real_clip_maps_onto_the_robot(model, data_path):
    data_path("mocap/jog_xref.npz")  # "mocap", the default source, reads it from $TORCH_MBD_DATA
    ref = model.reference()
    start = model.tracked_points(model.initial_state)[0].double()
    assert ref.shape == (model.horizon, 5, 3) and torch.isfinite(ref).all()
    torch.testing.assert_close(ref[0, 0, :2], start[:2])  # the clip's first 10 frames hold still
    assert float(ref[-1, 0, 0]) > 1.0  # it jogs forward along +x
    assert 0.9 < float(ref[:, 0, 2].min()) and float(ref[:, 0, 2].max()) < 1.5


@pytest.mark.parametrize(
    "mutate, error, words",
    [
        (lambda c: c.pop("left_shin"), ValueError, ["left_shin", "missing"]),
        (lambda c: c.update(torso=c["torso"][:, :2]), ValueError, ["torso", "(T, 3)", "(21, 2)"]),
        (lambda c: c.update(right_thigh=c["right_thigh"][:-1]), ValueError, ["right_thigh", "20 frames"]),
        (lambda c: c["torso"].__setitem__((3, 1), np.nan), ValueError, ["torso", "non-finite"]),
        (lambda c: [c.update({k: v[:1]}) for k, v in list(c.items())], ValueError, ["at least 2 frames"]),
    ],
)
def test_loader_rejects_malformed_clips(model, tmp_path, mutate, error, words):
    clip = synthetic_clip()
    mutate(clip)
    with pytest.raises(error) as info:
        model.demonstration(save(tmp_path, clip), clip_dt=CLIP_DT)
    for word in words:
        assert word in str(info.value)


def test_loader_rejects_bad_sources_and_options(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_clip(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_clip(tmp_path / "junk.npz")
    with pytest.raises(TypeError, match="source"):
        load_clip(42)
    path = save(tmp_path, synthetic_clip(legs=False))
    with pytest.raises(ValueError, match="lhip.*scale="):
        model.reference(path)  # no leg points to compute the scale from
    model.reference(path, scale=1.0)  # ... fine with an explicit scale
    for kwargs, name in (({"clip_dt": 0.0}, "clip_dt"), ({"scale": -1.0}, "scale"), ({"start_frame": 20}, "start_frame"), ({"horizon": 0}, "horizon")):
        with pytest.raises(ValueError, match=name):
            model.reference(path, **{"scale": 1.0, **kwargs})


def _npz_bytes(tmp_path) -> bytes:
    return save(tmp_path, synthetic_clip(), "whole.npz").read_bytes()


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d: (d / "c.npz").write_text("torso,left_thigh\n1,2\n"), ["not an .npz archive", "np.savez"]),
        (lambda d: (d / "c.npz").write_bytes(b""), ["empty file", "0 bytes"]),
        (lambda d: np.save(d / "c.npy", np.zeros((21, 3))) or (d / "c.npy").rename(d / "c.npz"), [".npy array"]),
        (lambda d: (d / "c.npz").mkdir(), ["is a directory"]),
        (lambda d: (d / "c.npz").write_bytes(_npz_bytes(d)[:300]), ["not a readable .npz archive"]),
    ],
    ids=["text", "empty", "npy", "directory", "truncated"],
)
def test_loader_says_what_a_file_is_when_it_is_not_a_clip(tmp_path, make, words):
    make(tmp_path)
    with pytest.raises(ValueError) as info:
        load_clip(tmp_path / "c.npz")
    message = str(info.value)
    assert "c.npz" in message and "pickle" not in message.lower(), message
    for word in words:
        assert word in message, message


def test_loader_rejects_complex_and_pickled_tracks(tmp_path):
    clip = synthetic_clip()
    clip["torso"] = clip["torso"] + 1j
    with pytest.raises(ValueError, match=r"'torso' must hold real positions, got complex64 \(complex\)"):
        load_clip(save(tmp_path, clip))
    clip = synthetic_clip()
    clip["left_shin"] = np.array([object()] * FRAMES, dtype=object)
    with pytest.raises(ValueError, match="'left_shin' cannot be read: .*pickled data"):
        load_clip(save(tmp_path, clip))
    with pytest.raises(ValueError, match="'torso' must hold real positions, got text"):
        load_clip({**synthetic_clip(), "torso": np.full((FRAMES, 3), "a")})


@pytest.mark.parametrize(
    "dt, words",
    [(0.0, ["0.0"]), (-0.03, ["-0.03"]), (np.nan, ["nan"]), (np.inf, ["inf"]), ("fast", ["text"]),
     (np.array([0.03, 0.03]), ["shape (2,)"]), (0.03 + 0j, ["complex"]), (True, ["booleans"])],
)
def test_loader_rejects_a_bad_dt(tmp_path, dt, words):
    with pytest.raises(ValueError) as info:
        load_clip(save(tmp_path, {**synthetic_clip(), "dt": dt}))
    message = str(info.value)
    assert "clip.npz" in message and "'dt' must be one positive, finite number" in message, message
    for word in words:
        assert word in message, message
    assert float(load_clip(save(tmp_path, {**synthetic_clip(), "dt": np.float32(0.05)}))["dt"]) == pytest.approx(0.05)


def test_unrelated_entries_never_reject_a_clip(tmp_path):
    """Extra entries are kept when they are (T, 3) tracks of the clip's length and ignored otherwise."""
    clean = load_clip(save(tmp_path, synthetic_clip(), "clean.npz"))
    extras = {
        "subject": np.array("jogger 07"),  # text
        "fps_hint": np.array([33.3, 0.0]),  # a shape no track has
        "short": np.zeros((7, 3)),  # another length
        "quat": np.zeros((FRAMES, 4)),
        "phase": np.zeros((FRAMES, 3)) + 1j,  # complex
        "broken_marker": np.full((FRAMES, 3), np.nan),
        "meta": np.array([{"a": 1}], dtype=object),  # pickled: never loaded
        "head": np.ones((FRAMES, 3)),  # a well-formed extra point: kept
    }
    for name, value in extras.items():  # one at a time, then all together
        loaded = load_clip(save(tmp_path, {**synthetic_clip(), name: value}, f"with_{name}.npz"))
        assert set(loaded) == set(clean) | ({"head"} if name == "head" else set()), name
    loaded = load_clip(save(tmp_path, {**synthetic_clip(), **extras}, "with_all.npz"))
    assert set(loaded) == set(clean) | {"head"}
    for key in clean:
        assert torch.equal(loaded[key], clean[key])
    torch.testing.assert_close(loaded["head"], torch.ones(FRAMES, 3, dtype=torch.float64))


def test_the_real_clip_with_an_extra_entry_loads_unchanged(tmp_path, data_path):
    real = data_path("mocap/jog_xref.npz")
    with np.load(real) as npz:
        arrays = {k: npz[k] for k in npz.files}
    original = load_clip("mocap")
    assert set(original) == set(load_clip(real))
    extended = load_clip(save(tmp_path, {**arrays, "notes": np.array("recorded at 30 fps"), "ids": np.arange(4)}))
    assert set(extended) == set(original)
    for key in original:
        assert torch.equal(extended[key], original[key])


def _write_then_read(fifo, data: bytes, read):
    """Write ``data`` into the named pipe ``fifo`` from one thread while ``read(fifo)`` runs in another.

    Returns what ``read`` returned; fails the test (after releasing the reader) if ``read`` hangs,
    as a reader that opens the pipe twice does: its second open waits for a writer that never comes.
    """
    def write():
        try:
            with open(fifo, "wb") as f:
                f.write(data)
        except BrokenPipeError:  # a reader that closed after the first bytes
            pass

    result = {}

    def run():
        try:
            result["value"] = read(fifo)
        except BaseException as err:  # reported in the main thread
            result["error"] = err

    threading.Thread(target=write, daemon=True).start()
    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    reader.join(60)
    if reader.is_alive():
        with open(fifo, "wb"):  # a writer that closes at once: the stuck open returns, reads nothing
            pass
        reader.join(10)
        pytest.fail("reading a named pipe hung (the file is opened twice)")
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_clip_from_a_named_pipe_is_read_once(tmp_path):
    fifo = tmp_path / "clip.npz"
    os.mkfifo(fifo)
    clip = synthetic_clip()
    expected = load_clip(save(tmp_path, clip, name="plain.npz"))
    got = _write_then_read(fifo, (tmp_path / "plain.npz").read_bytes(), load_clip)
    assert sorted(got) == sorted(expected)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
    # a pipe that carries something else is refused like a file would be
    with pytest.raises(ValueError, match="not an .npz archive"):
        _write_then_read(fifo, b"just some text\n", load_clip)
    with pytest.raises(ValueError, match="empty file"):
        _write_then_read(fifo, b"", load_clip)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_the_command_line_plans_with_a_demo_from_a_named_pipe(tmp_path, capsys):
    from torch_mbd import cli

    fifo = tmp_path / "clip.npz"
    os.mkfifo(fifo)
    data = save(tmp_path, synthetic_clip(), name="plain.npz").read_bytes()
    argv = ["plan", "humanoid_jog", "--demo", str(fifo), "--samples", "2", "--steps", "1", "--horizon", "3",
            "--no-progress", "--out", str(tmp_path / "jog.png")]
    assert _write_then_read(fifo, data, lambda _: cli.main(argv)) == 0
    assert np.load(tmp_path / "jog.npz")["demo"].shape == (3, 15)


def test_numpy_scalar_sigmas_are_accepted(model, tmp_path):
    path = save(tmp_path, synthetic_clip())
    plain = model.demonstration(path, clip_dt=CLIP_DT, scale=1.0, demo_sigma=0.2, height_sigma=0.05)
    numpy = model.demonstration(path, clip_dt=CLIP_DT, scale=1.0, demo_sigma=np.float32(0.2), height_sigma=np.float64(0.05))
    torch.testing.assert_close(numpy["demo_sigma"], plain["demo_sigma"])
    with pytest.raises(ValueError, match="demo_sigma"):
        model.demonstration(path, clip_dt=CLIP_DT, scale=1.0, demo_sigma=np.True_)


def test_reference_checks_leg_points_only_when_it_needs_them(model, tmp_path):
    clip = synthetic_clip()
    clip["lknee"] = clip["lknee"][:, :2]
    path = save(tmp_path, clip)
    with pytest.raises(ValueError, match=r"'lknee' must be a \(T, 3\) array"):
        model.reference(path)  # the scale comes from the legs: a malformed leg point is an error
    ref = model.reference(path, scale=np.float32(1.0), clip_dt=np.float64(CLIP_DT), start_frame=np.int64(0))
    assert ref.shape == (model.horizon, 5, 3) and bool(torch.isfinite(ref).all())


def test_metrics():
    ref = torch.zeros(4, 5, 3)
    points = torch.zeros(2, 4, 5, 3)
    points[1, ..., 2] = 0.5
    torch.testing.assert_close(reference_distance(points, ref), torch.tensor([0.0, 0.5]))
    qpos = torch.zeros(4, 24)
    qpos[:, 2] = torch.tensor([1.4, 1.0, 0.9, 2.5])
    assert float(upright_fraction(qpos)) == pytest.approx(0.5)


def test_optimizer_consumes_the_demonstration(model, tmp_path):
    m = HumanoidJog(horizon=4)
    demo = m.demonstration(save(tmp_path, synthetic_clip()), clip_dt=CLIP_DT)
    actions = torch.zeros(4, m.action_dim)
    opt = MBDOptimizer([actions], num_samples=6, num_steps=2, bounds=m.action_bounds, rollout=m.rollout, seed=0, **demo)
    opt.step()
    assert opt.last_step.demo_wins.shape == (1, 6) and torch.isfinite(actions).all()


# ----------------------------------------------------------------------------- the max rule on a small task
H, DT = 10, 0.1


def point_rollout(actions):
    """A 2-D point whose velocity is the action: states [x, y, vx, vy]; reward: progress along +x."""
    pos = torch.cumsum(actions, dim=-2) * DT
    states = torch.cat([pos, actions], dim=-1)
    return Trajectory(states=states, rewards=pos[..., 0], feasible=None)


# the demonstration covers positions only (partial state) and runs along +y, away from the reward
DEMO_XY = torch.stack([torch.zeros(H), DT * torch.arange(1, H + 1)], dim=-1)
XY_MASK = torch.tensor([True, True, False, False])


def run(demo_reward, steps=20, seed=0, demo=True, units="logit"):
    actions = torch.zeros(H, 2)
    sigma = 0.1 if units == "logit" else 1.0  # "reward": metres per unit of this task's reward (~0.1-0.5)
    kwargs = dict(demo=DEMO_XY, demo_mask=XY_MASK, demo_sigma=sigma, demo_reward=demo_reward, demo_units=units)
    kwargs = kwargs if demo else {}
    opt = MBDOptimizer([actions], num_samples=64, num_steps=steps, bounds=(-1.0, 1.0), rollout=point_rollout, seed=seed,
                       temperature=0.1, **kwargs)  # the weights below are checked at 0.1
    infos, estimates = [], []
    for _ in range(steps):
        opt.step()
        infos.append(opt.last_step)
        estimates.append(actions.clone())
    return infos, estimates


def demo_distance(actions):
    return float((point_rollout(actions[None]).states[0, :, :2] - DEMO_XY).norm(dim=-1).mean())


@pytest.mark.parametrize("units", ["logit", "reward"])
def test_a_dominant_demo_pulls_the_first_steps_toward_it(units):
    infos, estimates = run(demo_reward=10.0, units=units)
    assert bool(infos[0].demo_wins.all())  # every sample takes the demo's weight at first
    start = demo_distance(torch.zeros(H, 2))
    assert demo_distance(estimates[0]) < start
    assert demo_distance(estimates[4]) < 0.5 * start
    free, free_estimates = run(demo_reward=None, demo=False)
    assert demo_distance(free_estimates[4]) > demo_distance(estimates[4])
    # the model alone would go along +x instead
    assert float(point_rollout(free_estimates[-1][None]).rewards.mean()) > float(point_rollout(estimates[-1][None]).rewards.mean())


@pytest.mark.parametrize("units", ["logit", "reward"])
def test_the_demo_stops_mattering_once_samples_beat_it(units):
    # the demo's reward is what the first samples score; the model soon beats it
    infos, estimates = run(demo_reward=0.05, steps=30, units=units)
    first = infos[0].demo_wins.float().mean()
    assert first > 0.2
    late = [info for info in infos if info.rewards.min() > 0.05]
    assert late, "the samples never beat the demonstration"
    for info in late:
        assert not info.demo_wins.any()  # loglik <= 0: a sample better than the demo keeps its own weight
        logp, _, _ = denoise.normalized_log_weights(info.rewards, 0.1)
        torch.testing.assert_close(info.weights, torch.softmax(logp, -1))
    # and for a demo no sample ever falls below, the run is the plain model run (bit for bit with
    # "logit"; "reward" standardizes the already standardized log-weights again, up to rounding)
    low, low_estimates = run(demo_reward=-100.0, units=units)
    free, free_estimates = run(demo_reward=None, demo=False)
    assert not any(bool(info.demo_wins.any()) for info in low)
    for a, b in zip(low_estimates, free_estimates):
        if units == "logit":
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert math.isfinite(float(point_rollout(low_estimates[-1][None]).rewards.mean()))


def test_benchmark_runs_held_out_seeds_on_a_tiny_budget(capsys, tmp_path):
    from _scripts import load_script

    bench = load_script("benchmarks/humanoid_jog.py", "humanoid_jog_benchmark")
    clip = str(save(tmp_path, synthetic_clip()))  # any clip: this checks the benchmark, not the data
    argv = ["--seeds", "2", "--first-seed", "3", "--samples", "4", "--steps", "2", "--horizon", "5", "--clip", clip]
    bench.main(argv + ["--axes", "z", "--frame-skip", "10", "--quiet", "--no-write"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 3 |") or line.startswith("| 4 |")]
    assert len(rows) == 2  # the per-seed table names the seeds that ran
    assert "/2 seeds" in out and "| MBD, demo |" in out
    with pytest.raises(SystemExit):
        bench.parse_args(["--first-seed", "-1"])
    bench.main(argv + ["--weights", "--demo-units", "logit"])
    out = capsys.readouterr().out
    assert "seed 3, demo arm:" in out and "seed 4, demo arm:" in out
    steps = [line for line in out.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(steps) == 4 and all(" of 4 |" in line for line in steps)  # 2 steps x 2 seeds, ESS of 4 samples
    with pytest.raises(SystemExit):
        bench.parse_args(["--height-sigma", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--demo-units", "nats"])
    with pytest.raises(ValueError, match="axes"):
        bench.main(argv + ["--axes", "q", "--quiet", "--no-write"])


# ----------------------------------------------------------------------------- the authors' demonstration likelihood
def test_authors_likelihood_is_the_clipped_distance_formula(tmp_path):
    from dynamics.humanoid_jog import AUTHORS_DEMO_REWARD

    m = HumanoidJog(horizon=4)
    path = save(tmp_path, synthetic_clip())
    # scale 1.5 puts some tracked points within 0.5 m of the reference and some beyond
    options = m.demonstration(path, clip_dt=CLIP_DT, scale=1.5, likelihood="authors")
    assert set(options) == {"demo_log_likelihood", "demo_reward", "demo_units"}
    assert options["demo_reward"] == AUTHORS_DEMO_REWARD == 1.0 and options["demo_units"] == "reward"
    reference = m.reference(path, clip_dt=CLIP_DT, scale=1.5)  # [H, 5, 3]
    actions = torch.rand(3, 4, m.action_dim, generator=torch.Generator().manual_seed(0)) * 2 - 1
    states = m.rollout(actions).states  # [n, H, nx]
    got = options["demo_log_likelihood"](states[None])  # [B=1, n]
    # by hand: the Euclidean distance of each tracked point, clipped at 0.5 m, squared over 0.5^2, averaged
    points = m.tracked_points(states).double()  # [n, H, 5, 3]
    distance = ((points - reference) ** 2).sum(-1).sqrt()  # [n, H, 5]
    assert bool((distance > 0.5).any()) and bool((distance < 0.5).any())
    expected = -(torch.minimum(distance, torch.tensor(0.5)) / 0.5).square().mean((-1, -2))
    assert got.shape == (1, 3)
    torch.testing.assert_close(got[0].double(), expected, rtol=1e-5, atol=1e-6)
    # the Gaussian default is unchanged by the new option; an explicit demo_reward is kept
    gaussian = m.demonstration(path, clip_dt=CLIP_DT)
    assert set(gaussian) == {"demo", "demo_mask", "demo_reward", "demo_sigma", "demo_units"}
    assert m.demonstration(path, clip_dt=CLIP_DT, likelihood="authors", demo_reward=0.3)["demo_reward"] == 0.3


def test_authors_likelihood_bad_options(model, tmp_path):
    path = save(tmp_path, synthetic_clip())
    for bad in ("Gaussian", "clipped", None, 1):
        with pytest.raises(ValueError, match="likelihood must be one of"):
            model.demonstration(path, clip_dt=CLIP_DT, likelihood=bad)
    with pytest.raises(ValueError, match="axes must be 'xyz' with likelihood='authors'"):
        model.demonstration(path, clip_dt=CLIP_DT, likelihood="authors", axes="z")


def test_a_tiny_plan_runs_with_the_authors_likelihood(tmp_path):
    from torch_mbd import plan

    m = HumanoidJog(horizon=5)
    options = m.demonstration(save(tmp_path, synthetic_clip()), clip_dt=CLIP_DT, likelihood="authors")
    res = plan(m, num_samples=4, num_steps=2, seed=0, progress=False, **options)
    assert res.states.shape[-2] == 5 and bool(torch.isfinite(res.states).all())
    actions = torch.zeros(5, m.action_dim)
    opt = MBDOptimizer(
        [actions], num_samples=4, num_steps=2, bounds=m.action_bounds, rollout=m.rollout, seed=0, **options
    )
    opt.step()
    assert opt.last_step.demo_wins.shape == (1, 4) and bool(torch.isfinite(actions).all())


def test_benchmark_takes_the_likelihood_flag(capsys, tmp_path):
    from _scripts import load_script

    bench = load_script("benchmarks/humanoid_jog.py", "humanoid_jog_benchmark_likelihood")
    assert bench.parse_args([]).likelihood == "gaussian" and bench.parse_args([]).demo_reward == "reference"
    authors = bench.parse_args(["--likelihood", "authors"])
    assert authors.likelihood == "authors" and authors.demo_reward == "1.0"
    assert bench.parse_args(["--likelihood", "authors", "--demo-reward", "first-best"]).demo_reward == "first-best"
    with pytest.raises(SystemExit):
        bench.parse_args(["--likelihood", "laplace"])
    m = HumanoidJog(horizon=5)
    clip = str(save(tmp_path, synthetic_clip()))
    ours = bench.demo_options(m, bench.parse_args(["--likelihood", "authors", "--demo-reward", "reference", "--clip", clip]))
    assert ours["demo_reward"] == pytest.approx(m.reference_reward(m.reference(clip)))
    argv = ["--seeds", "1", "--samples", "4", "--steps", "2", "--horizon", "5", "--quiet", "--no-write", "--clip", clip]
    bench.main(argv + ["--likelihood", "authors"])
    out = capsys.readouterr().out
    assert "demo likelihood 'authors', demo_reward 1.0" in out and "| MBD, demo |" in out
