"""Reference kernels: the formulas as plain loops.

This module is the oracle every fast kernel is tested against, and the text a learner reads.
Each function is a direct transcription of the formula in its docstring, written as nested
loops with no tricks.  The loops are compiled with Numba (``cache=True``) only so that the
tests and benchmarks can afford them; with ``NUMBA_DISABLE_JIT=1`` the very same code runs as
plain Python and can be stepped through in a debugger.

Layout: activations NCHW ``(N, C, H, W)``, conv weights ``(F, C, KH, KW)``, transposed-conv
weights ``(C, F, KH, KW)`` (as torch), dense weights ``(in_features, out_features)``.  Public functions have exactly the names and signatures of
:mod:`nptl.ops` (which validates arguments and calls the fast kernels); the ones here assume
valid, contiguous arrays of one float dtype.

Notation for the convolution (stride ``s``, zero padding ``P``)::

    Ho = (H + 2P - KH) // s + 1          Wo = (W + 2P - KW) // s + 1     (conv_output_size)
    xp[n, c, h, w] = x[n, c, h - P, w - P]   inside the image, 0 in the padding

    (C1)  y[n,f,i,j]  = b[f] + Σ_c Σ_p Σ_q xp[n,c,i·s+p,j·s+q] · w[f,c,p,q]
    (C2)  dx[n,c,h,w] = Σ_f Σ_{(i,p): i·s+p = h+P} Σ_{(j,q): j·s+q = w+P} dy[n,f,i,j] · w[f,c,p,q]
    (C3)  dw[f,c,p,q] = Σ_n Σ_i Σ_j dy[n,f,i,j] · xp[n,c,i·s+p,j·s+q]
    (C4)  db[f]       = Σ_n Σ_i Σ_j dy[n,f,i,j]

(C1) is a cross-correlation, which is what every framework calls "convolution".  The textbook
convolution ``y(i,j) = Σ_p Σ_q x(i−p+1, j−q+1)·k(p,q)`` flips the kernel; see
:func:`conv2d_true` and the test that ties the two together.
"""
from __future__ import annotations

import math

import numpy as np
from numba.extending import register_jitable

from .jit import kernel


@register_jitable
def conv_output_size(size, kernel, stride, padding):
    """Output length along one axis of a window of ``kernel`` taps moved by ``stride`` over
    ``size`` inputs zero-padded by ``padding`` on both sides (convolution and pooling)::

        Ho = (H + 2P − KH) // s + 1

    The one place this formula is written: plain Python when called from Python, compiled into
    the Numba kernels that call it.

    >>> conv_output_size(28, 3, 1, 0), conv_output_size(7, 3, 2, 1), conv_output_size(27, 2, 2, 0)
    (26, 4, 13)
    """
    return (size + 2 * padding - kernel) // stride + 1


# ----------------------------------------------------------------------------------------------
# conv2d
# ----------------------------------------------------------------------------------------------
@kernel
def _conv2d_forward(x, w, b, stride, padding):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho, Wo = conv_output_size(H, KH, stride, padding), conv_output_size(W, KW, stride, padding)
    y = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    acc = b[f]                                  # (C1)
                    for c in range(C):
                        for p in range(KH):
                            h = i * stride + p - padding
                            if h < 0 or h >= H:
                                continue                        # zero padding
                            for q in range(KW):
                                v = j * stride + q - padding
                                if v < 0 or v >= W:
                                    continue
                                acc += x[n, c, h, v] * w[f, c, p, q]
                    y[n, f, i, j] = acc
    return y


