"""The shared argument checks: NumPy scalars and 0-dim tensors are numbers and booleans like
Python's, and booleans are never numbers."""

import numpy as np
import pytest
import torch

from torch_mbd.checks import check_bool, check_int, check_positive, check_real


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), (np.True_, True), (np.False_, False), (np.bool_(True), True),
    (torch.tensor(True), True), (torch.tensor(False), False), (np.array(True), True),
])
def test_check_bool_accepts_python_numpy_and_tensor_booleans(value, expected):
    result = check_bool("flag", value)
    assert result is expected  # a plain Python bool


@pytest.mark.parametrize("value", [0, 1, 1.0, "yes", None, np.int64(1), np.array([True]), torch.tensor([True]),
                                   np.array([[False]]), torch.tensor(1)])
def test_check_bool_refuses_numbers_strings_and_arrays(value):
    with pytest.raises(ValueError, match=r"Invalid flag: expected True or False"):
        check_bool("flag", value)


@pytest.mark.parametrize("value", [np.int8(3), np.int16(3), np.int32(3), np.int64(3), np.uint8(3), np.uint64(3),
                                   torch.tensor(3)])
def test_check_int_accepts_numpy_and_tensor_integers(value):
    result = check_int("count", value, minimum=1)
    assert result == 3 and type(result) is int


@pytest.mark.parametrize("value", [np.float16(0.5), np.float32(0.5), np.float64(0.5), np.int64(2), torch.tensor(0.5)])
def test_check_real_accepts_numpy_and_tensor_numbers(value):
    result = check_real("x", value)
    assert result == float(value) and type(result) is float


@pytest.mark.parametrize("value", [np.True_, np.False_, True, torch.tensor(True)])
def test_booleans_are_never_numbers(value):
    with pytest.raises(ValueError, match="Invalid n"):
        check_int("n", value)
    with pytest.raises(ValueError, match="Invalid n"):
        check_real("n", value)
    with pytest.raises(ValueError, match="Invalid n"):
        check_positive("n", value)
