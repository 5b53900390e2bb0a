"""MNIST without gradients (paper, appendix A.2.1): test accuracy against evaluations, MBD vs EvoTorch.

The paper's 784-32-32-10 ReLU MLP (26,506 parameters) and cross-entropy loss, trained without
gradients at equal evaluations: every method scores ``--samples`` (256) candidate parameter
vectors per step, all candidates of a step on the same minibatch of ``--batch-size`` (256)
training images, the same minibatch sequence and the same initialization (PyTorch's default,
``examples/mnist_mlp.py``'s ``mlp(seed)``) for every method of a seed. The loss of all candidates
of a step is one call of :class:`FlatLoss` (``torch.func.functional_call`` vmapped over a
``[n, P]`` matrix of flat parameter vectors): the MBD methods and the EvoTorch methods call the
same function, and it counts the evaluations.

Methods (the table :data:`METHODS`; ``--methods`` picks from it):

* ``mbd``: ``MBDOptimizer`` with the authors' settings (betas 3e-5 to 1e-3, temperature 0.3, 20%
  of the coordinates perturbed per sample, 10x smaller noise on the first layer's weight);
* ``auto``: the same with ``MBDOptimizer``'s automatic ``noise_scale`` / ``fraction``;
* ``snes``: ``evotorch.algorithms.SNES`` with EvoTorch's default learning rates;
* ``pgpe``: ``evotorch.algorithms.PGPE`` with the ClipUp optimizer;
* ``cem``: ``evotorch.algorithms.CEM``;
* ``sgd``: SGD with momentum on the same minibatches (one gradient per step: a reference, not
  an equal-evaluation method);
* ``torch_mbd:NAME[:key=value,...]`` on the command line: any method of ``torch_mbd.METHODS``
  with those options, e.g. ``torch_mbd:mppi:temperature=0.3``. A permanent entry is one line
  (see :func:`torch_mbd_method`)::

      METHODS["adaptive"] = torch_mbd_method("mbd-adaptive", "MBD (adaptive)", temperature=0.3)

The curve: test accuracy (full 10,000-image test set) at the step counts ``--budgets``
(log-spaced, default 50 160 500 1600 5000: up to 10x the authors' 500 steps). MBD's noise
schedule depends on its step count, so an MBD method runs once per budget (``num_steps`` =
budget); the EvoTorch methods and SGD have no horizon and run once to the largest budget,
recording the accuracy of their center at every budget on the way. Every record (method, seed,
steps) goes to ``docs/figures/mnist_runs.json`` as soon as it is measured (``--runs``); a later
invocation skips what is stored with the same settings, and an EvoTorch run interrupted between
two budgets continues from its last budget's saved state (``--state-dir``), so the grid resumes
where it stopped. Runs go in order of cost: every budget up to 500 steps for every seed first,
then the longer ones.

Run::

    python -m benchmarks.mnist --estimate                       # time one step of each method, project the grid
    python -m benchmarks.mnist                                  # the grid (hours on 2 cores), then the report
    python -m benchmarks.mnist --report                         # only the report from the stored runs
    python -m benchmarks.mnist --methods pgpe torch_mbd:mppi --seeds 1 --budgets 50 500 --runs /tmp/r.json --no-write

Flags: ``--methods``, ``--seeds`` (count, seeds 0..k-1), ``--budgets`` (step counts),
``--samples``, ``--batch-size``, ``--train-size`` (first N training images), ``--data`` (folder
with the IDX files; default ``$TORCH_MBD_DATA/mnist``), ``--device``, ``--runs``, ``--state-dir``,
``--fresh`` (ignore stored runs), ``--estimate``, ``--report``, ``--no-write`` (leave docs/ alone).
Writes the section ``mnist`` of docs/results.md and docs/figures/mnist_curve.png.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import math
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _runs
from benchmarks._report import figure_path, machine, markdown_table, write_section

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "docs" / "figures" / "mnist_runs.json"
STATE_DIR = ROOT / ".cache" / "mnist_state"
BUDGETS = (50, 160, 500, 1600, 5000)
TABLE_STEPS = (500, 1600, 5000)  # the table's columns: the authors' budget, about 3x and 10x


def load_example():
    """``examples/mnist_mlp.py`` as a module (``examples/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("mnist_mlp_example", ROOT / "examples" / "mnist_mlp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


# --------------------------------------------------------------------------- the batched loss
class FlatLoss:
    """Cross-entropy of many parameter vectors of one model on one minibatch, in one vmapped call.

    A parameter vector is the model's parameters flattened and concatenated in
    ``model.named_parameters()`` order (:meth:`flatten`); ``loss(flat [n, P], x, y)`` returns the
    ``[n]`` losses, ``functional_call(model, unflatten(flat[j]), x)`` for every ``j`` at once
    (``torch.func.vmap``, no Python loop over candidates). :attr:`evaluations` counts the
    candidates scored so far.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = [name for name, _ in model.named_parameters()]
        self.shapes = [tuple(p.shape) for _, p in model.named_parameters()]
        self.sizes = [p.numel() for _, p in model.named_parameters()]
        self.size = sum(self.sizes)
        self.evaluations = 0

        def one(theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
            return F.cross_entropy(torch.func.functional_call(self.model, self.unflatten(theta), (x,)), y)

        self._batched = torch.func.vmap(one, in_dims=(0, None, None))

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """``{name: tensor}`` views of one flat vector ``[P]``."""
        return {n: t.view(s) for n, t, s in zip(self.names, theta.split(self.sizes), self.shapes)}

    def flatten(self, tensors=None) -> Tensor:
        """The model's parameters (or ``tensors`` in the same order, with leading batch dims) as one flat tensor."""
        tensors = [p.detach() for p in self.model.parameters()] if tensors is None else list(tensors)
        lead = tensors[0].shape[: tensors[0].dim() - len(self.shapes[0])]
        return torch.cat([t.reshape(*lead, -1) for t in tensors], dim=-1)

    def load(self, theta: Tensor) -> None:
        """Copy the flat vector ``theta [P]`` into the model's parameters."""
        with torch.no_grad():
            for p, t in zip(self.model.parameters(), theta.split(self.sizes)):
                p.copy_(t.view(p.shape))

    @torch.no_grad()
    def __call__(self, flat: Tensor, x: Tensor, y: Tensor) -> Tensor:
        if flat.dim() != 2 or flat.shape[1] != self.size:
            raise ValueError(f"FlatLoss needs candidates [n, {self.size}], got {tuple(flat.shape)}")
        self.evaluations += flat.shape[0]
        return self._batched(flat, x, y)


# --------------------------------------------------------------------------- trainers
class Trainer:
    """One method's run: ``step(x, y)`` scores ``samples`` candidates on the minibatch and updates.

    ``solution()`` is the flat parameter vector evaluated (MBD: the model's parameters; EvoTorch:
    the search distribution's center). ``state()`` / ``restore(state)``: what a resumed anytime
    run needs (``None`` when the method cannot resume mid-run).
    """

    def step(self, x: Tensor, y: Tensor) -> float:
        raise NotImplementedError

    def solution(self) -> Tensor:
        raise NotImplementedError

    def state(self):
        return None

    def restore(self, state) -> None:
        raise NotImplementedError


class TorchMBDTrainer(Trainer):
    """A ``torch_mbd.METHODS`` optimizer over the model's parameters; its closure calls :class:`FlatLoss`."""

    def __init__(self, loss: FlatLoss, optimizer):
        self.loss, self.opt = loss, optimizer
        model_params = list(loss.model.parameters())
        opt_params = [p for g in optimizer.param_groups for p in g["params"]]
        if sorted(map(id, opt_params)) != sorted(map(id, model_params)):
            raise ValueError("the optimizer must hold every parameter of the model (FlatLoss scores whole vectors)")
        where = {id(p): i for i, p in enumerate(opt_params)}
        self.order = [where[id(p)] for p in model_params]  # model order -> index into the candidates

    def closure(self, x: Tensor, y: Tensor):
        def closure(candidates):
            return self.loss(self.loss.flatten([candidates[i] for i in self.order]), x, y)

        return closure

    def step(self, x, y):
        return float(self.opt.step(self.closure(x, y)))

    def solution(self):
        return self.loss.flatten()


class SGDTrainer(Trainer):
    """SGD with momentum on the minibatch: one forward and backward pass per step (not an evaluation count)."""

    def __init__(self, loss: FlatLoss, lr: float = 0.1, momentum: float = 0.9):
        self.loss = loss
        self.opt = torch.optim.SGD(loss.model.parameters(), lr=lr, momentum=momentum)

    def step(self, x, y):
        self.opt.zero_grad()
        value = F.cross_entropy(self.loss.model(x), y)
        value.backward()
        self.opt.step()
        return float(value.detach())

    def solution(self):
        return self.loss.flatten()

    def state(self):
        return {"model": self.loss.model.state_dict(), "opt": self.opt.state_dict()}

    def restore(self, state):
        self.loss.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])


