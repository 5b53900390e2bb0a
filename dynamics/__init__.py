"""Batched rollout models for torch-mbd: analytic torch dynamics and MuJoCo backends.

Every model implements [`torch_mbd.rollout.RolloutModel`][torch_mbd.rollout.RolloutModel]. ``make(name, ...)`` builds
one by task name; heavy optional backends are imported lazily, inside the model that needs them.
"""

from .registry import TaskInfo, make, register, task_info, task_names

__all__ = ["TaskInfo", "make", "register", "task_info", "task_names"]
