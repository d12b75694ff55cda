"""upsample2d: fast kernel == reference twin, gradients, adjointness, known values."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from nptl import gradcheck, ops
from nptl.kernels import reference as ref
from tests.strategies import DTYPES, rand, seeds, upsample_factors

shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 7), st.integers(1, 7))


def _factors(size):
    return (size, size) if np.isscalar(size) else size


@given(shape=shapes, size=upsample_factors, dtype=DTYPES, seed=seeds)
def test_forward_and_backward_match_reference(shape, size, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, shape, dtype)
    y = ops.upsample2d(x, size)
    sh, sw = _factors(size)
    assert y.shape == (shape[0], shape[1], shape[2] * sh, shape[3] * sw) and y.dtype == dtype
    np.testing.assert_array_equal(y, ref.upsample2d(x, size))   # copies: exactly equal
    dy = rand(rng, y.shape, dtype)
    dx = ops.upsample2d_backward(dy, x, size)
    assert dx.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(dx, ref.upsample2d_backward(dy, x, size), rtol=rtol, atol=rtol)


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


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
       size=upsample_factors, seed=seeds)
def test_gradients_match_central_differences(shape, size, seed):
    x = rand(np.random.default_rng(seed), shape)
    gradcheck(ops.upsample2d, x, size, seed=seed % 1000).assert_ok(1e-6)


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