try:  # EvoTorch is optional (pip install 'torch-mbd[bbob]'): the MBD methods run without it
    from evotorch import Problem as _Problem
except ImportError:  # pragma: no cover - depends on the environment
    _Problem = None

if _Problem is not None:

    class MinibatchProblem(_Problem):
        """Minimize :class:`FlatLoss` on the current minibatch (``.batch = (x, y)``); the whole population in one call."""

        def __init__(self, loss: FlatLoss, seed: int, device):
            self.loss, self.batch = loss, None
            super().__init__("min", solution_length=loss.size, initial_bounds=(-0.1, 0.1), dtype=torch.float32,
                             device=device, seed=seed)

        def _evaluate_batch(self, solutions):
            if self.batch is None:
                raise RuntimeError("MinibatchProblem: set .batch = (x, y) before a step")
            solutions.set_evals(self.loss(solutions.values, *self.batch))


class EvoTorchTrainer(Trainer):
    """An ``evotorch.algorithms`` searcher started at the model's initial parameters (its center)."""

    def __init__(self, loss: FlatLoss, algorithm: str, samples: int, seed: int, device, options: dict):
        if _Problem is None:
            raise ImportError(f"the EvoTorch method {algorithm} needs evotorch: pip install 'torch-mbd[bbob]'")
        import logging

        import evotorch.algorithms

        logging.getLogger("evotorch").setLevel(logging.WARNING)  # no INFO line per problem
        self.loss = loss
        self.problem = MinibatchProblem(loss, seed, device)
        cls = getattr(evotorch.algorithms, algorithm)
        self.searcher = cls(self.problem, popsize=samples, center_init=loss.flatten(), **options)

    def step(self, x, y):
        self.problem.batch = (x, y)
        self.searcher.step()
        self.problem.batch = None
        return float(self.searcher.population.evals[:, 0].mean())

    def solution(self):
        return torch.as_tensor(self.searcher.status["center"]).detach().clone()

    def state(self):
        self.problem.loss = None  # the loss (a vmapped function) is rebuilt, not pickled
        try:
            return pickle.dumps(self.searcher)
        finally:
            self.problem.loss = self.loss

    def restore(self, state):
        self.searcher = pickle.loads(state)
        self.problem = self.searcher.problem
        self.problem.loss = self.loss  # the one whose counter this run reads


