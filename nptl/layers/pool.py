"""Pooling layers."""
from __future__ import annotations

import numpy as np

from .. import ops
from .._checks import check_int
from ..kernels import pool as kernel
from .base import Layer


class _Pool2D(Layer):
    kind = "pool"
    padding = 0  # MaxPool2D pads with −∞ (P3)

    def __init__(self, size: int = 2, stride: int | None = None, name: str | None = None):
        super().__init__(name)
        where = f"{type(self).__name__}({name or ''})"
        self.size = check_int(size, "size", where, 1)
        self.stride = self.size if stride is None else check_int(stride, "stride", where, 1)
        self._x_shape = None

    def config(self):
        return dict(name=self.name, size=self.size, stride=self.stride)

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}) expects input (C, H, W), got {tuple(input_shape)}")
        C, H, W = input_shape
        P = self.padding
        _, C, Ho, Wo = ops.pool2d_output_shape((1, C, H + 2 * P, W + 2 * P), self.size, self.stride,
                                               where=f"layer '{self.name}' ({type(self).__name__})")
        return (C, Ho, Wo)

    def _checked(self, x):
        x = self._input(x, (self.input_shape[0], None, None), "(N, C, H, W)")
        N, C, H, W = x.shape
        P = self.padding
        ops.pool2d_output_shape((N, C, H + 2 * P, W + 2 * P), self.size, self.stride,
                                where=f"layer '{self.name}' ({type(self).__name__})")
        return x


class MaxPool2D(_Pool2D):
    """Max pooling over ``size×size`` windows with ``stride`` (default ``size``) and optional
    ``padding`` (ResNet's stem pools 3×3, stride 2, padding 1).

    Shapes: ``(N, C, H, W) → (N, C, Ho, Wo)`` (``conv_output_size`` with the padding P); no parameters.

    Forward  (P1)  y[n,c,i,j] = max_{0≤p,q<size} xp[n,c,i·s+p, j·s+q]
    Backward (P2)  dx[n,c,h,w] = Σ_{i,j: (h,w) = argmax of window (i,j)} dy[n,c,i,j]
    Padding  (P3)  xp = x with P rows/columns of −∞ on every side; dx = dxp without them
    The max is piecewise the identity on its argmax, so the whole gradient of a window goes to
    that one input; on ties, to the first maximum in row-major window order (as PyTorch).
    −∞ never wins a window that holds a real input, which ``padding ≤ size // 2`` guarantees
    (PyTorch's rule), so (P3) is PyTorch's padded max pooling and the padding gets no gradient.
    NaN propagates (as PyTorch): a window holding a NaN outputs NaN, and its gradient goes to
    the window's last NaN.  ``fit`` stops on non-finite inputs before they get here.
    """

    def __init__(self, size: int = 2, stride: int | None = None, padding: int = 0, name: str | None = None):
        super().__init__(size, stride, name)
        where = f"MaxPool2D({name or ''})"
        self.padding = check_int(padding, "padding", where, 0)
        if self.padding > self.size // 2:
            raise ValueError(f"{where}: 'padding' must be at most size // 2 = {self.size // 2} (every window "
                             f"must hold an input), got {padding}")
        self._argmax = None

    def config(self):
        return dict(super().config(), padding=self.padding)

    def forward(self, x, training=False):
        x = self._checked(x)
        y, arg = kernel.max_pool2d_forward(x, self.size, self.stride, self.padding)   # (P1), (P3)
        if training:
            self._argmax, self._x_shape = arg, x.shape
        return y

    def backward(self, dy, input_grad=True):
        arg = self._take_cache("_argmax")
        if not input_grad:
            return None
        dy = self._as_dtype(dy)
        return kernel.max_pool2d_backward(dy, arg, self._x_shape[2], self._x_shape[3])  # (P2), (P3)



