"""Nearest-neighbour upsampling layer."""
from __future__ import annotations

from .. import ops
from ..kernels import upsample as kernel
from .base import Layer


class Upsample2D(Layer):
    """Nearest-neighbour upsampling by integer factors ``size`` (``s`` or ``(sh, sw)``), as
    Keras' ``UpSampling2D(size)``; no parameters.

    Shapes: ``(N, C, H, W) → (N, C, H·sh, W·sw)``.

    Forward  (U1)  y[n,c,h,v]  = x[n,c,h // sh, v // sw]
    Backward (U2)  dx[n,c,i,j] = Σ_{0≤p<sh} Σ_{0≤q<sw} dy[n,c,i·sh+p, j·sw+q]
    Each input pixel is copied into one ``sh×sw`` block of y, so its gradient sums that block
    (the adjoint of (U1); ``size·AvgPool2D(size)`` of dy).
    """

    kind = "upsample"

    def __init__(self, size=2, name: str | None = None):
        super().__init__(name)
        self.size = ops.upsample_factors(size, f"Upsample2D({name or ''})")
        self._x_shape = None

    def config(self):
        return dict(name=self.name, size=list(self.size))

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"layer '{self.name}' (Upsample2D) expects input (C, H, W), got {tuple(input_shape)}")
        C, H, W = input_shape
        return (C, H * self.size[0], W * self.size[1])

    def forward(self, x, training=False):
        x = self._input(x, (self.input_shape[0], None, None), "(N, C, H, W)")
        if training:
            self._x_shape = x.shape
        return kernel.upsample2d_forward(x, *self.size)

    def backward(self, dy, input_grad=True):
        self._take_cache("_x_shape")
        if not input_grad:
            return None
        return kernel.upsample2d_backward(self._as_dtype(dy), *self.size)