# --------------------------------------------------------------------------- the method table
@dataclass(frozen=True)
class Method:
    """One row of :data:`METHODS`.

    Attributes:
        label: the name in tables and figures.
        kind: ``"torch_mbd"`` (``name`` in ``torch_mbd.METHODS``), ``"evotorch"`` (``name`` in
            ``evotorch.algorithms``) or ``"sgd"``.
        name: the optimizer's name.
        options: its keyword options (recorded with every run).
        anytime: one run to the largest budget serves every budget (no horizon); else one run per
            budget (MBD's schedule depends on ``num_steps``).
        param_groups: ``param_groups(model) -> list[dict]`` for a torch_mbd method (default: all
            parameters in one group).
        gradient: trains with gradients (not part of the equal-evaluation comparison).
    """

    label: str
    kind: str
    name: str
    options: dict = field(default_factory=dict)
    anytime: bool = False
    param_groups: Callable | None = None
    gradient: bool = False

    def settings(self) -> dict:
        """What a stored record must match to stand for a run of this method."""
        groups = None if self.param_groups is None else self.param_groups.__name__
        return {"kind": self.kind, "name": self.name, "options": _jsonable(self.options), "param_groups": groups}

    def trainer(self, loss: FlatLoss, samples: int, steps: int, seed: int, device) -> Trainer:
        """A fresh run of ``steps`` steps (``steps`` is the schedule length of a non-anytime method)."""
        if self.kind == "torch_mbd":
            import torch_mbd
            from torch_mbd.methods import optimizer_class

            cls = optimizer_class(self.name)
            params = self.param_groups(loss.model) if self.param_groups else loss.model.parameters()
            options = dict(self.options)
            if "num_steps" in _init_options(cls) or cls is torch_mbd.MBDOptimizer:
                options.setdefault("num_steps", steps)
            return TorchMBDTrainer(loss, cls(params, num_samples=samples, seed=seed, **options))
        if self.kind == "evotorch":
            return EvoTorchTrainer(loss, self.name, samples, seed, device, self.options)
        if self.kind == "sgd":
            return SGDTrainer(loss, **self.options)
        raise ValueError(f"unknown method kind {self.kind!r} (expected torch_mbd, evotorch or sgd)")


def _init_options(cls) -> set[str]:
    import inspect

    return {name for klass in cls.__mro__ if "__init__" in vars(klass) for name in inspect.signature(klass.__init__).parameters}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


