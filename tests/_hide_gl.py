"""Python source that hides shared libraries from the process it runs in, for subprocess probes.

A probe script starts with ``HIDE_LIBRARIES``: the names in ``sys.argv[1]`` (comma separated,
e.g. ``"OSMesa,EGL"``) are then not found by ``ctypes.util.find_library`` and refused by
``ctypes.cdll`` (what PyOpenGL loads libraries with), as on a machine without them.
"""

HIDE_LIBRARIES = r"""
import ctypes, ctypes.util, sys
hide = [h for h in sys.argv[1].split(",") if h]
real_find = ctypes.util.find_library
ctypes.util.find_library = lambda name: None if name in hide else real_find(name)

class Hiding(ctypes.CDLL):
    def __init__(self, name, *args, **kwargs):
        if any(str(name).startswith(f"lib{h}.so") for h in hide):
            raise OSError(f"{name}: cannot open shared object file (hidden by the test)")
        super().__init__(name, *args, **kwargs)

ctypes.cdll._dlltype = Hiding
"""
