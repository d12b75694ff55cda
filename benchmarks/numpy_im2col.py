"""The NumPy baseline nptl is compared with: im2col by ``sliding_window_view`` plus one BLAS matmul.

Same signatures and layout as ``nptl.ops`` (NCHW activations, (F, C, KH, KW) weights,
dense weights (in, out)), so the benchmark can also check that both give the same numbers.

    Forward   y[n,f,i,j] = b[f] + Σ_c Σ_p Σ_q x[n,c,i·s+p,j·s+q] · w[f,c,p,q]
    im2col    cols[(n,i,j), (c,p,q)] = x[n,c,i·s+p,j·s+q]   so   y = cols @ w.reshape(F, -1).T
    Backward  dw = dy_mat.T @ cols,   dcols = dy_mat @ w_mat,   dx = col2im(dcols)
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pad(x, padding):
    if padding == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def _windows(x, KH, KW, stride):
    """View (N, C, Ho, Wo, KH, KW) of the windows of x (no copy)."""
    return sliding_window_view(x, (KH, KW), axis=(2, 3))[:, :, ::stride, ::stride]


def _im2col(x, KH, KW, stride, padding):
    """cols of shape (N*Ho*Wo, C*KH*KW) (one copy), and (Ho, Wo)."""
    win = _windows(_pad(x, padding), KH, KW, stride)
    N, C, Ho, Wo = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(N * Ho * Wo, C * KH * KW)
    return cols, Ho, Wo


def conv2d(x, w, b=None, stride=1, padding=0):
    N = x.shape[0]
    F, C, KH, KW = w.shape
    cols, Ho, Wo = _im2col(x, KH, KW, stride, padding)
    y = cols @ w.reshape(F, -1).T                       # (N*Ho*Wo, F)
    if b is not None:
        y += b
    return np.ascontiguousarray(y.reshape(N, Ho, Wo, F).transpose(0, 3, 1, 2))


def conv2d_backward(dy, x, w, stride=1, padding=0):
    """Return (dx, dw, db) for y = conv2d(x, w, b, stride, padding)."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    cols, Ho, Wo = _im2col(x, KH, KW, stride, padding)
    dy_mat = dy.transpose(0, 2, 3, 1).reshape(N * Ho * Wo, F)
    dw = (dy_mat.T @ cols).reshape(w.shape)
    db = dy.sum(axis=(0, 2, 3))
    dcols = (dy_mat @ w.reshape(F, -1)).reshape(N, Ho, Wo, C, KH, KW)
    dxp = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=x.dtype)
    for p in range(KH):                                  # col2im: scatter-add each tap
        for q in range(KW):
            dxp[:, :, p:p + stride * Ho:stride, q:q + stride * Wo:stride] += \
                dcols[:, :, :, :, p, q].transpose(0, 3, 1, 2)
    dx = dxp[:, :, padding:padding + H, padding:padding + W] if padding else dxp
    return dx, dw, db


def max_pool2d(x, size, stride=None):
    stride = stride or size
    return _windows(x, size, size, stride).max(axis=(4, 5))


def max_pool2d_backward(dy, x, size, stride=None):
    """dx gets dy at the (first) arg-max of each window."""
    stride = stride or size
    win = _windows(x, size, size, stride)
    N, C, Ho, Wo = win.shape[:4]
    arg = win.reshape(N, C, Ho, Wo, size * size).argmax(axis=4)
    dx = np.zeros_like(x)
    n, c, i, j = np.indices((N, C, Ho, Wo), sparse=True)
    np.add.at(dx, (n, c, i * stride + arg // size, j * stride + arg % size), dy)
    return dx


def avg_pool2d(x, size, stride=None):
    stride = stride or size
    return _windows(x, size, size, stride).mean(axis=(4, 5), dtype=x.dtype)


def avg_pool2d_backward(dy, x, size, stride=None):
    stride = stride or size
    Ho, Wo = dy.shape[2:]
    dx = np.zeros_like(x)
    g = dy / (size * size)
    for p in range(size):
        for q in range(size):
            dx[:, :, p:p + stride * Ho:stride, q:q + stride * Wo:stride] += g
    return dx


def dense(x, w, b):
    return x @ w + b


def dense_backward(dy, x, w):
    return dy @ w.T, x.T @ dy, dy.sum(axis=0)


# -- the layers family: whole-array NumPy (no im2col involved), same signatures as nptl.ops ------
def _channel_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def batch_norm(x, gamma, beta, mean=None, var=None, eps=1e-5):
    axes = _channel_axes(x)
    if mean is None:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    s = 1 / np.sqrt(var + eps)
    return (x - _per_channel(mean, x)) * _per_channel(gamma * s, x) + _per_channel(beta, x)


def batch_norm_backward(dy, x, gamma, mean=None, var=None, eps=1e-5):
    axes = _channel_axes(x)
    batch = mean is None
    if batch:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    s = 1 / np.sqrt(var + eps)
    xhat = (x - _per_channel(mean, x)) * _per_channel(s, x)
    dbeta, dgamma = dy.sum(axis=axes), (dy * xhat).sum(axis=axes)
    if not batch:
        return dy * _per_channel(gamma * s, x), dgamma, dbeta
    M = x.size // x.shape[1]
    dx = _per_channel(gamma * s / M, x) * (M * dy - _per_channel(dbeta, x) - xhat * _per_channel(dgamma, x))
    return dx, dgamma, dbeta


def global_avg_pool2d(x):
    return x.mean(axis=(2, 3), dtype=x.dtype)


def global_avg_pool2d_backward(dy, x):
    return np.broadcast_to((dy / (x.shape[2] * x.shape[3]))[:, :, None, None], x.shape).copy()


def _bins(size, out):
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_pool2d(x, output_size):
    Ho, Wo = (output_size, output_size) if np.ndim(output_size) == 0 else output_size
    y = np.empty(x.shape[:2] + (Ho, Wo), x.dtype)
    for i, (h0, h1) in enumerate(_bins(x.shape[2], Ho)):
        for j, (w0, w1) in enumerate(_bins(x.shape[3], Wo)):
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward(dy, x, output_size):
    Ho, Wo = dy.shape[2:]
    dx = np.zeros_like(x)
    for i, (h0, h1) in enumerate(_bins(x.shape[2], Ho)):
        for j, (w0, w1) in enumerate(_bins(x.shape[3], Wo)):
            dx[:, :, h0:h1, w0:w1] += (dy[:, :, i, j] / ((h1 - h0) * (w1 - w0)))[:, :, None, None]
    return dx


def _splitmix_finaliser(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def dropout_mask(shape, rate, seed, call=0):
    """nptl's mask formula (DO3) in whole-array uint64 NumPy (arrays wrap mod 2⁶⁴ silently)."""
    base = _splitmix_finaliser(_splitmix_finaliser(np.array([seed], np.uint64)) + np.uint64(call))
    k = np.arange(1, int(np.prod(shape)) + 1, dtype=np.uint64)
    z = _splitmix_finaliser(base + k * np.uint64(0x9E3779B97F4A7C15))
    return ((z >> np.uint64(11)) * 2.0**-53 >= rate).reshape(shape)


def dropout(x, mask, rate):
    return np.where(mask, x * x.dtype.type(1 / (1 - rate)), x.dtype.type(0))


def dropout_backward(dy, mask, rate):
    return dropout(dy, mask, rate)
