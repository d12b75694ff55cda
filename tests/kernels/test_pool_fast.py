"""The pooling kernels (nptl.kernels.pool) against their reference twins, including the
written-out 2×2 stride-2 paths, odd sizes, ties and float32/float64."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nptl.kernels import pool as P
from nptl.kernels import reference as ref
from tests.strategies import DTYPES, examples, rand, seeds, tolerance


def _close(a, b, dtype):
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


geoms = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(2, 11), st.integers(2, 11),
                  st.sampled_from([(2, 2), (2, 1), (3, 2), (3, 3), (1, 1), (2, 3)]))


@settings(max_examples=examples(60), deadline=None)
@given(g=geoms, dtype=DTYPES, seed=seeds, ties=st.booleans(), nans=st.booleans())
def test_pool_kernels_match_reference(g, dtype, seed, ties, nans):
    N, C, H, W, (size, stride) = g
    size = min(size, H, W)
    rng = np.random.default_rng(seed)
    x = rand(rng, (N, C, H, W), dtype)
    if ties:  # few distinct values: many ties, the first maximum must win
        x = np.round(x).astype(dtype)
    if nans:  # NaN propagates: y is NaN, the gradient goes to the window's last NaN
        x[rng.random(x.shape) < 0.2] = np.nan
    Ho, Wo = ref.conv_output_size(H, size, stride, 0), ref.conv_output_size(W, size, stride, 0)
    dy = rand(rng, (N, C, Ho, Wo), dtype)
    y, arg = P.max_pool2d_forward(x, size, stride)
    np.testing.assert_array_equal(y, ref.max_pool2d(x, size, stride))
    _close(P.max_pool2d_backward(dy, arg, H, W), ref.max_pool2d_backward(dy, x, size, stride), dtype)
    if size == 2 and stride == 2:  # the ops' path: values only
        np.testing.assert_array_equal(P.max_pool2d_forward_2x2(x), ref.max_pool2d(x, size, stride))
    if nans:
        return
    _close(P.avg_pool2d_forward(x, size, stride), ref.avg_pool2d(x, size, stride), dtype)
    _close(P.avg_pool2d_backward(dy, H, W, size, stride), ref.avg_pool2d_backward(dy, x, size, stride), dtype)


@settings(max_examples=examples(60), deadline=None)
@given(g=geoms, dtype=DTYPES, seed=seeds, ties=st.booleans(), nans=st.booleans(), padding=st.integers(1, 2))
def test_padded_max_pool_is_the_pool_of_the_padded_input(g, dtype, seed, ties, nans, padding):
    """(P3) without the padded copy: the pool of x padded with −∞ (reference), argmax mapped to
    the unpadded plane, and (P2) into dx directly: the padded reference gradient, cropped."""
    N, C, H, W, (size, stride) = g
    size = max(2 * padding, min(size, H + 2 * padding, W + 2 * padding))
    rng = np.random.default_rng(seed)
    x = rand(rng, (N, C, H, W), dtype)
    if ties:
        x = np.round(x).astype(dtype)
    if nans:
        x[rng.random(x.shape) < 0.2] = np.nan
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=-np.inf)
    Ho, Wo = ref.conv_output_size(H, size, stride, padding), ref.conv_output_size(W, size, stride, padding)
    dy = rand(rng, (N, C, Ho, Wo), dtype)
    y, arg = P.max_pool2d_forward(x, size, stride, padding)
    np.testing.assert_array_equal(y, ref.max_pool2d(xp, size, stride))
    want = ref.max_pool2d_backward(dy, xp, size, stride)[:, :, padding:-padding, padding:-padding]
    _close(P.max_pool2d_backward(dy, arg, H, W), want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_by_two_fast_path_on_a_model_shape(dtype):
    rng = np.random.default_rng(1)
    x = rand(rng, (3, 5, 26, 27), dtype)  # odd width: last column dropped
    dy = rand(rng, (3, 5, 13, 13), dtype)
    y, arg = P.max_pool2d_forward(x, 2, 2)
    np.testing.assert_array_equal(y, ref.max_pool2d(x, 2, 2))
    _close(P.max_pool2d_backward(dy, arg, 26, 27), ref.max_pool2d_backward(dy, x, 2, 2), dtype)
    np.testing.assert_array_equal(P.max_pool2d_forward_2x2(x), y)
    _close(P.avg_pool2d_forward(x, 2, 2), ref.avg_pool2d(x, 2, 2), dtype)
    _close(P.avg_pool2d_backward(dy, 26, 27, 2, 2), ref.avg_pool2d_backward(dy, x, 2, 2), dtype)
