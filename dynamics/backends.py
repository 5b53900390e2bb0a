"""The simulator backends a MuJoCo task runs on: the one list the project reads.

:class:`~dynamics.model.MujocoModel` builds them, :func:`dynamics.task_info` reports them,
the ``torch-mbd`` command and the benchmarks offer them as ``--backend`` choices. This
module imports nothing, so reading the list loads no simulator (nor torch).
"""

# backend name -> the options it takes (``MujocoModel(..., backend=name, **options)``)
BACKEND_OPTIONS = {
    "mujoco": ("nthread",),  # C MuJoCo's mujoco.rollout on CPU threads (dynamics.mujoco_cpu)
    "warp": ("nconmax", "njmax", "graph"),  # MuJoCo Warp on CUDA or warp's CPU device (dynamics.mujoco_warp)
    "mjx": (),  # MJX on JAX's CPU or GPU backend (dynamics.mjx)
}

# every backend, the default first
BACKENDS = tuple(BACKEND_OPTIONS)

# the backends that simulate on a CUDA device as well as on the CPU (the others run on the CPU only)
GPU_BACKENDS = ("warp", "mjx")

__all__ = ["BACKENDS", "BACKEND_OPTIONS", "GPU_BACKENDS"]
