"""Dense (fully connected) kernels: the GEMMs go to BLAS through NumPy.

(D1) ``y = x @ w + b``     x (N, I), w (I, O), b (O,)
(D2) ``dx = dy @ wᵀ``      (D3) ``dw = xᵀ @ dy``      (D4) ``db = Σ_n dy[n]``

A hand-written loop cannot beat the BLAS GEMM NumPy already links (it is the machine's
practical peak), so this kernel is the matrix formula itself.
"""
from __future__ import annotations


def dense_forward(x, w, b):
    """(D1)."""
    y = x @ w
    y += b
    return y


def dense_backward_input(dy, w):
    """(D2)."""
    return dy @ w.T


def dense_backward_weight(dy, x):
    """(D3) and (D4)."""
    return x.T @ dy, dy.sum(axis=0)


def dense_backward(dy, x, w):
    """(D2), (D3), (D4): ``(dx, dw, db)``."""
    return (dense_backward_input(dy, w),) + dense_backward_weight(dy, x)
