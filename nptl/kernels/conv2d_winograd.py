"""Winograd convolution F(m×m, 3×3) for 3×3, stride-1 layers (Lavin & Gray, CVPR 2016).

The same formula (C1) as :mod:`nptl.kernels.reference`, computed tile by tile.  An output tile of
``m×m`` pixels with top-left corner ``(i0, j0) = (ti·m, tj·m)`` depends on the ``α×α`` input
patch ``d = xp[n, c, i0 : i0+α, j0 : j0+α]`` (``α = m + 2``, zero outside the padded input), and::

    (W1)  U[f,c] = G · w[f,c] · Gᵀ                (α×α, once per call)
    (W2)  V[c]   = Bᵀ · d[c] · B                  (α×α, per tile and channel)
    (W3)  M[f]   = Σ_c U[f,c] ⊙ V[c]              (elementwise: α² GEMMs over the channels)
    (W4)  y[n, f, i0 : i0+m, j0 : j0+m] = Aᵀ · M[f] · A + b[f]     (cropped at Ho, Wo)

equals ``Σ_c Σ_p Σ_q xp[n,c,i0+a+p, j0+b+q] · w[f,c,p,q] + b[f]`` for every ``a, b < m`` (the
minimal filtering algorithm; the matrices are :data:`MATRICES`).  The products of (W3) are α²
multiplications per tile and channel pair instead of ``9·m²`` for the sliding sum: 16 vs 36 for
F(2×2, 3×3), 36 vs 144 for F(4×4, 3×3).  The price is rounding: F(4×4) multiplies by up to 8
and divides by 24, so float32 results carry errors of a few 1e-6 relative to the output's scale
against ~1e-7 for the sliding sum (measured in ``tests/kernels/test_conv2d_winograd.py``, which
allows 5e-5 for float32 and 1e-11 for float64, both times the output's largest magnitude).

Work layout.  Images are processed in chunks of ``nb`` (each ``P = tH·tW`` tiles, ``T = nb·P``
tile columns).  Per chunk and channel, the patches are gathered into ``D[i·α+j, t]`` and
transformed twice along the tile axis ``t`` (contiguous, so the loops vectorise):
``E[ξ·α+j] = Σ_i Bᵀ[ξ,i] D[i·α+j]``, then ``V[ξ·α+ν, c] = Σ_j Bᵀ[ν,j] E[ξ·α+j]``.  (W3) is α²
single-threaded GEMMs ``M[k] (F, T) = U[k] (F, C) @ V[k] (C, T)`` (:mod:`nptl.kernels.conv2d_blas`);
(W4) runs the same two passes with ``Aᵀ`` per filter and scatters the tiles into ``y``.  The
kernels are compiled once per ``m`` with the matrices as constants (:func:`_forward_slice_f4`).  Chunks
are handed to threads by :mod:`nptl.kernels.schedule`.

The input gradient (C2) of a 3×3 stride-1 convolution with padding ``P ≤ 2`` is itself such a
convolution: ``dx = conv(dy, w̃, padding = 2 − P)`` with ``w̃[c, f, p, q] = w[f, c, 2−p, 2−q]``
(:func:`conv2d_backward_input`).  The weight gradient (C3) runs the adjoint of (W1)–(W4) over
the same tiles, (WG1)–(WG4) (:func:`conv2d_backward_weight`).

Which layers take this path (and with which ``m``) is decided in one place: :func:`tile_size`
for the forward pass, :func:`input_grad_tile_size` for the input gradient and
:func:`weight_grad_tile_size` for the weight gradient.
"""
from __future__ import annotations

import numpy as np
from numba import prange, uintp

from .conv2d_blas import NO_TRANS, TRANS, gemm
from .jit import kernel
from .schedule import plan, run_units, units