class AvgPool2D(_Pool2D):
    """Average pooling over ``size×size`` windows with ``stride`` (default ``size``).

    Forward  (A1)  y[n,c,i,j] = (1/size²) Σ_{p,q} x[n,c,i·s+p, j·s+q]
    Backward (A2)  dx[n,c,h,w] = (1/size²) Σ_{windows (i,j) containing (h,w)} dy[n,c,i,j]
    Every input of a window has the same weight 1/size², so the gradient spreads evenly.
    """

    def forward(self, x, training=False):
        x = self._checked(x)
        if training:
            self._x_shape = x.shape
        return kernel.avg_pool2d_forward(x, self.size, self.stride)

    def backward(self, dy, input_grad=True):
        shape = self._take_cache("_x_shape")
        if not input_grad:
            return None
        dy = self._as_dtype(dy)
        return kernel.avg_pool2d_backward(dy, shape[2], shape[3], self.size, self.stride)


class AdaptiveAvgPool2D(Layer):
    """Average pooling to a fixed ``output_size`` whatever the input size
    (``torch.nn.AdaptiveAvgPool2d``; VGG16's classifier pools its features to 7×7).

    Shapes: ``(N, C, H, W) → (N, C, Ho, Wo)``; no parameters.  Output row ``i`` averages input
    rows ``floor(i·H/Ho) ≤ h < ceil((i+1)·H/Ho)``, columns likewise (PyTorch's bins):

    Forward  (AP1)  y[n,c,i,j]  = (1/|bin(i,j)|) Σ_{(h,w) ∈ bin(i,j)} x[n,c,h,w]
    Backward (AP2)  dx[n,c,h,w] = Σ_{bins (i,j) ∋ (h,w)} dy[n,c,i,j] / |bin(i,j)|
    When ``H`` is a multiple of ``Ho`` this is ``AvgPool2D(H/Ho)``; otherwise neighbouring bins
    overlap by one row (or column).
    """

    kind = "adaptive_pool"

    def __init__(self, output_size=(7, 7), name: str | None = None):
        super().__init__(name)
        self.output_size = ops.adaptive_pool2d_output_size(output_size, f"AdaptiveAvgPool2D({name or ''})")
        self._x_shape = None

    def config(self):
        return dict(name=self.name, output_size=list(self.output_size))

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}) expects input (C, H, W), got {tuple(input_shape)}")
        return (input_shape[0],) + self.output_size

    def forward(self, x, training=False):
        x = self._input(x, (self.input_shape[0], None, None), "(N, C, H, W)")
        if training:
            self._x_shape = x.shape
        return kernel.adaptive_avg_pool2d_forward(x, *self.output_size)

    def backward(self, dy, input_grad=True):
        shape = self._take_cache("_x_shape")
        if not input_grad:
            return None
        return kernel.adaptive_avg_pool2d_backward(self._as_dtype(dy), shape[2], shape[3])


class GlobalAvgPool2D(Layer):
    """Mean of every channel's map: ``(N, C, H, W) → (N, C)`` (ResNet's pooling before ``fc``;
    ``torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)``).  No parameters.

    Forward  (AP1 with a 1×1 output)  y[n,c]      = (1/(H·W)) Σ_{h,w} x[n,c,h,w]
    Backward (AP2)                    dx[n,c,h,w] = dy[n,c] / (H·W)
    """

    kind = "global_pool"

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self._x_shape = None

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}) expects input (C, H, W), got {tuple(input_shape)}")
        return (input_shape[0],)

    def forward(self, x, training=False):
        x = self._input(x, (self.input_shape[0], None, None), "(N, C, H, W)")
        if training:
            self._x_shape = x.shape
        return kernel.global_avg_pool2d_forward(x)

    def backward(self, dy, input_grad=True):
        shape = self._take_cache("_x_shape")
        if not input_grad:
            return None
        return kernel.global_avg_pool2d_backward(self._as_dtype(dy), shape[2], shape[3])
