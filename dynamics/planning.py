"""RRT demonstrations on simplified dynamics (paper, section 5.2 and A.4.4).

A rapidly-exploring random tree grows over a holonomic point (it moves up to ``step_size``
in any direction per edge) among box obstacles, goal-biased, for at most
``max_iterations`` samples. The resulting waypoint path is shortened (greedy shortcuts
through free space) and resampled to one point per control step. It ignores the car's
dynamics, so it is dynamically infeasible for the car: that is the point of section 5.2,
where MBD refines such a path into a feasible one.

Example:
    >>> from dynamics.car import Car2D
    >>> car = Car2D()
    >>> demo = rrt_demo(car, seed=0)          # [H, 5] states; x, y are the demonstration
    >>> demo.shape
    torch.Size([50, 5])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from torch_mbd.checks import check_int, check_positive, check_seed

from .geometry import points_in_boxes, segments_hit_boxes


class PlanningError(RuntimeError):
    """RRT found no path (the goal is unreachable, or not within the iteration budget)."""


def _generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator:
    """``generator`` itself, or a CPU generator seeded with ``seed``.

    ``seed=None`` means a fresh random seed, drawn from torch's global RNG (as everywhere in
    torch-mbd: ``torch.manual_seed`` makes it reproducible).
    """
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    seed = check_seed(seed)  # an int (NumPy's too) in [0, 2**64 - 1], or None
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def rrt(
    start: Tensor,
    goal: Tensor,
    obstacles: Tensor,
    workspace: Tensor,
    step_size: float = 0.2,
    max_iterations: int = 1000,
    goal_bias: float = 0.1,
    margin: float = 0.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    """Grow an RRT for a holonomic point from ``start`` until it connects to ``goal``.

    Each iteration samples a point (the goal with probability ``goal_bias``, else uniform in
    the workspace), steers the nearest tree node towards it by at most ``step_size``, and
    adds the new node when the edge misses every obstacle (grown by ``margin``). The search
    ends when a node can connect straight to the goal within ``step_size``.

    Args:
        start: ``[2]`` start position.
        goal: ``[2]`` goal position.
        obstacles: ``[k, 4]`` boxes ``(xmin, ymin, xmax, ymax)``.
        workspace: ``[2, 2]`` ``((xmin, ymin), (xmax, ymax))`` where points are sampled.
        step_size: longest edge (the paper: 0.2).
        max_iterations: sampling budget (the paper: 1000).
        goal_bias: probability of sampling the goal itself.
        margin: clearance kept from the obstacles.
        generator: a CPU ``torch.Generator``; default one seeded with ``seed``.
        seed: seed of that generator; ``None`` draws a fresh one from torch's global RNG.

    Returns:
        The waypoints ``[m, 2]`` from ``start`` to ``goal`` (on the CPU, in ``start``'s dtype).

    Raises:
        ValueError: bad arguments, or the start or the goal inside an obstacle or outside the workspace.
        PlanningError: no path within ``max_iterations`` (e.g. the goal is walled off).
    """
    step_size = check_positive("step_size", step_size)
    max_iterations = check_int("max_iterations", max_iterations, minimum=1)
    if not 0.0 <= goal_bias <= 1.0:
        raise ValueError(f"goal_bias must be in [0, 1], got {goal_bias!r}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    dtype = start.dtype if start.is_floating_point() else torch.float32
    start, goal = start.detach().cpu().to(dtype), goal.detach().cpu().to(dtype)
    obstacles, workspace = obstacles.detach().cpu().to(dtype), workspace.detach().cpu().to(dtype)
    if start.shape != (2,) or goal.shape != (2,):
        raise ValueError(f"start and goal must be [2] positions, got {tuple(start.shape)} and {tuple(goal.shape)}")
    if obstacles.dim() != 2 or obstacles.shape[-1] != 4:
        raise ValueError(f"obstacles must be [k, 4] boxes, got {tuple(obstacles.shape)}")
    if workspace.shape != (2, 2):
        raise ValueError(f"workspace must be [2, 2], got {tuple(workspace.shape)}")
    for name, point in (("start", start), ("goal", goal)):
        if bool(points_in_boxes(point, obstacles, margin)):
            raise ValueError(f"{name} {point.tolist()} lies inside an obstacle (grown by margin={margin})")
        if bool((point < workspace[0]).any() or (point > workspace[1]).any()):
            raise ValueError(f"{name} {point.tolist()} lies outside the workspace {workspace.tolist()}")
    gen = _generator(generator, seed)

    if not bool(segments_hit_boxes(start, goal, obstacles, margin)) and float((goal - start).norm()) <= step_size:
        return torch.stack([start, goal])
    nodes = torch.empty(max_iterations + 1, 2, dtype=dtype)
    parents = torch.full((max_iterations + 1,), -1, dtype=torch.long)
    nodes[0], count = start, 1
    low, span = workspace[0], workspace[1] - workspace[0]
    draws = torch.rand(max_iterations, 3, generator=gen, dtype=dtype)  # all randomness up front
    for it in range(max_iterations):
        target = goal if float(draws[it, 0]) < goal_bias else low + span * draws[it, 1:]
        dist = (nodes[:count] - target).norm(dim=-1)
        nearest = int(torch.argmin(dist))
        gap = float(dist[nearest])
        if gap == 0.0:
            continue
        new = nodes[nearest] + (target - nodes[nearest]) * min(1.0, step_size / gap)
        if bool(segments_hit_boxes(nodes[nearest], new, obstacles, margin)):
            continue
        nodes[count], parents[count] = new, nearest
        count += 1
        if float((goal - new).norm()) <= step_size and not bool(segments_hit_boxes(new, goal, obstacles, margin)):
            path, node = [goal], count - 1
            while node >= 0:
                path.append(nodes[node])
                node = int(parents[node])
            return torch.stack(path[::-1])
    raise PlanningError(
        f"RRT found no path from {start.tolist()} to {goal.tolist()} in {max_iterations} iterations "
        f"({count} tree nodes): the goal is unreachable or needs more iterations"
    )


def shortcut(path: Tensor, obstacles: Tensor, margin: float = 0.0) -> Tensor:
    """Shorten a waypoint path greedily: from each kept waypoint jump to the last one in sight.

    Args:
        path: ``[m, 2]`` collision-free waypoints.
        obstacles: ``[k, 4]`` boxes.
        margin: clearance kept from the obstacles.

    Returns:
        ``[m', 2]`` with ``m' <= m``, same end points, still collision-free.
    """
    kept, i = [path[0]], 0
    while i < len(path) - 1:
        visible = ~segments_hit_boxes(path[i], path[i + 1 :], obstacles, margin)  # [m - i - 1]
        visible[0] = True  # the next waypoint is reachable: the path is collision-free
        i = i + 1 + int(torch.nonzero(visible).max())
        kept.append(path[i])
    return torch.stack(kept)


def densify(path: Tensor, spacing: float) -> Tensor:
    """Insert points along a polyline so that no segment is longer than ``spacing``.

    Args:
        path: ``[m, 2]`` waypoints.
        spacing: the longest segment allowed, ``> 0``.

    Returns:
        ``[m', 2]`` with ``m' >= m``: the same polyline, the original waypoints included.
    """
    spacing = check_positive("spacing", spacing)
    if path.dim() != 2 or path.shape[-1] != 2 or len(path) < 1:
        raise ValueError(f"path must be [m, 2] waypoints with m >= 1, got {tuple(path.shape)}")
    pieces = [path[:1]]
    for a, b in zip(path[:-1], path[1:]):
        count = max(1, math.ceil(float((b - a).norm()) / spacing))
        frac = torch.arange(1, count + 1, dtype=path.dtype) / count
        pieces.append(a + frac.unsqueeze(-1) * (b - a))
    return torch.cat(pieces)


def interpolate_path(path: Tensor, arc_length: Tensor) -> Tensor:
    """The points of a polyline at given arc lengths from its start (clamped to its length).

    Args:
        path: ``[m, 2]`` waypoints.
        arc_length: ``[k]`` distances along the path.

    Returns:
        ``[k, 2]``.
    """
    if path.dim() != 2 or path.shape[-1] != 2 or len(path) < 1:
        raise ValueError(f"path must be [m, 2] waypoints with m >= 1, got {tuple(path.shape)}")
    if len(path) == 1:
        return path.expand(len(arc_length), 2).clone()
    seg = (path[1:] - path[:-1]).norm(dim=-1)  # [m-1]
    cum = torch.cat([seg.new_zeros(1), seg.cumsum(0)])  # [m]
    s = arc_length.to(path.dtype).clamp(0.0, float(cum[-1]))
    idx = torch.searchsorted(cum, s, right=True).clamp(1, len(path) - 1) - 1  # segment of each point
    frac = ((s - cum[idx]) / seg[idx].clamp(min=torch.finfo(path.dtype).tiny)).clamp(0.0, 1.0)
    return path[idx] + frac.unsqueeze(-1) * (path[idx + 1] - path[idx])


def speed_profile(
    num_points: int, dt: float, speed: float, accel: float | None = None, length: float | None = None
) -> Tensor:
    """Arc length travelled after each of ``num_points`` steps by a vehicle starting from rest.

    It accelerates at ``accel`` up to ``speed`` and cruises; with ``length`` it also brakes at
    ``accel`` so as to stop exactly at ``length`` (a trapezoidal, or triangular, speed
    profile) and stays there. ``accel = None`` moves at ``speed`` from the first step (and
    halts abruptly at ``length``).

    Args:
        num_points: ``H``.
        dt: step length in seconds.
        speed: cruising speed, ``> 0``.
        accel: acceleration and braking, ``> 0``, or ``None``.
        length: where to stop, ``>= 0``, or ``None`` (never stop).

    Returns:
        ``[H]`` float64 arc lengths.
    """
    dt, speed = check_positive("dt", dt), check_positive("speed", speed)
    accel = None if accel is None else check_positive("accel", accel)
    if length is not None and not length >= 0:
        raise ValueError(f"length must be >= 0 or None, got {length!r}")
    t = torch.arange(1, num_points + 1, dtype=torch.float64) * dt
    if accel is None:
        s = speed * t
        return s if length is None else s.clamp(max=length)

    def from_rest(t: Tensor) -> Tensor:
        t_ramp = speed / accel
        return torch.where(t < t_ramp, 0.5 * accel * t**2, 0.5 * speed * t_ramp + speed * (t - t_ramp))

    if length is None:
        return from_rest(t)
    if length >= speed**2 / accel:  # reaches the cruising speed
        duration = length / speed + speed / accel
    else:  # accelerates, then brakes at once
        duration = 2.0 * math.sqrt(length / accel)
    t = t.clamp(max=duration)
    return torch.where(t <= duration / 2, from_rest(t), length - from_rest(duration - t)).clamp(0.0, length)


def taut_path(path: Tensor, obstacles: Tensor, margin: float = 0.0) -> Tensor:
    """The shortest polyline through a subsequence of ``path``'s points that stays collision-free.

    Dynamic programming over the points in path order: ``cost[j] = min_{i < j, i sees j}
    cost[i] + |p_j - p_i|``, where "sees" means the straight segment misses every box (grown by
    ``margin``). On a [`densify`][dynamics.planning.densify]-ed path this pulls a wandering RRT path nearly taut
    around the obstacles while keeping its way round them.

    Args:
        path: ``[m, 2]`` collision-free waypoints.
        obstacles: ``[k, 4]`` boxes.
        margin: clearance kept from the obstacles.

    Returns:
        ``[m', 2]`` with ``m' <= m``, same end points, collision-free, no longer than ``path``.
    """
    m = len(path)
    if m <= 2:
        return path.clone()
    obstacles = obstacles.to(path.dtype)
    visible = ~segments_hit_boxes(path.unsqueeze(1), path.unsqueeze(0), obstacles, margin)  # [m, m]
    visible |= torch.eye(m, dtype=torch.bool).roll(1, dims=1)  # consecutive points: the path itself
    dist = (path.unsqueeze(1) - path.unsqueeze(0)).norm(dim=-1)  # [m, m]
    cost = torch.full((m,), math.inf, dtype=path.dtype)
    parent = torch.zeros(m, dtype=torch.long)
    cost[0] = 0.0
    for j in range(1, m):
        through = torch.where(visible[:j, j], cost[:j] + dist[:j, j], torch.full_like(cost[:j], math.inf))
        parent[j] = int(torch.argmin(through))
        cost[j] = through[parent[j]]
    order, node = [m - 1], m - 1
    while node != 0:
        node = int(parent[node])
        order.append(node)
    return path[torch.tensor(order[::-1])]


def resample_path(path: Tensor, num_points: int, spacing: float | None = None) -> Tensor:
    """Points at equal arc-length spacing along a polyline, excluding its first point.

    Point ``k`` (``1 <= k <= num_points``) lies at arc length ``min(k * spacing, L)``: with one
    point per control step, the path traversed at the constant speed ``spacing / dt``, then
    a halt at its end. The default spacing ``L / num_points`` ends on the last waypoint exactly
    at the last point.

    Args:
        path: ``[m, 2]`` waypoints.
        num_points: ``H``.
        spacing: arc length between consecutive points; ``None`` for ``L / num_points``.

    Returns:
        ``[H, 2]``.
    """
    num_points = check_int("num_points", num_points, minimum=1)
    spacing = None if spacing is None else check_positive("spacing", spacing)
    if path.dim() != 2 or path.shape[-1] != 2 or len(path) < 1:
        raise ValueError(f"path must be [m, 2] waypoints with m >= 1, got {tuple(path.shape)}")
    step = path_length(path) / num_points if spacing is None else float(spacing)
    return interpolate_path(path, torch.arange(1, num_points + 1, dtype=path.dtype) * step)


def path_states(points: Tensor, start: Tensor, dt: float) -> Tensor:
    """Car states ``[H, 5]`` for a position path: heading and speed from finite differences, no steering.

    Args:
        points: ``[H, 2]`` the positions after each control step.
        start: ``[>=2]`` the initial position (first two entries used).
        dt: the control period.

    Returns:
        ``[H, 5]`` rows ``[x, y, theta, v, 0]``.
    """
    previous = torch.cat([start[:2].reshape(1, 2).to(points), points[:-1]])
    delta = points - previous
    theta = torch.atan2(delta[:, 1], delta[:, 0])
    speed = delta.norm(dim=-1) / dt
    return torch.stack([points[:, 0], points[:, 1], theta, speed, torch.zeros_like(speed)], dim=-1)


def rrt_demo(
    model,
    horizon: int | None = None,
    speed: float | None = 1.2,
    accel: float | None = 2.0,
    margin: float = 0.3,
    smooth: bool = True,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    **rrt_options,
) -> Tensor:
    """An RRT demonstration for a planar model such as [`dynamics.car.Car2D`][dynamics.car.Car2D].

    Runs [`rrt`][dynamics.planning.rrt] from the model's start to its goal among its obstacles (kept ``margin``
    away, so that a car tracking the demonstration loosely stays clear). With ``smooth``
    the path is pulled taut ([`densify`][dynamics.planning.densify] to 0.05 m, then [`taut_path`][dynamics.planning.taut_path]): the raw tree
    path wanders, and a detour in the demonstration becomes a detour of the car. It is then
    timed like a vehicle that starts and stops at rest ([`speed_profile`][dynamics.planning.speed_profile]: ``accel`` up
    to ``speed``, cruising, braking to a halt on the goal, waiting there) and sampled once
    per control step; a horizon too short for the whole path ends the demonstration on the
    way, short of the goal.
    The points ignore the car's heading and turning radius: the demonstration stays
    dynamically infeasible, which is what section 5.2 of the paper is about.

    Args:
        model: has ``initial_state [>=2]``, ``goal [2]``, ``obstacles [k, 4]``, ``workspace [2, 2]``,
            ``horizon``, ``dt``, ``device`` and ``dtype``.
        horizon: number of demonstrated steps; default ``model.horizon``.
        speed: cruising speed along the path (m/s); ``None`` spreads the path evenly over the
            whole horizon (and ignores ``accel``). The default 1.2 m/s is slower than the car
            can drive: the demonstration's reward (Eq. 13's ``p_J(Y_demo)``) is then one MBD's
            samples can beat, so that the model takes over from the demonstration. At 2 m/s its
            reward was out of the car's reach, the demonstration won every sample's weight until
            the end and the plans, tracking it, overshot the goal or fell short (0 of seeds 0-4
            ended in it; 20 of 20 seeds at 1.2 m/s, ``benchmarks/car_umaze.py``).
            At 1.2 m/s, within the car's 5 s horizon it covers about 5.6 m of the 5.7-6.7 m
            paths: it stops short of the goal, and the car's terminal reward takes the plan there.
        accel: acceleration from rest (m/s^2); ``None`` moves at ``speed`` from the first step.
        margin: clearance from the obstacles.
        smooth: pull the raw RRT path taut.
        generator: a CPU ``torch.Generator`` for [`rrt`][dynamics.planning.rrt].
        seed: seed of [`rrt`][dynamics.planning.rrt] when ``generator`` is ``None`` (``None``: a fresh random seed).
        **rrt_options: ``step_size``, ``max_iterations``, ``goal_bias`` (defaults: 0.2, 1000, 0.1).

    Returns:
        ``[H, 5]`` demonstrated states on the model's device; only ``x, y`` (``demo_mask =
        [True, True, False, False, False]``) are meant to be trusted.
    """
    horizon = check_int("horizon", model.horizon if horizon is None else horizon, minimum=1)
    path = rrt(
        model.initial_state[:2], model.goal, model.obstacles, model.workspace, margin=margin,
        generator=generator, seed=seed, **rrt_options,
    )
    if smooth:
        obstacles = model.obstacles.detach().cpu().to(path.dtype)
        path = taut_path(densify(path, 0.05), obstacles, margin)
    if speed is None:
        points = resample_path(path, horizon)
    else:
        points = interpolate_path(path, speed_profile(horizon, model.dt, speed, accel, path_length(path)))
    return path_states(points, model.initial_state.detach().cpu(), model.dt).to(model.device, model.dtype)


# The state dimensions an RRT demonstration covers for the car: x and y.
XY_MASK = (True, True, False, False, False)


def xy_mask(device: str | torch.device = "cpu") -> Tensor:
    """``demo_mask`` for [`rrt_demo`][dynamics.planning.rrt_demo]: ``[5]`` boolean selecting x and y."""
    return torch.tensor(XY_MASK, device=device)


def path_length(path: Tensor) -> float:
    """Length of a ``[m, 2]`` polyline."""
    return float((path[1:] - path[:-1]).norm(dim=-1).sum()) if len(path) > 1 else 0.0


__all__ = [
    "PlanningError", "rrt", "shortcut", "densify", "taut_path", "interpolate_path", "speed_profile", "resample_path",
    "path_states", "rrt_demo", "xy_mask", "path_length",
]
