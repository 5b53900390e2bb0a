"""Where the data of the examples comes from: an offline folder, a user cache, or its real source.

One environment variable, ``TORCH_MBD_DATA``, names an offline data folder laid out as::

    $TORCH_MBD_DATA/mnist/train-images-idx3-ubyte.gz ...   (the four MNIST IDX files)
    $TORCH_MBD_DATA/mocap/jog_xref.npz                     (the humanoid jogging clip)

When it is set, that folder is the only source and nothing is downloaded (the tests and CI set
it). When it is not, data lives in the user cache (``$XDG_CACHE_HOME/torch-mbd``, by default
``~/.cache/torch-mbd``), fetched there once from where users get it:

* the mocap clip: the authors' ``mbd/assets/jog_xref.pkl`` (LeCAR-Lab/model-based-diffusion,
  Apache-2.0) at a pinned commit, checked against its SHA-256 and converted to the ``.npz`` that
  :func:`dynamics.humanoid_jog.load_clip` reads (:func:`clip_path`, :func:`download_clip`);
* MNIST: ``torchvision.datasets.MNIST`` (``examples/mnist_mlp.py --download``).

The authors' pickle holds JAX arrays. :func:`read_authors_clip` reads it with NumPy alone,
through an unpickler that accepts only the array-building functions such a file needs, so
neither JAX nor arbitrary code from a downloaded file ever runs.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

DATA_ENV = "TORCH_MBD_DATA"
CLIP_FILE = "jog_xref.npz"
CLIP_URL = (
    "https://raw.githubusercontent.com/LeCAR-Lab/model-based-diffusion/"
    "3f83c2a1730995e08ac433cf246eae32e592c8c0/mbd/assets/jog_xref.pkl"
)
CLIP_SHA256 = "cee3ac9d7ae38c4de497fb6d555af25dced75f57f6a76d8d18bd6a9a3649125d"


class DataNotFoundError(FileNotFoundError):
    """Data that is neither in the offline folder, nor in the cache, nor downloadable now.

    The message is one line naming every way to get the data.
    """


def data_home() -> Path | None:
    """The offline data folder ``$TORCH_MBD_DATA``, or ``None`` when the variable is unset or empty."""
    folder = os.environ.get(DATA_ENV, "")
    return Path(folder).expanduser() if folder else None


def cache_home() -> Path:
    """The user cache of torch-mbd: ``$XDG_CACHE_HOME/torch-mbd``, else ``~/.cache/torch-mbd``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "torch-mbd"


# ----------------------------------------------------------------------------- the authors' pickle
def _array_from_jax_state(make, args, array_state, aval_state):
    """NumPy stand-in for ``jax._src.array._reconstruct_array``: the array, without a device."""
    del aval_state  # JAX's abstract-value flags (weak_type, ...): nothing NumPy needs
    array = make(*args)
    array.__setstate__(array_state)
    return array


try:  # NumPy 2 names the module numpy._core, NumPy 1 numpy.core
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

# (module, name) a pickled dict of NumPy or JAX arrays refers to -> what builds it here
_PICKLE_GLOBALS = {
    ("jax._src.array", "_reconstruct_array"): _array_from_jax_state,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers of NumPy / JAX arrays and refuses every other global."""

    def find_class(self, module: str, name: str):
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a mocap clip holds only arrays"
            ) from None


def read_authors_clip(data: bytes) -> dict[str, np.ndarray]:
    """The authors' ``jog_xref.pkl`` (a pickled ``{body point: (T, 3) array}``) as NumPy arrays.

    Args:
        data: the bytes of the pickle.

    Returns:
        ``{name: float32 [T, 3]}`` in the file's order (21 points, 46 frames for ``jog_xref.pkl``).

    Raises:
        ValueError: the bytes are not such a pickle (another object, a global other than the
            array builders, an entry that is not a ``(T, 3)`` array of real numbers).
    """
    try:
        clip = _ArrayUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise ValueError(f"not a pickled mocap clip ({err})") from err
    if not isinstance(clip, dict) or not clip:
        raise ValueError(f"not a pickled mocap clip: expected a dict of arrays, got {type(clip).__name__}")
    out = {}
    for name, value in clip.items():
        array = np.asarray(value)
        if not isinstance(name, str) or array.ndim != 2 or array.shape[1] != 3 or array.dtype.kind not in "fiu":
            raise ValueError(
                f"not a pickled mocap clip: entry {name!r} is {array.dtype} {array.shape}, expected a (T, 3) array"
            )
        out[name] = array
    return out


# ----------------------------------------------------------------------------- the mocap clip
def _clip_ways() -> str:
    """The offline ways to the clip, for the one-line errors."""
    return f"set {DATA_ENV} to a folder holding mocap/{CLIP_FILE} or pass the path of an .npz clip"


def download_clip(
    path: str | Path | None = None, url: str | None = None, sha256: str | None = None, timeout: float = 30.0
) -> Path:
    """Fetch the authors' clip from ``url``, check it, convert it and write it to ``path``.

    Args:
        path: the ``.npz`` to write; default ``cache_home() / "jog_xref.npz"``.
        url: where the pickle is (any URL ``urllib`` opens, ``file://`` included); default
            :data:`CLIP_URL`, the authors' file at a pinned commit.
        sha256: the pickle's expected SHA-256 (hex); default :data:`CLIP_SHA256` for
            :data:`CLIP_URL` and no check for another ``url``.
        timeout: seconds to wait for the server.

    Returns:
        ``path``, written atomically (a partial download never leaves a file behind).

    Raises:
        DataNotFoundError: the download failed (no network, no such URL); the message says how
            else to get the clip.
        ValueError: the download is not the expected file (checksum) or not a pickled clip.
    """
    path = Path(path) if path is not None else cache_home() / CLIP_FILE
    if url is None:
        url, sha256 = CLIP_URL, CLIP_SHA256 if sha256 is None else sha256
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise DataNotFoundError(
            f"could not download the mocap clip from {url} ({reason}): connect to the internet, or {_clip_ways()}"
        ) from err
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ValueError(f"the mocap clip downloaded from {url} has SHA-256 {digest}, expected {sha256}")
    arrays = read_authors_clip(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=".jog_xref.", suffix=".npz", delete=False)
    try:
        with tmp:
            np.savez(tmp, **arrays)
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise
    return path


def clip_path(download: bool = True) -> Path:
    """The humanoid jogging clip ``jog_xref.npz``: from ``$TORCH_MBD_DATA``, the cache, or downloaded.

    With ``TORCH_MBD_DATA`` set, ``$TORCH_MBD_DATA/mocap/jog_xref.npz`` is the only place looked
    at and nothing is downloaded. Otherwise the cached copy, else (``download=True``)
    :func:`download_clip` into the cache, once.

    Raises:
        DataNotFoundError: one line naming where it looked and every way to get the clip.
    """
    folder = data_home()
    if folder is not None:
        path = folder / "mocap" / CLIP_FILE
        if path.is_file():
            return path
        raise DataNotFoundError(
            f"the mocap clip is not in {DATA_ENV}={folder} (no {path}): put {CLIP_FILE} there or pass the path of "
            f"an .npz clip, or unset {DATA_ENV} to download it once from {CLIP_URL} into {cache_home()}"
        )
    path = cache_home() / CLIP_FILE
    if path.is_file():
        return path
    if not download:
        raise DataNotFoundError(
            f"the mocap clip is not in the cache (no {path}): download it once from {CLIP_URL}, or {_clip_ways()}"
        )
    return download_clip(path)
