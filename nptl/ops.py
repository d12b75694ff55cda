"""The functional API: every op of nptl, checked and dispatched to its fast kernel.

Each function validates its arguments (rank, shapes, channel counts, geometry, label range),
converts them to one C-contiguous float dtype — the dtype of the first argument when it is
float32 or float64 — and calls the Numba/BLAS kernels in :mod:`nptl.kernels`.  Outputs keep
that dtype.  The formulas and their derivations live in the kernels' docstrings and in
:mod:`nptl.kernels.reference`, whose functions have exactly these names and signatures.

Layout: NCHW activations, ``(F, C, KH, KW)`` conv weights, ``(C, F, KH, KW)`` transposed-conv
weights (as torch), ``(in, out)`` dense weights.
"""
from __future__ import annotations

import numbers

import numpy as np

from ._checks import as_array, check_finite, check_int, check_ndim, check_shape, compute_dtype
from .kernels import activations as _act
from .kernels import conv2d as _conv
from .kernels import conv_transpose2d as _convt
from .kernels import dense as _dense
from .kernels import dropout as _dropout
from .kernels import losses as _loss
from .kernels import norm as _norm
from .kernels import pool as _pool
from .kernels import upsample as _up
from .kernels.reference import conv_output_size
from .settings import ensure_configured

__all__ = [
    "conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
    "avg_pool2d_backward", "dense", "dense_backward", "relu", "relu_backward", "sigmoid",
    "sigmoid_backward", "softmax", "softmax_backward",
    "cross_entropy", "binary_cross_entropy", "mse", "conv2d_output_shape", "pool2d_output_shape",
    "batch_norm", "batch_norm_backward", "dropout", "dropout_backward", "dropout_mask",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "global_avg_pool2d", "global_avg_pool2d_backward",
    "adaptive_pool2d_output_size",
    "conv_transpose2d", "conv_transpose2d_backward", "conv_transpose2d_output_shape",
    "upsample2d", "upsample2d_backward", "upsample_factors",
]


# ----------------------------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------------------------
def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, where="conv2d"):
    """``(N, F, Ho, Wo)`` for input ``x_shape`` and weights ``w_shape``; raises on invalid geometry.

    >>> conv2d_output_shape((64, 1, 28, 28), (32, 1, 3, 3))
    (64, 32, 26, 26)
    """
    stride = check_int(stride, "stride", where, 1)
    padding = check_int(padding, "padding", where, 0)
    N, C, H, W = x_shape
    F, Cw, KH, KW = w_shape
    if Cw != C:
        raise ValueError(
            f"{where}: channel mismatch: input has {C} channels (x shape {tuple(x_shape)}) "
            f"but weights expect {Cw} (w shape {tuple(w_shape)})"
        )
    if KH < 1 or KW < 1:
        raise ValueError(f"{where}: kernel size must be >= 1, got {KH}x{KW}")
    if KH > H + 2 * padding or KW > W + 2 * padding:
        raise ValueError(
            f"{where}: kernel {KH}x{KW} is larger than the padded input "
            f"{H + 2 * padding}x{W + 2 * padding} (input {H}x{W}, padding {padding})"
        )
    return (N, F, conv_output_size(H, KH, stride, padding), conv_output_size(W, KW, stride, padding))


def pool2d_output_shape(x_shape, size, stride=None, where="pool2d"):
    """``(N, C, Ho, Wo)`` of a ``size×size`` pooling with ``stride`` (default ``size``).

    >>> pool2d_output_shape((64, 32, 26, 26), 2)
    (64, 32, 13, 13)
    """
    size = check_int(size, "size", where, 1)
    stride = size if stride is None else check_int(stride, "stride", where, 1)
    N, C, H, W = x_shape
    if size > H or size > W:
        raise ValueError(f"{where}: pool size {size} is larger than the input {H}x{W}")
    return (N, C, conv_output_size(H, size, stride, 0), conv_output_size(W, size, stride, 0))


