"""Fast elementwise activation kernels (Numba) and row-wise softmax.

(R1) ``relu(x) = max(x, 0)``            (R2) ``dx = dy · [x > 0]``
(S1) ``σ(x) = 1/(1+e^{−x})``            (S2) ``dx = dy · σ(x)(1 − σ(x))``
(SM1) ``softmax(x)_k = e^{x_k−m}/Σ_j e^{x_j−m}``, ``m = max_j x_j`` (max-subtracted: no overflow)
(SM2) ``dx_k = s_k (dy_k − Σ_j dy_j s_j)``

Kernels work on flat (``relu``, ``sigmoid``) or 2-D row-major (softmax) contiguous arrays;
literals are cast to the array dtype so float32 stays float32.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .jit import kernel


@kernel
def relu_forward(x):
    """(R1) on a flat array."""
    y = np.empty_like(x)
    zero = x.dtype.type(0.0)
    for k in range(x.size):
        v = x[k]
        y[k] = v if v > zero else zero
    return y


@kernel
def relu_backward(dy, x):
    """(R2) on flat arrays: the gradient passes where the input was positive."""
    dx = np.empty_like(dy)
    zero = dy.dtype.type(0.0)
    for k in range(dy.size):
        dx[k] = dy[k] if x[k] > zero else zero
    return dx


@kernel
def sigmoid_forward(x):
    """(S1), branching on the sign so ``exp`` never overflows."""
    y = np.empty_like(x)
    one = x.dtype.type(1.0)
    for k in range(x.size):
        v = x[k]
        if v >= 0:
            y[k] = one / (one + np.exp(-v))
        else:
            e = np.exp(v)
            y[k] = e / (one + e)
    return y


@kernel
def sigmoid_backward(dy, y):
    """(S2) from the forward output ``y = σ(x)``."""
    dx = np.empty_like(dy)
    one = dy.dtype.type(1.0)
    for k in range(dy.size):
        dx[k] = dy[k] * y[k] * (one - y[k])
    return dx


@kernel(parallel=True)
def softmax_forward(x):
    """(SM1) for each row of a 2-D array."""
    R, K = x.shape
    y = np.empty_like(x)
    for r in prange(R):
        m = x[r, 0]
        for k in range(1, K):
            if x[r, k] > m:
                m = x[r, k]
        s = x.dtype.type(0.0)
        for k in range(K):
            e = np.exp(x[r, k] - m)
            y[r, k] = e
            s += e
        for k in range(K):
            y[r, k] /= s
    return y


@kernel(parallel=True)
def softmax_backward(dy, y):
    """(SM2) for each row, from the forward output ``y``."""
    R, K = y.shape
    dx = np.empty_like(dy)
    for r in prange(R):
        dot = dy.dtype.type(0.0)
        for k in range(K):
            dot += dy[r, k] * y[r, k]
        for k in range(K):
            dx[r, k] = y[r, k] * (dy[r, k] - dot)
    return dx
