"""Rollout throughput of the MuJoCo backends and MBD's overhead on top of them (issue #4).

CPU part (always run, backend ``"mujoco"``):

1. **Physics steps/s** of our CPU backend against a bare ``mujoco.rollout.rollout`` call with the
   same model, batch, control sequence and thread count (its persistent pool), measured in the
   same run: the three calls are interleaved in every repeat and the best repeat of each is
   kept. "Ours" is timed twice: the backend alone (:class:`dynamics.mujoco_cpu.CpuRollout`:
   torch in, torch out) and the whole ``MujocoModel.rollout`` (plus divergence check and the
   task's torch reward). Target: at least 90% of the bare call for n in {64, 256, 1024}.
2. **MBD overhead**: ``torch_mbd.plan`` on hopper (n = 256, H = 50, 100 diffusion steps) with
   ``model.rollout`` wrapped in a timer; the ratio total planning time / time inside rollouts
   must be at most 1.05.

GPU part (``--device cuda``; MuJoCo Warp by default, ``--backend mjx`` for MJX): physics
steps/s of the backend at n in {1024, 4096, 16384} for hopper and humanoid_run, and the wall
time of full MBD hopper planning (n = 2048, H = 50, 100 steps) next to the paper's 26.5 s
(Table 3, RTX 4070 Ti). Without a CUDA device the GPU part is reported as not run.

Run::

    python -m benchmarks.rollout_throughput                        # CPU part, the issue's settings
    python -m benchmarks.rollout_throughput --plan-steps 10 --no-write   # a quick look
    python -m benchmarks.rollout_throughput --device cuda          # GPU part (MuJoCo Warp)

Flags: ``--tasks``, ``--sizes``, ``--horizon`` (control steps per throughput call; default per
task, short because steps/s does not depend on it), ``--repeats``, ``--threads`` (default:
every CPU), ``--plan-samples``, ``--plan-horizon``, ``--plan-steps`` (``0`` skips the planning
measurement), ``--torch-threads``, ``--device``, ``--backend``, ``--no-write``. Writes the section
``rollout_throughput`` (CPU) or ``rollout_throughput_gpu`` (GPU) of docs/results.md.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, markdown_table, write_section  # noqa: E402
from dynamics.backends import BACKENDS  # noqa: E402
from dynamics.model import MujocoModel  # noqa: E402
from torch_mbd import plan  # noqa: E402

# Control steps per throughput call when --horizon is not given: steps/s does not depend on
# the horizon, and a short one keeps n = 1024 affordable on a small CPU.
CPU_HORIZON = {"hopper": 10, "humanoid_run": 3, "humanoid_standup": 3}
GPU_HORIZON = 50
PAPER_GPU_PLAN_SECONDS = 26.5  # Table 3: hopper, RTX 4070 Ti


def random_actions(n: int, horizon: int, nu: int, seed: int = 0, device="cpu") -> torch.Tensor:
    """``[n, horizon, nu]`` uniform in ``[-1, 1]``."""
    gen = torch.Generator().manual_seed(seed)
    return (2 * torch.rand(n, horizon, nu, generator=gen) - 1).to(device)


def command(args) -> str:
    """The command line that reproduces this run."""
    return " ".join(["python -m benchmarks.rollout_throughput", *args.argv])


def best_of(fn, repeats: int, sync=None) -> float:
    """Smallest wall time in seconds of ``repeats`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeats):
        if sync is not None:
            sync()
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        best = min(best, time.perf_counter() - start)
    return best


# ----------------------------------------------------------------------------- CPU
def cpu_throughput(task: str, n: int, horizon: int, repeats: int, threads: int | None) -> dict:
    """Physics steps/s of the bare ``mujoco.rollout``, our backend and ``MujocoModel.rollout``, interleaved."""
    import mujoco
    import mujoco.rollout

    options = {} if threads is None else {"nthread": threads}
    model = MujocoModel(task, backend="mujoco", horizon=horizon, **options)
    backend = model.backend
    actions = random_actions(n, horizon, model.action_dim)
    ctrl = model.controls(actions)
    # the bare call's inputs, prepared outside the timing: the same model (autoreset off),
    # the same number of MjData (= threads), every control held frame_skip steps
    datas = [mujoco.MjData(backend.model) for _ in range(backend.nthread)]
    initial = np.tile(backend.initial_physics_state(model.qpos0, model.qvel0), (n, 1))
    control = np.ascontiguousarray(np.repeat(ctrl.double().numpy(), model.frame_skip, axis=1))

    def bare():
        mujoco.rollout.rollout(backend.model, datas, initial, control, persistent_pool=True)

    calls = {
        "bare": bare,
        "backend": lambda: backend(model.qpos0, model.qvel0, ctrl),
        "model": lambda: model.rollout(actions),
    }
    for fn in calls.values():  # warm up: pools started, buffers allocated
        fn()
    wall = {name: float("inf") for name in calls}
    cpu = {name: float("inf") for name in calls}
    order = list(calls)
    for r in range(repeats):
        for name in order if r % 2 == 0 else order[::-1]:  # alternate the order: no systematic position bias
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            calls[name]()
            wall[name] = min(wall[name], time.perf_counter() - start_wall)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    steps = n * horizon * model.frame_skip
    mujoco.rollout.shutdown_persistent_pool()
    backend.close()
    return {
        "task": task,
        "n": n,
        "horizon": horizon,
        "frame_skip": model.frame_skip,
        "threads": backend.nthread,
        "steps": steps,
        **{f"{name}_sps": steps / seconds for name, seconds in wall.items()},
        # CPU seconds of all the process's threads: what each call costs, whatever else the machine runs
        **{f"{name}_cpu": seconds for name, seconds in cpu.items()},
    }


class TimedRollout:
    """Wraps ``model.rollout`` (and the backend inside it) and adds up the seconds spent in each."""

    def __init__(self, model: MujocoModel, sync=None):
        self.model, self.sync = model, sync
        self.rollout_seconds = 0.0
        self.physics_seconds = 0.0
        self.calls = 0
        self._rollout, self._backend = model.rollout, model.backend
        model.rollout = self.rollout
        model.backend = self.backend

    def _timed(self, fn, *args):
        if self.sync is not None:
            self.sync()
        start = time.perf_counter()
        out = fn(*args)
        if self.sync is not None:
            self.sync()
        return out, time.perf_counter() - start

    def rollout(self, actions):
        out, seconds = self._timed(self._rollout, actions)
        self.rollout_seconds += seconds
        self.calls += 1
        return out

    def backend(self, *args):
        out, seconds = self._timed(self._backend, *args)
        self.physics_seconds += seconds
        return out

    def restore(self) -> None:
        self.model.rollout, self.model.backend = self._rollout, self._backend


def plan_overhead(task: str, samples: int, horizon: int, steps: int, backend: str = "mujoco", device="cpu",
                  threads: int | None = None, torch_threads: int | str | None = None) -> dict:
    """Wall time of ``plan`` and the seconds it spent inside ``model.rollout`` and the simulator.

    ``torch_threads`` goes to ``plan`` (``None``: its default policy, one intra-op thread; see
    :mod:`torch_mbd.threads`).
    """
    options = {} if threads is None or backend != "mujoco" else {"nthread": threads}
    model = MujocoModel(task, backend=backend, device=device, horizon=horizon, **options)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else None
    # a one-step warm-up plan: the first torch.optim step of a process imports torch._dynamo (~2 s),
    # a one-time cost that is not MBD's per-step overhead
    plan(model, horizon=horizon, num_samples=2, num_steps=1, seed=0, progress=False, preset="paper")
    if backend != "mujoco":  # compile (warp kernels, MJX's jit) and capture the CUDA graph outside the timing
        model.rollout(torch.zeros(1, horizon, model.action_dim, device=model.device))
        model.rollout(torch.zeros(samples, horizon, model.action_dim, device=model.device))  # last: warp keeps it
    timer = TimedRollout(model, sync)
    start = time.perf_counter()
    result = plan(model, horizon=horizon, num_samples=samples, num_steps=steps, temperature=model.temperature,
                  seed=0, progress=False, torch_threads=torch_threads, preset="paper")
    if sync is not None:
        sync()
    total = time.perf_counter() - start
    timer.restore()
    return {
        "task": task,
        "samples": samples,
        "horizon": horizon,
        "steps": steps,
        "total": total,
        "rollout": timer.rollout_seconds,
        "physics": timer.physics_seconds,
        "calls": timer.calls,
        "reward": result.reward,
        "feasible": bool(result.feasible.all()),
    }


def cpu_report(args) -> str:
    rows, results = [], []
    for task in args.tasks:
        horizon = args.horizon or CPU_HORIZON.get(task, 10)
        for n in args.sizes:
            res = cpu_throughput(task, n, horizon, args.repeats, args.threads)
            results.append(res)
            rows.append([
                task, n, f"{horizon} x {res['frame_skip']}", res["threads"], f"{res['bare_sps']:,.0f}",
                f"{res['backend_sps']:,.0f} ({res['backend_sps'] / res['bare_sps']:.0%})",
                f"{res['model_sps']:,.0f} ({res['model_sps'] / res['bare_sps']:.0%})",
                f"{res['bare_cpu'] / res['backend_cpu']:.0%} / {res['bare_cpu'] / res['model_cpu']:.0%}",
            ])
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
    header = ["task", "n", "H x frame_skip", "threads", "bare mujoco.rollout steps/s",
              "CpuRollout steps/s (vs bare)", "MujocoModel.rollout steps/s (vs bare)",
              "CPU-time ratio (CpuRollout / MujocoModel.rollout)"]
    worst = min(r["backend_sps"] / r["bare_sps"] for r in results)
    worst_model = min(r["model_sps"] / r["bare_sps"] for r in results)
    worst_cpu = min(r["bare_cpu"] / r["backend_cpu"] for r in results)
    worst_model_cpu = min(r["bare_cpu"] / r["model_cpu"] for r in results)
    text = [
        "## MuJoCo rollout throughput",
        "",
        f"`{command(args)}` on {machine()}, {torch.get_num_threads()} torch threads, load average "
        f"{args.load:.1f} when it started (other programs share the machine when it exceeds the core count).",
        "",
        "### CPU backend vs a bare `mujoco.rollout`",
        "",
        (
            "Physics steps per second (n samples x H control steps x frame_skip physics steps per call), "
            f"best of {args.repeats} interleaved repeats of each call with the same model, batch, controls and "
            "thread count; the bare call uses mujoco's persistent pool and gets its controls already repeated "
            "frame_skip times. `CpuRollout` is the backend alone (torch tensors in and out); "
            "`MujocoModel.rollout` adds the divergence check and the task's torch reward. The last column "
            "compares CPU seconds (all threads of the process, `time.process_time`) instead of wall time: the "
            "bare call's CPU time over ours, which other programs on a shared machine disturb much less."
        ),
        "",
        markdown_table(header, rows),
        "",
        (
            f"The backend's worst ratio: **{worst:.0%}** of the bare call's steps/s (target >= 90%: "
            f"{'met' if worst >= 0.9 else 'missed'}); in CPU time it costs at most {1 / worst_cpu:.2f}x the bare "
            f"call. With the reward and the divergence check (`MujocoModel.rollout`): worst {worst_model:.0%} in "
            f"steps/s, at most {1 / worst_model_cpu:.2f}x in CPU time. On a busy machine every torch operation over "
            "a large batch can wait a scheduler time slice for torch's intra-op threads, which shows up in the "
            "wall time of `MujocoModel.rollout` (`--torch-threads 1` avoids it)."
        ),
    ]
    if args.plan_steps > 0:
        res = plan_overhead("hopper", args.plan_samples, args.plan_horizon, args.plan_steps, threads=args.threads,
                            torch_threads=args.torch_threads)
        ratio = res["total"] / res["rollout"]
        print(f"plan hopper n={res['samples']} H={res['horizon']} steps={res['steps']}: total {res['total']:.1f} s, "
              f"in model.rollout {res['rollout']:.1f} s, in the simulator {res['physics']:.1f} s, "
              f"ratio {ratio:.3f}", flush=True)
        target = (args.plan_samples, args.plan_horizon, args.plan_steps) == (256, 50, 100)
        text += [
            "",
            "### MBD overhead on the CPU",
            "",
            f"`torch_mbd.plan` on hopper, n = {res['samples']}, H = {res['horizon']}, {res['steps']} diffusion steps"
            + ("" if target else " (not the issue's setting n = 256, H = 50, 100 steps)")
            + f", {res['calls']} rollout calls, after a one-step warm-up plan (the first torch.optim step of a "
            "process imports torch._dynamo, about 2 s once):",
            "",
            markdown_table(
                ["total plan time (s)", "inside model.rollout (s)", "inside the simulator (s)",
                 "total / rollout", "final reward"],
                [[f"{res['total']:.1f}", f"{res['rollout']:.1f}", f"{res['physics']:.1f}", f"{ratio:.3f}",
                  f"{res['reward']:.3f}"]],
            ),
            "",
            f"Target total / rollout <= 1.05: {'met' if ratio <= 1.05 else 'missed'}.",
        ]
    gpu_note = (
        "GPU throughput (MuJoCo Warp) and GPU planning time are written by "
        "`python -m benchmarks.rollout_throughput --device cuda` into their own section when run on a GPU"
    )
    if not torch.cuda.is_available():
        gpu_note += "; this machine has no GPU, so they were not measured here"
    text += ["", gpu_note + "."]
    return "\n".join(text)


# ----------------------------------------------------------------------------- GPU
def gpu_report(args) -> str:
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    rows = []
    for task in args.tasks:
        horizon = args.horizon or GPU_HORIZON
        for n in args.sizes:
            model = MujocoModel(task, backend=args.backend, device=device, horizon=horizon)
            actions = random_actions(n, horizon, model.action_dim, device=device)
            call = functools.partial(model.rollout, actions)
            call()  # compile, capture the CUDA graph
            seconds = best_of(call, args.repeats, sync)
            steps = n * horizon * model.frame_skip
            rows.append([task, n, f"{horizon} x {model.frame_skip}", f"{steps / seconds:,.0f}", f"{seconds * 1e3:.1f}"])
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
            del model, actions, call  # free the GPU buffers of this size before the next
            if device.type == "cuda":
                torch.cuda.empty_cache()
    text = [
        "## MuJoCo rollout throughput on a GPU",
        "",
        f"`{command(args)}` on {machine()}, backend {args.backend}.",
        "",
        f"Physics steps per second of `MujocoModel.rollout` (best of {args.repeats}, after a warm-up call "
        "that compiles and captures the CUDA graph):",
        "",
        markdown_table(["task", "n", "H x frame_skip", "steps/s", "ms per rollout"], rows),
    ]
    if args.plan_steps > 0:
        res = plan_overhead("hopper", args.plan_samples, args.plan_horizon, args.plan_steps, backend=args.backend,
                            device=device, torch_threads=args.torch_threads)
        print(f"plan hopper n={res['samples']} H={res['horizon']} steps={res['steps']}: {res['total']:.1f} s "
              f"(paper: {PAPER_GPU_PLAN_SECONDS} s)", flush=True)
        text += [
            "",
            f"Full MBD planning, hopper, n = {res['samples']}, H = {res['horizon']}, {res['steps']} diffusion steps:",
            "",
            markdown_table(
                ["wall time (s)", "inside model.rollout (s)", "total / rollout", "final reward",
                 "paper (Table 3, RTX 4070 Ti, JAX)"],
                [[f"{res['total']:.1f}", f"{res['rollout']:.1f}", f"{res['total'] / res['rollout']:.3f}",
                  f"{res['reward']:.3f}", f"{PAPER_GPU_PLAN_SECONDS} s"]],
            ),
        ]
    return "\n".join(text)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cpu: CPU backend vs bare mujoco.rollout; "
                   "cuda: GPU throughput and planning time")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="backend of the GPU part (default warp); the CPU part always measures mujoco")
    p.add_argument("--tasks", nargs="+", default=None, help="default: hopper humanoid_run")
    p.add_argument("--sizes", nargs="+", type=int, default=None,
                   help="batch sizes n (default: 64 256 1024 on the CPU, 1024 4096 16384 on a GPU)")
    p.add_argument("--horizon", type=int, default=None, help="control steps per throughput call "
                   f"(default on the CPU: {CPU_HORIZON}; on a GPU: {GPU_HORIZON})")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: every CPU this process may use)")
    p.add_argument("--plan-samples", type=int, default=None, help="default: 256 on the CPU, 2048 on a GPU")
    p.add_argument("--plan-horizon", type=int, default=50)
    p.add_argument("--plan-steps", type=int, default=100,
                   help="diffusion steps of the planning measurement (0: skip it)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch intra-op threads, for the throughput calls and plan's torch_threads "
                   "(default: torch's for throughput, plan's own policy of 1 for planning); the physics runs on "
                   "MuJoCo's own threads")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    gpu = args.device == "cuda"
    args.tasks = args.tasks or ["hopper", "humanoid_run"]
    args.sizes = args.sizes or ([1024, 4096, 16384] if gpu else [64, 256, 1024])
    args.plan_samples = args.plan_samples or (2048 if gpu else 256)
    args.backend = args.backend or ("warp" if gpu else "mujoco")
    if not gpu and args.backend != "mujoco":
        p.error("--backend warp/mjx is measured with --device cuda; the CPU part compares the mujoco backend "
                "with a bare mujoco.rollout")
    if gpu and args.backend == "mujoco":
        p.error("the mujoco backend runs on the CPU; use --backend warp or mjx with --device cuda")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("GPU part not run: no CUDA device is available (torch.cuda.is_available() is False). "
                  "Run without --device cuda for the CPU part.")
            return 0
        text = gpu_report(args)
        section = "rollout_throughput_gpu"
    else:
        text = cpu_report(args)
        section = "rollout_throughput"
        print("GPU part not run: pass --device cuda on a machine with a GPU.")
    print()
    print(text)
    if not args.no_write:
        print(f"wrote section {section!r} of {write_section(section, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
