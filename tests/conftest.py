import sys
from pathlib import Path

import pytest
import torch

# `benchmarks` is a folder of scripts, not an installed package: tests import it from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param
