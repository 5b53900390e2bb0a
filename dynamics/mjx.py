"""Backend 3: batched rollouts with MJX (``mujoco.mjx``) on JAX's CPU or GPU backend.

The rollout is one jitted JAX function: ``jax.lax.scan`` over the ``H`` control steps, each
holding its control for ``frame_skip`` calls of ``jax.vmap(mjx.step)`` over the ``n`` samples
(a ``fori_loop``). ``jax.jit`` compiles it once per ``(n, H)`` shape (about 20-40 s for a
contact model on a CPU the first time) and reuses it afterwards. Tensors cross between
torch and JAX through DLPack, without a copy where both live on the same device.

MJX computes in float32 unless JAX's ``jax_enable_x64`` is set by the user; this backend
never changes JAX's global configuration. On a GPU, JAX by default grabs 75% of the device's
memory when it starts, leaving little to torch in the same process: a model built on CUDA
before JAX is first imported sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (unless the user
set it), so that JAX allocates what it uses.

Several Python threads may call one backend at once without a lock: the jitted function is pure
and the model and initial data it reads are immutable JAX arrays (tested against sequential calls).
"""

from __future__ import annotations

import os
import sys

import torch
from torch import Tensor

from torch_mbd.checks import check_device, check_int

from .backend_inputs import check_backend_inputs, empty_outputs


def import_mjx():
    """Import ``jax`` and ``mujoco.mjx``; raises ImportError naming the extra when missing."""
    try:
        import jax
        from mujoco import mjx
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the 'mjx' backend needs mujoco-mjx and jax: pip install 'torch-mbd[mjx]'") from err
    return jax, mjx


def _jax_device(jax, device: torch.device):
    """JAX's device matching the torch ``device`` (``cpu`` or ``cuda:i``).

    Raises:
        ValueError: when JAX has no GPU backend, or fewer GPUs than ``device`` asks for.
    """
    if device.type == "cpu":
        return jax.devices("cpu")[0]
    if device.type == "cuda":
        try:
            gpus = jax.devices("gpu")
        except RuntimeError as err:  # JAX was installed without CUDA support
            raise ValueError(
                f"device {str(device)!r}: torch sees a GPU but JAX has no GPU backend ({err}); "
                "install JAX with CUDA (pip install 'jax[cuda12]') or use device='cpu'"
            ) from err
        index = device.index or 0
        if index >= len(gpus):
            raise ValueError(f"device {str(device)!r}: JAX sees only {len(gpus)} GPU(s)")
        return gpus[index]
    raise ValueError(f"Invalid device: expected 'cpu' or 'cuda[:i]' for the mjx backend, got {str(device)!r}")


def _to_jax(jax, tensor: Tensor, jax_device):
    """A torch tensor as a JAX array on ``jax_device`` (DLPack; a copy only across devices)."""
    array = jax.dlpack.from_dlpack(tensor.detach().contiguous())
    return jax.device_put(array, jax_device)


def _to_torch(array, device: torch.device) -> Tensor:
    """A JAX array as a torch tensor on ``device`` (DLPack)."""
    return torch.from_dlpack(array).to(device)


class MjxRollout:
    """Batched open-loop rollouts of one MuJoCo model with MJX.

    Args:
        model: a compiled ``mujoco.MjModel``.
        frame_skip: physics steps per control step.
        device: ``"cpu"`` or ``"cuda[:i]"`` (JAX's matching backend runs the simulation).

    Call it with ``(qpos0 [nq], qvel0 [nv], ctrl [N, H, nu])`` (``ctrl`` in actuator units) to get
    ``(qpos [N, H, nq], qvel [N, H, nv], sensordata [N, H, ns])`` on ``device``, in JAX's float
    dtype (float32 by default). An empty batch (``N = 0``) gives empty outputs without calling
    JAX; malformed inputs raise ``TypeError`` / ``ValueError`` first.

    Raises:
        ValueError: for a device other than the CPU or a CUDA GPU that both torch and JAX see,
            and for a bad ``frame_skip``.
    """

    def __init__(self, model, frame_skip: int, device="cpu"):
        frame_skip = check_int("frame_skip", frame_skip, minimum=1)
        self.device = check_device(device)  # a real device (a CUDA one only where this machine has it)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"Invalid device: expected 'cpu' or 'cuda[:i]' for the mjx backend, got {device!r}")
        if self.device.type == "cuda" and "jax" not in sys.modules:
            os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU with torch
        jax, mjx = import_mjx()
        self.jax_device = _jax_device(jax, self.device)
        self._jax = jax
        self.frame_skip = frame_skip
        self.nq, self.nv, self.nu, self.nsensordata = model.nq, model.nv, model.nu, model.nsensordata
        self.model = mjx.put_model(model, device=self.jax_device)
        self._data0 = mjx.make_data(self.model, device=self.jax_device)
        self._float = self._data0.qpos.dtype
        self._rollout = jax.jit(self._build_rollout(jax, mjx))

    def _build_rollout(self, jax, mjx):
        frame_skip = self.frame_skip
        step = jax.vmap(mjx.step, in_axes=(None, 0))  # one physics step of every sample

        def rollout(model, data0, qpos0, qvel0, ctrl):
            """``ctrl [N, H, nu]`` -> ``qpos [N, H, nq]``, ``qvel [N, H, nv]``, ``sensordata [N, H, ns]``."""
            n = ctrl.shape[0]
            start = data0.replace(qpos=qpos0, qvel=qvel0)
            batch = jax.tree_util.tree_map(lambda x: jax.numpy.broadcast_to(x, (n,) + x.shape), start)

            def control_step(data, u):
                data = data.replace(ctrl=u)
                data = jax.lax.fori_loop(0, frame_skip, lambda _, d: step(model, d), data)
                return data, (data.qpos, data.qvel, data.sensordata)

            _, (qpos, qvel, sens) = jax.lax.scan(control_step, batch, jax.numpy.swapaxes(ctrl, 0, 1))
            return tuple(jax.numpy.swapaxes(x, 0, 1) for x in (qpos, qvel, sens))

        return rollout

    def __call__(self, qpos0: Tensor, qvel0: Tensor, ctrl: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n, horizon = check_backend_inputs(qpos0, qvel0, ctrl, self.nq, self.nv, self.nu)
        jax = self._jax
        dtype = torch.float64 if self._float == jax.numpy.float64 else torch.float32
        if n == 0:  # nothing to simulate (and no new shape to compile)
            return empty_outputs(horizon, (self.nq, self.nv, self.nsensordata), dtype, self.device)
        inputs = (_to_jax(jax, x.to(dtype), self.jax_device) for x in (qpos0, qvel0, ctrl))
        qpos, qvel, sens = self._rollout(self.model, self._data0, *inputs)
        return tuple(_to_torch(x, self.device) for x in (qpos, qvel, sens))
