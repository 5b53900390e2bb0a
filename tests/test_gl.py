"""``MUJOCO_GL``: an unusable OpenGL backend is dropped with a message naming what to install.

MuJoCo reads ``MUJOCO_GL`` when it is first imported, so each case runs in a fresh Python
process. A missing library is simulated in that process: ``ctypes.util.find_library`` and
``ctypes.cdll`` (what PyOpenGL loads libraries with) refuse the hidden names, which
reproduces the crash of issue 16 (``MUJOCO_GL=osmesa`` without OSMesa: ``'NoneType' object
has no attribute 'glGetError'`` on ``import mujoco``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("mujoco") is None:  # not importorskip: importing mujoco here would fix MUJOCO_GL early
    pytest.skip("mujoco is not installed", allow_module_level=True)

from _hide_gl import HIDE_LIBRARIES  # noqa: E402

from dynamics.gl import gl_backend_problem, known_gl_values, library_found  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# Hides the libraries named in argv[1] (comma separated), imports MuJoCo (argv[2]: "tasks" through
# dynamics.tasks.import_mujoco, "ours" after dynamics.gl.choose_gl_backend, "plain" with a bare
# import) and simulates ten steps of a falling ball.
PROBE = HIDE_LIBRARIES + r"""
import json, os, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if sys.argv[2] == "plain":
        import mujoco
    elif sys.argv[2] == "tasks":  # the entry point every MuJoCo module uses (imports torch: slower)
        from dynamics.tasks import import_mujoco
        mujoco = import_mujoco()
    else:
        from dynamics.gl import choose_gl_backend
        choose_gl_backend()
        import mujoco
    from dynamics.gl import gl_problem
model = mujoco.MjModel.from_xml_string(
    "<mujoco><worldbody><body><freejoint/><geom size='.1'/></body></worldbody></mujoco>"
)
data = mujoco.MjData(model)
mujoco.mj_step(model, data, 10)
print(json.dumps({
    "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
    "warnings": [str(w.message) for w in caught if "MUJOCO_GL" in str(w.message)],
    "fell": float(data.qvel[2]) < 0,
    "problem": gl_problem(),
}))
"""


def probe(hide: str, mujoco_gl: str | None, mode: str = "ours") -> tuple[subprocess.CompletedProcess, dict | None]:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    if mujoco_gl is not None:
        env["MUJOCO_GL"] = mujoco_gl
    done = subprocess.run(
        [sys.executable, "-c", PROBE, hide, mode], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    return done, result


@pytest.mark.parametrize(
    "mujoco_gl, hide, words, mode",
    [
        ("osmesa", "OSMesa", ["MUJOCO_GL='osmesa'", "apt-get install libosmesa6", "libOSMesa was not found"], "tasks"),
        ("egl", "EGL", ["MUJOCO_GL='egl'", "libegl1", "libEGL was not found"], "ours"),
        ("OSMesa ", "OSMesa", ["apt-get install libosmesa6"], "ours"),  # MuJoCo lower-cases and strips it
        ("bogus", "", ["MUJOCO_GL='bogus'", "egl", "osmesa"], "ours"),
    ],
)
def test_unusable_backend_is_dropped_with_a_message_and_simulation_works(mujoco_gl, hide, words, mode):
    done, result = probe(hide, mujoco_gl, mode)
    assert done.returncode == 0, done.stderr[-3000:]
    assert result["MUJOCO_GL"] is None and result["fell"]  # unset, and MuJoCo simulates
    assert len(result["warnings"]) == 1 and result["problem"] == result["warnings"][0]
    for word in words + ["simulation needs no OpenGL"]:
        assert word in result["warnings"][0], result["warnings"][0]


@pytest.mark.skipif(sys.platform != "linux", reason="PyOpenGL's OSMesa platform is Linux-only here")
def test_the_simulated_missing_library_is_the_crash_of_the_issue():
    """Guards the probe: with OSMesa hidden, a bare ``import mujoco`` fails as issue 16 reports."""
    done, _ = probe("OSMesa", "osmesa", mode="plain")
    assert done.returncode != 0 and "glGetError" in done.stderr, done.stderr[-2000:]


@pytest.mark.skipif(not library_found("OSMesa"), reason="OSMesa is not installed")
def test_a_usable_backend_is_kept_without_a_warning():
    done, result = probe("", "osmesa")
    assert done.returncode == 0, done.stderr[-3000:]
    assert result == {"MUJOCO_GL": "osmesa", "warnings": [], "fell": True, "problem": None}


@pytest.mark.parametrize("mujoco_gl", ["disable", "glfw"])
def test_values_needing_no_library_check_are_left_alone(mujoco_gl):
    done, result = probe("OSMesa,EGL", mujoco_gl)
    assert done.returncode == 0, done.stderr[-3000:]
    assert result["MUJOCO_GL"] == mujoco_gl and result["warnings"] == []


def test_unset_with_no_library_stays_unset():
    done, result = probe("OSMesa,EGL", None)
    assert done.returncode == 0, done.stderr[-3000:]
    assert result["MUJOCO_GL"] is None and result["warnings"] == [] and result["fell"]


def test_problem_sentences():
    assert "egl" in known_gl_values("Linux") and "wgl" not in known_gl_values("Linux")
    assert gl_backend_problem("disable") is None
    problem = gl_backend_problem("vulkan")
    assert "MUJOCO_GL='vulkan'" in problem and "not an OpenGL backend MuJoCo knows" in problem


@pytest.mark.skipif(sys.platform != "linux" or not library_found("EGL"), reason="needs Linux with an EGL library")
def test_unset_without_osmesa_takes_egl_which_renders_on_the_cpu_too():
    done, result = probe("OSMesa", None)
    assert done.returncode == 0, done.stderr[-3000:]
    assert result["MUJOCO_GL"] == "egl" and result["warnings"] == [] and result["fell"]
