"""2-D convolution and transposed convolution layers."""
from __future__ import annotations

import numpy as np

from .. import ops
from .._checks import check_int
from ..kernels import conv2d as kernel
from ..kernels import conv_transpose2d as transposed
from .base import Layer
from .init import initialize


def _set_geometry(layer, where: str, filters, kernel_size, stride, padding) -> None:
    """Check and set ``filters``, ``kernel_size`` (an int or a pair), ``stride`` and ``padding``,
    the geometry Conv2D and ConvTranspose2D share; errors name ``where``."""
    layer.filters = check_int(filters, "filters", where, 1)
    ks = (kernel_size, kernel_size) if np.isscalar(kernel_size) else tuple(kernel_size)
    layer.kernel_size = tuple(check_int(k, "kernel_size", where, 1) for k in ks)
    layer.stride = check_int(stride, "stride", where, 1)
    layer.padding = check_int(padding, "padding", where, 0)


class Conv2D(Layer):
    """2-D convolution (cross-correlation) with bias, stride and zero padding.

    Shapes: x ``(N, C, H, W)`` → y ``(N, F, Ho, Wo)`` (``Ho``, ``Wo``: ``conv_output_size``);
    parameters ``w (F, C, KH, KW)``, ``b (F,)``.

    Forward (C1) ``y = b + x ⋆ w`` (cross-correlation); backward (C2) ``dx``, (C3) ``dw``,
    (C4) ``db`` — the formulas, their derivation and the loops are in
    :mod:`nptl.kernels.reference`.  y is linear in w and in x: (C3) collects every output that
    multiplied ``w[f,c,p,q]``, (C2) every output that read ``x[n,c,h,w]``.
    Computed by batch-parallel im2col + GEMM (:mod:`nptl.kernels.conv2d`).  Weights default to Glorot-uniform with
    fan_in = C·KH·KW, fan_out = F·KH·KW; biases to zero.
    """

    kind = "conv"

    def __init__(self, filters: int, kernel_size, stride: int = 1, padding: int = 0,
                 use_bias: bool = True, kernel_init: str = "glorot_uniform", name: str | None = None):
        super().__init__(name)
        where = f"Conv2D({name or ''})"
        _set_geometry(self, where, filters, kernel_size, stride, padding)
        self.use_bias = bool(use_bias)
        self.kernel_init = kernel_init
        self._x = None

    def config(self) -> dict:
        return dict(name=self.name, filters=self.filters, kernel_size=list(self.kernel_size),
                    stride=self.stride, padding=self.padding, use_bias=self.use_bias,
                    kernel_init=self.kernel_init)

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"layer '{self.name}' (Conv2D) expects input (C, H, W), got {tuple(input_shape)}")
        C, H, W = input_shape
        w_shape = (self.filters, C) + self.kernel_size
        _, F, Ho, Wo = ops.conv2d_output_shape((1, C, H, W), w_shape, self.stride, self.padding,
                                               where=f"layer '{self.name}' (Conv2D)")
        return (F, Ho, Wo)

    def array_shapes(self, input_shape):
        shapes = {"w": (self.filters, int(input_shape[0])) + self.kernel_size}
        return {**shapes, "b": (self.filters,)} if self.use_bias else shapes

    def _init_params(self, rng):
        shapes = self.array_shapes(self.input_shape)
        F, C, KH, KW = shapes["w"]
        self.params["w"] = initialize(self.kernel_init, shapes["w"], C * KH * KW, F * KH * KW, rng, self.dtype)
        if self.use_bias:
            self.params["b"] = np.zeros(shapes["b"], dtype=self.dtype)

    def _bias(self):
        return self.params["b"] if self.use_bias else np.zeros(self.filters, dtype=self.dtype)

    def forward(self, x, training=False):
        C, H, W = self.input_shape
        x = self._input(x, (C, None, None), "(N, C, H, W)")
        ops.conv2d_output_shape(x.shape, self.params["w"].shape, self.stride, self.padding,
                                where=f"layer '{self.name}' (Conv2D)")
        y = kernel.conv2d_forward(x, self.params["w"], self._bias(), self.stride, self.padding)
        if training:
            self._x = x
        return y

    def backward(self, dy, input_grad=True):
        x = self._take_cache("_x")
        w = self.params["w"]
        dy = self._as_dtype(dy)
        if not self.trainable:
            if not input_grad:
                return None
            return kernel.conv2d_backward_input(dy, w, x.shape, self.stride, self.padding)  # (C2)
        # (C3), (C4): im2col is recomputed per chunk, cheaper than caching cols; with dx wanted
        # too, (C2) comes out of the same pass over the batch (one gather of dy per chunk)
        if input_grad:
            dx, dw, db = kernel.conv2d_backward(dy, x, w, self.stride, self.padding)
        else:
            dw, db = kernel.conv2d_backward_weight(dy, x, w.shape, self.stride, self.padding)
            dx = None
        self.grads["w"] += dw
        if self.use_bias:
            self.grads["b"] += db
        return dx


