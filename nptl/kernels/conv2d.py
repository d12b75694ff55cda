"""Fast conv2d kernels: batch-parallel im2col + single-threaded GEMM per thread (Numba + BLAS).

The formulas (C1) forward, (C2) ``dx``, (C3) ``dw``, (C4) ``db`` of
:mod:`nptl.kernels.reference` (stride ``s``, zero padding ``P``, ``xp`` = x zero-padded by P),
computed as matrix products over a *chunk* of ``nb`` consecutive images ``n0 … n0+nb−1``
(``L = Ho·Wo``, ``R = C·KH·KW``, ``Wm = w.reshape(F, R)``)::

    cols[(c,p,q), b·L + i·Wo + j] = xp[n0+b, c, i·s+p, j·s+q]      im2col    (R, nb·L)
    Yc  = Wm @ cols ;  y[n0+b, f] = Yc[f, b·L:(b+1)·L] + b[f]        (C1)      (F, nb·L)
    dYc[f, b·L + k] = dy[n0+b, f, k]                                 gather    (F, nb·L)
    dWᵀ += cols @ dYcᵀ ;  db += Σ_k dYc[:, k]                        (C3) (C4) (R, F)
      (dW += dYc @ colsᵀ, (F, R), from DW_DIRECT_MIN_FILTERS filters on: no transpose at the end)
    dcols = Wmᵀ @ dYc ;  dx[n0+b] = col2im(dcols)  (scatter-add)     (C2)      (R, nb·L)

Threading.  Each pass is a serial ``nogil`` Numba kernel over a unit of the batch; ``T``
threads (the caller plus a persistent pool of Python threads, ``T`` = Numba's thread count) take
units of whole chunks from a shared counter (:mod:`nptl.kernels.schedule`).  A unit is walked chunk by chunk with
private buffers and calls a *single-threaded* BLAS GEMM (:mod:`nptl.kernels.conv2d_blas`) on
each chunk, so no BLAS threads spin against Numba's.  Threads share only read-only inputs,
disjoint rows of ``y``/``dx``, and write per-unit ``dW``/``db`` partials that are summed at
the end in a fixed order (results do not depend on scheduling).  The chunk size ``nb`` makes
the GEMMs wide enough (``nb·L ≈ 512`` columns, :data:`nptl.kernels.schedule.CHUNK_COLUMNS`) for small images while
keeping the per-thread buffers near L2 size (measured per shape on the suite; the split and
the thread pool are :mod:`nptl.kernels.schedule`); with ``nb = 1`` the GEMM writes straight into ``y[n]`` and reads ``dy[n]`` in place (no
transposes).  A 1×1, stride-1, unpadded convolution uses ``x[n]`` itself as ``cols``.
When dx and dW are both wanted, one fused pass (:func:`_backward_slice`, reached as
:func:`conv2d_backward`) gathers each dy chunk once for both GEMMs and reuses the
``cols`` buffer for ``dcols``.  Outputs narrower than :data:`SMALL_WO` are im2col'd/col2im'd
through a per-geometry tap table (one gather per row and image) instead of row by row.

3×3 stride-1 layers with enough channels run (C1), for padded layers (C2), and with 64
channels and filters (C3) as Winograd F(4×4, 3×3) instead (:mod:`nptl.kernels.conv2d_winograd`;
the entry points below ask its :func:`~nptl.kernels.conv2d_winograd.tile_size` /
``input_grad_tile_size`` / ``weight_grad_tile_size``, the one place that decides).  An unpadded
layer whose weight gradient is Winograd still takes the fused pass when dx is wanted: it shares
one im2col between (C2) and (C3).

Functions take contiguous arrays of one float dtype and trust their arguments: checks live in
:mod:`nptl.ops`.  Without a bindable OpenBLAS (``conv2d_blas.AVAILABLE`` False) the same
formulas run as whole-batch im2col + NumPy matmul (the ``_np_*`` functions below).
"""
from __future__ import annotations

import numpy as np
from numba import prange, uintp

from . import conv2d_blas as _blas
from . import conv2d_winograd as _winograd
from .conv2d_blas import NO_TRANS, TRANS, gemm
from .jit import kernel
from .reference import conv_output_size
from .schedule import plan, run_units, units

