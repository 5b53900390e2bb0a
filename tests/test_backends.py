"""The three MuJoCo backends (CPU ``mujoco.rollout``, MuJoCo Warp, MJX) against plain ``mj_step``.

Warp and MJX compile for tens of seconds on a CPU the first time (warp caches its kernels on
disk, MJX jits once per model and shape), so each model is built once per module and every
test uses the same action shape. The fast tests run the CPU backend; the same tests on warp
and MJX are marked slow (CI still runs them).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import dynamics
from dynamics.backends import BACKEND_OPTIONS, BACKENDS, GPU_BACKENDS
from dynamics.model import MujocoModel
from dynamics.tasks import Task, import_mujoco

mujoco = import_mujoco()
ROOT = Path(__file__).resolve().parent.parent

# A contact-free cart-pole. The second actuator has an absurd gear: a test drives it on some
# samples to make exactly those simulations diverge, without building (and compiling) a second model.
CARTPOLE_XML = """
<mujoco model="cartpole">
  <option timestep="0.01" integrator="Euler"/>
  <worldbody>
    <body name="cart">
      <joint name="slider" type="slide" axis="1 0 0" damping="0.1"/>
      <geom type="box" size="0.1 0.05 0.05" mass="1" contype="0" conaffinity="0"/>
      <body name="pole">
        <joint name="hinge" type="hinge" axis="0 1 0" damping="0.01"/>
        <geom type="capsule" fromto="0 0 0 0 0 0.5" size="0.02" mass="0.2" contype="0" conaffinity="0"/>
        <site name="tip" pos="0 0 0.5"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor name="push" joint="slider" gear="5" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="blow_up" joint="slider" gear="1e30" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
  <sensor>
    <framepos name="tip_pos" objtype="site" objname="tip"/>
  </sensor>
</mujoco>
"""


def cartpole_reward(qpos, qvel, sensors, action):
    """Keep the pole tip high and the cart near the origin."""
    return sensors["tip_pos"][..., 2] - 0.1 * qpos[..., 0].square() - 0.01 * action.square().sum(-1)


def cartpole_task() -> Task:
    return Task(
        "cartpole", lambda: mujoco.MjSpec.from_string(CARTPOLE_XML), cartpole_reward, frame_skip=4, horizon=8
    )


N, H = 3, 8  # every cart-pole rollout has this shape: MJX compiles once


def cartpole_actions() -> torch.Tensor:
    """``[N, H, 2]``: three different pushes, the blow-up actuator off."""
    gen = torch.Generator().manual_seed(0)
    actions = torch.zeros(N, H, 2)
    actions[..., 0] = 2 * torch.rand(N, H, generator=gen) - 1
    return actions


def reference_states(model: MujocoModel, actions: torch.Tensor) -> np.ndarray:
    """Plain ``mj_step`` in float64, the control held ``frame_skip`` steps: ``[N, H, state_dim]``."""
    out = np.empty((*actions.shape[:2], model.state_dim))
    ctrl = model.controls(actions.double()).numpy()
    for i in range(actions.shape[0]):
        data = mujoco.MjData(model.mj_model)
        data.qpos[:], data.qvel[:] = model.qpos0.numpy(), model.qvel0.numpy()
        for t in range(actions.shape[1]):
            data.ctrl[:] = ctrl[i, t]
            for _ in range(model.frame_skip):
                mujoco.mj_step(model.mj_model, data)
            out[i, t] = np.concatenate([data.qpos, data.qvel, data.sensordata])
    return out


# the CPU backend fast, the compiling ones slow
BACKEND_PARAMS = [b if b == "mujoco" else pytest.param(b, marks=pytest.mark.slow) for b in BACKENDS]
PACKAGES = {"mujoco": "mujoco.rollout", "warp": "mujoco_warp", "mjx": "mujoco.mjx"}
# float64 on the CPU backend; warp and MJX simulate in float32
TOLERANCE = {"mujoco": 1e-6, "warp": 1e-4, "mjx": 1e-4}


@pytest.fixture(scope="module")
def cartpoles():
    """One cart-pole model per backend, built (and compiled) once for the module."""
    return {}


def cartpole_model(backend: str, cartpoles: dict) -> MujocoModel:
    """The module's cart-pole on ``backend`` (built on first use; skips when the backend is missing)."""
    pytest.importorskip(PACKAGES[backend])
    if backend not in cartpoles:
        cartpoles[backend] = MujocoModel(cartpole_task(), backend=backend)
    return cartpoles[backend]