def conv_transpose2d_output_shape(x_shape, w_shape, stride=1, padding=0, output_padding=0,
                                  where="conv_transpose2d"):
    """``(N, F, Ho, Wo)``, ``Ho = (H−1)·s − 2P + KH + op``, for input ``x_shape`` and weights
    ``w_shape (C, F, KH, KW)``; raises on invalid geometry."""
    stride = check_int(stride, "stride", where, 1)
    padding = check_int(padding, "padding", where, 0)
    output_padding = check_int(output_padding, "output_padding", where, 0)
    N, C, H, W = x_shape
    Cw, F, KH, KW = w_shape
    if Cw != C:
        raise ValueError(
            f"{where}: channel mismatch: input has {C} channels (x shape {tuple(x_shape)}) "
            f"but weights (C, F, KH, KW) expect {Cw} (w shape {tuple(w_shape)})"
        )
    if KH < 1 or KW < 1:
        raise ValueError(f"{where}: kernel size must be >= 1, got {KH}x{KW}")
    if output_padding >= stride:
        raise ValueError(f"{where}: 'output_padding' must be smaller than 'stride' ({stride}), got {output_padding}")
    Ho = (H - 1) * stride - 2 * padding + KH + output_padding
    Wo = (W - 1) * stride - 2 * padding + KW + output_padding
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"{where}: padding {padding} crops the whole output: (H−1)·s − 2P + KH + op = {Ho}x{Wo} "
            f"for input {H}x{W}, kernel {KH}x{KW}, stride {stride}"
        )
    return (N, F, Ho, Wo)


def upsample_factors(size, where="upsample2d") -> tuple[int, int]:
    """``(sh, sw)`` from ``size`` = an integer or a pair of integers >= 1."""
    pair = (size, size) if np.isscalar(size) else tuple(size)
    if len(pair) != 2:
        raise ValueError(f"{where}: 'size' must be an integer or a pair (sh, sw), got {size!r}")
    return tuple(check_int(s, "size", where, 1) for s in pair)


def _nchw(x, name, where, dtype=None):
    ensure_configured()  # the first op computation applies the process settings (nptl.settings)
    dt = compute_dtype(x, where) if dtype is None else dtype
    arr = as_array(x, name, dt, where)
    check_ndim(arr, 4, name, "(N, C, H, W)", where)
    return arr


# ----------------------------------------------------------------------------------------------
# conv2d
# ----------------------------------------------------------------------------------------------
def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D cross-correlation with bias, stride and zero padding (C1).

    Parameters
    ----------
    x : (N, C, H, W) array
    w : (F, C, KH, KW) array
    b : (F,) array or None (no bias)
    stride, padding : int, ``>= 1`` and ``>= 0``

    Returns
    -------
    y : (N, F, Ho, Wo) array, ``Ho = (H + 2·padding − KH)//stride + 1`` (same for ``Wo``),
        ``y[n,f,i,j] = b[f] + Σ_c Σ_p Σ_q xp[n,c,i·s+p,j·s+q] · w[f,c,p,q]``

    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> conv2d(x, np.ones((1, 1, 2, 2)))[0, 0]                # sums of 2×2 windows
    array([[ 8., 12.],
           [20., 24.]])
    >>> conv2d(x, np.ones((1, 1, 2, 2)), np.array([0.5]), stride=2, padding=1).shape
    (1, 1, 2, 2)
    """
    where = "conv2d"
    x = _nchw(x, "x", where)
    w = _nchw(w, "w", where, x.dtype)
    N, F, Ho, Wo = conv2d_output_shape(x.shape, w.shape, stride, padding, where)
    b = np.zeros(F, x.dtype) if b is None else as_array(b, "b", x.dtype, where)
    check_shape(b, (F,), "b", where)
    return _conv.conv2d_forward(x, w, b, int(stride), int(padding))


def conv2d_backward(dy, x, w, stride=1, padding=0):
    """Gradients of :func:`conv2d` — (C2), (C3), (C4) of :mod:`nptl.kernels.reference`.

    Parameters
    ----------
    dy : (N, F, Ho, Wo) array, gradient of the loss w.r.t. ``y``
    x, w, stride, padding : as given to :func:`conv2d` (the bias does not enter the gradients)

    Returns
    -------
    (dx (N, C, H, W), dw (F, C, KH, KW), db (F,))

    >>> x, w = np.ones((2, 1, 3, 3)), np.ones((4, 1, 2, 2))
    >>> dx, dw, db = conv2d_backward(np.ones((2, 4, 2, 2)), x, w)
    >>> dx[0, 0]                     # how many (filter, output) pairs read each input
    array([[ 4.,  8.,  4.],
           [ 8., 16.,  8.],
           [ 4.,  8.,  4.]])
    >>> db                            # 2 images × 2×2 outputs per filter
    array([8., 8., 8., 8.])
    """
    where = "conv2d_backward"
    x = _nchw(x, "x", where)
    w = _nchw(w, "w", where, x.dtype)
    dy = _nchw(dy, "dy", where, x.dtype)
    out_shape = conv2d_output_shape(x.shape, w.shape, stride, padding, where)
    check_shape(dy, out_shape, "dy", where)
    stride, padding = int(stride), int(padding)
    return _conv.conv2d_backward(dy, x, w, stride, padding)  # one fused pass


# ----------------------------------------------------------------------------------------------
# transposed convolution and upsampling
# ----------------------------------------------------------------------------------------------
def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution (T1), the adjoint of :func:`conv2d` in its input.

    ``x (N, C, H, W)``, ``w (C, F, KH, KW)`` (torch's layout), ``b (F,)`` or None →
    ``y (N, F, Ho, Wo)``, ``Ho = (H−1)·s − 2P + KH + output_padding``.  Computed as conv2d's
    input gradient (C2) with ``dy := x`` (:mod:`nptl.kernels.conv_transpose2d`).
    """
    where = "conv_transpose2d"
    x = _nchw(x, "x", where)
    w = _nchw(w, "w", where, x.dtype)
    N, F, Ho, Wo = conv_transpose2d_output_shape(x.shape, w.shape, stride, padding, output_padding, where)
    b = np.zeros(F, x.dtype) if b is None else as_array(b, "b", x.dtype, where)
    check_shape(b, (F,), "b", where)
    return _convt.conv_transpose2d_forward(x, w, b, int(stride), int(padding), int(output_padding))


