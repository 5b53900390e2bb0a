"""Bad and unusual inputs to ``dynamics`` and the ``torch-mbd`` command, and what each one gets.

Each case is a few lines of Python run in a fresh interpreter (so that a crash or a hang is seen
as one, not taken for a result) and classified as:

* ``clear error``: the expected exception, its message naming what is wrong;
* ``correct``: the input is handled and the result checks out;
* ``unhelpful``: an exception of another kind or without the expected words, or a good input refused;
* ``silently wrong``: a bad input accepted, or a result that fails its check;
* ``crash``: the interpreter died (a signal, e.g. 11);
* ``hang``: no answer within the case's time limit;
* ``did not run``: the interpreter exited with an error before the case ran (a broken checkout).

The same cases are tests in each module's test file (``tests/test_car.py``, ``test_tasks.py``,
``test_backends.py``, ``test_rollout.py``, ``test_cli.py``, ``test_humanoid_jog.py``); this script
runs them all and prints one table, so that the outcomes can be counted.

    python benchmarks/fuzz_inputs.py                  # every fast case (about 2 minutes on 2 cores)
    python benchmarks/fuzz_inputs.py --slow           # also the warp and MJX cases (they compile)
    python benchmarks/fuzz_inputs.py --only car       # the cases whose name contains "car"
    python benchmarks/fuzz_inputs.py --root ../other  # the same cases on another checkout
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PREAMBLE = '''
import contextlib, io, json, os, sys, tempfile, threading, time
import numpy as np
import torch
import dynamics
import torch_mbd
from torch_mbd import cli


class CommandFailed(Exception):
    """The CLI exited with status 2 and one line, before planning."""


class PlanStarted(Exception):
    """The plan started although the check under test should have stopped it first."""


def cli_error(argv, folder):
    """Run ``torch-mbd`` in ``folder``; raise CommandFailed(line) if it fails in time, as it should."""
    def no_plan(*args, **kwargs):
        raise PlanStarted("planning started before the output was found unwritable")
    torch_mbd.plan = no_plan
    os.chdir(folder)
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    elapsed = time.perf_counter() - start
    lines = err.getvalue().strip().splitlines()
    if rc == 2 and len(lines) == 1 and elapsed < 1.0:
        raise CommandFailed(lines[0])
    raise RuntimeError(f"exit status {rc} after {elapsed:.1f} s: {err.getvalue()!r}")


def through_pipe(data, read):
    """``read(path)`` of a named pipe that another thread fills with ``data``."""
    folder = tempfile.mkdtemp()
    fifo = os.path.join(folder, "clip.npz")
    os.mkfifo(fifo)
    def write():
        try:
            with open(fifo, "wb") as f:
                f.write(data)
        except BrokenPipeError:
            pass
    threading.Thread(target=write, daemon=True).start()
    return read(fifo)


def clip_bytes():
    """An .npz of a small synthetic jogging clip (what load_clip reads)."""
    t = np.arange(21)[:, None] * 0.03
    torso = np.array([3.0, -2.0, 1.2]) + t * np.array([0.0, 1.5, 0.0])
    clip = {name: torso + offset for name, offset in {
        "torso": (0, 0, 0), "left_thigh": (-0.1, 0.05, -0.5), "right_thigh": (0.1, -0.05, -0.5),
        "left_shin": (-0.1, 0.1, -0.9), "right_shin": (0.1, -0.1, -0.9)}.items()}
    for side, y in (("l", -0.1), ("r", 0.1)):
        clip[side + "hip"], clip[side + "knee"], clip[side + "toe"] = (torso + [y, 0, -0.3], torso + [y, 0, -0.7],
                                                                        torso + [y, 0, -1.15])
    buffer = io.BytesIO()
    np.savez(buffer, **clip)
    return buffer.getvalue()


def feasible_model(values):
    """A 1-D rollout model whose samples are infeasible (reported as ``values[1]``) when their last
    action is above 0.05, feasible (``values[0]``) otherwise."""
    class Reach:
        action_dim, state_dim, horizon, device = 1, 1, 4, torch.device("cpu")
        action_bounds = (-torch.ones(1), torch.ones(1))
        initial_state = torch.zeros(1)
        def rollout(self, actions):
            states = actions.cumsum(-2)
            ok = actions[..., -1, 0] <= 0.05
            good, bad = (torch.tensor(v) for v in values)
            feasible = torch.where(ok, good, bad)
            return torch_mbd.rollout.Trajectory(states, -(states[..., 0] - 1).abs(), feasible)
    return Reach()
'''

RUNNER = PREAMBLE + '''
try:
    exec(compile(sys.argv[1], "<case>", "exec"))
except AssertionError as err:
    print(json.dumps({"status": "assert", "type": "AssertionError", "message": str(err)[:300]}))
except BaseException as err:
    print(json.dumps({"status": "raised", "type": type(err).__name__, "message": str(err)[:300]}))
else:
    print(json.dumps({"status": "ok"}))
'''


@dataclass
class Case:
    """One input: ``code`` either completes (``expect="correct"``, its asserts the check) or raises
    ``error`` with every one of ``words`` in the message (``expect="error"``)."""

    name: str
    code: str
    expect: str = "error"
    error: str = "ValueError"
    words: tuple[str, ...] = ()
    slow: bool = False
    timeout: float = 180.0


CASES = [
    # ---- threads (tests/test_backends.py)
    Case("threads: 2 threads x 50 hopper rollouts of 8 x 5 zeros", """
