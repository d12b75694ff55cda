"""Fast loss kernels (Numba). Losses are accumulated in float64 and returned as Python floats.

A loss kernel ``<loss>_forward`` returns ``(loss, gradient w.r.t. its first argument)``, as the
op of the same name in :mod:`nptl.ops` does: the gradient costs one more pass over data that is
already in cache, and a loss is always the end of the graph.

(L1) cross-entropy on logits, fused with softmax via log-sum-exp (finite for |z| ~ 1e4):
     ``L = (1/N) Σ_n [m_n + log Σ_k e^{z[n,k]−m_n} − z[n,y_n]]``, ``m_n = max_k z[n,k]``
(L2) ``dL/dz[n,k] = (softmax(z)[n,k] − [k = y_n]) / N``
(B1) binary cross-entropy on logits, stable form, mean over all M elements:
     ``L = (1/M) Σ [max(z,0) − z·t + log(1 + e^{−|z|})]``
(B2) ``dL/dz = (σ(z) − t)/M``
(M1) ``L = (1/M) Σ (p − t)²``          (M2) ``dL/dp = 2 (p − t)/M``
"""
from __future__ import annotations

import math

import numpy as np

from .jit import kernel


@kernel
def cross_entropy_forward(z, labels):
    """(L1) and (L2) for ``z (N, K)`` and integer ``labels (N,)``.

    Per row, in float64: ``s = Σ_k e^{z_k − m}``, loss ``log s − (z_y − m)`` (no cancellation
    between two large numbers when the label holds the max logit), gradient
    ``(e^{z_k − m}/s − [k = y]) / N`` formed before rounding to the output dtype.
    """
    N, K = z.shape
    dz = np.empty_like(z)
    total = 0.0
    for n in range(N):
        m = float(z[n, 0])
        for k in range(1, K):
            if float(z[n, k]) > m:
                m = float(z[n, k])
        s = 0.0
        for k in range(K):
            s += math.exp(float(z[n, k]) - m)
        y = labels[n]
        total += math.log(s) - (float(z[n, y]) - m)
        for k in range(K):
            p = math.exp(float(z[n, k]) - m) / s
            if k == y:
                p -= 1.0
            dz[n, k] = p / N
    return total / N, dz


@kernel
def binary_cross_entropy_forward(z, t):
    """(B1) and (B2) on flat arrays."""
    M = z.size
    dz = np.empty_like(z)
    total = 0.0
    for k in range(M):
        v = float(z[k])
        total += max(v, 0.0) - v * float(t[k]) + math.log1p(math.exp(-abs(v)))
        if v >= 0:
            s = 1.0 / (1.0 + math.exp(-v))
        else:
            e = math.exp(v)
            s = e / (1.0 + e)
        dz[k] = (s - float(t[k])) / M
    return total / M, dz


@kernel
def mse_forward(p, t):
    """(M1) and (M2) on flat arrays."""
    M = p.size
    dp = np.empty_like(p)
    total = 0.0
    for k in range(M):
        d = float(p[k]) - float(t[k])
        total += d * d
        dp[k] = 2.0 * d / M
    return total / M, dp
