"""Dropout."""
from __future__ import annotations

from .. import ops
from .._checks import check_int
from ..kernels import dropout as kernel
from .base import Layer


class Dropout(Layer):
    """Inverted dropout: in training, each input is kept with probability ``1 − rate`` and
    scaled by ``1/(1 − rate)``, else zeroed; at inference the layer is the identity.

    Shapes unchanged; no parameters.

    Forward  (DO1)  y  = x · keep / (1 − rate)      (E[y] = x, so inference needs no rescaling)
    Backward (DO2)  dx = dy · keep / (1 − rate)

    The mask is reproducible (DO3): the ``t``-th training-mode forward of a layer built with
    ``seed`` (``t = 0, 1, 2, ...``, counted in ``calls``) keeps element ``k`` of the flattened
    batch iff ``u_k ≥ rate``, where ``u_k`` is the ``k``-th uniform of the SplitMix64 stream
    ``(seed, t)`` — ``ops.dropout_mask(x.shape, rate, seed, t)``.  Same seed, same batch
    shapes, same sequence of calls: the same masks, on any machine and thread count.  ``calls``
    is not saved in checkpoints (a loaded model starts again at ``t = 0``).  ``trainable``
    does not affect dropout (as in Keras: only BatchNorm changes behaviour when frozen).
    """

    kind = "dropout"

    def __init__(self, rate: float = 0.5, seed: int = 0, name: str | None = None):
        super().__init__(name)
        where = f"Dropout({name or ''})"
        self.rate = ops._dropout_rate(rate, where)
        self.seed = check_int(seed, "seed", where, 0)
        self.calls = 0
        self._keep = None

    def config(self):
        return dict(name=self.name, rate=self.rate, seed=self.seed)

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def state(self):
        return {**super().state(), "calls": self.calls}

    def set_state(self, state):
        state = dict(state)
        self.calls = state.pop("calls")
        super().set_state(state)

    def forward(self, x, training=False):
        x = self._input(x, self.input_shape, "(N, ...)")
        if not training:
            return x
        keep = kernel.dropout_mask(x.size, self.rate, self.seed, self.calls)   # (DO3)
        self.calls += 1
        self._keep = keep
        return kernel.dropout_forward(x.reshape(-1), keep, x.dtype.type(1.0 / (1.0 - self.rate))).reshape(x.shape)

    def backward(self, dy, input_grad=True):
        keep = self._take_cache("_keep")
        if not input_grad:
            return None
        dy = self._as_dtype(dy)
        return kernel.dropout_backward(dy.reshape(-1), keep, dy.dtype.type(1.0 / (1.0 - self.rate))).reshape(dy.shape)
