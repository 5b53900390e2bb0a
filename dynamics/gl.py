"""MuJoCo's OpenGL backend (``MUJOCO_GL``), checked before ``mujoco`` is first imported.

MuJoCo reads ``MUJOCO_GL`` once, when it is imported, and an unusable value breaks that
import: ``MUJOCO_GL=osmesa`` without the OSMesa library crashes it with ``'NoneType' object
has no attribute 'glGetError'`` (PyOpenGL finds no library to bind), an unknown value with a
``RuntimeError``. Simulation needs no OpenGL; only rendering (`dynamics.render`) does.
So [`choose_gl_backend`][dynamics.gl.choose_gl_backend], which `dynamics.tasks.import_mujoco` calls before the
first import, does this:

* ``MUJOCO_GL`` unset: [`offscreen_backend`][dynamics.gl.offscreen_backend] (``egl`` on a machine with an NVIDIA device
  and the EGL library, else ``osmesa`` where the OSMesa library is installed, else ``egl``
  where Mesa's EGL is, which renders on the CPU), else it stays unset;
* ``MUJOCO_GL`` set to ``osmesa``, ``egl`` or ``glx`` whose shared library is not found, or to
  a value MuJoCo does not know: a warning naming the package to install, and ``MUJOCO_GL`` is
  removed from the environment, so that MuJoCo imports and simulates; rendering then fails
  with a message saying what to install, and [`gl_problem`][dynamics.gl.gl_problem] returns the warning's text.

``mujoco`` imported before ``dynamics`` read ``MUJOCO_GL`` without this check; where that gave
MuJoCo's default GLFW context on a machine with no display ([`has_display`][dynamics.gl.has_display]),
[`dynamics.render.render`][dynamics.render.render] switches MuJoCo's renderer to [`offscreen_backend`][dynamics.gl.offscreen_backend].

A library counts as found when ``ctypes.util.find_library`` finds it or when one of the file
names PyOpenGL tries (``libNAME.so``, ``libNAME.so.9`` ... ``libNAME.so.0``) loads.
"""

from __future__ import annotations

import ctypes.util
import os
import platform
import sys
import warnings
from pathlib import Path

# MUJOCO_GL value -> the shared libraries PyOpenGL loads for it: one of each group must be found
GL_LIBRARIES: dict[str, tuple[tuple[str, ...], ...]] = {
    "osmesa": (("OSMesa",),),
    "egl": (("EGL",), ("OpenGL", "GL")),
    "glx": (("GL",),),
}
# MUJOCO_GL value -> what to install (Debian / Ubuntu package names)
GL_PACKAGES: dict[str, str] = {
    "osmesa": "the OSMesa library (Debian/Ubuntu: apt-get install libosmesa6)",
    "egl": "the EGL and OpenGL libraries (Debian/Ubuntu: apt-get install libegl1 libopengl0; "
    "on an NVIDIA GPU the driver provides EGL)",
    "glx": "the OpenGL library and an X display (Debian/Ubuntu: apt-get install libgl1)",
}
_OFF = ("disable", "disabled", "off", "false", "0")
_DEFAULT = ("enable", "enabled", "on", "true", "1", "glfw", "")
_PLATFORM_VALUES = {"Linux": ("glx", "egl", "osmesa"), "Windows": ("wgl",), "Darwin": ("cgl",)}

_problem: str | None = None


def known_gl_values(system: str | None = None) -> tuple[str, ...]:
    """The ``MUJOCO_GL`` values MuJoCo accepts on ``system`` (default: this one), lower case."""
    system = platform.system() if system is None else system
    return _OFF + _DEFAULT + _PLATFORM_VALUES.get(system, ())


def library_found(name: str) -> bool:
    """Whether the shared library ``name`` (e.g. ``"OSMesa"``) can be loaded, as PyOpenGL would load it."""
    if ctypes.util.find_library(name):
        return True
    for filename in [f"lib{name}.so"] + [f"lib{name}.so.{i}" for i in range(9, -1, -1)]:
        try:
            ctypes.cdll.LoadLibrary(filename)
        except OSError:
            continue
        return True
    return False


def missing_gl_libraries(backend: str) -> list[str]:
    """The shared libraries ``MUJOCO_GL=backend`` needs that are not found (``[]``: all there).

    Only ``osmesa``, ``egl`` and ``glx`` are checked (they bind libraries through PyOpenGL);
    any other value gives ``[]``. A group such as ``OpenGL | GL`` is reported as one entry.
    """
    groups = GL_LIBRARIES.get(backend.lower().strip(), ())
    return [" or ".join(f"lib{name}" for name in group) for group in groups
            if not any(library_found(name) for name in group)]


def gl_backend_problem(value: str) -> str | None:
    """Why ``MUJOCO_GL=value`` cannot work on this machine (one sentence saying what to do), or ``None``."""
    backend = value.lower().strip()
    if backend not in known_gl_values():
        backends = ("glfw",) + _PLATFORM_VALUES.get(platform.system(), ())
        return (
            f"MUJOCO_GL={value!r} is not an OpenGL backend MuJoCo knows on {platform.system()} "
            f"(it takes {', '.join(backends)}, or 'disable')"
        )
    missing = missing_gl_libraries(backend)
    if missing:
        return f"MUJOCO_GL={value!r} needs {GL_PACKAGES[backend]}, but {', '.join(missing)} was not found"
    return None


def has_display() -> bool:
    """Whether this process can open windows (``DISPLAY`` or ``WAYLAND_DISPLAY`` set, or not Linux).

    Where it can, MuJoCo's default (GLFW) renders through a hidden window; where it cannot,
    GLFW fails and rendering needs an offscreen backend.
    """
    if platform.system() != "Linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def offscreen_backend() -> str | None:
    """The offscreen OpenGL backend for this machine: ``"egl"``, ``"osmesa"`` or ``None`` (none found).

    ``egl`` on a machine with an NVIDIA device (the driver's EGL renders on the GPU), else
    ``osmesa`` where the OSMesa library is installed (a software rasterizer made for this),
    else ``egl`` where an EGL library is found (Mesa's EGL renders on the CPU, surfaceless),
    else ``None``. Only Linux has these backends.
    """
    if platform.system() != "Linux":
        return None
    egl = not missing_gl_libraries("egl")
    if egl and Path("/dev/nvidia0").exists():
        return "egl"
    if not missing_gl_libraries("osmesa"):
        return "osmesa"
    return "egl" if egl else None


def gl_problem() -> str | None:
    """What [`choose_gl_backend`][dynamics.gl.choose_gl_backend] found wrong with the user's ``MUJOCO_GL`` (``None``: nothing)."""
    return _problem


def choose_gl_backend() -> None:
    """Set, keep or drop ``MUJOCO_GL`` before ``mujoco`` is first imported (see the module docstring).

    Does nothing once ``mujoco`` is imported (the value was read then). Warns (``UserWarning``)
    when it removes a user's unusable ``MUJOCO_GL``.
    """
    global _problem
    if "mujoco" in sys.modules:
        return
    value = os.environ.get("MUJOCO_GL")
    if value is None:
        backend = offscreen_backend()
        if backend is not None:
            os.environ["MUJOCO_GL"] = backend
        return
    problem = gl_backend_problem(value)
    if problem is None:
        return
    _problem = (
        f"{problem}. MUJOCO_GL is unset for this process: simulation needs no OpenGL, but "
        "rendering videos will not work until that is fixed"
    )
    del os.environ["MUJOCO_GL"]
    warnings.warn(_problem, UserWarning, stacklevel=3)