@pytest.fixture(params=BACKEND_PARAMS)
def cartpole(request, cartpoles):
    return cartpole_model(request.param, cartpoles)


def test_shapes_dtypes_device(cartpole):
    traj = cartpole.rollout(cartpole_actions())
    assert traj.states.shape == (N, H, cartpole.state_dim) == (N, H, 2 + 2 + 3)
    assert traj.rewards.shape == (N, H) and traj.feasible.shape == (N,)
    assert traj.states.dtype == traj.rewards.dtype == torch.float32 and traj.feasible.dtype == torch.bool
    assert traj.states.device == traj.rewards.device == traj.feasible.device == torch.device("cpu")
    assert bool(traj.feasible.all())
    # leading batch dimensions are kept (same flattened batch, so no new compilation)
    batched = cartpole.rollout(cartpole_actions().unsqueeze(0))
    assert batched.states.shape == (1, N, H, cartpole.state_dim) and batched.feasible.shape == (1, N)


def test_matches_mj_step_with_frame_skip(cartpole):
    """Every backend reproduces plain mj_step, holding each control frame_skip physics steps."""
    actions = cartpole_actions()
    traj = cartpole.rollout(actions)
    expected = reference_states(cartpole, actions)
    np.testing.assert_allclose(traj.states.double().numpy(), expected, atol=TOLERANCE[cartpole.backend_name], rtol=0)
    # and not the states of frame_skip - 1 or frame_skip + 1 steps per control
    assert np.abs(expected[:, 1:, :2] - expected[:, :-1, :2]).max() > 100 * TOLERANCE[cartpole.backend_name]


def test_rewards_are_the_task_reward_of_the_states(cartpole):
    actions = cartpole_actions()
    traj = cartpole.rollout(actions)
    states = traj.states
    expected = cartpole_reward(states[..., 0:2], states[..., 2:4], {"tip_pos": states[..., 4:7]}, actions)
    torch.testing.assert_close(traj.rewards, expected)


def test_deterministic(cartpole):
    actions = cartpole_actions()
    first, second = cartpole.rollout(actions), cartpole.rollout(actions)
    assert torch.equal(first.states, second.states) and torch.equal(first.rewards, second.rewards)


def test_diverging_sample_is_infeasible_and_does_not_poison_the_batch(cartpole):
    actions = cartpole_actions()
    clean = cartpole.rollout(actions)
    bad = actions.clone()
    bad[1, 2:, 1] = 1.0  # 1e30 N on the cart of sample 1
    traj = cartpole.rollout(bad)
    assert traj.feasible.tolist() == [True, False, True]
    assert bool(torch.isfinite(traj.states).all()) and bool(torch.isfinite(traj.rewards).all())
    for i in (0, 2):
        assert torch.equal(traj.states[i], clean.states[i]) and torch.equal(traj.rewards[i], clean.rewards[i])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_action_is_infeasible(cartpole, value):
    actions = cartpole_actions()
    clean = cartpole.rollout(actions)
    actions[2, 5, 0] = value
    traj = cartpole.rollout(actions)
    assert traj.feasible.tolist() == [True, True, False]
    assert bool(torch.isfinite(traj.rewards).all()) and bool(torch.isfinite(traj.states).all())
    assert torch.equal(traj.states[:2], clean.states[:2])
    assert not bool(traj.rewards[2].any())  # an infeasible sample's rewards are 0


def test_empty_batch_gives_empty_tensors(cartpole):
    """n = 0 (or an empty leading dimension) never reaches the simulator (MuJoCo's C rollout crashes on it)."""
    for shape in ((0, H, 2), (2, 0, H, 2), (0, 3, H, 2)):
        traj = cartpole.rollout(torch.zeros(shape))
        lead = shape[:-2]
        assert traj.states.shape == (*lead, H, cartpole.state_dim) and traj.rewards.shape == (*lead, H)
        assert traj.feasible.shape == lead and traj.feasible.dtype == torch.bool
        assert traj.states.dtype == traj.rewards.dtype == cartpole.dtype
    # the backend itself answers an empty batch too
    qpos, qvel, sens = cartpole.backend(cartpole.qpos0, cartpole.qvel0, torch.zeros(0, H, 2))
    assert qpos.shape == (0, H, 2) and qvel.shape == (0, H, 2) and sens.shape == (0, H, 3)
    assert bool(cartpole.rollout(cartpole_actions()).feasible.all())  # and the model still works


