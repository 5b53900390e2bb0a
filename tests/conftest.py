import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
# `benchmarks` is a folder of scripts, not an installed package: tests import it from the checkout.
sys.path.insert(0, str(ROOT))
# The tests' data comes from one offline folder, $TORCH_MBD_DATA (dynamics.data), never from the
# network: CI and these machines have it at ../shared/data beside the clone. Set here, before any
# test runs, it holds for every subprocess too; a clone without that folder skips what needs data.
if not os.environ.get("TORCH_MBD_DATA"):  # unset or empty (empty would allow downloads)
    os.environ["TORCH_MBD_DATA"] = str(ROOT.parent / "shared" / "data")
DATA = Path(os.environ["TORCH_MBD_DATA"])

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def data_path():
    """``data_path("mocap/jog_xref.npz")``: that path under ``$TORCH_MBD_DATA``, or skip the test.

    A fresh clone has no ``../shared/data``: the tests that need the real MNIST files or the mocap
    clip skip there, with the reason, and run wherever the data folder is.
    """

    def find(relative: str) -> Path:
        path = DATA / relative
        if not path.exists():
            pytest.skip(f"{relative} is not in the data folder TORCH_MBD_DATA={DATA} (see tests/conftest.py)")
        return path

    return find
