"""CMA-ES through pycma, ask/tell as the two hooks of the shared loop (a sibling of MBD)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

from .checks import check_int, check_positive
from .sampling import Evaluation, SamplingOptimizer, UpdateResult, check_unused_temperature, pop_first_sigma


def _import_cma():
    try:
        import cma
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("CMA-ES needs pycma: pip install 'torch-mbd[baselines]'") from exc
    return cma


class _NumpyNormal:
    """``randn(*shape)`` from a private ``numpy.random.Generator`` (pycma's ``randn`` option).

    Keeps pycma off numpy's global RNG, so runs are reproducible from the optimizer's
    ``torch.Generator`` alone; picklable, so the strategy can be saved.
    """

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape) -> np.ndarray:
        return self.rng.standard_normal(shape)


class CMAESOptimizer(SamplingOptimizer):
    """CMA-ES through pycma (``cma.CMAEvolutionStrategy``), ask/tell, ``popsize = num_samples``.

    One strategy per problem (``B`` problems are a Python loop over pycma objects: pycma is
    NumPy on the CPU; the evaluation stays batched in torch on the parameters' device). pycma
    draws the candidates (:meth:`sample` asks), adapts the step size and full covariance and
    handles the bounds (its default ``BoundTransform``); :meth:`update` tells it the costs. Coordinates
    of ``noise_scale`` 0 are pycma's ``fixed_variables`` (kept at their initial value). After
    each step the parameters hold the distribution mean in bounds (``es.result.xfavorite``).
    Infeasible or non-finite candidates are told to pycma as worse than every valid one (CMA-ES
    is rank based).

    Args:
        params: as for :class:`~torch_mbd.MBDOptimizer`.
        num_samples: population size ``n`` (pycma's ``popsize``), at least 2.
        sigma0: initial step size; ``None`` takes MBD's first sampling level ``sigma_{N-1}`` of the
            schedule options, so every method starts from the same distribution. Per-coordinate
            ``noise_scale`` becomes pycma's ``CMA_stds``.
        cma_options: extra pycma options (e.g. ``{"CMA_diagonal": True}``); ``popsize``,
            ``bounds``, ``randn`` and ``seed`` are set here.
        temperature: accepted (every method takes ``plan``'s arguments), checked and unused.
        target_ess: likewise.
        **options: the shared options of :class:`~torch_mbd.MBDOptimizer`.

    Raises:
        ImportError: pycma is not installed (``pip install 'torch-mbd[baselines]'``).
    """

    method = "cmaes"
    state_fields = ("strategies",)

    def __init__(
        self,
        params,
        num_samples: int = 256,
        sigma0: float | None = None,
        cma_options: dict | None = None,
        temperature: float | str | None = None,
        target_ess: float | None = None,
        **options,
    ):
        _import_cma()  # fail early, naming the extra to install
        sigma0 = None if sigma0 is None else check_positive("sigma0", sigma0)
        if cma_options is not None and not isinstance(cma_options, dict):
            raise TypeError(f"cma_options must be a dict, got {type(cma_options).__name__}")
        if check_int("num_samples", num_samples, minimum=1) == 1:
            raise ValueError("Invalid num_samples: CMA-ES needs a population of at least 2, got 1")
        check_unused_temperature(temperature, target_ess)
        sigma = pop_first_sigma(options, type(self).__name__)
        super().__init__(params, num_samples, **options)
        self.sigma0 = sigma0
        self._first_sigma = sigma if sigma0 is None else sigma0
        self.cma_options = dict(cma_options or {})
        self.strategies: list | None = None
        self._asked: list | None = None  # this step's candidates as pycma asked them (float64)

    def _make_strategies(self, y_bar: Tensor) -> list:
        cma = _import_cma()
        layout = self.layout
        opts = dict(self.cma_options)
        opts.update(popsize=self.num_samples, verbose=-9, verb_log=0, verb_disp=0, seed=float("nan"))
        if layout.lower is not None:

            def as_list(b):
                if isinstance(b, Tensor):
                    return [float(v) if math.isfinite(float(v)) else None for v in b.cpu()]
                return float(b)

            opts["bounds"] = [as_list(layout.lower), as_list(layout.upper)]
        frozen = []  # coordinates of noise_scale 0: pycma's fixed_variables (a std of 0 breaks its sampler)
        if layout.scale is not None:
            opts["CMA_stds"] = layout.scale.double().cpu().numpy()
            frozen = torch.nonzero(layout.scale == 0).flatten().tolist()
        x0 = y_bar.double().cpu().numpy()
        strategies = []
        for b in range(x0.shape[0]):
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator, device=self.generator.device))
            fixed = dict(fixed_variables={i: float(x0[b][i]) for i in frozen}) if frozen else {}
            with warnings.catch_warnings():  # pycma warns that fixed_variables and CMA_stds
                # may not mix; tests/test_sampling.py checks that they do here (zero-noise group)
                warnings.filterwarnings("ignore", "genotype-phenotype transformations", DeprecationWarning)
                options = dict(opts, randn=_NumpyNormal(seed), **fixed)
                es = cma.CMAEvolutionStrategy(x0[b], float(self._first_sigma), options)
            strategies.append(es)
        return strategies

    def sample(self, y_bar: Tensor) -> tuple[Tensor, float]:
        """Ask every strategy for ``num_samples`` candidates."""
        if self.strategies is None:
            self.strategies = self._make_strategies(y_bar)
        self._asked = [es.ask() for es in self.strategies]
        samples = self.sample_buffer(y_bar.shape[0])
        samples.copy_(torch.from_numpy(np.stack([np.stack(a) for a in self._asked])))  # [B, n, D] float64
        if self.layout.lower is not None:  # guard float64 -> float32 rounding only; pycma's points are in bounds
            samples.clamp_(min=self.layout.lower, max=self.layout.upper)
        return samples, float(np.mean([es.sigma for es in self.strategies]))

    def update(self, samples: Tensor, evaluation: Evaluation, y_bar: Tensor) -> UpdateResult:
        """Tell every strategy the costs of what it asked; the new estimate is its mean in bounds."""
        rewards, feasible = evaluation.rewards, evaluation.feasible
        valid_samples = torch.isfinite(rewards) if feasible is None else torch.isfinite(rewards) & feasible
        costs = (-rewards).double().cpu()
        ok = valid_samples.cpu()
        valid = ok.any(-1)
        new = y_bar.clone()
        for b, es in enumerate(self.strategies):
            if not bool(valid[b]):
                continue  # nothing to learn from; pycma allows asking again
            worst = float(costs[b][ok[b]].max())
            told = torch.where(ok[b], costs[b], torch.full_like(costs[b], worst + 1.0 + abs(worst)))
            es.tell(self._asked[b], told.tolist())
            new[b] = torch.as_tensor(es.result.xfavorite, dtype=self.dtype, device=self.device)
        sigma = float(np.mean([es.sigma for es in self.strategies]))
        return UpdateResult(new, torch.zeros_like(rewards), valid.to(self.device), sigma=sigma)

    @property
    def sigma(self) -> list[float]:
        """pycma's current step size of each problem (empty before the first step)."""
        return [] if self.strategies is None else [float(es.sigma) for es in self.strategies]

    def check_state_fields(self, saved: dict) -> dict:
        """The saved strategies: ``None`` or one pycma strategy per problem, of this dimension and population."""
        strategies = saved["strategies"]
        if strategies is None:
            return dict(strategies=None)
        B, D = math.prod(self.batch_shape), self.layout.D
        if not isinstance(strategies, list) or len(strategies) != B:
            got = len(strategies) if isinstance(strategies, list) else type(strategies).__name__
            raise ValueError(f"state_dict strategies must be a list of {B} pycma strategies, got {got}")
        cls = _import_cma().CMAEvolutionStrategy
        for b, es in enumerate(strategies):
            if not isinstance(es, cls):
                got = type(es).__name__
                raise ValueError(f"state_dict strategies[{b}] must be a pycma CMAEvolutionStrategy, got {got}")
            dim = es.N + len(es.opts.get("fixed_variables") or {})
            if dim != D or es.popsize != self.num_samples or not callable(es.opts.get("randn")):
                raise ValueError(
                    f"state_dict strategies[{b}] has dimension {dim} and population {es.popsize}; "
                    f"this optimizer needs {D} and {self.num_samples} (and the strategy's own randn)"
                )
        return dict(strategies=strategies)
