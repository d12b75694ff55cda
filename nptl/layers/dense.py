"""Fully connected layer."""
from __future__ import annotations

import numpy as np

from .._checks import check_int
from ..kernels import dense as kernel
from .base import Layer
from .init import initialize


class Dense(Layer):
    """Affine map ``output = input @ w + b``.

    Shapes: x ``(N, I)`` → y ``(N, O)``; parameters ``w (I, O)``, ``b (O,)``.

    Forward  (D1)  y[n,o]  = b[o] + Σ_i x[n,i] · w[i,o]
    Backward (D2)  dx[n,i] = Σ_o dy[n,o] · w[i,o]      (dx = dy @ wᵀ)
             (D3)  dw[i,o] = Σ_n x[n,i] · dy[n,o]      (dw = xᵀ @ dy)
             (D4)  db[o]   = Σ_n dy[n,o]
    Weights default to Glorot-uniform (fan_in = I, fan_out = O); biases to zero.
    """

    kind = "dense"

    def __init__(self, units: int, use_bias: bool = True, kernel_init: str = "glorot_uniform",
                 name: str | None = None):
        super().__init__(name)
        self.units = check_int(units, "units", f"Dense({name or ''})", 1)
        self.use_bias = bool(use_bias)
        self.kernel_init = kernel_init
        self._x = None

    def config(self):
        return dict(name=self.name, units=self.units, use_bias=self.use_bias, kernel_init=self.kernel_init)

    def output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"layer '{self.name}' (Dense) expects input (N, features), got per-sample shape "
                f"{tuple(input_shape)}; add a Flatten layer before it"
            )
        return (self.units,)

    def array_shapes(self, input_shape):
        shapes = {"w": (int(input_shape[0]), self.units)}
        return {**shapes, "b": (self.units,)} if self.use_bias else shapes

    def _init_params(self, rng):
        shapes = self.array_shapes(self.input_shape)
        I, O = shapes["w"]
        self.params["w"] = initialize(self.kernel_init, shapes["w"], I, O, rng, self.dtype)
        if self.use_bias:
            self.params["b"] = np.zeros(self.units, dtype=self.dtype)

    def forward(self, x, training=False):
        x = self._input(x, self.input_shape, "(N, features)")
        b = self.params["b"] if self.use_bias else np.zeros(self.units, dtype=self.dtype)
        if training:
            self._x = x
        return kernel.dense_forward(x, self.params["w"], b)

    def backward(self, dy, input_grad=True):
        x = self._take_cache("_x")
        dy = self._as_dtype(dy)
        if self.trainable:
            kernel.dense_accumulate_weight_grad(self.grads["w"], dy, x)    # (D3)
            if self.use_bias:
                self.grads["b"] += kernel.dense_backward_bias(dy)           # (D4)
        return kernel.dense_backward_input(dy, self.params["w"]) if input_grad else None
