"""conv_transpose2d: duality with conv2d, adjointness, values by hand, errors.  The twin,
central-difference and torch checks run from the op registry (tests/test_ops_contract.py,
tests/test_torch_ops.py)."""
import numpy as np
import pytest
from hypothesis import given

from nptl import ops
from tests.strategies import conv_transpose_geometries, rand, seeds


def _args(g, rng, dtype):
    return rand(rng, g.x_shape, dtype), rand(rng, g.w_shape, dtype), rand(rng, (g.F,), dtype)






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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", [0, 1])
def test_weight_gradient_through_winograd(dtype, padding):
    """(T3) is conv2d's (C3) with x and dy exchanged: with 64 channels and filters, 3×3, stride 1
    that is the Winograd weight gradient; it must still be the reference's (T3)."""
    from nptl.kernels import conv2d_winograd, reference

    rng = np.random.default_rng(padding)
    x, w = rand(rng, (4, 64, 12, 12), dtype), rand(rng, (64, 64, 3, 3), dtype)
    dy = rand(rng, ops.conv_transpose2d(x, w, None, stride=1, padding=padding).shape, dtype)
    assert conv2d_winograd.weight_grad_tile_size(4, 64, 64, 12, 12, 3, 3, 1) == 4
    _, dw, db = ops.conv_transpose2d_backward(dy, x, w, stride=1, padding=padding)
    _, rdw, rdb = reference.conv_transpose2d_backward(dy, x, w, 1, padding)
    tol = 1e-4 if dtype == np.float32 else 1e-11   # Winograd F(4×4)'s float32 rounding, as in its tests
    np.testing.assert_allclose(dw, rdw, rtol=0, atol=tol * np.abs(rdw).max())
    np.testing.assert_allclose(db, rdb, rtol=0, atol=tol * max(1.0, np.abs(rdb).max()))
