"""Resident memory of a long ``minimize`` run at a large dimension, with and without history.

Each configuration runs in a fresh process (so that the allocator starts clean and
``MALLOC_*`` variables can be set per run) and prints its resident set size (``VmRSS``) as
the steps go by, at the end, and after glibc's ``malloc_trim(0)`` hands freed heap memory
back to the system: what ``malloc_trim`` gives back was free inside the process, not held by
``torch_mbd``.

    python benchmarks/minimize_memory.py --dim 10000 --steps 3000 --samples 64
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time


def rss_mib() -> float:
    """This process's resident set size in MiB (Linux ``/proc/self/status``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def one_run(dim: int, steps: int, samples: int, keep_history: str, threads: str) -> dict:
    """Minimize a sphere in ``dim`` dimensions; RSS every ``steps // 6`` evaluations, at the end and trimmed."""
    import torch

    import torch_mbd

    marks: list[float] = []
    calls = [0]

    def sphere(x):
        if calls[0] % max(1, steps // 6) == 0:
            marks.append(round(rss_mib()))
        calls[0] += 1
        return (x**2).sum(-1)

    # "default" passes no keep_history at all (so the script also measures versions without it)
    keep = {"true": {"keep_history": True}, "false": {"keep_history": False}, "default": {}}.get(keep_history.lower())
    keep = {"keep_history": int(keep_history)} if keep is None else keep
    start_rss = rss_mib()
    start = time.perf_counter()
    # the paper's MBD at temperature 1.0: minimize's defaults when the figures in docs/results.md were measured
    # (adaptive MBD since issue 23)
    result = torch_mbd.minimize(sphere, torch.ones(dim), num_samples=samples, num_steps=steps, seed=0, progress=False,
                                method="mbd", temperature=1.0,
                                torch_threads=threads if threads == "torch" else int(threads), **keep)
    end_rss = rss_mib()  # the result (and its history) still alive
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return {"start": round(start_rss), "during": marks, "end": round(end_rss), "trimmed": round(rss_mib()),
            "seconds": round(time.perf_counter() - start, 1), "estimates": tuple(result.history.estimate.shape)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--threads", default="1", help="torch_threads of minimize: a number or 'torch'")
    parser.add_argument("--keep", default="true,false",
                        help="keep_history values to run, comma-separated: true, false, an integer, or default (not passed)")
    parser.add_argument("--env", default="", help="extra environment of every run, e.g. MALLOC_ARENA_MAX=1")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep-one", default="true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.dim, args.steps, args.samples, args.keep_one, args.threads)))
        return
    env = dict(os.environ)
    env.update(dict(item.split("=", 1) for item in args.env.split(",") if item))
    print(f"D = {args.dim}, {args.steps} steps x {args.samples} samples, torch_threads={args.threads}, env {args.env or '-'}")
    print("keep_history | RSS MiB: start, during the run, end (result alive), after malloc_trim | seconds | history.estimate")
    for keep in args.keep.split(","):
        command = [sys.executable, __file__, "--child", "--keep-one", keep, "--dim", str(args.dim),
                   "--steps", str(args.steps), "--samples", str(args.samples), "--threads", args.threads]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{keep:>12} | {r['start']}, {r['during']}, {r['end']}, {r['trimmed']} | {r['seconds']} | {r['estimates']}")


if __name__ == "__main__":
    main()
