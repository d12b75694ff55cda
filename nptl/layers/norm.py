"""Batch normalisation layers."""
from __future__ import annotations

import numbers

import numpy as np

from ..kernels import norm as kernel
from .base import Layer


class _BatchNorm(Layer):
    """Shared by :class:`BatchNorm2D` and :class:`BatchNorm1D` (module docstring of
    :mod:`nptl.kernels.norm`: both are the same computation on ``(N, C, L)``)."""

    kind = "bn"
    layout = ""       # the input layout, for messages
    sample_ndim = 0   # per-sample dimensions: 3 for (C, H, W), 1 for (F,)

    def __init__(self, momentum: float | None = 0.1, eps: float = 1e-5, name: str | None = None):
        super().__init__(name)
        where = f"{type(self).__name__}({name or ''})"
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)
                                     or not 0.0 <= momentum <= 1.0):
            raise ValueError(f"{where}: 'momentum' must be a number in [0, 1] or None, got {momentum!r}")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"{where}: 'eps' must be a positive number, got {eps!r}")
        self.momentum = None if momentum is None else float(momentum)
        self.eps = float(eps)
        self._x = self._mean = self._var = self._batch = None

    def config(self):
        return dict(name=self.name, momentum=self.momentum, eps=self.eps)

    def output_shape(self, input_shape):
        if len(input_shape) != self.sample_ndim:
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}) expects input {self.layout}, got "
                             f"per-sample shape {tuple(input_shape)}")
        return tuple(input_shape)

    def array_shapes(self, input_shape):
        C = (int(input_shape[0]),)
        return {"w": C, "b": C, "running_mean": C, "running_var": C, "num_batches_tracked": ()}

    def _init_params(self, rng):
        shapes = self.array_shapes(self.input_shape)
        self.params["w"] = np.ones(shapes["w"], dtype=self.dtype)     # γ
        self.params["b"] = np.zeros(shapes["b"], dtype=self.dtype)    # β
        self.buffers["running_mean"] = np.zeros(shapes["running_mean"], dtype=self.dtype)
        self.buffers["running_var"] = np.ones(shapes["running_var"], dtype=self.dtype)
        self.buffers["num_batches_tracked"] = np.zeros(shapes["num_batches_tracked"], dtype=np.int64)

    def uses_batch_statistics(self, training: bool) -> bool:
        """Training mode (batch statistics, running statistics updated) only when ``training``
        AND trainable: a frozen BatchNorm always runs in inference mode."""
        return bool(training) and self.trainable

    def forward(self, x, training=False):
        x = self._input(x, self.input_shape[:1] + (None,) * (self.sample_ndim - 1), self.layout)
        x3 = x.reshape(x.shape[0], x.shape[1], -1)
        batch = self.uses_batch_statistics(training)
        w, b, buf = self.params["w"], self.params["b"], self.buffers
        if batch:
            count = x3.shape[0] * x3.shape[2]
            if count < 2:
                raise ValueError(
                    f"layer '{self.name}' ({type(self).__name__}): training mode needs more than one value per "
                    f"channel to compute batch statistics, got input shape {tuple(x.shape)} "
                    f"({count} value per channel); use a larger batch or freeze the layer (inference mode)")
            y, mean, var = kernel.batch_norm_forward(x3, w, b, self.eps)
            buf["num_batches_tracked"] += 1
            m = 1.0 / float(buf["num_batches_tracked"]) if self.momentum is None else self.momentum
            kernel.batch_norm_update_running(buf["running_mean"], buf["running_var"], mean, var, count, m)   # (BN6)
        else:
            y, mean, var = kernel.batch_norm_forward(x3, w, b, self.eps, buf["running_mean"], buf["running_var"])
        if training:
            self._x, self._mean, self._var, self._batch = x3, mean, var, batch
        return y.reshape(x.shape)

    def backward(self, dy, input_grad=True):
        x3 = self._take_cache("_x")
        mean, var, batch = self._mean, self._var, self._batch
        self._mean = self._var = self._batch = None
        dy = self._as_dtype(dy)
        dx, dw, db = kernel.batch_norm_backward(dy.reshape(x3.shape), x3, self.params["w"], self.eps, mean, var,
                                                batch, input_grad=input_grad, param_grads=self.trainable)
        if self.trainable:
            self.grads["w"] += dw
            self.grads["b"] += db
        return dx.reshape(dy.shape) if input_grad else None


_RULES = """
    Parameters ``w`` (γ, ones) and ``b`` (β, zeros), ``(C,)``; buffers (state, not trained, saved
    in checkpoints) ``running_mean`` (zeros), ``running_var`` (ones), ``num_batches_tracked``.

    Training mode — ``forward(x, training=True)`` on a *trainable* layer: normalise with the
    batch's mean and biased variance (BN1, BN2); gradients (BN3, BN4); then update the running
    statistics with PyTorch's convention (BN6)::

        running_mean ← (1 − momentum)·running_mean + momentum·μ
        running_var  ← (1 − momentum)·running_var  + momentum·σ²·M/(M − 1)   (unbiased)

    (``momentum=None``: cumulative average, momentum = 1/num_batches_tracked, as PyTorch.)
    Training mode needs M > 1 values per channel; M = 1 raises an error naming the layer.

    Inference mode — ``training=False``, **or a frozen layer even when training=True**:
    normalise with the running statistics, never update them; the layer is then the fixed
    affine map (BN5) ``y = γ(x − r_μ)/√(r_σ² + ε) + β`` and its input gradient is
    ``dx = γ·dy/√(r_σ² + ε)``.  This is the Keras (TF 2) rule for frozen BatchNorm and unlike
    PyTorch's ``requires_grad=False`` alone: fine-tuning on small batches with a frozen base
    must not overwrite the statistics learnt on the large pretraining set, nor normalise with
    the noisy statistics of a few images.
"""


class BatchNorm2D(_BatchNorm):
    __doc__ = """Batch normalisation per channel of ``(N, C, H, W)`` maps (``torch.nn.BatchNorm2d``).

    ``BatchNorm2D(momentum=0.1, eps=1e-5)``; shapes unchanged; M = N·H·W values per channel.

    Forward  (BN1)  μ_c = (1/M) Σ_{n,h,w} x[n,c,h,w],   σ²_c = (1/M) Σ_{n,h,w} (x − μ_c)²
             (BN2)  y = γ_c · (x − μ_c)/√(σ²_c + ε) + β_c
    Backward (BN3)  dβ_c = Σ dy,   dγ_c = Σ dy · x̂
             (BN4)  dx = γ_c/(M√(σ²_c + ε)) · (M·dy − dβ_c − x̂·dγ_c)
    (derivation in :mod:`nptl.kernels.reference`).
    """ + _RULES
    layout = "(N, C, H, W)"
    sample_ndim = 3


class BatchNorm1D(_BatchNorm):
    __doc__ = """Batch normalisation per feature of ``(N, F)`` dense features (``torch.nn.BatchNorm1d``).

    The same formulas (BN1)–(BN6) as :class:`BatchNorm2D` with one value per sample and feature
    (M = N), and the same kernels (``(N, F)`` is ``(N, F, 1)``).
    """ + _RULES
    layout = "(N, F)"
    sample_ndim = 1
