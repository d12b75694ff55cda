"""Fast batch-normalisation kernels (Numba, parallel over channels or ``(n, c)`` planes).

Same formulas as :func:`nptl.kernels.reference.batch_norm` (BN1)–(BN6), on activations viewed
as ``(N, C, L)``: ``L = H·W`` for ``(N, C, H, W)`` maps, ``L = 1`` for ``(N, C)`` features, so
``BatchNorm2D`` and ``BatchNorm1D`` run the same code.  ``M = N·L`` values per channel.

Per-channel sums are accumulated in float64 whatever the dtype (as PyTorch's CPU kernels do);
the per-channel coefficients are computed in float64 and cast to the array dtype, so the
elementwise passes stay in the input dtype.  The training-mode input gradient (BN4) is
evaluated in the coefficient form

    dx = a_c·dy + b_c·(x − μ_c) + c_c,   a_c = γ_c·s_c,   b_c = −γ_c·s_c²·dγ_c/M,
                                         c_c = −γ_c·s_c·dβ_c/M,   s_c = 1/√(σ²_c + ε)

which is (BN4) with ``x̂ = (x − μ)·s`` expanded; inference mode (BN5) is ``dx = a_c·dy``.

Two loop orders (the registry lists both as fast-path branches): maps (``L > 1``) go plane by
plane, each ``(n, c)`` plane contiguous; features (``L = 1``) go row by row, each row of ``C``
features contiguous, the channel sums split into blocks of ``FEATURE_BLOCK`` channels (indexed
with ``uintp`` like every flat index here: a signed index costs a wraparound branch per element,
which kept those loops from vectorising, 2× slower).
"""
from __future__ import annotations

import numpy as np
from numba import prange, uintp

from .jit import kernel

FEATURE_BLOCK = 256   # channels per thread task when L = 1

#: the per-channel sums may be reassociated: LLVM then keeps several partial sums in vector
#: registers instead of one float64 add after another (each waits ~4 cycles for the previous),
#: which made the sums, not memory, the bound.  Same float64 sums, another order.
SUMS = {"reassoc"}


