"""Axis-aligned box obstacles in the plane, as batched torch.

Boxes are rows ``(xmin, ymin, xmax, ymax)`` of a ``[k, 4]`` tensor. These tests are shared by
the car (`dynamics.car`: feasibility of a rollout) and the RRT planner
([`dynamics.planning`][dynamics.planning]: free space for tree edges and shortcuts); they live here so that
neither of those modules imports the other. [`draw_plane`][dynamics.geometry.draw_plane] draws such a
planar task (the car's U-maze, the point mass) on a matplotlib ``Axes``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def points_in_boxes(points: Tensor, boxes: Tensor, margin: float = 0.0) -> Tensor:
    """Whether each point lies in any box (closed boxes, grown by ``margin``).

    Args:
        points: ``[..., 2]``.
        boxes: ``[k, 4]`` rows ``(xmin, ymin, xmax, ymax)``.
        margin: distance added on every side of every box.

    Returns:
        Boolean ``[...]``.
    """
    p = points.unsqueeze(-2)  # [..., 1, 2]
    inside = (p >= boxes[:, :2] - margin) & (p <= boxes[:, 2:] + margin)  # [..., k, 2]
    return inside.all(-1).any(-1)


def distance_to_boxes(points: Tensor, boxes: Tensor) -> Tensor:
    """Euclidean distance from each point to the nearest box (0 inside a box).

    Args:
        points: ``[..., 2]``.
        boxes: ``[k, 4]`` rows ``(xmin, ymin, xmax, ymax)``.

    Returns:
        ``[...]``.
    """
    p = points.unsqueeze(-2)  # [..., 1, 2]
    gap = torch.maximum(boxes[:, :2] - p, p - boxes[:, 2:]).clamp(min=0.0)  # [..., k, 2]
    return torch.linalg.vector_norm(gap, dim=-1).amin(-1)


def segments_hit_boxes(start: Tensor, end: Tensor, boxes: Tensor, margin: float = 0.0) -> Tensor:
    """Whether each straight segment ``start -> end`` touches any box (slab test).

    Exact for segments of any length, so a fast car cannot tunnel through a thin wall
    between two time steps.

    Args:
        start: ``[..., 2]`` first end point of each segment.
        end: ``[..., 2]`` second end point (broadcastable with ``start``).
        boxes: ``[k, 4]`` rows ``(xmin, ymin, xmax, ymax)``.
        margin: distance added on every side of every box.

    Returns:
        Boolean ``[...]``; non-finite segments count as hits.
    """
    start, end = torch.broadcast_tensors(start, end)
    p0 = start.unsqueeze(-2)  # [..., 1, 2]
    d = (end - start).unsqueeze(-2)
    lo, hi = boxes[:, :2] - margin, boxes[:, 2:] + margin  # [k, 2]
    moving = d != 0
    safe_d = torch.where(moving, d, torch.ones_like(d))
    t_a, t_b = (lo - p0) / safe_d, (hi - p0) / safe_d
    t_near = torch.where(moving, torch.minimum(t_a, t_b), torch.full_like(t_a, -math.inf))
    t_far = torch.where(moving, torch.maximum(t_a, t_b), torch.full_like(t_a, math.inf))
    # A coordinate that does not move must already lie within the slab.
    within = (p0 >= lo) & (p0 <= hi)
    slab_ok = moving | within  # [..., k, 2]
    enter = t_near.amax(-1).clamp(min=0.0)
    leave = t_far.amin(-1).clamp(max=1.0)
    hit = slab_ok.all(-1) & (enter <= leave)
    finite = torch.isfinite(start).all(-1) & torch.isfinite(end).all(-1)
    return hit.any(-1) | ~finite


def path_hits_boxes(initial: Tensor, positions: Tensor, boxes: Tensor, margin: float = 0.0) -> Tensor:
    """Whether a polyline ``initial -> positions[0] -> ... -> positions[-1]`` touches any box.

    Args:
        initial: ``[..., 2]`` (or ``[2]``) the position before the first step.
        positions: ``[..., H, 2]``.
        boxes: ``[k, 4]``.
        margin: distance added on every side of every box.

    Returns:
        Boolean ``[...]``.
    """
    previous = torch.cat([initial.expand(*positions.shape[:-2], 1, 2), positions[..., :-1, :]], dim=-2)
    return segments_hit_boxes(previous, positions, boxes, margin).any(-1)


def draw_plane(
    ax, goal: Tensor, goal_radius: float, start: Tensor, workspace: Tensor, obstacles: Tensor | None = None
) -> None:
    """Draw a planar task on a matplotlib ``Axes``: the box ``obstacles``, the goal region, the start.

    Args:
        ax: the ``Axes``; its limits become the ``workspace`` and its aspect equal.
        goal: ``[2]`` the goal's position; ``goal_radius`` the radius of its region (m).
        start: ``[2]`` the start position.
        workspace: ``[2, 2]`` rows ``(xmin, ymin)``, ``(xmax, ymax)``.
        obstacles: ``[k, 4]`` boxes ``(xmin, ymin, xmax, ymax)``, or ``None``.
    """
    from matplotlib.patches import Circle, Rectangle

    if obstacles is not None:
        for xmin, ymin, xmax, ymax in obstacles.cpu().tolist():
            ax.add_patch(Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, color="0.35", zorder=1))
    gx, gy = goal.cpu().tolist()
    ax.add_patch(Circle((gx, gy), goal_radius, color="tab:green", alpha=0.3, zorder=1))
    ax.plot([gx], [gy], marker="*", color="tab:green", markersize=14, zorder=5, label="goal")
    sx, sy = start.cpu().tolist()
    ax.plot([sx], [sy], marker="o", color="black", markersize=7, zorder=5, label="start")
    (xmin, ymin), (xmax, ymax) = workspace.cpu().tolist()
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