def torch_mbd_method(name: str, label: str | None = None, *, param_groups=None, anytime: bool = False, **options) -> Method:
    """A row for the ``torch_mbd.METHODS`` optimizer ``name`` with ``options`` (e.g. ``temperature=0.3``).

    ``num_samples``, ``seed`` and (when the optimizer takes it) ``num_steps`` come from the run;
    ``anytime=True`` for an optimizer without a horizon (one run serves every budget).
    """
    return Method(label or f"torch_mbd {name}", "torch_mbd", name, options, anytime=anytime, param_groups=param_groups)


AUTHORS_MBD = {"temperature": 0.3, "beta_first": 3e-5, "beta_last": 1e-3}  # mbd/blackbox/mbd_mnist.py

# EvoTorch hyperparameters: EVOTORCH_NOTE says why (the report prints it); SWEEP is the seed-0 sweep.
METHODS: dict[str, Method] = {
    "mbd": torch_mbd_method("mbd", "MBD (authors' settings)", param_groups=example.official_param_groups, **AUTHORS_MBD),
    "auto": torch_mbd_method("mbd", "MBD (auto defaults)", **AUTHORS_MBD),
    "snes": Method("EvoTorch SNES", "evotorch", "SNES", {"stdev_init": 0.03}, anytime=True),
    "pgpe": Method("EvoTorch PGPE + ClipUp", "evotorch", "PGPE", {
        "optimizer": "clipup", "center_learning_rate": 0.1, "optimizer_config": {"max_speed": 0.2},
        "stdev_learning_rate": 0.1, "stdev_init": 0.01}, anytime=True),
    "cem": Method("EvoTorch CEM", "evotorch", "CEM", {"parenthood_ratio": 0.5, "stdev_init": 0.1, "stdev_max_change": 0.2}, anytime=True),
    "sgd": Method("SGD momentum (gradients)", "sgd", "sgd", {"lr": 0.1, "momentum": 0.9}, anytime=True, gradient=True),
}
"""Method name -> :class:`Method`. One line adds a torch_mbd method, e.g.
``METHODS["adaptive"] = torch_mbd_method("mbd-adaptive", "MBD (adaptive)", **AUTHORS_MBD)``."""
DEFAULT_METHODS = ["mbd", "auto", "snes", "pgpe", "cem", "sgd"]
EVOTORCH_NOTE = """EvoTorch settings: SNES with `stdev_init` 0.03 (about the first layer's initial weight scale
1/sqrt(784) = 0.036; 0.01 was far behind in the sweep below) and EvoTorch's default learning
rates; PGPE with `stdev_init` 0.01 (not swept); CEM with `stdev_init` 0.1 (the best of 0.01,
0.03 and 0.1 in the sweep); PGPE with ClipUp, `max_speed` = 2 x `center_learning_rate`
(ClipUp's rule, as EvoTorch's examples set it), `center_learning_rate` 0.1 (the best of 0.01, 0.03
and 0.1 in the sweep), `stdev_learning_rate` 0.1 and `stdev_max_change` 0.2 (its default); CEM with
the best half as parents (`parenthood_ratio` 0.5: with 0.1 the accuracy fell between 50 and 160
steps) and `stdev_max_change` 0.2 (a 20% cap on the change of the standard deviation per step). The sweep is short (160 steps, one seed): a longer or wider one
may find better settings."""


def _variant(name: str, label: str, **options) -> Method:
    base = METHODS[name]
    return Method(f"{base.label}, {label}", base.kind, base.name, {**base.options, **options}, anytime=base.anytime)


SWEEP: dict[str, Method] = {  # every swept option explicit: the sweep does not move with the table
    "pgpe-lr0.01": _variant("pgpe", "center_learning_rate 0.01, max_speed 0.02", center_learning_rate=0.01,
                            optimizer_config={"max_speed": 0.02}),
    "pgpe-lr0.03": _variant("pgpe", "center_learning_rate 0.03, max_speed 0.06", center_learning_rate=0.03,
                            optimizer_config={"max_speed": 0.06}),
    "pgpe-lr0.1": _variant("pgpe", "center_learning_rate 0.1, max_speed 0.2", center_learning_rate=0.1,
                           optimizer_config={"max_speed": 0.2}),
    "cem-parents0.1": _variant("cem", "parenthood_ratio 0.1", parenthood_ratio=0.1),
    "cem-parents0.5": _variant("cem", "parenthood_ratio 0.5", parenthood_ratio=0.5),
    "cem-parents0.5-stdev0.03": _variant("cem", "parenthood_ratio 0.5, stdev_init 0.03", parenthood_ratio=0.5, stdev_init=0.03),
    "cem-parents0.5-stdev0.1": _variant("cem", "parenthood_ratio 0.5, stdev_init 0.1", parenthood_ratio=0.5, stdev_init=0.1),
    "snes-stdev0.01": _variant("snes", "stdev_init 0.01", stdev_init=0.01),
    "snes-stdev0.03": _variant("snes", "stdev_init 0.03", stdev_init=0.03),
}
"""The seed-0 hyperparameter sweep of the EvoTorch rows (``--sweep``): the table's settings and variants."""


