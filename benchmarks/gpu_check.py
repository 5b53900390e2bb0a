"""One GPU check: CUDA tests, MuJoCo Warp and MJX throughput, hopper at the paper's budget, MNIST.

A machine with one CUDA GPU runs the whole check in under 8 minutes; each part has a time
budget (seconds, printed beside its time) and the parts run in this order:

1. ``tests`` (60 s): the CUDA tests, ``pytest tests -k cuda`` (the ``device`` fixture's
   ``cuda`` cases and ``test_cuda_is_used``), in a subprocess;
2. ``throughput`` (180 s): physics steps/s of ``MujocoModel.rollout`` on MuJoCo Warp and MJX for
   hopper at n = 1024, 4096 and 16384 worlds (:mod:`benchmarks.rollout_throughput`'s
   ``random_actions`` / ``best_of``; the first call per size compiles and is not timed). Sizes
   left when the budget is spent are reported as skipped;
3. ``hopper`` (120 s): full MBD planning of hopper at the paper's budget (n = 2048 samples,
   H = 50, 100 diffusion steps) on MuJoCo Warp, or on MJX where Warp is not installed
   (:func:`benchmarks.rollout_throughput.plan_overhead`), its wall time beside Table 3's 26.5 s (RTX 4070 Ti, JAX + Brax);
4. ``mnist`` (60 s): training time of the paper's MNIST MLP with MBD at the authors' settings
   (256 samples, 500 steps; :mod:`benchmarks.mnist`'s example loop), beside the paper's ~2 s.

A part that cannot run here (a backend's package or the MNIST files missing) is reported as
``not run`` with the reason; a part that fails is ``error`` and makes the exit status 1. A part
that ran past its budget is flagged ``over budget`` (its result is kept).

``--smoke`` runs every part on the CPU at tiny sizes (the CUDA tests are then collected and
skipped, Warp and MJX run on their CPU devices, n = 8, a few steps) so that the script cannot
rot: ``tests/test_gpu_check.py`` runs it.

Run::

    python -m benchmarks.gpu_check --out gpu_check.json          # on a GPU machine, < 8 minutes
    python -m benchmarks.gpu_check --smoke --out /tmp/smoke.json # anywhere, on the CPU

Flags: ``--out`` (JSON of every result; required), ``--smoke``, ``--parts`` (a subset, in
order), ``--data`` (folder with the MNIST IDX files), ``--device`` (default ``cuda``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, markdown_table  # noqa: E402
from dynamics.backends import GPU_BACKENDS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PARTS = ["tests", "throughput", "hopper", "mnist"]
BUDGET_S = {"tests": 60.0, "throughput": 180.0, "hopper": 120.0, "mnist": 60.0}
PAPER_HOPPER_SECONDS = 26.5  # Table 3, MBD on hopper
PAPER_MNIST_SECONDS = 2.0  # section 5 / A.2.1: "86% accuracy within 2s"

# Sizes per mode: the paper's on a GPU, tiny with --smoke.
FULL = dict(
    test_args=["tests", "-k", "cuda"],
    backends=list(GPU_BACKENDS),
    worlds=[1024, 4096, 16384],
    throughput_horizon=50,
    repeats=3,
    hopper=dict(samples=2048, horizon=50, steps=100, backends=["warp", "mjx"]),
    mnist=dict(samples=256, steps=500, train_size=60_000, eval_every=100),
)
SMOKE = dict(
    test_args=["tests/test_optim.py", "-k", "cuda"],
    backends=list(GPU_BACKENDS),
    worlds=[8],
    throughput_horizon=2,
    repeats=1,
    hopper=dict(samples=8, horizon=5, steps=2, backends=["mujoco"]),
    mnist=dict(samples=8, steps=2, train_size=512, eval_every=2),
)


class NotRun(Exception):
    """A part that cannot run on this machine (a package or data is missing)."""


# --------------------------------------------------------------------------- parts
def part_tests(cfg: dict, device: str, budget: float, args) -> dict:
    """``pytest -k cuda`` in a subprocess; the counts of its summary line."""
    cmd = [sys.executable, "-m", "pytest", *cfg["test_args"], "-q", "-p", "no:cacheprovider", "-o", "addopts="]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(budget * 2, 30))
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"pytest ran past {exc.timeout:.0f} s") from None
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    found = re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", "\n".join(tail))
    counts = {k: int(v) for v, k in found}
    result = dict(command=" ".join(cmd[2:]), returncode=proc.returncode, counts=counts, tail=tail)
    # 5: nothing collected (no test matched), which is a failure of the check, not of a test
    if proc.returncode not in (0,) or counts.get("failed") or counts.get("error") or counts.get("errors"):
        raise RuntimeError(f"pytest exited {proc.returncode}: {tail[-1] if tail else ''}")
    return result


def part_throughput(cfg: dict, device: str, budget: float, args) -> dict:
    """Physics steps/s per backend and number of worlds, until the budget is spent."""
    from benchmarks.rollout_throughput import best_of, random_actions
    from dynamics.model import MujocoModel

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else None
    horizon, start = cfg["throughput_horizon"], time.perf_counter()
    rows, not_run = [], {}
    for backend in cfg["backends"]:
        for n in cfg["worlds"]:
            if time.perf_counter() - start > budget:
                rows.append(dict(backend=backend, task="hopper", n=n, status="skipped: budget spent"))
                continue
            try:
                model = MujocoModel("hopper", backend=backend, device=device, horizon=horizon)
            except ImportError as exc:
                not_run[backend] = str(exc)
                rows.append(dict(backend=backend, task="hopper", n=n, status=f"not run: {exc}"))
                break
            actions = random_actions(n, horizon, model.action_dim, device=device)
            t0 = time.perf_counter()
            model.rollout(actions)  # compile / capture the CUDA graph for this size
            first = time.perf_counter() - t0
            seconds = best_of(lambda: model.rollout(actions), cfg["repeats"], sync)
            steps = n * horizon * model.frame_skip
            rows.append(dict(
                backend=backend, task="hopper", n=n, horizon=horizon, frame_skip=model.frame_skip,
                steps_per_s=steps / seconds, ms_per_rollout_call=1e3 * seconds, first_call_s=first, status="ok",
            ))
            del model, actions
            if sync is not None:
                torch.cuda.empty_cache()
    if not_run and len(not_run) == len(cfg["backends"]):
        raise NotRun("; ".join(f"{b}: {m}" for b, m in not_run.items()))
    return dict(rows=rows)


def part_hopper(cfg: dict, device: str, budget: float, args) -> dict:
    """MBD on hopper at the paper's budget; its wall time beside Table 3's."""
    from benchmarks.rollout_throughput import plan_overhead

    h, missing = cfg["hopper"], []
    for backend in h["backends"]:  # the first backend that imports here
        try:
            res = plan_overhead("hopper", h["samples"], h["horizon"], h["steps"], backend=backend, device=device)
        except ImportError as exc:
            missing.append(f"{backend}: {exc}")
            continue
        ratio = res["total"] / PAPER_HOPPER_SECONDS
        return dict(res, backend=backend, not_run=missing, paper_seconds=PAPER_HOPPER_SECONDS, ratio_to_paper=ratio)
    raise NotRun("; ".join(missing))


def part_mnist(cfg: dict, device: str, budget: float, args) -> dict:
    """MBD training of the MNIST MLP (the authors' settings): wall time and test accuracy."""
    data_dir = Path(args.data)
    if not data_dir.is_dir() or not any(data_dir.iterdir()):
        raise NotRun(f"no MNIST IDX files in {data_dir} (give --data)")
    from benchmarks import mnist

    m = cfg["mnist"]
    eargs = mnist.example.parse_args([  # the example's own loop, at the authors' settings
        "--samples", str(m["samples"]), "--steps", str(m["steps"]), "--train-size", str(m["train_size"]),
        "--eval-every", str(m["eval_every"]), "--seed", "0", "--device", device, "--data", str(data_dir), "--quiet",
    ])  # fmt: skip
    data = mnist.example.load_mnist(data_dir, device=device)
    model = mnist.example.mlp(0, device)
    curve = mnist.example.train_mbd(model, data, eargs)
    return dict(
        samples=m["samples"], steps=curve["steps"][-1], train_seconds=curve["times"][-1],
        test_accuracy=curve["test_acc"][-1], paper_seconds=PAPER_MNIST_SECONDS,
    )


RUNNERS = {"tests": part_tests, "throughput": part_throughput, "hopper": part_hopper, "mnist": part_mnist}


def run_part(name: str, cfg: dict, device: str, args) -> dict:
    """Run one part; its record: status (ok, over budget, not run, error), seconds, budget, result."""
    budget = BUDGET_S[name]
    start = time.perf_counter()
    try:
        result, status = RUNNERS[name](cfg, device, budget, args), "ok"
    except NotRun as exc:
        result, status = dict(reason=str(exc)), "not run"
    except Exception as exc:  # noqa: BLE001  (the check reports every failure and goes on)
        result, status = dict(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()), "error"
    seconds = time.perf_counter() - start
    if status == "ok" and seconds > budget:
        status = "over budget"
    return dict(status=status, seconds=seconds, budget_s=budget, result=result)


def summary(name: str, record: dict) -> str:
    """One line of what a part found."""
    r = record["result"]
    if record["status"] in ("not run", "error"):
        return r.get("reason") or r.get("error", "")
    if name == "tests":
        return ", ".join(f"{v} {k}" for k, v in r["counts"].items()) or "no summary"
    if name == "throughput":
        return "; ".join(
            f"{x['backend']} n={x['n']}: "
            + (f"{x['steps_per_s']:,.0f} steps/s" if x["status"] == "ok" else x["status"])
            for x in r["rows"]
        )
    if name == "hopper":
        return (f"{r['backend']} n={r['samples']} H={r['horizon']} {r['steps']} steps: {r['total']:.1f} s "
                f"(paper {r['paper_seconds']} s), reward {r['reward']:.3f}")
    if name == "mnist":
        return (f"{r['steps']} steps x {r['samples']} samples: {r['train_seconds']:.1f} s, test accuracy "
                f"{100 * r['test_accuracy']:.1f}% (paper: ~{r['paper_seconds']:g} s, 85.5%)")
    return ""


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="write every result to this JSON file")
    p.add_argument("--smoke", action="store_true", help="every part on the CPU at tiny sizes (CI)")
    p.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS)
    p.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    p.add_argument(
        "--data", default=str(ROOT.parent / "shared" / "data" / "mnist"), help="folder with the MNIST IDX files"
    )
    args = p.parse_args(argv)
    args.device = args.device or ("cpu" if args.smoke else "cuda")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("no CUDA device here (torch.cuda.is_available() is False); run with --smoke for the CPU check")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = SMOKE if args.smoke else FULL
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    start = time.perf_counter()
    report = dict(machine=machine(), device=args.device, smoke=args.smoke, parts={})
    for name in args.parts:
        print(f"[gpu_check] {name} (budget {BUDGET_S[name]:.0f} s) ...", flush=True)
        record = run_part(name, cfg, args.device, args)
        report["parts"][name] = record
        line = f"{record['status']} in {record['seconds']:.1f} s: {summary(name, record)}"
        print(f"[gpu_check] {name}: {line}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))  # after every part: a killed run keeps what it had
    report["total_s"] = time.perf_counter() - start
    args.out.write_text(json.dumps(report, indent=1))
    rows = [
        [n, r["status"], f"{r['seconds']:.1f}", f"{r['budget_s']:.0f}", summary(n, r)]
        for n, r in report["parts"].items()
    ]
    print(markdown_table(["part", "status", "seconds", "budget (s)", "result"], rows))
    print(f"total {report['total_s']:.0f} s (target < 480 s on one GPU) on {report['machine']}; wrote {args.out}")
    return 1 if any(r["status"] == "error" for r in report["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