#: ``m: (Bᵀ (α×α), G (α×3), Aᵀ (m×α))`` — Lavin & Gray's matrices, interpolation points
#: 0, ±1 (m = 2) and 0, ±1, ±2 (m = 4), plus the point at infinity.
MATRICES = {
    2: (np.array([[1, 0, -1, 0],
                  [0, 1, 1, 0],
                  [0, -1, 1, 0],
                  [0, 1, 0, -1]], dtype=np.float64),
        np.array([[1, 0, 0],
                  [1 / 2, 1 / 2, 1 / 2],
                  [1 / 2, -1 / 2, 1 / 2],
                  [0, 0, 1]], dtype=np.float64),
        np.array([[1, 1, 1, 0],
                  [0, 1, -1, -1]], dtype=np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0],
                  [0, -4, -4, 1, 1, 0],
                  [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0],
                  [0, 2, -1, -2, 1, 0],
                  [0, 4, 0, -5, 0, 1]], dtype=np.float64),
        np.array([[1 / 4, 0, 0],
                  [-1 / 6, -1 / 6, -1 / 6],
                  [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6],
                  [0, 0, 1]], dtype=np.float64),
        np.array([[1, 1, 1, 1, 1, 0],
                  [0, 1, -1, 2, -2, 0],
                  [0, 1, 1, 4, 4, 0],
                  [0, 1, -1, 8, -8, 1]], dtype=np.float64)),
}

#: bytes of V and M per chunk (α²·(C + F)·T values) to aim for.  Measured on one Zen 4 core
#: (1 MB L2): 1 / 2 / 4 MB gave 3.4 / 2.8 / 5.2 ms on seed-cnn-2 and 8.3 / 8.4 / 39 ms on vgg-block
CHUNK_BYTES = 2 * 1024 * 1024
MIN_TILE_COLUMNS = 16
#: the tile-column count of a full chunk is rounded up to a multiple of this (the spare columns
#: are transformed and multiplied as zeros, never scattered), so the transform loops over the
#: tiles run in whole 16-float vectors without a scalar remainder.  (Rounding to 64 instead
#: wasted more on padding than it saved: seed-cnn-2 4.4 ms against 3.4.)
TILE_ALIGN = 16


#: a batch must give the α² GEMMs at least this many tile columns (``N·⌈Ho/4⌉·⌈Wo/4⌉``): every
#: call streams all of ``U``, 4× the bytes of ``w``, and with few columns the GEMMs starve on it.
#: ResNet18's 512-channel 7×7 layer, one Zen 4 core: 16 columns (batch 4) 16.3 ms against 11.3
#: by im2col, 64 (batch 16) 27 ms against 44; a 256-channel 14×14 layer at 32 columns: a tie.
MIN_BATCH_TILES = 32


