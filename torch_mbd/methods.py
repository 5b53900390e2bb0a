"""The method table: every optimizer ``plan(method=)``, ``minimize(method=)`` and the CLI offer, by name.

[`METHODS`][torch_mbd.methods.METHODS] maps a name to its [`SamplingOptimizer`][torch_mbd.sampling.SamplingOptimizer] subclass; the CLI's
``--method`` choices, the benchmarks and the tests read it. [`register_method`][torch_mbd.methods.register_method] adds one.
"""

from __future__ import annotations

from .adaptive import AdaptiveMBDOptimizer
from .cem import CEMOptimizer
from .cmaes import CMAESOptimizer
from .mppi import MPPIOptimizer
from .optim import MBDOptimizer
from .paper_baselines import PaperCEMOptimizer, PaperCMAESOptimizer, PaperMPPIOptimizer
from .predictive import PredictiveSamplingOptimizer
from .sampling import SamplingOptimizer

METHODS: dict[str, type[SamplingOptimizer]] = {}
"""Method name -> optimizer class: ``"mbd"`` (the paper's), ``"mbd-adaptive"`` (noise level and shape learnt); the standard baselines ``"cem"``, ``"mppi"``, ``"cmaes"``
(pycma) and ``"predictive"`` (predictive sampling); the paper's baselines as the authors ran them,
``"paper-mppi"``, ``"paper-cem"``, ``"paper-cmaes"`` ([`torch_mbd.paper_baselines`][torch_mbd.paper_baselines])."""


def register_method(cls: type[SamplingOptimizer], name: str | None = None) -> type[SamplingOptimizer]:
    """Add ``cls`` to [`METHODS`][torch_mbd.methods.METHODS] under ``name`` (default ``cls.method``); usable as a class decorator.

    Raises:
        TypeError: ``cls`` is not a [`SamplingOptimizer`][torch_mbd.sampling.SamplingOptimizer] subclass.
        ValueError: ``name`` is not a non-empty string, or is taken by another class.
    """
    if not isinstance(cls, type) or not issubclass(cls, SamplingOptimizer):
        raise TypeError(f"register_method needs a SamplingOptimizer subclass, got {cls!r}")
    name = cls.method if name is None else name
    if not isinstance(name, str) or not name:
        raise ValueError(f"Invalid method name: expected a non-empty string, got {name!r}")
    if METHODS.get(name, cls) is not cls:
        raise ValueError(f"method {name!r} is already registered to {METHODS[name].__name__}")
    METHODS[name] = cls
    return cls


for _cls in (MBDOptimizer, AdaptiveMBDOptimizer, CEMOptimizer, MPPIOptimizer, CMAESOptimizer, PredictiveSamplingOptimizer,
             PaperMPPIOptimizer, PaperCEMOptimizer, PaperCMAESOptimizer):
    register_method(_cls)


def optimizer_class(method: str) -> type[SamplingOptimizer]:
    """The optimizer class registered as ``method`` in [`METHODS`][torch_mbd.methods.METHODS].

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}")
    return METHODS[method]
