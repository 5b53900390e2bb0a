"""``AsyncMPC``: plan in a background thread while the system moves, and run closed loops on the clock.

[`MPC`][torch_mbd.mpc.MPC] is synchronous: the system waits while the controller plans, so a
planner slower than the control rate slows the whole loop down. [`AsyncMPC`][torch_mbd.async_mpc.AsyncMPC] runs the same
controller in a thread of its own:

* the system hands it every new state with [`AsyncMPC.observe`][torch_mbd.async_mpc.AsyncMPC.observe] (the state and the index of
  the control step it belongs to) and never waits;
* the planner thread plans from the latest state it has ([`MPC.plan`][torch_mbd.mpc.MPC.plan], warm-started from its previous plan shifted by the control steps
  that went by since that plan's state) and publishes the result;
* [`AsyncMPC.action`][torch_mbd.async_mpc.AsyncMPC.action] returns the current plan's action for the step asked, i.e. the plan
  shifted by the time elapsed since the state it was planned from: ``plan[step - plan_step]``.

When no new state has arrived since its last plan, the planner refines the plan from the same
state (``refine=True``, the default; a warm start with no shift) instead of waiting, so a fast
planner improves the plan several times per control step. A state is measured when the action of
its step is already being applied, so by default (``predict=True``) the planner plans from the
state its model predicts one step on ([`MPC.predict`][torch_mbd.mpc.MPC.predict]), indexed from
the step in which the plan can first be used.

[`run_closed_loop`][torch_mbd.async_mpc.run_closed_loop] drives a system against a controller in one of four modes and measures
what matters for real time: the **real-time factor** (simulated time over wall time), the planner
iterations per control step and the closed-loop reward.

* ``"sync"``: the plain [`MPC`][torch_mbd.mpc.MPC] loop, plan then step;
* ``"async"``: the system steps on the wall clock (``speed`` times real time) and applies
  whatever plan is current;
* ``"lockstep"``: [`AsyncMPC`][torch_mbd.async_mpc.AsyncMPC], but the system waits for a plan from its current state
  before every step, i.e. the planner is given unlimited time per step. This gives exactly the
  ``"sync"`` result (same actions, same rewards), which is what the tests check;
* ``"simulated"``: the asynchronous schedule on a simulated clock ([`SimulatedPlanner`][torch_mbd.async_mpc.SimulatedPlanner]): a
  planner making a given number of plans per control step, with the latency that implies, in one
  thread and deterministic, so that a closed loop's reward does not depend on the machine's load.

The planner thread uses only the controller's model and the system only its own simulator, so a
model is never used from two threads at once. A system is any object with ``state() -> Tensor``
and ``step(action [nu]) -> float`` (the step's reward); ``dynamics.closed_loop.MujocoSystem`` is
one for the MuJoCo tasks.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .checks import check_int, check_positive
from .mpc import MPC

MODES = ("sync", "async", "lockstep", "simulated")


class AsyncMPC:
    """Run an [`MPC`][torch_mbd.mpc.MPC] in a background thread on the latest observed state.

    Args:
        controller: the synchronous controller; from [`start`][torch_mbd.async_mpc.AsyncMPC.start] on, only the planner thread
            uses it (and its model) until [`stop`][torch_mbd.async_mpc.AsyncMPC.stop].
        refine: when no new state has arrived since the last plan, plan again from the same state
            (a warm start without a shift) instead of waiting; ``False``: plan once per observation.
        predict: compensate the latency: the state of step ``t`` is measured when the action of
            step ``t`` is already being applied, so the planner plans from the state its model
            predicts one step later ([`MPC.predict`][torch_mbd.mpc.MPC.predict], with that
            action) and indexes the plan from step ``t + 1``. ``False``: plan from the measured state
            (the plan's first action is then always in the past). A model without states: no prediction.

    Attributes:
        iterations: plans published since [`start`][torch_mbd.async_mpc.AsyncMPC.start], the first (synchronous) one excluded.
        last_age: how many control steps old the plan of the last [`action`][torch_mbd.async_mpc.AsyncMPC.action] was
            (``step - plan_step``: 0 when planned from that very step's state).

    Example:
        >>> planner = AsyncMPC(MPC(model, horizon=20, num_samples=30, diffusion_steps=1, seed=0))  # doctest: +SKIP
        >>> with planner.start(system.state()):                                                 # doctest: +SKIP
        ...     for t in range(100):
        ...         system.step(planner.action(t))          # never waits for the planner
        ...         planner.observe(system.state(), t + 1)
    """

    def __init__(self, controller: MPC, refine: bool = True, predict: bool = True):
        if not isinstance(controller, MPC):
            raise TypeError(f"controller must be a torch_mbd.MPC, got {type(controller).__name__}")
        for name, value in (("refine", refine), ("predict", predict)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        self.controller = controller
        self.refine = refine
        self.predict = predict
        self._applied: dict[int, Tensor] = {}
        self._previous: tuple[Tensor, int] | None = None
        self.iterations = 0
        self.last_age = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._error: BaseException | None = None
        self._latest: tuple[Tensor, int] | None = None
        self._fresh = False
        self._plan: Tensor | None = None
        self._plan_step = 0

    def __repr__(self) -> str:
        return f"AsyncMPC({self.controller!r}, refine={self.refine})"

    @property
    def running(self) -> bool:
        """Whether the planner thread is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def plan_step(self) -> int:
        """The control step of the state the current plan was made from."""
        with self._cond:
            return self._plan_step

    def start(self, state, step: int = 0) -> AsyncMPC:
        """Plan once from ``state`` in the calling thread (the controller's cold or warm start), then
        start the planner thread. Returns ``self``, a context manager that stops the thread on exit.

        Args:
            state: the system's state at control step ``step``.
            step: the index of that control step, ``>= 0``.
        """
        if self.running:
            raise RuntimeError("AsyncMPC.start: the planner thread is already running; call stop() first")
        step = check_int("step", step, minimum=0)
        plan = self.controller.plan(state)
        with self._cond:
            self._plan, self._plan_step, self._previous, self._applied = plan.clone(), step, None, {}
            self._latest, self._fresh = (_copy_state(state), step), False
            self._stop, self._error, self.iterations = False, None, 0
        self._thread = threading.Thread(target=self._loop, name="torch_mbd.AsyncMPC planner", daemon=True)
        self._thread.start()
        return self

    def observe(self, state, step: int) -> None:
        """Hand the planner the system's ``state`` at control step ``step`` (never waits for it).

        The state is copied; the planner plans from it at its next iteration. ``step`` may not go
        back in time. Raises the planner thread's error, if it failed.
        """
        step = check_int("step", step, minimum=0)
        state = _copy_state(state)
        with self._cond:
            self._raise_if_failed()
            if self._latest is not None and step < self._latest[1]:
                raise ValueError(f"step must not go back in time: the last state observed was of step {self._latest[1]}, got {step}")
            self._latest, self._fresh = (state, step), True
            self._cond.notify_all()

    def action(self, step: int) -> Tensor:
        """The current plan's action ``[nu]`` for control step ``step``: ``plan[step - plan_step]``.

        Past the plan's horizon the last action is held (``shift="repeat"``) or zeros are returned
        (``shift="zero"``), as the controller's warm start would pad. Raises the planner's error.
        """
        step = check_int("step", step, minimum=0)
        with self._cond:
            self._raise_if_failed()
            if self._plan is None:
                raise RuntimeError("AsyncMPC.action: no plan yet; call start(state) first")
            plan, origin = self._plan, self._plan_step
            if step < origin and self._previous is not None and step >= self._previous[1]:
                plan, origin = self._previous  # a plan for a later (predicted) step came first
        age = step - origin
        if age < 0:
            raise ValueError(f"step {step} is before the state of the current plan (step {origin})")
        self.last_age = age
        action = _plan_action(plan, age, self.controller.shift)
        with self._cond:
            self._applied = {s: a for s, a in self._applied.items() if s >= step - 2}
            self._applied[step] = action
        return action.clone()

    def wait_for_plan(self, step: int, timeout: float | None = None) -> bool:
        """Block until a plan made from the state of control step ``step`` (or later) is published.

        Returns ``False`` when ``timeout`` seconds went by first. Raises the planner's error.
        """
        step = check_int("step", step, minimum=0)
        with self._cond:
            done = self._cond.wait_for(lambda: self._error is not None or self._plan_step >= step, timeout)
            self._raise_if_failed()
            return bool(done)

    def stop(self) -> None:
        """Stop the planner thread (it finishes its current plan first) and wait for it."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> AsyncMPC:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the AsyncMPC planner thread failed: {self._error!r}") from self._error

    def _loop(self) -> None:
        """The planner thread: plan from the latest state, publish, repeat until stopped."""
        prediction = None  # (the observation it was made from, (state, step))
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._stop or self._fresh or self.refine)
                    if self._stop:
                        return
                    latest = self._latest
                    state, step = latest
                    self._fresh = False
                    applied = self._applied.get(step)
                    if applied is None:  # not taken yet: what action(step) will give
                        plan, origin = self._plan, self._plan_step
                        if step < origin and self._previous is not None:
                            plan, origin = self._previous
                        applied = _plan_action(plan, max(step - origin, 0), self.controller.shift)
                if self.predict:
                    if prediction is None or prediction[0] is not latest:  # refining: the same prediction
                        prediction = (latest, _predicted(self.controller, state, step, applied))
                    state, step = prediction[1]
                with self._cond:
                    elapsed = min(max(step - self._plan_step, 0), self.controller.horizon)
                plan = self.controller.plan(state, elapsed=elapsed)
                with self._cond:
                    if step > self._plan_step:  # refining from the same step keeps the plan before it
                        self._previous = (self._plan, self._plan_step)
                    self._plan, self._plan_step = plan.clone(), step
                    self.iterations += 1
                    self._cond.notify_all()
        except BaseException as err:  # handed to the system's thread at its next call
            with self._cond:
                self._error = err
                self._cond.notify_all()


def _plan_action(plan: Tensor, age: int, shift: str) -> Tensor:
    """``plan [H, nu]``'s action ``age`` steps after its state: ``plan[age]``, past the horizon the last
    action held (``shift="repeat"``) or zeros."""
    if age < plan.shape[0]:
        return plan[age].clone()
    return plan[-1].clone() if shift == "repeat" else torch.zeros_like(plan[-1])


class SimulatedPlanner:
    """[`AsyncMPC`][torch_mbd.async_mpc.AsyncMPC]'s schedule on a simulated clock, in the calling thread: deterministic.

    The planner makes ``plans_per_step`` plans per control step, back to back: plan ``k`` runs from
    time ``(k - 1) / plans_per_step`` to ``k / plans_per_step`` (in control steps), starts from the
    latest state observed when it starts and is applied from the first control step at or after
    its end. So the plans' latency is that of a planner of this rate on a real clock, but the
    result does not depend on the machine or its load: ``run_closed_loop(mode="simulated")``.
    The same methods as [`AsyncMPC`][torch_mbd.async_mpc.AsyncMPC] (``start``, ``observe``, ``action``, ``stop``).

    Args:
        controller: the synchronous controller.
        plans_per_step: plans per control step, ``> 0`` (e.g. ``0.5``: one plan every two steps).
        predict: [`AsyncMPC`][torch_mbd.async_mpc.AsyncMPC]'s latency compensation.
    """

    def __init__(self, controller: MPC, plans_per_step: float, predict: bool = True):
        if not isinstance(controller, MPC):
            raise TypeError(f"controller must be a torch_mbd.MPC, got {type(controller).__name__}")
        if not isinstance(predict, bool):
            raise TypeError(f"predict must be True or False, got {predict!r}")
        self.controller = controller
        self.plans_per_step = check_positive("plans_per_step", plans_per_step)
        self.predict = predict
        self._applied: dict[int, Tensor] = {}
        self.iterations, self.last_age, self.plan_step = 0, 0, 0
        self._states: dict[int, Tensor] = {}
        self._plan: Tensor | None = None

    def start(self, state, step: int = 0) -> SimulatedPlanner:
        """Plan once from ``state`` (the state of control step ``step``); returns ``self``."""
        step = check_int("step", step, minimum=0)
        self._plan, self.plan_step = self.controller.plan(state).clone(), step
        self._states, self.iterations, self._origin, self._applied = {step: _copy_state(state)}, 0, step, {}
        return self

    def observe(self, state, step: int) -> None:
        """The system's ``state`` at control step ``step``."""
        self._states[check_int("step", step, minimum=0)] = _copy_state(state)

    def action(self, step: int) -> Tensor:
        """Run every plan that ends by control step ``step``, then the current plan's action for it."""
        step = check_int("step", step, minimum=0)
        if self._plan is None:
            raise RuntimeError("SimulatedPlanner.action: no plan yet; call start(state) first")
        rate, eps = self.plans_per_step, 1e-9
        while self._origin + (self.iterations + 1) / rate <= step + eps:
            begin = self._origin + math.floor(self.iterations / rate + eps)  # the latest state when it starts
            state, origin = self._states[begin], begin
            if self.predict:
                applied = self._applied.get(begin)
                if applied is None:
                    applied = _plan_action(self._plan, begin - self.plan_step, self.controller.shift)
                state, origin = _predicted(self.controller, state, begin, applied)
            elapsed = min(max(origin - self.plan_step, 0), self.controller.horizon)
            self._plan = self.controller.plan(state, elapsed=elapsed).clone()
            self.plan_step = origin
            self.iterations += 1
            for old in [s for s in self._states if s < begin]:
                del self._states[old]
        self.last_age = step - self.plan_step
        action = _plan_action(self._plan, self.last_age, self.controller.shift)
        self._applied = {s: a for s, a in self._applied.items() if s >= step - 2}
        self._applied[step] = action
        return action.clone()

    def stop(self) -> None:
        """Nothing runs in the background: there is nothing to stop."""


def _predicted(controller: MPC, state: Tensor, step: int, action: Tensor) -> tuple[Tensor, int]:
    """``(the state one step after step, step + 1)`` as the controller's model predicts it with
    ``action``; ``(state, step)`` where the model cannot predict (no states)."""
    predicted = controller.predict(state, action[None])
    return (state, step) if predicted is None else (predicted, step + 1)


def _copy_state(state) -> Tensor:
    """A detached copy of a state given as a tensor, an array or a list (checked later by ``MPC.plan``)."""
    if isinstance(state, Tensor):
        return state.detach().clone()
    return torch.as_tensor(state).clone()


class ClosedLoopResult(NamedTuple):
    """What [`run_closed_loop`][torch_mbd.async_mpc.run_closed_loop] measured.

    Attributes:
        rewards: ``[T]`` float64, the system's reward of every control step.
        reward: the mean step reward (the closed-loop reward).
        sim_time: simulated seconds, ``T * control_dt``.
        wall_time: wall seconds of the ``T`` steps (the first plan, made before the clock starts, excluded).
        realtime_factor: ``sim_time / wall_time``; ``>= 1`` keeps up with real time (``"simulated"``:
            how fast the emulation ran, not a figure of the controller).
        iterations: planner iterations (plans) made during the ``T`` steps.
        iterations_per_step: ``iterations / T``.
        plan_age: mean age in control steps of the plan each action came from (0: planned from
            the state of that very step).
        startup_time: wall seconds of the first plan.
        mode: ``"sync"``, ``"async"`` or ``"lockstep"``.
    """

    rewards: Tensor
    reward: float
    sim_time: float
    wall_time: float
    realtime_factor: float
    iterations: int
    iterations_per_step: float
    plan_age: float
    startup_time: float
    mode: str


def run_closed_loop(
    controller: MPC,
    system,
    num_steps: int,
    control_dt: float,
    mode: str = "sync",
    speed: float | None = 1.0,
    disturb: Callable | None = None,
    on_step: Callable | None = None,
    refine: bool = True,
    plans_per_step: float | None = None,
    predict: bool = True,
) -> ClosedLoopResult:
    """Drive ``system`` with ``controller`` for ``num_steps`` control steps and time it.

    The first plan (the controller's cold start, or its warm start from ``controller.reset(plan,
    warm=True)``) is made from ``system.state()`` before the clock starts. Then at every control
    step ``t``, at time ``t * control_dt / speed`` on the clock: the state the system reached is
    measured ([`AsyncMPC.observe`][torch_mbd.async_mpc.AsyncMPC.observe]; ``"lockstep"`` then waits for a plan from it), the action is
    taken (``"sync"``: ``controller.act(state)``, from ``t = 1`` on; otherwise the current plan's,
    [`AsyncMPC.action`][torch_mbd.async_mpc.AsyncMPC.action]), the system steps (``system.step(action)``, which simulates the whole
    control step at once) and ``disturb(t + 1, system)`` pushes it. The state after step ``t`` is
    thus measured at the start of step ``t + 1``, as a robot's sensors would report it, never
    earlier: an asynchronous plan is at least one control step old when it is applied (its
    ``plan_age >= 1`` after the first step), while ``"sync"`` and ``"lockstep"`` stop the clock
    while they plan (age 0).

    Args:
        controller: an [`MPC`][torch_mbd.mpc.MPC] (its model is the planner's, not the system's).
        system: an object with ``state() -> Tensor`` and ``step(action [nu]) -> float``.
        num_steps: control steps ``T >= 1``.
        control_dt: simulated seconds per control step (``> 0``), for the real-time factor.
        mode: ``"sync"``, ``"async"``, ``"lockstep"`` or ``"simulated"`` ([`SimulatedPlanner`][torch_mbd.async_mpc.SimulatedPlanner]:
            the asynchronous schedule of a planner making ``plans_per_step`` plans per control step,
            on a simulated clock; deterministic, whatever the machine's load).
        speed: the system never runs faster than ``speed`` times real time (it sleeps when ahead);
            ``None``: it never sleeps (not with ``"async"``: an unpaced ``"async"`` system would
            outrun any planner). With ``"simulated"``, use ``None``: the clock is simulated.
        disturb: ``disturb(t, system)`` before step ``t`` (``1 <= t < T``), or ``None``.
        on_step: ``on_step(t, system)`` after step ``t`` (e.g. a viewer's sync), or ``None``.
        refine: [`AsyncMPC`][torch_mbd.async_mpc.AsyncMPC]'s option in ``"async"`` mode.
        plans_per_step: the planner's rate in ``"simulated"`` mode (required there, ``> 0``).
        predict: the latency compensation of ``"async"`` and ``"simulated"`` ([`AsyncMPC`][torch_mbd.async_mpc.AsyncMPC]).

    Returns:
        A [`ClosedLoopResult`][torch_mbd.async_mpc.ClosedLoopResult].
    """
    if not isinstance(controller, MPC):
        raise TypeError(f"controller must be a torch_mbd.MPC, got {type(controller).__name__}")
    for attr in ("state", "step"):
        if not callable(getattr(system, attr, None)):
            raise TypeError(f"system must have state() and step(action) methods; it has no callable {attr!r}")
    num_steps = check_int("num_steps", num_steps, minimum=1)
    control_dt = check_positive("control_dt", control_dt)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if speed is not None:
        speed = check_positive("speed", speed)
    elif mode == "async":
        raise ValueError("speed=None: an unpaced 'async' system outruns any planner; give a speed (1.0: real time)")
    if mode == "simulated":
        if plans_per_step is None:
            raise ValueError("mode='simulated' needs plans_per_step, the planner's plans per control step")
        plans_per_step = check_positive("plans_per_step", plans_per_step)
    period = 0.0 if speed is None else control_dt / speed

    rewards = torch.empty(num_steps, dtype=torch.float64)
    ages = 0
    begin = time.perf_counter()
    planner = None
    if mode == "sync":
        controller.plan(system.state())
    elif mode == "simulated":
        planner = SimulatedPlanner(controller, plans_per_step, predict=predict).start(system.state())
    elif mode == "lockstep":  # no latency to compensate: the clock stops while it plans
        planner = AsyncMPC(controller, refine=False, predict=False).start(system.state())
    else:
        planner = AsyncMPC(controller, refine=refine, predict=predict).start(system.state())
    startup = time.perf_counter() - begin
    try:
        origin = time.perf_counter()
        state = None
        for t in range(num_steps):
            if period:
                wait = origin + t * period - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            if planner is not None and t > 0:  # the state reached by step t - 1 is measured now
                planner.observe(state, t)
                if mode == "lockstep":
                    planner.wait_for_plan(t)
            if planner is None:
                action = controller.actions[0].clone() if t == 0 else controller.act(state)
            else:
                action = planner.action(t)
                ages += planner.last_age
            rewards[t] = float(system.step(action))
            if disturb is not None and t + 1 < num_steps:
                disturb(t + 1, system)
            state = system.state()
            if on_step is not None:
                on_step(t, system)
        if period:
            wait = origin + num_steps * period - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        wall = time.perf_counter() - origin
    finally:
        if planner is not None:
            planner.stop()
    iterations = num_steps - 1 if planner is None else planner.iterations
    sim_time = num_steps * control_dt
    finite = rewards[torch.isfinite(rewards)]
    return ClosedLoopResult(
        rewards=rewards,
        reward=float(rewards.mean()) if finite.numel() == num_steps else -math.inf,
        sim_time=sim_time,
        wall_time=wall,
        realtime_factor=sim_time / wall if wall > 0 else math.inf,
        iterations=iterations,
        iterations_per_step=iterations / num_steps,
        plan_age=ages / num_steps,
        startup_time=startup,
        mode=mode,
    )
