"""Planning time with torch's threads on a busy and on a quiet machine (issue 16, part 3).

Each plan runs in a fresh Python process (``OMP_NUM_THREADS`` only counts at process start),
``--repeats`` times per setting, the settings taking turns:

* ``library default``: what ``torch_mbd.plan`` does when nothing is set (one torch intra-op
  thread while it plans, :mod:`torch_mbd.threads`);
* ``OMP_NUM_THREADS=1``: the reference, torch's one-thread build of the process, with the
  library told to keep torch's setting (``torch_threads="torch"``);
* ``torch's threads``: torch's own default (one thread per CPU) kept as it is
  (``torch_threads="torch"``): what the library did before it set a thread count.

Every setting runs on the quiet machine and then beside a CPU hog: one busy-looping process per
CPU, started before the plan, that stops itself after ``--hog-seconds`` whatever happens (and is
ended as soon as the plan is done). A plan that runs past ``--time-limit`` is stopped and
reported as such. Each child process plans once to warm up (imports, MuJoCo's thread pool, first
allocations) and then times one plan of the given budget; the table gives the median wall time
(and every run's), its ratio to the median ``OMP_NUM_THREADS=1`` time under the same load, the
reward, and whether every run's actions equal the reference's bit for bit. Targets: under load
``library default`` <= 1.5x the reference; quiet, no slower than it; every plan equal.

Run::

    python -m benchmarks.threads                               # car2d and hopper, writes docs/results.md
    python -m benchmarks.threads --samples 64 --steps 10 --no-write   # a quick check

Flags: ``--tasks``, ``--samples`` (default: each task's), ``--steps``, ``--seed``, ``--repeats``,
``--hog-seconds``, ``--time-limit``, ``--no-quiet`` / ``--no-load`` (skip a load condition), ``--no-write``. Writes the
section ``threads`` of docs/results.md. The quiet rows mean what they say only on a machine
that nothing else loads (the load average is printed with each row). The runs import the working
tree: do not edit it while they run, or the plans of different runs differ for that reason.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, markdown_table, write_section

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("car2d", "hopper")
REFERENCE = "OMP_NUM_THREADS=1"
# setting -> (environment variables of the child, torch_threads passed to plan)
SETTINGS = {
    "library default": ({}, None),
    REFERENCE: ({"OMP_NUM_THREADS": "1"}, "torch"),
    "torch's threads": ({}, "torch"),
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_MBD_THREADS")

HOG_CODE = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


def start_hog(procs: int, seconds: float) -> list[subprocess.Popen]:
    """``procs`` busy-looping processes that each stop by themselves after ``seconds``."""
    return [
        subprocess.Popen([sys.executable, "-c", HOG_CODE, str(seconds)], stdout=subprocess.DEVNULL)
        for _ in range(procs)
    ]


def stop_hog(hog: list[subprocess.Popen]) -> None:
    """End the hog processes this benchmark started (each by its own handle) and reap them."""
    for proc in hog:
        if proc.poll() is None:
            proc.terminate()
    for proc in hog:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - terminate is honoured by a busy loop
            proc.kill()
            proc.wait()


def build_model(task: str):
    """The task's rollout model with its defaults (``dynamics.make``)."""
    import dynamics

    return dynamics.make(task)


def child(spec: dict) -> dict:
    """Plan once to warm up, then time one plan: what one child process reports (run in the child)."""
    import torch

    from torch_mbd import plan

    model = build_model(spec["task"])
    samples = spec["samples"] or getattr(model, "num_samples", 256)
    options = dict(num_samples=samples, seed=spec["seed"], progress=False, torch_threads=spec["torch_threads"],
                   preset="paper")
    plan(model, num_steps=1, **options)
    threads_outside = torch.get_num_threads()
    start = time.perf_counter()
    result = plan(model, num_steps=spec["steps"], **options)
    elapsed = time.perf_counter() - start
    return {
        "time": elapsed,
        "reward": result.reward,
        "actions_sha1": hashlib.sha1(result.actions.detach().cpu().contiguous().numpy().tobytes()).hexdigest(),
        "torch_threads_outside": threads_outside,
        "samples": samples,
    }


