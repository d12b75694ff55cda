"""Fast pooling kernels (Numba, parallel over ``(n, c)`` planes).

Same formulas as :mod:`nptl.kernels.reference`: (P1) max, (P2) its gradient routed to the
first maximum of each window in row-major order (as PyTorch does), (A1) average, (A2) its
gradient spread evenly, (AP1)/(AP2) adaptive average pooling over PyTorch's bins (global
average pooling is its 1×1 case, with a branch of its own).  NaN propagates through max pooling
as in PyTorch: a window holding a NaN gives NaN, and its gradient goes to the last NaN of the
window (the scan takes ``v`` when ``v > best or v`` is NaN).  Max pooling also returns the flat
index ``h·W + w`` of each window's maximum so a layer can route the gradient without searching
again; ``ops.max_pool2d`` needs only the values, which for 2×2 windows with stride 2 (the
seed CNN's) ``max_pool2d_forward_2x2`` computes without the argmax array (half the time).

The loops index flat views with ``uintp`` offsets: Numba adds a negative-index wraparound
branch to every signed index, which blocks vectorisation and costs ~3x here.
"""
from __future__ import annotations

import numpy as np
from numba import prange, uintp

from .jit import kernel

from .reference import conv_output_size


@kernel(parallel=True)
def max_pool2d_forward(x, size, stride, padding=0):
    """(P1), on ``x`` padded by ``padding`` rows and columns of −∞ (P3) without the padded copy:
    each window is clipped to the input, which changes nothing as −∞ never wins a window that
    holds an input (``padding ≤ size // 2``).  Returns ``(y, argmax)``; ``argmax[n,c,i,j]`` is the
    flat ``h·W+w`` of the max in the *unpadded* plane, so (P2) writes ``dx`` itself (no crop)."""
    N, C, H, W = x.shape
    Ho, Wo = conv_output_size(H, size, stride, padding), conv_output_size(W, size, stride, padding)
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    arg = np.empty((N, C, Ho, Wo), dtype=np.int32)
    xs = x.reshape(-1)
    ys = y.reshape(-1)
    args = arg.reshape(-1)
    if size == 2 and stride == 2 and padding == 0:  # the common case, written out so that it vectorises
        for nc in prange(N * C):
            xb = nc * H * W
            yb = nc * Ho * Wo
            for i in range(Ho):
                r0 = 2 * i * W
                r1 = r0 + W
                for j in range(Wo):
                    a = xs[uintp(xb + r0 + 2 * j)]
                    b = xs[uintp(xb + r0 + 2 * j + 1)]
                    c = xs[uintp(xb + r1 + 2 * j)]
                    d = xs[uintp(xb + r1 + 2 * j + 1)]
                    best = a
                    bi = r0 + 2 * j
                    if b > best or b != b:  # (P1) NaN propagates
                        best = b
                        bi = r0 + 2 * j + 1
                    if c > best or c != c:
                        best = c
                        bi = r1 + 2 * j
                    if d > best or d != d:
                        best = d
                        bi = r1 + 2 * j + 1
                    ys[uintp(yb + i * Wo + j)] = best
                    args[uintp(yb + i * Wo + j)] = bi
        return y, arg
    for nc in prange(N * C):
        xb = nc * H * W
        yb = nc * Ho * Wo
        for i in range(Ho):
            h0 = i * stride - padding
            h_lo, h_hi = max(h0, 0), min(h0 + size, H)
            for j in range(Wo):
                w0 = j * stride - padding
                w_lo, w_hi = max(w0, 0), min(w0 + size, W)
                bi = h_lo * W + w_lo
                best = xs[uintp(xb + bi)]
                for h in range(h_lo, h_hi):
                    for v in range(w_lo, w_hi):
                        k = h * W + v
                        val = xs[uintp(xb + k)]
                        if val > best or val != val:  # (P1) NaN propagates
                            best = val
                            bi = k
                ys[uintp(yb + i * Wo + j)] = best
                args[uintp(yb + i * Wo + j)] = bi
    return y, arg


