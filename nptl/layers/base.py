"""The layer contract shared by every layer.

A layer owns ``params`` and ``grads`` (dicts with the same keys), a ``trainable`` flag,
``forward``/``backward``, and knows its output shape from its input shape (``output_shape``).
Shapes exclude the batch axis.  Gradients accumulate (``+=``) until :meth:`zero_grad`.

``buffers`` holds state that is not trained: arrays a layer updates itself in ``forward``
(BatchNorm's ``running_mean``, ``running_var``, ``num_batches_tracked``), as PyTorch's
buffers.  They are saved and loaded with the parameters (checkpoints, ``load_weights``, torch
import, where ``bn.running_mean`` maps onto ``buffers["running_mean"]``) but are never seen by
optimizers, gradients or ``gradcheck``, and are not counted in ``parameter_count()``.  Layers
update buffers in place, so a reference to a buffer array stays valid.

Frozen (``trainable = False``) is not inference mode: a frozen layer still caches what its
backward needs and still returns ``dx`` when asked, it only skips its parameter gradients.
What a training-mode forward caches serves one backward, which releases it
(:meth:`Layer._take_cache`): call forward again before the next backward.
"""
from __future__ import annotations

import numpy as np

from ..settings import ensure_configured


class Parameter:
    """A view of one parameter: ``layer.params[key]`` and ``layer.grads[key]``, named
    ``"<path>.<key>"`` where ``path`` is the layer's dotted name in its model (``layer1.0.conv1``;
    the layer's own name when it is not inside a block).  Optimizers keep their state per
    ``name`` and update ``value`` in place."""

    __slots__ = ("layer", "key", "path")

    def __init__(self, layer: "Layer", key: str, path: str | None = None):
        self.layer = layer
        self.key = key
        self.path = path

    @property
    def name(self) -> str:
        return f"{self.path or self.layer.name}.{self.key}"

    @property
    def value(self) -> np.ndarray:
        return self.layer.params[self.key]

    @property
    def grad(self) -> np.ndarray:
        return self.layer.grads[self.key]

    def __repr__(self) -> str:
        return f"Parameter({self.name}, shape={self.value.shape}, dtype={self.value.dtype})"


