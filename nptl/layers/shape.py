"""Reshaping layers."""
from __future__ import annotations

import math

from .base import Layer


class Flatten(Layer):
    """``(N, C, H, W) → (N, C·H·W)`` in C order; backward reshapes ``dy`` back. No parameters."""

    kind = "flatten"

    def output_shape(self, input_shape):
        return (int(math.prod(input_shape)),)

    def forward(self, x, training=False):
        x = self._input(x, self.input_shape, "(N, ...)")
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, input_grad=True):
        if not input_grad:
            return None
        return self._as_dtype(dy).reshape((dy.shape[0],) + self.input_shape)
