"""The method table the tests run over: :data:`torch_mbd.METHODS` plus what each method takes.

A new method registered in ``torch_mbd.methods`` must get a row in :data:`FLAGS` (a test checks it);
every generic test of ``tests/test_sampling.py`` (bounds, NaN, groups, resume, keep-best, devices,
dtypes) then runs over it, the way torch's ``optim_db`` drives its optimizer tests.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from torch_mbd import METHODS


class Method(NamedTuple):
    name: str
    cls: type
    temperature: bool  # takes a temperature (a number or "auto") and reports it in StepInfo
    demo: bool  # takes demonstrations
    fraction: bool  # perturbs a fraction of the coordinates (group option "fraction")
    needs: str | None  # an optional library it needs


FLAGS = {
    "mbd": dict(temperature=True, demo=True, fraction=True),
    "mbd-adaptive": dict(temperature=True),
    "cem": dict(),
    "mppi": dict(temperature=True),
    "cmaes": dict(needs="cma"),
    "predictive": dict(),
    "paper-mppi": dict(temperature=True),
    "paper-cem": dict(),
    "paper-cmaes": dict(temperature=True),
}

TABLE = [
    Method(name, cls, **{**dict(temperature=False, demo=False, fraction=False, needs=None), **FLAGS.get(name, {})})
    for name, cls in METHODS.items()
]


def method_params(select=lambda m: True):
    """``pytest.param`` per method of :data:`TABLE` that ``select`` keeps, skipped where a library is missing."""
    params = []
    for m in TABLE:
        if not select(m):
            continue
        marks = [pytest.mark.skipif(_missing(m.needs), reason=f"needs {m.needs}")] if m.needs else []
        params.append(pytest.param(m, id=m.name, marks=marks))
    return params


def _missing(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return True
    return False