def tile_size(N, C, F, Ho, Wo, KH, KW, stride):
    """The dispatch decision for (C1) on a batch of ``N``: ``m`` when this layer's forward pass
    should run as Winograd F(m×m, 3×3), else 0 (the im2col + GEMM kernels of
    :mod:`nptl.kernels.conv2d`).

    3×3 stride-1 layers with at least 16 channels and 16 filters (the transforms cost O(C + F)
    per tile, the α² GEMMs O(C·F): with fewer the transforms dominate), outputs at least 7×7
    (a 7×7 output fills 49/64 of its four tiles) and at least :data:`MIN_BATCH_TILES` tiles in
    the batch.  Measured on one Zen 4 core: 11×11 and 16×16 outputs (seed-cnn-2, vgg-block) took
    2.5 and 6.7 ms with F(4×4) against 4.1 and 14.6 ms with im2col, F(2×2) 3.4 and 9.3 ms;
    ResNet18's 7×7 layers at batch 16 7.8 (256 channels) and 27 ms (512) against 10.8 and 44 ms,
    F(2×2) 9.3 and 34 ms; the 3×3 output of seed-cnn-3 took 0.66 (F(4×4)) and 0.74 ms (F(2×2))
    against 0.60, the 4×4 output of ResNet18's last layers (512 channels, batch 16) 20.9 and
    13.4 ms against 14.7.  So m = 4.

    >>> tile_size(64, 32, 64, 11, 11, 3, 3, 1), tile_size(64, 3, 32, 30, 30, 3, 3, 1), tile_size(64, 64, 64, 3, 3, 3, 3, 1)
    (4, 0, 0)
    >>> tile_size(16, 256, 256, 7, 7, 3, 3, 1), tile_size(4, 256, 256, 7, 7, 3, 3, 1)
    (4, 0)
    """
    if KH != 3 or KW != 3 or stride != 1 or C < 16 or F < 16 or min(Ho, Wo) < 7:
        return 0
    if N * -(-Ho // 4) * -(-Wo // 4) < MIN_BATCH_TILES:
        return 0
    return 4


def input_grad_tile_size(N, C, F, H, W, KH, KW, stride, padding):
    """The dispatch decision for (C2) of a layer with ``C`` channels, ``F`` filters and input
    ``H×W``, on a batch of ``N``: ``m`` when its input gradient should run as the Winograd convolution
    ``conv(dy, w̃, 2 − padding)`` (:func:`conv2d_backward_input`), else 0.

    As :func:`tile_size` for that convolution (``F`` channels, ``C`` filters, output ``H×W``),
    and only for padded layers: an unpadded layer's input gradient is a *full* convolution
    (padding 2) whose edge tiles are mostly padding on small images.  On seed-cnn-2 it took
    4.9 ms against the 3.9 ms that dx adds to the fused im2col backward pass (one thread), while
    the padded vgg-block's took 7.7 ms against 14.8 ms by col2im.

    >>> input_grad_tile_size(32, 64, 128, 16, 16, 3, 3, 1, 1), input_grad_tile_size(64, 32, 64, 13, 13, 3, 3, 1, 0)
    (4, 0)
    """
    if padding < 1 or padding > 2:
        return 0
    return tile_size(N, F, C, H, W, KH, KW, stride)


def weight_grad_tile_size(N, C, F, Ho, Wo, KH, KW, stride):
    """The dispatch decision for (C3): ``m`` when this layer's weight gradient should run as
    :func:`conv2d_backward_weight`, else 0 (im2col + GEMM).

    As :func:`tile_size`, and only with at least 64 channels and 64 filters: its transforms of
    x and dy cost O(C + F) per tile against the GEMMs' O(C·F).  Measured on one Zen 4 core
    (im2col against F(4×4)): vgg-block 17.0 / 10.5 ms, ResNet18's 64-channel 28×28 and
    256-channel 7×7 layers at batch 16 12.3 / 9.4 and 13.0 / 11.5 ms, VGG16's layers at 112×112
    248 / 137 (64 channels, 112×112) to 174 / 111 ms (512, 14×14); seed-cnn-2 (32 channels)
    5.3 / 6.2 ms.  F(2×2) was slower on all but one (9.1 against 9.6 ms) and F(4×4)'s float32
    error, ~1e-5 of the gradient's largest magnitude, is the forward pass's.

    >>> weight_grad_tile_size(32, 64, 128, 16, 16, 3, 3, 1), weight_grad_tile_size(64, 32, 64, 11, 11, 3, 3, 1)
    (4, 0)
    """
    if min(C, F) < 64:
        return 0
    return tile_size(N, C, F, Ho, Wo, KH, KW, stride)


def transform_weights(w, m):
    """(W1) ``U[ξ·α+ν, f, c] = (G · w[f,c] · Gᵀ)[ξ, ν]``, accumulated in float64, in ``w``'s dtype;
    the filters in parallel from :data:`PARALLEL_TRANSFORM` weights on (the batch's threads are
    idle meanwhile: 512×512 weights take 2 ms on one core; below, waking the pool costs more)."""
    F, C = w.shape[:2]
    U = np.empty(((m + 2) ** 2, F, C), dtype=w.dtype)
    run = _transform_weights_parallel if F * C >= PARALLEL_TRANSFORM else _transform_weights
    run(w, MATRICES[m][1], U)
    return U


#: filters × channels from which :func:`transform_weights` runs the filters in parallel
PARALLEL_TRANSFORM = 128 * 128


@kernel(inline="always")
def _transform_filter(w, G, U, f):
    """(W1) for filter ``f``, through ``wf[i, j, c] = w[f, c, i, j]`` so that every loop ends in
    a contiguous run over c."""
    C = w.shape[1]
    a = G.shape[0]
    wf = np.empty((3, 3, C))
    for c in range(C):
        for i in range(3):
            for j in range(3):
                wf[i, j, c] = w[f, c, i, j]
    tmp = np.empty((a, 3, C))
    for xi in range(a):                   # tmp = G · w[f]
        for j in range(3):
            for c in range(C):
                tmp[xi, j, c] = G[xi, 0] * wf[0, j, c] + G[xi, 1] * wf[1, j, c] + G[xi, 2] * wf[2, j, c]
    for xi in range(a):                   # U[:, f] = tmp · Gᵀ
        for nu in range(a):
            for c in range(C):
                U[xi * a + nu, f, c] = tmp[xi, 0, c] * G[nu, 0] + tmp[xi, 1, c] * G[nu, 1] + tmp[xi, 2, c] * G[nu, 2]


@kernel
def _transform_weights(w, G, U):
    """(W1), one filter after another."""
    for f in range(w.shape[0]):
        _transform_filter(w, G, U, f)


@kernel(parallel=True)
def _transform_weights_parallel(w, G, U):
    """(W1), the filters in parallel."""
    for f in prange(w.shape[0]):
        _transform_filter(w, G, U, f)


@kernel(inline="always")
def _combine(Mx, r, src, s0, s_step, n, dst, d0, T):
    """``dst[d0 + t] = Σ_{i<n} Mx[r, i] · src[s0 + i·s_step + t]`` for ``t < T``: row ``r`` of a
    transform matrix applied to ``n`` rows of tile values, vectorised over the tiles (zero
    coefficients skipped)."""
    zero = dst.dtype.type(0)
    for t in range(T):
        dst[uintp(d0 + t)] = zero
    for i in range(n):
        coef = dst.dtype.type(Mx[r, i])
        if coef == zero:
            continue
        s = s0 + i * s_step
        for t in range(T):
            dst[uintp(d0 + t)] += coef * src[uintp(s + t)]


@kernel(inline="always")
def _apply_rows(Mx, src, s_off, dst, d_off, T, rows_in, inner):
    """``dst[r·inner + k, t] = Σ_i Mx[r, i] · src[i·inner + k, t]`` for ``t < T`` (flat arrays with
    row length ``T``, starting ``s_off``/``d_off`` values in): one matrix applied along the first
    of two tile-local axes.  ``rows_in`` is ``Mx.shape[1]``."""
    for r in range(Mx.shape[0]):
        for k in range(inner):
            _combine(Mx, r, src, s_off + k * T, inner * T, rows_in, dst, d_off + (r * inner + k) * T, T)


@kernel(inline="always")
def _apply_cols(Mx, src, dst, d_off, d_stride, T, outer, cols_in):
    """``dst[d_off + (o·R + r)·d_stride + t] = Σ_j Mx[r, j] · src[(o·cols_in + j)·T + t]``: the
    same along the second tile-local axis (``R = Mx.shape[0]``)."""
    R = Mx.shape[0]
    for o in range(outer):
        for r in range(R):
            _combine(Mx, r, src, o * cols_in * T, T, cols_in, dst, d_off + (o * R + r) * d_stride, T)


@kernel(inline="always")
def _gather_patches(xs, base, H, W, padding, a, Wp, toff, xpad, t0, T, D):
    """``D[i·α+j, t0 + ti·tW + tj] = xp[ti·m + i, tj·m + j]`` for one image plane starting at
    ``xs[base]``: the plane is copied into the interior of ``xpad`` (``Wp`` wide, its border
    kept zero), then each patch element is one pass over the tiles through the offsets
    ``toff[ti·tW + tj] = ti·m·Wp + tj·m``."""
    P = toff.size
    for h in range(H):
        d0 = (h + padding) * Wp + padding
        s0 = base + h * W
        for v in range(W):
            xpad[uintp(d0 + v)] = xs[uintp(s0 + v)]
    for i in range(a):
        for j in range(a):
            d0 = (i * a + j) * T + t0
            o = i * Wp + j
            for t in range(P):
                D[uintp(d0 + t)] = xpad[uintp(o + toff[t])]


@kernel(inline="always")
def _tile_grid(Ho, Wo, m, nb_max, x):
    """The tiling both passes share, for ``Ho×Wo`` outputs in chunks of ``nb_max`` images:
    ``(tH, tW, P, ld, Wp, xpad, toff)`` — tiles down and across, per image, a full chunk's tile
    columns rounded up to :data:`TILE_ALIGN`, the width of the zero-bordered plane buffer
    ``xpad`` and each tile's offset ``toff[ti·tW + tj] = ti·m·Wp + tj·m`` in it."""
    tH = (Ho + m - 1) // m
    tW = (Wo + m - 1) // m
    P = tH * tW
    ld = -(-nb_max * P // TILE_ALIGN) * TILE_ALIGN
    Wp = tW * m + 2
    xpad = np.zeros((tH * m + 2) * Wp, dtype=x.dtype)
    toff = np.empty(P, dtype=np.intp)
    for ti in range(tH):
        for tj in range(tW):
            toff[ti * tW + tj] = ti * m * Wp + tj * m
    return tH, tW, P, ld, Wp, xpad, toff


@kernel(inline="always")
def _input_transform(xs, n0, nb, C, H, W, padding, BT, a, Wp, toff, xpad, T, D, E, V):
    """(W2) for the ``nb`` images from ``n0``: ``V[ξ·α+ν, c, t] = (Bᵀ d B)[ξ, ν]`` for every channel
    ``c`` and tile column ``t = b·P + ti·tW + tj`` (``V`` is ``(α², C, T)``; ``D``, ``E`` scratch)."""
    z = n0 - n0
    P = toff.size
    for c in range(C):
        for b in range(nb):
            _gather_patches(xs, ((n0 + b) * C + c) * H * W, H, W, padding, a, Wp, toff, xpad, b * P, T, D)
        _apply_rows(BT, D, z, E, z, T, a, a)             # E = Bᵀ d
        _apply_cols(BT, E, V, c * T, C * T, T, a, a)     # V[:, c] = E B


@kernel(inline="always")
def _forward_chunks(x, U, BT, AT, m, bias, padding, lo, hi, nb_max, y):
    """(W2)–(W4) for images ``lo ≤ n < hi`` into ``y (N, F, Ho, Wo)``; ``U`` from
    :func:`transform_weights`.  Inlined into one kernel per ``m`` (below), where ``m`` and the
    matrices are constants: the tile loops then unroll (2-5x faster than with ``m`` a variable)."""
    _, C, H, W = x.shape
    _, F, Ho, Wo = y.shape
    z = lo - lo  # runtime 0: literal arguments would make Numba compile a variant per value
    nt = NO_TRANS + z
    a = m + 2
    a2 = a * a
    tH, tW, P, ld, Wp, xpad, toff = _tile_grid(Ho, Wo, m, nb_max, x)
    xs, ys, us = x.reshape(-1), y.reshape(-1), U.reshape(-1)
    sh = m // 2   # log2(m) for m = 2, 4: tile index j >> sh, position in the tile j & (m − 1)
    D = np.zeros(a2 * ld, dtype=x.dtype)  # columns past nb·P stay 0 (finite, never denormal)
    E = np.empty(a2 * ld, dtype=x.dtype)
    V = np.empty(a2 * C * ld, dtype=x.dtype)
    Mb = np.empty(a2 * F * ld, dtype=x.dtype)
    Q = np.empty(m * a * ld, dtype=x.dtype)
    O = np.empty(m * m * ld, dtype=x.dtype)
    for n0 in range(lo, hi, nb_max):
        nb = min(nb_max, hi - n0)
        T = -(-nb * P // TILE_ALIGN) * TILE_ALIGN if nb == nb_max else nb * P
        _input_transform(xs, n0, nb, C, H, W, padding, BT, a, Wp, toff, xpad, T, D, E, V)   # (W2)
        for k in range(a2):                                  # (W3)
            gemm(nt, nt, F, T, C, us, k * F * C, C, V, k * C * T, T, 0.0, Mb, k * F * T, T)
        for f in range(F):                                   # (W4)
            _rows_strided(AT, Mb, f, F, T, a, Q)
            _apply_cols(AT, Q, O, z, T, T, m, a)
            bf = bias[f]
            for b in range(nb):                              # y[n, f, i, j] = O[(i%m)·m + j%m, tile]
                for i in range(Ho):
                    row = ((n0 + b) * F + f) * Ho * Wo + i * Wo
                    src = (i & (m - 1)) * m * T + b * P + (i >> sh) * tW
                    for j in range(Wo):
                        ys[uintp(row + j)] = O[uintp(src + (j & (m - 1)) * T + (j >> sh))] + bf


@kernel(inline="always")
def _rows_strided(AT, Mb, f, F, T, a, Q):
    """``Q[r·α + ν, t] = Σ_ξ Aᵀ[r, ξ] · M[ξ·α+ν, f, t]``: the first pass of (W4) for filter ``f``
    (``M`` is ``(α², F, T)``, so consecutive ξ·α+ν rows of one filter are ``F·T`` apart)."""
    for r in range(AT.shape[0]):
        for nu in range(a):
            _combine(AT, r, Mb, (nu * F + f) * T, a * F * T, a, Q, (r * a + nu) * T, T)


_BT2, _, _AT2 = MATRICES[2]
_BT4, _, _AT4 = MATRICES[4]


@kernel(nogil=True)
def _forward_slice_f2(x, U, bias, padding, lo, hi, nb_max, y):
    """:func:`_forward_chunks` for F(2×2, 3×3)."""
    _forward_chunks(x, U, _BT2, _AT2, 2, bias, padding, lo, hi, nb_max, y)


@kernel(nogil=True)
def _forward_slice_f4(x, U, bias, padding, lo, hi, nb_max, y):
    """:func:`_forward_chunks` for F(4×4, 3×3)."""
    _forward_chunks(x, U, _BT4, _AT4, 4, bias, padding, lo, hi, nb_max, y)


_SLICES = {2: _forward_slice_f2, 4: _forward_slice_f4}


# ----------------------------------------------------------------------------------------------
# the weight gradient (C3) by the same tiles
# ----------------------------------------------------------------------------------------------
@kernel(inline="always")
def _weight_grad_chunks(x, dy, BT, A, m, padding, lo, hi, nb_max, Mw):
    """(WG1)–(WG3) of :func:`conv2d_backward_weight` for images ``lo ≤ n < hi``, into this unit's
    ``Mw (α², F, C)`` (the first chunk overwrites it).  Inlined per ``m`` as the forward pass."""
    _, C, H, W = x.shape
    _, F, Ho, Wo = dy.shape
    z = lo - lo  # runtime 0: literal arguments would make Numba compile a variant per value
    nt, tr = NO_TRANS + z, TRANS + z
    a = m + 2
    a2 = a * a
    tH, tW, P, ld, Wp, xpad, toff = _tile_grid(Ho, Wo, m, nb_max, x)
    xs, dys, ms = x.reshape(-1), dy.reshape(-1), Mw.reshape(-1)
    D = np.zeros(a2 * ld, dtype=x.dtype)   # columns past nb·P stay 0: their V and Z columns are 0
    E = np.empty(a2 * ld, dtype=x.dtype)
    V = np.empty(a2 * C * ld, dtype=x.dtype)
    Y = np.zeros(m * m * ld, dtype=x.dtype)
    Q = np.empty(a * m * ld, dtype=x.dtype)
    Z = np.empty(a2 * F * ld, dtype=x.dtype)
    zero = x.dtype.type(0)
    for n0 in range(lo, hi, nb_max):
        nb = min(nb_max, hi - n0)
        T = -(-nb * P // TILE_ALIGN) * TILE_ALIGN if nb == nb_max else nb * P
        _input_transform(xs, n0, nb, C, H, W, padding, BT, a, Wp, toff, xpad, T, D, E, V)   # (WG1)
        for f in range(F):                                   # (WG2)
            for r in range(m):                               # Y[r·m + q, tile] = dy[n, f, ti·m + r, tj·m + q], 0 past the edge
                for q in range(m):
                    inside = (Wo - q + m - 1) // m           # tiles tj with tj·m + q < Wo
                    for b in range(nb):
                        for ti in range(tH):
                            i = ti * m + r
                            d0 = (r * m + q) * T + b * P + ti * tW
                            full = inside if i < Ho else 0
                            s0 = ((n0 + b) * F + f) * Ho * Wo + i * Wo + q
                            for tj in range(full):
                                Y[uintp(d0 + tj)] = dys[uintp(s0 + tj * m)]
                            for tj in range(full, tW):
                                Y[uintp(d0 + tj)] = zero
            _apply_rows(A, Y, z, Q, z, T, m, m)              # Q = A Y
            _apply_cols(A, Q, Z, f * T, F * T, T, a, m)      # Z[:, f] = Q Aᵀ
        beta = 0.0 if n0 == lo else 1.0
        for k in range(a2):                                  # (WG3) Mw[k] += Z[k] V[k]ᵀ
            gemm(nt, tr, F, C, T, Z, k * F * T, T, V, k * C * T, T, beta, ms, k * F * C, C)


_A2 = np.ascontiguousarray(_AT2.T)
_A4 = np.ascontiguousarray(_AT4.T)


@kernel(nogil=True)
def _weight_grad_slice_f2(x, dy, padding, lo, hi, nb_max, Mw):
    """:func:`_weight_grad_chunks` for F(2×2, 3×3)."""
    _weight_grad_chunks(x, dy, _BT2, _A2, 2, padding, lo, hi, nb_max, Mw)


@kernel(nogil=True)
def _weight_grad_slice_f4(x, dy, padding, lo, hi, nb_max, Mw):
    """:func:`_weight_grad_chunks` for F(4×4, 3×3)."""
    _weight_grad_chunks(x, dy, _BT4, _A4, 4, padding, lo, hi, nb_max, Mw)


_WEIGHT_GRAD_SLICES = {2: _weight_grad_slice_f2, 4: _weight_grad_slice_f4}


@kernel(parallel=True)
def _untransform_weight_grad(Mw, G, dw):
    """(WG4) ``dw[f, c] = Gᵀ · (Σ_u Mw[u, :, f, c]) · G`` (3×3), units summed in order, in float64."""
    U_, _, F, C = Mw.shape
    a = G.shape[0]
    for f in prange(F):
        M = np.empty((a * a, C))
        for k in range(a * a):
            for c in range(C):
                M[k, c] = Mw[0, k, f, c]
            for u in range(1, U_):
                for c in range(C):
                    M[k, c] += Mw[u, k, f, c]
        tmp = np.zeros((3, a, C))
        for i in range(3):                    # tmp = Gᵀ M
            for xi in range(a):
                g = G[xi, i]
                if g != 0.0:
                    for nu in range(a):
                        for c in range(C):
                            tmp[i, nu, c] += g * M[xi * a + nu, c]
        for c in range(C):                    # dw[f, c] = tmp G
            for i in range(3):
                for j in range(3):
                    s = 0.0
                    for nu in range(a):
                        s += tmp[i, nu, c] * G[nu, j]
                    dw[f, c, i, j] = s


#: the partial sums of (WG3) take α²·F·C values per work unit: at most this many bytes for all
#: units together (the batch is cut into fewer, larger units for wide layers)
PARTIALS_BYTES = 64 * 1024 * 1024


def conv2d_backward_weight(dy, x, padding, m):
    """(C3) and (C4) for a 3×3 stride-1 layer: ``(dw (F, C, 3, 3), db (F,))``.

    The adjoint of (W1)–(W4) with respect to ``w``: a tile's contribution to the loss is
    ``⟨dY_t[f], Aᵀ[(G w[f,c] Gᵀ) ⊙ V_t[c]]A⟩ = ⟨Gᵀ[(A dY_t[f] Aᵀ) ⊙ V_t[c]]G, w[f,c]⟩``, so::

        (WG1) V[c, t]  = Bᵀ d_t[c] B                              (as (W2))
        (WG2) Z[f, t]  = A · dY_t[f] · Aᵀ       (α×α; dY_t the m×m tile of dy, 0 past the edge)
        (WG3) Mw[f, c] = Σ_t Z[f, t] ⊙ V[c, t]   (elementwise: α² GEMMs over the tiles)
        (WG4) dw[f, c] = Gᵀ · Mw[f, c] · G

    ``db[f] = Σ_{n,i,j} dy[n, f, i, j]`` (C4).
    """
    N, C = x.shape[:2]
    _, F, Ho, Wo = dy.shape
    T, nb = chunk_images(N, C, F, -(-Ho // m) * -(-Wo // m), m, x.itemsize)
    return _backward_weight(dy, x, padding, m, T, nb, max(T, PARTIALS_BYTES // ((m + 2) ** 2 * F * C * x.itemsize)))


def _backward_weight(dy, x, padding, m, T, nb, most):
    """:func:`conv2d_backward_weight` with the batch split given: ``T`` threads, chunks of ``nb``
    images, at most ``most`` work units (each keeps an ``(α², F, C)`` partial sum)."""
    C, F = x.shape[1], dy.shape[1]
    bounds = units(T, x.shape[0], nb, most)
    Mw = np.empty((len(bounds), (m + 2) ** 2, F, C), dtype=x.dtype)
    kernel = _WEIGHT_GRAD_SLICES[m]
    run_units(T, bounds, lambda u, lo, hi: kernel(x, dy, padding, lo, hi, nb, Mw[u]))
    dw = np.empty((F, C, 3, 3), dtype=x.dtype)
    _untransform_weight_grad(Mw, MATRICES[m][1], dw)
    return dw, dy.sum(axis=(0, 2, 3))


def chunk_images(N, C, F, P, m, itemsize):
    """``(T, nb)`` threads and images per chunk.  A chunk's ``V`` and ``M`` (α²·(C+F)·nb·P values)
    should stay near :data:`CHUNK_BYTES`, but every chunk also streams all of ``U`` (α²·F·C
    values) through the α² GEMMs, so a chunk has at least ``C·F/(C+F)`` tile columns (``U``
    then costs no more traffic per column than ``V`` and ``M``; ResNet18's 256-channel 7×7
    layer at batch 16: 7.5 ms in one chunk against 40 ms in chunks of one image), and at least
    :data:`MIN_TILE_COLUMNS`."""
    T, _ = plan(N, P)
    per_thread = -(-N // T)
    cols = max(MIN_TILE_COLUMNS, CHUNK_BYTES // ((m + 2) ** 2 * (C + F) * itemsize), C * F // (C + F))
    return T, max(1, min(per_thread, cols // P))


def conv2d_forward(x, w, b, padding, m):
    """(C1) for a 3×3 stride-1 layer as F(m×m, 3×3): ``y (N, F, Ho, Wo)``."""
    N, C, H, W = x.shape
    P = -(-(H + 2 * padding - 2) // m) * -(-(W + 2 * padding - 2) // m)
    T, nb = chunk_images(N, C, w.shape[0], P, m, x.itemsize)
    return _forward(x, w, b, padding, m, T, nb)


def _forward(x, w, b, padding, m, T, nb):
    """:func:`conv2d_forward` with the batch split given: ``T`` slices of chunks of ``nb`` images."""
    N, _, H, W = x.shape
    y = np.empty((N, w.shape[0], H + 2 * padding - 2, W + 2 * padding - 2), dtype=x.dtype)
    U = transform_weights(w, m)
    kernel = _SLICES[m]
    run_units(T, units(T, N, nb), lambda u, lo, hi: kernel(x, U, b, padding, lo, hi, nb, y))
    return y


def flipped_weights(w):
    """``w̃[c, f, p, q] = w[f, c, 2−p, 2−q]``: the weights of the convolution that is (C2)."""
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def conv2d_backward_input(dy, w, padding, m):
    """(C2) for a 3×3 stride-1 layer with ``padding ≤ 2``: ``dx = conv(dy, w̃, 2 − padding)``."""
    zero_bias = np.zeros(w.shape[1], dtype=dy.dtype)
    return conv2d_forward(dy, flipped_weights(w), zero_bias, 2 - padding, m)
