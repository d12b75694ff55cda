"""Hypothesis strategies that build only valid geometries (no filtering by ``assume``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

DTYPES = st.sampled_from([np.float32, np.float64])


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
        Ho = (self.H + 2 * self.padding - self.KH) // self.stride + 1
        Wo = (self.W + 2 * self.padding - self.KW) // self.stride + 1
        return (self.N, self.F, Ho, Wo)


@st.composite
def conv_geometries(draw, max_batch=3, max_channels=5, max_size=9, max_kernel=4, max_stride=3, max_padding=2):
    """Batch, channels, sizes, kernel, stride and padding such that the kernel fits the padded input."""
    KH = draw(st.integers(1, max_kernel))
    KW = draw(st.integers(1, max_kernel))
    padding = draw(st.integers(0, max_padding))
    H = draw(st.integers(max(1, KH - 2 * padding), max_size))
    W = draw(st.integers(max(1, KW - 2 * padding), max_size))
    return ConvGeometry(
        N=draw(st.integers(1, max_batch)), C=draw(st.integers(1, max_channels)), H=H, W=W,
        F=draw(st.integers(1, max_channels)), KH=KH, KW=KW,
        stride=draw(st.integers(1, max_stride)), padding=padding,
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
        return (self.N, self.C, (self.H - self.size) // self.stride + 1, (self.W - self.size) // self.stride + 1)


@st.composite
def pool_geometries(draw, max_size=4, max_hw=10):
    size = draw(st.integers(1, max_size))
    return PoolGeometry(
        N=draw(st.integers(1, 3)), C=draw(st.integers(1, 4)),
        H=draw(st.integers(size, max_hw)), W=draw(st.integers(size, max_hw)),
        size=size, stride=draw(st.integers(1, max_size + 1)),
    )


seeds = st.integers(0, 2**32 - 1)


def rand(rng: np.random.Generator, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def tolerance(dtype):
    """(rtol, atol) for comparing a fast kernel with its reference twin."""
    return (1e-4, 1e-5) if np.dtype(dtype) == np.float32 else (1e-10, 1e-12)