def run_child(task: str, setting: str, args) -> dict:
    """One plan in a fresh process; ``{"timeout": True}`` when it ran past ``args.time_limit``."""
    env_extra, torch_threads = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(env_extra)
    spec = dict(task=task, samples=args.samples, steps=args.steps, seed=args.seed, torch_threads=torch_threads)
    cmd = [sys.executable, "-m", "benchmarks.threads", "--child", json.dumps(spec)]
    try:
        out = subprocess.run(
            cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=args.time_limit, check=True
        )
    except subprocess.TimeoutExpired:
        return {"timeout": True}
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"{task} / {setting} failed:\n{err.stderr}") from None
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(args) -> list[dict]:
    """Every (task, load, setting) ``args.repeats`` times, the settings taking turns; one dict per setting."""
    rows = {}
    loads = [name for name, skip in (("quiet", args.no_quiet), ("CPU hog", args.no_load)) if not skip]
    for task in args.tasks:
        for load in loads:
            for _ in range(args.repeats):
                for setting in SETTINGS:
                    hog = start_hog(os.cpu_count() or 1, args.hog_seconds) if load == "CPU hog" else []
                    try:
                        if hog:
                            time.sleep(1.0)  # let the hog reach every core
                        load_average = os.getloadavg()[0]
                        res = run_child(task, setting, args)
                    finally:
                        stop_hog(hog)
                    row = rows.setdefault((task, load, setting), dict(task=task, load=load, setting=setting, runs=[]))
                    row["runs"].append(dict(res, load_average=load_average))
                    shown = f"> {args.time_limit:.0f} s (stopped)" if res.get("timeout") else f"{res['time']:.2f} s"
                    print(f"{task:8s} {load:8s} {setting:18s} {shown:>20s}  load average {load_average:.1f}",
                          flush=True)
    return list(rows.values())


def median_time(row: dict) -> float:
    """The median wall time of a row's runs; a stopped run counts as infinitely long."""
    return statistics.median(math.inf if run.get("timeout") else run["time"] for run in row["runs"])


def table(rows: list[dict], time_limit: float) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the markdown table: medians, ratios to the reference, same-plan checks."""
    reference = {(r["task"], r["load"]): r for r in rows if r["setting"] == REFERENCE}
    header = ["task", "load", "torch threads", "plan time (s), median", "runs (s)", f"/ {REFERENCE}", "reward",
              "same plan", "load average"]
    body = []
    for r in rows:
        ref = reference[r["task"], r["load"]]
        finished = [run for run in r["runs"] if not run.get("timeout")]
        ref_finished = [run for run in ref["runs"] if not run.get("timeout")]
        mid, ref_mid = median_time(r), median_time(ref)
        runs = ", ".join(f">{time_limit:.0f}" if run.get("timeout") else f"{run['time']:.2f}" for run in r["runs"])
        ratio = f"{mid / ref_mid:.2f}x" if math.isfinite(mid) and math.isfinite(ref_mid) else ""
        hashes = {run["actions_sha1"] for run in finished + ref_finished}
        same = ("yes" if len(hashes) == 1 else "NO") if finished and ref_finished else ""
        reward = f"{finished[0]['reward']:.4f}" if finished else ""
        loads = ", ".join(f"{run['load_average']:.1f}" for run in r["runs"])
        shown = f"{mid:.2f}" if math.isfinite(mid) else f"> {time_limit:.0f} (stopped)"
        body.append([r["task"], r["load"], r["setting"], shown, runs, ratio, reward, same, loads])
    return header, body


DEFAULTS = {"samples": None, "steps": 100, "seed": 0, "repeats": 3}


def command(args) -> str:
    """The command line that reproduces this run's table."""
    parts = ["python -m benchmarks.threads"]
    if tuple(args.tasks) != TASKS:
        parts.append("--tasks " + " ".join(args.tasks))
    for flag in ("samples", "steps", "seed", "repeats"):
        if getattr(args, flag) != DEFAULTS[flag]:
            parts.append(f"--{flag} {getattr(args, flag)}")
    return " ".join(parts)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help="tasks to plan (dynamics.task_names())")
    p.add_argument("--samples", type=int, default=DEFAULTS["samples"], help="samples per step (default: the task's)")
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="diffusion steps")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed of every plan")
    p.add_argument("--repeats", type=int, default=DEFAULTS["repeats"],
                   help="runs of every setting (taking turns); the table gives the median")
    p.add_argument("--hog-seconds", type=float, default=None,
                   help="the hog stops itself after this long (default: --time-limit + 30)")
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds after which a plan is stopped")
    p.add_argument("--no-quiet", action="store_true", help="skip the runs without the hog")
    p.add_argument("--no-load", action="store_true", help="skip the runs beside the hog")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.hog_seconds is None:
        args.hog_seconds = args.time_limit + 30.0
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    for name in ("hog_seconds", "time_limit"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.hog_seconds < args.time_limit:
        p.error("--hog-seconds must be at least --time-limit (the hog has to outlast the plan)")
    rows = measure(args)
    header, body = table(rows, args.time_limit)
    text = markdown_table(header, body)
    print()
    print(text)
    if not args.no_write:
        steps = f"{args.steps} steps, seed {args.seed}, " + (
            f"{args.samples} samples" if args.samples else "each task's default samples"
        ) + f", {args.repeats} runs per setting"
        section = (
            "## Threads: planning beside a CPU hog\n\n"
            f"`{command(args)}` on {machine()} ({steps}; one busy-looping process per CPU as the hog):\n\n"
            f"{text}\n\n"
            "`library default` is one torch intra-op thread while planning (`torch_mbd.threads`); "
            "`torch's threads` is torch's default, one per CPU. The quiet rows hold only where the load average "
            "shows no other work.\n"
        )
        print(f"wrote {write_section('threads', section)}")


if __name__ == "__main__":
    main()