def test_empty_hopper_batch_does_not_crash_the_process():
    """The case of issue 15: ``dynamics.make("hopper").rollout(torch.zeros(0, H, nu))`` was a SIGSEGV."""
    code = (
        "import torch, dynamics\n"
        "m = dynamics.make('hopper')\n"
        "H = m.horizon\n"
        "t = m.rollout(torch.zeros(0, H, m.action_dim))\n"
        "assert t.states.shape == (0, H, m.state_dim) and t.rewards.shape == (0, H) and t.feasible.shape == (0,)\n"
        "print('empty ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip().endswith("empty ok")


def test_rollouts_from_several_threads_match_the_sequential_ones(cartpole):
    """One model shared by 4 threads: each thread's rollouts equal the same rollouts run one after another.

    The CPU and warp backends serve one rollout at a time (a lock); MJX's jitted function holds no
    state between calls. Different actions per thread, so that a mixed-up buffer would show.
    """
    gen = torch.Generator().manual_seed(2)
    batches = [torch.zeros(N, H, 2) for _ in range(4)]
    for actions in batches:
        actions[..., 0] = 2 * torch.rand(N, H, generator=gen) - 1
    expected = [cartpole.rollout(actions) for actions in batches]
    results, errors = [[] for _ in batches], []

    def work(k):
        try:
            for _ in range(10):
                results[k].append(cartpole.rollout(batches[k]))
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads), "a rollout deadlocked"
    for k, runs in enumerate(results):
        assert len(runs) == 10
        for traj in runs:
            assert torch.equal(traj.states, expected[k].states) and torch.equal(traj.rewards, expected[k].rewards)


TWO_THREADS = """
import threading, torch, dynamics
m = dynamics.make("hopper")
def work():
    for _ in range(50):
        m.rollout(torch.zeros(8, 5, m.action_dim))
threads = [threading.Thread(target=work) for _ in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
print("threads ok")
"""

EIGHT_PLANS = """
import threading, torch, dynamics, torch_mbd
model = dynamics.make("hopper", horizon=8)
budget = dict(num_samples=64, num_steps=3, progress=False)
sequential = [torch_mbd.plan(model, seed=s, **budget) for s in range(8)]
concurrent = [None] * 8
def work(s):
    concurrent[s] = torch_mbd.plan(model, seed=s, **budget)
threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
for a, b in zip(sequential, concurrent):
    assert torch.equal(a.actions, b.actions) and torch.equal(a.rewards, b.rewards) and a.reward == b.reward
assert len({float(r.reward) for r in sequential}) > 1  # the seeds give different plans: a swap would show
print("plans ok")
"""


@pytest.mark.parametrize("code, done_line", [(TWO_THREADS, "threads ok"), (EIGHT_PLANS, "plans ok")],
                         ids=["2-threads-x-50-rollouts", "8-concurrent-plans"])
def test_one_hopper_shared_by_threads_neither_crashes_nor_mixes_results(code, done_line):
    """The cases of issue 25 that were killed by signal 11; in a subprocess, so that a crash is a failure."""
    pytest.importorskip("gymnasium")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip().endswith(done_line)


