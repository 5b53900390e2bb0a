"""Control parameterization by knots: a few values per action dimension, interpolated to ``H`` controls.

Sampling planners in use (hydrax, judo, MuJoCo MPC) optimize ``K`` spline knots per action
dimension instead of one action per control step: fewer decision variables, smoother controls,
and the same number of rollouts explores a smaller space. Here every interpolation is a linear
map: the ``H`` controls are ``M @ knots`` with ``M = interpolation_matrix(...)`` of shape
``[H, K]``, so fitting controls to knots is a least-squares solve and a time shift (MPC) is
another matrix.

Knots sit at [`knot_times`][torch_mbd.knots.knot_times]: evenly over the control steps ``0 .. H-1``, the first at step
0 and the last at step ``H-1`` (``K = H`` puts one knot on every step: the paper's case, in
which [`interpolate`][torch_mbd.knots.interpolate] returns its input). Three interpolations ([`INTERPOLATIONS`][torch_mbd.knots.INTERPOLATIONS]):

* ``"zero"``: zero-order hold, the value of the last knot at or before ``t``;
* ``"linear"``: piecewise linear;
* ``"cubic"``: the not-a-knot cubic spline, which reproduces any cubic polynomial exactly
  (``K = 3``: the parabola through the three knots; ``K = 2``: linear; ``K = 1``: constant).

A query time outside ``[t_0, t_{K-1}]`` takes the value at the nearer end (the end value is
held; no extrapolation). ``"zero"`` and ``"linear"`` weight the knots with non-negative
weights summing to 1, so their controls stay within the knots' bounds; a cubic can overshoot,
which is why [`KnotRollout`][torch_mbd.knots.KnotRollout] clamps to the model's action bounds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .checks import check_int
from .rollout import Trajectory, snapshot_initial_state

INTERPOLATIONS = ("zero", "linear", "cubic")
"""The interpolations between knots: zero-order hold, piecewise linear, not-a-knot cubic spline."""

SHIFT_FILLS = ("repeat", "zero")
"""How [`shift_knots`][torch_mbd.knots.shift_knots] fills the time past the last knot: the end value repeated, or zeros."""


def _check_kind(kind) -> str:
    if not isinstance(kind, str) or kind not in INTERPOLATIONS:
        raise ValueError(f"Invalid kind: expected one of {INTERPOLATIONS}, got {kind!r}")
    return kind


def _check_times(name: str, times) -> Tensor:
    if not isinstance(times, Tensor) or times.dim() != 1 or not times.is_floating_point():
        got = f"shape {tuple(times.shape)}, dtype {times.dtype}" if isinstance(times, Tensor) else type(times).__name__
        raise ValueError(f"Invalid {name}: expected a 1-D floating-point tensor, got {got}")
    if not bool(torch.isfinite(times).all()):
        raise ValueError(f"Invalid {name}: expected finite times, got NaN or inf")
    return times.detach().to("cpu", torch.float64)


def knot_times(num_knots: int, horizon: int) -> Tensor:
    """Where the knots sit on the control steps ``0 .. H-1``: ``t_k = k (H-1) / (K-1)``.

    Args:
        num_knots: ``K``, ``1 <= K <= H``.
        horizon: ``H >= 1``.

    Returns:
        ``[K]`` float64, from ``0`` to ``H-1`` (``[0.]`` for ``K = 1``; ``0, 1, ..., H-1`` for ``K = H``).

    Example:
        >>> knot_times(4, 10).tolist()
        [0.0, 3.0, 6.0, 9.0]
    """
    horizon = check_int("horizon", horizon, minimum=1)
    num_knots = check_int("num_knots", num_knots, minimum=1, maximum=horizon)
    if num_knots == 1:
        return torch.zeros(1, dtype=torch.float64)
    # integer products, one division: exact wherever (H-1)/(K-1) is, and the last is exactly H-1
    return torch.arange(num_knots, dtype=torch.float64) * (horizon - 1) / (num_knots - 1)


def _segments(t: Tensor, q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For each query (clamped to ``[t_0, t_{K-1}]``): its segment ``i`` and the weights ``a``, ``b``
    of ``t_i`` and ``t_{i+1}`` (``a + b = 1``); ``K >= 2``."""
    qc = q.clamp(float(t[0]), float(t[-1]))
    i = (torch.searchsorted(t, qc, right=True) - 1).clamp(0, t.numel() - 2)
    h = t[i + 1] - t[i]
    b = (qc - t[i]) / h
    return i, 1.0 - b, b


