"""Push-T as a rollout model that draws its own figure of a plan.

:class:`PushT` is the push-T task (:func:`dynamics.tasks.push_t`: a pusher disk pushes a T to
a goal pose) on one simulator backend: a :class:`~dynamics.model.MujocoModel` with one addition,
:meth:`PushT.draw_plan`, the top-down picture of a plan. A figure of a plan is the task's to
draw, as the car draws its map (:meth:`dynamics.car.Car2D.draw`): the ``torch-mbd`` command asks
the model for it and holds no task's drawing code.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .model import MujocoModel
from .render import planar_outlines, planar_poses
from .tasks import push_t


class PushT(MujocoModel):
    """Push-T on one backend; ``dynamics.make("push_t", ...)`` builds it.

    Args:
        backend: ``"mujoco"``, ``"warp"`` or ``"mjx"`` (see :class:`~dynamics.model.MujocoModel`).
        device: where the tensors (for warp and MJX also the simulation) live.
        goal: a fixed goal ``(x, y, theta)``.
        goal_seed: a fixed goal drawn from this seed (:func:`dynamics.tasks.push_t_goal`).
        **options: any other :class:`~dynamics.model.MujocoModel` option (``horizon``, ``seed``,
            ``dtype``, ...). Without ``goal`` and ``goal_seed`` the goal is drawn per model ``seed``.

    Raises:
        ValueError: both ``goal`` and ``goal_seed``, a goal that is not three finite numbers, or a
            bad :class:`~dynamics.model.MujocoModel` option.
    """

    def __init__(
        self,
        backend: str = "mujoco",
        device: str | torch.device = "cpu",
        goal: tuple[float, float, float] | None = None,
        goal_seed: int | None = None,
        **options,
    ):
        super().__init__(push_t(goal=goal, goal_seed=goal_seed), backend=backend, device=device, **options)

    def draw_plan(self, fig, states: Tensor, poses: int = 5) -> tuple:
        """Draw a plan on a matplotlib ``Figure``: the T over time and the goal; its pose errors.

        The left panel is a top view: the goal pose, the T at ``poses`` times (evenly spaced,
        start and end included, darker later), the T's path and the pusher's. The right panels
        are the T's distance (cm) and angle (degrees, 0-180) to the goal against time.

        Args:
            fig: an empty matplotlib ``Figure`` (about 10 x 6.5 inches fits).
            states: ``[H, state_dim]`` the plan's states (e.g. ``PlanResult.states``).
            poses: how many times to draw the T at, ``>= 1``.

        Returns:
            The three ``Axes``: top view, distance, angle.

        Raises:
            ValueError: ``states`` not ``[H, state_dim]``, or ``poses < 1``.
        """
        import matplotlib.pyplot as plt
        from matplotlib.patches import Polygon

        if not isinstance(states, Tensor) or states.dim() != 2 or states.shape[-1] != self.state_dim:
            shape = tuple(states.shape) if isinstance(states, Tensor) else type(states).__name__
            raise ValueError(f"states must be a tensor [H, {self.state_dim}] ([H, state_dim]), got {shape}")
        if isinstance(poses, bool) or not isinstance(poses, int) or poses < 1:
            raise ValueError(f"poses must be an integer >= 1, got {poses!r}")
        grid = fig.add_gridspec(2, 2, width_ratios=[1.3, 1])
        ax = fig.add_subplot(grid[:, 0])
        ax_dist, ax_angle = fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])
        mj_model = self.mj_model
        plan_qpos = states[:, : self.nq].detach().cpu().double().numpy()
        qpos = np.concatenate([self.qpos0.numpy()[None], plan_qpos])  # [H + 1, nq], the start first
        times = float(mj_model.opt.timestep) * self.frame_skip * np.arange(len(qpos))
        picks = np.unique(np.linspace(0, len(qpos) - 1, min(poses, len(qpos))).round().astype(int))
        colors = plt.get_cmap("copper_r")(np.linspace(0.25, 1.0, len(picks)))
        for outline in planar_outlines(mj_model, qpos[:1], "goal"):
            ax.add_patch(
                Polygon(outline[0], closed=True, facecolor="tab:green", alpha=0.35, edgecolor="tab:green", lw=1.5)
            )
        ax.plot([], [], "s", color="tab:green", alpha=0.5, label="goal pose")
        block = planar_outlines(mj_model, qpos, "block")
        for color, t in zip(colors, picks):
            for outline in block:
                ax.add_patch(Polygon(outline[t], closed=True, facecolor=(*color[:3], 0.3), edgecolor=color, lw=1.5))
            ax.plot([], [], "s", color=color, label=f"T at t = {times[t]:.2f} s")
        block_poses = planar_poses(mj_model, qpos, "block")
        ax.plot(block_poses[:, 0], block_poses[:, 1], ":", color="black", lw=1, label="T's path")
        pusher = planar_poses(mj_model, qpos, "pusher")
        ax.plot(pusher[:, 0], pusher[:, 1], "-", color="tab:blue", lw=1, label="pusher's path")
        ax.scatter(pusher[picks, 0], pusher[picks, 1], c=colors, edgecolors="tab:blue", s=22, zorder=5)
        ax.set_aspect("equal")
        ax.autoscale_view()
        ax.margins(0.15)
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
        ax.set_title("top view: the T over time, and the goal", fontsize=9)
        # below the drawing, where it covers nothing
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=7, frameon=False)
        goal = planar_poses(mj_model, qpos[:1], "goal")[0]
        distance = np.linalg.norm(block_poses[:, :2] - goal[:2], axis=-1)
        angle = np.abs(np.angle(np.exp(1j * (block_poses[:, 2] - goal[2]))))
        ax_dist.plot(times, 100 * distance, "-o", color="tab:red", markersize=2.5)
        ax_dist.set_ylabel("T's distance to the goal (cm)")
        ax_dist.set_title("pose error over the plan", fontsize=9)
        ax_angle.plot(times, np.degrees(angle), "-o", color="tab:purple", markersize=2.5)
        ax_angle.set_ylabel("T's angle to the goal (deg, 0-180)")
        for a in (ax_dist, ax_angle):
            a.set_xlabel("time (s)")
            a.set_ylim(bottom=0)
            a.grid(alpha=0.3)
        return ax, ax_dist, ax_angle


__all__ = ["PushT"]
