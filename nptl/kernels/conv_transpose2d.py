"""Fast transposed convolution: conv2d's kernels with the roles of the passes exchanged.

A transposed convolution (stride ``s``, zero padding ``P``, output padding ``op``) with weights
``w (C, F, KH, KW)`` — torch's ``conv_transpose2d`` layout — maps ``x (N, C, H, W)`` to
``y (N, F, Ho, Wo)``, ``Ho = (H − 1)·s − 2P + KH + op`` (same for Wo)::

    (T1)  y[n,f,h,v]  = b[f] + Σ_c Σ_{(i,p): i·s+p = h+P} Σ_{(j,q): j·s+q = v+P} x[n,c,i,j] · w[c,f,p,q]
    (T2)  dx[n,c,i,j] = Σ_f Σ_p Σ_q dyp[n,f,i·s+p,j·s+q] · w[c,f,p,q]
    (T3)  dw[c,f,p,q] = Σ_n Σ_i Σ_j x[n,c,i,j] · dyp[n,f,i·s+p,j·s+q]
    (T4)  db[f]       = Σ_n Σ_h Σ_v dy[n,f,h,v]

(``dyp`` = dy zero-padded by P.)  The duality with conv2d (:mod:`nptl.kernels.conv2d`): read
``w`` as a conv2d weight ``(F' = C, C' = F, KH, KW)`` that maps ``(N, F, Ho, Wo)`` images to
``(N, C, H, W)`` (``(Ho + 2P − KH)//s + 1 = H`` because ``op < s``).  Then

- (T1) **is** conv2d's input gradient (C2) with ``dy := x``: the forward pass here is
  ``conv2d_backward_input(x, w, (N, F, Ho, Wo), s, P)`` plus the bias;
- (T2) **is** conv2d's forward (C1) of ``dy`` without bias: ``conv2d_forward(dy, w, 0, s, P)``;
- (T3) **is** conv2d's weight gradient (C3) with ``dy := x`` and ``x := dy``.

So the transposed convolution is the adjoint of conv2d in ``x``: ``⟨conv_transpose2d(x, w), z⟩ =
⟨x, conv2d(z, w)⟩`` for every z — tested, with every pass against conv2d's and torch's.  The
last ``op`` rows/columns of y are reached by no input (only the bias): ``op`` only chooses
which of the ``s`` input sizes that give the same conv2d output this layer inverts.
"""
from __future__ import annotations

import numpy as np

from . import conv2d as _conv


def output_size(H, W, KH, KW, stride, padding, output_padding):
    """``(Ho, Wo)`` with ``Ho = (H − 1)·s − 2P + KH + op``."""
    return ((H - 1) * stride - 2 * padding + KH + output_padding,
            (W - 1) * stride - 2 * padding + KW + output_padding)


def conv_transpose2d_forward(x, w, b, stride, padding, output_padding):
    """(T1) = conv2d (C2) with ``dy := x``, plus the bias: ``y (N, F, Ho, Wo)``."""
    N, _, H, W = x.shape
    _, F, KH, KW = w.shape
    Ho, Wo = output_size(H, W, KH, KW, stride, padding, output_padding)
    y = _conv.conv2d_backward_input(x, w, (N, F, Ho, Wo), stride, padding)
    y += b[None, :, None, None]
    return y


def conv_transpose2d_backward_input(dy, w, stride, padding):
    """(T2) = conv2d (C1) of ``dy`` with the same weights, no bias: ``dx (N, C, H, W)``."""
    return _conv.conv2d_forward(dy, w, np.zeros(w.shape[0], dtype=dy.dtype), stride, padding)


def conv_transpose2d_backward_weight(dy, x, w_shape, stride, padding):
    """(T3) = conv2d (C3) with the roles of x and dy exchanged, and (T4): ``(dw, db)``."""
    dw, _ = _conv.conv2d_backward_weight(x, dy, w_shape, stride, padding)
    return dw, dy.sum(axis=(0, 2, 3))


def conv_transpose2d_backward(dy, x, w, stride, padding):
    """(T2), (T3), (T4): ``(dx (N, C, H, W), dw (C, F, KH, KW), db (F,))``."""
    return (conv_transpose2d_backward_input(dy, w, stride, padding),) + \
        conv_transpose2d_backward_weight(dy, x, w.shape, stride, padding)