def _spline_curvatures(t: Tensor) -> Tensor:
    """``S [K, K]``: the second derivatives of the cubic spline at the knots are ``S @ y`` (``K >= 3``).

    Interior knots: the usual continuity of the first derivative. Ends: not-a-knot (the third
    derivative is continuous at ``t_1`` and ``t_{K-2}``) for ``K >= 4``; for ``K = 3`` one
    constant second derivative, i.e. the parabola through the three points.
    """
    K = t.numel()
    h = t[1:] - t[:-1]
    A = torch.zeros(K, K, dtype=torch.float64)
    R = torch.zeros(K, K, dtype=torch.float64)
    for k in range(1, K - 1):
        A[k, k - 1], A[k, k], A[k, k + 1] = h[k - 1], 2 * (h[k - 1] + h[k]), h[k]
        R[k, k - 1], R[k, k], R[k, k + 1] = 6 / h[k - 1], -6 / h[k - 1] - 6 / h[k], 6 / h[k]
    if K == 3:
        A[0, 0], A[0, 1] = 1.0, -1.0
        A[2, 1], A[2, 2] = 1.0, -1.0
    else:
        A[0, 0], A[0, 1], A[0, 2] = h[1], -(h[0] + h[1]), h[0]
        A[K - 1, K - 3], A[K - 1, K - 2], A[K - 1, K - 1] = h[K - 2], -(h[K - 3] + h[K - 2]), h[K - 3]
    return torch.linalg.solve(A, R)


def interpolation_matrix(knot_times: Tensor, query_times: Tensor, kind: str = "cubic") -> Tensor:
    """The linear map from knot values to values at ``query_times``: ``values = M @ knots``.

    Args:
        knot_times: ``[K]`` strictly increasing times of the knots.
        query_times: ``[T]`` times to evaluate at; outside ``[t_0, t_{K-1}]`` the end value is held.
        kind: one of [`INTERPOLATIONS`][torch_mbd.knots.INTERPOLATIONS].

    Returns:
        ``M [T, K]`` float64 on the CPU (cast it to the knots' device and dtype). Every row sums to 1; a query at a knot
        time ``t_k`` gives exactly the unit row ``e_k``.

    Raises:
        ValueError: an unknown ``kind``, times that are not 1-D finite floating-point tensors, or
            knot times that do not increase.
    """
    kind = _check_kind(kind)
    t = _check_times("knot_times", knot_times)
    q = _check_times("query_times", query_times)
    K, T = t.numel(), q.numel()
    if K == 0:
        raise ValueError("Invalid knot_times: expected at least one knot, got none")
    if K > 1 and not bool((t[1:] > t[:-1]).all()):
        raise ValueError(f"Invalid knot_times: expected strictly increasing times, got {t.tolist()}")
    M = torch.zeros(T, K, dtype=torch.float64)
    if K == 1:
        return M.fill_(1.0)
    rows = torch.arange(T)
    if kind == "zero":
        last = (torch.searchsorted(t, q, right=True) - 1).clamp(0, K - 1)
        M[rows, last] = 1.0
        return M
    i, a, b = _segments(t, q)
    M[rows, i] = a
    M[rows, i + 1] = b
    if kind == "linear" or K == 2:
        return M
    S = _spline_curvatures(t)
    h2 = (t[i + 1] - t[i]) ** 2 / 6
    # at a knot a or b is 0 or 1, so both cubic terms vanish exactly: the spline passes through the knots
    return M + h2.unsqueeze(-1) * ((a**3 - a).unsqueeze(-1) * S[i] + (b**3 - b).unsqueeze(-1) * S[i + 1])


def _check_values(name: str, values, length_name: str) -> Tensor:
    if not isinstance(values, Tensor) or values.dim() < 2 or not values.is_floating_point():
        got = f"shape {tuple(values.shape)}, dtype {values.dtype}" if isinstance(values, Tensor) else None
        got = got or type(values).__name__
        raise ValueError(f"Invalid {name}: expected a floating-point tensor [..., {length_name}, nu], got {got}")
    return values


def controls_matrix(num_knots: int, horizon: int, kind: str = "cubic") -> Tensor:
    """``M [H, K]`` float64: the ``H`` controls of ``K`` knots at [`knot_times`][torch_mbd.knots.knot_times] are ``M @ knots``."""
    times = knot_times(num_knots, horizon)
    return interpolation_matrix(times, torch.arange(horizon, dtype=torch.float64), kind)


