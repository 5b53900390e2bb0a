"""Task registry: ``make(name, **kwargs)`` builds a rollout model by name; ``task_info(name)`` describes one.

Modules register a factory with :func:`register`; nothing heavy is imported until
``make`` builds that task. :func:`task_info` reads a task's metadata (horizon, recommended
budget, backends) without building a simulator: for the MuJoCo tasks it reads the
:class:`~dynamics.tasks.Task` definition (which compiles no model), for the car the analytic
model itself (torch only).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from .backends import BACKENDS

# name -> "module:attribute" of a factory, imported lazily so that building the car never
# imports MuJoCo.
# The MuJoCo tasks take ``backend=`` (one of dynamics.backends.BACKENDS) and ``device=...``.
_FACTORIES: dict[str, str | Callable] = {
    "car2d": "dynamics.car:Car2D",
    "hopper": "dynamics.model:make_hopper",
    "walker2d": "dynamics.model:make_walker2d",
    "half_cheetah": "dynamics.model:make_half_cheetah",
    "ant": "dynamics.model:make_ant",
    "humanoid_standup": "dynamics.model:make_humanoid_standup",
    "humanoid_run": "dynamics.model:make_humanoid_run",
    "push_t": "dynamics.push_t:PushT",
    "humanoid_jog": "dynamics.humanoid_jog:make_humanoid_jog",
}

# name -> "module:attribute" of a cheap callable returning what the task's metadata is read from:
# a ``dynamics.tasks.Task`` (not compiled) or a built model that is cheap to build (the car).
_METADATA: dict[str, str | Callable] = {
    "car2d": "dynamics.car:Car2D",
    "hopper": "dynamics.tasks:hopper",
    "walker2d": "dynamics.tasks:walker2d",
    "half_cheetah": "dynamics.tasks:half_cheetah",
    "ant": "dynamics.tasks:ant",
    "humanoid_standup": "dynamics.tasks:humanoid_standup",
    "humanoid_run": "dynamics.tasks:humanoid_run",
    "push_t": "dynamics.tasks:push_t",
    "humanoid_jog": "dynamics.humanoid_jog:humanoid_jog",
}

_DESCRIPTIONS: dict[str, str] = {
    "car2d": "bicycle car round a U-shaped obstacle to a goal (analytic torch dynamics; RRT demos)",
    "hopper": "one-legged hopper: hop forward, torso near its standing height",
    "walker2d": "planar biped: walk forward upright",
    "half_cheetah": "planar cheetah: run forward",
    "ant": "quadruped ant: run forward and stay healthy",
    "humanoid_standup": "humanoid lying on the floor: stand up",
    "humanoid_run": "humanoid: run forward upright",
    "push_t": "pusher disk pushes a T-shaped block to a goal pose on a table",
    "humanoid_jog": "humanoid run steered by a human jogging mocap clip (partial-state demo)",
}

# a task whose metadata is a ``Task`` runs on every MuJoCo backend (dynamics.backends.BACKENDS);
# the car's rollout is plain torch
TORCH_BACKEND = ("torch",)


@dataclass(frozen=True)
class TaskInfo:
    """What :func:`task_info` says about a registered task.

    Attributes:
        name: the registered name.
        description: one line.
        horizon: the default number of control steps ``H``.
        num_samples: the task's recommended samples per diffusion step, or ``None`` (no recommendation).
        num_steps: the task's recommended number of diffusion steps, or ``None``.
        temperature: the task's recommended temperature, or ``None``.
        backends: the simulators it runs on (``"torch"`` for analytic models).
    """

    name: str
    description: str
    horizon: int
    num_samples: int | None
    num_steps: int | None
    temperature: float | None
    backends: tuple[str, ...]


def register(
    name: str, factory: str | Callable, description: str | None = None, metadata: str | Callable | None = None
) -> None:
    """Register a factory (a callable or ``"module:attribute"``) under ``name``.

    Args:
        name: the task name.
        factory: builds the model: ``factory(**kwargs)``.
        description: one line for ``torch-mbd tasks``; default the first line of the factory's docstring.
        metadata: a cheap callable returning a ``dynamics.tasks.Task`` or a model to read the horizon
            and recommended budget from; default the factory itself (so :func:`task_info` builds the model).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not (callable(factory) or (isinstance(factory, str) and factory.count(":") == 1)):
        raise TypeError(f"factory must be a callable or 'module:attribute', got {factory!r}")
    _FACTORIES[name] = factory
    _METADATA[name] = factory if metadata is None else metadata
    if description is not None:
        _DESCRIPTIONS[name] = str(description).strip().splitlines()[0]
    else:
        _DESCRIPTIONS.pop(name, None)


def task_names() -> list[str]:
    """The registered task names, sorted."""
    return sorted(_FACTORIES)


def _resolve(target: str | Callable) -> Callable:
    if isinstance(target, str):
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)
    return target


def _check_name(name: str) -> None:
    if name not in _FACTORIES:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")


def make(name: str, **kwargs):
    """Build the rollout model registered as ``name``; keyword arguments go to its factory.

    Example:
        >>> model = make("hopper", backend="mujoco")           # or "warp" / "mjx", device="cuda"

    Raises:
        ValueError: for an unknown name (the message lists the known ones), or a bad option
            such as an unknown ``backend``.
        ImportError: naming the pip extra when the backend's package is missing.
    """
    _check_name(name)
    return _resolve(_FACTORIES[name])(**kwargs)


def _optional(obj, attr: str):
    value = getattr(obj, attr, None)
    return None if value is None or isinstance(value, bool) else value


def task_info(name: str) -> TaskInfo:
    """The metadata of the task ``name``: description, horizon, recommended budget, backends.

    Cheap for the built-in tasks: no MuJoCo model is compiled (the MuJoCo tasks' ``Task``
    definitions are read, the car is built, which is a few small tensors).

    Raises:
        ValueError: for an unknown name.
    """
    from .tasks import Task

    _check_name(name)
    source = _resolve(_METADATA[name])()
    description = _DESCRIPTIONS.get(name)
    if description is None:
        doc = (getattr(_resolve(_FACTORIES[name]), "__doc__", None) or "").strip()
        description = doc.splitlines()[0] if doc else ""
    if isinstance(source, Task):
        backends = BACKENDS
    elif hasattr(source, "backend_name"):  # a built MujocoModel
        backends = BACKENDS
    else:
        backends = TORCH_BACKEND
    horizon = getattr(source, "horizon", None)
    if isinstance(horizon, bool) or not isinstance(horizon, int):
        raise TypeError(f"task {name!r}: its metadata has no integer horizon (got {horizon!r})")
    return TaskInfo(
        name=name,
        description=description,
        horizon=horizon,
        num_samples=_optional(source, "num_samples"),
        num_steps=_optional(source, "num_steps"),
        temperature=_optional(source, "temperature"),
        backends=backends,
    )
