"""upsample2d: backward sums blocks (the adjoint), values by hand, errors.  The twin,
central-difference and torch checks run from the op registry."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from nptl import ops
from tests.strategies import rand, seeds, upsample_factors

shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 7), st.integers(1, 7))


def _factors(size):
    return (size, size) if np.isscalar(size) else size




@given(shape=shapes, size=upsample_factors, seed=seeds)
def test_backward_sums_each_block_and_is_the_adjoint(shape, size, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, shape)
    sh, sw = _factors(size)
    dy = rand(rng, (shape[0], shape[1], shape[2] * sh, shape[3] * sw))
    dx = ops.upsample2d_backward(dy, x, size)
    blocks = dy.reshape(shape[0], shape[1], shape[2], sh, shape[3], sw).sum(axis=(3, 5))
    np.testing.assert_allclose(dx, blocks, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.sum(ops.upsample2d(x, size) * dy), np.sum(x * dx), rtol=1e-10, atol=1e-10)


def test_known_values_by_hand():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    np.testing.assert_array_equal(ops.upsample2d(x, 2)[0, 0],
                                  [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    np.testing.assert_array_equal(ops.upsample2d(x, (1, 3))[0, 0], [[1, 1, 1, 2, 2, 2], [3, 3, 3, 4, 4, 4]])
    dy = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(ops.upsample2d_backward(dy, x, 2)[0, 0],
                                  [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])


def test_bad_input_raises_clear_error():
    with pytest.raises(ValueError, match=r"'size' must be >= 1, got 0"):
        ops.upsample2d(np.zeros((1, 1, 2, 2)), 0)
    with pytest.raises(ValueError, match=r"'size' must be an integer or a pair"):
        ops.upsample2d(np.zeros((1, 1, 2, 2)), (1, 2, 3))
    with pytest.raises(ValueError, match=r"'dy' must have shape \(1, 1, 4, 4\), got \(1, 1, 4, 5\)"):
        ops.upsample2d_backward(np.zeros((1, 1, 4, 5)), np.zeros((1, 1, 2, 2)), 2)
