"""Hypothesis strategies that build only valid inputs (no filtering by ``assume``).

Geometries (``conv_geometries``, ``pool_geometries``) draw shapes and hyperparameters such that
the kernel fits; the ``*_cases`` strategies turn them into :class:`nptl.registry.Case` objects
(arrays of one dtype plus keyword parameters) for the ops of :mod:`nptl.registry`, which names
its strategy per op.  Requires the ``test`` extra (hypothesis).

>>> from hypothesis import given
>>> @given(g=conv_geometries())
... def test_kernel_fits(g):
...     assert g.KH <= g.H + 2 * g.padding and min(g.y_shape) >= 1
>>> test_kernel_fits()
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from ..kernels.reference import conv_output_size
from ..registry import Case

__all__ = ["DTYPES", "ConvGeometry", "conv_geometries", "PoolGeometry", "pool_geometries", "seeds", "rand",
           "tolerance", "arrays", "conv2d_cases", "pool2d_cases", "dense_cases", "elementwise_cases",
           "cross_entropy_cases", "pair_cases", "batch_norm_cases", "adaptive_pool2d_cases", "global_pool2d_cases",
           "dropout_cases", "ConvTransposeGeometry", "conv_transpose_geometries", "upsample_factors",
           "conv_transpose2d_cases", "upsample2d_cases"]

DTYPES = st.sampled_from([np.float32, np.float64])
seeds = st.integers(0, 2**32 - 1)


def rand(rng: np.random.Generator, shape, dtype=np.float64, scale=1.0):
    """Standard normal values of ``shape`` (times ``scale``) in ``dtype``."""
    return (rng.standard_normal(shape) * scale).astype(dtype)


def tolerance(dtype):
    """(rtol, atol) for comparing a fast kernel with its reference twin."""
    return (1e-4, 1e-5) if np.dtype(dtype) == np.float32 else (1e-10, 1e-12)


@st.composite
def arrays(draw, shape, dtype=np.float64, scale=1.0):
    """A standard-normal array of ``shape`` (times ``scale``) from a drawn seed."""
    return rand(np.random.default_rng(draw(seeds)), shape, dtype, scale)


@dataclass(frozen=True)
class ConvGeometry:
    N: int
    C: int
    H: int
    W: int
    F: int
    KH: int
    KW: int
    stride: int
    padding: int

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self):
        return (self.F, self.C, self.KH, self.KW)

    @property
    def y_shape(self):
        return (self.N, self.F, conv_output_size(self.H, self.KH, self.stride, self.padding),
                conv_output_size(self.W, self.KW, self.stride, self.padding))


@st.composite
def conv_geometries(draw, max_batch=3, max_channels=5, max_size=9, max_kernel=4, max_stride=3, max_padding=2,
                    wide=None):
    """Batch, channels, sizes, kernel, stride and padding such that the kernel fits the padded
    input.  ``wide=True`` makes the output at least 8 columns wide whatever the stride (the
    row-by-row im2col path), ``None`` draws that choice too."""
    KH = draw(st.integers(1, max_kernel))
    KW = draw(st.integers(1, max_kernel))
    padding = draw(st.integers(0, max_padding))
    stride = draw(st.integers(1, max_stride))
    H = draw(st.integers(max(1, KH - 2 * padding), max_size))
    if wide is None:
        wide = draw(st.booleans())
    if wide:  # Wo = (W + 2P − KW)//s + 1 ≥ 8
        lo = max(1, 7 * stride + KW - 2 * padding)
        W = draw(st.integers(lo, lo + 4))
    else:
        W = draw(st.integers(max(1, KW - 2 * padding), max_size))
    return ConvGeometry(
        N=draw(st.integers(1, max_batch)), C=draw(st.integers(1, max_channels)), H=H, W=W,
        F=draw(st.integers(1, max_channels)), KH=KH, KW=KW, stride=stride, padding=padding,
    )


@dataclass(frozen=True)
class PoolGeometry:
    N: int
    C: int
    H: int
    W: int
    size: int
    stride: int

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def y_shape(self):
        return (self.N, self.C, conv_output_size(self.H, self.size, self.stride, 0),
                conv_output_size(self.W, self.size, self.stride, 0))


@st.composite
def pool_geometries(draw, max_size=4, max_hw=10, overlapping=None):
    """Window ``size``, ``stride`` and an input at least one window large.  ``overlapping=True``
    draws ``stride < size`` (windows overlap), ``False`` any stride up to ``max_size + 1``,
    ``None`` either."""
    if overlapping is None:
        overlapping = draw(st.booleans())
    size = draw(st.integers(2 if overlapping else 1, max(2, max_size) if overlapping else max_size))
    stride = draw(st.integers(1, size - 1)) if overlapping else draw(st.integers(1, max_size + 1))
    return PoolGeometry(
        N=draw(st.integers(1, 3)), C=draw(st.integers(1, 4)),
        H=draw(st.integers(size, max_hw)), W=draw(st.integers(size, max_hw)),
        size=size, stride=stride,
    )


@dataclass(frozen=True)
class ConvTransposeGeometry:
    N: int
    C: int
    H: int
    W: int
    F: int
    KH: int
    KW: int
    stride: int
    padding: int
    output_padding: int

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self):
        return (self.C, self.F, self.KH, self.KW)

    @property
    def y_shape(self):
        Ho = (self.H - 1) * self.stride - 2 * self.padding + self.KH + self.output_padding
        Wo = (self.W - 1) * self.stride - 2 * self.padding + self.KW + self.output_padding
        return (self.N, self.F, Ho, Wo)


@st.composite
def conv_transpose_geometries(draw, max_batch=3, max_channels=5, max_size=7, max_kernel=4, max_stride=3,
                              max_padding=2):
    """Transposed-convolution geometries with ``output_padding < stride`` and a non-empty output
    (padding bounded so that ``(H−1)·s − 2P + K + op ≥ 1``)."""
    KH, KW = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    stride = draw(st.integers(1, max_stride))
    op = draw(st.integers(0, stride - 1))
    H, W = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    room = min((H - 1) * stride + KH + op - 1, (W - 1) * stride + KW + op - 1) // 2
    return ConvTransposeGeometry(
        N=draw(st.integers(1, max_batch)), C=draw(st.integers(1, max_channels)), H=H, W=W,
        F=draw(st.integers(1, max_channels)), KH=KH, KW=KW, stride=stride,
        padding=draw(st.integers(0, min(max_padding, room))), output_padding=op,
    )


#: nearest-upsampling factors: an integer or a pair (sh, sw)
upsample_factors = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))


# ----------------------------------------------------------------------------------------------
# cases for the registered ops: Case(args, params) with arrays of one dtype
# ----------------------------------------------------------------------------------------------
@st.composite
def conv2d_cases(draw, dtype=np.float64, small=False):
    """``ops.conv2d(x, w, b, stride=, padding=)``; ``b`` is None in some cases.  ``small`` keeps
    a central-difference check cheap."""
    g = draw(conv_geometries(max_batch=2, max_channels=3, max_size=7) if small
             else conv_geometries(max_batch=3, max_channels=11, max_size=12, max_kernel=5))
    rng = np.random.default_rng(draw(seeds))
    b = rand(rng, (g.F,), dtype) if small or draw(st.booleans()) else None
    return Case((rand(rng, g.x_shape, dtype), rand(rng, g.w_shape, dtype), b),
                dict(stride=g.stride, padding=g.padding))


@st.composite
def pool2d_cases(draw, dtype=np.float64, small=False):
    """``ops.max_pool2d / avg_pool2d(x, size=, stride=)``; half the cases are small integers, so
    ties (the first maximum wins) are frequent."""
    g = draw(pool_geometries(max_hw=7 if small else 12))
    rng = np.random.default_rng(draw(seeds))
    if not small and draw(st.booleans()):
        x = rng.integers(-2, 3, g.x_shape).astype(dtype)
    else:
        x = rand(rng, g.x_shape, dtype)
    return Case((x,), dict(size=g.size, stride=g.stride))


@st.composite
def dense_cases(draw, dtype=np.float64, small=False):
    """``ops.dense(x, w, b)``."""
    N, I, O = draw(st.integers(1, 12)), draw(st.integers(1, 20)), draw(st.integers(1, 20))
    rng = np.random.default_rng(draw(seeds))
    return Case((rand(rng, (N, I), dtype), rand(rng, (I, O), dtype), rand(rng, (O,), dtype)), {})


@st.composite
def elementwise_cases(draw, dtype=np.float64, small=False, away_from=None):
    """One array of any shape (1 to 4 axes), values of scale 1 to 10 (1 in ``small`` cases);
    entries within 1e-3 of ``away_from`` (a kink, e.g. 0 for relu) moved to 0.5."""
    shape = tuple(draw(st.lists(st.integers(1, 6 if small else 7), min_size=1, max_size=4)))
    scale = 1.0 if small else draw(st.sampled_from([1.0, 3.0, 10.0]))
    x = rand(np.random.default_rng(draw(seeds)), shape, np.float64, scale)
    if away_from is not None:
        x[np.abs(x - away_from) < 1e-3] = 0.5
    return Case((x.astype(dtype),), {})


@st.composite
def relu_cases(draw, dtype=np.float64, small=False):
    """:func:`elementwise_cases` away from relu's kink at 0 (central differences straddle it)."""
    return draw(elementwise_cases(dtype, small, away_from=0.0))


