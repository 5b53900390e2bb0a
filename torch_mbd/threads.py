"""Torch's intra-op threads while :func:`~torch_mbd.plan`, :func:`~torch_mbd.minimize`, :class:`~torch_mbd.MPC` and
every optimizer's ``step()`` run.

**The policy.** These run their torch work with **one** intra-op thread by default and
give torch its previous setting back when they return (or raise). What they ask of torch is many
small operations: a denoiser step over ``[n, D]`` tensors, an analytic rollout of ``[n, nx]``
states per time step, a reward over ``[n, H, ...]``. Torch splits the larger ones over its OpenMP
threads; every split ends with a wait for all of them, and an idle OpenMP worker spins for a
while before it sleeps. On a machine whose cores another process keeps busy, a preempted worker
makes the operation wait a scheduler time slice, and a plan issues hundreds of operations per
diffusion step (the car: 50 RK4 steps of many operations each). Measured
with ``benchmarks/threads.py`` on a 2-core CPU that other jobs also loaded: the car plan, 256
samples x 100 steps, took 150 s with torch's two threads beside a CPU hog, 29 s with
``OMP_NUM_THREADS=1`` and 34 s with this default. A fixed thread count also fixes the order in
which torch adds up a large tensor (one chunk per thread; measured: a sum of 100,000 floats), so the same
seed gives the same plan bit for bit whatever torch was set to.

**What it does not touch.** The MuJoCo CPU backend of ``dynamics`` simulates on MuJoCo's own
thread pool (``nthread=``, default every CPU); each rollout runs on one thread from start to end,
so its result does not depend on the pool's size, and idle workers wait without spinning. GPU
work does not use torch's CPU threads. A network's forward pass over a batch of candidates can be
large enough to use torch's threads: give the optimizer ``torch_threads="torch"`` (or a number) then;
:func:`use_threads` applies this policy around any block.

**Overrides**, strongest first: the ``torch_threads=`` argument of ``plan`` / ``minimize`` /
``MPC`` / the optimizers (``plan``, ``minimize`` and ``MPC`` give their optimizer ``"torch"``, so
their own setting holds); the environment variable ``TORCH_MBD_THREADS``; the default, 1. Each takes an integer
``>= 1`` or ``"torch"``, which keeps torch's own setting (``OMP_NUM_THREADS`` or
``torch.set_num_threads``) untouched.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch

from .checks import check_int

ENV_VAR = "TORCH_MBD_THREADS"
"""Environment variable that sets the default of ``torch_threads`` (an integer >= 1, or ``"torch"``)."""

KEEP = "torch"
"""The ``torch_threads`` value that leaves torch's thread setting as it is."""

DEFAULT_THREADS = 1
"""Intra-op threads of ``plan`` / ``minimize`` / ``MPC`` when neither the argument nor :data:`ENV_VAR` is set."""


def resolve_threads(torch_threads: int | str | None = None) -> int | None:
    """The number of intra-op threads to plan with, or ``None`` to keep torch's setting.

    Args:
        torch_threads: an integer ``>= 1``, ``"torch"`` (keep torch's setting), or ``None``: the
            value of the environment variable :data:`ENV_VAR` if it is set, else :data:`DEFAULT_THREADS`.

    Raises:
        ValueError: ``torch_threads`` (or the environment variable) is neither an integer >= 1 nor ``"torch"``.
    """
    name = "torch_threads"
    if torch_threads is None:
        text = os.environ.get(ENV_VAR, "").strip()
        if not text:
            return DEFAULT_THREADS
        name = f"environment variable {ENV_VAR}"
        try:
            torch_threads = int(text)
        except ValueError:
            torch_threads = text
    if isinstance(torch_threads, str):
        if torch_threads == KEEP:
            return None
        raise ValueError(f"Invalid {name}: expected an integer >= 1 or {KEEP!r}, got {torch_threads!r}")
    return check_int(name, torch_threads, minimum=1)


@contextmanager
def use_threads(num_threads: int | str | None = None) -> Iterator[int]:
    """Run the block with ``num_threads`` torch intra-op threads, then restore torch's setting.

    Args:
        num_threads: as in :func:`resolve_threads` (``None``: :data:`ENV_VAR` or 1; ``"torch"``: no change).

    Yields:
        The number of intra-op threads in effect inside the block.

    The previous setting comes back also when the block raises. Torch's setting is per process
    (the OpenMP one per calling thread): do not change it from another thread inside the block.

    Example:
        >>> before = torch.get_num_threads()
        >>> with use_threads(1) as n:
        ...     n == torch.get_num_threads() == 1
        True
        >>> torch.get_num_threads() == before
        True
    """
    wanted = resolve_threads(num_threads)
    before = torch.get_num_threads()
    if wanted is None or wanted == before:
        yield before
        return
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(before)
