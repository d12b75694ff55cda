"""conv_transpose2d: fast kernel == reference twin, duality with conv2d, gradients, properties."""
import numpy as np
import pytest
from hypothesis import given

from nptl import gradcheck, ops
from nptl.kernels import reference as ref
from tests.strategies import DTYPES, conv_transpose_geometries, rand, seeds, tolerance


def _close(a, b, dtype):
    rtol, atol = tolerance(dtype)
    scale = max(1.0, float(np.max(np.abs(b), initial=0)))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale)


def _args(g, rng, dtype):
    return rand(rng, g.x_shape, dtype), rand(rng, g.w_shape, dtype), rand(rng, (g.F,), dtype)


@given(g=conv_transpose_geometries(), dtype=DTYPES, seed=seeds)
def test_forward_matches_reference(g, dtype, seed):
    x, w, b = _args(g, np.random.default_rng(seed), dtype)
    y = ops.conv_transpose2d(x, w, b, g.stride, g.padding, g.output_padding)
    assert y.shape == g.y_shape and y.dtype == dtype
    _close(y, ref.conv_transpose2d(x, w, b, g.stride, g.padding, g.output_padding), dtype)


@given(g=conv_transpose_geometries(), dtype=DTYPES, seed=seeds)
def test_backward_matches_reference(g, dtype, seed):
    rng = np.random.default_rng(seed)
    x, w, _ = _args(g, rng, dtype)
    dy = rand(rng, g.y_shape, dtype)
    fast = ops.conv_transpose2d_backward(dy, x, w, g.stride, g.padding, g.output_padding)
    slow = ref.conv_transpose2d_backward(dy, x, w, g.stride, g.padding, g.output_padding)
    for a, b in zip(fast, slow):
        assert a.dtype == dtype
        _close(a, b, dtype)


@given(g=conv_transpose_geometries(), seed=seeds)
def test_duality_with_conv2d(g, seed):
    """(T1) is conv2d's (C2) with dy := x; (T2) is conv2d's (C1) of dy; (T3) is conv2d's (C3)
    with x and dy exchanged — each against conv2d_backward / conv2d run on the conv2d side."""
    rng = np.random.default_rng(seed)
    x, w, _ = _args(g, rng, np.float64)
    dy = rand(rng, g.y_shape)
    y = ops.conv_transpose2d(x, w, None, g.stride, g.padding, g.output_padding)
    # a conv2d with weights w (F'=C, C'=F) maps images of y's shape to images of x's shape
    assert ops.conv2d_output_shape(g.y_shape, w.shape, g.stride, g.padding) == g.x_shape
    conv_dx, conv_dw, _ = ops.conv2d_backward(x, dy, w, g.stride, g.padding)   # conv2d's dy := x, x := dy
    np.testing.assert_allclose(y, conv_dx, rtol=1e-12, atol=1e-12)             # (T1) = (C2)
    dx, dw, db = ops.conv_transpose2d_backward(dy, x, w, g.stride, g.padding, g.output_padding)
    np.testing.assert_allclose(dx, ops.conv2d(dy, w, None, g.stride, g.padding), rtol=1e-12, atol=1e-12)  # (T2) = (C1)
    np.testing.assert_allclose(dw, conv_dw, rtol=1e-12, atol=1e-12)            # (T3) = (C3), x ↔ dy
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)  # (T4)


@given(g=conv_transpose_geometries(), seed=seeds)
def test_adjoint_of_conv2d(g, seed):
    """⟨conv_transpose2d(x, w), z⟩ = ⟨x, conv2d(z, w)⟩ for every z of the output's shape."""
    rng = np.random.default_rng(seed)
    x, w, _ = _args(g, rng, np.float64)
    z = rand(rng, g.y_shape)
    lhs = np.sum(ops.conv_transpose2d(x, w, None, g.stride, g.padding, g.output_padding) * z)
    rhs = np.sum(x * ops.conv2d(z, w, None, g.stride, g.padding))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


@given(g=conv_transpose_geometries(max_batch=2, max_channels=3, max_size=4, max_kernel=3), seed=seeds)
def test_gradients_match_central_differences(g, seed):
    rng = np.random.default_rng(seed)
    x, w, b = _args(g, rng, np.float64)
    report = gradcheck(ops.conv_transpose2d, x, w, b, stride=g.stride, padding=g.padding,
                       output_padding=g.output_padding, seed=seed % 1000)
    assert set(report.entries) == {"x", "w", "b"} and report.entries["w"] == w.size   # all entries
    report.assert_ok(1e-6)


def test_known_values_by_hand():
    # stride 2, 2x2 kernel of ones: each input pixel becomes a 2x2 block (no overlap)
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y = ops.conv_transpose2d(x, np.ones((1, 1, 2, 2)), stride=2)
    np.testing.assert_array_equal(y[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    # stride 1, 2x2 kernel of ones: overlapping patches add up; padding 1 crops the border
    y = ops.conv_transpose2d(x, np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(y[0, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    np.testing.assert_array_equal(ops.conv_transpose2d(x, np.ones((1, 1, 2, 2)), padding=1)[0, 0], [[10]])
    # output_padding adds a row and a column that only the bias reaches
    y = ops.conv_transpose2d(x, np.ones((1, 1, 2, 2)), np.array([0.5]), stride=2, output_padding=1)
    assert y.shape == (1, 1, 5, 5)
    np.testing.assert_array_equal(y[0, 0, 4], [0.5] * 5)
    np.testing.assert_array_equal(y[0, 0, :, 4], [0.5] * 5)


@pytest.mark.parametrize("x_shape,w_shape,kw,match", [
    ((2, 3, 8), (3, 4, 3, 3), {}, r"'x' must be 4-D \(N, C, H, W\), got shape \(2, 3, 8\)"),
    ((2, 3, 8, 8), (2, 4, 3, 3), {}, r"channel mismatch: input has 3 channels.*expect 2"),
    ((2, 3, 4, 4), (3, 4, 3, 3), {"stride": 2, "output_padding": 2},
     r"'output_padding' must be smaller than 'stride' \(2\), got 2"),
    ((2, 3, 1, 1), (3, 4, 1, 1), {"padding": 1}, r"padding 1 crops the whole output"),
    ((2, 3, 8, 8), (3, 4, 3, 3), {"stride": 0}, r"'stride' must be >= 1, got 0"),
])
def test_bad_input_raises_clear_error(x_shape, w_shape, kw, match):
    with pytest.raises(ValueError, match=match):
        ops.conv_transpose2d(np.zeros(x_shape), np.zeros(w_shape), **kw)


def test_bad_bias_and_dy_shapes():
    x, w = np.zeros((2, 3, 4, 4)), np.zeros((3, 5, 3, 3))
    with pytest.raises(ValueError, match=r"'b' must have shape \(5,\), got \(3,\)"):
        ops.conv_transpose2d(x, w, np.zeros(3))
    with pytest.raises(ValueError, match=r"'dy' must have shape \(2, 5, 6, 6\), got \(2, 5, 4, 4\)"):
        ops.conv_transpose2d_backward(np.zeros((2, 5, 4, 4)), x, w)
