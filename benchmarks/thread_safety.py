"""What the lock that makes a MuJoCo CPU model shareable between threads costs.

``dynamics.mujoco_cpu.CpuRollout`` serves one rollout at a time (a ``threading.Lock`` around the
native call): two threads calling one ``mujoco.rollout.Rollout`` pool at once crash the process.
This script times single-threaded ``MujocoModel.rollout`` calls with the lock and with it replaced
by a no-op (``contextlib.nullcontext``), interleaved in one run so that the machine's load hits
both alike, and then the same number of rollouts from one thread and from two threads sharing the
model (which wait for each other at the lock).

    python benchmarks/thread_safety.py                 # hopper, 8 x 5 and 32 x 10 rollouts
    python benchmarks/thread_safety.py --repeats 50

Prints the time of one bare acquire and release of the lock, then one row per batch: median
milliseconds of the fastest call with and without the lock, their ratio, and the wall time of the
shared-model runs.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
import timeit

import torch

import dynamics


def lock_cost(model, actions, repeats: int, rounds: int) -> tuple[float, float]:
    """Fastest seconds per rollout with the backend's lock and with a no-op in its place, interleaved.

    The fastest call, not the median: on a machine other jobs load, the median moves with their
    load far more than by a lock's sub-microsecond cost.
    """
    backend = model.backend
    lock, no_lock = backend._lock, contextlib.nullcontext()
    with_lock, without = [], []
    for r in range(rounds):
        for name in ("lock", "none") if r % 2 == 0 else ("none", "lock"):  # alternate: no position bias
            backend._lock = lock if name == "lock" else no_lock
            seconds = timeit.repeat(lambda: model.rollout(actions), number=1, repeat=repeats)  # one call each
            (with_lock if name == "lock" else without).extend(seconds)
    backend._lock = lock
    return min(with_lock), min(without)


def shared_wall(model, actions, calls: int, threads: int) -> float:
    """Wall seconds of ``calls`` rollouts in all, split over ``threads`` threads sharing ``model``."""

    def work():
        for _ in range(calls // threads):
            model.rollout(actions)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="hopper")
    parser.add_argument("--repeats", type=int, default=20, help="calls per round and variant")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (half start with the lock)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = dynamics.make(args.task)
    print(f"task {args.task}, MuJoCo pool of {model.backend.nthread} thread(s), torch 1 thread")
    lock = threading.Lock()

    def acquire_release():
        with lock:
            pass

    bare = min(timeit.repeat(acquire_release, number=100_000, repeat=5)) / 100_000
    print(f"one uncontended acquire + release of a threading.Lock: {1e9 * bare:.0f} ns")
    print(f"{'batch n x H':>12} {'lock (ms)':>10} {'no lock (ms)':>13} {'ratio':>6} {'1 thread x 40 (s)':>18} {'2 threads x 20 (s)':>19}")
    for n, horizon in ((8, 5), (32, 10)):
        actions = torch.zeros(n, horizon, model.action_dim)
        model.rollout(actions)  # warm up: buffers of this shape allocated
        locked, free = lock_cost(model, actions, args.repeats, args.rounds)
        one, two = shared_wall(model, actions, 40, 1), shared_wall(model, actions, 40, 2)
        print(f"{f'{n} x {horizon}':>12} {1e3 * locked:>10.3f} {1e3 * free:>13.3f} {locked / free:>6.3f} {one:>18.3f} {two:>19.3f}")


if __name__ == "__main__":
    main()