class ConvTranspose2D(Layer):
    """2-D transposed convolution ("deconvolution"), the decoder's upsampling convolution.

    Shapes: x ``(N, C, H, W)`` → y ``(N, F, Ho, Wo)``, ``Ho = (H − 1)·s − 2P + KH + op`` (same
    for Wo; ``op`` = ``output_padding`` < s picks among the input sizes a stride-s Conv2D maps
    to H); parameters ``w (C, F, KH, KW)`` (torch's ``conv_transpose2d`` layout), ``b (F,)``.

    Forward  (T1)  y[n,f,h,v]  = b[f] + Σ_c Σ_{i·s+p=h+P} Σ_{j·s+q=v+P} x[n,c,i,j] · w[c,f,p,q]
    Backward (T2)  dx[n,c,i,j] = Σ_f Σ_p Σ_q dyp[n,f,i·s+p,j·s+q] · w[c,f,p,q]
             (T3)  dw[c,f,p,q] = Σ_n Σ_i Σ_j x[n,c,i,j] · dyp[n,f,i·s+p,j·s+q]
             (T4)  db[f]       = Σ_n Σ_h Σ_v dy[n,f,h,v]
    (dyp is dy zero-padded by P.)  Duality with :class:`Conv2D` (weights read as a conv2d
    weight ``(F'=C, C'=F, KH, KW)``): (T1) *is* conv2d's input gradient (C2) with dy := x, and
    (T2) *is* conv2d's forward (C1) of dy; (T3) is conv2d's (C3) with x and dy exchanged.  So a
    ConvTranspose2D with a Conv2D's geometry maps that Conv2D's output shape back to its input
    shape; both run on conv2d's kernels (:mod:`nptl.kernels.conv_transpose2d`).  Weights
    default to Glorot-uniform with fan_in = C·KH·KW, fan_out = F·KH·KW; biases to zero.
    """

    kind = "deconv"

    def __init__(self, filters: int, kernel_size, stride: int = 1, padding: int = 0, output_padding: int = 0,
                 use_bias: bool = True, kernel_init: str = "glorot_uniform", name: str | None = None):
        super().__init__(name)
        where = f"ConvTranspose2D({name or ''})"
        _set_geometry(self, where, filters, kernel_size, stride, padding)
        self.output_padding = check_int(output_padding, "output_padding", where, 0)
        if self.output_padding >= self.stride:
            raise ValueError(f"{where}: 'output_padding' must be smaller than 'stride' ({self.stride}), "
                             f"got {self.output_padding}")
        self.use_bias = bool(use_bias)
        self.kernel_init = kernel_init
        self._x = None

    def config(self) -> dict:
        return dict(name=self.name, filters=self.filters, kernel_size=list(self.kernel_size),
                    stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    use_bias=self.use_bias, kernel_init=self.kernel_init)

    def _geometry(self, x_shape, w_shape):
        return ops.conv_transpose2d_output_shape(x_shape, w_shape, self.stride, self.padding, self.output_padding,
                                                 where=f"layer '{self.name}' (ConvTranspose2D)")

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"layer '{self.name}' (ConvTranspose2D) expects input (C, H, W), got {tuple(input_shape)}")
        C, H, W = input_shape
        _, F, Ho, Wo = self._geometry((1, C, H, W), (C, self.filters) + self.kernel_size)
        return (F, Ho, Wo)

    def array_shapes(self, input_shape):
        shapes = {"w": (int(input_shape[0]), self.filters) + self.kernel_size}
        return {**shapes, "b": (self.filters,)} if self.use_bias else shapes

    def _init_params(self, rng):
        shapes = self.array_shapes(self.input_shape)
        C, F, KH, KW = shapes["w"]
        self.params["w"] = initialize(self.kernel_init, shapes["w"], C * KH * KW, F * KH * KW, rng, self.dtype)
        if self.use_bias:
            self.params["b"] = np.zeros(F, dtype=self.dtype)

    def forward(self, x, training=False):
        C = self.input_shape[0]
        x = self._input(x, (C, None, None), "(N, C, H, W)")
        self._geometry(x.shape, self.params["w"].shape)
        b = self.params["b"] if self.use_bias else np.zeros(self.filters, dtype=self.dtype)
        y = transposed.conv_transpose2d_forward(x, self.params["w"], b, self.stride, self.padding,
                                                self.output_padding)                        # (T1)
        if training:
            self._x = x
        return y

    def backward(self, dy, input_grad=True):
        x = self._take_cache("_x")
        w = self.params["w"]
        dy = self._as_dtype(dy)
        if self.trainable:
            dw, db = transposed.conv_transpose2d_backward_weight(dy, x, w.shape, self.stride, self.padding)  # (T3) (T4)
            self.grads["w"] += dw
            if self.use_bias:
                self.grads["b"] += db
        if not input_grad:
            return None
        return transposed.conv_transpose2d_backward_input(dy, w, self.stride, self.padding)  # (T2)