@kernel(parallel=True, fastmath=SUMS)
def batch_norm_stats(x):
    """(BN1) per-channel mean and biased variance of ``x (N, C, L)`` (two passes, float64 sums)."""
    N, C, L = x.shape
    mean = np.empty(C, dtype=np.float64)
    var = np.empty(C, dtype=np.float64)
    xs = x.reshape(-1)
    M = N * L
    if L == 1:  # features: rows inner, contiguous
        for blk in prange((C + FEATURE_BLOCK - 1) // FEATURE_BLOCK):
            c0 = blk * FEATURE_BLOCK
            c1 = min(C, c0 + FEATURE_BLOCK)
            s = np.zeros(c1 - c0)
            for n in range(N):
                for c in range(c0, c1):
                    s[uintp(c - c0)] += xs[uintp(n * C + c)]
            for c in range(c0, c1):
                mean[c] = s[c - c0] / M
            q = np.zeros(c1 - c0)
            for n in range(N):
                for c in range(c0, c1):
                    d = xs[uintp(n * C + c)] - mean[uintp(c)]
                    q[uintp(c - c0)] += d * d
            for c in range(c0, c1):
                var[c] = q[c - c0] / M
        return mean, var
    for c in prange(C):
        s = 0.0
        for n in range(N):
            base = (n * C + c) * L
            for k in range(L):
                s += xs[uintp(base + k)]
        mu = s / M
        q = 0.0
        for n in range(N):
            base = (n * C + c) * L
            for k in range(L):
                d = xs[uintp(base + k)] - mu
                q += d * d
        mean[c] = mu
        var[c] = q / M
    return mean, var


@kernel(parallel=True)
def channel_affine(x, center, scale, offset):
    """``y[n,c,l] = (x[n,c,l] − center[c])·scale[c] + offset[c]`` for ``x (N, C, L)``:
    (BN2) with ``center = μ``, ``scale = γ/√(σ²+ε)``, ``offset = β``; (BN5) with zero center
    and offset.  All arguments have ``x``'s dtype."""
    N, C, L = x.shape
    y = np.empty_like(x)
    xs = x.reshape(-1)
    ys = y.reshape(-1)
    if L == 1:  # features: one row per task, vectorised over channels
        for n in prange(N):
            for c in range(C):
                ys[uintp(n * C + c)] = (xs[uintp(n * C + c)] - center[c]) * scale[c] + offset[c]
        return y
    for nc in prange(N * C):
        c = nc % C
        m, s, o = center[c], scale[c], offset[c]
        base = nc * L
        for k in range(L):
            ys[uintp(base + k)] = (xs[uintp(base + k)] - m) * s + o
    return y


@kernel(parallel=True, fastmath=SUMS)
def batch_norm_backward_weight(dy, x, mean, invstd):
    """(BN3) ``(dγ, dβ)`` per channel in float64: ``dβ = Σ dy``, ``dγ = s·Σ dy·(x − μ)``
    (``s = invstd = 1/√(σ² + ε)``, so ``(x − μ)·s = x̂``)."""
    N, C, L = x.shape
    dgamma = np.empty(C, dtype=np.float64)
    dbeta = np.empty(C, dtype=np.float64)
    xs = x.reshape(-1)
    dys = dy.reshape(-1)
    if L == 1:  # features: rows inner, contiguous
        for blk in prange((C + FEATURE_BLOCK - 1) // FEATURE_BLOCK):
            c0 = blk * FEATURE_BLOCK
            c1 = min(C, c0 + FEATURE_BLOCK)
            s1 = np.zeros(c1 - c0)
            s2 = np.zeros(c1 - c0)
            for n in range(N):
                for c in range(c0, c1):
                    g = dys[uintp(n * C + c)]
                    s1[uintp(c - c0)] += g
                    s2[uintp(c - c0)] += g * (xs[uintp(n * C + c)] - mean[uintp(c)])
            for c in range(c0, c1):
                dgamma[c] = s2[c - c0] * invstd[c]
                dbeta[c] = s1[c - c0]
        return dgamma, dbeta
    for c in prange(C):
        mu = mean[c]
        s1 = 0.0
        s2 = 0.0
        for n in range(N):
            base = (n * C + c) * L
            for k in range(L):
                g = dys[uintp(base + k)]
                s1 += g
                s2 += g * (xs[uintp(base + k)] - mu)
        dgamma[c] = s2 * invstd[c]
        dbeta[c] = s1
    return dgamma, dbeta


@kernel(parallel=True)
def batch_norm_backward_input(dy, x, mean, a, b, c_):
    """(BN4) in coefficient form: ``dx = a_c·dy + b_c·(x − μ_c) + c_c`` (module docstring)."""
    N, C, L = x.shape
    dx = np.empty_like(x)
    xs = x.reshape(-1)
    dys = dy.reshape(-1)
    dxs = dx.reshape(-1)
    if L == 1:  # features: one row per task, vectorised over channels
        for n in prange(N):
            for c in range(C):
                k = uintp(n * C + c)
                dxs[k] = a[c] * dys[k] + b[c] * (xs[k] - mean[c]) + c_[c]
        return dx
    for nc in prange(N * C):
        ch = nc % C
        m, ac, bc, cc = mean[ch], a[ch], b[ch], c_[ch]
        base = nc * L
        for k in range(L):
            dxs[uintp(base + k)] = ac * dys[uintp(base + k)] + bc * (xs[uintp(base + k)] - m) + cc
    return dx


def batch_norm_forward(x, gamma, beta, eps, mean=None, var=None):
    """(BN1)+(BN2) on ``x (N, C, L)``: returns ``(y, mean, var)`` (float64 statistics).

    With ``mean``/``var`` given (running statistics) they are used as they are (BN5);
    otherwise the batch's mean and biased variance are computed (BN1)."""
    if mean is None:
        mean, var = batch_norm_stats(x)
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    s = 1.0 / np.sqrt(var + eps)
    dt = x.dtype
    y = channel_affine(x, mean.astype(dt), (gamma * s).astype(dt), np.asarray(beta, dtype=dt))
    return y, mean, var


def batch_norm_backward(dy, x, gamma, eps, mean, var, batch_stats, input_grad=True, param_grads=True):
    """Gradients of :func:`batch_norm_forward` on ``(N, C, L)``: returns ``(dx, dγ, dβ)``
    (``None`` for what is not asked).  ``batch_stats`` says whether ``mean``/``var`` were the
    batch's own statistics (training: (BN4), μ and σ² depend on x) or fixed running
    statistics (inference: (BN5), the affine map ``dx = γ·s·dy``)."""
    N, C, L = x.shape
    M = N * L
    dt = x.dtype
    s = 1.0 / np.sqrt(np.asarray(var, dtype=np.float64) + eps)
    g = np.asarray(gamma, dtype=np.float64)
    dgamma = dbeta = dx = None
    if param_grads or (input_grad and batch_stats):
        dgamma, dbeta = batch_norm_backward_weight(dy, x, np.asarray(mean, dtype=dt), s)   # (BN3)
    if input_grad:
        a = (g * s).astype(dt)
        if batch_stats:                             # (BN4)
            b = (-g * s * s * dgamma / M).astype(dt)
            c = (-g * s * dbeta / M).astype(dt)
            dx = batch_norm_backward_input(dy, x, np.asarray(mean, dtype=dt), a, b, c)
        else:                                       # (BN5)
            zero = np.zeros(C, dtype=dt)
            dx = channel_affine(dy, zero, a, zero)
    if param_grads:
        return dx, dgamma.astype(dt), dbeta.astype(dt)
    return dx, None, None


def batch_norm_update_running(running_mean, running_var, mean, var, count, momentum):
    """(BN6) PyTorch's convention, in place: ``r ← (1 − m)·r + m·stat`` with the *unbiased*
    variance ``σ²·M/(M − 1)`` going into ``running_var`` (``count = M`` values per channel)."""
    unbiased = var * (count / (count - 1))
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * unbiased
