"""Where the data comes from (``dynamics.data``): the offline folder, the user cache, the authors' pickle.

Nothing here touches the network: downloads read local ``file://`` URLs or a patched ``urlopen``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import types
import urllib.request

import numpy as np
import pytest

from dynamics import data
from dynamics.data import DataNotFoundError, cache_home, clip_path, data_home, download_clip, read_authors_clip

POINTS = ("pelvis", "torso", "left_thigh")


def _clip(frames=6):
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=(frames, 3)).astype(np.float32) for name in POINTS}


def _jax_pickle(arrays, monkeypatch) -> bytes:
    """``arrays`` pickled the way JAX pickles its arrays (the authors' ``jog_xref.pkl``), without JAX.

    A stand-in ``jax._src.array._reconstruct_array`` is registered just long enough to pickle; the
    bytes name the real module and function, as the authors' file does.
    """
    module = types.ModuleType("jax._src.array")

    def _reconstruct_array(fun, args, arr_state, aval_state):  # pragma: no cover - only pickled
        raise AssertionError("never called: the reader substitutes its own")

    _reconstruct_array.__module__, _reconstruct_array.__qualname__ = "jax._src.array", "_reconstruct_array"
    module._reconstruct_array = _reconstruct_array
    for name in ("jax", "jax._src"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "jax._src.array", module)

    class JaxArray:
        def __init__(self, array):
            self.array = array

        def __reduce__(self):
            fun, args, state = self.array.__reduce__()  # numpy's (_reconstruct, args, state)
            return _reconstruct_array, (fun, args, state, {"weak_type": False, "named_shape": {}})

    return pickle.dumps({k: JaxArray(v) for k, v in arrays.items()}, protocol=4)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a URL fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to download {args[0]!r}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def user(tmp_path, monkeypatch):
    """No offline folder and a fresh user cache under ``tmp_path``: a user's first run."""
    monkeypatch.delenv("TORCH_MBD_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "torch-mbd"


# ----------------------------------------------------------------------------- the authors' pickle
def test_a_pickle_of_jax_arrays_reads_with_numpy_alone(monkeypatch):
    arrays = _clip()
    raw = _jax_pickle(arrays, monkeypatch)
    assert b"jax._src.array" in raw and b"_reconstruct_array" in raw
    for name in ("jax", "jax._src", "jax._src.array"):  # reading needs none of them
        monkeypatch.setitem(sys.modules, name, None)
    clip = read_authors_clip(raw)
    assert list(clip) == list(POINTS)
    for name in POINTS:
        assert clip[name].dtype == np.float32 and np.array_equal(clip[name], arrays[name])
    plain = read_authors_clip(pickle.dumps(arrays))  # a pickle of NumPy arrays reads too
    assert all(np.array_equal(plain[k], arrays[k]) for k in POINTS)


def test_the_converted_pickle_is_the_offline_clip(monkeypatch, data_path):
    """The authors' layout, converted, is byte for byte the ``.npz`` of the offline data folder."""
    with np.load(data_path("mocap/jog_xref.npz")) as npz:
        arrays = {k: npz[k] for k in npz.files}
    clip = read_authors_clip(_jax_pickle(arrays, monkeypatch))
    assert list(clip) == list(arrays) and len(clip) == 21
    assert all(np.array_equal(clip[k], arrays[k]) and clip[k].dtype == arrays[k].dtype for k in arrays)


class _Evil:
    def __reduce__(self):
        return os.system, ("echo pwned",)


@pytest.mark.parametrize(
    "raw, words",
    [
        (pickle.dumps({"torso": _Evil()}), "refusing to load"),
        (pickle.dumps([np.zeros((4, 3))]), "expected a dict"),
        (pickle.dumps({"torso": np.zeros((4, 2))}), "'torso'"),
        (pickle.dumps({"torso": np.array(["a", "b", "c"] * 2).reshape(2, 3)}), "'torso'"),
        (b"not a pickle", "not a pickled mocap clip"),
        (pickle.dumps({})[:-3], "not a pickled mocap clip"),
    ],
)
def test_anything_but_a_pickled_clip_is_refused_without_running_it(raw, words, capfd):
    with pytest.raises(ValueError, match=words):
        read_authors_clip(raw)
    assert "pwned" not in capfd.readouterr().out


# ----------------------------------------------------------------------------- folders
def test_the_data_folder_and_the_cache_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_MBD_DATA", str(tmp_path / "offline"))
    assert data_home() == tmp_path / "offline"
    monkeypatch.setenv("TORCH_MBD_DATA", "")
    assert data_home() is None
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_home() == tmp_path / "xdg" / "torch-mbd"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_home() == tmp_path / "home" / ".cache" / "torch-mbd"


def test_the_tests_read_their_data_offline():
    """tests/conftest.py sets the data folder, so nothing in the suite downloads the clip."""
    assert os.environ.get("TORCH_MBD_DATA") and data_home() is not None


# ----------------------------------------------------------------------------- the clip
def test_the_offline_folder_is_the_only_source_when_set(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_MBD_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cache" / "torch-mbd").mkdir(parents=True)
    np.savez(tmp_path / "cache" / "torch-mbd" / "jog_xref.npz", **_clip())  # a cached copy is not looked at
    with pytest.raises(DataNotFoundError) as info:
        clip_path()
    message = str(info.value)
    assert "\n" not in message
    for words in (f"TORCH_MBD_DATA={tmp_path}", "mocap/jog_xref.npz", "path of an .npz clip", data.CLIP_URL):
        assert words in message, (words, message)
    (tmp_path / "mocap").mkdir()
    np.savez(tmp_path / "mocap" / "jog_xref.npz", **_clip())
    assert clip_path() == tmp_path / "mocap" / "jog_xref.npz"


def test_first_use_downloads_once_into_the_cache_then_reads_it(user, monkeypatch, tmp_path):
    raw = _jax_pickle(_clip(), monkeypatch)
    urls = []

    def serve(url, timeout):
        urls.append(url)
        return _Response(raw)

    monkeypatch.setattr(data, "CLIP_SHA256", hashlib.sha256(raw).hexdigest())  # the pinned file's stand-in
    monkeypatch.setattr(urllib.request, "urlopen", serve)
    path = clip_path()
    assert path == user / "jog_xref.npz" and urls == [data.CLIP_URL]
    with np.load(path) as npz:
        assert npz.files == list(POINTS) and np.array_equal(npz["torso"], _clip()["torso"])
    assert clip_path() == path and urls == [data.CLIP_URL]  # cached: no second download
    assert sorted(p.name for p in user.iterdir()) == ["jog_xref.npz"]  # no temporary file left


def test_no_network_is_one_line_naming_both_ways(user, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataNotFoundError) as info:
        clip_path()
    message = str(info.value)
    assert "\n" not in message and "could not download" in message and data.CLIP_URL in message
    assert "TORCH_MBD_DATA" in message and "path of an .npz clip" in message
    assert not user.exists() or not any(user.iterdir())
    with pytest.raises(DataNotFoundError, match="not in the cache"):
        clip_path(download=False)


def test_the_pinned_file_is_checked_against_its_checksum(user, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _Response(b"a different file"))
    with pytest.raises(ValueError, match=f"expected {data.CLIP_SHA256}"):
        clip_path()
    assert not (user / "jog_xref.npz").exists()


def test_download_checks_the_checksum_and_leaves_nothing_when_wrong(tmp_path, monkeypatch):
    source = tmp_path / "jog_xref.pkl"
    raw = _jax_pickle(_clip(), monkeypatch)
    source.write_bytes(raw)
    target = tmp_path / "cache" / "jog_xref.npz"
    with pytest.raises(ValueError, match="SHA-256"):
        download_clip(target, url=source.as_uri(), sha256="0" * 64)
    assert not target.exists()
    written = download_clip(target, url=source.as_uri(), sha256=hashlib.sha256(raw).hexdigest())
    assert written == target and sorted(p.name for p in target.parent.iterdir()) == ["jog_xref.npz"]
    source.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a pickled mocap clip"):
        download_clip(tmp_path / "other.npz", url=source.as_uri())
    assert not (tmp_path / "other.npz").exists()


def test_the_pinned_source_is_the_authors_file_at_a_fixed_commit():
    assert data.CLIP_URL.startswith("https://raw.githubusercontent.com/LeCAR-Lab/model-based-diffusion/")
    commit = data.CLIP_URL.split("/")[5]
    assert len(commit) == 40 and all(c in "0123456789abcdef" for c in commit)
    assert data.CLIP_URL.endswith("/mbd/assets/jog_xref.pkl") and len(data.CLIP_SHA256) == 64


class _Response:
    def __init__(self, raw):
        self.raw = raw

    def read(self):
        return self.raw

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