@kernel
def _conv2d_backward(dy, x, w, stride, padding):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    db = np.zeros(F, dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    g = dy[n, f, i, j]
                    db[f] += g                                  # (C4)
                    for c in range(C):
                        for p in range(KH):
                            h = i * stride + p - padding
                            if h < 0 or h >= H:
                                continue
                            for q in range(KW):
                                v = j * stride + q - padding
                                if v < 0 or v >= W:
                                    continue
                                dx[n, c, h, v] += g * w[f, c, p, q]   # (C2)
                                dw[f, c, p, q] += g * x[n, c, h, v]   # (C3)
    return dx, dw, db


def conv2d(x, w, b=None, stride=1, padding=0):
    """Cross-correlation (C1): ``(N,C,H,W) * (F,C,KH,KW) -> (N,F,Ho,Wo)``."""
    if b is None:
        b = np.zeros(w.shape[0], dtype=x.dtype)
    return _conv2d_forward(x, w, b, stride, padding)


def conv2d_backward(dy, x, w, stride=1, padding=0):
    """Gradients (C2), (C3), (C4) of :func:`conv2d`: returns ``(dx, dw, db)``."""
    return _conv2d_backward(dy, x, w, stride, padding)


@kernel
def _conv2d_true(x, k):
    # The seed documents' formula with 1-based indices, "valid" part only:
    #   y(i, j) = Σ_p Σ_q x(i − p + 1, j − q + 1) · k(p, q)
    # for i = KH..H, j = KW..W (the positions where every x index is inside the image).
    H, W = x.shape
    KH, KW = k.shape
    y = np.zeros((H - KH + 1, W - KW + 1), dtype=x.dtype)
    for i in range(KH, H + 1):              # 1-based output position
        for j in range(KW, W + 1):
            acc = x[0, 0] * 0
            for p in range(1, KH + 1):
                for q in range(1, KW + 1):
                    acc += x[i - p + 1 - 1, j - q + 1 - 1] * k[p - 1, q - 1]
            y[i - KH, j - KW] = acc
    return y


def conv2d_true(x, k):
    """True 2-D convolution of one image with one kernel, as the seed documents write it.

    ``y(i,j) = Σ_p Σ_q x(i−p+1, j−q+1)·k(p,q)`` (1-based), kept where the kernel lies fully
    inside the image.  It equals the cross-correlation (C1) with the kernel flipped in both
    axes: ``conv2d_true(x, k) == conv2d(x, k[::-1, ::-1])``.
    """
    return _conv2d_true(np.ascontiguousarray(x), np.ascontiguousarray(k))


# ----------------------------------------------------------------------------------------------
# transposed convolution and nearest upsampling (the decoder's layers)
# ----------------------------------------------------------------------------------------------
@kernel
def _conv_transpose2d(x, w, b, stride, padding, output_padding):
    N, C, H, W = x.shape
    _, F, KH, KW = w.shape
    Ho = (H - 1) * stride - 2 * padding + KH + output_padding
    Wo = (W - 1) * stride - 2 * padding + KW + output_padding
    y = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for h in range(Ho):
                for v in range(Wo):
                    y[n, f, h, v] = b[f]
    for n in range(N):                  # each input pixel spreads into a KH×KW patch of y
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    g = x[n, c, i, j]
                    for p in range(KH):
                        h = i * stride + p - padding
                        if h < 0 or h >= Ho:
                            continue                    # cropped by the padding
                        for q in range(KW):
                            v = j * stride + q - padding
                            if v < 0 or v >= Wo:
                                continue
                            for f in range(F):
                                y[n, f, h, v] += g * w[c, f, p, q]   # (T1)
    return y


@kernel
def _conv_transpose2d_backward(dy, x, w, stride, padding):
    N, C, H, W = x.shape
    _, F, KH, KW = w.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    db = np.zeros(F, dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for h in range(Ho):
                for v in range(Wo):
                    db[f] += dy[n, f, h, v]                          # (T4)
    for n in range(N):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    for p in range(KH):
                        h = i * stride + p - padding
                        if h < 0 or h >= Ho:
                            continue
                        for q in range(KW):
                            v = j * stride + q - padding
                            if v < 0 or v >= Wo:
                                continue
                            for f in range(F):
                                g = dy[n, f, h, v]
                                dx[n, c, i, j] += g * w[c, f, p, q]   # (T2)
                                dw[c, f, p, q] += g * x[n, c, i, j]   # (T3)
    return dx, dw, db


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution: ``(N,C,H,W)``, weights ``(C,F,KH,KW)`` → ``(N,F,Ho,Wo)``,
    ``Ho = (H−1)·s − 2P + KH + op`` (same for Wo; ``op`` = output_padding < s).

    (T1)  y[n,f,h,v]  = b[f] + Σ_c Σ_{(i,p): i·s+p = h+P} Σ_{(j,q): j·s+q = v+P} x[n,c,i,j] · w[c,f,p,q]

    Each input pixel ``x[n,c,i,j]`` adds ``x[n,c,i,j]·w[c,:,:,:]`` to the patch of y starting at
    ``(i·s−P, j·s−P)`` (parts outside y are cropped).  This is conv2d's input gradient (C2)
    with ``dy := x`` and the weight read as a conv2d weight ``(F'=C, C'=F, KH, KW)``.
    """
    if b is None:
        b = np.zeros(w.shape[1], dtype=x.dtype)
    return _conv_transpose2d(x, w, b, stride, padding, output_padding)


def conv_transpose2d_backward(dy, x, w, stride=1, padding=0, output_padding=0):
    """Gradients of :func:`conv_transpose2d`: returns ``(dx, dw, db)`` (``dyp`` = dy zero-padded by P).

    (T2)  dx[n,c,i,j] = Σ_f Σ_p Σ_q dyp[n,f,i·s+p,j·s+q] · w[c,f,p,q]      = conv2d (C1) of dy
    (T3)  dw[c,f,p,q] = Σ_n Σ_i Σ_j x[n,c,i,j] · dyp[n,f,i·s+p,j·s+q]      = conv2d (C3), x ↔ dy
    (T4)  db[f]       = Σ_n Σ_h Σ_v dy[n,f,h,v]

    Derivation: y is linear in x and in w; (T2) collects every output x[n,c,i,j] fed (the
    patch at (i·s−P, j·s−P)), (T3) every product that w[c,f,p,q] multiplied.  ``output_padding``
    only enlarges y: its extra rows receive the bias alone, so it does not enter (T2)-(T4).
    """
    return _conv_transpose2d_backward(dy, x, w, stride, padding)


@kernel
def _upsample2d(x, sh, sw):
    N, C, H, W = x.shape
    y = np.empty((N, C, H * sh, W * sw), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for h in range(H * sh):
                for v in range(W * sw):
                    y[n, c, h, v] = x[n, c, h // sh, v // sw]        # (U1)
    return y


@kernel
def _upsample2d_backward(dy, sh, sw):
    N, C, Ho, Wo = dy.shape
    dx = np.zeros((N, C, Ho // sh, Wo // sw), dtype=dy.dtype)
    for n in range(N):
        for c in range(C):
            for h in range(Ho):
                for v in range(Wo):
                    dx[n, c, h // sh, v // sw] += dy[n, c, h, v]     # (U2)
    return dx


def _factors(size):
    return (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))


def upsample2d(x, size):
    """Nearest-neighbour upsampling by integer factors ``size`` (``s`` or ``(sh, sw)``):
    ``(N,C,H,W) → (N,C,H·sh,W·sw)``.

    (U1)  y[n,c,h,v] = x[n,c,h // sh, v // sw]
    """
    sh, sw = _factors(size)
    return _upsample2d(x, sh, sw)


def upsample2d_backward(dy, x, size):
    """Gradient of :func:`upsample2d`: each input pixel was copied into an ``sh×sw`` block, so

    (U2)  dx[n,c,i,j] = Σ_{0≤p<sh} Σ_{0≤q<sw} dy[n,c,i·sh+p, j·sw+q]
    """
    sh, sw = _factors(size)
    return _upsample2d_backward(dy, sh, sw)


# ----------------------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------------------
@kernel
def _max_pool2d(x, size, stride):
    N, C, H, W = x.shape
    Ho, Wo = conv_output_size(H, size, stride, 0), conv_output_size(W, size, stride, 0)
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    # (P1)  y[n,c,i,j] = max_{p,q} x[n,c,i·s+p,j·s+q]
                    best = x[n, c, i * stride, j * stride]
                    for p in range(size):
                        for q in range(size):
                            v = x[n, c, i * stride + p, j * stride + q]
                            if v > best or v != v:              # NaN wins (as PyTorch)
                                best = v
                    y[n, c, i, j] = best
    return y


@kernel
def _max_pool2d_backward(dy, x, size, stride):
    N, C, H, W = x.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    # (P2)  the whole gradient goes to the first maximum in row-major order
                    #       (to the last NaN if the window holds NaN)
                    bh, bw = i * stride, j * stride
                    best = x[n, c, bh, bw]
                    for p in range(size):
                        for q in range(size):
                            v = x[n, c, i * stride + p, j * stride + q]
                            if v > best or v != v:
                                best = v
                                bh, bw = i * stride + p, j * stride + q
                    dx[n, c, bh, bw] += dy[n, c, i, j]
    return dx


@kernel
def _avg_pool2d(x, size, stride):
    N, C, H, W = x.shape
    Ho, Wo = conv_output_size(H, size, stride, 0), conv_output_size(W, size, stride, 0)
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    # (A1)  y[n,c,i,j] = (1/size²) Σ_{p,q} x[n,c,i·s+p,j·s+q]
                    acc = x[n, c, 0, 0] * 0
                    for p in range(size):
                        for q in range(size):
                            acc += x[n, c, i * stride + p, j * stride + q]
                    y[n, c, i, j] = acc / (size * size)
    return y


@kernel
def _avg_pool2d_backward(dy, x, size, stride):
    N, C, H, W = x.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    # (A2)  each input of the window receives dy / size²
                    g = dy[n, c, i, j] / (size * size)
                    for p in range(size):
                        for q in range(size):
                            dx[n, c, i * stride + p, j * stride + q] += g
    return dx


def max_pool2d(x, size, stride=None):
    """Max pooling (P1): ``(N,C,H,W) -> (N,C,Ho,Wo)`` (:func:`conv_output_size`, padding 0).

    NaN propagates (as in PyTorch): a window holding a NaN gives NaN, and (P2) sends its
    gradient to the window's last NaN in row-major order.  Written as the scan
    ``if v > best or v != v: best = v`` (``v != v`` is true only for NaN)."""
    return _max_pool2d(x, size, size if stride is None else stride)


def max_pool2d_backward(dy, x, size, stride=None):
    """Gradient (P2) of :func:`max_pool2d` with respect to ``x``."""
    return _max_pool2d_backward(dy, x, size, size if stride is None else stride)


def avg_pool2d(x, size, stride=None):
    """Average pooling (A1)."""
    return _avg_pool2d(x, size, size if stride is None else stride)


def avg_pool2d_backward(dy, x, size, stride=None):
    """Gradient (A2) of :func:`avg_pool2d` with respect to ``x``."""
    return _avg_pool2d_backward(dy, x, size, size if stride is None else stride)


# ----------------------------------------------------------------------------------------------
# dense
# ----------------------------------------------------------------------------------------------
@kernel
def _dense(x, w, b):
    N, I = x.shape
    O = w.shape[1]
    y = np.empty((N, O), dtype=x.dtype)
    for n in range(N):
        for o in range(O):
            acc = b[o]                          # (D1) y[n,o] = b[o] + Σ_i x[n,i] w[i,o]
            for i in range(I):
                acc += x[n, i] * w[i, o]
            y[n, o] = acc
    return y


@kernel
def _dense_backward(dy, x, w):
    N, I = x.shape
    O = w.shape[1]
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    db = np.zeros(O, dtype=x.dtype)
    for n in range(N):
        for o in range(O):
            g = dy[n, o]
            db[o] += g                          # (D4) db[o]   = Σ_n dy[n,o]
            for i in range(I):
                dx[n, i] += g * w[i, o]         # (D2) dx[n,i] = Σ_o dy[n,o] w[i,o]
                dw[i, o] += g * x[n, i]         # (D3) dw[i,o] = Σ_n x[n,i] dy[n,o]
    return dx, dw, db


def dense(x, w, b):
    """Affine map (D1): ``y = x @ w + b`` with ``x (N, I)``, ``w (I, O)``, ``b (O,)``."""
    return _dense(x, w, b)


def dense_backward(dy, x, w):
    """Gradients (D2)-(D4) of :func:`dense`: returns ``(dx, dw, db)``."""
    return _dense_backward(dy, x, w)


# ----------------------------------------------------------------------------------------------
# activations (elementwise over the flattened array; softmax over the last axis)
# ----------------------------------------------------------------------------------------------
def relu(x):
    """(R1) ``relu(x) = max(x, 0)``."""
    y = x.copy()
    flat = y.reshape(-1)
    for k in range(flat.size):
        if not flat[k] > 0:
            flat[k] = 0
    return y


def relu_backward(dy, x):
    """(R2) ``dx = dy · [x > 0]``: relu is the identity where x > 0 and constant 0 elsewhere
    (the kink at 0 gets derivative 0, as in PyTorch).  Since ``y = max(x, 0) > 0 ⟺ x > 0``,
    (R2) is also ``dx = dy · [y > 0]``: the output may stand in for ``x`` (the ReLU layer keeps
    only ``y``, as torch's in-place ReLU does)."""
    dx = np.zeros_like(dy)
    dxf, dyf, xf = dx.reshape(-1), dy.reshape(-1), x.reshape(-1)
    for k in range(dyf.size):
        if xf[k] > 0:
            dxf[k] = dyf[k]                     # (R2)
    return dx


def sigmoid(x):
    """(S1) ``σ(x) = 1/(1+e^{−x})``, evaluated as ``e^{x}/(1+e^{x})`` for x < 0 (no overflow)."""
    y = np.empty_like(x)
    xf, yf = x.reshape(-1), y.reshape(-1)
    for k in range(xf.size):
        v = float(xf[k])
        yf[k] = 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))
    return y


def sigmoid_backward(dy, y):
    """(S2) ``dx = dy · σ(x)(1 − σ(x)) = dy · y(1 − y)``, from the forward output ``y``:
    ``dσ/dx = e^{−x}/(1+e^{−x})² = σ(x)·(1 − σ(x))``."""
    dx = np.empty_like(dy)
    dxf, dyf, yf = dx.reshape(-1), dy.reshape(-1), y.reshape(-1)
    for k in range(dyf.size):
        dxf[k] = dyf[k] * yf[k] * (1 - yf[k])   # (S2)
    return dx


def softmax(x):
    """(SM1) ``softmax(x)_k = e^{x_k − m} / Σ_j e^{x_j − m}``, ``m = max_j x_j``, last axis."""
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    for r in range(rows.shape[0]):
        m = max(float(v) for v in rows[r])
        e = [math.exp(float(v) - m) for v in rows[r]]
        s = sum(e)
        for k in range(rows.shape[1]):
            out[r, k] = e[k] / s
    return out.reshape(x.shape)


def softmax_backward(dy, y):
    """(SM2) ``dx_k = Σ_j dy_j ∂y_j/∂x_k = y_k (dy_k − Σ_j dy_j y_j)``, last axis, from the
    forward output ``y``: ``∂y_j/∂x_k = y_j (δ_jk − y_k)``."""
    K = y.shape[-1]
    dyr, yr = dy.reshape(-1, K), y.reshape(-1, K)
    dx = np.empty_like(dyr)
    for r in range(yr.shape[0]):
        dot = 0.0
        for j in range(K):
            dot += float(dyr[r, j]) * float(yr[r, j])
        for k in range(K):
            dx[r, k] = yr[r, k] * (dyr[r, k] - dot)   # (SM2)
    return dx.reshape(dy.shape)


# ----------------------------------------------------------------------------------------------
# losses (mean reduction, as torch.nn.functional's default)
# ----------------------------------------------------------------------------------------------
def cross_entropy(logits, labels):
    """(L1) ``L = (1/N) Σ_n [log Σ_k e^{z[n,k]} − z[n, y_n]]``;  (L2) ``dL/dz = (softmax(z) − onehot(y))/N``."""
    N, K = logits.shape
    p = softmax(logits)
    loss = 0.0
    for n in range(N):
        m = max(float(v) for v in logits[n])
        lse = m + math.log(sum(math.exp(float(v) - m) for v in logits[n]))
        loss += lse - float(logits[n, labels[n]])
    d = p.copy()
    for n in range(N):
        d[n, labels[n]] -= 1
    return logits.dtype.type(loss / N), (d / N).astype(logits.dtype)


def binary_cross_entropy(logits, targets):
    """(B1) ``L = mean[−t log σ(z) − (1−t) log(1−σ(z))] = mean[max(z,0) − z·t + log(1+e^{−|z|})]``;
    (B2) ``dL/dz = (σ(z) − t)/M`` with ``M`` the number of elements."""
    z, t = logits.reshape(-1), targets.reshape(-1)
    M = z.size
    loss = 0.0
    for k in range(M):
        v = float(z[k])
        loss += max(v, 0.0) - v * float(t[k]) + math.log1p(math.exp(-abs(v)))
    d = (sigmoid(logits) - targets) / M
    return logits.dtype.type(loss / M), d.astype(logits.dtype)


def mse(pred, target):
    """(M1) ``L = (1/M) Σ (pred − target)²``;  (M2) ``dL/dpred = 2 (pred − target)/M``."""
    diff = pred.reshape(-1) - target.reshape(-1)
    M = diff.size
    loss = 0.0
    for k in range(M):
        loss += float(diff[k]) ** 2
    return pred.dtype.type(loss / M), (2 * (pred - target) / M).astype(pred.dtype)


# ----------------------------------------------------------------------------------------------
# batch normalisation (per channel c; x is (N, C, H, W), or (N, C) read as (N, C, 1, 1))
# ----------------------------------------------------------------------------------------------
# M = N·H·W values per channel.  Training mode (batch statistics):
#
#   (BN1)  μ_c  = (1/M) Σ_{n,h,w} x[n,c,h,w]          σ²_c = (1/M) Σ_{n,h,w} (x[n,c,h,w] − μ_c)²
#   (BN2)  x̂ = (x − μ_c) / √(σ²_c + ε)                 y = γ_c · x̂ + β_c
#   (BN3)  dβ_c = Σ_{n,h,w} dy                          dγ_c = Σ_{n,h,w} dy · x̂
#   (BN4)  μ and σ² depend on x.  With dx̂ = γ_c·dy (chain rule through (BN2)):
#          dσ²_c = Σ dx̂ · (x − μ_c) · (−½)(σ²_c + ε)^(−3/2)
#          dμ_c  = −Σ dx̂ / √(σ²_c + ε)  +  dσ²_c · (−2/M) Σ (x − μ_c)      (the last sum is 0)
#          dx    = dx̂ / √(σ²_c + ε)  +  dσ²_c · 2(x − μ_c)/M  +  dμ_c / M
#          which simplifies to  dx = γ_c / (M √(σ²_c + ε)) · (M·dy − dβ_c − x̂·dγ_c).
#   Inference mode (running statistics r_μ, r_σ², constants):
#   (BN5)  y = γ_c (x − r_μ) / √(r_σ² + ε) + β_c        dx = γ_c · dy / √(r_σ² + ε)
#          (dγ, dβ as (BN3) with x̂ from the running statistics)
#   Running statistics after a training step (PyTorch's momentum convention, m = momentum):
#   (BN6)  r_μ ← (1 − m)·r_μ + m·μ_c                    r_σ² ← (1 − m)·r_σ² + m·σ²_c·M/(M − 1)
#          (biased σ² normalises, the unbiased estimate is what is remembered)
@kernel
def _batch_norm(x, gamma, beta, mean, var, eps, batch_stats):
    N, C, H, W = x.shape
    M = N * H * W
    y = np.empty_like(x)
    mu = np.zeros(C)
    sig2 = np.zeros(C)
    for c in range(C):
        if batch_stats:
            for n in range(N):
                for h in range(H):
                    for w in range(W):
                        mu[c] += x[n, c, h, w] / M                          # (BN1)
            for n in range(N):
                for h in range(H):
                    for w in range(W):
                        sig2[c] += (x[n, c, h, w] - mu[c]) ** 2 / M         # (BN1)
        else:
            mu[c], sig2[c] = mean[c], var[c]                                # (BN5)
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    xhat = (x[n, c, h, w] - mu[c]) / math.sqrt(sig2[c] + eps)   # (BN2)
                    y[n, c, h, w] = gamma[c] * xhat + beta[c]
    return y, mu, sig2


@kernel
def _batch_norm_backward(dy, x, gamma, mean, var, eps, batch_stats):
    N, C, H, W = x.shape
    M = N * H * W
    _, mu, sig2 = _batch_norm(x, gamma, gamma, mean, var, eps, batch_stats)
    dx = np.zeros_like(x)
    dgamma = np.zeros_like(gamma)
    dbeta = np.zeros_like(gamma)
    for c in range(C):
        root = math.sqrt(sig2[c] + eps)
        dsig2 = 0.0
        dmu = 0.0
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    xhat = (x[n, c, h, w] - mu[c]) / root
                    dbeta[c] += dy[n, c, h, w]                              # (BN3)
                    dgamma[c] += dy[n, c, h, w] * xhat                      # (BN3)
                    dxhat = gamma[c] * dy[n, c, h, w]
                    dsig2 += dxhat * (x[n, c, h, w] - mu[c]) * -0.5 / root ** 3   # (BN4)
                    dmu += -dxhat / root                                    # (BN4)
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    dxhat = gamma[c] * dy[n, c, h, w]
                    if batch_stats:                                         # (BN4)
                        dx[n, c, h, w] = dxhat / root + dsig2 * 2 * (x[n, c, h, w] - mu[c]) / M + dmu / M
                    else:                                                   # (BN5)
                        dx[n, c, h, w] = dxhat / root
    return dx, dgamma, dbeta


def _as_nchw(x):
    return x.reshape(x.shape[0], x.shape[1], 1, 1) if x.ndim == 2 else x


def batch_norm(x, gamma, beta, mean=None, var=None, eps=1e-5):
    """(BN2) with the batch statistics (BN1), or with ``mean``/``var`` given (BN5):
    ``x (N, C, H, W)`` or ``(N, C)``, ``gamma``/``beta``/``mean``/``var`` ``(C,)``."""
    batch_stats = mean is None
    zeros = np.zeros(x.shape[1], dtype=x.dtype)
    y, _, _ = _batch_norm(_as_nchw(x), gamma, beta, zeros if batch_stats else mean,
                          zeros if batch_stats else var, eps, batch_stats)
    return y.reshape(x.shape)


def batch_norm_backward(dy, x, gamma, mean=None, var=None, eps=1e-5):
    """Gradients (BN3), (BN4) — or (BN5) when ``mean``/``var`` are given — of
    :func:`batch_norm`: returns ``(dx, dgamma, dbeta)``."""
    batch_stats = mean is None
    zeros = np.zeros(x.shape[1], dtype=x.dtype)
    dx, dgamma, dbeta = _batch_norm_backward(_as_nchw(dy), _as_nchw(x), gamma, zeros if batch_stats else mean,
                                             zeros if batch_stats else var, eps, batch_stats)
    return dx.reshape(x.shape), dgamma, dbeta


def batch_norm_running_update(running_mean, running_var, x, momentum=0.1):
    """(BN6): the running statistics after one training step on ``x`` (new arrays)."""
    x4 = _as_nchw(x)
    N, C, H, W = x4.shape
    M = N * H * W
    new_mean, new_var = running_mean.copy(), running_var.copy()
    for c in range(C):
        mu = sum(float(v) for v in x4[:, c].reshape(-1)) / M                # (BN1)
        sig2 = sum((float(v) - mu) ** 2 for v in x4[:, c].reshape(-1)) / M
        new_mean[c] = (1 - momentum) * running_mean[c] + momentum * mu      # (BN6)
        new_var[c] = (1 - momentum) * running_var[c] + momentum * sig2 * M / (M - 1)
    return new_mean, new_var


# ----------------------------------------------------------------------------------------------
# dropout (elementwise over the flat C-order array)
# ----------------------------------------------------------------------------------------------
_U64 = 2**64 - 1


def _splitmix_finaliser(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64
    return z ^ (z >> 31)


def dropout_mask(shape, rate, seed, call=0):
    """(DO3) ``keep[k] = u_k ≥ rate``, ``u_k = (z_k >> 11)·2⁻⁵³``, ``z_k = mix(base + (k+1)·γ)``,
    ``base = mix(mix(seed) + call)``: the k-th SplitMix64 output from ``base`` (mod 2⁶⁴,
    ``γ = 0x9E3779B97F4A7C15``, ``mix`` = SplitMix64's finaliser)."""
    base = _splitmix_finaliser((_splitmix_finaliser(seed) + call) & _U64)
    keep = np.empty(int(np.prod(shape)), dtype=bool)
    for k in range(keep.size):
        z = _splitmix_finaliser((base + (k + 1) * 0x9E3779B97F4A7C15) & _U64)
        keep[k] = (z >> 11) * 2.0**-53 >= rate                              # (DO3)
    return keep.reshape(shape)


def dropout(x, mask, rate):
    """(DO1) inverted dropout ``y = x·keep/(1 − rate)``: kept inputs scaled so E[y] = x."""
    y = np.zeros_like(x)
    xf, yf, mf = x.reshape(-1), y.reshape(-1), mask.reshape(-1)
    for k in range(xf.size):
        if mf[k]:
            yf[k] = xf[k] / (1 - rate)                                      # (DO1)
    return y


def dropout_backward(dy, mask, rate):
    """(DO2) ``dx = dy·keep/(1 − rate)``: y is linear in x with slope keep/(1 − rate)."""
    return dropout(dy, mask, rate)


# ----------------------------------------------------------------------------------------------
# adaptive / global average pooling
# ----------------------------------------------------------------------------------------------
# Output (Ho, Wo) from input (H, W) with PyTorch's bins: output row i averages input rows
#   (AP1)  h ∈ [floor(i·H/Ho), ceil((i+1)·H/Ho))      (columns likewise with W, Wo)
#          y[n,c,i,j] = (1/|bin|) Σ_{h,w in bin (i,j)} x[n,c,h,w]
#   (AP2)  dx[n,c,h,w] = Σ_{bins (i,j) containing (h,w)} dy[n,c,i,j] / |bin (i,j)|
# Bins cover the input, have sizes differing by at most one, and overlap by one row where
# H/Ho is not an integer.  Global average pooling is (AP1) with Ho = Wo = 1, flattened.
@kernel
def adaptive_bin(i, size, out):
    """``[start, end)`` of output position ``i``: ``floor(i·size/out)``, ``ceil((i+1)·size/out)``."""
    return (i * size) // out, -((-(i + 1) * size) // out)


@kernel
def _adaptive_avg_pool2d(x, Ho, Wo):
    N, C, H, W = x.shape
    y = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                h0, h1 = adaptive_bin(i, H, Ho)
                for j in range(Wo):
                    w0, w1 = adaptive_bin(j, W, Wo)
                    acc = x[n, c, 0, 0] * 0
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            acc += x[n, c, h, w]                            # (AP1)
                    y[n, c, i, j] = acc / ((h1 - h0) * (w1 - w0))
    return y


@kernel
def _adaptive_avg_pool2d_backward(dy, x):
    N, C, H, W = x.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                h0, h1 = adaptive_bin(i, H, Ho)
                for j in range(Wo):
                    w0, w1 = adaptive_bin(j, W, Wo)
                    g = dy[n, c, i, j] / ((h1 - h0) * (w1 - w0))
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            dx[n, c, h, w] += g                             # (AP2)
    return dx


def adaptive_avg_pool2d(x, output_size):
    """(AP1): ``(N, C, H, W) → (N, C, Ho, Wo)`` with ``output_size = (Ho, Wo)`` (or one int)."""
    Ho, Wo = (output_size, output_size) if np.ndim(output_size) == 0 else output_size
    return _adaptive_avg_pool2d(x, Ho, Wo)


def adaptive_avg_pool2d_backward(dy, x, output_size):
    """Gradient (AP2) of :func:`adaptive_avg_pool2d` with respect to ``x``."""
    return _adaptive_avg_pool2d_backward(dy, x)


def global_avg_pool2d(x):
    """Mean over each ``(H, W)`` plane: ``(N, C, H, W) → (N, C)``, (AP1) with a 1×1 output."""
    return _adaptive_avg_pool2d(x, 1, 1).reshape(x.shape[0], x.shape[1])


def global_avg_pool2d_backward(dy, x):
    """Gradient of :func:`global_avg_pool2d`: ``dy[n,c]/(H·W)`` to every position, (AP2)."""
    return _adaptive_avg_pool2d_backward(dy.reshape(dy.shape[0], dy.shape[1], 1, 1), x)
