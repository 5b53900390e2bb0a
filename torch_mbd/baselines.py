"""The standard baselines, re-exported in one place: CEM, MPPI, CMA-ES and predictive sampling.

The paper (Tables 2-3, Fig. 5) compares Model-Based Diffusion with zeroth-order optimizers at
the same budget. Each is a sibling of :class:`~torch_mbd.MBDOptimizer` over the shared loop
:class:`~torch_mbd.sampling.SamplingOptimizer` (same constructor options, same ``step(closure)``
/ rollout ``step()`` contract; after every step the parameters hold the method's estimate),
so a comparison measures the update rule and nothing else:

* :class:`~torch_mbd.cem.CEMOptimizer` (:mod:`torch_mbd.cem`): diagonal Gaussian; keep the best
  ``elite_fraction``, refit mean and per-coordinate standard deviation to them.
* :class:`~torch_mbd.mppi.MPPIOptimizer` (:mod:`torch_mbd.mppi`): MBD's normalized softmax
  weights with a fixed standard deviation.
* :class:`~torch_mbd.cmaes.CMAESOptimizer` (:mod:`torch_mbd.cmaes`): pycma's
  ``CMAEvolutionStrategy`` driven by ask/tell (``pip install 'torch-mbd[baselines]'``).
* :class:`~torch_mbd.predictive.PredictiveSamplingOptimizer` (:mod:`torch_mbd.predictive`): the
  best of the estimate and its perturbations.

Unless told otherwise every baseline starts from the same distribution as MBD's first step:
mean = the parameters' initial value, standard deviation = ``sigma_{N-1}`` of MBD's schedule
(``num_steps``, ``beta_first``, ``beta_last``, ``noise_convention``) times the group's ``noise_scale``.
"""

from __future__ import annotations

from .cem import CEMOptimizer, cem_update, elite_log_weights
from .cmaes import CMAESOptimizer
from .methods import optimizer_class
from .mppi import MPPIOptimizer, mppi_update
from .optim import MBDOptimizer
from .predictive import PredictiveSamplingOptimizer

OPTIMIZERS = {"mbd": MBDOptimizer, "cem": CEMOptimizer, "mppi": MPPIOptimizer, "cmaes": CMAESOptimizer}
"""The standard methods (:data:`torch_mbd.methods.METHODS` holds every one)."""

__all__ = [
    "CEMOptimizer", "MPPIOptimizer", "CMAESOptimizer", "PredictiveSamplingOptimizer", "OPTIMIZERS",
    "cem_update", "elite_log_weights", "mppi_update", "optimizer_class",
]