def parse_method(spec: str) -> Method:
    """A name of :data:`METHODS`, or ``torch_mbd:NAME[:key=value,...]`` (values are Python literals).

    Raises:
        ValueError: an unknown name, a ``torch_mbd`` method that is not registered, or an
            option that is not ``key=literal``.
    """
    if spec in METHODS:
        return METHODS[spec]
    if not spec.startswith("torch_mbd:"):
        raise ValueError(f"unknown method {spec!r}: expected one of {sorted(METHODS)} or torch_mbd:NAME[:key=value,...]")
    import torch_mbd

    name, _, rest = spec[len("torch_mbd:"):].partition(":")
    if name not in torch_mbd.METHODS:
        raise ValueError(f"{spec!r}: {name!r} is not in torch_mbd.METHODS {tuple(torch_mbd.METHODS)}")
    options = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.isidentifier():
            raise ValueError(f"{spec!r}: option {item!r} is not key=value")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value  # a bare word: a string option such as noise_convention=paper
    return torch_mbd_method(name, f"torch_mbd {name}" + (f" ({rest})" if rest else ""), **options)


# --------------------------------------------------------------------------- runs
def minibatches(n_train: int, batch_size: int, seed: int):
    """The minibatch index sequence of a seed (the example's: a fresh ``randperm`` prefix per step)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    while True:
        yield torch.randperm(n_train, generator=g)[:batch_size]


@torch.no_grad()
def test_accuracy(loss: FlatLoss, theta: Tensor, data: dict) -> float:
    """Test accuracy of the flat parameter vector ``theta``."""
    out = torch.func.functional_call(loss.model, loss.unflatten(theta.to(data["test_x"].device)), (data["test_x"],))
    return float((out.argmax(-1) == data["test_y"]).float().mean())


def run_method(name: str, method: Method, data: dict, seed: int, budgets, args, on_record=None,
               state_path: Path | None = None) -> list[dict]:
    """Train ``method`` from seed ``seed``'s initialization; one record per budget of ``budgets``.

    An anytime method runs once to ``max(budgets)`` and records every budget on the way (and,
    with ``state_path``, saves its state there after each, resuming from it when it exists);
    another method gets ``len(budgets) == 1``. ``on_record(record)`` is called with each record
    as it is measured.
    """
    budgets = sorted(budgets)
    if not method.anytime and len(budgets) != 1:
        raise ValueError(f"{method.label} depends on its step count: one budget per run, got {budgets}")
    device = data["train_x"].device
    train_x, train_y = data["train_x"][: args.train_size], data["train_y"][: args.train_size]
    loss = FlatLoss(example.mlp(seed, device))
    trainer = method.trainer(loss, args.samples, budgets[-1], seed, device)
    batches = minibatches(len(train_x), args.batch_size, seed)
    k, seconds, cpu = 0, 0.0, 0.0
    if state_path is not None and state_path.exists():
        saved = pickle.loads(state_path.read_bytes())
        if saved["settings"] == run_settings(method, args) and saved["seed"] == seed and saved["steps"] < budgets[-1]:
            trainer.restore(saved["trainer"])
            k, seconds, cpu, loss.evaluations = saved["steps"], saved["seconds"], saved["cpu_seconds"], saved["evaluations"]
            for _ in range(k):  # the same minibatch sequence from step k on
                next(batches)
            print(f"  {method.label} seed {seed}: resumed at step {k}", file=sys.stderr)
    records = []
    for budget in budgets:
        if budget <= k:
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        last = math.nan
        while k < budget:
            idx = next(batches).to(device)
            last = trainer.step(train_x[idx], train_y[idx])
            k += 1
        seconds += time.perf_counter() - t0
        cpu += time.process_time() - c0
        record = dict(
            method=name, seed=seed, steps=k, test_acc=test_accuracy(loss, trainer.solution(), data),
            evaluations=loss.evaluations, minibatch_loss=last, seconds=round(seconds, 2), cpu_seconds=round(cpu, 2),
            label=method.label, **run_settings(method, args),
        )  # fmt: skip
        records.append(record)
        print(f"  {method.label:26s} seed {seed} steps {k:5d}: test {100 * record['test_acc']:.2f}%  "
              f"{record['evaluations']} evaluations  {seconds:.0f} s", file=sys.stderr)
        if on_record is not None:
            on_record(record)
        further = state_path is not None and state_path.exists() and _saved_steps(state_path, method, args, seed) > k
        state = trainer.state() if state_path is not None and method.anytime and not further else None
        if state is not None:  # (a state further on, of the same run, is kept: a rerun of an early budget must not lose it)
            state_path.parent.mkdir(parents=True, exist_ok=True)
            blob = {"settings": run_settings(method, args), "seed": seed, "steps": k, "seconds": seconds, "cpu_seconds": cpu,
                        "evaluations": loss.evaluations, "trainer": state}
            tmp = state_path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(blob))
            tmp.replace(state_path)
    return records


def _saved_steps(path: Path, method: Method, args, seed: int) -> int:
    """The step count of the state saved at ``path`` for this run; -1 when it is another run's."""
    saved = pickle.loads(path.read_bytes())
    return saved["steps"] if saved["settings"] == run_settings(method, args) and saved["seed"] == seed else -1


