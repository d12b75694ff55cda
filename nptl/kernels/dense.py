"""Dense (fully connected) kernels: the GEMMs go to BLAS through NumPy.

(D1) ``y = x @ w + b``     x (N, I), w (I, O), b (O,)
(D2) ``dx = dy @ wᵀ``      (D3) ``dw = xᵀ @ dy``      (D4) ``db = Σ_n dy[n]``

A hand-written loop cannot beat the BLAS GEMM NumPy already links (it is the machine's
practical peak), so this kernel is the matrix formula itself.
"""
from __future__ import annotations

#: values in one block of :func:`dense_accumulate_weight_grad`'s ``xᵀ @ dy`` (16 MB in float32)
BLOCK_VALUES = 1 << 22


def dense_forward(x, w, b):
    """(D1)."""
    y = x @ w
    y += b
    return y


def dense_backward_input(dy, w):
    """(D2)."""
    return dy @ w.T


def dense_backward_bias(dy):
    """(D4)."""
    return dy.sum(axis=0)


def dense_backward_weight(dy, x):
    """(D3) and (D4)."""
    return x.T @ dy, dense_backward_bias(dy)


def dense_accumulate_weight_grad(dw, dy, x):
    """(D3) accumulated in place: ``dw += xᵀ @ dy``, a block of rows ``i`` at a time, so the
    temporary is one block (at most :data:`BLOCK_VALUES` values) and never the size of ``w``
    (VGG16's ``classifier.0``: 411 MB in float32).  Returns ``dw``."""
    rows = max(1, BLOCK_VALUES // max(1, dy.shape[1]))
    for i0 in range(0, x.shape[1], rows):
        dw[i0:i0 + rows] += x[:, i0:i0 + rows].T @ dy
    return dw


def dense_backward(dy, x, w):
    """(D2), (D3), (D4): ``(dx, dw, db)``."""
    return (dense_backward_input(dy, w),) + dense_backward_weight(dy, x)