@kernel(parallel=True)
def max_pool2d_forward_2x2(x):
    """(P1) for 2×2 windows with stride 2, values only (what ``ops.max_pool2d`` returns).

    The scan ``best = v if v > best`` (the first maximum, as (P1)) is a vector ``max``; NaN is
    checked once per window, ``(a != a) | … | (d != d)``, and gives the window's sum (a NaN)."""
    N, C, H, W = x.shape
    Ho, Wo = H // 2, W // 2
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    xs = x.reshape(-1)
    ys = y.reshape(-1)
    for nc in prange(N * C):
        xb = nc * H * W
        yb = nc * Ho * Wo
        for i in range(Ho):
            r0 = xb + 2 * i * W
            r1 = r0 + W
            for j in range(Wo):
                a = xs[uintp(r0 + 2 * j)]
                b = xs[uintp(r0 + 2 * j + 1)]
                c = xs[uintp(r1 + 2 * j)]
                d = xs[uintp(r1 + 2 * j + 1)]
                best = a
                best = b if b > best else best                                   # (P1)
                best = c if c > best else best
                best = d if d > best else best
                nan = (a != a) | (b != b) | (c != c) | (d != d)
                ys[uintp(yb + i * Wo + j)] = (a + b + c + d) if nan else best
    return y


@kernel(parallel=True)
def max_pool2d_backward(dy, arg, H, W):
    """(P2): ``dx[n,c,argmax] += dy[n,c,i,j]`` (accumulates where windows overlap)."""
    N, C, Ho, Wo = dy.shape
    dx = np.empty((N, C, H, W), dtype=dy.dtype)
    dxs = dx.reshape(-1)
    dys = dy.reshape(-1)
    args = arg.reshape(-1)
    zero = dy.dtype.type(0)
    for nc in prange(N * C):
        xb = nc * H * W
        yb = nc * Ho * Wo
        for k in range(H * W):
            dxs[uintp(xb + k)] = zero
        for k in range(Ho * Wo):
            dxs[uintp(xb + args[uintp(yb + k)])] += dys[uintp(yb + k)]
    return dx


@kernel(parallel=True)
def avg_pool2d_forward(x, size, stride):
    """(A1) ``y = (1/size²) Σ_window x``."""
    N, C, H, W = x.shape
    Ho, Wo = conv_output_size(H, size, stride, 0), conv_output_size(W, size, stride, 0)
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    inv = x.dtype.type(1.0) / x.dtype.type(size * size)
    xs = x.reshape(-1)
    ys = y.reshape(-1)
    if size == 2 and stride == 2:  # the common case, written out so that it vectorises
        for nc in prange(N * C):
            xb = nc * H * W
            yb = nc * Ho * Wo
            for i in range(Ho):
                r0 = xb + 2 * i * W
                r1 = r0 + W
                for j in range(Wo):
                    acc = ((xs[uintp(r0 + 2 * j)] + xs[uintp(r0 + 2 * j + 1)]) + xs[uintp(r1 + 2 * j)]) \
                        + xs[uintp(r1 + 2 * j + 1)]
                    ys[uintp(yb + i * Wo + j)] = acc * inv
        return y
    for nc in prange(N * C):
        xb = nc * H * W
        yb = nc * Ho * Wo
        for i in range(Ho):
            for j in range(Wo):
                k0 = xb + i * stride * W + j * stride
                acc = x.dtype.type(0.0)
                for p in range(size):
                    for q in range(size):
                        acc += xs[uintp(k0 + p * W + q)]
                ys[uintp(yb + i * Wo + j)] = acc * inv
    return y


@kernel(parallel=True)
def avg_pool2d_backward(dy, H, W, size, stride):
    """(A2) every input of a window receives ``dy/size²``.  2×2 windows with stride 2 tile the
    input, so each ``dx`` element is written once (the last row or column of an odd ``H`` or
    ``W``, in no window, set to 0); other windows are accumulated into a zeroed ``dx``."""
    N, C, Ho, Wo = dy.shape
    dx = np.empty((N, C, H, W), dtype=dy.dtype)
    inv = dy.dtype.type(1.0) / dy.dtype.type(size * size)
    dxs = dx.reshape(-1)
    dys = dy.reshape(-1)
    zero = dy.dtype.type(0)
    for nc in prange(N * C):
        xb = nc * H * W
        yb = nc * Ho * Wo
        if size == 2 and stride == 2:  # disjoint windows: plain stores
            for i in range(Ho):
                r0 = xb + 2 * i * W
                r1 = r0 + W
                for j in range(Wo):
                    g = dys[uintp(yb + i * Wo + j)] * inv                        # (A2)
                    dxs[uintp(r0 + 2 * j)] = g
                    dxs[uintp(r0 + 2 * j + 1)] = g
                for k in range(2 * Wo):                      # the second row of the windows: a copy
                    dxs[uintp(r1 + k)] = dxs[uintp(r0 + k)]
                if W % 2:
                    dxs[uintp(r0 + W - 1)] = zero
                    dxs[uintp(r1 + W - 1)] = zero
            if H % 2:
                for k in range((H - 1) * W, H * W):
                    dxs[uintp(xb + k)] = zero
            continue
        for k in range(H * W):
            dxs[uintp(xb + k)] = zero
        for i in range(Ho):
            for j in range(Wo):
                g = dys[uintp(yb + i * Wo + j)] * inv                            # (A2)
                k0 = xb + i * stride * W + j * stride
                for p in range(size):
                    for q in range(size):
                        dxs[uintp(k0 + p * W + q)] += g
    return dx