# ----------------------------------------------------------------------------------------------
# chunk helpers (serial; called inside a thread's chunk loop)
# ----------------------------------------------------------------------------------------------
# Hot loops index flat views with ``uintp`` offsets: Numba adds a negative-index wraparound
# branch to every signed index, which blocks vectorisation (3-4x slower copies).
#: Output rows narrower than this are copied through a tap table (:func:`_tap_table`) instead of
#: row by row: with Wo = 3 the per-row bookkeeping costs more than the three copies.
SMALL_WO = 8


@kernel
def _tap_table(H, W, KH, KW, stride, padding, Ho, Wo):
    """``tab[p·KW+q, i·Wo+j]`` = offset of ``xp[i·s+p, j·s+q]`` in an unpadded ``H×W`` plane,
    or −1 where that tap reads padding."""
    tab = np.empty((KH * KW, Ho * Wo), dtype=np.int64)
    for p in range(KH):
        for q in range(KW):
            for i in range(Ho):
                h = i * stride + p - padding
                for j in range(Wo):
                    v = j * stride + q - padding
                    inside = h >= 0 and h < H and v >= 0 and v < W
                    tab[p * KW + q, i * Wo + j] = h * W + v if inside else -1
    return tab


@kernel
def _im2col_chunk_small(x, n0, nb, KH, KW, stride, padding, Ho, Wo, cols):
    """:func:`_im2col_chunk` for narrow outputs: one gather of ``Ho·Wo`` values per (row, image)."""
    _, C, H, W = x.shape
    L = Ho * Wo
    T = KH * KW
    ld = cols.shape[1]
    xs = x.reshape(-1)
    cs = cols.reshape(-1)
    tab = _tap_table(H, W, KH, KW, stride, padding, Ho, Wo)
    ts = tab.reshape(-1)
    zero = cols.dtype.type(0)
    for c in range(C):
        for t in range(T):
            r = c * T + t
            for b in range(nb):
                src = ((n0 + b) * C + c) * H * W
                d = r * ld + b * L
                for k in range(L):
                    o = ts[uintp(t * L + k)]
                    cs[uintp(d + k)] = xs[uintp(src + o)] if o >= 0 else zero


@kernel
def _col2im_chunk_small(dcols, n0, nb, KH, KW, stride, padding, Ho, Wo, dx):
    """:func:`_col2im_chunk` for narrow outputs, through the tap table."""
    _, C, H, W = dx.shape
    L = Ho * Wo
    T = KH * KW
    ld = dcols.shape[1]
    ds = dcols.reshape(-1)
    xs = dx.reshape(-1)
    tab = _tap_table(H, W, KH, KW, stride, padding, Ho, Wo)
    ts = tab.reshape(-1)
    for b in range(nb):
        for c in range(C):
            dst = ((n0 + b) * C + c) * H * W
            for t in range(T):
                d = (c * T + t) * ld + b * L
                for k in range(L):
                    o = ts[uintp(t * L + k)]
                    if o >= 0:
                        xs[uintp(dst + o)] += ds[uintp(d + k)]


