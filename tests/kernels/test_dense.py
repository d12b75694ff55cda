"""Dense: errors (fast == reference twin and central differences: tests/test_ops_contract.py)."""
import numpy as np
import pytest

from nptl import ops


def test_bad_input():
    with pytest.raises(ValueError, match=r"x has 5 features \(shape \(2, 5\)\) but w expects 4"):
        ops.dense(np.zeros((2, 5)), np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=r"'b' must have shape \(3,\), got \(4,\)"):
        ops.dense(np.zeros((2, 4)), np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(ValueError, match=r"'x' must be 2-D"):
        ops.dense(np.zeros((2, 4, 1)), np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(TypeError, match=r"'x' must be real-valued"):
        ops.dense(np.array([["a"]]), np.zeros((1, 3)), np.zeros(3))
