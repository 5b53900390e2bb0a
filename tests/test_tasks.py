"""The paper's MuJoCo task suite, the registry and MujocoModel on the CPU backend."""

from __future__ import annotations

import math

import pytest
import torch

import dynamics
import torch_mbd
from dynamics.model import MujocoModel
from dynamics.tasks import TASKS, get_task, hop_reward, push_t_goal, push_t_reward

TABLE4 = {  # the paper's Table 4: (temperature, "Sample Number" = the authors' diffusion steps)
    "hopper": (0.1, 100),
    "walker2d": (0.1, 100),
    "half_cheetah": (0.4, 100),
    "ant": (0.1, 100),
    "humanoid_standup": (0.1, 100),
    "humanoid_run": (0.1, 300),
    "push_t": (0.2, 200),
}
FRAME_SKIP = {"hopper": 20, "walker2d": 20, "humanoid_standup": 14, "humanoid_run": 14, "push_t": 5}


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
    assert (model.temperature, model.num_steps) == TABLE4[name]  # Table 4: temperature, diffusion steps
    assert model.num_samples == 128  # a CPU default, not Table 4's "Sample Number" (= num_steps)
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
    qpos = torch.tensor([[0.5, 1.2, 0.1], [2.0, -3.0, 0.0]])  # [x, z, pitch]
    got = reward(qpos, None, {}, None)
    torch.testing.assert_close(got, torch.tensor([0.5 - 0.5 * 0.2, 2.0 - 0.5 * 1.0]))


def test_hopper_reward_reads_the_torso():
    """The reward reads the torso from qpos (exact after the step); the torso sensor lags one substep."""
    model = MujocoModel("hopper", horizon=5, dtype=torch.float64)
    traj = model.rollout(torch.full((1, 5, 3), 0.4, dtype=torch.float64))
    qpos, pos = traj.states[..., model.state_slices["qpos"]], traj.states[..., model.state_slices["sensordata"]]
    assert model.sensor_slices == {"torso_pos": slice(0, 3)}
    torch.testing.assert_close(traj.rewards, qpos[..., 0] - 0.5 * (qpos[..., 1] - 1.0).abs().clamp(-1, 1))
    torch.testing.assert_close(pos[..., 0], qpos[..., 0], atol=0.05, rtol=0)
    torch.testing.assert_close(pos[..., 2], qpos[..., 1], atol=0.05, rtol=0)
    assert float((qpos[..., 1] - qpos[0, 0, 1]).abs().max()) > 0.01  # it did move


def test_push_t_goals_are_drawn_per_seed_in_the_authors_box():
    goals = []
    for seed in range(6):
        model = dynamics.make("push_t", seed=seed, horizon=2)
        goal = model.qpos0[5:8]
        assert model.initial_state[5:8].tolist() == pytest.approx(goal.tolist())
        x, y, theta = goal.tolist()
        assert -0.6 <= x <= -0.2 and 0.2 <= y <= 0.6 and 0.75 * math.pi <= theta <= 1.25 * math.pi
        goals.append((x, y, theta))
    assert len(set(goals)) == len(goals)  # every seed its own goal
    assert dynamics.make("push_t", seed=2, horizon=2).qpos0[5:8].tolist() == pytest.approx(list(goals[2]))
    # the pusher and the T start where the authors put them, with no noise
    assert dynamics.make("push_t", seed=4, horizon=2).qpos0[:5].tolist() == pytest.approx([0.1, -0.15, 0, 0, 0])
    # a fixed goal, or one drawn from goal_seed, does not follow the model's seed
    fixed = [dynamics.make("push_t", seed=s, goal=(-0.3, 0.5, 3.0), horizon=2).qpos0[5:8].tolist() for s in (0, 1)]
    assert fixed[0] == fixed[1] == pytest.approx([-0.3, 0.5, 3.0])
    assert push_t_goal(None) == pytest.approx((-0.4, 0.4, math.pi))
    assert push_t_goal(7) == push_t_goal(7) != push_t_goal(8)
    with pytest.raises(ValueError, match="goal or a goal_seed"):
        get_task("push_t", goal=(0, 0, 0), goal_seed=1)


