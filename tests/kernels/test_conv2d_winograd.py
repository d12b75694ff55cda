"""Winograd F(m×m, 3×3) kernels (nptl.kernels.conv2d_winograd) against the reference twin.

Forward (C1), input gradient (C2) and weight gradient (C3), (C4) on generated 3×3 stride-1 geometries, both tile sizes, any
split of the batch over threads and chunks (ragged last chunk, more threads than images),
outputs smaller than one tile, cropped edge tiles, channels below the vector width; then each
branch of the dispatch decision and the entry points of nptl.kernels.conv2d that route to it.

Tolerance.  F(2×2) rounds like the sliding sum; F(4×4) multiplies by up to 8 and divides by 24
in its transforms, and measured float32 errors of 4e-6 (32 channels), 7e-6 (64) and 1.5e-5
(256) times the output's largest magnitude on the suite's shapes, against 6e-7 for im2col.  So
float32 is compared at ``1e-4 · max|y|`` (float64 at ``1e-11 · max|y|``) for both tile sizes.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nptl.kernels import conv2d as K
from nptl.kernels import conv2d_blas
from nptl.kernels import conv2d_winograd as WG
from nptl.kernels import reference as ref
from tests.strategies import DTYPES, rand, seeds

pytestmark = pytest.mark.skipif(not conv2d_blas.AVAILABLE, reason="no bindable OpenBLAS")

TILES = st.sampled_from(sorted(WG.MATRICES))


def _close(a, b, dtype):
    """``|a − b| ≤ tol · max(1, max|b|)`` elementwise, tol as in the module docstring."""
    assert a.dtype == dtype and a.shape == b.shape
    tol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-11
    scale = max(1.0, float(np.max(np.abs(b), initial=0)))
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


@st.composite
def geometries(draw):
    """``(N, C, H, W, F, padding)`` of a 3×3 stride-1 layer with at least one output pixel."""
    padding = draw(st.integers(0, 2))
    lo = max(1, 3 - 2 * padding)
    return (draw(st.integers(1, 4)), draw(st.integers(1, 9)), draw(st.integers(lo, 14)),
            draw(st.integers(lo, 14)), draw(st.integers(1, 9)), padding)


def _case(geometry, dtype, seed):
    N, C, H, W, F, p = geometry
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, (N, C, H, W), dtype), rand(rng, (F, C, 3, 3), dtype), rand(rng, (F,), dtype)
    dy = rand(rng, (N, F, H + 2 * p - 2, W + 2 * p - 2), dtype)
    return x, w, b, dy, p


@settings(deadline=None)
@given(geometry=geometries(), m=TILES, dtype=DTYPES, seed=seeds,
       split=st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_forward_and_input_gradient_match_reference(geometry, m, dtype, seed, split):
    x, w, b, dy, p = _case(geometry, dtype, seed)
    T, nb = min(split[0], x.shape[0]), split[1]
    _close(WG._forward(x, w, b, p, m, T, nb), ref.conv2d(x, w, b, 1, p), dtype)
    _close(WG.conv2d_backward_input(dy, w, p, m), ref.conv2d_backward(dy, x, w, 1, p)[0], dtype)


@settings(deadline=None)
@given(geometry=geometries(), m=TILES, dtype=DTYPES, seed=seeds,
       split=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)))
def test_weight_gradient_matches_reference(geometry, m, dtype, seed, split):
    """(WG1)–(WG4) for any split, including fewer units than threads × UNITS_PER_THREAD
    (``most``: the bound on partial sums)."""
    x, w, b, dy, p = _case(geometry, dtype, seed)
    T, nb, most = min(split[0], x.shape[0]), split[1], split[2]
    _, rdw, rdb = ref.conv2d_backward(dy, x, w, 1, p)
    dw, db = WG._backward_weight(dy, x, p, m, T, nb, most)
    _close(dw, rdw, dtype)
    _close(db, rdb, dtype)


@pytest.mark.parametrize("m", sorted(WG.MATRICES))
def test_transforms_are_the_convolution_on_one_tile(m):
    """(W1)–(W4) by hand on one α×α patch: ``Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A`` is the m×m valid
    correlation of d with g."""
    BT, G, AT = WG.MATRICES[m]
    rng = np.random.default_rng(m)
    d, g = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
    y = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T
    want = [[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(m)] for i in range(m)]
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


def test_dispatch_decision_branches():
    taken = dict(N=8, C=16, F=16, Ho=7, Wo=8, KH=3, KW=3, stride=1)   # 8 images × 4 tiles
    assert WG.tile_size(**taken) == 4
    for change in (dict(KH=5), dict(KW=1), dict(stride=2), dict(C=15), dict(F=15), dict(Ho=6), dict(Wo=6),
                   dict(N=7)):
        assert WG.tile_size(**dict(taken, **change)) == 0, change
    assert WG.tile_size(**dict(taken, N=2, Ho=16, Wo=16)) == 4    # 2 images × 16 tiles
    grad = dict(N=8, C=16, F=16, H=8, W=8, KH=3, KW=3, stride=1)
    assert WG.input_grad_tile_size(**grad, padding=1) == WG.input_grad_tile_size(**grad, padding=2) == 4
    assert WG.input_grad_tile_size(**grad, padding=0) == 0     # full convolution: col2im is faster
    assert WG.input_grad_tile_size(**grad, padding=3) == 0     # 2 − padding < 0: not a convolution
    assert WG.input_grad_tile_size(**dict(grad, C=8), padding=1) == 0   # C filters of the dx conv
    wide = dict(taken, C=64, F=64)
    assert WG.weight_grad_tile_size(**wide) == 4
    for change in (dict(C=63), dict(F=63), dict(stride=2), dict(Ho=6), dict(N=7)):
        assert WG.weight_grad_tile_size(**dict(wide, **change)) == 0, change


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,H,W,F,p", [
    (8, 16, 10, 10, 17, 0),    # forward by Winograd, input gradient by col2im (unpadded)
    (4, 17, 9, 11, 16, 1),     # both by Winograd, 9×11: cropped edge tiles
    (4, 16, 12, 12, 16, 2),    # padding 2: the input gradient is an unpadded Winograd conv
])
def test_entry_points_route_to_winograd(monkeypatch, dtype, N, C, H, W, F, p):
    calls = []
    real = WG.conv2d_forward
    monkeypatch.setattr(WG, "conv2d_forward", lambda *a: calls.append(a[3]) or real(*a))
    rng = np.random.default_rng(N + C)
    x, w, b = rand(rng, (N, C, H, W), dtype), rand(rng, (F, C, 3, 3), dtype), rand(rng, (F,), dtype)
    dy = rand(rng, (N, F, H + 2 * p - 2, W + 2 * p - 2), dtype)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, 1, p)
    _close(K.conv2d_forward(x, w, b, 1, p), ref.conv2d(x, w, b, 1, p), dtype)
    assert calls == [p]
    _close(K.conv2d_backward_input(dy, w, x.shape, 1, p), rdx, dtype)
    for got, want in zip(K.conv2d_backward(dy, x, w, 1, p), (rdx, rdw, rdb), strict=True):
        _close(got, want, dtype)
    assert calls == [p] + [2 - p] * 2 * (p > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0, 1])
def test_weight_gradient_entry_points_route_to_winograd(monkeypatch, dtype, p):
    """64 channels and filters: (C3) by Winograd from conv2d_backward_weight, and from the fused
    conv2d_backward when the layer is padded (an unpadded one keeps the shared im2col)."""
    calls = []
    real = WG.conv2d_backward_weight
    monkeypatch.setattr(WG, "conv2d_backward_weight", lambda *a: calls.append(a[3]) or real(*a))
    rng = np.random.default_rng(p)
    x, w = rand(rng, (4, 64, 12, 11), dtype), rand(rng, (64, 64, 3, 3), dtype)   # 4 × 9 tiles
    dy = rand(rng, (4, 64, 12 + 2 * p - 2, 11 + 2 * p - 2), dtype)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, 1, p)
    for got, want in zip(K.conv2d_backward_weight(dy, x, w.shape, 1, p), (rdw, rdb), strict=True):
        _close(got, want, dtype)
    assert calls == [4]
    for got, want in zip(K.conv2d_backward(dy, x, w, 1, p), (rdx, rdw, rdb), strict=True):
        _close(got, want, dtype)
    assert calls == [4] * (1 + (p > 0))


@pytest.mark.parametrize("m", sorted(WG.MATRICES))
def test_weight_transform_parallel_equals_serial(m):
    """(W1) over the filters in parallel (from PARALLEL_TRANSFORM weights) is the serial loop,
    bit for bit, and G·w·Gᵀ per filter."""
    rng = np.random.default_rng(m)
    w = rng.standard_normal((128, 128, 3, 3)).astype(np.float32)
    assert 128 * 128 >= WG.PARALLEL_TRANSFORM
    G = WG.MATRICES[m][1]
    serial, parallel = (np.empty(((m + 2) ** 2, 128, 128), np.float32) for _ in range(2))
    WG._transform_weights(w, G, serial)
    WG._transform_weights_parallel(w, G, parallel)
    np.testing.assert_array_equal(parallel, serial)
    np.testing.assert_array_equal(WG.transform_weights(w, m), serial)
    f, c = 5, 77
    want = (G @ w[f, c].astype(np.float64) @ G.T).reshape(-1)
    np.testing.assert_allclose(serial[:, f, c], want, rtol=1e-6, atol=1e-6)