m = dynamics.make("hopper")
def work():
    for _ in range(50):
        m.rollout(torch.zeros(8, 5, m.action_dim))
ts = [threading.Thread(target=work) for _ in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
""", expect="correct"),
    Case("threads: 8 concurrent plans on one hopper = the sequential plans", """
m = dynamics.make("hopper", horizon=8)
kw = dict(num_samples=64, num_steps=3, progress=False)
seq = [torch_mbd.plan(m, seed=s, **kw) for s in range(8)]
out = [None] * 8
def work(s):
    out[s] = torch_mbd.plan(m, seed=s, **kw)
ts = [threading.Thread(target=work, args=(s,)) for s in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
assert all(torch.equal(a.actions, b.actions) for a, b in zip(seq, out)), "a concurrent plan differs"
""", expect="correct"),
    *[Case(f"threads: 4 threads of rollouts on one {backend} model = sequential", f"""
m = dynamics.make("hopper", backend="{backend}", horizon=4)
batches = [torch.rand(3, 4, 3, generator=torch.Generator().manual_seed(k)) * 2 - 1 for k in range(4)]
expected = [m.rollout(b).states for b in batches]
bad = []
def work(k):
    for _ in range(5):
        if not torch.equal(m.rollout(batches[k]).states, expected[k]):
            bad.append(k)
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
assert not bad, f"threads {{sorted(set(bad))}} got another thread's states"
""", expect="correct", slow=True, timeout=600) for backend in ("warp", "mjx")],
    # ---- the car (tests/test_car.py)
    Case("car: NaN start", "dynamics.make('car2d', start=(float('nan'), 0, 0, 0, 0))", words=("start must be finite",)),
    Case("car: infinite goal", "dynamics.make('car2d', goal=np.array([np.inf, 0.0]))", words=("goal must be finite",)),
    Case("car: NaN obstacle", "dynamics.make('car2d', obstacles=torch.tensor([[0.4, -1.2, float('nan'), 1.2]]))",
         words=("obstacles must be finite",)),
    Case("car: infinite workspace", "dynamics.make('car2d', workspace=((-3, -3), (np.inf, 3)))",
         words=("workspace must be finite",)),
    Case("car: an infinite action is infeasible", """
car = dynamics.make('car2d', horizon=5)
a = torch.zeros(3, 5, 2); a[1, 2, 0] = float('inf'); a[2, 0, 1] = -float('inf')
assert car.rollout(a).feasible.tolist() == [True, False, False], car.rollout(a).feasible.tolist()
""", expect="correct"),
    Case("car: rollout with H = 0", "dynamics.make('car2d').rollout(torch.zeros(4, 0, 2))",
         words=("at least one control step", "H >= 1")),
    Case("car: plan with horizon=0", "torch_mbd.plan(dynamics.make('car2d'), horizon=0, num_samples=4, num_steps=1, progress=False)",
         words=("horizon",)),
    Case("car: NumPy numbers (np.int64 horizon, np.float32 dt, np.int32 weight)", """
car = dynamics.make('car2d', horizon=np.int64(8), dt=np.float32(0.1), stop_weight=np.int32(2))
assert car.horizon == 8 and car.rollout(torch.zeros(2, 8, 2)).rewards.shape == (2, 8)
""", expect="correct"),
    Case("car: np.True_ as dt", "dynamics.make('car2d', dt=np.True_)", words=("Invalid dt", "real number")),
    # ---- feasible (tests/test_rollout.py)
    Case("feasible: 0.5 for infeasible samples", """
torch_mbd.plan(feasible_model((1.0, 0.5)), num_samples=32, num_steps=5, seed=0, progress=False)
""", words=("rollout feasible must be boolean", "0.5")),
    Case("feasible: 2 for feasible samples", """
torch_mbd.plan(feasible_model((2.0, 0.0)), num_samples=32, num_steps=5, seed=0, progress=False)
""", words=("rollout feasible must be boolean", "2")),
    Case("feasible: NaN for infeasible samples = the boolean plan", """
kw = dict(num_samples=32, num_steps=5, seed=0, progress=False)
a = torch_mbd.plan(feasible_model((1.0, float('nan'))), **kw)
b = torch_mbd.plan(feasible_model((True, False)), **kw)
assert torch.equal(a.actions, b.actions), "NaN counted as feasible"
""", expect="correct"),
    Case("feasible: a 0/1 float mask = the boolean plan", """
kw = dict(num_samples=32, num_steps=5, seed=0, progress=False)
a = torch_mbd.plan(feasible_model((1.0, 0.0)), **kw)
b = torch_mbd.plan(feasible_model((True, False)), **kw)
assert torch.equal(a.actions, b.actions)
""", expect="correct"),
    # ---- MuJoCo models (tests/test_tasks.py)
    Case("edit: edit=lambda m: 5", "dynamics.make('hopper', edit=lambda m: 5)", error="TypeError",
         words=("edit must change the mujoco.MjModel in place", "returned int")),
    Case("edit: an edit that returns an MjSpec", "import mujoco\ndynamics.make('hopper', edit=lambda m: mujoco.MjSpec())",
         error="TypeError", words=("returned MjSpec", "compile")),
    Case("numpy: hopper horizon=np.int64(4), reset_noise=np.float32(0.5), seed=np.uint8(3)", """
m = dynamics.make('hopper', horizon=np.int64(4), reset_noise=np.float32(0.5), seed=np.uint8(3))
assert m.horizon == 4 and m.rollout(torch.zeros(2, 4, 3)).rewards.shape == (2, 4)
""", expect="correct"),
    Case("numpy: Task with NumPy numbers and np.False_", """
from dynamics.tasks import Task, get_task
h = get_task('hopper')
t = Task('t', h.build_spec, h.reward, frame_skip=np.int32(2), horizon=np.int64(3), temperature=np.float32(0.2),
         reward_reads_previous=np.False_)
assert (t.frame_skip, t.horizon, t.reward_reads_previous) == (2, 3, False)
""", expect="correct"),
    Case("numpy: rrt_demo seed=np.int64(3), step_size=np.float32(0.2)", """
from dynamics.planning import rrt_demo
demo = rrt_demo(dynamics.make('car2d'), seed=np.int64(3), step_size=np.float32(0.2))
assert demo.shape == (50, 5)
""", expect="correct"),
    Case("numpy: humanoid_jog demo_sigma=np.float32(0.2)", """
m = dynamics.make('humanoid_jog')
path = os.path.join(tempfile.mkdtemp(), 'clip.npz'); open(path, 'wb').write(clip_bytes())
d = m.demonstration(path, clip_dt=0.03, scale=1.0, demo_sigma=np.float32(0.2), height_sigma=np.float64(0.05))
assert float(d['demo_sigma'][0]) == np.float32(0.2)
""", expect="correct"),
    Case("numpy: warp graph=np.False_", """
from dynamics.mujoco_warp import WarpRollout
from dynamics.tasks import get_task
WarpRollout(get_task('hopper').compile(), 4, device='cpu', graph=np.False_)
""", expect="correct", slow=True, timeout=600),
    # ---- the command line (tests/test_cli.py)
    Case("cli: --out whose folder is a file", """
folder = tempfile.mkdtemp(); open(os.path.join(folder, 'afile'), 'w').close()
cli_error(['plan', 'car2d', '--no-progress', '--out', 'afile/plan.png'], folder)
""", error="CommandFailed", words=("afile is a file, not a folder",)),
    Case("cli: --out on an unwritable system path (/sys)", """
cli_error(['plan', 'car2d', '--no-progress', '--out', '/sys/plan.png'], tempfile.mkdtemp())
""", error="CommandFailed", words=("cannot write /sys/plan.npz",)),
    Case("cli: an existing folder named TASK.npz", """
folder = tempfile.mkdtemp(); os.mkdir(os.path.join(folder, 'car2d.npz'))
cli_error(['plan', 'car2d', '--no-progress'], folder)
""", error="CommandFailed", words=("cannot write car2d.npz", "folder")),
    Case("cli: an existing folder named like the figure", """
folder = tempfile.mkdtemp(); os.mkdir(os.path.join(folder, 'plan.png'))
cli_error(['plan', 'car2d', '--no-progress', '--out', 'plan.png'], folder)
""", error="CommandFailed", words=("cannot write plan.png", "folder")),
    # ---- named pipes (tests/test_humanoid_jog.py)
    Case("pipe: load_clip on a named pipe", """
from dynamics.humanoid_jog import load_clip
clip = through_pipe(clip_bytes(), load_clip)
assert clip['torso'].shape == (21, 3)
""", expect="correct", timeout=90),
    Case("pipe: torch-mbd plan humanoid_jog --demo on a named pipe", """
folder = tempfile.mkdtemp(); os.chdir(folder)
argv = ['plan', 'humanoid_jog', '--samples', '2', '--steps', '1', '--horizon', '3', '--no-progress', '--demo']
assert through_pipe(clip_bytes(), lambda fifo: cli.main(argv + [fifo])) == 0
assert np.load('humanoid_jog.npz')['demo'].shape == (3, 15)
""", expect="correct", timeout=120),
]


def run_case(case: Case, root: Path = ROOT) -> tuple[str, str, float]:
    """``(outcome, detail, seconds)`` of one case, run in a fresh interpreter on the checkout ``root``."""
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", RUNNER, textwrap.dedent(case.code)], capture_output=True,
                              text=True, timeout=case.timeout, cwd=root, env=env)
    except subprocess.TimeoutExpired:
        return "hang", f"no answer in {case.timeout:.0f} s", time.perf_counter() - start
    seconds = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    if done.returncode < 0:  # killed by a signal (11: a segmentation fault)
        return "crash", f"signal {-done.returncode}: {done.stderr.strip()[-160:]}", seconds
    if done.returncode != 0 or not lines:  # the case never ran (e.g. an import failed)
        return "did not run", f"exit status {done.returncode}: {done.stderr.strip()[-160:]}", seconds
    result = json.loads(lines[-1])
    status, message = result["status"], result.get("message", "")
    detail = f"{result.get('type', '')}: {message}".strip(": ")
    if status == "assert":
        return "silently wrong", detail, seconds
    if status == "ok":
        return ("correct", "", seconds) if case.expect == "correct" else ("silently wrong", "accepted", seconds)
    if case.expect == "error" and result["type"] == case.error and all(w in message for w in case.words):
        return "clear error", detail, seconds
    return "unhelpful", detail, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", action="store_true", help="also the warp and MJX cases (they compile kernels)")
    parser.add_argument("--only", default="", help="run the cases whose name contains this text")
    parser.add_argument("--skip", default=None, help="leave out the cases whose name contains this text")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to test (default: this one)")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if (args.slow or not c.slow) and args.only in c.name
             and (args.skip is None or args.skip not in c.name)]
    counts = collections.Counter()
    width = max(len(c.name) for c in cases)
    print(f"{'case':<{width}}  {'outcome':<14}  {'s':>5}  detail")
    for case in cases:
        outcome, detail, seconds = run_case(case, args.root.resolve())
        counts[outcome] += 1
        print(f"{case.name:<{width}}  {outcome:<14}  {seconds:>5.1f}  {detail[:110]}", flush=True)
    print()
    kinds = ("clear error", "correct", "unhelpful", "silently wrong", "crash", "hang", "did not run")
    print(", ".join(f"{counts[k]} {k}" for k in kinds))
    return 0 if sum(counts[k] for k in kinds[2:]) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