@pytest.mark.parametrize(
    "actions, error, words",
    [
        (torch.zeros(N, 0, 2), ValueError, ["at least one control step", "H >= 1"]),
        (torch.zeros(N, H, 3), ValueError, ["[..., n, H, 2]", "(3, 8, 3)"]),
        (torch.zeros(H, 2), ValueError, ["[..., n, H, 2]"]),
        (torch.zeros(N, H, 2, dtype=torch.int64), TypeError, ["real floating point", "int64"]),
        (torch.zeros(N, H, 2, dtype=torch.bool), TypeError, ["real floating point", "bool"]),
        (torch.zeros(N, H, 2, dtype=torch.complex64), TypeError, ["real floating point", "complex64"]),
        (np.zeros((N, H, 2)), TypeError, ["torch.Tensor", "torch.as_tensor", "ndarray"]),
        ([[[0.0, 0.0]]], TypeError, ["torch.Tensor", "list"]),
        (torch.zeros(N, H, 2, device="meta"), ValueError, ["meta", "cpu"]),
    ],
    ids=["H=0", "wrong-nu", "wrong-rank", "int", "bool", "complex", "numpy", "list", "other-device"],
)
def test_malformed_batches_are_rejected_before_the_simulator(cartpole, actions, error, words):
    with pytest.raises(error) as info:
        cartpole.rollout(actions)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_backend_checks_its_inputs_before_native_code(cartpole):
    backend, qpos0, qvel0 = cartpole.backend, cartpole.qpos0, cartpole.qvel0
    cases = [
        ((qpos0, qvel0, torch.zeros(N, 0, 2)), ValueError, "H >= 1"),
        ((qpos0, qvel0, torch.zeros(N, H, 3)), ValueError, r"ctrl must have shape \[N, H, 2\]"),
        ((qpos0, qvel0, np.zeros((N, H, 2))), TypeError, "ctrl must be a torch.Tensor"),
        ((qpos0, qvel0, torch.zeros(N, H, 2, dtype=torch.int32)), TypeError, "ctrl must have a real floating dtype"),
        ((qpos0[:1], qvel0, torch.zeros(N, H, 2)), ValueError, r"qpos0 must have shape \[2\]"),
        ((qpos0, torch.full_like(qvel0, float("nan")), torch.zeros(N, H, 2)), ValueError, "must be finite"),
    ]
    for args, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            backend(*args)


def test_low_precision_actions_are_computed_in_the_model_dtype(cartpole):
    actions = cartpole_actions().to(torch.bfloat16)
    traj = cartpole.rollout(actions)
    assert traj.states.dtype == cartpole.dtype
    assert torch.equal(traj.states, cartpole.rollout(actions.to(cartpole.dtype)).states)


def test_initial_state_setter_moves_the_start(cartpole):
    actions = cartpole_actions()
    start = cartpole.initial_state.clone()
    try:
        cartpole.initial_state = torch.tensor([0.3, 0.5, 0.0, 0.0])  # [nq + nv]
        assert cartpole.initial_state.shape == (cartpole.state_dim,)
        moved = cartpole.rollout(actions)
        expected = reference_states(cartpole, actions)
        np.testing.assert_allclose(moved.states.double().numpy(), expected, atol=TOLERANCE[cartpole.backend_name])
        assert abs(float(moved.states[0, 0, 0]) - 0.3) < 0.1
    finally:
        cartpole.initial_state = start
    torch.testing.assert_close(cartpole.initial_state, start)


def test_wrong_action_shape_is_a_value_error(cartpole):
    with pytest.raises(ValueError, match=r"actions must have shape \[\.\.\., n, H, 2\]"):
        cartpole.rollout(torch.zeros(N, H, 3))
    with pytest.raises(ValueError, match="actions must have shape"):
        cartpole.rollout(torch.zeros(H, 2))
    with pytest.raises(TypeError, match="floating point"):
        cartpole.rollout(torch.zeros(N, H, 2, dtype=torch.int64))


def test_bad_backend_is_a_value_error():
    with pytest.raises(ValueError, match="backend must be one of 'mujoco', 'warp', 'mjx'"):
        MujocoModel(cartpole_task(), backend="gpu")


def test_every_backend_is_offered_from_the_one_list():
    """MujocoModel, task_info and the torch-mbd command all take the list of dynamics.backends."""
    from torch_mbd import cli

    assert BACKENDS[0] == "mujoco" and set(GPU_BACKENDS) <= set(BACKENDS) == set(BACKEND_OPTIONS)
    assert set(PACKAGES) == set(TOLERANCE) == set(BACKENDS)  # this file's tables cover every backend
    assert dynamics.task_info("hopper").backends == BACKENDS
    plan_parser = next(a for a in cli.build_parser()._subparsers._group_actions).choices["plan"]
    backend_option = next(a for a in plan_parser._actions if a.dest == "backend")
    assert tuple(backend_option.choices) == BACKENDS
    with pytest.raises(ValueError) as info:
        MujocoModel(cartpole_task(), backend="gpu")
    assert all(repr(name) in str(info.value) for name in BACKENDS)


def test_unknown_backend_option_is_named():
    with pytest.raises(TypeError, match="unknown option.* nthreads for the 'mujoco' backend; it takes nthread"):
        MujocoModel(cartpole_task(), nthreads=2)
    with pytest.raises(ValueError, match="Invalid nthread"):
        MujocoModel(cartpole_task(), nthread=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "device, words",
    [("meta", ["meta device"]), ("tpu", ["expected a torch.device"]), ("xpu", ["xpu"])],
)
def test_bad_device_is_a_value_error(backend, device, words):
    """Checked before anything is compiled or imported (no warp / JAX start-up here)."""
    with pytest.raises(ValueError) as info:
        MujocoModel(cartpole_task(), backend=backend, device=device)
    for word in words:
        assert word in str(info.value)


