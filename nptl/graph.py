"""The layer graph: a ``Sequential`` stack of named layers.

Forward runs the layers in order.  Backward runs them in reverse and stops at the lowest
layer that has trainable parameters: nothing below it is computed, and that layer itself is
not asked for its input gradient.  Frozen layers above it still pass ``dx`` down (they skip
only their own parameter gradients).  ``trainable`` is read at every call, so freezing or
unfreezing takes effect at the next step with no rebuild or recompile.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .layers import Layer, Parameter
from .threads import configure as configure_threads


class Sequential:
    """A stack of layers.

    ``Sequential(layers, input_shape=(C, H, W), seed=0, dtype=np.float32)`` names unnamed
    layers ``conv1, relu1, pool1, ...``, builds them (shape inference + seeded initialisation)
    and checks that each layer accepts the previous one's output.
    """

    def __init__(self, layers, input_shape=None, seed: int = 0, dtype=np.float32, name: str = "sequential"):
        self.layers: list[Layer] = list(layers)
        if not all(isinstance(l, Layer) for l in self.layers):
            bad = [type(l).__name__ for l in self.layers if not isinstance(l, Layer)]
            raise TypeError(f"Sequential: every element must be a Layer, got {bad}")
        self.name = name
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self._assign_names()
        self.input_shape = None
        if input_shape is not None:
            self.build(input_shape)

    def _assign_names(self):
        counts: Counter = Counter()
        for layer in self.layers:
            if layer.name is None:
                counts[layer.kind] += 1
                layer.name = f"{layer.kind}{counts[layer.kind]}"
                while sum(l.name == layer.name for l in self.layers) > 1:
                    counts[layer.kind] += 1
                    layer.name = f"{layer.kind}{counts[layer.kind]}"
        dupes = [n for n, c in Counter(l.name for l in self.layers).items() if c > 1]
        if dupes:
            raise ValueError(f"Sequential: layer names must be unique, repeated: {dupes}")

    def build(self, input_shape) -> "Sequential":
        """Build every layer for per-sample ``input_shape`` (no batch axis)."""
        rng = np.random.default_rng(self.seed)
        self.input_shape = shape = tuple(int(s) for s in input_shape)
        for layer in self.layers:
            shape = layer.build(shape, rng, self.dtype)
        return self

    def _require_built(self):
        if self.input_shape is None:
            raise RuntimeError(f"model '{self.name}' is not built: pass input_shape= or call build()")

    def slice(self, start: int, stop: int | None = None) -> "Sequential":
        """A model over ``layers[start:stop]`` sharing the layer objects (no copy, no rebuild):
        e.g. a frozen base ``slice(0, k)`` whose features are cached, and the head ``slice(k)``
        that trains on them."""
        self._require_built()
        sub = Sequential.__new__(Sequential)
        sub.layers, sub.seed, sub.dtype = self.layers[start:stop], self.seed, self.dtype
        sub.name = f"{self.name}[{start}:{'' if stop is None else stop}]"
        shape = self.input_shape
        for layer in self.layers[:start]:
            shape = layer.output_shape(shape)
        sub.input_shape = shape
        return sub

    # -- lookup ------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"model '{self.name}' has no layer {name!r}; layers: {[l.name for l in self.layers]}")

    def index(self, name: str) -> int:
        return self.layers.index(self[name])

    # -- computation -------------------------------------------------------------------------
    def forward(self, x, training: bool = False) -> np.ndarray:
        """Run every layer; with ``training=True`` layers keep what their backward needs."""
        self._require_built()
        configure_threads()
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    __call__ = forward

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """Forward in inference mode, in batches."""
        self._require_built()
        outs = [self.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0,) + self.output_shape, self.dtype)

    def lowest_trainable_index(self) -> int | None:
        """Index of the lowest layer that computes parameter gradients, or None."""
        for i, layer in enumerate(self.layers):
            if layer.computes_param_grads:
                return i
        return None

    def backward(self, dy, input_grad: bool = False):
        """Back-propagate ``dy`` (gradient of the loss w.r.t. the output), accumulating
        parameter gradients of trainable layers.  Stops at the lowest trainable layer unless
        ``input_grad=True``, in which case it returns the gradient w.r.t. the model input."""
        stop = 0 if input_grad else self.lowest_trainable_index()
        if stop is None:
            return None
        for i in range(len(self.layers) - 1, stop - 1, -1):
            need_dx = input_grad or i > stop
            dy = self.layers[i].backward(dy, input_grad=need_dx)
        return dy if input_grad else None

    # -- freezing ----------------------------------------------------------------------------
    def _select(self, names, up_to):
        if up_to is not None:
            if names:
                raise ValueError("freeze/unfreeze: give layer names or up_to=, not both")
            return self.layers[: self.index(up_to) + 1]
        if not names:
            return list(self.layers)
        return [self[n] for n in names]

    def freeze(self, *names: str, up_to: str | None = None) -> None:
        """Freeze the named layers, or every layer up to and including ``up_to``, or all."""
        for layer in self._select(names, up_to):
            layer.freeze()

    def unfreeze(self, *names: str, up_to: str | None = None) -> None:
        """Unfreeze the named layers, or every layer up to and including ``up_to``, or all."""
        for layer in self._select(names, up_to):
            layer.unfreeze()

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def trainable_parameters(self) -> list[Parameter]:
        """The only parameters an optimizer sees: those of layers with ``trainable = True``."""
        return [p for layer in self.layers if layer.trainable for p in layer.parameters()]

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    def astype(self, dtype) -> "Sequential":
        """Convert every parameter to ``dtype`` in place (float64 for gradient checks)."""
        self.dtype = np.dtype(dtype)
        for layer in self.layers:
            layer.astype(dtype)
        return self

    # -- description -------------------------------------------------------------------------
    @property
    def output_shape(self) -> tuple:
        self._require_built()
        shape = self.input_shape
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def parameter_count(self, trainable: bool | None = None) -> int:
        """Number of parameter entries: all, or only those of trainable (``trainable=True``) or
        frozen (``trainable=False``) layers.  Same method as :meth:`Layer.parameter_count`."""
        return sum(l.parameter_count(trainable) for l in self.layers)

    def count_parameters(self) -> tuple[int, int]:
        """``(trainable, non_trainable)`` parameter counts, as :meth:`summary` prints them."""
        return self.parameter_count(True), self.parameter_count(False)

    def summary(self, print_fn=print) -> str:
        """Keras-style table: layer (type), output shape, parameter count, trainable; totals."""
        self._require_built()
        rows, shape = [], self.input_shape
        for layer in self.layers:
            shape = layer.output_shape(shape)
            flag = ("yes" if layer.trainable else "no") if layer.params else "-"
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None,) + tuple(shape)),
                         f"{layer.parameter_count():,}", flag))
        head = ("Layer (type)", "Output Shape", "Param #", "Trainable")
        widths = [max(len(r[i]) for r in rows + [head]) + 2 for i in range(4)]
        line = lambda r: "".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
        rule = "=" * sum(widths)
        t, n = self.count_parameters()
        text = "\n".join(
            [f'Model: "{self.name}"  input {(None,) + self.input_shape}  dtype {self.dtype}', rule, line(head), rule]
            + [line(r) for r in rows]
            + [rule, f"Total params: {t + n:,}", f"Trainable params: {t:,}", f"Non-trainable params: {n:,}", rule]
        )
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self):
        return f"Sequential({[l.name for l in self.layers]})"
