"""Starter tasks as batched analytic torch dynamics: pendulum and cart-pole swing-up, a 2-D point mass.

The small control problems users of hydrax and judo learn on (the MBD authors ship a
cart-pole too), written like the car (`dynamics.car`): closed-form derivatives in torch,
one classical Runge-Kutta step per control step with the control held, batched over any
leading dimensions, on any device, no simulator. Why analytic torch and not MuJoCo MJCF:
the equations of motion are a few lines each, a rollout needs no optional package (256
samples take 0.2-1.2 ms per control step on a 2-core CPU, ``benchmarks/starter_tasks.py``), and
the reward reads the state directly. RK4 rather than semi-implicit Euler: four evaluations of a closed-form
derivative cost little here, and RK4 keeps the undamped pendulum's energy to a few parts
in ten thousand over a swing at ``dt = 0.05`` (``tests/test_classic.py`` checks 1000 steps).

| task | state | nu | H x dt | reward per control step (``e``: angle from upright) |
|---|---|---|---|---|
| ``pendulum`` | ``[theta, omega]`` | 1 | 80 x 0.05 s | ``-(e^2 + 0.1 omega^2 + 0.001 u^2)`` |
| ``cart_pole`` | ``[x, theta, v, omega]`` | 1 | 60 x 0.05 s | ``-(e^2 + 0.1 x^2 + 0.01 (v^2 + omega^2) + 0.001 u^2)`` |
| ``point_mass`` | ``[x, y, vx, vy]`` | 2 | 30 x 0.1 s | ``-(norm(p - goal) + 0.01 norm(u)^2)`` |

Angles are measured from hanging straight down (``theta = 0``), so upright is ``theta = pi``
and ``e = wrap(theta - pi)`` in ``(-pi, pi]``. ``u`` is the action in ``[-1, 1]`` (scaled to the
torque or force limit). Each task adds a terminal term on its last step (``terminal_weight``
times the final error: angle and speed for the swing-ups, distance and speed for the point mass),
so that plans end at the goal and stay there instead of passing through it. The cart-pole's
cart must stay on its track (``|x| <= track_limit``): a sample that leaves it is infeasible.

Each model draws itself for ``torch-mbd plan TASK --out fig.png``: [`draw`][dynamics.classic.CartPole.draw] draws the scene
(pivot, track, goal) and [`positions`][dynamics.classic.CartPole.positions] maps states to the point the figure traces (the
pendulum's tip, the cart-pole's tip, the point mass).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from torch_mbd.checks import check_device
from torch_mbd.rollout import Trajectory

from .geometry import draw_plane


# ----------------------------------------------------------------------------- pure math
def wrap_angle(angle: Tensor) -> Tensor:
    """``angle`` wrapped to ``(-pi, pi]``, elementwise: ``[...] -> [...]``."""
    return math.pi - torch.remainder(math.pi - angle, 2 * math.pi)


def rk4(derivative: Callable[[Tensor, Tensor], Tensor], state: Tensor, control: Tensor, dt: float) -> Tensor:
    """One classical Runge-Kutta step of ``d state / dt = derivative(state, control)``, the control held.

    Args:
        derivative: ``(state [..., nx], control [..., nu]) -> [..., nx]``.
        state: ``[..., nx]``.
        control: ``[..., nu]`` (physical units).
        dt: step length in seconds.

    Returns:
        The state after ``dt``, ``[..., nx]``.
    """
    k1 = derivative(state, control)
    k2 = derivative(state + 0.5 * dt * k1, control)
    k3 = derivative(state + 0.5 * dt * k2, control)
    k4 = derivative(state + dt * k3, control)
    return state + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def pendulum_derivative(
    state: Tensor, torque: Tensor, mass: float, length: float, gravity: float, damping: float
) -> Tensor:
    """A point mass on a massless rod: ``d/dt [theta, omega] = [omega, (u - b omega - m g l sin theta) / (m l^2)]``.

    Args:
        state: ``[..., 2]`` ``(theta, omega)``, ``theta = 0`` hanging down.
        torque: ``[..., 1]`` torque at the pivot (N m).
        mass: ``m`` (kg).
        length: ``l`` (m).
        gravity: ``g`` (m/s^2).
        damping: ``b`` (N m s / rad).

    Returns:
        ``[..., 2]``.
    """
    theta, omega = state[..., 0], state[..., 1]
    accel = (torque[..., 0] - damping * omega - mass * gravity * length * torch.sin(theta)) / (mass * length**2)
    return torch.stack([omega, accel], dim=-1)


def cartpole_derivative(
    state: Tensor, force: Tensor, cart_mass: float, pole_mass: float, pole_length: float, gravity: float
) -> Tensor:
    """A cart on a frictionless track with a point-mass pole on a massless rod (Tedrake, *Underactuated Robotics*, 3.2).

    With ``s, c = sin theta, cos theta`` and ``d = m_c + m_p s^2``::

        x''     = (f + m_p s (l omega^2 + g c)) / d
        theta'' = (-f c - m_p l omega^2 c s - (m_c + m_p) g s) / (l d)

    Args:
        state: ``[..., 4]`` ``(x, theta, v, omega)``, ``theta = 0`` hanging down.
        force: ``[..., 1]`` horizontal force on the cart (N).
        cart_mass: ``m_c`` (kg).
        pole_mass: ``m_p`` (kg).
        pole_length: ``l`` (m), pivot to the pole's mass.
        gravity: ``g`` (m/s^2).

    Returns:
        ``[..., 4]``.
    """
    theta, v, omega = state[..., 1], state[..., 2], state[..., 3]
    f = force[..., 0]
    s, c = torch.sin(theta), torch.cos(theta)
    d = cart_mass + pole_mass * s**2
    x_acc = (f + pole_mass * s * (pole_length * omega**2 + gravity * c)) / d
    theta_acc = (-f * c - pole_mass * pole_length * omega**2 * c * s - (cart_mass + pole_mass) * gravity * s) / (pole_length * d)
    return torch.stack([v, omega, x_acc, theta_acc], dim=-1)


def point_mass_derivative(state: Tensor, accel: Tensor, damping: float) -> Tensor:
    """A damped double integrator in the plane: ``d/dt [p, v] = [v, a - damping v]``.

    Args:
        state: ``[..., 4]`` ``(x, y, vx, vy)``.
        accel: ``[..., 2]`` commanded acceleration (m/s^2).
        damping: linear drag per second.

    Returns:
        ``[..., 4]``.
    """
    velocity = state[..., 2:]
    return torch.cat([velocity, accel - damping * velocity], dim=-1)


def _check_number(name: str, value, minimum: float = 0.0, strict: bool = True) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- models
class AnalyticTask:
    """What the starter tasks share: RK4 rollouts of a closed-form derivative, from ``initial_state``.

    Implements [`torch_mbd.rollout.RolloutModel`][torch_mbd.rollout.RolloutModel]. A subclass sets ``action_dim``,
    ``state_dim`` and ``num_samples`` / ``num_steps`` (the budget ``torch-mbd plan`` uses), and
    implements ``derivative(state, control)``, ``step_reward(states, actions)``,
    ``terminal_cost(state)``, ``positions(states)`` and ``goal_distance(states)``.

    Args:
        horizon: default number of control steps ``H``.
        dt: control period (one RK4 step), seconds.
        action_scale: ``[nu]`` the physical control that action ``+1`` maps to.
        initial_state: ``[nx]`` where every rollout starts.
        terminal_weight: weight of [`terminal_cost`][dynamics.classic.CartPole.terminal_cost], added to the last step's reward (0 disables it).
            The planner scores a sample by its mean step reward, so the terminal term weighs
            ``terminal_weight / H``: the swing-ups need 200 (with 10 to 50 the plans found swing
            through the top, measured at 256 samples x 50 steps).
        device: where the rollouts run.
        dtype: the floating-point precision of the rollouts.
    """

    action_dim: int
    state_dim: int
    num_samples: int
    num_steps: int

    def __init__(self, horizon: int, dt: float, action_scale, initial_state, terminal_weight: float, device, dtype):
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
        self.dt = _check_number("dt", dt)
        self.terminal_weight = _check_number("terminal_weight", terminal_weight, strict=False)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        self.device = check_device(device)
        self.dtype = dtype
        self.horizon = horizon
        kw = {"dtype": dtype, "device": self.device}
        self.initial_state = torch.as_tensor(initial_state, **kw).clone()
        if self.initial_state.shape != (self.state_dim,):
            raise ValueError(f"start must have {self.state_dim} entries, got shape {tuple(self.initial_state.shape)}")
        if not bool(torch.isfinite(self.initial_state).all()):
            raise ValueError(f"start must be finite, got {self.initial_state.tolist()}")
        self._scale = torch.as_tensor(action_scale, **kw).reshape(self.action_dim)
        self.action_bounds = (-torch.ones(self.action_dim, **kw), torch.ones(self.action_dim, **kw))

    def derivative(self, state: Tensor, control: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, state: Tensor, action: Tensor) -> Tensor:
        """One control step: ``[..., nx]``, normalized ``[..., nu]`` (clipped to ``[-1, 1]``) -> ``[..., nx]``."""
        return rk4(self.derivative, state, action.clamp(-1.0, 1.0) * self._scale, self.dt)

    def simulate(self, actions: Tensor) -> Tensor:
        """The states after each control step, ``[..., H, nx]``, for actions ``[..., H, nu]``."""
        self._check_actions(actions)
        state = self.initial_state.expand(*actions.shape[:-2], self.state_dim)
        states = []
        for t in range(actions.shape[-2]):
            state = self.step(state, actions[..., t, :])
            states.append(state)
        return torch.stack(states, dim=-2)

    def rollout(self, actions: Tensor) -> Trajectory:
        """Roll ``actions[..., n, H, nu]`` out from `initial_state`.

        Returns:
            [`Trajectory`][torch_mbd.rollout.Trajectory] with ``states [..., n, H, nx]``, ``rewards [..., n, H]``
            ([`step_reward`][dynamics.classic.CartPole.step_reward], the terminal term on the last step) and ``feasible [..., n]``
            ([`path_feasible`][dynamics.classic.AnalyticTask.path_feasible]).
        """
        states = self.simulate(actions)
        rewards = self.step_reward(states, actions.clamp(-1.0, 1.0))
        if self.terminal_weight > 0:
            last = rewards[..., -1] - self.terminal_weight * self.terminal_cost(states[..., -1, :])
            rewards = torch.cat([rewards[..., :-1], last.unsqueeze(-1)], dim=-1)
        return Trajectory(states=states, rewards=rewards, feasible=self.path_feasible(states))

    def path_feasible(self, states: Tensor) -> Tensor:
        """Whether a path ``[..., H, nx]`` is finite (subclasses add constraints): ``[...]`` boolean."""
        return torch.isfinite(states).all(-1).all(-1)

    def reached_goal(self, states: Tensor) -> Tensor:
        """Whether the path ``states[..., H, nx]`` ends at the goal ([`at_goal`][dynamics.classic.CartPole.at_goal] of its last state): ``[...]``."""
        return self.at_goal(states[..., -1, :])

    def _check_actions(self, actions: Tensor) -> None:
        nu = self.action_dim
        if not isinstance(actions, Tensor):
            raise TypeError(f"actions must be a tensor [..., H, {nu}], got {type(actions).__name__}")
        if actions.dim() < 2 or actions.shape[-1] != nu:
            raise ValueError(f"actions must have shape [..., H, {nu}], got {tuple(actions.shape)}")
        if actions.device != self.device:
            raise ValueError(f"actions are on {actions.device}, the model on {self.device}")
        if actions.dtype != self.dtype:
            raise ValueError(f"actions have dtype {actions.dtype}, the model {self.dtype}")


class Pendulum(AnalyticTask):
    """Pendulum swing-up: from hanging down at rest to upright, with a torque too weak to lift it directly.

    State ``[theta, omega]`` (``theta = 0`` hanging down, ``pi`` upright), action ``[u]`` in
    ``[-1, 1]`` scaled to ``+-max_torque``. The default ``max_torque`` (4 N m) is 0.4 ``m g l``,
    the largest gravity torque (gymnasium's ``Pendulum-v1`` has the same ratio: 2 N m against a rod's
    ``m g l / 2`` = 5 N m), so the plan must pump energy over a swing or two. Step reward
    ``-(e^2 + 0.1 omega^2 + 0.001 u^2)`` with ``e = wrap(theta - pi)``; the last step also
    ``-terminal_weight (e^2 + 0.1 omega^2)``. [`reached_goal`][dynamics.classic.AnalyticTask.reached_goal]: the final ``|e|`` is at most
    ``goal_angle`` and the final ``|omega|`` at most ``goal_speed``.

    Args:
        horizon: default number of control steps ``H`` (80 x 0.05 s = 4 s).
        dt: control period.
        mass: the pendulum's mass (kg), at the tip.
        length: the rod's length (m).
        gravity: ``g`` (m/s^2).
        damping: viscous friction at the pivot (N m s / rad).
        max_torque: the torque action ``+-1`` maps to.
        start: initial ``[theta, omega]``.
        terminal_weight: weight of the final error.
        goal_angle: radians from upright within which the pendulum counts as up.
        goal_speed: rad/s below which it counts as at rest.
        device: where the rollouts run.
        dtype: the floating-point precision of the rollouts.
    """

    action_dim = 1
    state_dim = 2
    num_samples = 256
    num_steps = 100

    def __init__(
        self,
        horizon: int = 80,
        dt: float = 0.05,
        mass: float = 1.0,
        length: float = 1.0,
        gravity: float = 9.81,
        damping: float = 0.05,
        max_torque: float = 4.0,
        start=(0.0, 0.0),
        terminal_weight: float = 200.0,
        goal_angle: float = 0.2,
        goal_speed: float = 1.0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.mass, self.length = _check_number("mass", mass), _check_number("length", length)
        self.gravity, self.damping = _check_number("gravity", gravity), _check_number("damping", damping, strict=False)
        self.max_torque = _check_number("max_torque", max_torque)
        self.goal_angle, self.goal_speed = _check_number("goal_angle", goal_angle), _check_number("goal_speed", goal_speed)
        super().__init__(horizon, dt, [self.max_torque], start, terminal_weight, device, dtype)

    def __repr__(self) -> str:
        return (
            f"Pendulum(horizon={self.horizon}, dt={self.dt}, max_torque={self.max_torque}, "
            f"start={self.initial_state.tolist()}, device={self.device})"
        )

    def derivative(self, state: Tensor, control: Tensor) -> Tensor:
        """[`pendulum_derivative`][dynamics.classic.pendulum_derivative] with this pendulum's parameters."""
        return pendulum_derivative(state, control, self.mass, self.length, self.gravity, self.damping)

    def upright_error(self, states: Tensor) -> Tensor:
        """``e = wrap(theta - pi)``, the signed angle from upright: ``[..., nx] -> [...]``."""
        return wrap_angle(states[..., 0] - math.pi)

    def step_reward(self, states: Tensor, actions: Tensor) -> Tensor:
        """``-(e^2 + 0.1 omega^2 + 0.001 u^2)``: ``[..., H, 2], [..., H, 1] -> [..., H]``."""
        return -(self.upright_error(states) ** 2 + 0.1 * states[..., 1] ** 2 + 1e-3 * actions[..., 0] ** 2)

    def terminal_cost(self, state: Tensor) -> Tensor:
        """``e^2 + 0.1 omega^2`` of the final state: ``[..., 2] -> [...]``."""
        return self.upright_error(state) ** 2 + 0.1 * state[..., 1] ** 2

    def at_goal(self, state: Tensor) -> Tensor:
        """Upright (``|e| <= goal_angle``) and slow (``|omega| <= goal_speed``): ``[..., 2] -> [...]``."""
        return (self.upright_error(state).abs() <= self.goal_angle) & (state[..., 1].abs() <= self.goal_speed)

    def positions(self, states: Tensor) -> Tensor:
        """The tip ``(l sin theta, -l cos theta)`` relative to the pivot: ``[..., nx] -> [..., 2]``."""
        theta = states[..., 0]
        return torch.stack([self.length * torch.sin(theta), -self.length * torch.cos(theta)], dim=-1)

    def goal_distance(self, states: Tensor) -> Tensor:
        """Distance (m) of the tip to its upright position ``(0, l)``: ``[..., nx] -> [...]``."""
        goal = torch.tensor([0.0, self.length], dtype=states.dtype, device=states.device)
        return torch.linalg.vector_norm(self.positions(states) - goal, dim=-1)

    def draw(self, ax) -> None:
        """Draw the pivot, the circle the tip moves on, the rod at the start and the upright goal."""
        from matplotlib.patches import Circle

        length = self.length
        ax.add_patch(Circle((0.0, 0.0), length, fill=False, ls=":", color="0.6", zorder=1))
        tip = self.positions(self.initial_state).cpu().tolist()
        ax.plot([0.0, tip[0]], [0.0, tip[1]], color="0.3", lw=3, zorder=2, label="rod at the start")
        ax.plot([0.0], [0.0], marker="o", color="black", markersize=6, zorder=5)
        ax.plot([0.0], [length], marker="*", color="tab:green", markersize=14, zorder=5, label="goal (upright)")
        ax.set_xlim(-1.4 * length, 1.4 * length)
        ax.set_ylim(-1.4 * length, 1.4 * length)
        ax.set_aspect("equal")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")