@kernel
def _im2col_chunk_phases(x, n0, nb, KH, KW, stride, padding, Ho, Wo, cols):
    """:func:`_im2col_chunk` for strided layers with many taps per stride phase: per image and
    channel, the padded plane is first split into its ``s²`` phases
    ``ph[a, e, h', w'] = xp[s·h'+a, s·w'+e]``, after which every row of cols is a contiguous run
    ``cols[(c,p,q), b·L + i·Wo + j] = ph[p mod s, q mod s, i + p div s, j + q div s]`` — no
    strided reads, no edge tests.  (ResNet's 7×7 stride-2 stem: 0.59 against 1.13 ms per 8
    images on one Zen 4 core; a 3×3 stride-2 layer, 2.25 taps per phase, loses: 1.32 against 0.86.)"""
    _, C, H, W = x.shape
    s = stride
    L = Ho * Wo
    ld = cols.shape[1]
    Hq = Ho + (KH - 1) // s
    Wq = Wo + (KW - 1) // s
    ph = np.empty(s * s * Hq * Wq, dtype=x.dtype)
    xs = x.reshape(-1)
    cs = cols.reshape(-1)
    zero = x.dtype.type(0)
    for b in range(nb):
        n = n0 + b
        for c in range(C):
            for a in range(s):
                for hq in range(Hq):
                    h = s * hq + a - padding
                    src = ((n * C + c) * H + h) * W
                    for e in range(s):
                        d0 = ((a * s + e) * Hq + hq) * Wq
                        if h < 0 or h >= H:
                            for wq in range(Wq):
                                ph[uintp(d0 + wq)] = zero
                            continue
                        for wq in range(Wq):
                            v = s * wq + e - padding
                            ph[uintp(d0 + wq)] = xs[uintp(src + v)] if v >= 0 and v < W else zero
            for p in range(KH):
                for q in range(KW):
                    r = (c * KH + p) * KW + q
                    base = (((p % s) * s + q % s) * Hq + p // s) * Wq + q // s
                    for i in range(Ho):
                        d = r * ld + b * L + i * Wo
                        s0 = base + i * Wq
                        for j in range(Wo):
                            cs[uintp(d + j)] = ph[uintp(s0 + j)]


#: strided layers with at least this many taps per stride phase (``KH·KW ≥ 4·s²``) are
#: im2col'd through their phases (:func:`_im2col_chunk_phases`)
PHASE_TAPS = 4


@kernel
def _im2col_chunk(x, n0, nb, KH, KW, stride, padding, Ho, Wo, cols):
    """``cols[(c,p,q), b·L + i·Wo + j] = xp[n0+b, c, i·s+p, j·s+q]`` for ``b < nb``."""
    if Wo < SMALL_WO:
        _im2col_chunk_small(x, n0, nb, KH, KW, stride, padding, Ho, Wo, cols)
        return
    if stride > 1 and KH * KW >= PHASE_TAPS * stride * stride:
        _im2col_chunk_phases(x, n0, nb, KH, KW, stride, padding, Ho, Wo, cols)
        return
    _, C, H, W = x.shape
    L = Ho * Wo
    ld = cols.shape[1]
    xs = x.reshape(-1)
    cs = cols.reshape(-1)
    zero = cols.dtype.type(0)
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                r = (c * KH + p) * KW + q
                # columns j whose tap w = j·s + q − P lies inside the image
                j_lo = min(Wo, max(0, (padding - q + stride - 1) // stride))
                j_hi = max(j_lo, min(Wo, (W - 1 + padding - q) // stride + 1))
                off = q - padding
                for b in range(nb):
                    n = n0 + b
                    for i in range(Ho):
                        h = i * stride + p - padding
                        d = r * ld + b * L + i * Wo
                        if h < 0 or h >= H:
                            for j in range(Wo):
                                cs[uintp(d + j)] = zero
                            continue
                        src = ((n * C + c) * H + h) * W + off
                        for j in range(j_lo):
                            cs[uintp(d + j)] = zero
                        if stride == 1:
                            for j in range(j_lo, j_hi):
                                cs[uintp(d + j)] = xs[uintp(src + j)]
                        else:
                            for j in range(j_lo, j_hi):
                                cs[uintp(d + j)] = xs[uintp(src + j * stride)]
                        for j in range(j_hi, Wo):
                            cs[uintp(d + j)] = zero


@kernel
def _col2im_chunk(dcols, n0, nb, KH, KW, stride, padding, Ho, Wo, dx):
    """Adjoint of :func:`_im2col_chunk`: ``dx[n0+b, c, i·s+p−P, j·s+q−P] += dcols[(c,p,q), b·L+i·Wo+j]``."""
    if Wo < SMALL_WO:
        _col2im_chunk_small(dcols, n0, nb, KH, KW, stride, padding, Ho, Wo, dx)
        return
    _, C, H, W = dx.shape
    L = Ho * Wo
    ld = dcols.shape[1]
    ds = dcols.reshape(-1)
    xs = dx.reshape(-1)
    for b in range(nb):
        n = n0 + b
        for c in range(C):
            for p in range(KH):
                for q in range(KW):
                    r = (c * KH + p) * KW + q
                    j_lo = min(Wo, max(0, (padding - q + stride - 1) // stride))
                    j_hi = max(j_lo, min(Wo, (W - 1 + padding - q) // stride + 1))
                    off = q - padding
                    for i in range(Ho):
                        h = i * stride + p - padding
                        if h < 0 or h >= H:
                            continue
                        d = r * ld + b * L + i * Wo
                        dst = ((n * C + c) * H + h) * W + off
                        if stride == 1:
                            for j in range(j_lo, j_hi):
                                xs[uintp(dst + j)] += ds[uintp(d + j)]
                        else:
                            for j in range(j_lo, j_hi):
                                xs[uintp(dst + j * stride)] += ds[uintp(d + j)]


@kernel
def _gather_dy(dy3, n0, nb, out):
    """``out[f, b·L + k] = dy[n0+b, f, k]``: a chunk of dy as one (F, nb·L) matrix."""
    _, F, L = dy3.shape
    ld = out.shape[1]
    src = dy3.reshape(-1)
    dst = out.reshape(-1)
    for b in range(nb):
        for f in range(F):
            s0 = ((n0 + b) * F + f) * L
            d0 = f * ld + b * L
            for k in range(L):
                dst[uintp(d0 + k)] = src[uintp(s0 + k)]


@kernel
def _scatter_y(out, bias, n0, nb, y3):
    """``y[n0+b, f, k] = out[f, b·L + k] + bias[f]``: a chunk's GEMM result to NCHW, plus bias."""
    _, F, L = y3.shape
    ld = out.shape[1]
    src = out.reshape(-1)
    dst = y3.reshape(-1)
    for b in range(nb):
        for f in range(F):
            bf = bias[f]
            s0 = f * ld + b * L
            d0 = ((n0 + b) * F + f) * L
            for k in range(L):
                dst[uintp(d0 + k)] = src[uintp(s0 + k)] + bf


# ----------------------------------------------------------------------------------------------
# the three passes: a serial (nogil) kernel for images [lo, hi), run by T threads
# ----------------------------------------------------------------------------------------------
@kernel(nogil=True)
def _forward_slice(x, w, bias, stride, padding, lo, hi, nb_max, y):
    """(C1) for images ``lo ≤ n < hi`` into ``y (N, F, Ho, Wo)``."""
    _, C, H, W = x.shape
    z = lo - lo  # runtime 0: literal arguments would make Numba compile a variant per value
    nt, one = NO_TRANS + z, z + 1
    F, _, KH, KW = w.shape
    Ho, Wo = y.shape[2], y.shape[3]
    R = C * KH * KW
    L = Ho * Wo
    ld = nb_max * L
    pointwise = KH == 1 and KW == 1 and stride == 1 and padding == 0
    xs, ws, ys = x.reshape(-1), w.reshape(-1), y.reshape(-1)
    cols = np.empty((R, ld), dtype=x.dtype)
    out = np.empty((F, ld if nb_max > 1 else 1), dtype=x.dtype)
    cs, os_ = cols.reshape(-1), out.reshape(-1)
    for n0 in range(lo, hi, nb_max):
        nb = min(nb_max, hi - n0)
        if nb == 1:  # y[n0] filled with the bias, then the GEMM adds onto it (beta 1: one pass
            for f in range(F):  # over y fewer than a zeroing GEMM followed by a bias pass)
                bf = bias[f]
                d0 = (n0 * F + f) * L
                for k in range(L):
                    ys[uintp(d0 + k)] = bf
            if pointwise:
                gemm(nt, nt, F, L, R, ws, z, R, xs, n0 * C * L, L, 1.0, ys, n0 * F * L, L)
            else:
                _im2col_chunk(x, n0, one, KH, KW, stride, padding, Ho, Wo, cols)
                gemm(nt, nt, F, L, R, ws, z, R, cs, z, ld, 1.0, ys, n0 * F * L, L)
        else:        # nb images in one GEMM, then scattered to NCHW with the bias
            _im2col_chunk(x, n0, nb, KH, KW, stride, padding, Ho, Wo, cols)
            gemm(nt, nt, F, nb * L, R, ws, z, R, cs, z, ld, 0.0, os_, z, ld)
            _scatter_y(out, bias, n0, nb, y.reshape(y.shape[0], F, L))


@kernel(nogil=True)
def _backward_input_slice(dy, w, stride, padding, lo, hi, nb_max, dx):
    """(C2) for images ``lo ≤ n < hi`` into ``dx`` (zeroed by the caller)."""
    _, F, Ho, Wo = dy.shape
    z = lo - lo  # runtime 0: literal arguments would make Numba compile a variant per value
    nt, tr = NO_TRANS + z, TRANS + z
    _, C, KH, KW = w.shape
    R = C * KH * KW
    L = Ho * Wo
    ld = nb_max * L
    pointwise = KH == 1 and KW == 1 and stride == 1 and padding == 0
    dys, ws, dxs = dy.reshape(-1), w.reshape(-1), dx.reshape(-1)
    dy3 = dy.reshape(dy.shape[0], F, L)
    dcols = np.empty((R, ld), dtype=dy.dtype)
    dyc = np.empty((F, ld if nb_max > 1 else 1), dtype=dy.dtype)
    dcs, dycs = dcols.reshape(-1), dyc.reshape(-1)
    for n0 in range(lo, hi, nb_max):
        nb = min(nb_max, hi - n0)
        if nb == 1:
            if pointwise:  # dx[n0] = Wmᵀ @ dy[n0]
                gemm(tr, nt, R, L, F, ws, z, R, dys, n0 * F * L, L, 0.0, dxs, n0 * C * L, L)
                continue
            gemm(tr, nt, R, L, F, ws, z, R, dys, n0 * F * L, L, 0.0, dcs, z, ld)
        else:
            _gather_dy(dy3, n0, nb, dyc)
            gemm(tr, nt, R, nb * L, F, ws, z, R, dycs, z, ld, 0.0, dcs, z, ld)
        _col2im_chunk(dcols, n0, nb, KH, KW, stride, padding, Ho, Wo, dx)


@kernel(nogil=True)
def _accumulate_db(dys, n0, nb, F, L, dbs):
    """(C4) partial: ``db[f, k] += dy[n0+b, f, k]`` for ``b < nb`` (flat views; reduced over k by
    the caller, so this loop vectorises)."""
    for b in range(nb):
        for f in range(F):
            s0 = ((n0 + b) * F + f) * L
            for k in range(L):
                dbs[uintp(f * L + k)] += dys[uintp(s0 + k)]


@kernel(inline="always")
def _dw_gemm(direct, first, R, F, K, cs, c_off, ldc, ds, d_off, ldd, dws):
    """(C3) for one chunk of ``K`` columns: ``dWᵀ (R, F) += cols @ dYcᵀ``, or with ``direct``
    ``dW (F, R) += dYc @ colsᵀ``; the ``first`` chunk of a unit overwrites (beta 0), so the
    partials need no zeroing.  ``dWᵀ`` is the faster product with few filters (OpenBLAS on one
    Zen 4 core, seed-cnn-2's shapes: 92 against 76 GFLOP/s) but must be transposed at the end,
    which costs more than the GEMM gains from ~256 filters on (ResNet18's 512×4608 dW:
    16 ms to transpose, both orientations 97 GFLOP/s)."""
    z = K - K
    nt, tr = NO_TRANS + z, TRANS + z
    beta = 0.0 if first else 1.0
    if direct:
        gemm(nt, tr, F, R, K, ds, d_off, ldd, cs, c_off, ldc, beta, dws, z, R)
    else:
        gemm(nt, tr, R, F, K, cs, c_off, ldc, ds, d_off, ldd, beta, dws, z, F)


@kernel(nogil=True)
def _backward_weight_slice(dy, x, KH, KW, stride, padding, lo, hi, nb_max, direct, dw, db):
    """(C3), (C4) for images ``lo ≤ n < hi`` into this unit's partial ``dw`` — ``dW (F, R)``
    with ``direct``, else ``dWᵀ (R, F)`` (:func:`_dw_gemm`) — and ``db (F, L)`` (summed
    elementwise over images, so the loop vectorises; reduced by the caller)."""
    _, F, Ho, Wo = dy.shape
    z = lo - lo  # runtime 0: literal arguments would make Numba compile a variant per value
    one = z + 1
    C = x.shape[1]
    R = C * KH * KW
    L = Ho * Wo
    ld = nb_max * L
    pointwise = KH == 1 and KW == 1 and stride == 1 and padding == 0
    dys, xs, dws, dbs = dy.reshape(-1), x.reshape(-1), dw.reshape(-1), db.reshape(-1)
    dy3 = dy.reshape(dy.shape[0], F, L)
    cols = np.empty((R, ld), dtype=dy.dtype)
    dyc = np.empty((F, ld if nb_max > 1 else 1), dtype=dy.dtype)
    cs, dycs = cols.reshape(-1), dyc.reshape(-1)
    for n0 in range(lo, hi, nb_max):
        nb = min(nb_max, hi - n0)
        first = n0 == lo
        _accumulate_db(dys, n0, nb, F, L, dbs)
        if nb == 1:  # cols of image n0 against dy[n0] in place
            if pointwise:
                _dw_gemm(direct, first, R, F, L, xs, n0 * C * L, L, dys, n0 * F * L, L, dws)
            else:
                _im2col_chunk(x, n0, one, KH, KW, stride, padding, Ho, Wo, cols)
                _dw_gemm(direct, first, R, F, L, cs, z, ld, dys, n0 * F * L, L, dws)
        else:
            _gather_dy(dy3, n0, nb, dyc)
            _im2col_chunk(x, n0, nb, KH, KW, stride, padding, Ho, Wo, cols)
            _dw_gemm(direct, first, R, F, nb * L, cs, z, ld, dycs, z, ld, dws)


@kernel(nogil=True)
def _backward_slice(dy, x, w, stride, padding, lo, hi, nb_max, direct, dw, db, dx):
    """(C2), (C3), (C4) in one pass over the chunks of images ``lo ≤ n < hi``: per chunk, dy
    is gathered once and feeds both GEMMs (the (C3) partial of :func:`_dw_gemm`, then
    ``dcols = Wmᵀ @ dYc`` into the same buffer ``cols`` held a moment before) and the col2im,
    while it is in cache.  ``dw``/``db`` as in :func:`_backward_weight_slice`; ``dx`` zeroed
    by the caller."""
    _, F, Ho, Wo = dy.shape
    z = lo - lo  # runtime 0: literal arguments would make Numba compile a variant per value
    nt, tr, one = NO_TRANS + z, TRANS + z, z + 1
    _, C, KH, KW = w.shape
    R = C * KH * KW
    L = Ho * Wo
    ld = nb_max * L
    pointwise = KH == 1 and KW == 1 and stride == 1 and padding == 0
    dys, xs, ws = dy.reshape(-1), x.reshape(-1), w.reshape(-1)
    dws, dbs, dxs = dw.reshape(-1), db.reshape(-1), dx.reshape(-1)
    dy3 = dy.reshape(dy.shape[0], F, L)
    cols = np.empty((R, ld), dtype=dy.dtype)
    dyc = np.empty((F, ld if nb_max > 1 else 1), dtype=dy.dtype)
    cs, dycs = cols.reshape(-1), dyc.reshape(-1)
    for n0 in range(lo, hi, nb_max):
        nb = min(nb_max, hi - n0)
        first = n0 == lo
        _accumulate_db(dys, n0, nb, F, L, dbs)
        if nb == 1:
            if pointwise:  # (C3) from x[n0], dy[n0] in place;  dx[n0] = Wmᵀ @ dy[n0]
                _dw_gemm(direct, first, R, F, L, xs, n0 * C * L, L, dys, n0 * F * L, L, dws)
                gemm(tr, nt, R, L, F, ws, z, R, dys, n0 * F * L, L, 0.0, dxs, n0 * C * L, L)
                continue
            _im2col_chunk(x, n0, one, KH, KW, stride, padding, Ho, Wo, cols)
            _dw_gemm(direct, first, R, F, L, cs, z, ld, dys, n0 * F * L, L, dws)
            gemm(tr, nt, R, L, F, ws, z, R, dys, n0 * F * L, L, 0.0, cs, z, ld)
        else:
            _gather_dy(dy3, n0, nb, dyc)
            _im2col_chunk(x, n0, nb, KH, KW, stride, padding, Ho, Wo, cols)
            _dw_gemm(direct, first, R, F, nb * L, cs, z, ld, dycs, z, ld, dws)
            gemm(tr, nt, R, nb * L, F, ws, z, R, dycs, z, ld, 0.0, cs, z, ld)
        _col2im_chunk(cols, n0, nb, KH, KW, stride, padding, Ho, Wo, dx)


def _forward(x, w, bias, stride, padding, Ho, Wo, T, nb_max):
    y = np.empty((x.shape[0], w.shape[0], Ho, Wo), dtype=x.dtype)
    run_units(T, units(T, x.shape[0], nb_max),
              lambda u, lo, hi: _forward_slice(x, w, bias, stride, padding, lo, hi, nb_max, y))
    return y


def _backward_input(dy, w, H, W, stride, padding, T, nb_max):
    dx = np.zeros((dy.shape[0], w.shape[1], H, W), dtype=dy.dtype)
    run_units(T, units(T, dy.shape[0], nb_max),
              lambda u, lo, hi: _backward_input_slice(dy, w, stride, padding, lo, hi, nb_max, dx))
    return dx


#: from this many filters on, the weight-gradient GEMMs write ``dW (F, R)`` itself (see :func:`_dw_gemm`)
DW_DIRECT_MIN_FILTERS = 256


def _weight_partials(bounds, F, R, Ho, Wo, dtype):
    """Per-unit partial sums ``(direct, dw, db)``: ``dw (units, F, R)`` when ``direct`` else
    ``(units, R, F)``, filled by each unit's first GEMM; ``db (units, F, Ho·Wo)`` zeroed."""
    direct = F >= DW_DIRECT_MIN_FILTERS
    dwp = np.empty((len(bounds), F, R) if direct else (len(bounds), R, F), dtype=dtype)
    return direct, dwp, np.zeros((len(bounds), F, Ho * Wo), dtype=dtype)


def _reduce_partials(direct, dwp, dbp, w_shape):
    """``(dw (F, C, KH, KW), db (F,))`` from the partials, summed in unit order (results do not
    depend on which thread ran which unit)."""
    if direct:
        dw = dwp[0] if len(dwp) == 1 else _sum_units(dwp)
    else:
        dw = np.ascontiguousarray((dwp[0] if len(dwp) == 1 else dwp.sum(axis=0)).T)
    return dw.reshape(w_shape), dbp.sum(axis=(0, 2))


@kernel(parallel=True)
def _sum_units(parts):
    """``Σ_u parts[u]`` over the first axis, in order ``u = 0, 1, …``, rows in parallel (ResNet18's
    last layers sum 9 MB partials)."""
    U, F, R = parts.shape
    out = np.empty((F, R), dtype=parts.dtype)
    for f in prange(F):
        for r in range(R):
            out[f, r] = parts[0, f, r]
        for u in range(1, U):
            for r in range(R):
                out[f, r] += parts[u, f, r]
    return out


def _backward_weight(dy, x, KH, KW, stride, padding, T, nb_max):
    N, F, Ho, Wo = dy.shape
    C = x.shape[1]
    bounds = units(T, N, nb_max)
    direct, dwp, dbp = _weight_partials(bounds, F, C * KH * KW, Ho, Wo, dy.dtype)
    run_units(T, bounds, lambda u, lo, hi: _backward_weight_slice(dy, x, KH, KW, stride, padding, lo, hi,
                                                                  nb_max, direct, dwp[u], dbp[u]))
    return _reduce_partials(direct, dwp, dbp, (F, C, KH, KW))


def _backward(dy, x, w, stride, padding, T, nb_max):
    """``(dx, dw, db)`` from one fused pass (:func:`_backward_slice`)."""
    N, F, Ho, Wo = dy.shape
    _, C, KH, KW = w.shape
    bounds = units(T, N, nb_max)
    direct, dwp, dbp = _weight_partials(bounds, F, C * KH * KW, Ho, Wo, dy.dtype)
    dx = np.zeros(x.shape, dtype=dy.dtype)
    run_units(T, bounds, lambda u, lo, hi: _backward_slice(dy, x, w, stride, padding, lo, hi, nb_max,
                                                           direct, dwp[u], dbp[u], dx))
    return (dx,) + _reduce_partials(direct, dwp, dbp, w.shape)


# ----------------------------------------------------------------------------------------------
# entry points (used by nptl.ops and nptl.layers.conv)
# ----------------------------------------------------------------------------------------------
def _split(N, C, F, KH, KW, Ho, Wo, stride, padding, itemsize):
    """``(T, nb)`` for this layer's passes (:func:`nptl.kernels.schedule.plan`)."""
    pointwise = KH == 1 and KW == 1 and stride == 1 and padding == 0
    return plan(N, Ho * Wo, C * KH * KW, itemsize, pointwise, F)


def conv2d_forward(x, w, b, stride, padding):
    """(C1): ``y (N, F, Ho, Wo)``."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho, Wo = conv_output_size(H, KH, stride, padding), conv_output_size(W, KW, stride, padding)
    if not _blas.AVAILABLE:
        return _np_forward(x, w, b, stride, padding, Ho, Wo)
    m = _winograd.tile_size(N, C, F, Ho, Wo, KH, KW, stride)
    if m:
        return _winograd.conv2d_forward(x, w, b, padding, m)
    T, nb = _split(N, C, F, KH, KW, Ho, Wo, stride, padding, x.itemsize)
    return _forward(x, w, b, stride, padding, Ho, Wo, T, nb)


def conv2d_backward_input(dy, w, x_shape, stride, padding):
    """(C2): ``dx (N, C, H, W)`` from ``dy (N, F, Ho, Wo)``."""
    N, C, H, W = x_shape
    if not _blas.AVAILABLE:
        return _np_backward_input(dy, w, x_shape, stride, padding)
    m = _winograd.input_grad_tile_size(N, C, w.shape[0], H, W, w.shape[2], w.shape[3], stride, padding)
    if m:
        return _winograd.conv2d_backward_input(dy, w, padding, m)
    T, nb = _split(N, C, w.shape[0], w.shape[2], w.shape[3], dy.shape[2], dy.shape[3], stride, padding,
                   dy.itemsize)
    return _backward_input(dy, w, H, W, stride, padding, T, nb)


def conv2d_backward_weight(dy, x, w_shape, stride, padding):
    """(C3) and (C4): ``(dw (F, C, KH, KW), db (F,))`` — for a layer whose input gradient is
    not wanted (the lowest trainable layer)."""
    KH, KW = w_shape[2], w_shape[3]
    if not _blas.AVAILABLE:
        return _np_backward_weight(dy, x, w_shape, stride, padding)
    m = _winograd.weight_grad_tile_size(x.shape[0], x.shape[1], dy.shape[1], dy.shape[2], dy.shape[3], KH, KW,
                                        stride)
    if m:
        return _winograd.conv2d_backward_weight(dy, x, padding, m)
    T, nb = _split(x.shape[0], x.shape[1], w_shape[0], KH, KW, dy.shape[2], dy.shape[3], stride, padding,
                   dy.itemsize)
    return _backward_weight(dy, x, KH, KW, stride, padding, T, nb)


def conv2d_backward(dy, x, w, stride, padding):
    """(C2), (C3) and (C4) in one pass over the batch: ``(dx (N, C, H, W), dw (F, C, KH, KW),
    db (F,))`` — cheaper than :func:`conv2d_backward_input` plus :func:`conv2d_backward_weight`
    (one gather of dy per chunk, one dispatch)."""
    KH, KW = w.shape[2], w.shape[3]
    if not _blas.AVAILABLE:
        dw, db = _np_backward_weight(dy, x, w.shape, stride, padding)
        return _np_backward_input(dy, w, x.shape, stride, padding), dw, db
    N, C, H, W = x.shape
    if _winograd.input_grad_tile_size(N, C, w.shape[0], H, W, KH, KW, stride, padding):
        return conv2d_backward_input(dy, w, x.shape, stride, padding), *conv2d_backward_weight(
            dy, x, w.shape, stride, padding)
    T, nb = _split(N, C, w.shape[0], KH, KW, dy.shape[2], dy.shape[3], stride, padding, dy.itemsize)
    return _backward(dy, x, w, stride, padding, T, nb)


# ----------------------------------------------------------------------------------------------
# fallback without a bindable BLAS: whole-batch im2col + NumPy matmul
# ----------------------------------------------------------------------------------------------
@kernel(parallel=True)
def _np_im2col(x, KH, KW, stride, padding, Ho, Wo):
    """``x (N,C,H,W) -> cols (N, C·KH·KW, Ho·Wo)``."""
    N = x.shape[0]
    C = x.shape[1]
    cols = np.empty((N, C * KH * KW, Ho * Wo), dtype=x.dtype)
    for n in prange(N):
        _im2col_chunk(x, n, 1, KH, KW, stride, padding, Ho, Wo, cols[n])
    return cols


@kernel(parallel=True)
def _np_col2im(dcols, C, H, W, KH, KW, stride, padding, Ho, Wo):
    N = dcols.shape[0]
    dx = np.zeros((N, C, H, W), dtype=dcols.dtype)
    for n in prange(N):
        _col2im_chunk(dcols[n], 0, 1, KH, KW, stride, padding, Ho, Wo, dx[n:n + 1])
    return dx


def _np_forward(x, w, b, stride, padding, Ho, Wo):
    F, C, KH, KW = w.shape
    cols = _np_im2col(x, KH, KW, stride, padding, Ho, Wo)
    y = np.matmul(w.reshape(F, -1), cols) + b[:, None]
    return y.reshape(x.shape[0], F, Ho, Wo)


def _np_backward_input(dy, w, x_shape, stride, padding):
    N, C, H, W = x_shape
    F, _, KH, KW = w.shape
    Ho, Wo = dy.shape[2:]
    dcols = np.matmul(w.reshape(F, -1).T, dy.reshape(N, F, Ho * Wo))
    return _np_col2im(np.ascontiguousarray(dcols), C, H, W, KH, KW, stride, padding, Ho, Wo)


def _np_backward_weight(dy, x, w_shape, stride, padding):
    N, F, Ho, Wo = dy.shape
    KH, KW = w_shape[2], w_shape[3]
    cols = _np_im2col(x, KH, KW, stride, padding, Ho, Wo)
    dym = dy.reshape(N, F, Ho * Wo)
    dw = np.einsum("nfk,nrk->fr", dym, cols, optimize=True).reshape(w_shape)
    return dw, dym.sum(axis=(0, 2))
