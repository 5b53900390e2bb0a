"""The three MuJoCo backends (CPU ``mujoco.rollout``, MuJoCo Warp, MJX) against plain ``mj_step``.

Warp and MJX compile for tens of seconds on a CPU the first time (warp caches its kernels on
disk, MJX jits once per model and shape), so each model is built once per module and every
test uses the same action shape. The fast tests run the CPU backend; the same tests on warp
and MJX are marked slow (CI still runs them).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynamics.model import MujocoModel
from dynamics.tasks import Task, import_mujoco

mujoco = import_mujoco()

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


BACKENDS = [
    "mujoco",
    pytest.param("warp", marks=pytest.mark.slow),
    pytest.param("mjx", marks=pytest.mark.slow),
]
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


@pytest.fixture(params=BACKENDS)
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


def test_nan_action_is_infeasible(cartpole):
    actions = cartpole_actions()
    clean = cartpole.rollout(actions)
    actions[2, 5, 0] = float("nan")
    traj = cartpole.rollout(actions)
    assert traj.feasible.tolist() == [True, True, False]
    assert bool(torch.isfinite(traj.rewards).all())
    assert torch.equal(traj.states[:2], clean.states[:2])


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


@pytest.mark.parametrize("backend", ["warp", "mjx"])
def test_bad_device_is_a_value_error(backend):
    pytest.importorskip(PACKAGES[backend])
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda"):
        MujocoModel(cartpole_task(), backend=backend, device="meta")


# ----------------------------------------------------------------------------- cross-backend agreement
LONG_H = 40  # control steps of the agreement test: 160 physics steps, 1.6 s of swinging


@pytest.mark.slow
def test_backends_agree_on_a_contact_free_model(cartpoles):
    """CPU, warp and MJX give the same cart-pole trajectories over a long horizon, to float32 precision.

    The pole starts hanging 0.8 rad off the vertical and random pushes keep it swinging: a
    stable, contact-free motion, so the only difference between the backends is float32
    (warp, MJX) against float64 (CPU) round-off, which stays below 1e-5 here.
    """
    models = {backend: cartpole_model(backend, cartpoles) for backend in ("mujoco", "warp", "mjx")}
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
    for backend in ("mujoco", "warp", "mjx"):
        if _has(PACKAGES[backend]):
            out[backend] = MujocoModel("hopper", backend=backend, horizon=HOPPER_H).rollout(actions)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["warp", "mjx"])
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
