"""The paper's MuJoCo task suite, the registry and MujocoModel on the CPU backend."""

from __future__ import annotations

import math

import pytest
import torch

import dynamics
import torch_mbd
from dynamics.model import MujocoModel
from dynamics.tasks import TASKS, get_task, hop_reward, push_t_goal, push_t_reward

TABLE4 = {  # the paper's Table 4: (temperature, num_samples)
    "hopper": (0.1, 100),
    "walker2d": (0.1, 100),
    "half_cheetah": (0.4, 100),
    "ant": (0.1, 100),
    "humanoid_standup": (0.1, 100),
    "humanoid_run": (0.1, 300),
    "push_t": (0.2, 200),
}
FRAME_SKIP = {"hopper": 20, "walker2d": 20, "humanoid_standup": 7, "humanoid_run": 7, "push_t": 5}


@pytest.fixture(scope="module")
def hopper():
    return dynamics.make("hopper")


def test_every_task_is_registered():
    assert set(TASKS) <= set(dynamics.task_names())
    assert "car2d" in dynamics.task_names()


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_builds_and_rolls_out(name):
    model = dynamics.make(name, backend="mujoco", horizon=4)
    assert isinstance(model, MujocoModel) and model.backend_name == "mujoco"
    assert (model.temperature, model.num_samples) == TABLE4[name]
    if name in FRAME_SKIP:
        assert model.frame_skip == FRAME_SKIP[name]
    assert model.initial_state.shape == (model.state_dim,)
    lower, upper = model.action_bounds
    assert lower.shape == upper.shape == (model.action_dim,)
    actions = torch.zeros(2, 4, model.action_dim)
    actions[1] = 0.3
    traj = model.rollout(actions)
    assert traj.states.shape == (2, 4, model.state_dim) and traj.rewards.shape == (2, 4)
    assert bool(traj.feasible.all()) and bool(torch.isfinite(traj.rewards).all())
    assert not torch.equal(traj.states[0], traj.states[1])  # the actions act


def test_make_bad_backend_and_task():
    with pytest.raises(ValueError, match="backend must be one of"):
        dynamics.make("hopper", backend="cuda")
    with pytest.raises(ValueError, match="unknown task 'hoper'"):
        dynamics.make("hoper")
    with pytest.raises(ValueError, match="unknown MuJoCo task"):
        get_task("hoper")


def test_hop_reward_by_hand():
    reward = hop_reward(1.0)
    pos = torch.tensor([[0.5, 0.0, 1.2], [2.0, 0.0, -3.0]])
    got = reward(None, None, {"torso_pos": pos}, None)
    torch.testing.assert_close(got, torch.tensor([0.5 - 0.5 * 0.2, 2.0 - 0.5 * 1.0]))


def test_hopper_reward_reads_the_torso():
    """The torso sensor follows the root joints: x_torso = rootx, z_torso = rootz (its ref is 1.25)."""
    model = MujocoModel("hopper", horizon=5, dtype=torch.float64)
    traj = model.rollout(torch.full((1, 5, 3), 0.4, dtype=torch.float64))
    qpos, pos = traj.states[..., model.state_slices["qpos"]], traj.states[..., model.state_slices["sensordata"]]
    assert model.sensor_slices == {"torso_pos": slice(0, 3)}
    # sensors lag the state by one physics substep (see dynamics.tasks): compare loosely
    torch.testing.assert_close(pos[..., 0], qpos[..., 0], atol=0.05, rtol=0)
    torch.testing.assert_close(pos[..., 2], qpos[..., 1], atol=0.05, rtol=0)
    assert float((qpos[..., 1] - qpos[0, 0, 1]).abs().max()) > 0.01  # it did move


def test_push_t_goal_geometry():
    for seed in (None, 0, 1, 2, 3):
        (x, y), theta = push_t_goal(seed)
        assert math.isclose(math.hypot(x, y), 0.2, rel_tol=1e-12)
        assert 0.75 * math.pi <= abs(theta) <= math.pi


def test_push_t_reward_by_hand():
    reward = push_t_reward((0.1, 0.0), math.pi / 2)
    # block at the goal, pusher touching it: reward 1; then 0.1 m off and turned by pi / 2
    qpos = torch.tensor([[0.1, 0.05, 0.1, 0.0, math.pi / 2], [0.0, -0.5, 0.0, 0.0, 0.0]], dtype=torch.float64)
    got = reward(qpos, None, {}, None)
    expected = torch.tensor([1.0, 1.0 - (0.1 + 0.5 + (0.5 - 0.2))], dtype=torch.float64)
    torch.testing.assert_close(got, expected)
    # a full turn is no error
    qpos[0, 4] = math.pi / 2 + 2 * math.pi
    assert math.isclose(float(reward(qpos, None, {}, None)[0]), 1.0, abs_tol=1e-9)


