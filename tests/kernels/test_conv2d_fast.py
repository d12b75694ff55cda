"""The batch-parallel conv2d kernels (nptl.kernels.conv2d) against their reference twins.

Exercises the kernel functions directly, for every way the batch can be cut: threads ``T``
(1..3, more than the batch too) and images per GEMM chunk ``nb`` (1 = GEMM straight into
``y[n]``, >1 = gathered chunks, a ragged last chunk), 1×1 pointwise shortcut, padding wider
than the kernel, stride, batch 1, channel counts that are not multiples of the vector width;
float32 and float64; the weight gradient in both GEMM orientations (``dWᵀ`` transposed at
the end, or ``dW`` directly, :data:`nptl.kernels.conv2d.DW_DIRECT_MIN_FILTERS`).  Also the NumPy
fallback used when no OpenBLAS can be bound.
"""
import itertools
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nptl.kernels import conv2d as K
from nptl.kernels import conv2d_blas, schedule
from nptl.kernels import reference as ref
from nptl.kernels.reference import conv_output_size
from tests.strategies import DTYPES, examples, conv_geometries, rand, seeds, tolerance

needs_blas = pytest.mark.skipif(not conv2d_blas.AVAILABLE, reason="no bindable OpenBLAS")


def _close(a, b, dtype):
    rtol, atol = tolerance(dtype)
    scale = max(1.0, float(np.max(np.abs(b), initial=0)))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale)


def _case(g, dtype, seed):
    rng = np.random.default_rng(seed)
    x, w = rand(rng, g.x_shape, dtype), rand(rng, g.w_shape, dtype)
    b, dy = rand(rng, (g.F,), dtype), rand(rng, g.y_shape, dtype)
    return x, w, b, dy


splits = st.tuples(st.integers(1, 3), st.integers(1, 4))  # (T, nb)


@contextmanager
def dw_orientation(direct):
    """Force the weight-gradient GEMMs to write ``dW`` (``direct``) or ``dWᵀ`` whatever F is."""
    saved = K.DW_DIRECT_MIN_FILTERS
    K.DW_DIRECT_MIN_FILTERS = 1 if direct else 1 << 30
    try:
        yield
    finally:
        K.DW_DIRECT_MIN_FILTERS = saved


@needs_blas
@settings(max_examples=examples(60), deadline=None)
@given(g=conv_geometries(max_batch=5, max_channels=19), dtype=DTYPES, seed=seeds, split=splits,
       direct=st.booleans())
def test_all_passes_match_reference_for_any_split(g, dtype, seed, split, direct):
    T, nb = split
    T = min(T, g.N)
    x, w, b, dy = _case(g, dtype, seed)
    Ho, Wo = g.y_shape[2:]
    y = K._forward(x, w, b, g.stride, g.padding, Ho, Wo, T, nb)
    assert y.dtype == dtype and y.shape == g.y_shape
    _close(y, ref.conv2d(x, w, b, g.stride, g.padding), dtype)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, g.stride, g.padding)
    dx = K._backward_input(dy, w, g.H, g.W, g.stride, g.padding, T, nb)
    with dw_orientation(direct):
        dw, db = K._backward_weight(dy, x, g.KH, g.KW, g.stride, g.padding, T, nb)
        fdx, fdw, fdb = K._backward(dy, x, w, g.stride, g.padding, T, nb)  # the fused pass
    for a, r in ((dx, rdx), (dw, rdw), (db, rdb), (fdx, rdx), (fdw, rdw), (fdb, rdb)):
        assert a.dtype == dtype and a.shape == r.shape
        _close(a, r, dtype)