def conv_transpose2d_backward(dy, x, w, stride=1, padding=0, output_padding=0):
    """Gradients of :func:`conv_transpose2d`: ``(dx, dw, db)`` — (T2) = conv2d (C1) of dy,
    (T3) = conv2d (C3) with x and dy exchanged, (T4)."""
    where = "conv_transpose2d_backward"
    x = _nchw(x, "x", where)
    w = _nchw(w, "w", where, x.dtype)
    dy = _nchw(dy, "dy", where, x.dtype)
    out_shape = conv_transpose2d_output_shape(x.shape, w.shape, stride, padding, output_padding, where)
    check_shape(dy, out_shape, "dy", where)
    stride, padding = int(stride), int(padding)
    return _convt.conv_transpose2d_backward(dy, x, w, stride, padding)


def upsample2d(x, size):
    """Nearest-neighbour upsampling by integer factors (U1): ``size`` = s or (sh, sw),
    ``(N, C, H, W) → (N, C, H·sh, W·sw)``."""
    where = "upsample2d"
    x = _nchw(x, "x", where)
    sh, sw = upsample_factors(size, where)
    return _up.upsample2d_forward(x, sh, sw)


def upsample2d_backward(dy, x, size):
    """Gradient of :func:`upsample2d` (U2): each input pixel gets the sum of its ``sh×sw`` block."""
    where = "upsample2d_backward"
    x = _nchw(x, "x", where)
    dy = _nchw(dy, "dy", where, x.dtype)
    sh, sw = upsample_factors(size, where)
    N, C, H, W = x.shape
    check_shape(dy, (N, C, H * sh, W * sw), "dy", where)
    return _up.upsample2d_backward(dy, sh, sw)


