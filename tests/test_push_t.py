"""Push-T's model: what ``dynamics.make("push_t")`` builds, and the figure of a plan it draws."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import dynamics  # noqa: E402
from dynamics.model import MujocoModel  # noqa: E402
from dynamics.push_t import PushT  # noqa: E402
from dynamics.render import planar_poses  # noqa: E402
from dynamics.tasks import push_t_goal  # noqa: E402

H = 6


@pytest.fixture(scope="module")
def model():
    return dynamics.make("push_t", horizon=H)


@pytest.fixture(scope="module")
def states(model):
    """A short plan's states: the pusher driven towards the T, so that the T moves."""
    actions = torch.zeros(1, H, model.action_dim)
    actions[..., 1] = 1.0
    return model.rollout(actions).states[0]


def test_make_builds_push_t_with_its_goal_options():
    fixed = dynamics.make("push_t", goal=(0.1, 0.2, 0.3), horizon=H)
    assert isinstance(fixed, PushT) and isinstance(fixed, MujocoModel)
    assert fixed.task.name == "push_t" and fixed.horizon == H
    assert fixed.qpos0[5:8].tolist() == pytest.approx([0.1, 0.2, 0.3])
    seeded = PushT(goal_seed=3, seed=9)
    assert seeded.qpos0[5:8].tolist() == pytest.approx(list(push_t_goal(3)))
    # without a fixed goal, the model seed draws it (the authors' reset key)
    assert PushT(seed=1).qpos0[5:8].tolist() != PushT(seed=2).qpos0[5:8].tolist()
    with pytest.raises(ValueError, match="not both"):
        PushT(goal=(0.0, 0.0, 0.0), goal_seed=1)
    with pytest.raises(ValueError, match="three finite numbers"):
        PushT(goal=(0.0, math.nan, 0.0))
    assert dynamics.task_info("push_t").backends == ("mujoco", "warp", "mjx")


def test_figure_draws_the_t_over_time_and_the_goal(model, states):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    fig = plt.figure()
    ax, ax_dist, ax_angle = model.draw_plan(fig, states, poses=4)
    assert fig.axes == [ax, ax_dist, ax_angle]
    mj = model.mj_model
    block_geoms = sum(mj.body(int(mj.geom_bodyid[g])).name == "block" for g in range(mj.ngeom))
    goal_geoms = sum(mj.body(int(mj.geom_bodyid[g])).name == "goal" for g in range(mj.ngeom))
    polygons = [p for p in ax.patches if isinstance(p, Polygon)]
    assert len(polygons) == goal_geoms + 4 * block_geoms  # the goal once, the T at 4 times
    # the time axis: the start and one point per control step
    times = ax_dist.get_lines()[0].get_xdata()
    assert len(times) == H + 1 and times[-1] == pytest.approx(H * float(mj.opt.timestep) * model.frame_skip)
    # the distance panel starts at the start pose's distance to the goal and ends at the plan's (cm)
    qpos0 = model.qpos0.numpy()[None]
    start, goal = planar_poses(mj, qpos0, "block")[0], planar_poses(mj, qpos0, "goal")[0]
    distance = ax_dist.get_lines()[0].get_ydata()
    assert distance[0] == pytest.approx(100 * np.hypot(*(start[:2] - goal[:2])))
    end = planar_poses(mj, states[-1:, : model.nq].double().numpy(), "block")[0]
    assert distance[-1] == pytest.approx(100 * np.hypot(*(end[:2] - goal[:2])))
    assert distance[-1] != pytest.approx(distance[0])  # the pusher moved the T
    assert ax_dist.get_ylabel().endswith("(cm)") and ax_angle.get_ylabel().startswith("T's angle")
    plt.close(fig)


def test_figure_refuses_what_is_not_a_plan(model, states):
    import matplotlib.pyplot as plt

    fig = plt.figure()
    with pytest.raises(ValueError, match=r"states must be a tensor \[H, \d+\]"):
        model.draw_plan(fig, states[None])
    with pytest.raises(ValueError, match="states must be a tensor"):
        model.draw_plan(fig, states.numpy())
    with pytest.raises(ValueError, match="poses must be an integer >= 1"):
        model.draw_plan(fig, states, poses=0)
    plt.close(fig)
