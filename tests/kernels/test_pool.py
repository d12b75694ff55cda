"""Pooling: gradient properties, ties, errors (fast == reference twin and central differences:
tests/test_ops_contract.py)."""
import numpy as np
import pytest
from hypothesis import given

from nptl import ops
from tests.strategies import pool_geometries, rand, seeds



@given(g=pool_geometries(), seed=seeds)
def test_max_pool_gradient_lands_on_the_argmax(g, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, g.x_shape)
    dy = rand(rng, g.y_shape)
    dx = ops.max_pool2d_backward(dy, x, g.size, g.stride)
    expected = np.zeros_like(x)
    _, _, Ho, Wo = g.y_shape
    for n, c, i, j in np.ndindex(g.N, g.C, Ho, Wo):
        win = x[n, c, i * g.stride:i * g.stride + g.size, j * g.stride:j * g.stride + g.size]
        p, q = np.unravel_index(np.argmax(win), win.shape)  # np.argmax: first max, row-major
        expected[n, c, i * g.stride + p, j * g.stride + q] += dy[n, c, i, j]
    np.testing.assert_allclose(dx, expected, atol=1e-12)
    assert np.isclose(dx.sum(), dy.sum())


@given(g=pool_geometries(), seed=seeds)
def test_avg_pool_gradient_spreads_evenly(g, seed):
    rng = np.random.default_rng(seed)
    dy = rand(rng, g.y_shape)
    dx = ops.avg_pool2d_backward(dy, np.zeros(g.x_shape), g.size, g.stride)
    expected = np.zeros(g.x_shape)
    _, _, Ho, Wo = g.y_shape
    for n, c, i, j in np.ndindex(g.N, g.C, Ho, Wo):
        expected[n, c, i * g.stride:i * g.stride + g.size, j * g.stride:j * g.stride + g.size] += dy[n, c, i, j] / g.size**2
    np.testing.assert_allclose(dx, expected, atol=1e-12)


def test_tie_goes_to_first_maximum():
    x = np.array([[[[1.0, 3.0], [3.0, 3.0]]]])
    dx = ops.max_pool2d_backward(np.array([[[[5.0]]]]), x, 2)
    np.testing.assert_array_equal(dx[0, 0], [[0, 5], [0, 0]])


def test_stride_defaults_to_size():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(ops.max_pool2d(x, 2)[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(ops.avg_pool2d(x, 2)[0, 0], [[2.5, 4.5], [10.5, 12.5]])


@pytest.mark.parametrize("fwd", [ops.max_pool2d, ops.avg_pool2d])
def test_bad_input(fwd):
    with pytest.raises(ValueError, match=r"'size' must be >= 1, got 0"):
        fwd(np.zeros((1, 1, 4, 4)), 0)
    with pytest.raises(ValueError, match=r"'stride' must be >= 1, got 0"):
        fwd(np.zeros((1, 1, 4, 4)), 2, 0)
    with pytest.raises(ValueError, match=r"pool size 5 is larger than the input 4x4"):
        fwd(np.zeros((1, 1, 4, 4)), 5)
    with pytest.raises(ValueError, match=r"'x' must be 4-D"):
        fwd(np.zeros((4, 4)), 2)