class Layer:
    """Base class. Subclasses implement ``output_shape``, ``forward``, ``backward`` and, if
    they hold parameters, ``_init_params``."""

    kind = "layer"  # prefix for automatic names

    def __init__(self, name: str | None = None):
        self.name = name
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.trainable = True
        self.input_shape: tuple | None = None
        self.dtype = np.dtype(np.float32)

    # -- construction ------------------------------------------------------------------------
    def build(self, input_shape: tuple, rng: np.random.Generator, dtype=np.float32) -> tuple:
        """Create parameters for ``input_shape`` (no batch axis); returns the output shape."""
        self.input_shape = tuple(int(s) for s in input_shape)
        self.dtype = np.dtype(dtype)
        out = self.output_shape(self.input_shape)
        self._init_params(rng)
        declared = self.array_shapes(self.input_shape)
        made = {k: v.shape for k, v in {**self.params, **self.buffers}.items()}
        if declared is not None and made != declared:
            raise RuntimeError(f"layer '{self.name}' ({type(self).__name__}): _init_params made {made} but "
                               f"array_shapes says {declared}")
        self.grads = {k: np.zeros(v.shape, v.dtype) for k, v in self.params.items()}  # pages untouched until written
        return out

    def _init_params(self, rng: np.random.Generator) -> None:
        """Parameter-free layers have nothing to initialise."""

    def array_shapes(self, input_shape: tuple) -> dict[str, tuple] | None:
        """The shapes of the arrays :meth:`build` creates for ``input_shape`` -- ``params`` and
        ``buffers``, by key, what a checkpoint stores -- computed without allocating anything:
        checkpoint loading compares them with the file before it builds a model (a header could
        otherwise ask for a 100 GB layer).  ``{}`` for layers without parameters; a layer that
        defines ``_init_params`` overrides this (``build`` checks that the two agree, and
        ``tests/test_reliability.py`` that every layer type does).  ``None`` means unknown:
        loading then has to build the layer to know."""
        return {} if type(self)._init_params is Layer._init_params else None

    def output_shape(self, input_shape: tuple) -> tuple:
        raise NotImplementedError

    def config(self) -> dict:
        """Constructor arguments, enough to rebuild this layer (used by checkpoints)."""
        return {"name": self.name}

    def astype(self, dtype) -> "Layer":
        """Convert parameters, gradients and floating-point buffers to ``dtype`` in place
        (float64 for gradient checks); integer buffers (counters) keep their dtype."""
        self.dtype = np.dtype(dtype)
        self.params = {k: v.astype(dtype) for k, v in self.params.items()}
        self.grads = {k: v.astype(dtype) for k, v in self.grads.items()}
        self.buffers = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in self.buffers.items()}
        return self

    def buffer_count(self) -> int:
        """Number of values in ``buffers`` (state that is saved but not trained)."""
        return int(sum(v.size for v in self.buffers.values()))

    def state(self) -> dict:
        """A copy of everything ``forward(..., training=True)`` changes besides its backward
        caches (the buffers; Dropout adds its call count).  ``set_state`` puts it back:
        ``gradcheck`` uses the pair so that every evaluation of the loss sees the same state."""
        return {k: v.copy() for k, v in self.buffers.items()}

    def set_state(self, state: dict) -> None:
        for k, v in state.items():
            np.copyto(self.buffers[k], v)

    # -- training state ----------------------------------------------------------------------
    def freeze(self) -> None:
        """``trainable = False``: parameters stop receiving gradients and updates."""
        self.trainable = False

    def unfreeze(self) -> None:
        self.trainable = True

    @property
    def computes_param_grads(self) -> bool:
        return self.trainable and bool(self.params)

    def parameters(self) -> list[Parameter]:
        return [Parameter(self, k) for k in self.params]

    def parameter_count(self, trainable: bool | None = None) -> int:
        """Number of parameter entries: all (``trainable=None``), or only if this layer's
        ``trainable`` flag equals ``trainable`` (else 0).  Same method as
        :meth:`nptl.Sequential.parameter_count`."""
        if trainable is not None and bool(trainable) != self.trainable:
            return 0
        return int(sum(v.size for v in self.params.values()))

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g.fill(0)

    # -- computation -------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray, input_grad: bool = True):
        """Accumulate parameter gradients (if trainable) and return ``dx`` (or None when
        ``input_grad`` is False).  Same keyword as :meth:`nptl.Sequential.backward`."""
        raise NotImplementedError

    def _input(self, x, expected: tuple, layout: str) -> np.ndarray:
        """``x`` as a contiguous array of this layer's dtype, checked against ``expected``
        (per-sample shape, ``None`` = any size).  The first layer computation applies the process
        settings (:mod:`nptl.settings`)."""
        ensure_configured()
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"layer '{self.name}' ({type(self).__name__}): input must be real-valued, got dtype {arr.dtype}")
        ok = arr.ndim == len(expected) + 1 and all(
            e is None or e == s for e, s in zip(expected, arr.shape[1:])
        )
        if not ok:
            want = ", ".join(["N"] + [("?" if e is None else str(e)) for e in expected])
            raise ValueError(
                f"layer '{self.name}' ({type(self).__name__}) expects input {layout} = ({want}), "
                f"got shape {tuple(arr.shape)}"
            )
        return np.ascontiguousarray(arr, dtype=self.dtype)

    def _as_dtype(self, dy) -> np.ndarray:
        """An incoming gradient as a contiguous array of this layer's dtype."""
        return np.ascontiguousarray(dy, dtype=self.dtype)

    def _take_cache(self, name: str):
        """What ``forward(..., training=True)`` kept under ``name`` for the backward, now released
        (the attribute is set to None): a forward's cache serves one backward, and each
        activation is freed as soon as the last layer that kept it has run its backward, so
        memory falls as backward proceeds (torch frees its saved tensors the same way).  A
        second backward without a new forward raises."""
        value = getattr(self, name, None)
        if value is None:
            raise RuntimeError(
                f"layer '{self.name}': backward called without a forward(..., training=True) before it"
            )
        setattr(self, name, None)
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, trainable={self.trainable})"
