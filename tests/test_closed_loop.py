"""dynamics.closed_loop: the simulated system, the coarse planner task, pushes and ``torch-mbd mpc``."""

import pytest
import torch

pytest.importorskip("mujoco")

from dynamics.closed_loop import MujocoSystem, coarse_task, push_schedule  # noqa: E402
from dynamics.model import MujocoModel  # noqa: E402
from dynamics.tasks import get_task  # noqa: E402
from torch_mbd import cli  # noqa: E402

FAST = ["--steps", "3", "--samples", "4", "--horizon", "4"]


def test_the_system_steps_like_the_planner_model_rolls_out():
    model = MujocoModel("hopper", seed=1, dtype=torch.float64)
    system = MujocoSystem(model)
    actions = torch.rand(5, model.action_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    rewards = torch.tensor([system.step(a) for a in actions], dtype=torch.float64)
    traj = model.rollout(actions[None])
    assert torch.allclose(rewards, traj.rewards[0], atol=1e-9)
    assert torch.allclose(system.state(), traj.states[0, -1, : model.nq + model.nv], atol=1e-9)
    assert system.control_dt == pytest.approx(0.04)


def test_a_pushed_system_moves_differently():
    model = MujocoModel("hopper", seed=1)
    pushed, still = MujocoSystem(model), MujocoSystem(model)
    pushed.push(torch.tensor([1.0, 0.0, 0.0]), [0, 1, 2])
    assert pushed.state()[model.nq] == pytest.approx(float(still.state()[model.nq]) + 1.0)


def test_coarse_task_keeps_the_control_step_and_halves_the_physics_steps():
    fine = get_task("hopper")
    coarse = coarse_task(fine, 2)
    assert coarse.frame_skip * 2 == fine.frame_skip
    assert coarse.control_dt == pytest.approx(fine.control_dt)
    assert coarse.compile().opt.timestep == pytest.approx(2 * fine.compile().opt.timestep)
    assert fine.compile().opt.timestep == pytest.approx(0.002)  # the task itself is untouched
    assert coarse_task(fine, 1) is fine
    planner = MujocoModel(coarse, seed=0)
    system = MujocoSystem(planner, task=fine)  # the system simulates the fine task
    assert system.frame_skip == fine.frame_skip and system.control_dt == pytest.approx(planner_dt(planner))
    with pytest.raises(ValueError, match="divide"):
        coarse_task(fine, 3)
    with pytest.raises(ValueError, match="factor"):
        coarse_task(fine, 0)


def planner_dt(model):
    return float(model.mj_model.opt.timestep) * model.frame_skip


def test_push_schedule_is_seeded_and_spaced():
    pushes = push_schedule("hopper", 50, 10, seed=3)
    assert sorted(pushes) == [5, 15, 25, 35, 45]
    again = push_schedule("hopper", 50, 10, seed=3)
    assert all(torch.equal(pushes[t][0], again[t][0]) for t in pushes)
    assert push_schedule("hopper", 50, 0, seed=3) == {}
    with pytest.raises(ValueError, match="pushes are defined"):
        push_schedule("push_t", 50, 10, seed=0)


def test_the_mpc_command_prints_the_real_time_figures(capsys):
    assert cli.main(["mpc", "hopper", *FAST, "--mode", "sync", "--speed", "50"]) == 0
    out = capsys.readouterr().out
    assert "real-time factor" in out and "planner iterations per control step" in out
    assert "closed-loop reward" in out and "sync MPC" in out
    assert cli.main(["mpc", "hopper", *FAST, "--push-every", "2", "--knots", "2", "--coarse", "1"]) == 0
    assert "async MPC" in capsys.readouterr().out
    assert cli.main(["mpc", "hopper", *FAST, "--mode", "sync", "--unpaced"]) == 0
    assert "real-time factor" in capsys.readouterr().out
    assert cli.main(["mpc", "hopper", *FAST, "--mode", "simulated", "--plans-per-step", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "simulated clock" in out and "planner iterations per control step 1.00" in out  # 3 plans end by step 2


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torch-mbd: error: "), lines
    return lines[0]


def test_the_viewer_without_a_display_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert cli.main(["mpc", "hopper", *FAST, "--viewer"]) == 2
    assert "no display" in one_line_error(capsys)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["mpc", "car2d"], "MuJoCo tasks"),
        (["mpc", "hopper", "--coarse", "3"], "divide"),
        (["mpc", "hopper", "--push-every", "-1"], "push-every"),
        (["mpc", "hopper", "--unpaced"], "--unpaced goes with --mode sync"),
        (["mpc", "hopper", "--plans-per-step", "2"], "--plans-per-step goes with --mode simulated"),
    ],
)
def test_the_mpc_command_refuses_bad_input_in_one_line(argv, match, capsys):
    assert cli.main(argv) == 2
    assert match in one_line_error(capsys)


class FakeViewer:
    """Stands for MuJoCo's passive viewer: counts the syncs, under its lock."""

    def __init__(self, model, data):
        self.model, self.data, self.syncs, self.locked, self.closed = model, data, 0, False, False

    def lock(self):
        import contextlib

        @contextlib.contextmanager
        def held():
            self.locked = True
            yield
            self.locked = False

        return held()

    def sync(self):
        assert self.locked
        self.syncs += 1

    def close(self):
        self.closed = True


def test_the_viewer_shows_the_system_after_every_control_step(monkeypatch, capsys):
    import mujoco.viewer

    opened = []

    def launch_passive(model, data):
        opened.append(FakeViewer(model, data))
        return opened[-1]

    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(mujoco.viewer, "launch_passive", launch_passive)
    assert cli.main(["mpc", "hopper", *FAST, "--viewer", "--speed", "20"]) == 0
    (viewer,) = opened
    assert viewer.syncs == 3 and viewer.closed and viewer.data.time > 0  # the system's own data, stepped


def test_a_viewer_that_cannot_open_is_one_clear_line(monkeypatch, capsys):
    import mujoco.viewer

    def launch_passive(model, data):
        raise RuntimeError("`launch_passive` requires that the Python script be run under `mjpython` on macOS")

    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(mujoco.viewer, "launch_passive", launch_passive)
    assert cli.main(["mpc", "hopper", *FAST, "--viewer"]) == 2
    assert "viewer could not open" in one_line_error(capsys)