MUJOCO_TASKS = ["hopper", "walker2d", "half_cheetah", "ant", "humanoid_standup", "humanoid_run", "push_t", "humanoid_jog"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("task", MUJOCO_TASKS)
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda", 0)])
def test_cuda_without_cuda_is_a_clear_value_error_everywhere(task, backend, device):
    """Like the car: a ValueError naming the device, not torch's AssertionError from deep inside."""
    pytest.importorskip("gymnasium")
    with pytest.raises(ValueError, match=r"Invalid device: 'cuda(:\d)?' was asked for but torch.cuda.is_available\(\) is False"):
        dynamics.make(task, backend=backend, device=device)


UNUSABLE_DEVICES = ["meta", "xpu"] + ([] if torch.cuda.is_available() else ["cuda"])


@pytest.mark.parametrize("device", UNUSABLE_DEVICES)
def test_every_registered_task_rejects_an_unusable_device(device):
    """``dynamics.make`` of every task (car included): a ValueError naming the device, before any model is built."""
    pytest.importorskip("gymnasium")
    for name in dynamics.task_names():
        with pytest.raises(ValueError, match=rf"Invalid device: .*{device}"):
            dynamics.make(name, device=device)


def test_warp_and_mjx_backends_check_their_device_themselves():
    """Built directly (not through MujocoModel), the backends give the same errors."""
    mj_model = cartpole_task().compile()
    for module, cls in (("dynamics.mujoco_warp", "WarpRollout"), ("dynamics.mjx", "MjxRollout")):
        backend = getattr(importlib.import_module(module), cls)
        with pytest.raises(ValueError, match="meta device"):
            backend(mj_model, 4, device="meta")
        with pytest.raises(ValueError, match="Invalid frame_skip"):
            backend(mj_model, 0, device="cpu")
    from dynamics.mujoco_cpu import CpuRollout

    with pytest.raises(ValueError, match="Invalid frame_skip"):
        CpuRollout(mj_model, 2.5)


WARP_QUIET = """
import sys, torch
from dynamics.tasks import Task, import_mujoco
from dynamics.model import MujocoModel
mujoco = import_mujoco()
task = Task("cartpole", lambda: mujoco.MjSpec.from_string(sys.argv[1]), lambda q, v, s, a: q[..., 0], frame_skip=4, horizon=3)
model = MujocoModel(task, backend="warp")
traj = model.rollout(torch.zeros(2, 3, 2))
import warp
print("feasible", bool(traj.feasible.all()), "log_level", warp.config.log_level)
"""


@pytest.mark.slow
def test_warp_prints_no_log_lines():
    """No warp banner and no ``Module ... load on device 'cpu'`` line at import or first call (issue 16)."""
    pytest.importorskip("mujoco_warp")
    done = subprocess.run(
        [sys.executable, "-c", WARP_QUIET, CARTPOLE_XML], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "load on device" not in output and "initialized" not in output, output[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "feasible True log_level 30"  # warp.LOG_WARNING


@pytest.mark.slow
def test_warp_log_level_a_user_chose_is_kept():
    pytest.importorskip("mujoco_warp")
    code = (
        "import warp\nwarp.config.log_level = warp.LOG_DEBUG\n"
        "from dynamics.mujoco_warp import import_warp\nimport_warp()\nprint(warp.config.log_level)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "10"  # warp.LOG_DEBUG


# ----------------------------------------------------------------------------- cross-backend agreement
LONG_H = 40  # control steps of the agreement test: 160 physics steps, 1.6 s of swinging


@pytest.mark.slow
def test_backends_agree_on_a_contact_free_model(cartpoles):
    """CPU, warp and MJX give the same cart-pole trajectories over a long horizon, to float32 precision.

    The pole starts hanging 0.8 rad off the vertical and random pushes keep it swinging: a
    stable, contact-free motion, so the only difference between the backends is float32
    (warp, MJX) against float64 (CPU) round-off, which stays below 1e-5 here.
    """
    models = {backend: cartpole_model(backend, cartpoles) for backend in BACKENDS}
    gen = torch.Generator().manual_seed(1)
    actions = torch.zeros(N, LONG_H, 2)
    actions[..., 0] = 2 * torch.rand(N, LONG_H, generator=gen) - 1
    start = torch.tensor([0.0, np.pi - 0.8, 0.0, 0.0])  # [qpos, qvel]: cart at 0, pole hanging, tilted
    trajectories = {}
    for backend, model in models.items():
        saved = model.initial_state.clone()
        try:
            model.initial_state = start
            trajectories[backend] = model.rollout(actions)
        finally:
            model.initial_state = saved
    reference = trajectories["mujoco"]
    assert bool(reference.feasible.all())
    # the motion is large (the pole swings through more than a radian): agreement is not trivial
    assert float(reference.states[..., 1].amax() - reference.states[..., 1].amin()) > 1.0
    names = list(trajectories)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = trajectories[first], trajectories[second]
            where = f"{first} vs {second}"
            assert bool(b.feasible.all()), where
            for part in ("states", "rewards"):
                label = f"{where}, {part}"
                torch.testing.assert_close(
                    getattr(a, part), getattr(b, part), atol=1e-4, rtol=0, msg=lambda m, label=label: f"{label}: {m}"
                )


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- hopper, all backends
HOPPER_H = 10


@pytest.fixture(scope="module")
def hopper_trajectories():
    """Hopper rollouts of a good and a bad control sequence on every installed backend."""
    good = torch.full((HOPPER_H, 3), 0.5)  # extends the legs: the hopper pushes itself forward and up
    bad = torch.zeros(HOPPER_H, 3)  # falls
    actions = torch.stack([good, bad])
    out = {}
    for backend in BACKENDS:
        if _has(PACKAGES[backend]):
            out[backend] = MujocoModel("hopper", backend=backend, horizon=HOPPER_H).rollout(actions)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "mujoco"])
def test_hopper_backends_agree_and_rank_alike(hopper_trajectories, backend):
    if backend not in hopper_trajectories:
        pytest.skip(f"{PACKAGES[backend]} is not installed")
    cpu, other = hopper_trajectories["mujoco"], hopper_trajectories[backend]
    assert bool(other.feasible.all())
    # contacts make float32 and float64 drift apart slowly: compare the first control steps tightly
    torch.testing.assert_close(other.states[:, :3], cpu.states[:, :3], atol=5e-3, rtol=0)
    torch.testing.assert_close(other.rewards[:, :3], cpu.rewards[:, :3], atol=5e-3, rtol=0)
    torch.testing.assert_close(other.states, cpu.states, atol=0.1, rtol=0)
    # and the planner sees the same ranking: the good sequence clearly ahead on both backends
    cpu_total, other_total = cpu.rewards.sum(-1), other.rewards.sum(-1)
    assert float(cpu_total[0] - cpu_total[1]) > 0.5
    assert float(other_total[0] - other_total[1]) > 0.5
    assert torch.equal(cpu_total.argsort(), other_total.argsort())


# --------------------------------------------------------------------------- no MjData per call (issue 27)
# A model whose full physics state holds more than time, qpos and qvel: an activation (a filtered
# actuator) and a delayed control, whose history buffer a new MjData starts with non-zero entries.
STATEFUL_XML = """
<mujoco model="stateful">
  <worldbody>
    <body name="cart">
      <joint name="slider" type="slide" axis="1 0 0"/>
      <geom type="box" size="0.1 0.05 0.05" mass="1"/>
    </body>
  </worldbody>
  <actuator><general joint="slider" dyntype="filter" dynprm="0.1" gainprm="2" nsample="3" delay="0.004"/></actuator>
</mujoco>
"""


def test_the_initial_physics_state_is_that_of_a_fresh_mjdata_without_building_one():
    from dynamics.mujoco_cpu import CpuRollout

    mj_model = mujoco.MjModel.from_xml_string(STATEFUL_XML)
    backend = CpuRollout(mj_model, frame_skip=2, nthread=1)
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    assert backend.nstate > 1 + mj_model.nq + mj_model.nv  # the parts after qvel are really there
    assert np.abs(backend.initial_physics_state(torch.zeros(1), torch.zeros(1))).max() > 0  # and not all zeros
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        qpos = torch.randn(mj_model.nq, generator=gen, dtype=torch.float64)
        qvel = torch.randn(mj_model.nv, generator=gen, dtype=torch.float64)
        data = mujoco.MjData(mj_model)  # what the backend built at every call before
        data.qpos[:], data.qvel[:] = qpos.numpy(), qvel.numpy()
        expected = np.empty(backend.nstate)
        mujoco.mj_getState(mj_model, data, expected, spec)
        assert np.array_equal(backend.initial_physics_state(qpos, qvel), expected)
        rows = backend.initial_physics_state(qpos, qvel, out=np.zeros((4, backend.nstate)))
        assert rows.shape == (4, backend.nstate) and all(np.array_equal(row, expected) for row in rows)
    # and the rollout from it is plain mj_step from that state, the activation and the history included
    ctrl = torch.full((1, 3, 1), 0.7, dtype=torch.float64)
    qpos_out, qvel_out, _ = backend(qpos, qvel, ctrl)
    for t in range(3):
        data.ctrl[:] = 0.7
        for _ in range(2):
            mujoco.mj_step(mj_model, data)
        assert np.array_equal(qpos_out[0, t].numpy(), data.qpos) and np.array_equal(qvel_out[0, t].numpy(), data.qvel)
    assert data.act[0] != 0  # the filter's activation moved: the state carried it


# A box pressed into the floor with sensors of the acceleration stage (touch, accelerometer), which
# read the constraint solver's forces: the most an MjData computes for a state.
CONTACT_SENSORS_XML = """
<mujoco model="box on the floor">
  <worldbody>
    <geom type="plane" size="2 2 0.1"/>
    <body name="box" pos="0 0 0.1">
      <freejoint name="free"/>
      <geom type="box" size="0.1 0.1 0.1" mass="1"/>
      <site name="bottom" pos="0 0 -0.1" size="0.11 0.11 0.02" type="box"/>
    </body>
  </worldbody>
  <actuator><motor joint="free" gear="1 0 0 0 0 0"/></actuator>
  <sensor><touch site="bottom"/><accelerometer site="bottom"/></sensor>
</mujoco>
"""


def test_the_initial_states_sensors_do_not_depend_on_the_states_set_before():
    def height(qpos, qvel, sensors, action):
        return qpos[..., 2]

    task = Task("box", lambda: mujoco.MjSpec.from_string(CONTACT_SENSORS_XML), height, frame_skip=1, horizon=2)
    model = MujocoModel(task, seed=0)
    gen = torch.Generator().manual_seed(1)
    start = torch.cat([model.qpos0, model.qvel0])
    states = [start + 0.05 * torch.randn(start.shape, generator=gen, dtype=torch.float64) for _ in range(4)]
    for state in states:
        state[2] = 0.095  # sunk into the floor a little: contacts, so the constraint solver works
        state[3:7] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    seen = []
    for state in states + states[::-1]:  # each state after different predecessors
        model.initial_state = state
        seen.append(model.initial_state.clone())
        data = mujoco.MjData(model.mj_model)  # what the setter built at every call before
        data.qpos[:], data.qvel[:] = state[: model.nq].numpy(), state[model.nq :].numpy()
        mujoco.mj_forward(model.mj_model, data)
        expected = torch.cat([state, torch.from_numpy(data.sensordata.copy())]).to(model.dtype)
        assert torch.equal(model.initial_state, expected)
        assert float(model.initial_state[model.nq + model.nv]) > 0  # the touch sensor feels the floor
    assert all(torch.equal(a, b) for a, b in zip(seen, seen[::-1]))


def test_the_cpu_backend_keeps_the_buffers_of_its_latest_shapes():
    from dynamics.mujoco_cpu import BUFFER_SHAPES, CpuRollout

    backend = CpuRollout(mujoco.MjModel.from_xml_string(CARTPOLE_XML), frame_skip=2, nthread=1)
    qpos, qvel = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    ctrl = {n: 0.1 * torch.ones(n, 3, 2, dtype=torch.float64) for n in range(1, BUFFER_SHAPES + 2)}
    first = backend(qpos, qvel, ctrl[1])
    kept = backend._buffers[(1, 3)]
    backend(qpos, qvel, ctrl[2])
    again = backend(qpos, qvel, ctrl[1])  # alternating shapes: the same arrays, the same results
    assert backend._buffers[(1, 3)] is kept and all(torch.equal(a, b) for a, b in zip(first, again))
    for n in range(2, BUFFER_SHAPES + 2):
        backend(qpos, qvel, ctrl[n])
    assert len(backend._buffers) == BUFFER_SHAPES and (1, 3) not in backend._buffers  # the oldest went
