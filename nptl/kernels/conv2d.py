"""Fast conv2d kernels: im2col lowering (Numba, parallel) + one large GEMM (BLAS via NumPy).

The same formulas as :mod:`nptl.kernels.reference` — (C1) forward, (C2) input gradient,
(C3) weight gradient, (C4) bias gradient — computed as matrix products:

    cols[(c,p,q), (n,i,j)] = xp[n, c, i·s+p, j·s+q]            im2col,   (C·KH·KW, N·Ho·Wo)
    Y  = Wm @ cols          Wm = w.reshape(F, C·KH·KW)           (C1)      (F, N·Ho·Wo)
    dW = dYm @ colsᵀ        dYm[f, (n,i,j)] = dy[n,f,i,j]        (C3)
    dcols = Wmᵀ @ dYm;  dx = col2im(dcols)  (scatter-add back)   (C2)

The lowering loops are Numba-compiled and parallel over rows of ``cols`` (im2col) or over
``(n, c)`` planes (col2im), so no two threads write the same element.  The GEMMs go to NumPy's
BLAS.  Functions take contiguous arrays of one float dtype and trust their arguments: checks
live in :mod:`nptl.ops`.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def im2col(x, KH, KW, stride, padding, Ho, Wo):
    """``x (N,C,H,W) -> cols (C·KH·KW, N·Ho·Wo)``, zero where the window reads padding."""
    N, C, H, W = x.shape
    cols = np.empty((C * KH * KW, N * Ho * Wo), dtype=x.dtype)
    for r in prange(C * KH * KW):
        c = r // (KH * KW)
        p = (r // KW) % KH
        q = r % KW
        for n in range(N):
            base = n * Ho * Wo
            for i in range(Ho):
                h = i * stride + p - padding
                row = base + i * Wo
                if h < 0 or h >= H:
                    for j in range(Wo):
                        cols[r, row + j] = 0
                    continue
                for j in range(Wo):
                    v = j * stride + q - padding
                    if v < 0 or v >= W:
                        cols[r, row + j] = 0
                    else:
                        cols[r, row + j] = x[n, c, h, v]
    return cols


@njit(cache=True, parallel=True)
def col2im(dcols, N, C, H, W, KH, KW, stride, padding, Ho, Wo):
    """Adjoint of :func:`im2col`: scatter-add ``dcols (C·KH·KW, N·Ho·Wo)`` into ``(N,C,H,W)``."""
    dx = np.zeros((N, C, H, W), dtype=dcols.dtype)
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        base = n * Ho * Wo
        for p in range(KH):
            for q in range(KW):
                r = (c * KH + p) * KW + q
                for i in range(Ho):
                    h = i * stride + p - padding
                    if h < 0 or h >= H:
                        continue
                    row = base + i * Wo
                    for j in range(Wo):
                        v = j * stride + q - padding
                        if v >= 0 and v < W:
                            dx[n, c, h, v] += dcols[r, row + j]
    return dx


@njit(cache=True, parallel=True)
def _fnm_to_nfm(ym, b, N, F, HW):
    """``(F, N·HW) -> (N, F, HW)`` plus bias: the GEMM result back to NCHW."""
    y = np.empty((N, F, HW), dtype=ym.dtype)
    for nf in prange(N * F):
        n = nf // F
        f = nf % F
        bf = b[f]
        for k in range(HW):
            y[n, f, k] = ym[f, n * HW + k] + bf
    return y


@njit(cache=True, parallel=True)
def _nfm_to_fnm(dy, N, F, HW):
    """``(N, F, HW) -> (F, N·HW)``: dy laid out as the GEMM needs it."""
    out = np.empty((F, N * HW), dtype=dy.dtype)
    for nf in prange(N * F):
        n = nf // F
        f = nf % F
        for k in range(HW):
            out[f, n * HW + k] = dy[n, f, k]
    return out


def conv2d_forward(x, w, b, stride, padding):
    """(C1) via im2col + GEMM. Returns ``(y, cols)``; ``cols`` can be reused by the weight grad."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho = (H + 2 * padding - KH) // stride + 1
    Wo = (W + 2 * padding - KW) // stride + 1
    cols = im2col(x, KH, KW, stride, padding, Ho, Wo)
    ym = w.reshape(F, C * KH * KW) @ cols
    y = _fnm_to_nfm(ym, b, N, F, Ho * Wo).reshape(N, F, Ho, Wo)
    return y, cols


def dy_matrix(dy):
    """``dy (N,F,Ho,Wo) -> dYm (F, N·Ho·Wo)``, shared by both backward kernels."""
    N, F, Ho, Wo = dy.shape
    return _nfm_to_fnm(dy.reshape(N, F, Ho * Wo), N, F, Ho * Wo)


def conv2d_backward_input(dym, w, x_shape, stride, padding, Ho, Wo):
    """(C2): ``dx = col2im(Wmᵀ @ dYm)``."""
    N, C, H, W = x_shape
    F, _, KH, KW = w.shape
    dcols = w.reshape(F, C * KH * KW).T @ dym
    return col2im(dcols, N, C, H, W, KH, KW, stride, padding, Ho, Wo)


def conv2d_backward_weight(dym, cols, w_shape):
    """(C3) and (C4): ``dw = dYm @ colsᵀ`` reshaped to ``(F,C,KH,KW)``, ``db = Σ dYm`` over columns."""
    dw = (dym @ cols.T).reshape(w_shape)
    db = dym.sum(axis=1)
    return dw, db
