"""Adaptive and global average pooling: PyTorch's bins written out, the case that is plain
average pooling, errors.  (Twins, gradients and torch are checked from the registry.)"""
import numpy as np
import pytest

from nptl import ops
from nptl.kernels import reference as ref
from tests.strategies import rand


def test_bins_are_pytorchs():
    """floor(i·H/Ho) … ceil((i+1)·H/Ho): written out for H = 10, Ho = 4 and H = 3, Ho = 5."""
    assert [ref.adaptive_bin(i, 10, 4) for i in range(4)] == [(0, 3), (2, 5), (5, 8), (7, 10)]
    assert [ref.adaptive_bin(i, 3, 5) for i in range(5)] == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]


@pytest.mark.parametrize("size", [1, 2, 3])
def test_equals_avg_pool_when_the_size_divides(size):
    x = rand(np.random.default_rng(size), (2, 3, 6 * size, 3 * size))
    np.testing.assert_allclose(ops.adaptive_avg_pool2d(x, (6, 3)), ops.avg_pool2d(x, size), rtol=1e-12)


def test_errors_name_the_argument():
    x = np.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: 'output_size\[1\]' must be >= 1, got 0"):
        ops.adaptive_avg_pool2d(x, (3, 0))
    with pytest.raises(ValueError, match=r"'output_size' must be an integer or a pair \(Ho, Wo\), got \(1, 2, 3\)"):
        ops.adaptive_avg_pool2d(x, (1, 2, 3))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d_backward: argument 'dy' must have shape \(1, 2, 3, 3\)"):
        ops.adaptive_avg_pool2d_backward(np.zeros((1, 2, 3, 4)), x, 3)
    with pytest.raises(ValueError, match=r"global_avg_pool2d: argument 'x' must be 4-D"):
        ops.global_avg_pool2d(np.zeros((2, 5)))