@settings(max_examples=examples(30), deadline=None)
@given(g=conv_geometries(max_batch=4, max_channels=9), dtype=DTYPES, seed=seeds)
def test_entry_points_and_numpy_fallback(g, dtype, seed):
    x, w, b, dy = _case(g, dtype, seed)
    want = ref.conv2d(x, w, b, g.stride, g.padding)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, g.stride, g.padding)
    Ho, Wo = g.y_shape[2:]
    got = [K.conv2d_forward(x, w, b, g.stride, g.padding),
           K.conv2d_backward_input(dy, w, g.x_shape, g.stride, g.padding),
           *K.conv2d_backward_weight(dy, x, g.w_shape, g.stride, g.padding)]
    fused = [got[0], *K.conv2d_backward(dy, x, w, g.stride, g.padding)]  # (y, dx, dw, db)
    fallback = [K._np_forward(x, w, b, g.stride, g.padding, Ho, Wo),
                K._np_backward_input(dy, w, g.x_shape, g.stride, g.padding),
                *K._np_backward_weight(dy, x, g.w_shape, g.stride, g.padding)]
    for out in (got, fused, fallback):
        for a, r in zip(out, (want, rdx, rdw, rdb), strict=True):
            assert a.dtype == dtype
            _close(a, r, dtype)


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,H,W,F,k,s,p", [
    (1, 1, 28, 28, 32, 3, 1, 0),      # batch 1, first layer
    (7, 17, 9, 11, 33, 3, 1, 1),      # odd everything, ragged chunks
    (5, 3, 13, 13, 16, 1, 1, 0),      # pointwise shortcut
    (3, 4, 12, 10, 5, 5, 2, 2),       # stride and padding
    (4, 2, 3, 3, 3, 2, 3, 3),         # padding wider than the kernel: all-zero rows/columns
    (2, 3, 37, 35, 8, 7, 2, 3),       # 7×7 stride 2 (ResNet's stem): im2col through the stride phases
    (3, 2, 40, 29, 3, 5, 3, 0),       # ... 5×5 stride 3 wide rows would need 36 taps: the plain path
    (3, 2, 30, 33, 3, 6, 3, 2),       # 6×6 stride 3: phases, odd sizes
])
def test_fixed_shapes(dtype, N, C, H, W, F, k, s, p):
    rng = np.random.default_rng(N * 100 + C)
    x, w, b = rand(rng, (N, C, H, W), dtype), rand(rng, (F, C, k, k), dtype), rand(rng, (F,), dtype)
    Ho, Wo = conv_output_size(H, k, s, p), conv_output_size(W, k, s, p)
    dy = rand(rng, (N, F, Ho, Wo), dtype)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, s, p)
    for (T, nb), direct in itertools.product(((1, 1), (2, 1), (2, 3), (N, N)), (False, True)):
        T = min(T, N)
        _close(K._forward(x, w, b, s, p, Ho, Wo, T, nb), ref.conv2d(x, w, b, s, p), dtype)
        _close(K._backward_input(dy, w, H, W, s, p, T, nb), rdx, dtype)
        with dw_orientation(direct):
            dw, db = K._backward_weight(dy, x, k, k, s, p, T, nb)
            _close(dw, rdw, dtype)
            _close(db, rdb, dtype)
            dx, dw, db = K._backward(dy, x, w, s, p, T, nb)
        for a, r in ((dx, rdx), (dw, rdw), (db, rdb)):
            assert a.dtype == dtype
            _close(a, r, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_entry_point_without_blas(monkeypatch, dtype):
    monkeypatch.setattr(conv2d_blas, "AVAILABLE", False)
    rng = np.random.default_rng(3)
    x, w = rand(rng, (3, 4, 7, 6), dtype), rand(rng, (5, 4, 3, 3), dtype)
    dy = rand(rng, (3, 5, 4, 3), dtype)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, 2, 1)
    dx, dw, db = K.conv2d_backward(dy, x, w, 2, 1)
    for a, r in ((dx, rdx), (dw, rdw), (db, rdb)):
        assert a.dtype == dtype
        _close(a, r, dtype)


def test_plan_is_sane():
    for N in (1, 2, 7, 64, 128):
        for L in (1, 9, 121, 676, 3136):
            T, nb = schedule.plan(N, L)
            assert 1 <= T <= N and 1 <= nb <= -(-N // T)
            assert nb == 1 or nb * L <= schedule.CHUNK_COLUMNS + L
