"""The paper's bicycle car in a U-maze (A.4.1 item 8, section 5.2), as batched torch.

State ``[x, y, theta, v, delta]`` (position, heading, speed, steering angle), action
``[a, delta_rate]`` in ``[-1, 1]`` scaled to ``[-max_accel, max_accel]`` and
``[-max_steer_rate, max_steer_rate]``. Dynamics::

    d/dt [x, y, theta, v, delta] = [v cos(theta), v sin(theta), v / L * tan(delta), a, delta_rate]

integrated with one RK4 step per control (``dt = 0.1``); after each step the speed and
the steering angle are clipped to their limits (actuator saturation).

The map holds a U-shaped obstacle made of axis-aligned boxes, its open side facing the
start, with the goal behind its closed side: driving straight at the goal leads into the
cup (the local optimum of the distance reward), and a path to the goal must go round an
arm. A rollout whose path (each segment between consecutive states, the first from the
initial state) touches a box is infeasible (``p_g = 0`` in the paper).

Everything is batched over any leading dimensions, on any device, without a Python loop
over samples (the loop over the ``H`` time steps is the integrator's).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from torch_mbd.checks import check_device, check_int, check_positive
from torch_mbd.rollout import Trajectory

# The box tests live in dynamics.geometry (shared with the RRT planner); they stay importable from here.
from .geometry import distance_to_boxes, draw_plane, path_hits_boxes, points_in_boxes, segments_hit_boxes  # noqa: F401

# The default U-maze: boxes (xmin, ymin, xmax, ymax), open towards -x (the start).
U_MAZE_BOXES = (
    (0.4, -1.2, 0.7, 1.2),  # the closed side, between the cup and the goal
    (-0.8, 0.9, 0.7, 1.2),  # upper arm
    (-0.8, -1.2, 0.7, -0.9),  # lower arm
)

# Standard deviation (metres) of the RRT demonstration's likelihood, per coordinate.
DEFAULT_DEMO_SIGMA = 0.1


def u_maze(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Tensor:
    """The default U-shaped obstacle, ``[3, 4]`` boxes ``(xmin, ymin, xmax, ymax)``."""
    return torch.tensor(U_MAZE_BOXES, dtype=dtype, device=device)


def stopping_cost(distance: Tensor, speed: Tensor, radius: float) -> Tensor:
    """The speed term near the goal: ``|v| * relu(1 - d / radius)``.

    Zero at ``radius`` from the goal and beyond, ``|v|`` on the goal itself: moving fast near
    the goal costs, standing on it is free, so the optimum drives in and stops.

    Args:
        distance: ``[...]`` distances to the goal.
        speed: ``[...]`` signed speeds ``v``.
        radius: ``> 0``, where the term starts.

    Returns:
        ``[...]`` (``>= 0``).
    """
    return speed.abs() * (1.0 - distance / radius).clamp(min=0.0)


def bicycle_derivative(state: Tensor, control: Tensor, wheelbase: float, max_steer: float) -> Tensor:
    """``d/dt [x, y, theta, v, delta] = [v cos(theta), v sin(theta), v/L tan(delta), a, delta_rate]``.

    Args:
        state: ``[..., 5]``.
        control: physical ``[..., 2]`` ``(a, delta_rate)``.
        wheelbase: ``L``.
        max_steer: the steering angle is saturated at ``+-max_steer`` inside ``tan``.

    Returns:
        ``[..., 5]``.
    """
    theta, v, delta = state[..., 2], state[..., 3], state[..., 4]
    steer = delta.clamp(-max_steer, max_steer)
    return torch.stack(
        [v * torch.cos(theta), v * torch.sin(theta), v / wheelbase * torch.tan(steer), control[..., 0], control[..., 1]],
        dim=-1,
    )


def rk4_step(state: Tensor, control: Tensor, dt: float, wheelbase: float, max_steer: float) -> Tensor:
    """One classical Runge-Kutta step of `bicycle_derivative` with the control held.

    Args:
        state: ``[..., 5]``.
        control: physical ``[..., 2]``.
        dt: step length in seconds.
        wheelbase, max_steer: see `bicycle_derivative`.

    Returns:
        The state after ``dt``, ``[..., 5]`` (not yet saturated).
    """
    k1 = bicycle_derivative(state, control, wheelbase, max_steer)
    k2 = bicycle_derivative(state + 0.5 * dt * k1, control, wheelbase, max_steer)
    k3 = bicycle_derivative(state + 0.5 * dt * k2, control, wheelbase, max_steer)
    k4 = bicycle_derivative(state + dt * k3, control, wheelbase, max_steer)
    return state + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


class Car2D:
    """Bicycle car in the U-maze; implements [`torch_mbd.rollout.RolloutModel`][torch_mbd.rollout.RolloutModel].

    Step reward (higher is better)::

        r_t = -g_t - clearance_weight * relu(1 - d_t / clearance)
              - stop_weight * |v_t| * relu(1 - g_t / stop_radius) - control_weight * ||u_t||^2
        r_H += -terminal_weight * g_H                                  (the last step only)

    with ``g_t = ||p_t - goal||`` (the paper's goal term), ``d_t`` the distance from ``p_t`` to
    the nearest obstacle, ``v_t`` the speed and ``u_t`` the normalized action in ``[-1, 1]``;
    the planner's sample reward is the mean over the ``H`` steps. The speed term near the goal
    (`stopping_cost`) and the terminal term make the plan arrive and brake: with the
    distance alone the plans found drive through the goal region and circle it (0 of 20 seeds
    ended in it, ``benchmarks/car_umaze.py``); the defaults (terminal 25, speed term 2 within
    1 m) were measured there, see ``docs/trajopt.md``. Entering an
    obstacle is a hard constraint (``feasible``); the clearance cost keeps the optimum off the
    wall, so that the weighted mean of feasible samples (MBD's estimate) is itself feasible.

    The goal counts as reached ([`reached_goal`][dynamics.car.Car2D.reached_goal]) when the *final* position lies within
    ``goal_radius`` of the goal; [`passed_goal`][dynamics.car.Car2D.passed_goal] says whether some position did.

    Args:
        horizon: default number of control steps ``H``.
        dt: control period (one RK4 step).
        wheelbase: ``L`` in metres.
        max_accel: ``|a|`` limit (m/s^2) that action ``+-1`` maps to.
        max_steer_rate: ``|delta_rate|`` limit (rad/s) that action ``+-1`` maps to.
        max_speed: ``|v|`` saturation (m/s).
        max_steer: ``|delta|`` saturation (rad).
        start: initial state ``[x, y, theta, v, delta]``.
        goal: goal position ``[x, y]``.
        goal_radius: a path reaches the goal when its final position is this close (and passes
            it when any position is).
        control_weight: weight of the control cost.
        terminal_weight: weight of the final distance to the goal, added to the last step's reward
            (so it weighs ``terminal_weight / H`` in the mean reward; 0 disables it).
        stop_weight: weight of the speed term near the goal (0 disables it).
        stop_radius: distance from the goal within which the speed term applies.
        clearance: distance from the obstacles below which the clearance cost applies (0 disables it).
        clearance_weight: the clearance cost at the wall.
        obstacles: ``[k, 4]`` boxes ``(xmin, ymin, xmax, ymax)``; default `u_maze`.
        workspace: ``((xmin, ymin), (xmax, ymax))``, the map (where RRT samples, what figures show).
        device: where the rollouts run.
        dtype: the floating-point precision of the rollouts.

    Raises:
        ValueError: a number that is not finite or out of its range (Python and NumPy numbers are
            accepted, bool is not); a ``start``, ``goal``, ``obstacles`` or ``workspace`` of the wrong
            shape or with a NaN or infinite entry; a start inside an obstacle.
        TypeError: a ``dtype`` that is not floating point.
    """

    action_dim = 2
    state_dim = 5

    def __init__(
        self,
        horizon: int = 50,
        dt: float = 0.1,
        wheelbase: float = 0.3,
        max_accel: float = 2.0,
        max_steer_rate: float = 2.0,
        max_speed: float = 3.0,
        max_steer: float = 0.6,
        start=(-2.0, 0.0, 0.0, 0.0, 0.0),
        goal=(2.0, 0.0),
        goal_radius: float = 0.3,
        control_weight: float = 0.01,
        terminal_weight: float = 25.0,
        stop_weight: float = 2.0,
        stop_radius: float = 1.0,
        clearance: float = 0.15,
        clearance_weight: float = 1.0,
        obstacles: Tensor | None = None,
        workspace=((-3.0, -3.0), (3.0, 3.0)),
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        # Python or NumPy numbers (np.float32, np.int64) and 0-dim tensors; bool is never a number
        horizon = check_int("horizon", horizon, minimum=1)
        dt, wheelbase, max_accel, max_steer_rate, max_speed, max_steer, goal_radius, stop_radius = (
            check_positive(name, value) for name, value in (
                ("dt", dt),
                ("wheelbase", wheelbase),
                ("max_accel", max_accel),
                ("max_steer_rate", max_steer_rate),
                ("max_speed", max_speed),
                ("max_steer", max_steer),
                ("goal_radius", goal_radius),
                ("stop_radius", stop_radius),
            )
        )
        if not 0 < max_steer < math.pi / 2:
            raise ValueError(f"max_steer must be in (0, pi/2), got {max_steer!r}")
        control_weight, terminal_weight, stop_weight, clearance, clearance_weight = (
            check_positive(name, value, allow_zero=True) for name, value in (
                ("control_weight", control_weight),
                ("terminal_weight", terminal_weight),
                ("stop_weight", stop_weight),
                ("clearance", clearance),
                ("clearance_weight", clearance_weight),
            )
        )
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        self.device = check_device(device)  # ValueError for the meta device, or a CUDA one this machine lacks
        self.dtype = dtype
        kw = {"dtype": dtype, "device": self.device}
        self.horizon, self.dt, self.wheelbase = horizon, float(dt), float(wheelbase)
        self.max_accel, self.max_steer_rate = float(max_accel), float(max_steer_rate)
        self.max_speed, self.max_steer = float(max_speed), float(max_steer)
        self.goal_radius, self.control_weight = float(goal_radius), float(control_weight)
        self.clearance, self.clearance_weight = float(clearance), float(clearance_weight)
        self.terminal_weight, self.stop_weight = float(terminal_weight), float(stop_weight)
        self.stop_radius = float(stop_radius)
        self.initial_state = _finite_tensor("start", start, (5,), "[x, y, theta, v, delta]", kw)
        self.goal = _finite_tensor("goal", goal, (2,), "[x, y]", kw)
        if obstacles is None:
            self.obstacles = u_maze(**kw)
        else:
            self.obstacles = _finite_tensor("obstacles", obstacles, None, "[k, 4] boxes (xmin, ymin, xmax, ymax)", kw)
            if self.obstacles.dim() != 2 or self.obstacles.shape[-1] != 4:
                raise ValueError(
                    f"obstacles must be [k, 4] boxes (xmin, ymin, xmax, ymax), got {tuple(self.obstacles.shape)}"
                )
        if bool((self.obstacles[:, :2] > self.obstacles[:, 2:]).any()):
            raise ValueError("obstacles must have xmin <= xmax and ymin <= ymax")
        self.workspace = _finite_tensor("workspace", workspace, (2, 2), "((xmin, ymin), (xmax, ymax))", kw)
        if bool((self.workspace[0] >= self.workspace[1]).any()):
            raise ValueError("workspace must be ((xmin, ymin), (xmax, ymax)) with min < max")
        if bool(points_in_boxes(self.initial_state[:2], self.obstacles)):
            raise ValueError("start lies inside an obstacle")
        self.action_bounds = (-torch.ones(2, **kw), torch.ones(2, **kw))
        self._scale = torch.tensor([self.max_accel, self.max_steer_rate], **kw)

    def __repr__(self) -> str:
        return (
            f"Car2D(horizon={self.horizon}, dt={self.dt}, start={self.initial_state[:2].tolist()}, "
            f"goal={self.goal.tolist()}, obstacles={len(self.obstacles)} boxes, device={self.device})"
        )

    # ------------------------------------------------------------------ dynamics
    def step(self, state: Tensor, action: Tensor) -> Tensor:
        """One control step: RK4 over ``dt`` then speed / steering saturation.

        Args:
            state: ``[..., 5]``.
            action: normalized ``[..., 2]`` (clipped to ``[-1, 1]``).

        Returns:
            ``[..., 5]``.
        """
        control = action.clamp(-1.0, 1.0) * self._scale
        nxt = rk4_step(state, control, self.dt, self.wheelbase, self.max_steer)
        speed = nxt[..., 3].clamp(-self.max_speed, self.max_speed)
        steer = nxt[..., 4].clamp(-self.max_steer, self.max_steer)
        return torch.cat([nxt[..., :3], speed.unsqueeze(-1), steer.unsqueeze(-1)], dim=-1)

    def simulate(self, actions: Tensor) -> Tensor:
        """The states after each control step, ``[..., H, 5]``, for actions ``[..., H, 2]``."""
        self._check_actions(actions)
        state = self.initial_state.expand(*actions.shape[:-2], 5)
        states = []
        for t in range(actions.shape[-2]):
            state = self.step(state, actions[..., t, :])
            states.append(state)
        return torch.stack(states, dim=-2)

    def rollout(self, actions: Tensor) -> Trajectory:
        """Roll ``actions[..., n, H, 2]`` out from `initial_state`.

        Returns:
            [`Trajectory`][torch_mbd.rollout.Trajectory] with ``states [..., n, H, 5]``, ``rewards [..., n, H]``
            and ``feasible [..., n]`` (False when the path touches an obstacle or is not finite, or
            an action is NaN or infinite).

        Raises:
            TypeError: ``actions`` is not a tensor.
            ValueError: a shape other than ``[..., H, 2]`` with ``H >= 1``, another device or dtype.
        """
        states = self.simulate(actions)
        control_cost = self.control_weight * actions.clamp(-1.0, 1.0).square().sum(-1)
        rewards = self.path_reward(states) - control_cost
        # an infinite action would be clipped to a finite one: the sample is infeasible all the same
        finite_actions = torch.isfinite(actions).flatten(-2).all(-1)
        return Trajectory(states=states, rewards=rewards, feasible=self.path_feasible(states) & finite_actions)

    # ------------------------------------------------------------------ task
    def state_reward(self, states: Tensor) -> Tensor:
        """The per-state part of the step reward (distance, clearance, speed near the goal).

        ``[..., nx] -> [...]``, each state scored on its own (no terminal term: see
        [`path_reward`][dynamics.car.Car2D.path_reward]). States with fewer than 4 entries (positions only) get no speed term.
        """
        if states.shape[-1] < 2:
            raise ValueError(f"states must have x, y as their first two entries, got shape {tuple(states.shape)}")
        positions = states[..., :2]
        goal_gap = torch.linalg.vector_norm(positions - self.goal, dim=-1)
        reward = -goal_gap
        if self.clearance > 0 and self.clearance_weight > 0 and len(self.obstacles):
            gap = distance_to_boxes(positions, self.obstacles)
            reward = reward - self.clearance_weight * (1.0 - gap / self.clearance).clamp(min=0.0)
        if self.stop_weight > 0 and states.shape[-1] >= 4:
            reward = reward - self.stop_weight * stopping_cost(goal_gap, states[..., 3], self.stop_radius)
        return reward

    def path_reward(self, states: Tensor) -> Tensor:
        """The state part of the step rewards of a path: ``[..., H, nx] -> [..., H]``.

        [`state_reward`][dynamics.car.Car2D.state_reward] of every state, and the terminal term ``-terminal_weight * g_H``
        on the last one. Scores a state-only path (an RRT demonstration) in the units of
        [`rollout`][dynamics.car.Car2D.rollout]'s rewards, without the control cost (a demonstration has no controls):
        ``path_reward(demo).mean()`` is the optimizer's ``demo_reward``.
        """
        if states.dim() < 2:
            raise ValueError(f"states must be a path [..., H, nx], got shape {tuple(states.shape)}")
        reward = self.state_reward(states)
        if self.terminal_weight > 0:
            final_gap = torch.linalg.vector_norm(states[..., -1, :2] - self.goal, dim=-1)
            reward = torch.cat([reward[..., :-1], (reward[..., -1] - self.terminal_weight * final_gap).unsqueeze(-1)], -1)
        return reward

    def demonstration(
        self,
        source: str = "rrt",
        seed: int | None = None,
        horizon: int | None = None,
        demo_sigma: float = DEFAULT_DEMO_SIGMA,
        demo_reward: float | None = None,
        **rrt_options,
    ) -> dict:
        """An RRT demonstration (section 5.2) as options for [`torch_mbd.plan`][torch_mbd.plan] / ``MBDOptimizer``.

        Args:
            source: ``"rrt"`` (the only source).
            seed: seed of the RRT (``None``: a fresh random seed, from torch's global RNG).
            horizon: ``H``; default `horizon`.
            demo_sigma: standard deviation (metres) of the demonstration likelihood per coordinate.
            demo_reward: ``p_J(Y_demo)``; default [`path_reward`][dynamics.car.Car2D.path_reward] of the demonstration, averaged.
            **rrt_options: options of [`dynamics.planning.rrt_demo`][dynamics.planning.rrt_demo] (``speed``, ``margin``,
                ``step_size``, ``max_iterations``, ...).

        Returns:
            ``dict(demo=[H, 5], demo_mask=[5] bool (x, y), demo_reward=float, demo_sigma=float)`` on
            the model's device, in its dtype.

        Raises:
            ValueError: an unknown ``source``.
            dynamics.planning.PlanningError: RRT found no path.
        """
        from .planning import rrt_demo, xy_mask

        if source != "rrt":
            raise ValueError(f"source must be 'rrt' for {type(self).__name__}, got {source!r}")
        demo = rrt_demo(self, horizon=horizon, seed=seed, **rrt_options)
        if demo_reward is None:
            demo_reward = float(self.path_reward(demo).mean())
        return {
            "demo": demo, "demo_mask": xy_mask(self.device), "demo_reward": float(demo_reward), "demo_sigma": float(demo_sigma)
        }

    def path_feasible(self, states: Tensor) -> Tensor:
        """Whether a state path ``[..., H, nx]`` stays out of the obstacles: ``[...]`` boolean."""
        hits = path_hits_boxes(self.initial_state[:2], states[..., :2], self.obstacles)
        return ~hits & torch.isfinite(states).all(-1).all(-1)

    def reached_goal(self, states: Tensor) -> Tensor:
        """Whether the path ``states[..., H, nx]`` ends in the goal region: ``[...]``.

        The final position lies within `goal_radius` of the goal (what ``torch-mbd plan``
        prints as "goal reached"); [`passed_goal`][dynamics.car.Car2D.passed_goal] counts a path that only passes through.
        """
        return self.goal_distance(states)[..., -1] <= self.goal_radius

    def passed_goal(self, states: Tensor) -> Tensor:
        """Whether some position of the path ``states[..., H, nx]`` lies in the goal region: ``[...]``."""
        return self.goal_distance(states).amin(-1) <= self.goal_radius

    def goal_distance(self, states: Tensor) -> Tensor:
        """Distance of each state's position to the goal: ``[..., H, nx] -> [..., H]``."""
        return torch.linalg.vector_norm(states[..., :2] - self.goal, dim=-1)

    def positions(self, states: Tensor) -> Tensor:
        """The planar positions ``[..., H, 2]`` of states ``[..., H, nx]`` (what figures draw)."""
        return states[..., :2]

    def draw(self, ax) -> None:
        """Draw the map (obstacles, start, goal region) on a matplotlib ``Axes``."""
        draw_plane(ax, self.goal, self.goal_radius, self.initial_state[:2], self.workspace, self.obstacles)

    def _check_actions(self, actions: Tensor) -> None:
        if not isinstance(actions, Tensor):
            raise TypeError(f"actions must be a tensor [..., H, 2], got {type(actions).__name__}")
        if actions.dim() < 2 or actions.shape[-1] != 2:
            raise ValueError(f"actions must have shape [..., H, 2], got {tuple(actions.shape)}")
        if actions.shape[-2] < 1:
            raise ValueError(f"actions must have at least one control step (H >= 1), got shape {tuple(actions.shape)}")
        if actions.device != self.device:
            raise ValueError(f"actions are on {actions.device}, the model on {self.device}")
        if actions.dtype != self.dtype:
            raise ValueError(f"actions have dtype {actions.dtype}, the model {self.dtype}")


def _finite_tensor(name: str, value, shape: tuple | None, layout: str, kw: dict) -> Tensor:
    """``value`` (a sequence, array or tensor) as a finite tensor of ``shape`` (any if ``None``), a copy.

    Raises:
        ValueError: not numbers, the wrong shape, or a NaN / infinite entry (the car would plan NaN).
    """
    try:
        tensor = torch.as_tensor(value, **kw).clone()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be {layout}, numbers; got {value!r} ({err})") from None
    if shape is not None and tuple(tensor.shape) != shape:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be finite, got {tensor.tolist()}")
    return tensor