def interpolate(knots: Tensor, horizon: int, kind: str = "cubic") -> Tensor:
    """The ``H`` controls that ``K`` knots at [`knot_times`][torch_mbd.knots.knot_times] stand for.

    Args:
        knots: ``[..., K, nu]`` with ``1 <= K <= H``.
        horizon: ``H``.
        kind: one of [`INTERPOLATIONS`][torch_mbd.knots.INTERPOLATIONS].

    Returns:
        ``[..., H, nu]`` in the knots' dtype; for ``K = H`` the input itself (no copy, bit for bit).

    Example:
        >>> interpolate(torch.tensor([[0.0], [3.0]]), 4, "linear")[:, 0].tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    knots = _check_values("knots", knots, "K")
    kind = _check_kind(kind)
    horizon = check_int("horizon", horizon, minimum=1)
    K = check_int("num_knots (knots.shape[-2])", knots.shape[-2], minimum=1, maximum=horizon)
    if K == horizon:
        return knots
    return torch.matmul(controls_matrix(K, horizon, kind).to(knots.device, knots.dtype), knots)


def fit_knots(controls: Tensor, num_knots: int, kind: str = "cubic") -> Tensor:
    """The knots whose interpolation is nearest to ``controls`` in least squares.

    ``interpolate(fit_knots(x, K, kind), H, kind)`` equals ``x`` (to rounding) whenever ``x`` is
    the interpolation of some knots, and ``fit_knots(interpolate(k, H, kind), K, kind)`` equals ``k``.
    Used to start from given controls (``plan``'s and ``MPC``'s ``init``) or to read a
    demonstration of controls as knots.

    Args:
        controls: ``[..., H, nu]``.
        num_knots: ``K``, ``1 <= K <= H``.
        kind: one of [`INTERPOLATIONS`][torch_mbd.knots.INTERPOLATIONS].

    Returns:
        ``[..., K, nu]`` in the controls' dtype (a copy of ``controls`` when ``K = H``).
    """
    controls = _check_values("controls", controls, "H")
    kind = _check_kind(kind)
    horizon = controls.shape[-2]
    num_knots = check_int("num_knots", num_knots, minimum=1, maximum=horizon)
    if num_knots == horizon:
        return controls.clone()
    pinv = torch.linalg.pinv(controls_matrix(num_knots, horizon, kind))  # [K, H]; M has full column rank
    return torch.matmul(pinv.to(controls.device, controls.dtype), controls)


def shift_matrix(num_knots: int, horizon: int, steps: int = 1, kind: str = "cubic", fill: str = "repeat") -> Tensor:
    """``[K, K]`` float64: the knots of the interpolated sequence moved ``steps`` control steps earlier.

    Row ``k`` evaluates the interpolation at ``t_k + steps``; past ``t_{K-1}`` the end value is held
    (``fill="repeat"``) or the row is zero (``fill="zero"``). See [`shift_knots`][torch_mbd.knots.shift_knots].
    """
    horizon = check_int("horizon", horizon, minimum=1)
    steps = check_int("steps", steps, minimum=0, maximum=horizon)
    if not isinstance(fill, str) or fill not in SHIFT_FILLS:
        raise ValueError(f"Invalid fill: expected one of {SHIFT_FILLS}, got {fill!r}")
    times = knot_times(num_knots, horizon)
    matrix = interpolation_matrix(times, times + steps, kind)
    if fill == "zero":
        matrix[times + steps > times[-1]] = 0.0
    return matrix


def shift_knots(knots: Tensor, horizon: int, steps: int = 1, kind: str = "cubic", fill: str = "repeat") -> Tensor:
    """Move a knot plan forward in time by ``steps`` control steps (receding-horizon warm start).

    New knot ``k`` is the interpolation of the old knots at ``t_k + steps`` (the end value repeated
    past the last knot, or zero with ``fill="zero"``). Where the shifted times ``t_k + steps`` are
    control steps (always for ``K = H``; e.g. ``H = 10, K = 4``: knots at 0, 3, 6, 9),
    ``interpolate(shift_knots(k))`` at the knots equals ``shift_actions(interpolate(k))`` there.

    Args:
        knots: ``[..., K, nu]``.
        horizon: ``H``, ``K <= H``.
        steps: control steps elapsed, ``0 <= steps <= H``.
        kind: one of [`INTERPOLATIONS`][torch_mbd.knots.INTERPOLATIONS].
        fill: ``"repeat"`` or ``"zero"``.

    Returns:
        A new tensor ``[..., K, nu]``.
    """
    knots = _check_values("knots", knots, "K")
    kind = _check_kind(kind)
    horizon = check_int("horizon", horizon, minimum=1)
    K = check_int("num_knots (knots.shape[-2])", knots.shape[-2], minimum=1, maximum=horizon)
    return torch.matmul(shift_matrix(K, horizon, steps, kind, fill).to(knots.device, knots.dtype), knots)


class KnotRollout:
    """A rollout model whose decision variables are knots: interpolates them, then rolls the model out.

    ``rollout(knots [..., n, K, nu])`` interpolates to ``[..., n, H, nu]`` controls, clamps them to
    the model's action bounds (only when the interpolation can leave them: a cubic with ``3 <= K < H``;
    zero-order hold and linear never do) and returns ``model.rollout`` of those controls: a
    [`Trajectory`][torch_mbd.rollout.Trajectory] over the ``H`` control steps (rewards ``[..., n, H]``).
    An optimizer given this rollout optimizes a ``[..., K, nu]`` parameter within the same bounds.

    ``action_dim``, ``action_bounds``, ``state_dim``, ``device`` and ``initial_state`` (read and
    assigned) are the model's; ``horizon`` is ``H``, the number of controls rolled out.

    Args:
        model: a [`RolloutModel`][torch_mbd.rollout.RolloutModel].
        num_knots: ``K``, ``1 <= K <= H``.
        kind: one of [`INTERPOLATIONS`][torch_mbd.knots.INTERPOLATIONS].
        horizon: ``H``; default ``model.horizon``.

    Example:
        >>> knot_model = KnotRollout(model, num_knots=6, kind="cubic", horizon=50)  # doctest: +SKIP
        >>> traj = knot_model.rollout(torch.zeros(32, 6, model.action_dim))         # doctest: +SKIP
    """

    def __init__(self, model, num_knots: int, kind: str = "cubic", horizon: int | None = None):
        for attr in ("action_dim", "action_bounds", "rollout"):
            if not hasattr(model, attr):
                raise TypeError(f"model must implement the RolloutModel protocol; it has no {attr!r}")
        self.model = model
        self.horizon = check_int("horizon", getattr(model, "horizon", None) if horizon is None else horizon, minimum=1)
        self.num_knots = check_int("num_knots", num_knots, minimum=1, maximum=self.horizon)
        self.kind = _check_kind(kind)
        self.matrix = controls_matrix(self.num_knots, self.horizon, self.kind)  # [H, K] float64
        # weights >= 0 summing to 1 keep the controls inside any box the knots are in
        self.clamps = self.num_knots != self.horizon and bool((self.matrix < 0).any())
        self._cast: dict = {}

    def __repr__(self) -> str:
        name = type(self.model).__name__
        return f"KnotRollout({name}, num_knots={self.num_knots}, kind={self.kind!r}, horizon={self.horizon})"

    @property
    def action_dim(self) -> int:
        return self.model.action_dim

    @property
    def action_bounds(self):
        return self.model.action_bounds

    @property
    def state_dim(self) -> int:
        return self.model.state_dim

    @property
    def device(self) -> torch.device:
        return torch.device(getattr(self.model, "device", "cpu"))

    @property
    def initial_state(self):
        return self.model.initial_state

    @initial_state.setter
    def initial_state(self, state) -> None:
        self.model.initial_state = state

    def initial_state_snapshot(self):
        """A snapshot of the wrapped model's initial state ([`snapshot_initial_state`][torch_mbd.rollout.snapshot_initial_state])."""
        return snapshot_initial_state(self.model)

    def restore_initial_state(self, snapshot) -> None:
        """Put the wrapped model's initial state back as [`initial_state_snapshot`][torch_mbd.knots.KnotRollout.initial_state_snapshot] found it."""
        snapshot()

    def _matrix(self, like: Tensor) -> Tensor:
        key = (like.device, like.dtype)
        if key not in self._cast:
            self._cast[key] = self.matrix.to(like.device, like.dtype)
        return self._cast[key]

    def to_controls(self, knots: Tensor) -> Tensor:
        """The controls ``[..., H, nu]`` the model sees for ``knots [..., K, nu]`` (interpolated,
        clamped to the action bounds where the interpolation can overshoot; ``knots`` itself when
        ``K = H``)."""
        knots = _check_values("knots", knots, "K")
        if tuple(knots.shape[-2:]) != (self.num_knots, self.action_dim):
            raise ValueError(
                f"Invalid knots: expected shape [..., {self.num_knots}, {self.action_dim}] ([..., K, nu]), "
                f"got {tuple(knots.shape)}"
            )
        if self.num_knots == self.horizon:
            return knots
        controls = torch.matmul(self._matrix(knots), knots)
        if self.clamps:
            lower, upper = (torch.as_tensor(b, device=knots.device, dtype=knots.dtype) for b in self.action_bounds)
            controls = torch.clamp(controls, lower, upper)
        return controls

    def rollout(self, knots: Tensor) -> Trajectory:
        """Roll out the controls of ``knots [..., n, K, nu]``; the model's trajectory over ``H`` steps."""
        return self.model.rollout(self.to_controls(knots))