def test_push_t_reward_by_hand():
    # qpos = [pusher xy, T xy, T theta, goal xy, goal theta]
    qpos = torch.tensor(
        [
            [0.1, 0.05, 0.1, 0.0, math.pi / 2, 0.1, 0.0, math.pi / 2],  # T at the goal, pusher touching: 1
            [0.0, -0.5, 0.0, 0.0, 0.0, 0.1, 0.0, math.pi / 2],  # 0.1 m off, turned pi / 2, pusher 0.5 m away
            [0.0, 0.0, 0.0, 0.0, math.pi / 2 + 2 * math.pi, 0.0, 0.0, math.pi / 2],  # a full turn too many
        ],
        dtype=torch.float64,
    )
    got = push_t_reward(qpos, None, {}, None)
    expected = torch.tensor([1.0, 1.0 - (0.1 + 0.5 + (0.5 - 0.2)), 1.0 - 2.0], dtype=torch.float64)
    torch.testing.assert_close(got, expected)  # the angle error is not wrapped (the authors')


def test_push_t_pusher_moves_the_block():
    model = dynamics.make("push_t")
    assert model.mj_model.nq == 8 and model.mj_model.opt.gravity.tolist() == [0, 0, 0]
    actions = torch.zeros(1, model.horizon, 2)
    actions[..., 1] = 1.0  # push +y: the pusher starts below the T
    traj = model.rollout(actions)
    assert float(traj.states[0, -1, 3]) > 0.02  # the T moved up
    goal = model.qpos0[5:8].float().expand(model.horizon, 3)
    torch.testing.assert_close(traj.states[0, :, 5:8], goal)  # the goal stays where it was drawn
    names = {model.mj_model.geom(i).name: i for i in range(model.mj_model.ngeom)}
    assert model.mj_model.geom_size[names["pusher"], 0] == pytest.approx(0.05)
    assert model.mj_model.body_mass[model.mj_model.body("pusher").id] == pytest.approx(1.0)
    assert model.mj_model.geom_size[names["t_bar"]].tolist()[:2] == pytest.approx([0.15, 0.05])
    assert model.mj_model.geom_size[names["t_stem"]].tolist()[:2] == pytest.approx([0.05, 0.15])
    assert model.mj_model.actuator_gear[:, 0].tolist() == [30.0, 30.0]  # +-30 N


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


def test_an_edit_that_returns_something_else_than_a_model_is_a_clear_error():
    """``edit`` changes the model in place (returns None) or returns a mujoco.MjModel; nothing else."""
    with pytest.raises(TypeError, match="edit must change the mujoco.MjModel in place .* it returned int"):
        dynamics.make("hopper", edit=lambda m: 5)
    with pytest.raises(TypeError, match=r"it returned MjSpec \(compile it: return spec.compile\(\)\)"):
        dynamics.make("hopper", edit=lambda m: get_task("hopper").build_spec())
    light = get_task("hopper").compile()
    light.body_mass[:] *= 0.5
    replaced = dynamics.make("hopper", horizon=4, edit=lambda m: light)
    assert replaced.mj_model is light
    torch.testing.assert_close(torch.as_tensor(replaced.backend.model.body_mass), torch.as_tensor(light.body_mass))


