"""torch-mbd: Model-Based Diffusion (Pan, Yi, Shi, Qu) for PyTorch.

A gradient-free optimizer that runs a reverse diffusion process whose score is estimated
from the model itself. Use [`MBDOptimizer`][torch_mbd.MBDOptimizer] (or any method of [`METHODS`][torch_mbd.METHODS], all of them
[`SamplingOptimizer`][torch_mbd.SamplingOptimizer] subclasses) like any ``torch.optim`` optimizer,
[`minimize`][torch_mbd.minimize] for black-box functions and [`plan`][torch_mbd.plan] for trajectory optimization
with any [`RolloutModel`][torch_mbd.RolloutModel].
"""

from .adaptive import AdaptiveMBDOptimizer
from .async_mpc import AsyncMPC, ClosedLoopResult, run_closed_loop
from .callbacks import HistoryLogger, PrintLogger, StepLog
from .cem import CEMOptimizer
from .closure import batched_closure
from .denoise import (
    DEFAULT_TARGET_ESS,
    best_sample,
    demo_log_likelihood,
    demo_log_weights,
    effective_sample_size,
    ess_temperature,
    normalized_log_weights,
    reverse_step,
    sample_candidates,
    score_ascent,
    weighted_mean,
)
from .cmaes import CMAESOptimizer
from .methods import METHODS, register_method
from .minimize import MinimizeHistory, MinimizeResult, minimize
from .mpc import MPC
from .mppi import MPPIOptimizer
from .optim import MBDOptimizer
from .paper_baselines import PaperCEMOptimizer, PaperCMAESOptimizer, PaperMPPIOptimizer
from .plan import PlanResult, plan
from .predictive import PredictiveSamplingOptimizer
from .rollout import RolloutModel, Trajectory
from .sampling import ConstantObjectiveWarning, SamplingOptimizer, StepInfo, UpdateResult
from .schedule import Schedule, linear_schedule

__version__ = "0.1.0"

__all__ = [
    "SamplingOptimizer",
    "UpdateResult",
    "METHODS",
    "register_method",
    "MBDOptimizer",
    "AdaptiveMBDOptimizer",
    "CEMOptimizer",
    "MPPIOptimizer",
    "CMAESOptimizer",
    "PredictiveSamplingOptimizer",
    "PaperMPPIOptimizer",
    "PaperCEMOptimizer",
    "PaperCMAESOptimizer",
    "batched_closure",
    "StepInfo",
    "ConstantObjectiveWarning",
    "minimize",
    "MinimizeResult",
    "MinimizeHistory",
    "StepLog",
    "HistoryLogger",
    "PrintLogger",
    "plan",
    "PlanResult",
    "MPC",
    "AsyncMPC",
    "run_closed_loop",
    "ClosedLoopResult",
    "RolloutModel",
    "Trajectory",
    "Schedule",
    "linear_schedule",
    "sample_candidates",
    "normalized_log_weights",
    "demo_log_likelihood",
    "demo_log_weights",
    "weighted_mean",
    "effective_sample_size",
    "ess_temperature",
    "best_sample",
    "DEFAULT_TARGET_ESS",
    "score_ascent",
    "reverse_step",
]