def run_settings(method: Method, args) -> dict:
    """The settings a stored record must match (besides method, seed and steps)."""
    return dict(method.settings(), samples=args.samples, batch_size=args.batch_size, train_size=args.train_size,
                anytime=method.anytime, device=str(args.device))


def plan_runs(methods: dict[str, Method], seeds: int, budgets) -> list[tuple[str, int, list[int]]]:
    """``(method, seed, budgets)`` runs in order of cost: every budget up to 500 steps first, then each longer one.

    An anytime method's run is split at the same points (it resumes from its saved state).
    """
    budgets = sorted(set(budgets))
    stages = [[b for b in budgets if b <= 500]] + [[b] for b in budgets if b > 500]
    plan = []
    for stage in filter(None, stages):
        for seed in range(seeds):
            for name, method in methods.items():
                if method.anytime:
                    plan.append((name, seed, stage))
                else:
                    plan.extend((name, seed, [b]) for b in stage)
    return plan


def run_grid(methods: dict[str, Method], data: dict, args) -> int:
    """Run every planned (method, seed, budget) the store lacks; returns how many records were new."""
    store = _runs.RunStore(args.runs, key=lambda r: (r["method"], r["seed"], r["steps"]), fresh=args.fresh)
    new = 0
    for name, seed, budgets in plan_runs(methods, args.seeds, args.budgets):
        method = methods[name]
        cfg = run_settings(method, args)
        todo = [b for b in budgets if (r := store.get((name, seed, b))) is None or not _runs.same_settings(r, cfg)]
        if not todo:
            continue
        if method.anytime:  # the run up to the last missing budget; the stored ones before it are re-measured
            todo = [b for b in budgets if b <= max(todo)]
            state = Path(args.state_dir) / f"{name}-seed{seed}.pkl"
            records = run_method(name, method, data, seed, todo, args, on_record=store.put, state_path=state)
        else:
            records = [r for b in todo for r in run_method(name, method, data, seed, [b], args, on_record=store.put)]
        new += len(records)
    return new


def estimate(methods: dict[str, Method], data: dict, args, steps: int = 3) -> list[list[str]]:
    """Time ``steps`` steps of each method (after one untimed step); rows with the projected grid time."""
    rows = []
    total = 0.0
    grid_steps = {name: 0 for name in methods}
    for name, seed, budgets in plan_runs(methods, args.seeds, args.budgets):
        grid_steps[name] += max(budgets) if methods[name].anytime else budgets[0]
    for name, method in methods.items():
        device = data["train_x"].device
        loss = FlatLoss(example.mlp(0, device))
        trainer = method.trainer(loss, args.samples, 10 * steps, 0, device)
        batches = minibatches(args.train_size, args.batch_size, 0)
        idx = next(batches)
        trainer.step(data["train_x"][idx], data["train_y"][idx])
        t0 = time.perf_counter()
        for _ in range(steps):
            idx = next(batches)
            trainer.step(data["train_x"][idx], data["train_y"][idx])
        per_step = (time.perf_counter() - t0) / steps
        if method.anytime:  # the staged plan restarts nothing: each run reaches its largest budget once
            grid_steps[name] = max(args.budgets) * args.seeds
        total += per_step * grid_steps[name]
        rows.append([name, f"{1000 * per_step:.0f}", f"{grid_steps[name]}", f"{per_step * grid_steps[name] / 60:.0f}"])
    rows.append(["all", "", f"{sum(grid_steps.values())}", f"{total / 60:.0f}"])
    return rows