def test_numpy_scalars_are_accepted_as_task_numbers():
    import numpy as np

    from dynamics.tasks import Task

    model = MujocoModel("hopper", horizon=np.int64(4), reset_noise=np.float32(0.5), seed=np.uint8(3))
    assert model.horizon == 4 and type(model.horizon) is int
    plain = MujocoModel("hopper", horizon=4, reset_noise=0.5, seed=3)
    torch.testing.assert_close(model.initial_state, plain.initial_state)
    hopper = get_task("hopper")
    task = Task("t", hopper.build_spec, hopper.reward, frame_skip=np.int32(2), horizon=np.int64(3),
                temperature=np.float32(0.25), reward_reads_previous=np.False_)
    assert (task.frame_skip, task.horizon, task.reward_reads_previous) == (2, 3, False)
    assert type(task.frame_skip) is int and type(task.temperature) is float
    with pytest.raises(ValueError, match="Task frame_skip"):
        Task("t", hopper.build_spec, hopper.reward, frame_skip=np.float64(2.0), horizon=3)
    with pytest.raises(ValueError, match="Task reward_reads_previous"):
        Task("t", hopper.build_spec, hopper.reward, frame_skip=2, horizon=3, reward_reads_previous=1)


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
    with pytest.raises(TypeError, match="actions must be a (torch.)?Tensor"):
        hopper.rollout([[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="Invalid horizon"):
        MujocoModel("hopper", horizon=0)
    with pytest.raises(ValueError, match="Invalid horizon"):
        MujocoModel("hopper", horizon=2.0)
    with pytest.raises(TypeError, match="dtype must be a floating"):
        MujocoModel("hopper", dtype=torch.int32)


def test_plan_improves_hopper_over_zero_actions(hopper):
    zero = hopper.rollout(torch.zeros(1, hopper.horizon, hopper.action_dim)).rewards.mean()
    result = torch_mbd.plan(hopper, num_samples=32, num_steps=8, temperature=hopper.temperature, seed=0, progress=False)
    assert bool(result.feasible)
    assert result.reward > float(zero) + 0.3, (result.reward, float(zero))


# ----------------------------------------------------------------------------- the authors' definitions
# timestep, frame_skip, solver iterations, gears (actuator order) and the geoms that touch the floor,
# as in LeCAR-Lab/model-based-diffusion (mbd/envs, mbd/assets) and Brax's half_cheetah / ant
AUTHORS = {
    "hopper": (0.002, 20, 4, [200.0] * 3, {"foot_geom"}),
    "walker2d": (0.002, 20, 4, [100.0] * 6, {"torso_geom", "foot_geom", "foot_left_geom"}),
    "half_cheetah": (
        0.003125, 16, 4, [120.0, 90.0, 60.0, 120.0, 100.0, 100.0], {"head", "bthigh", "bfoot", "fthigh", "ffoot"}
    ),
    "ant": (0.005, 10, 4, [200.0] * 8, {"left_foot_geom", "right_foot_geom", "third_foot_geom", "fourth_foot_geom"}),
    # the humanoids' timestep is half the authors' 0.006 s (dynamics.tasks.HUMANOID_TIMESTEP), same control step
    "humanoid_standup": (
        0.003, 14, 8, [350.0] * 11 + [100.0] * 6,
        {"torso1", "head", "uwaist", "right_thigh1", "left_thigh1", "right_foot", "left_foot",
         "right_larm", "left_larm"},
    ),
    "humanoid_run": (0.003, 14, 8, [350.0] * 11 + [100.0] * 6, {"right_foot", "left_foot"}),
    "humanoid_jog": (0.006, 5, 8, [350.0] * 11 + [100.0] * 6, {"right_foot", "left_foot"}),
}


def collision_pairs(mj_model) -> set[frozenset]:
    """Pairs of geom names MuJoCo's contype / conaffinity filter lets collide (different bodies)."""
    names = [mj_model.geom(i).name for i in range(mj_model.ngeom)]
    pairs = set()
    for i in range(mj_model.ngeom):
        for j in range(i + 1, mj_model.ngeom):
            if mj_model.geom_bodyid[i] == mj_model.geom_bodyid[j]:
                continue
            ti, ai, tj, aj = (int(v) for v in (mj_model.geom_contype[i], mj_model.geom_conaffinity[i],
                                               mj_model.geom_contype[j], mj_model.geom_conaffinity[j]))
            if (ti & aj) or (tj & ai):
                pairs.add(frozenset((names[i], names[j])))
    return pairs


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_model_has_the_authors_physics(name):
    import mujoco

    timestep, frame_skip, iterations, gears, floor_geoms = AUTHORS[name]
    model = dynamics.make(name, horizon=2)
    mj = model.mj_model
    assert mj.opt.timestep == pytest.approx(timestep) and model.frame_skip == frame_skip
    assert mj.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER  # Brax's XMLs drop gymnasium's RK4
    assert mj.opt.iterations == iterations
    assert mj.actuator_gear[:, 0].tolist() == pytest.approx(gears)
    # only the listed geoms touch anything, and only the floor
    assert collision_pairs(mj) == {frozenset(("floor", g)) for g in floor_geoms}
    assert mj.ntendon == 0 and bool((mj.geom_condim == 3).all())


def test_contact_details():
    hopper, walker = dynamics.make("hopper", horizon=2).mj_model, dynamics.make("walker2d", horizon=2).mj_model
    assert hopper.geom("foot_geom").friction[0] == pytest.approx(2.0)
    assert walker.geom("foot_geom").friction[0] == pytest.approx(0.9)
    assert walker.geom("foot_left_geom").friction[0] == pytest.approx(1.9)
    ant = dynamics.make("ant", horizon=2).mj_model
    assert bool((ant.geom_margin == 0).all()) and ant.geom("left_foot_geom").size[0] == pytest.approx(0.08)
    for name in ("humanoid_run", "humanoid_standup"):
        mj = dynamics.make(name, horizon=2).mj_model
        assert mj.actuator_ctrlrange.tolist() == [[-0.4, 0.4]] * 17 and bool((mj.geom_margin == 0).all())
    push = dynamics.make("push_t", horizon=2).mj_model
    assert collision_pairs(push) == {frozenset(("pusher", "t_bar")), frozenset(("pusher", "t_stem"))}
    assert push.opt.timestep == pytest.approx(0.01) and dynamics.make("push_t", horizon=2).frame_skip == 5


def test_initial_poses():
    ant = dynamics.make("ant", reset_noise=0, horizon=2)
    assert ant.qpos0.tolist() == pytest.approx([0, 0, 0.55, 1, 0, 0, 0, 0, 1, 0, -1, 0, -1, 0, 1])
    standup = dynamics.make("humanoid_standup", reset_noise=0, horizon=2)
    assert float(standup.qpos0[2]) == pytest.approx(0.15)  # lying on its back
    run = dynamics.make("humanoid_run", reset_noise=0, horizon=2)
    assert float(run.qpos0[2]) == pytest.approx(1.4)


def test_reset_noise_is_the_authors_and_drawn_per_seed():
    """U(+-scale) on qpos, then U(+-scale) (or scale * N(0, 1) for half-cheetah and ant) on qvel, from the seed."""
    cases = (("hopper", 5e-3, False), ("humanoid_run", 1e-2, False), ("half_cheetah", 0.1, True), ("ant", 0.1, True))
    for name, scale, normal in cases:
        nominal = dynamics.make(name, reset_noise=0, horizon=2)
        noisy = dynamics.make(name, seed=3, horizon=2)  # reset_noise=1 (the task's own) is the default
        gen = torch.Generator().manual_seed(3)
        dq = scale * (2 * torch.rand(nominal.nq, generator=gen, dtype=torch.float64) - 1)
        draw = torch.randn if normal else (lambda n, **kw: 2 * torch.rand(n, **kw) - 1)
        dv = scale * draw(nominal.nv, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(noisy.qpos0, nominal.qpos0 + dq)
        torch.testing.assert_close(noisy.qvel0, dv)
        assert not torch.equal(noisy.qpos0, dynamics.make(name, seed=4, horizon=2).qpos0)
    jog = dynamics.make("humanoid_jog", seed=3, horizon=2)
    assert float(jog.qvel0.abs().max()) == 0.0  # no reset noise there


def test_rewards_by_hand():
    nq = 9
    qpos, prev = torch.zeros(2, nq, dtype=torch.float64), torch.zeros(2, nq, dtype=torch.float64)
    qpos[:, 0], prev[:, 0] = torch.tensor([0.30, -0.1]), torch.tensor([0.20, 0.0])
    action = torch.tensor([[0.5, 0, 0, 0, 0, -1.0], [0, 0, 0, 0, 0, 0]], dtype=torch.float64)
    dx_dt = torch.tensor([0.1 / 0.05, -0.1 / 0.05], dtype=torch.float64)
    cheetah = get_task("half_cheetah")
    got = cheetah.step_reward(qpos, None, {}, action, prev, torch.zeros(2, 9))
    torch.testing.assert_close(got, dx_dt - 0.1 * torch.tensor([1.25, 0.0], dtype=torch.float64))
    ant = get_task("ant")
    got = ant.step_reward(qpos, None, {}, action, prev, torch.zeros(2, 9))
    torch.testing.assert_close(got, dx_dt + 1.0 - 0.5 * torch.tensor([1.25, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="previous_qpos"):
        ant.step_reward(qpos, None, {}, action)
    free = torch.zeros(2, 24, dtype=torch.float64)
    free[:, :3] = torch.tensor([[0.5, -0.2, 1.0], [-2.0, 1.0, 4.0]])
    standup = get_task("humanoid_standup").step_reward(free, None, {}, None)
    expected = torch.tensor([1.5 - 0.3 - 0.05 - 0.02, 1.5 - 1.0 - 0.2 - 0.1], dtype=torch.float64)
    torch.testing.assert_close(standup, expected)
    run = get_task("humanoid_run").step_reward(free, None, {}, None)
    torch.testing.assert_close(run, torch.tensor([0.5 - 0.3 - 0.02, -2.0 - 1.0 - 0.1], dtype=torch.float64))


@pytest.mark.parametrize("name", ["half_cheetah", "ant", "humanoid_jog"])
def test_rollout_rewards_read_the_state_before_and_after_each_step(name):
    """The model hands the reward the state at the start of every step: the initial state, then the last one."""
    model = dynamics.make(name, horizon=4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    actions = 2 * torch.rand(2, 4, model.action_dim, generator=gen, dtype=torch.float64) - 1
    traj = model.rollout(actions)
    qpos, qvel = traj.states[..., model.state_slices["qpos"]], traj.states[..., model.state_slices["qvel"]]
    prev_qpos = torch.cat([model.qpos0.expand(2, 1, -1), qpos[:, :-1]], dim=1)
    prev_qvel = torch.cat([model.qvel0.expand(2, 1, -1), qvel[:, :-1]], dim=1)
    if name == "humanoid_jog":  # 1 - |vx - 1.6| - |z - 1.3| - 0.1 |y| before the step
        vx, y, z = prev_qvel[..., 0], prev_qpos[..., 1], prev_qpos[..., 2]
        expected = 1 - (vx - 1.6).abs() - (z - 1.3).abs() - 0.1 * y.abs()
    else:
        ctrl_weight, alive = (0.1, 0.0) if name == "half_cheetah" else (0.5, 1.0)
        expected = (qpos[..., 0] - prev_qpos[..., 0]) / 0.05 + alive - ctrl_weight * actions.square().sum(-1)
    torch.testing.assert_close(traj.rewards, expected)


def test_actions_are_clipped_to_the_ctrlrange_not_scaled():
    run = dynamics.make("humanoid_run", horizon=3, dtype=torch.float64)
    a = torch.linspace(-1.5, 1.5, 17, dtype=torch.float64)
    torch.testing.assert_close(run.controls(a), a.clamp(-0.4, 0.4))
    hopper = dynamics.make("hopper", horizon=3, dtype=torch.float64)
    torch.testing.assert_close(hopper.controls(torch.tensor([-3.0, 0.3, 0.9], dtype=torch.float64)),
                               torch.tensor([-1.0, 0.3, 0.9], dtype=torch.float64))
    # beyond 0.4 the humanoid's motors saturate: a = 1 and a = 0.4 simulate the same
    full, limit = torch.ones(1, 3, 17, dtype=torch.float64), torch.full((1, 3, 17), 0.4, dtype=torch.float64)
    torch.testing.assert_close(run.rollout(full).states, run.rollout(limit).states)
    assert not torch.allclose(hopper.rollout(torch.ones(1, 3, 3, dtype=torch.float64)).states,
                              hopper.rollout(torch.full((1, 3, 3), 0.4, dtype=torch.float64)).states)


def test_table4_diffusion_steps():
    """Table 4's "Sample Number" column is the authors' number of diffusion steps; their n is 2048 (8192)."""
    steps = {name: get_task(name).num_steps for name in TASKS}
    assert steps == {n: {"push_t": 200, "humanoid_run": 300}.get(n, 100) for n in TASKS}
    assert {name: get_task(name).paper_num_samples for name in TASKS} == {
        n: 8192 if n == "humanoid_run" else 2048 for n in TASKS
    }


def test_task_arguments_are_checked():
    hopper = get_task("hopper")
    kwargs = dict(name="t", build_spec=hopper.build_spec, reward=hopper.reward, frame_skip=2, horizon=3)
    from dynamics.tasks import Task

    with pytest.raises(ValueError, match="velocity_noise"):
        Task(**kwargs, velocity_noise="gaussian")
    with pytest.raises(ValueError, match="reset_noise_scale"):
        Task(**kwargs, reset_noise_scale=-1.0)
    with pytest.raises(ValueError, match="num_steps"):
        Task(**kwargs, num_steps=0)
    with pytest.raises(ValueError, match=r"init_qpos must have 6 \(nq\) entries"):
        MujocoModel(Task(**kwargs, init_qpos=(0.0, 1.25)))
    with pytest.raises(ValueError, match="noise"):
        MujocoModel("hopper", reset_noise=-0.5)
    with pytest.raises(ValueError, match="goal must be three finite numbers"):
        get_task("push_t", goal=(0.0, float("nan"), 1.0))
