"""Fast pooling kernels (Numba, parallel over ``(n, c)`` planes).

Same formulas as :mod:`nptl.kernels.reference`: (P1) max, (P2) its gradient routed to the
first maximum of each window in row-major order (as PyTorch does), (A1) average, (A2) its
gradient spread evenly.  Max pooling also returns the flat index ``h·W + w`` of each window's
maximum so a layer can route the gradient without searching again.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def max_pool2d_forward(x, size, stride):
    """(P1). Returns ``(y, argmax)``; ``argmax[n,c,i,j]`` is the flat ``h·W+w`` of the max."""
    N, C, H, W = x.shape
    Ho = (H - size) // stride + 1
    Wo = (W - size) // stride + 1
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    arg = np.empty((N, C, Ho, Wo), dtype=np.int32)
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        for i in range(Ho):
            for j in range(Wo):
                h0 = i * stride
                w0 = j * stride
                best = x[n, c, h0, w0]
                bi = h0 * W + w0
                for p in range(size):
                    for q in range(size):
                        v = x[n, c, h0 + p, w0 + q]
                        if v > best:
                            best = v
                            bi = (h0 + p) * W + w0 + q
                y[n, c, i, j] = best
                arg[n, c, i, j] = bi
    return y, arg


@njit(cache=True, parallel=True)
def max_pool2d_backward_argmax(dy, arg, H, W):
    """(P2): ``dx[n,c,argmax] += dy[n,c,i,j]`` (accumulates where windows overlap)."""
    N, C, Ho, Wo = dy.shape
    dx = np.zeros((N, C, H * W), dtype=dy.dtype)
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        for i in range(Ho):
            for j in range(Wo):
                dx[n, c, arg[n, c, i, j]] += dy[n, c, i, j]
    return dx.reshape(N, C, H, W)


@njit(cache=True, parallel=True)
def avg_pool2d_forward(x, size, stride):
    """(A1) ``y = (1/size²) Σ_window x``."""
    N, C, H, W = x.shape
    Ho = (H - size) // stride + 1
    Wo = (W - size) // stride + 1
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    inv = x.dtype.type(1.0) / x.dtype.type(size * size)
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        for i in range(Ho):
            for j in range(Wo):
                acc = x.dtype.type(0.0)
                for p in range(size):
                    for q in range(size):
                        acc += x[n, c, i * stride + p, j * stride + q]
                y[n, c, i, j] = acc * inv
    return y


@njit(cache=True, parallel=True)
def avg_pool2d_backward(dy, H, W, size, stride):
    """(A2) every input of a window receives ``dy/size²``."""
    N, C, Ho, Wo = dy.shape
    dx = np.zeros((N, C, H, W), dtype=dy.dtype)
    inv = dy.dtype.type(1.0) / dy.dtype.type(size * size)
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        for i in range(Ho):
            for j in range(Wo):
                g = dy[n, c, i, j] * inv
                for p in range(size):
                    for q in range(size):
                        dx[n, c, i * stride + p, j * stride + q] += g
    return dx