# ----------------------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------------------
def max_pool2d(x, size, stride=None):
    """Max pooling over ``size×size`` windows (P1): ``y[n,c,i,j] = max_{p,q} x[n,c,i·s+p,j·s+q]``;
    a window holding a NaN gives NaN (as in PyTorch).

    Parameters
    ----------
    x : (N, C, H, W) array
    size : int, window side
    stride : int or None (``size``: windows side by side)

    Returns
    -------
    y : (N, C, Ho, Wo) array, ``Ho = (H − size)//stride + 1`` (same for ``Wo``)

    >>> max_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2)[0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    where = "max_pool2d"
    x = _nchw(x, "x", where)
    pool2d_output_shape(x.shape, size, stride, where)
    size, stride = int(size), int(size if stride is None else stride)
    if size == 2 and stride == 2:
        return _pool.max_pool2d_forward_2x2(x)
    y, _ = _pool.max_pool2d_forward(x, size, stride)
    return y


def max_pool2d_backward(dy, x, size, stride=None):
    """Gradient of :func:`max_pool2d` (P2): each ``dy`` goes to its window's first maximum
    (row-major, as PyTorch; to its last NaN when the window holds NaN).

    Parameters
    ----------
    dy : (N, C, Ho, Wo) array;  x, size, stride : as given to :func:`max_pool2d`

    Returns
    -------
    dx : (N, C, H, W) array

    >>> x = np.array([[[[1.0, 3.0], [3.0, 0.0]]]])           # a tie: the first 3 wins
    >>> max_pool2d_backward(np.array([[[[5.0]]]]), x, 2)[0, 0]
    array([[0., 5.],
           [0., 0.]])
    """
    where = "max_pool2d_backward"
    x = _nchw(x, "x", where)
    dy = _nchw(dy, "dy", where, x.dtype)
    check_shape(dy, pool2d_output_shape(x.shape, size, stride, where), "dy", where)
    size, stride = int(size), int(size if stride is None else stride)
    _, arg = _pool.max_pool2d_forward(x, size, stride)
    return _pool.max_pool2d_backward(dy, arg, x.shape[2], x.shape[3])


def avg_pool2d(x, size, stride=None):
    """Average pooling over ``size×size`` windows (A1): ``y = (1/size²) Σ_window x``.

    Parameters
    ----------
    x : (N, C, H, W) array;  size : int;  stride : int or None (``size``)

    Returns
    -------
    y : (N, C, Ho, Wo) array, ``Ho = (H − size)//stride + 1`` (same for ``Wo``)

    >>> avg_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2)[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    where = "avg_pool2d"
    x = _nchw(x, "x", where)
    pool2d_output_shape(x.shape, size, stride, where)
    return _pool.avg_pool2d_forward(x, int(size), int(size if stride is None else stride))


def avg_pool2d_backward(dy, x, size, stride=None):
    """Gradient of :func:`avg_pool2d` (A2): ``dy/size²`` to every input of the window.

    Parameters
    ----------
    dy : (N, C, Ho, Wo) array;  x, size, stride : as given to :func:`avg_pool2d`

    Returns
    -------
    dx : (N, C, H, W) array

    >>> avg_pool2d_backward(np.array([[[[4.0]]]]), np.zeros((1, 1, 2, 2)), 2)[0, 0]
    array([[1., 1.],
           [1., 1.]])
    """
    where = "avg_pool2d_backward"
    x = _nchw(x, "x", where)
    dy = _nchw(dy, "dy", where, x.dtype)
    check_shape(dy, pool2d_output_shape(x.shape, size, stride, where), "dy", where)
    s = int(size if stride is None else stride)
    return _pool.avg_pool2d_backward(dy, x.shape[2], x.shape[3], int(size), s)


# ----------------------------------------------------------------------------------------------
# dense
# ----------------------------------------------------------------------------------------------
def _dense_args(x, w, where):
    ensure_configured()
    dt = compute_dtype(x, where)
    x = as_array(x, "x", dt, where)
    w = as_array(w, "w", dt, where)
    check_ndim(x, 2, "x", "(N, in_features)", where)
    check_ndim(w, 2, "w", "(in_features, out_features)", where)
    if x.shape[1] != w.shape[0]:
        raise ValueError(
            f"{where}: x has {x.shape[1]} features (shape {x.shape}) but w expects "
            f"{w.shape[0]} (shape {w.shape})"
        )
    return x, w


def dense(x, w, b):
    """Affine map (D1): ``y = x @ w + b``.

    Parameters
    ----------
    x : (N, I) array;  w : (I, O) array;  b : (O,) array

    Returns
    -------
    y : (N, O) array

    >>> dense(np.array([[1.0, 2.0]]), np.array([[1.0, 0.0], [0.0, 10.0]]), np.array([0.5, 0.5]))
    array([[ 1.5, 20.5]])
    """
    where = "dense"
    x, w = _dense_args(x, w, where)
    b = as_array(b, "b", x.dtype, where)
    check_shape(b, (w.shape[1],), "b", where)
    return _dense.dense_forward(x, w, b)


def dense_backward(dy, x, w):
    """Gradients of :func:`dense` — (D2) ``dx = dy @ wᵀ``, (D3) ``dw = xᵀ @ dy``, (D4) ``db = Σ_n dy``.

    Parameters
    ----------
    dy : (N, O) array;  x : (N, I) array;  w : (I, O) array

    Returns
    -------
    (dx (N, I), dw (I, O), db (O,))

    >>> dx, dw, db = dense_backward(np.ones((3, 2)), np.ones((3, 4)), np.ones((4, 2)))
    >>> dx.shape, dw.shape, db
    ((3, 4), (4, 2), array([3., 3.]))
    """
    where = "dense_backward"
    x, w = _dense_args(x, w, where)
    dy = as_array(dy, "dy", x.dtype, where)
    check_shape(dy, (x.shape[0], w.shape[1]), "dy", where)
    return _dense.dense_backward(dy, x, w)


def adaptive_pool2d_output_size(output_size, where="adaptive_avg_pool2d") -> tuple[int, int]:
    """``(Ho, Wo)`` from ``output_size``: one integer for both, or a pair, each >= 1."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"{where}: 'output_size' must be an integer or a pair (Ho, Wo), got {output_size!r}")
        return (check_int(output_size[0], "output_size[0]", where, 1),
                check_int(output_size[1], "output_size[1]", where, 1))
    size = check_int(output_size, "output_size", where, 1)
    return size, size


def adaptive_avg_pool2d(x, output_size):
    """Average pooling to a fixed ``output_size`` (AP1), with PyTorch's bins: output row ``i``
    averages input rows ``floor(i·H/Ho) ≤ h < ceil((i+1)·H/Ho)`` (columns likewise).

    ``x (N, C, H, W)`` → ``(N, C, Ho, Wo)``; any input size works (an output larger than the
    input repeats input rows, as in PyTorch)."""
    where = "adaptive_avg_pool2d"
    x = _nchw(x, "x", where)
    Ho, Wo = adaptive_pool2d_output_size(output_size, where)
    return _pool.adaptive_avg_pool2d_forward(x, Ho, Wo)


def adaptive_avg_pool2d_backward(dy, x, output_size):
    """Gradient of :func:`adaptive_avg_pool2d` (AP2): ``dy/|bin|`` to every input of each bin."""
    where = "adaptive_avg_pool2d_backward"
    x = _nchw(x, "x", where)
    dy = _nchw(dy, "dy", where, x.dtype)
    Ho, Wo = adaptive_pool2d_output_size(output_size, where)
    check_shape(dy, x.shape[:2] + (Ho, Wo), "dy", where)
    return _pool.adaptive_avg_pool2d_backward(dy, x.shape[2], x.shape[3])


def global_avg_pool2d(x):
    """Mean of every ``(H, W)`` plane: ``x (N, C, H, W)`` → ``(N, C)`` ((AP1) with a 1×1 output)."""
    x = _nchw(x, "x", "global_avg_pool2d")
    return _pool.global_avg_pool2d_forward(x)


def global_avg_pool2d_backward(dy, x):
    """Gradient of :func:`global_avg_pool2d`: ``dy[n,c]/(H·W)`` at every position (AP2)."""
    where = "global_avg_pool2d_backward"
    x = _nchw(x, "x", where)
    dy = as_array(dy, "dy", x.dtype, where)
    check_shape(dy, x.shape[:2], "dy", where)
    return _pool.global_avg_pool2d_backward(dy, x.shape[2], x.shape[3])


# ----------------------------------------------------------------------------------------------
# dropout
# ----------------------------------------------------------------------------------------------
def _dropout_rate(rate, where):
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= rate < 1.0:
        raise ValueError(f"{where}: 'rate' must be a number in [0, 1), got {rate!r}")
    return float(rate)


def _dropout_args(x, mask, rate, where, name="x"):
    rate = _dropout_rate(rate, where)
    x = as_array(x, name, compute_dtype(x, where, name), where)
    keep = np.asarray(mask)
    if keep.dtype != np.bool_:
        raise TypeError(f"{where}: 'mask' must be a boolean keep-mask, got dtype {keep.dtype}")
    check_shape(keep, x.shape, "mask", where)
    return x, np.ascontiguousarray(keep), x.dtype.type(1.0 / (1.0 - rate))


def dropout_mask(shape, rate, seed, call=0):
    """The boolean keep-mask (DO3) of call ``call`` of a dropout seeded ``seed``: element ``k``
    (flat C order) is kept iff ``u_k ≥ rate``, ``u_k`` the ``k``-th SplitMix64 uniform of the
    stream ``(seed, call)``; a pure function of ``(seed, call, k)``."""
    where = "dropout_mask"
    rate = _dropout_rate(rate, where)
    seed = check_int(seed, "seed", where, 0)
    call = check_int(call, "call", where, 0)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    shape = tuple(check_int(s, "shape", where, 0) for s in shape)
    return _dropout.dropout_mask(int(np.prod(shape, dtype=np.int64)), rate, seed, call).reshape(shape)


def dropout(x, mask, rate):
    """Inverted dropout (DO1): ``y = x·mask/(1 − rate)`` with a boolean keep-``mask`` of ``x``'s
    shape (e.g. from :func:`dropout_mask`), so that E[y] = x when P(keep) = 1 − rate."""
    x, keep, scale = _dropout_args(x, mask, rate, "dropout")
    return _dropout.dropout_forward(x.reshape(-1), keep.reshape(-1), scale).reshape(x.shape)


def dropout_backward(dy, mask, rate):
    """Gradient of :func:`dropout` (DO2): ``dx = dy·mask/(1 − rate)``."""
    dy, keep, scale = _dropout_args(dy, mask, rate, "dropout_backward", "dy")
    return _dropout.dropout_backward(dy.reshape(-1), keep.reshape(-1), scale).reshape(dy.shape)


# ----------------------------------------------------------------------------------------------
# batch normalisation
# ----------------------------------------------------------------------------------------------
def _batch_norm_args(x, gamma, mean, var, eps, where):
    """``x`` as ``(N, C, L)`` (from ``(N, C, H, W)`` or ``(N, C)``), ``gamma``, and the running
    statistics if given (both or neither), all checked and of ``x``'s dtype."""
    dt = compute_dtype(x, where)
    x = as_array(x, "x", dt, where)
    if x.ndim not in (2, 4):
        raise ValueError(f"{where}: argument 'x' must be 2-D (N, C) or 4-D (N, C, H, W), got shape {x.shape}")
    C = x.shape[1]
    gamma = as_array(gamma, "gamma", dt, where)
    check_shape(gamma, (C,), "gamma", where)
    if (mean is None) != (var is None):
        raise ValueError(f"{where}: give both 'mean' and 'var' (inference mode) or neither (batch statistics)")
    if mean is not None:
        mean = as_array(mean, "mean", np.float64, where)
        var = as_array(var, "var", np.float64, where)
        check_shape(mean, (C,), "mean", where)
        check_shape(var, (C,), "var", where)
    elif x.size // C < 2:
        raise ValueError(f"{where}: batch statistics need more than one value per channel, got x of shape "
                         f"{x.shape}; pass running 'mean' and 'var' for inference mode")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
        raise ValueError(f"{where}: 'eps' must be a positive number, got {eps!r}")
    return x.reshape(x.shape[0], C, -1), gamma, mean, var


def batch_norm(x, gamma, beta, mean=None, var=None, eps=1e-5):
    """Batch normalisation per channel (BN2): ``y = γ·(x − μ)/√(σ² + ε) + β``.

    ``x (N, C, H, W)`` or ``(N, C)``; ``gamma``, ``beta`` ``(C,)``.  Without ``mean``/``var``
    the batch's own mean and biased variance are used (training mode, (BN1)); with them
    (running statistics, ``(C,)``) the map is a fixed affine one (inference mode, (BN5)).
    Running statistics are not updated here (the layer does that, (BN6)).
    """
    where = "batch_norm"
    x3, gamma, mean, var = _batch_norm_args(x, gamma, mean, var, eps, where)
    beta = as_array(beta, "beta", x3.dtype, where)
    check_shape(beta, gamma.shape, "beta", where)
    y, _, _ = _norm.batch_norm_forward(x3, gamma, beta, float(eps), mean, var)
    return y.reshape(np.shape(x))


def batch_norm_backward(dy, x, gamma, mean=None, var=None, eps=1e-5):
    """Gradients of :func:`batch_norm`: ``(dx, dgamma, dbeta)`` — (BN3), and (BN4) with batch
    statistics or (BN5) with ``mean``/``var`` given."""
    where = "batch_norm_backward"
    x3, gamma, mean, var = _batch_norm_args(x, gamma, mean, var, eps, where)
    dy = as_array(dy, "dy", x3.dtype, where)
    check_shape(dy, np.shape(x), "dy", where)
    batch_stats = mean is None
    if batch_stats:
        mean, var = _norm.batch_norm_stats(x3)
    dx, dgamma, dbeta = _norm.batch_norm_backward(dy.reshape(x3.shape), x3, gamma, float(eps), mean, var,
                                                  batch_stats)
    return dx.reshape(dy.shape), dgamma, dbeta


# ----------------------------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------------------------
def _float(x, where):
    ensure_configured()
    return as_array(x, "x", compute_dtype(x, where), where)


def _like(dy, saved, names, where):
    """``dy`` and the saved forward array (``x`` or ``y``) in one dtype and the same shape."""
    ensure_configured()
    saved = as_array(saved, names[1], compute_dtype(saved, where, names[1]), where)
    dy = as_array(dy, "dy", saved.dtype, where)
    check_shape(dy, saved.shape, "dy", where)
    return dy, saved


def relu(x):
    """(R1) ``y = max(x, 0)`` elementwise; any shape.

    >>> relu(np.array([-1.5, 0.0, 2.0]))
    array([0., 0., 2.])
    """
    x = _float(x, "relu")
    return _act.relu_forward(x.reshape(-1)).reshape(x.shape)


def relu_backward(dy, x):
    """Gradient of :func:`relu` (R2): ``dx = dy · [x > 0]`` (0 at ``x = 0``, as PyTorch).

    ``dy`` and the forward input ``x`` have the same (any) shape; returns ``dx`` of that shape.

    >>> relu_backward(np.array([1.0, 1.0, 1.0]), np.array([-1.5, 0.0, 2.0]))
    array([0., 0., 1.])
    """
    dy, x = _like(dy, x, ("dy", "x"), "relu_backward")
    return _act.relu_backward(dy.reshape(-1), x.reshape(-1)).reshape(x.shape)


def sigmoid(x):
    """(S1) ``y = 1/(1+e^{−x})`` elementwise, without overflow for large ``|x|``; any shape.

    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    """
    x = _float(x, "sigmoid")
    return _act.sigmoid_forward(x.reshape(-1)).reshape(x.shape)


def sigmoid_backward(dy, y):
    """Gradient of :func:`sigmoid` (S2) from its *output* ``y``: ``dx = dy · y(1 − y)``.

    >>> sigmoid_backward(np.array([1.0]), sigmoid(np.array([0.0])))
    array([0.25])
    """
    dy, y = _like(dy, y, ("dy", "y"), "sigmoid_backward")
    return _act.sigmoid_backward(dy.reshape(-1), y.reshape(-1)).reshape(y.shape)


def softmax(x):
    """(SM1) softmax over the last axis, max-subtracted: ``x (..., K) → y (..., K)``, rows sum to 1.

    >>> softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    array([[0.5 , 0.5 ],
           [0.25, 0.75]])
    """
    x = _float(x, "softmax")
    if x.ndim == 0:
        raise ValueError("softmax: argument 'x' must have at least 1 dimension, got a scalar")
    return _act.softmax_forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def softmax_backward(dy, y):
    """Gradient of :func:`softmax` (SM2) from its *output* ``y (..., K)``:
    ``dx_k = y_k (dy_k − Σ_j dy_j y_j)`` per row.

    >>> softmax_backward(np.array([[1.0, 1.0]]), np.array([[0.25, 0.75]]))  # shift: no gradient
    array([[0., 0.]])
    """
    dy, y = _like(dy, y, ("dy", "y"), "softmax_backward")
    if y.ndim == 0:
        raise ValueError("softmax_backward: argument 'y' must have at least 1 dimension, got a scalar")
    K = y.shape[-1]
    return _act.softmax_backward(dy.reshape(-1, K), y.reshape(-1, K)).reshape(y.shape)


# ----------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------
def check_labels(labels, n: int, k: int, where: str) -> np.ndarray:
    """Integer class labels ``(n,)`` in ``[0, k)`` as int64; raises naming what is wrong."""
    lab = np.asarray(labels)
    if lab.dtype.kind == "f":
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise TypeError(f"{where}: 'labels' must be integers, got non-integer values of dtype {lab.dtype}")
        lab = lab.astype(np.int64)
    elif lab.dtype.kind not in "iu":
        raise TypeError(f"{where}: 'labels' must be integers, got dtype {lab.dtype}")
    if lab.shape != (n,):
        raise ValueError(f"{where}: 'labels' must have shape ({n},) to match logits, got {lab.shape}")
    if n and (lab.min() < 0 or lab.max() >= k):
        bad = lab[(lab < 0) | (lab >= k)]
        raise ValueError(
            f"{where}: 'labels' must be in [0, {k}) for {k} classes, got {bad[:5].tolist()}"
            + (" ..." if bad.size > 5 else "")
        )
    return np.ascontiguousarray(lab, dtype=np.int64)


def cross_entropy(logits, labels):
    """Mean cross-entropy of integer ``labels`` under ``softmax(logits)``, fused and stable (L1),
    and its gradient (L2) ``(softmax(logits) − onehot(labels))/N``.

    Parameters
    ----------
    logits : (N, K) array, finite
    labels : (N,) integers in ``[0, K)``

    Returns
    -------
    (loss, dlogits): a scalar of the logits' dtype and an (N, K) array

    >>> loss, d = cross_entropy(np.array([[0.0, 0.0], [1e4, -1e4]]), [0, 0])
    >>> round(float(loss), 6), d                # log 2 / 2; the second row is certain
    (0.346574, array([[-0.25,  0.25],
           [ 0.  ,  0.  ]]))
    """
    where = "cross_entropy"
    z = _float(logits, where)
    check_ndim(z, 2, "logits", "(N, classes)", where)
    if z.shape[0] == 0:
        raise ValueError(f"{where}: empty batch, 'logits' has shape {z.shape}")
    check_finite(z, "logits", where)
    lab = check_labels(labels, z.shape[0], z.shape[1], where)
    loss, dz = _loss.cross_entropy_forward(z, lab)
    return z.dtype.type(loss), dz


def _pair(a, b, names, where):
    a = _float(a, where)
    b = as_array(b, names[1], a.dtype, where)
    if a.shape != b.shape:
        raise ValueError(
            f"{where}: '{names[0]}' and '{names[1]}' must have the same shape, got {a.shape} and {b.shape}"
        )
    if a.size == 0:
        raise ValueError(f"{where}: '{names[0]}' is empty")
    check_finite(a, names[0], where)
    check_finite(b, names[1], where)
    return a, b


def binary_cross_entropy(logits, targets):
    """Mean binary cross-entropy on logits in the stable form (B1), and its gradient (B2).

    Parameters
    ----------
    logits, targets : arrays of one (any) shape, targets in [0, 1]

    Returns
    -------
    (loss, dlogits): a scalar and an array of the logits' shape, ``(σ(z) − t)/M``

    >>> loss, d = binary_cross_entropy(np.array([0.0]), np.array([1.0]))
    >>> round(float(loss), 6), d                # log 2; σ(0) − 1
    (0.693147, array([-0.5]))
    """
    z, t = _pair(logits, targets, ("logits", "targets"), "binary_cross_entropy")
    loss, dz = _loss.binary_cross_entropy_forward(z.reshape(-1), t.reshape(-1))
    return z.dtype.type(loss), dz.reshape(z.shape)


def mse(pred, target):
    """Mean squared error over all elements (M1) and its gradient (M2) ``2 (pred − target)/M``.

    Parameters
    ----------
    pred, target : arrays of one (any) shape

    Returns
    -------
    (loss, dpred): a scalar and an array of ``pred``'s shape

    >>> loss, d = mse(np.array([1.0, 3.0]), np.array([1.0, 1.0]))
    >>> float(loss), d
    (2.0, array([0., 2.]))
    """
    p, t = _pair(pred, target, ("pred", "target"), "mse")
    loss, dp = _loss.mse_forward(p.reshape(-1), t.reshape(-1))
    return p.dtype.type(loss), dp.reshape(p.shape)