# --------------------------------------------------------------------------- report
def collect(records: list[dict], methods: list[str]) -> dict[str, dict[int, dict[int, float]]]:
    """``{method: {steps: {seed: test_acc}}}`` of the stored records of ``methods``."""
    out = {m: {} for m in methods}
    for r in records:
        if r["method"] in out:
            out[r["method"]].setdefault(r["steps"], {})[r["seed"]] = r["test_acc"]
    return out


def summary_table(records: list[dict], methods: list[str], labels: dict[str, str], seeds: int) -> str:
    """Markdown: test accuracy % at 500, 1600 and 5000 steps per method (mean ± std over the stored seeds)."""
    acc = collect(records, methods)
    rows = []
    for m in methods:
        row = [labels[m]]
        for steps in TABLE_STEPS:
            values = [100 * acc[m].get(steps, {}).get(s) for s in range(seeds) if s in acc[m].get(steps, {})]
            if not values:
                row.append("not run")
                continue
            v = np.array(values)
            row.append(f"{v.mean():.2f} ± {v.std():.2f}" + ("" if len(v) == seeds else f" ({len(v)} of {seeds} seeds)"))
        rows.append(row)
    header = ["method"] + [f"test accuracy % at {s} steps ({s * 256:,} evaluations)" for s in TABLE_STEPS]
    return markdown_table(header, rows)


def curve_plot(records: list[dict], methods: list[str], labels: dict[str, str], samples: int, path: Path) -> Path:
    """Test accuracy vs evaluations (log x): mean over seeds, band from the worst to the best seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    acc = collect(records, methods)
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for m in methods:
        steps = sorted(acc[m])
        if not steps:
            continue
        x = np.array(steps) * samples
        values = [np.array([100 * v for v in acc[m][s].values()]) for s in steps]
        mean = np.array([v.mean() for v in values])
        style = "--" if METHODS.get(m, None) is not None and METHODS[m].gradient else "-"
        (line,) = ax.plot(x, mean, style, marker="o", ms=3, label=labels[m])
        ax.fill_between(x, [v.min() for v in values], [v.max() for v in values], color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decades only: the minor labels overlap
    ax.set_xlabel(f"loss evaluations (steps x {samples} candidates)")
    ax.set_ylabel("test accuracy [%]")
    ax.set_title("MNIST 784-32-32-10 MLP without gradients")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


SWEEP_RUNS = ROOT / "docs" / "figures" / "mnist_sweep.json"
SWEEP_COMMAND = "python -m benchmarks.mnist --sweep --seeds 1 --budgets 50 160 --runs docs/figures/mnist_sweep.json"


def sweep_table(records: list[dict]) -> str:
    """Markdown: seed 0's test accuracy % of every stored sweep variant at every stored step count."""
    steps = sorted({r["steps"] for r in records})
    rows = []
    for name in sorted(dict.fromkeys(r["method"] for r in records)):
        label = next(r["label"] for r in records if r["method"] == name)
        acc = {r["steps"]: r["test_acc"] for r in records if r["method"] == name and r["seed"] == 0}
        rows.append([label] + [f"{100 * acc[s]:.2f}" if s in acc else "not run" for s in steps])
    return markdown_table(["variant (seed 0)"] + [f"test % at {s} steps" for s in steps], rows)


