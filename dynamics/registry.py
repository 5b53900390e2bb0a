"""Task registry: ``make(name, **kwargs)`` builds a rollout model by name.

Modules register a factory with :func:`register`; nothing heavy is imported until
``make`` builds that task.
"""

from __future__ import annotations

import importlib
from typing import Callable

# name -> "module:attribute" of a factory, imported lazily so that building the car never
# imports MuJoCo.
# The MuJoCo tasks take ``backend="mujoco"|"warp"|"mjx"`` and ``device=...``.
_FACTORIES: dict[str, str | Callable] = {
    "car2d": "dynamics.car:Car2D",
    "hopper": "dynamics.model:make_hopper",
    "walker2d": "dynamics.model:make_walker2d",
    "half_cheetah": "dynamics.model:make_half_cheetah",
    "ant": "dynamics.model:make_ant",
    "humanoid_standup": "dynamics.model:make_humanoid_standup",
    "humanoid_run": "dynamics.model:make_humanoid_run",
    "push_t": "dynamics.model:make_push_t",
    "humanoid_jog": "dynamics.humanoid_jog:make_humanoid_jog",
}


def register(name: str, factory: str | Callable) -> None:
    """Register a factory (a callable or ``"module:attribute"``) under ``name``."""
    _FACTORIES[name] = factory


def task_names() -> list[str]:
    """The registered task names, sorted."""
    return sorted(_FACTORIES)


def make(name: str, **kwargs):
    """Build the rollout model registered as ``name``; keyword arguments go to its factory.

    Example:
        >>> model = make("hopper", backend="mujoco")           # or "warp" / "mjx", device="cuda"

    Raises:
        ValueError: for an unknown name (the message lists the known ones), or a bad option
            such as an unknown ``backend``.
        ImportError: naming the pip extra when the backend's package is missing.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    factory = _FACTORIES[name]
    if isinstance(factory, str):
        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(**kwargs)
