"""conv2d properties, known values and errors (fast == reference twin and central differences:
tests/test_ops_contract.py)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from nptl import ops
from nptl.kernels import reference as ref
from tests.strategies import conv_geometries, rand, seeds, tolerance


def _close(a, b, dtype):
    rtol, atol = tolerance(dtype)
    scale = max(1.0, float(np.max(np.abs(b), initial=0)))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale)


@given(g=conv_geometries(), seed=seeds)
def test_linear_in_x_and_in_w(g, seed):
    rng = np.random.default_rng(seed)
    x1, x2 = rand(rng, g.x_shape), rand(rng, g.x_shape)
    w1, w2 = rand(rng, g.w_shape), rand(rng, g.w_shape)
    a, c = rng.standard_normal(2)
    conv = lambda x, w: ops.conv2d(x, w, None, g.stride, g.padding)
    np.testing.assert_allclose(conv(a * x1 + c * x2, w1), a * conv(x1, w1) + c * conv(x2, w1), atol=1e-10)
    np.testing.assert_allclose(conv(x1, a * w1 + c * w2), a * conv(x1, w1) + c * conv(x1, w2), atol=1e-10)


@given(H=st.integers(3, 9), W=st.integers(3, 9), KH=st.integers(1, 3), KW=st.integers(1, 3), seed=seeds)
def test_cross_correlation_with_flipped_kernel_is_the_seeds_convolution(H, W, KH, KW, seed):
    """Seeds: y(i,j) = Σ_p Σ_q x(i−p+1, j−q+1)·k(p,q) (true convolution) == conv2d(x, flip(k))."""
    rng = np.random.default_rng(seed)
    x, k = rand(rng, (H, W)), rand(rng, (KH, KW))
    y_seed = ref.conv2d_true(x, k)
    y_xcorr = ops.conv2d(x[None, None], k[::-1, ::-1][None, None])[0, 0]
    np.testing.assert_allclose(y_xcorr, y_seed, rtol=1e-12, atol=1e-12)
    if KH > 1 or KW > 1:  # and without the flip they differ (for a non-symmetric kernel)
        assert not np.allclose(ops.conv2d(x[None, None], k[None, None])[0, 0], y_seed)


def test_known_values_by_hand():
    # 3x3 input, 2x2 kernel of ones: each output is the sum of a 2x2 window, computed by hand
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(ops.conv2d(x, w)[0, 0], [[0 + 1 + 3 + 4, 1 + 2 + 4 + 5], [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]])
    # padding 1, stride 2 on the same input: corners of the padded image
    np.testing.assert_array_equal(ops.conv2d(x, w, stride=2, padding=1)[0, 0], [[0, 1 + 2], [3 + 6, 4 + 5 + 7 + 8]])


def test_float64_and_noncontiguous_input_to_float32_weights():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6, 3)).transpose(0, 3, 1, 2)  # non-contiguous NCHW view
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y = ops.conv2d(x, w)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ref.conv2d(np.ascontiguousarray(x), w.astype(np.float64)), rtol=1e-6)


@pytest.mark.parametrize("x_shape,w_shape,kw,match", [
    ((2, 3, 8), (4, 3, 3, 3), {}, r"'x' must be 4-D \(N, C, H, W\), got shape \(2, 3, 8\)"),
    ((2, 3, 8, 8), (4, 2, 3, 3), {}, r"channel mismatch: input has 3 channels.*weights expect 2"),
    ((2, 3, 4, 4), (4, 3, 7, 7), {"padding": 1}, r"kernel 7x7 is larger than the padded input 6x6"),
    ((2, 3, 8, 8), (4, 3, 3, 3), {"stride": 0}, r"'stride' must be >= 1, got 0"),
    ((2, 3, 8, 8), (4, 3, 3, 3), {"padding": -1}, r"'padding' must be >= 0, got -1"),
])
def test_bad_input_raises_clear_error(x_shape, w_shape, kw, match):
    with pytest.raises(ValueError, match=match):
        ops.conv2d(np.zeros(x_shape), np.zeros(w_shape), **kw)


def test_bad_bias_and_dy_shapes():
    x, w = np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"'b' must have shape \(4,\), got \(3,\)"):
        ops.conv2d(x, w, np.zeros(3))
    with pytest.raises(ValueError, match=r"'dy' must have shape \(2, 4, 6, 6\), got \(2, 4, 5, 5\)"):
        ops.conv2d_backward(np.zeros((2, 4, 5, 5)), x, w)
    with pytest.raises(TypeError, match=r"'stride' must be an integer"):
        ops.conv2d(x, w, stride=1.5)