@kernel
def _adaptive_bins(size, out):
    """Starts and ends of PyTorch's adaptive bins (AP1): ``floor(i·size/out)``, ``ceil((i+1)·size/out)``."""
    start = np.empty(out, dtype=np.int64)
    end = np.empty(out, dtype=np.int64)
    for i in range(out):
        start[i] = (i * size) // out
        end[i] = -((-(i + 1) * size) // out)
    return start, end


@kernel(parallel=True, fastmath={"reassoc"})
def adaptive_avg_pool2d_forward(x, Ho, Wo):
    """(AP1) ``y[n,c,i,j]`` = mean of ``x[n,c]`` over bin rows × bin columns (accumulated in
    ``x``'s dtype, then divided by the bin's size).  The sums may be reassociated
    (``fastmath={"reassoc"}``): the global average's plane sum then vectorises, with several
    partial sums, instead of one add waiting for the previous."""
    N, C, H, W = x.shape
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    xs = x.reshape(-1)
    ys = y.reshape(-1)
    if Ho == 1 and Wo == 1:  # global average: one contiguous sum per plane
        for nc in prange(N * C):
            acc = x.dtype.type(0.0)
            for k in range(H * W):
                acc += xs[uintp(nc * H * W + k)]
            ys[uintp(nc)] = acc / x.dtype.type(H * W)
        return y
    hs, he = _adaptive_bins(H, Ho)
    ws, we = _adaptive_bins(W, Wo)
    for nc in prange(N * C):
        xb = nc * H * W
        yb = nc * Ho * Wo
        for i in range(Ho):
            for j in range(Wo):
                acc = x.dtype.type(0.0)
                for h in range(hs[i], he[i]):
                    row = xb + h * W
                    for w in range(ws[j], we[j]):
                        acc += xs[uintp(row + w)]
                ys[uintp(yb + i * Wo + j)] = acc / x.dtype.type((he[i] - hs[i]) * (we[j] - ws[j]))
    return y


@kernel(parallel=True)
def adaptive_avg_pool2d_backward(dy, H, W):
    """(AP2) every input of bin ``(i, j)`` receives ``dy[n,c,i,j]/|bin|`` (bins may overlap by a
    row or column: accumulated into a zeroed plane, each plane by one thread; the global
    average's single bin writes its plane once)."""
    N, C, Ho, Wo = dy.shape
    dx = np.empty((N, C, H, W), dtype=dy.dtype)
    dxs = dx.reshape(-1)
    dys = dy.reshape(-1)
    if Ho == 1 and Wo == 1:  # global average: the plane is dy[n,c]/(H·W) everywhere
        for nc in prange(N * C):
            g = dys[uintp(nc)] / dy.dtype.type(H * W)                              # (AP2)
            for k in range(H * W):
                dxs[uintp(nc * H * W + k)] = g
        return dx
    hs, he = _adaptive_bins(H, Ho)
    ws, we = _adaptive_bins(W, Wo)
    zero = dy.dtype.type(0.0)
    for nc in prange(N * C):
        xb = nc * H * W
        yb = nc * Ho * Wo
        for k in range(H * W):
            dxs[uintp(xb + k)] = zero
        for i in range(Ho):
            for j in range(Wo):
                g = dys[uintp(yb + i * Wo + j)] / dy.dtype.type((he[i] - hs[i]) * (we[j] - ws[j]))  # (AP2)
                for h in range(hs[i], he[i]):
                    row = xb + h * W
                    for w in range(ws[j], we[j]):
                        dxs[uintp(row + w)] += g
    return dx


def global_avg_pool2d_forward(x):
    """(AP1) with a 1×1 output, flattened: ``y[n,c] = (1/(H·W)) Σ_{h,w} x[n,c,h,w]``."""
    return adaptive_avg_pool2d_forward(x, 1, 1).reshape(x.shape[0], x.shape[1])


def global_avg_pool2d_backward(dy, H, W):
    """(AP2) with one bin: ``dx[n,c,h,w] = dy[n,c]/(H·W)``."""
    return adaptive_avg_pool2d_backward(dy.reshape(dy.shape[0], dy.shape[1], 1, 1), H, W)