def test_push_t_pusher_moves_the_block():
    model = dynamics.make("push_t")
    actions = torch.zeros(1, model.horizon, 2)
    actions[..., 1] = 1.0  # push +y: the pusher starts below the T
    traj = model.rollout(actions)
    block_y = traj.states[0, -1, 3]
    assert float(block_y) > 0.02
    assert model.mj_model.nq == 5 and "goal" in [model.mj_model.body(i).name for i in range(model.mj_model.nbody)]


def test_initial_state_setter_continues_a_rollout():
    """Restarting from the state after k steps reproduces the rest of the trajectory (receding horizon)."""
    model = MujocoModel("hopper", horizon=8, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    actions = 2 * torch.rand(1, 8, 3, generator=gen, dtype=torch.float64) - 1
    full = model.rollout(actions)
    model.initial_state = full.states[0, 2]  # [state_dim]
    rest = model.rollout(actions[:, 3:])
    torch.testing.assert_close(rest.states, full.states[:, 3:], atol=1e-6, rtol=0)
    # [nq + nv] works too, and the sensor part is recomputed
    model.initial_state = full.states[0, 2, : model.nq + model.nv]
    assert model.initial_state.shape == (model.state_dim,)
    torch.testing.assert_close(model.initial_state[: model.nq + model.nv], full.states[0, 2, : model.nq + model.nv])
    with pytest.raises(ValueError, match=r"initial_state must have shape \[15\]"):
        model.initial_state = torch.zeros(4)
    with pytest.raises(ValueError, match="finite"):
        model.initial_state = torch.full((model.state_dim,), float("nan"))


def test_edit_hook_changes_the_simulated_model():
    seen = []

    def double_mass(mj_model):
        seen.append(mj_model.nbody)
        mj_model.body_mass[:] *= 2.0

    plain, heavy = MujocoModel("hopper", horizon=6), MujocoModel("hopper", horizon=6, edit=double_mass)
    assert seen == [plain.mj_model.nbody]
    torch.testing.assert_close(torch.as_tensor(heavy.mj_model.body_mass), 2 * torch.as_tensor(plain.mj_model.body_mass))
    actions = torch.full((1, 6, 3), 0.5)
    assert not torch.allclose(plain.rollout(actions).states, heavy.rollout(actions).states, atol=1e-3)
    with pytest.raises(TypeError, match="edit must be a callable"):
        MujocoModel("hopper", edit="double")


def test_diverging_hopper_samples_are_infeasible():
    """Absurd actuator gears blow the driven samples up; the others and the batch stay clean."""

    def absurd_gear(mj_model):
        mj_model.actuator_gear[:, 0] *= 1e12

    model = MujocoModel("hopper", horizon=6, edit=absurd_gear)
    actions = torch.zeros(4, 6, 3)
    actions[1], actions[2] = 1.0, -1.0
    traj = model.rollout(actions)
    assert traj.feasible.tolist() == [True, False, False, True]
    assert bool(torch.isfinite(traj.states).all()) and bool(torch.isfinite(traj.rewards).all())
    torch.testing.assert_close(traj.states[0], traj.states[3])


def test_bad_arguments(hopper):
    with pytest.raises(ValueError, match=r"\[\.\.\., n, H, 3\]"):
        hopper.rollout(torch.zeros(2, 5, 4))
    with pytest.raises(TypeError, match="actions must be a tensor"):
        hopper.rollout([[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="horizon must be an integer"):
        MujocoModel("hopper", horizon=0)
    with pytest.raises(TypeError, match="dtype must be a floating"):
        MujocoModel("hopper", dtype=torch.int32)


def test_plan_improves_hopper_over_zero_actions(hopper):
    zero = hopper.rollout(torch.zeros(1, hopper.horizon, hopper.action_dim)).rewards.mean()
    result = torch_mbd.plan(hopper, num_samples=32, num_steps=8, temperature=hopper.temperature, seed=0, progress=False)
    assert bool(result.feasible)
    assert result.reward > float(zero) + 0.3, (result.reward, float(zero))
