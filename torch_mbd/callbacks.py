"""Loggers for [`minimize`][torch_mbd.minimize.minimize] and [`plan`][torch_mbd.plan.plan]: ``callback=`` is called with one [`StepLog`][torch_mbd.callbacks.StepLog] after every step.

A callback is any callable ``StepLog -> bool | None``. Returning ``True`` (any true value) stops
the run after that step, with the stop reason ``"callback"``; ``None`` or ``False`` goes on. An
exception raised in a callback propagates out of ``minimize`` / ``plan``.

Two ready ones: [`HistoryLogger`][torch_mbd.callbacks.HistoryLogger] collects every row (e.g. for a plot),
[`PrintLogger`][torch_mbd.callbacks.PrintLogger] prints one line every few steps::

    log = HistoryLogger()
    res = minimize(f, x0, callback=log)
    log.column("best")  # [N] the best cost so far after each step
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import Callable, TextIO

import torch
from torch import Tensor

from .checks import check_int


@dataclass(frozen=True)
class StepLog:
    """One step of a [`minimize`][torch_mbd.minimize.minimize] or [`plan`][torch_mbd.plan.plan] run, as ``callback=`` receives it.

    Attributes:
        step: steps done so far, over every restart (1 after the first step).
        nfev: points evaluated so far: ``minimize``: the points ``f`` scored, the final estimates of
            earlier restarts included; ``plan``: rollouts per problem (``step * num_samples``).
        best: the best so far: ``minimize``: the lowest cost evaluated (``inf`` before a finite one);
            ``plan``: the best valid sample's mean step reward, averaged over the problems (``-inf``
            while some problem has none).
        step_best: this step's best: the lowest finite cost (``inf`` if none), or the highest valid
            mean step reward (averaged over the problems).
        step_mean: this step's mean cost (``minimize``) or mean reward (``plan``) over its valid samples.
        sigma: the sampling standard deviation of this step (``optimizer.last_step.sigma``).
        temperature: the temperature the step's weights used (the mean over problems under
            ``"auto"``), or ``None`` for a method without one.
        restart: which run this step belongs to: 0 for the first, ``r`` after ``r`` restarts
            (``plan`` does not restart: 0).
        elapsed: seconds since the run started.
        objective: ``"cost"`` (``minimize``: lower is better) or ``"reward"`` (``plan``: higher is better).
    """

    step: int
    nfev: int
    best: float
    step_best: float
    step_mean: float
    sigma: float
    temperature: float | None
    restart: int
    elapsed: float
    objective: str


def check_callback(callback) -> Callable[[StepLog], object] | None:
    """``callback`` checked: ``None`` or a callable.

    Raises:
        TypeError: anything else.
    """
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable (StepLog -> bool | None) or None, got {type(callback).__name__}")
    return callback


def as_float(temperature) -> float | None:
    """A step's temperature as a float: ``None`` stays ``None``, a ``[B]`` tensor gives its mean."""
    if temperature is None:
        return None
    return float(temperature.float().mean()) if isinstance(temperature, Tensor) else float(temperature)


class HistoryLogger:
    """A callback that keeps every [`StepLog`][torch_mbd.callbacks.StepLog] it is given, in order.

    Attributes:
        rows: the logs, oldest first (over every restart of a ``minimize`` run).

    Example:
        >>> log = HistoryLogger()
        >>> res = minimize(lambda x: (x**2).sum(-1), torch.ones(3), num_samples=16, num_steps=5,
        ...                seed=0, progress=False, callback=log)
        >>> len(log.rows), log.rows[-1].step
        (5, 5)
        >>> log.column("nfev").tolist()
        [16.0, 32.0, 48.0, 64.0, 80.0]
    """

    def __init__(self):
        self.rows: list[StepLog] = []

    def __call__(self, log: StepLog) -> None:
        self.rows.append(log)

    def column(self, name: str) -> Tensor:
        """``[N]`` float64 tensor of one field of every row (a ``None`` temperature reads NaN).

        Raises:
            ValueError: ``name`` is not a field of [`StepLog`][torch_mbd.callbacks.StepLog] holding a number.
        """
        numeric = [f.name for f in dataclasses.fields(StepLog) if f.name != "objective"]
        if name not in numeric:
            raise ValueError(f"Invalid name: expected one of {numeric}, got {name!r}")
        values = [getattr(row, name) for row in self.rows]
        return torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float64)


class PrintLogger:
    """A callback that prints one line every ``every`` steps (and at the first step of each restart).

    Args:
        every: print every ``every``-th step, an integer ``>= 1``.
        file: where to print; default ``sys.stdout`` (read at every print).

    A line reads ``step 20  nfev 1280  best 0.0123  step best 0.0150  mean 0.41  sigma 0.0871  restart 0  0.34s``.
    """

    def __init__(self, every: int = 10, file: TextIO | None = None):
        self.every = check_int("every", every, minimum=1)
        self.file = file
        self._restart = -1

    def __call__(self, log: StepLog) -> None:
        first = log.restart != self._restart
        self._restart = log.restart
        if first or log.step % self.every == 0:
            print(
                f"step {log.step}  nfev {log.nfev}  best {log.best:.6g}  step best {log.step_best:.6g}  "
                f"mean {log.step_mean:.6g}  sigma {log.sigma:.4g}  restart {log.restart}  {log.elapsed:.2f}s",
                file=sys.stdout if self.file is None else self.file,
            )