@st.composite
def cross_entropy_cases(draw, dtype=np.float64, small=False):
    """``ops.cross_entropy(logits (N, K), labels (N,))``."""
    n, k = draw(st.integers(1, 8)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(seeds))
    scale = 3.0 if small else draw(st.sampled_from([1.0, 10.0]))
    return Case((rand(rng, (n, k), dtype, scale), rng.integers(0, k, n)), {})


@st.composite
def pair_cases(draw, dtype=np.float64, small=False, targets="normal"):
    """Two arrays of one shape: predictions/logits and targets (``"normal"``, or ``"unit"``
    values in [0, 1] for binary cross-entropy)."""
    shape = tuple(draw(st.lists(st.integers(1, 5 if small else 7), min_size=1, max_size=3)))
    rng = np.random.default_rng(draw(seeds))
    t = rng.random(shape) if targets == "unit" else rng.standard_normal(shape)
    return Case((rand(rng, shape, dtype, 3.0), t.astype(dtype)), {})


@st.composite
def binary_cross_entropy_cases(draw, dtype=np.float64, small=False):
    """``ops.binary_cross_entropy(logits, targets in [0, 1])``."""
    return draw(pair_cases(dtype, small, targets="unit"))


@st.composite
def batch_norm_cases(draw, dtype=np.float64, small=False):
    """``ops.batch_norm(x, gamma, beta, mean, var)``: ``x`` of shape ``(N, C, H, W)`` or ``(N, C)``
    with mean and scale away from (0, 1); ``mean``/``var`` None (batch statistics) or running
    statistics.  At least 4 values per channel: with 2 the output is ±1 whatever x (dx = O(ε)),
    with 3 dx is often tiny, and relative comparisons of such gradients measure rounding
    (``tests/kernels/test_norm.py`` covers those with error bounds of their own)."""
    C = draw(st.integers(1, 4 if small else 6))
    if draw(st.booleans()):
        shape = (draw(st.integers(4, 6 if small else 9)), C)
    else:
        N, H = draw(st.integers(1, 2 if small else 3)), draw(st.integers(1, 4 if small else 6))
        shape = (N, C, H, draw(st.integers(-(-4 // (N * H)), 4 if small else 6)))
    # a stream no plain integer seed gives: gradcheck's upstream gradient comes from
    # default_rng(seed), and r ∝ x (both from seed 0) would make dx vanish
    rng = np.random.default_rng([draw(seeds), 1])
    x = rand(rng, shape, np.float64, 3.0) + 1.5
    gamma, beta = rand(rng, (C,), dtype), rand(rng, (C,), dtype)
    running = draw(st.booleans())
    mean = rand(rng, (C,), dtype) if running else None
    var = (rng.random(C) + 0.1).astype(dtype) if running else None
    return Case((x.astype(dtype), gamma, beta, mean, var), {})


@st.composite
def adaptive_pool2d_cases(draw, dtype=np.float64, small=False):
    """``ops.adaptive_avg_pool2d(x, output_size=(Ho, Wo))``: outputs smaller than the input,
    equal, not dividing it (overlapping bins) or larger (repeated rows)."""
    top = 7 if small else 11
    N, C = draw(st.integers(1, 2 if small else 3)), draw(st.integers(1, 4))
    H, W = draw(st.integers(1, top)), draw(st.integers(1, top))
    out = (draw(st.integers(1, H + 2)), draw(st.integers(1, W + 2)))
    return Case((rand(np.random.default_rng(draw(seeds)), (N, C, H, W), dtype),), dict(output_size=out))


@st.composite
def global_pool2d_cases(draw, dtype=np.float64, small=False):
    """``ops.global_avg_pool2d(x)``."""
    top = 7 if small else 11
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, top)), draw(st.integers(1, top)))
    return Case((rand(np.random.default_rng(draw(seeds)), shape, dtype),), {})


@st.composite
def dropout_cases(draw, dtype=np.float64, small=False):
    """``ops.dropout(x, mask, rate=)`` with the mask of ``ops.dropout_mask`` for a drawn seed."""
    from .. import ops

    shape = tuple(draw(st.lists(st.integers(1, 5 if small else 7), min_size=1, max_size=4)))
    rate = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9]))
    seed = draw(seeds)
    mask = ops.dropout_mask(shape, rate, seed, draw(st.integers(0, 3)))
    return Case((rand(np.random.default_rng([seed, 2]), shape, dtype), mask), dict(rate=rate))


@st.composite
def conv_transpose2d_cases(draw, dtype=np.float64, small=False):
    """``ops.conv_transpose2d(x, w, b, stride=, padding=, output_padding=)``; ``b`` is None in
    some cases."""
    g = draw(conv_transpose_geometries(max_batch=2, max_channels=3, max_size=4, max_kernel=3) if small
             else conv_transpose_geometries(max_channels=9, max_size=8, max_kernel=5))
    rng = np.random.default_rng(draw(seeds))
    b = rand(rng, (g.F,), dtype) if small or draw(st.booleans()) else None
    return Case((rand(rng, g.x_shape, dtype), rand(rng, g.w_shape, dtype), b),
                dict(stride=g.stride, padding=g.padding, output_padding=g.output_padding))


@st.composite
def upsample2d_cases(draw, dtype=np.float64, small=False):
    """``ops.upsample2d(x, size=)`` with ``size`` an integer or a pair."""
    m = 4 if small else 9
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, m)), draw(st.integers(1, m)))
    return Case((rand(np.random.default_rng(draw(seeds)), shape, dtype),), dict(size=draw(upsample_factors)))

