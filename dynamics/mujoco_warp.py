"""Backend 2: batched rollouts with MuJoCo Warp (``mujoco_warp``), ``nworld = n``.

Every sample is one warp world. Controls are copied from torch into a persistent warp
array ``[n, H, nu]`` through ``wp.to_torch`` (a zero-copy view, no host round trip on CUDA),
small warp kernels move the control of step ``t`` into ``Data.ctrl`` and record
``qpos``/``qvel``/``sensordata`` after every control step into ``[n, H, .]`` arrays that torch
reads back the same way. On a CUDA device the whole horizon (reset, ``H * frame_skip``
``mjw.step`` calls, recording) is captured once per ``(n, H)`` as a CUDA graph and replayed;
on warp's CPU device (how CI tests it) the same launches run from Python. The first call
compiles warp's kernels (about 20 s on a CPU); they are cached on disk afterwards.

Quiet by default: warp logs its start-up banner and one ``Module ... load on device`` line
per kernel module at its default log level (``warp.LOG_INFO``). When `import_warp`
first imports warp and finds that default, it raises ``warp.config.log_level`` to
``warp.LOG_WARNING``, so warnings and errors still show; set ``warp.config.log_level =
warp.LOG_INFO`` after building the model to see the load lines again.

One backend may be called from several Python threads: its warp arrays, ``Data`` and CUDA graph
serve one rollout at a time, so a lock makes a second concurrent call wait for the first.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

from torch_mbd.checks import check_bool, check_device, check_int

from .backend_inputs import check_backend_inputs, empty_outputs

_KERNELS = None
_QUIETED = False


def import_warp():
    """Import ``warp`` and ``mujoco_warp`` (warp's info log quieted, see above).

    Raises:
        ImportError: naming the pip extra when either is missing.
    """
    global _QUIETED
    try:
        import warp
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the 'warp' backend needs mujoco-warp and warp-lang: pip install 'torch-mbd[warp]'") from err
    if not _QUIETED:
        _QUIETED = True
        if warp.config.log_level == warp.LOG_INFO:  # warp's default; a user's own choice is kept
            warp.config.log_level = warp.LOG_WARNING
    try:
        import mujoco_warp
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the 'warp' backend needs mujoco-warp and warp-lang: pip install 'torch-mbd[warp]'") from err
    return warp, mujoco_warp


def _kernels():
    """The three warp kernels of the rollout (defined once, on first use)."""
    global _KERNELS
    if _KERNELS is None:
        wp, _ = import_warp()

        @wp.kernel
        def reset_state(
            qpos0: wp.array(dtype=float),
            qvel0: wp.array(dtype=float),
            qpos: wp.array2d(dtype=float),
            qvel: wp.array2d(dtype=float),
        ):
            world, i = wp.tid()
            if i < qpos0.shape[0]:
                qpos[world, i] = qpos0[i]
            if i < qvel0.shape[0]:
                qvel[world, i] = qvel0[i]

        @wp.kernel
        def set_ctrl(actions: wp.array3d(dtype=float), step: int, ctrl: wp.array2d(dtype=float)):
            world, j = wp.tid()
            ctrl[world, j] = actions[world, step, j]

        @wp.kernel
        def record(
            source: wp.array2d(dtype=float),
            step: int,
            out: wp.array3d(dtype=float),
        ):
            world, i = wp.tid()
            out[world, step, i] = source[world, i]

        _KERNELS = (reset_state, set_ctrl, record)
    return _KERNELS


class WarpRollout:
    """Batched open-loop rollouts of one MuJoCo model with MuJoCo Warp.

    Args:
        model: a compiled ``mujoco.MjModel``.
        frame_skip: physics steps per control step.
        device: ``"cpu"`` (warp's CPU device) or ``"cuda[:i]"``; a torch device or string.
        nconmax: contacts per world (``mujoco_warp.make_data``'s default when ``None``).
        njmax: constraint rows per world (default likewise).
        graph: capture the horizon as a CUDA graph (default: on CUDA devices).

    Call it with ``(qpos0 [nq], qvel0 [nv], ctrl [N, H, nu])`` (``ctrl`` in actuator units, any
    device) to get float32 ``(qpos [N, H, nq], qvel [N, H, nv], sensordata [N, H, ns])`` on ``device``.
    An empty batch (``N = 0``) gives empty outputs without launching anything; malformed inputs
    raise ``TypeError`` / ``ValueError`` first.

    Raises:
        ValueError: for a device other than the CPU or a CUDA GPU this machine has, and for bad
            ``frame_skip``, ``nconmax``, ``njmax`` or ``graph``.
    """

    def __init__(self, model, frame_skip: int, device="cpu", nconmax: int | None = None, njmax: int | None = None,
                 graph: bool | None = None):
        frame_skip = check_int("frame_skip", frame_skip, minimum=1)
        nconmax = None if nconmax is None else check_int("nconmax", nconmax, minimum=1)
        njmax = None if njmax is None else check_int("njmax", njmax, minimum=1)
        graph = None if graph is None else check_bool("graph", graph)  # np.True_ too
        self.device = check_device(device)  # a real device (a CUDA one only where this machine has it)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"Invalid device: expected 'cpu' or 'cuda[:i]' for the warp backend, got {device!r}")
        wp, mjw = import_warp()
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self.device = torch.device("cuda", index)
            try:
                self.wp_device = wp.get_device(f"cuda:{index}")
            except (RuntimeError, ValueError) as err:
                raise ValueError(
                    f"device {str(self.device)!r}: torch sees this GPU but warp cannot use it ({err}); "
                    "check the NVIDIA driver, or use device='cpu'"
                ) from err
        else:
            self.wp_device = wp.get_device("cpu")
        self.graph = self.wp_device.is_cuda if graph is None else graph
        if self.graph and not self.wp_device.is_cuda:
            raise ValueError("graph=True needs a CUDA device")
        self._wp, self._mjw = wp, mjw
        self.mj_model = model
        self.frame_skip = frame_skip
        self.nconmax, self.njmax = nconmax, njmax
        self.nq, self.nv, self.nu, self.nsensordata = model.nq, model.nv, model.nu, model.nsensordata
        with wp.ScopedDevice(self.wp_device):
            self.model = mjw.put_model(model)
        self._cache: dict[tuple[int, int], dict] = {}
        self._lock = threading.Lock()  # one rollout at a time through the shared arrays and graph

    def _buffers(self, n: int, horizon: int) -> dict:
        key = (n, horizon)
        if key in self._cache:
            return self._cache[key]
        wp, mjw = self._wp, self._mjw
        self._cache.clear()  # keep one shape: a graph and its buffers per (n, H)
        with wp.ScopedDevice(self.wp_device):
            buf = dict(
                data=mjw.make_data(self.mj_model, nworld=n, nconmax=self.nconmax, njmax=self.njmax),
                qpos0=wp.zeros(self.nq, dtype=float),
                qvel0=wp.zeros(self.nv, dtype=float),
                actions=wp.zeros((n, horizon, self.nu), dtype=float),
                qpos=wp.zeros((n, horizon, self.nq), dtype=float),
                qvel=wp.zeros((n, horizon, self.nv), dtype=float),
                sensordata=wp.zeros((n, horizon, max(self.nsensordata, 1)), dtype=float),
                graph=None,
            )
        self._cache[key] = buf
        return buf

    def _simulate(self, buf: dict, n: int, horizon: int) -> None:
        """Launch the whole rollout: reset, then per control step set ctrl, step, record."""
        wp, mjw = self._wp, self._mjw
        reset_state, set_ctrl, record = _kernels()
        data = buf["data"]
        mjw.reset_data(self.model, data)
        wp.launch(reset_state, dim=(n, max(self.nq, self.nv)), inputs=[buf["qpos0"], buf["qvel0"], data.qpos, data.qvel])
        for t in range(horizon):
            wp.launch(set_ctrl, dim=(n, self.nu), inputs=[buf["actions"], t, data.ctrl])
            for _ in range(self.frame_skip):
                mjw.step(self.model, data)
            wp.launch(record, dim=(n, self.nq), inputs=[data.qpos, t, buf["qpos"]])
            wp.launch(record, dim=(n, self.nv), inputs=[data.qvel, t, buf["qvel"]])
            if self.nsensordata:
                wp.launch(record, dim=(n, self.nsensordata), inputs=[data.sensordata, t, buf["sensordata"]])

    def __call__(self, qpos0: Tensor, qvel0: Tensor, ctrl: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n, horizon = check_backend_inputs(qpos0, qvel0, ctrl, self.nq, self.nv, self.nu)
        if n == 0:  # no worlds to simulate (warp arrays of zero worlds are not launched)
            return empty_outputs(horizon, (self.nq, self.nv, self.nsensordata), torch.float32, self.device)
        with self._lock:  # the arrays, Data and graph of this shape serve one call at a time
            return self._rollout(qpos0, qvel0, ctrl, n, horizon)

    def _rollout(self, qpos0: Tensor, qvel0: Tensor, ctrl: Tensor, n: int, horizon: int):
        """The rollout of checked inputs, under the lock: fills the warp arrays, returns copies."""
        wp = self._wp
        buf = self._buffers(n, horizon)
        # torch writes straight into the warp arrays (zero-copy views)
        wp.to_torch(buf["actions"]).copy_(ctrl)
        wp.to_torch(buf["qpos0"]).copy_(qpos0)
        wp.to_torch(buf["qvel0"]).copy_(qvel0)
        if self.wp_device.is_cuda:
            torch.cuda.current_stream(self.device).synchronize()  # torch's copies land before warp's stream reads
        with wp.ScopedDevice(self.wp_device):
            if self.graph:
                if buf["graph"] is None:
                    self._simulate(buf, n, horizon)  # compile every kernel before capturing
                    with wp.ScopedCapture() as capture:
                        self._simulate(buf, n, horizon)
                    buf["graph"] = capture.graph
                wp.capture_launch(buf["graph"])
            else:
                self._simulate(buf, n, horizon)
        wp.synchronize_device(self.wp_device)  # the results are complete before torch reads them
        qpos = wp.to_torch(buf["qpos"]).clone()
        qvel = wp.to_torch(buf["qvel"]).clone()
        sens = wp.to_torch(buf["sensordata"])[..., : self.nsensordata].clone()
        return qpos, qvel, sens
