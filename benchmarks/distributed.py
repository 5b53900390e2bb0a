"""Speed-up of spreading MBD's sample evaluation over processes (torch.distributed, gloo).

Runs the same black-box problem with 1 process and with P processes (``--procs``), one thread
each, and reports the wall time of the optimization loop and the speed-up; checks that every
rank's final estimate equals the single-process one bit for bit.

    python benchmarks/distributed.py --procs 2 --dim 2000 --samples 512 --steps 30
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._report import machine, markdown_table, write_section  # noqa: E402
from torch_mbd import MBDOptimizer  # noqa: E402


def costly_rastrigin(x: torch.Tensor, repeats: int) -> torch.Tensor:
    """Rastrigin ``[n, D] -> [n]``, evaluated ``repeats`` times to stand in for an expensive model."""
    out = None
    for _ in range(repeats):
        out = 10 * x.shape[-1] + (x**2 - 10 * torch.cos(2 * math.pi * x)).sum(-1)
    return out


def optimize(args, process_group=None) -> tuple[torch.Tensor, float]:
    torch.set_num_threads(1)
    x = torch.full((args.dim,), 2.0)
    opt = MBDOptimizer([x], num_samples=args.samples, temperature=0.5, num_steps=args.steps, bounds=(-5.0, 5.0), seed=0, process_group=process_group)
    if process_group is not None:
        dist.barrier(process_group)
    start = time.perf_counter()
    for _ in range(args.steps):
        opt.step(lambda c: costly_rastrigin(c[0], args.repeats))
    return x, time.perf_counter() - start


def worker(rank, world, args, out):
    # a file store: no free port to race for (see tests/test_distributed.py)
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(out, 'store')}", rank=rank, world_size=world)
    x, elapsed = optimize(args, dist.group.WORLD)
    torch.save({"x": x, "time": elapsed}, os.path.join(out, f"rank{rank}.pt"))
    dist.barrier()  # every rank has finished before any tears the group down
    dist.destroy_process_group()
    os._exit(0)  # skip the C++ teardown, where gloo now and then aborts a rank (see tests/test_distributed.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--dim", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=20, help="evaluations per call: the objective's cost")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/results.md")
    args = parser.parse_args()

    single_x, single_time = optimize(args)
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(worker, args=(args.procs, args, out), nprocs=args.procs, join=True)
        ranks = [torch.load(os.path.join(out, f"rank{r}.pt")) for r in range(args.procs)]
    multi_time = max(r["time"] for r in ranks)
    identical = all(torch.equal(r["x"], single_x) for r in ranks)
    rows = [
        ["1 process", f"{single_time:.2f}", "1.00", "-"],
        [f"{args.procs} processes (gloo)", f"{multi_time:.2f}", f"{single_time / multi_time:.2f}", "yes" if identical else "NO"],
    ]
    table = markdown_table(["run", "wall time (s)", "speed-up", "bit-identical to 1 process"], rows)
    print(table)
    if not args.no_write:
        cmd = f"python benchmarks/distributed.py --procs {args.procs} --dim {args.dim} --samples {args.samples} --steps {args.steps} --repeats {args.repeats}"
        write_section(
            "distributed",
            f"## Sample evaluation across processes\n\n`{cmd}` on {machine()} (one thread per process):\n\n{table}\n",
        )


if __name__ == "__main__":
    main()
