"""Activation layers (no parameters; per-sample shape unchanged)."""
from __future__ import annotations

from .. import ops
from .base import Layer


class _Activation(Layer):
    def output_shape(self, input_shape):
        return tuple(input_shape)

    def _checked(self, x):
        return self._input(x, self.input_shape, "(N, ...)")


class ReLU(_Activation):
    """(R1) ``y = max(x, 0)``;  (R2) ``dx = dy · [x > 0] = dy · [y > 0]`` (0 at x = 0, as PyTorch).

    Training keeps the output ``y``, not the input: ``y > 0 ⟺ x > 0``, and ``y`` is the array
    the next layer keeps anyway, so a conv + ReLU holds one activation, not two (torch's
    ``ReLU(inplace=True)`` saves its result for the same reason); the pre-activation is freed.
    """

    kind = "relu"

    def __init__(self, name=None):
        super().__init__(name)
        self._y = None

    def forward(self, x, training=False):
        y = ops.relu(self._checked(x))
        if training:
            self._y = y
        return y

    def backward(self, dy, input_grad=True):
        y = self._take_cache("_y")
        if not input_grad:
            return None
        return ops.relu_backward(self._as_dtype(dy), y)                  # (R2) with [y > 0]


class Sigmoid(_Activation):
    """(S1) ``y = 1/(1+e^{−x})`` (overflow-free);  (S2) ``dx = dy · y(1 − y)``."""

    kind = "sigmoid"

    def __init__(self, name=None):
        super().__init__(name)
        self._y = None

    def forward(self, x, training=False):
        x = self._checked(x)
        y = ops.sigmoid(x)
        if training:
            self._y = y
        return y

    def backward(self, dy, input_grad=True):
        y = self._take_cache("_y")
        if not input_grad:
            return None
        return ops.sigmoid_backward(self._as_dtype(dy), y)


class Softmax(_Activation):
    """Softmax over the last axis.

    (SM1) ``y_k = e^{x_k − m} / Σ_j e^{x_j − m}``, ``m = max_j x_j``
    (SM2) ``dx_k = y_k (dy_k − Σ_j dy_j y_j)``  (from ∂y_k/∂x_j = y_k(δ_kj − y_j))
    For training a classifier prefer logits + ``ops.cross_entropy``, which fuses the two stably.
    """

    kind = "softmax"

    def __init__(self, name=None):
        super().__init__(name)
        self._y = None

    def forward(self, x, training=False):
        x = self._checked(x)
        y = ops.softmax(x)
        if training:
            self._y = y
        return y

    def backward(self, dy, input_grad=True):
        y = self._take_cache("_y")
        if not input_grad:
            return None
        return ops.softmax_backward(self._as_dtype(dy), y)