class CartPole(AnalyticTask):
    """Cart-pole swing-up: push the cart so the pole swings from hanging down to upright over the track's centre.

    State ``[x, theta, v, omega]`` (cart position and speed, pole angle from hanging down and
    its rate), action ``[u]`` in ``[-1, 1]`` scaled to ``+-max_force``. Step reward
    ``-(e^2 + 0.1 x^2 + 0.01 (v^2 + omega^2) + 0.001 u^2)`` with ``e = wrap(theta - pi)``; the
    last step also ``-terminal_weight (e^2 + 0.1 x^2 + 0.1 (v^2 + omega^2))``. A sample whose cart
    leaves the track (``|x| > track_limit`` at some step) is infeasible. [`reached_goal`][dynamics.classic.AnalyticTask.reached_goal]: the
    final ``|e|`` is at most ``goal_angle`` and the final ``|omega|`` at most ``goal_speed``.

    Args:
        horizon: default number of control steps ``H`` (60 x 0.05 s = 3 s).
        dt: control period.
        cart_mass: the cart's mass (kg).
        pole_mass: the pole's mass (kg), at its tip.
        pole_length: pivot to the pole's mass (m).
        gravity: ``g`` (m/s^2).
        max_force: the force action ``+-1`` maps to (N).
        track_limit: half-length of the track (m).
        start: initial ``[x, theta, v, omega]``.
        terminal_weight: weight of the final error.
        goal_angle: radians from upright within which the pole counts as up.
        goal_speed: rad/s below which the pole counts as at rest.
        device: where the rollouts run.
        dtype: the floating-point precision of the rollouts.
    """

    action_dim = 1
    state_dim = 4
    num_samples = 256
    num_steps = 100

    def __init__(
        self,
        horizon: int = 60,
        dt: float = 0.05,
        cart_mass: float = 1.0,
        pole_mass: float = 0.1,
        pole_length: float = 0.5,
        gravity: float = 9.81,
        max_force: float = 10.0,
        track_limit: float = 2.0,
        start=(0.0, 0.0, 0.0, 0.0),
        terminal_weight: float = 200.0,
        goal_angle: float = 0.2,
        goal_speed: float = 1.0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.cart_mass, self.pole_mass = _check_number("cart_mass", cart_mass), _check_number("pole_mass", pole_mass)
        self.pole_length, self.gravity = _check_number("pole_length", pole_length), _check_number("gravity", gravity)
        self.max_force, self.track_limit = _check_number("max_force", max_force), _check_number("track_limit", track_limit)
        self.goal_angle, self.goal_speed = _check_number("goal_angle", goal_angle), _check_number("goal_speed", goal_speed)
        super().__init__(horizon, dt, [self.max_force], start, terminal_weight, device, dtype)
        if abs(float(self.initial_state[0])) > self.track_limit:
            raise ValueError(f"start puts the cart at x = {float(self.initial_state[0]):g}, off the track +-{self.track_limit:g}")

    def __repr__(self) -> str:
        return (
            f"CartPole(horizon={self.horizon}, dt={self.dt}, max_force={self.max_force}, "
            f"track_limit={self.track_limit}, start={self.initial_state.tolist()}, device={self.device})"
        )

    def derivative(self, state: Tensor, control: Tensor) -> Tensor:
        """[`cartpole_derivative`][dynamics.classic.cartpole_derivative] with this cart-pole's parameters."""
        return cartpole_derivative(state, control, self.cart_mass, self.pole_mass, self.pole_length, self.gravity)

    def upright_error(self, states: Tensor) -> Tensor:
        """``e = wrap(theta - pi)``, the pole's signed angle from upright: ``[..., nx] -> [...]``."""
        return wrap_angle(states[..., 1] - math.pi)

    def step_reward(self, states: Tensor, actions: Tensor) -> Tensor:
        """``-(e^2 + 0.1 x^2 + 0.01 (v^2 + omega^2) + 0.001 u^2)``: ``[..., H, 4], [..., H, 1] -> [..., H]``."""
        speeds = states[..., 2] ** 2 + states[..., 3] ** 2
        return -(self.upright_error(states) ** 2 + 0.1 * states[..., 0] ** 2 + 0.01 * speeds + 1e-3 * actions[..., 0] ** 2)

    def terminal_cost(self, state: Tensor) -> Tensor:
        """``e^2 + 0.1 x^2 + 0.1 (v^2 + omega^2)`` of the final state: ``[..., 4] -> [...]``."""
        speeds = state[..., 2] ** 2 + state[..., 3] ** 2
        return self.upright_error(state) ** 2 + 0.1 * state[..., 0] ** 2 + 0.1 * speeds

    def path_feasible(self, states: Tensor) -> Tensor:
        """The cart stays on the track (``|x| <= track_limit``) and the path is finite: ``[..., H, 4] -> [...]``."""
        on_track = (states[..., 0].abs() <= self.track_limit).all(-1)
        return on_track & super().path_feasible(states)

    def at_goal(self, state: Tensor) -> Tensor:
        """Pole upright (``|e| <= goal_angle``) and slow (``|omega| <= goal_speed``): ``[..., 4] -> [...]``."""
        return (self.upright_error(state).abs() <= self.goal_angle) & (state[..., 3].abs() <= self.goal_speed)

    def positions(self, states: Tensor) -> Tensor:
        """The pole's tip ``(x + l sin theta, -l cos theta)`` (the track at height 0): ``[..., nx] -> [..., 2]``."""
        x, theta = states[..., 0], states[..., 1]
        return torch.stack([x + self.pole_length * torch.sin(theta), -self.pole_length * torch.cos(theta)], dim=-1)

    def goal_distance(self, states: Tensor) -> Tensor:
        """Distance (m) of the tip to the upright tip over the track's centre ``(0, l)``: ``[..., nx] -> [...]``."""
        goal = torch.tensor([0.0, self.pole_length], dtype=states.dtype, device=states.device)
        return torch.linalg.vector_norm(self.positions(states) - goal, dim=-1)

    def draw(self, ax) -> None:
        """Draw the track, the cart and pole at the start, and the upright goal."""
        from matplotlib.patches import Rectangle

        limit, length = self.track_limit, self.pole_length
        ax.plot([-limit, limit], [0.0, 0.0], color="0.35", lw=2, zorder=1, label="track")
        x0 = float(self.initial_state[0])
        ax.add_patch(Rectangle((x0 - 0.15, -0.08), 0.3, 0.16, color="0.6", zorder=2))
        tip = self.positions(self.initial_state).cpu().tolist()
        ax.plot([x0, tip[0]], [0.0, tip[1]], color="0.3", lw=3, zorder=3, label="pole at the start")
        ax.plot([0.0], [length], marker="*", color="tab:green", markersize=14, zorder=5, label="goal (upright)")
        ax.set_xlim(-limit - 0.3, limit + 0.3)
        ax.set_ylim(-3.0 * length, 3.0 * length)
        ax.set_aspect("equal")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("height (m)")


class PointMass(AnalyticTask):
    """A point mass in the plane, pushed by a bounded force, reaching a goal and stopping there.

    State ``[x, y, vx, vy]``, action ``[ax, ay]`` in ``[-1, 1]`` scaled to ``+-max_accel``, a
    little linear drag. Step reward ``-(|p - goal| + 0.01 |u|^2)``; the last step also
    ``-terminal_weight (|p - goal| + |v|)``. [`reached_goal`][dynamics.classic.AnalyticTask.reached_goal]: the final position lies within
    ``goal_radius`` of the goal and the final speed is at most ``goal_speed``.

    Args:
        horizon: default number of control steps ``H`` (30 x 0.1 s = 3 s).
        dt: control period.
        max_accel: the acceleration action ``+-1`` maps to, per axis (m/s^2).
        damping: linear drag per second (see [`point_mass_derivative`][dynamics.classic.point_mass_derivative]).
        start: initial ``[x, y, vx, vy]``.
        goal: ``[x, y]``.
        terminal_weight: weight of the final distance and speed.
        goal_radius: metres from the goal within which the mass counts as arrived.
        goal_speed: m/s below which it counts as stopped.
        workspace: ``((xmin, ymin), (xmax, ymax))``, what the figure shows.
        device: where the rollouts run.
        dtype: the floating-point precision of the rollouts.
    """

    action_dim = 2
    state_dim = 4
    num_samples = 128
    num_steps = 30

    def __init__(
        self,
        horizon: int = 30,
        dt: float = 0.1,
        max_accel: float = 2.0,
        damping: float = 0.1,
        start=(-1.0, -1.0, 0.0, 0.0),
        goal=(1.0, 1.0),
        terminal_weight: float = 10.0,
        goal_radius: float = 0.1,
        goal_speed: float = 0.2,
        workspace=((-1.5, -1.5), (1.5, 1.5)),
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.max_accel, self.damping = _check_number("max_accel", max_accel), _check_number("damping", damping, strict=False)
        self.goal_radius, self.goal_speed = _check_number("goal_radius", goal_radius), _check_number("goal_speed", goal_speed)
        super().__init__(horizon, dt, [self.max_accel] * 2, start, terminal_weight, device, dtype)
        kw = {"dtype": dtype, "device": self.device}
        self.goal = torch.as_tensor(goal, **kw).clone()
        if self.goal.shape != (2,) or not bool(torch.isfinite(self.goal).all()):
            raise ValueError(f"goal must be a finite [x, y], got {goal!r}")
        self.workspace = torch.as_tensor(workspace, **kw).clone()
        if self.workspace.shape != (2, 2) or bool((self.workspace[0] >= self.workspace[1]).any()):
            raise ValueError("workspace must be ((xmin, ymin), (xmax, ymax)) with min < max")

    def __repr__(self) -> str:
        return (
            f"PointMass(horizon={self.horizon}, dt={self.dt}, max_accel={self.max_accel}, "
            f"start={self.initial_state[:2].tolist()}, goal={self.goal.tolist()}, device={self.device})"
        )

    def derivative(self, state: Tensor, control: Tensor) -> Tensor:
        """[`point_mass_derivative`][dynamics.classic.point_mass_derivative] with this model's drag."""
        return point_mass_derivative(state, control, self.damping)

    def step_reward(self, states: Tensor, actions: Tensor) -> Tensor:
        """``-(|p - goal| + 0.01 |u|^2)``: ``[..., H, 4], [..., H, 2] -> [..., H]``."""
        return -(self.goal_distance(states) + 0.01 * actions.square().sum(-1))

    def terminal_cost(self, state: Tensor) -> Tensor:
        """``|p - goal| + |v|`` of the final state: ``[..., 4] -> [...]``."""
        return self.goal_distance(state) + torch.linalg.vector_norm(state[..., 2:], dim=-1)

    def at_goal(self, state: Tensor) -> Tensor:
        """Within ``goal_radius`` of the goal and slower than ``goal_speed``: ``[..., 4] -> [...]``."""
        slow = torch.linalg.vector_norm(state[..., 2:], dim=-1) <= self.goal_speed
        return (self.goal_distance(state) <= self.goal_radius) & slow

    def positions(self, states: Tensor) -> Tensor:
        """The positions ``[..., 2]`` of states ``[..., nx]``."""
        return states[..., :2]

    def goal_distance(self, states: Tensor) -> Tensor:
        """Distance (m) of each state's position to the goal: ``[..., nx] -> [...]``."""
        return torch.linalg.vector_norm(states[..., :2] - self.goal, dim=-1)

    def draw(self, ax) -> None:
        """Draw the start, the goal and its radius on a matplotlib ``Axes``."""
        draw_plane(ax, self.goal, self.goal_radius, self.initial_state[:2], self.workspace)