def report(args, methods: dict[str, Method], command: str) -> str:
    records = _runs.load_runs(Path(args.runs))
    names = [n for n in methods if any(r["method"] == n for r in records)]
    labels = {n: methods[n].label for n in names}
    table = summary_table(records, names, labels, args.seeds)
    print(table)
    if args.no_write:
        return table
    fig = curve_plot(records, names, labels, args.samples, figure_path("mnist_curve.png"))
    missing = [f"{n} seed {s} {b} steps" for n, s, bs in plan_runs(methods, args.seeds, args.budgets) for b in bs
               if not any(r["method"] == n and r["seed"] == s and r["steps"] == b for r in records)]
    noted = [r for r in records if r["method"] in names and r.get("source")]
    sources = ""
    for src in dict.fromkeys(r["source"] for r in noted):
        which = ", ".join(f"{r['method']} seed {r['seed']} {r['steps']} steps" for r in noted if r["source"] == src)
        sources += f"\n{src}: {which}.\n"
    sweep = ""
    if SWEEP_RUNS.exists():
        sweep = (f"\nThe seed-0 sweep that chose them (`{SWEEP_COMMAND}`, "
                 f"same data, minibatches and initialization):\n\n{sweep_table(_runs.load_runs(SWEEP_RUNS))}\n")
    opts = "\n".join(f"* {methods[n].label} (`{n}`): `{methods[n].name}` {_jsonable(methods[n].options)}"
                     + (f", parameter groups `{methods[n].param_groups.__name__}`" if methods[n].param_groups else "")
                     for n in names)
    text = f"""## MNIST without gradients

`{command.strip()}` on {machine()}, shared with other jobs, device `{args.device}`; every run is
stored in `docs/figures/{Path(args.runs).name}` (seconds per run there).

The paper's 784-32-32-10 ReLU MLP (appendix A.2.1, 26,506 parameters), cross-entropy loss, all
{args.train_size:,} training images, test accuracy on the full 10,000-image test set. Equal
evaluations: {args.samples} candidates per step, all scored on the same minibatch of {args.batch_size}
images by one vmapped call (`torch.func.functional_call` over a `[{args.samples}, 26506]` matrix), the same
minibatch sequence and the same initialization (PyTorch's default) for every method of a seed;
seeds 0..{args.seeds - 1}. MBD's noise schedule depends on its step count, so each MBD point is its
own run (`num_steps` = the step count); the EvoTorch methods and SGD run once and are measured
at every step count on the way (their center). SGD uses gradients (one per step on the same
minibatches) and is a reference, not part of the equal-evaluation comparison. The paper reports
85.5% (MBD, 256 samples x 500 steps) and 92.7% (SGD with momentum).

Methods and options:

{opts}

{EVOTORCH_NOTE}
{sweep}
Mean ± std over seeds:

{table}

![MNIST test accuracy vs evaluations](figures/{fig.name})

Figure: mean over seeds, band from the worst to the best seed.
{sources}{"" if not missing else chr(10) + "Not yet measured: " + ", ".join(missing) + f". Resume with `{command.strip()}` (stored runs are skipped)." + chr(10)}"""
    write_section("mnist", text)
    print(f"wrote docs/results.md (section mnist) and {fig}")
    return table


# --------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, metavar="METHOD",
                   help=f"names of the method table {sorted(METHODS)} or torch_mbd:NAME[:key=value,...] (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..k-1 (default: %(default)s)")
    p.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), help="step counts of the curve (default: %(default)s)")
    p.add_argument("--samples", type=int, default=256, help="candidates per step (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="images per step (default: %(default)s, the authors')")
    p.add_argument("--train-size", type=int, default=60_000, help="use the first N training images")
    p.add_argument("--data", default=str(example.default_data_dir()),
                   help="folder with the MNIST IDX files (default: $TORCH_MBD_DATA/mnist, else the user cache)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", default=str(RUNS), help="the runs file (default: docs/figures/mnist_runs.json)")
    p.add_argument("--state-dir", default=str(STATE_DIR), help="where interrupted EvoTorch/SGD runs keep their state")
    p.add_argument("--fresh", action="store_true", help="ignore the stored runs (the first new record replaces the file)")
    p.add_argument("--estimate", action="store_true", help="time a few steps of each method and project the grid; run nothing")
    p.add_argument("--sweep", action="store_true",
                   help="run the EvoTorch hyperparameter sweep (SWEEP) instead of --methods, into --runs; print its table")
    p.add_argument("--report", action="store_true", help="only write the report from the stored runs")
    p.add_argument("--no-write", action="store_true", help="print the table only; leave docs/ alone (the runs file is still written)")
    args = p.parse_args(argv)
    for name in ("seeds", "samples", "batch_size", "train_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.budgets) < 1:
        p.error(f"--budgets must be >= 1, got {args.budgets}")
    args.budgets = sorted(set(args.budgets))
    if args.sweep and args.runs == str(RUNS):
        p.error("--sweep needs its own --runs file (the sweep's variants are not the table's methods)")
    try:
        args.method_table = dict(SWEEP) if args.sweep else {spec: parse_method(spec) for spec in args.methods}
    except ValueError as err:
        p.error(str(err))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    command = "python -m benchmarks.mnist " + " ".join(a for a in (argv if argv is not None else sys.argv[1:])
                                                        if a not in ("--report", "--estimate"))
    methods = args.method_table
    if not args.report:
        try:
            data = example.load_mnist(args.data, device=args.device)
        except example.MnistNotFoundError as err:  # one line: how to get the data
            raise SystemExit(f"benchmarks.mnist: error: {err}") from None
        if args.estimate:
            rows = estimate(methods, data, args)
            print(markdown_table(["method", "ms/step", "grid steps", "grid minutes"], rows))
            print(f"on {machine()}")
            return
        start = time.perf_counter()
        new = run_grid(methods, data, args)
        print(f"{new} new records in {time.perf_counter() - start:.0f} s on {machine()}", file=sys.stderr)
    if args.sweep:  # the report's sweep table (docs/figures/mnist_sweep.json is read by the report)
        print(sweep_table(_runs.load_runs(Path(args.runs))))
        return
    report(args, methods, command)


if __name__ == "__main__":
    main()
