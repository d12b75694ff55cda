"""The layer graph: composite layers made of named sub-layers.

One mechanism, :class:`Block`, holds named sub-layers and is itself a :class:`~nptl.layers.Layer`,
so blocks nest.  Two blocks exist:

- :class:`Sequential` runs its layers in order (a model is a ``Sequential``; so is a stage of a
  network, e.g. ResNet's ``layer3``);
- :class:`Residual` computes ``y = relu(main(x) + shortcut(x))`` (a ResNet basic block).

Every layer in the tree has a *dotted name*, the names on the path from the model down to it:
``layer3.1.conv2``.  Parameters are named ``<dotted layer name>.<key>`` (``layer3.1.conv2.w``);
``model["layer4.1.conv2"]`` finds a layer; ``freeze``/``unfreeze``, ``parameters()``,
``trainable_parameters()``, ``zero_grad``, ``astype``, the parameter counts, the summary and the
checkpoints (:mod:`nptl.io`) all walk the tree.  A block itself holds no parameters: it is
trainable when any layer inside it is.

Backward runs the layers in reverse and stops at the lowest layer that has trainable parameters:
nothing below it is computed, and that layer itself is not asked for its input gradient.  Frozen
layers above it still pass ``dx`` down (they skip only their own parameter gradients).  The same
rule holds inside every block.  ``trainable`` is read at every call, so freezing or unfreezing
takes effect at the next step with no rebuild or recompile.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .layers import Layer, Parameter, ReLU
from .settings import ensure_configured


class Block(Layer):
    """A layer made of named sub-layers (its *children*, any of which may be a block).

    Subclasses define :meth:`children`, ``output_shape``, ``forward`` and ``backward``; the tree
    walks (lookup by dotted name, parameters, freezing, counts, dtype, gradients) live here, once.
    """

    kind = "block"

    def __init__(self, name: str | None = None):
        # not Layer.__init__: setting ``trainable`` there would unfreeze every layer inside
        self.name = name
        self.grads: dict[str, np.ndarray] = {}
        self.input_shape: tuple | None = None
        self.dtype = np.dtype(np.float32)

    # -- the tree ----------------------------------------------------------------------------
    def children(self) -> list[Layer]:
        """The direct sub-layers, each under its own ``name``, in forward order."""
        raise NotImplementedError

    def child_input_shapes(self, input_shape):
        """Yields each child with the per-sample shape it receives when the block gets
        ``input_shape``."""
        raise NotImplementedError

    def locate_shape_error(self, input_shape, prefix: str = ""):
        """``(dotted name, input shape, error)`` of the first layer that cannot take what it
        would receive for ``input_shape`` (a map too small, wrong channels), or None if all fit."""
        last = None
        try:
            for layer, shape in self.child_input_shapes(input_shape):
                last = layer, shape
                layer.output_shape(shape)
        except ValueError as e:
            layer, shape = last
            inner = layer.locate_shape_error(shape, f"{prefix}{layer.name}.") if isinstance(layer, Block) else None
            return inner or (f"{prefix}{layer.name}", shape, e)
        return None

    def named_layers(self, prefix: str = ""):
        """``(dotted name, layer)`` for every layer inside this block, at every depth, blocks
        before their contents, in forward order."""
        for child in self.children():
            path = f"{prefix}{child.name}"
            yield path, child
            if isinstance(child, Block):
                yield from child.named_layers(path + ".")

    def leaves(self, prefix: str = ""):
        """``(dotted name, layer)`` for the layers that are not blocks (those that compute)."""
        return [(p, l) for p, l in self.named_layers(prefix) if not isinstance(l, Block)]

    def __getitem__(self, name: str) -> Layer:
        """The layer at dotted ``name`` (``model["layer4.1.conv2"]``)."""
        layer: Layer = self
        for i, part in enumerate(name.split(".")):
            found = [c for c in layer.children()] if isinstance(layer, Block) else []
            match = next((c for c in found if c.name == part), None)
            if match is None:
                where = ".".join(name.split(".")[:i]) or f"model '{self.name}'"
                raise KeyError(f"{where} has no layer {part!r} (looking up {name!r}); layers: "
                               f"{[c.name for c in found]}")
            layer = match
        return layer

    def _check_names(self, layers, owner: str):
        dupes = [n for n, c in Counter(l.name for l in layers).items() if c > 1]
        if dupes:
            raise ValueError(f"{owner}: layer names must be unique, repeated: {dupes}")
        dotted = [l.name for l in layers if "." in str(l.name)]
        if dotted:
            raise ValueError(f"{owner}: layer names must not contain '.', got {dotted}")

    # -- parameters and freezing -------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        """True when any layer inside computes parameter gradients; setting it sets every layer."""
        return any(l.computes_param_grads for _, l in self.leaves())

    @trainable.setter
    def trainable(self, value: bool) -> None:
        for _, layer in self.leaves():
            layer.trainable = bool(value)

    @property
    def computes_param_grads(self) -> bool:
        return self.trainable

    @property
    def params(self) -> dict:
        """A block holds no parameters of its own (its layers do)."""
        return {}

    @property
    def buffers(self) -> dict:
        """A block holds no state of its own (its layers may: BatchNorm's running statistics)."""
        return {}

    def buffer_count(self) -> int:
        """Number of buffer values of every layer inside (saved, never trained)."""
        return sum(l.buffer_count() for _, l in self.leaves())

    def _select(self, names, up_to):
        """The leaf layers that ``freeze``/``unfreeze`` act on."""
        leaves = self.leaves()
        if up_to is not None:
            if names:
                raise ValueError("freeze/unfreeze: give layer names or up_to=, not both")
            self[up_to]
            last = max(i for i, (p, _) in enumerate(leaves) if p == up_to or p.startswith(up_to + "."))
            return [l for _, l in leaves[: last + 1]]
        if not names:
            return [l for _, l in leaves]
        picked = []
        for n in names:
            target = self[n]
            picked += [l for _, l in target.leaves()] if isinstance(target, Block) else [target]
        return picked

    def freeze(self, *names: str, up_to: str | None = None) -> None:
        """Freeze the named layers (dotted names; a block freezes everything in it), or every
        layer up to and including ``up_to`` in forward order, or all.

        >>> from nptl import seed_cnn
        >>> model = seed_cnn()
        >>> model.freeze(up_to="flatten")                       # the convolutional base
        >>> [p.name for p in model.trainable_parameters()]
        ['dense1.w', 'dense1.b', 'dense2.w', 'dense2.b']
        >>> model.parameter_count(trainable=False), model.parameter_count(trainable=True)
        (55744, 37578)
        """
        for layer in self._select(names, up_to):
            layer.freeze()

    def unfreeze(self, *names: str, up_to: str | None = None) -> None:
        """Unfreeze the named layers, or every layer up to and including ``up_to``, or all."""
        for layer in self._select(names, up_to):
            layer.unfreeze()

    def parameters(self) -> list[Parameter]:
        """Every parameter inside, named by its dotted path (``layer1.0.conv1.w``)."""
        return [Parameter(l, k, path) for path, l in self.leaves() for k in l.params]

    def trainable_parameters(self) -> list[Parameter]:
        """The only parameters an optimizer sees: those of layers with ``trainable = True``."""
        return [Parameter(l, k, path) for path, l in self.leaves() if l.trainable for k in l.params]

    def parameter_count(self, trainable: bool | None = None) -> int:
        """Number of parameter entries: all, or only those of trainable (``trainable=True``) or
        frozen (``trainable=False``) layers.  Same method as :meth:`Layer.parameter_count`."""
        return sum(l.parameter_count(trainable) for _, l in self.leaves())

    def count_parameters(self) -> tuple[int, int]:
        """``(trainable, non_trainable)`` parameter counts, as :meth:`summary` prints them."""
        return self.parameter_count(True), self.parameter_count(False)

    def zero_grad(self) -> None:
        for _, layer in self.leaves():
            layer.zero_grad()

    def astype(self, dtype) -> "Block":
        """Convert every parameter to ``dtype`` in place (float64 for gradient checks)."""
        self.dtype = np.dtype(dtype)
        for _, layer in self.named_layers():
            layer.astype(dtype)
        return self

    def _build_children(self, layers, shape, rng, dtype) -> tuple:
        for layer in layers:
            shape = layer.build(shape, rng, dtype)
        return shape


class Sequential(Block):
    """A stack of layers run in order; a model, or a block inside one.

    ``Sequential(layers, input_shape=(C, H, W), seed=0, dtype=np.float32)`` names unnamed
    layers ``conv1, relu1, pool1, ...``, builds them (shape inference + seeded initialisation)
    and checks that each layer accepts the previous one's output.  Inside another block it is
    built by that block (no ``input_shape`` needed).
    """

    kind = "sequential"

    def __init__(self, layers, input_shape=None, seed: int = 0, dtype=np.float32, name: str | None = "sequential"):
        self.layers: list[Layer] = list(layers)
        if not all(isinstance(l, Layer) for l in self.layers):
            bad = [type(l).__name__ for l in self.layers if not isinstance(l, Layer)]
            raise TypeError(f"Sequential: every element must be a Layer, got {bad}")
        super().__init__(name)
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self._assign_names()
        if input_shape is not None:
            self.build(input_shape)

    def children(self) -> list[Layer]:
        return self.layers

    def child_input_shapes(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.layers:
            yield layer, shape
            shape = layer.output_shape(shape)

    def config(self) -> dict:
        return {"name": self.name}

    def _assign_names(self):
        counts: Counter = Counter()
        for layer in self.layers:
            if layer.name is None:
                counts[layer.kind] += 1
                layer.name = f"{layer.kind}{counts[layer.kind]}"
                while sum(l.name == layer.name for l in self.layers) > 1:
                    counts[layer.kind] += 1
                    layer.name = f"{layer.kind}{counts[layer.kind]}"
        self._check_names(self.layers, f"Sequential '{self.name}'")

    def build(self, input_shape, rng: np.random.Generator | None = None, dtype=None) -> tuple:
        """Build every layer for per-sample ``input_shape`` (no batch axis); returns the output
        shape.  A model draws its initial weights from ``seed``; a block inside a model from the
        model's generator."""
        top = rng is None
        if top:
            rng = np.random.default_rng(self.seed)
        if dtype is not None:
            self.dtype = np.dtype(dtype)
        self.input_shape = tuple(int(s) for s in input_shape)
        if top:
            where = self.locate_shape_error(self.input_shape)
            if where is not None:
                path, shape, err = where
                raise ValueError(f"model '{self.name}': input {self.input_shape} does not fit layer '{path}' "
                                 f"({type(self[path]).__name__}), which would receive {shape}: {err}")
        return self._build_children(self.layers, self.input_shape, rng, self.dtype)

    def _require_built(self):
        if self.input_shape is None:
            raise RuntimeError(f"model '{self.name}' is not built: pass input_shape= or call build()")

    def slice(self, start: int, stop: int | None = None) -> "Sequential":
        """A model over ``layers[start:stop]`` sharing the layer objects (no copy, no rebuild):
        e.g. a frozen base ``slice(0, k)`` whose features are cached, and the head ``slice(k)``
        that trains on them."""
        self._require_built()
        sub = Sequential(self.layers[start:stop], seed=self.seed, dtype=self.dtype,
                         name=f"{self.name}[{start}:{'' if stop is None else stop}]")
        shape = self.input_shape
        for layer in self.layers[:start]:
            shape = layer.output_shape(shape)
        sub.input_shape = shape  # the layers are built already: no build(), which would re-initialise
        return sub

    def index(self, name: str) -> int:
        """Position of the direct child ``name`` in ``layers``."""
        return self.layers.index(self[name])

    # -- computation -------------------------------------------------------------------------
    def forward(self, x, training: bool = False) -> np.ndarray:
        """Run every layer; with ``training=True`` layers keep what their backward needs."""
        self._require_built()
        ensure_configured()
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    __call__ = forward

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """Forward in inference mode, in batches."""
        self._require_built()
        outs = [self.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0,) + self.output_shape(), self.dtype)

    def lowest_trainable_index(self) -> int | None:
        """Index of the lowest layer that computes parameter gradients, or None."""
        for i, layer in enumerate(self.layers):
            if layer.computes_param_grads:
                return i
        return None

    def backward(self, dy, input_grad: bool = False):
        """Back-propagate ``dy`` (gradient of the loss w.r.t. the output), accumulating
        parameter gradients of trainable layers.  Stops at the lowest trainable layer unless
        ``input_grad=True``, in which case it returns the gradient w.r.t. the input."""
        stop = 0 if input_grad else self.lowest_trainable_index()
        if stop is None:
            return None
        for i in range(len(self.layers) - 1, stop - 1, -1):
            dy = self.layers[i].backward(dy, input_grad=input_grad or i > stop)
        return dy if input_grad else None

    # -- description -------------------------------------------------------------------------
    def output_shape(self, input_shape=None) -> tuple:
        """Per-sample output shape for ``input_shape`` (default: the shape the model was built for)."""
        if input_shape is None:
            self._require_built()
            input_shape = self.input_shape
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def summary(self, print_fn=print, depth: int | None = None) -> str:
        """Keras-style table: layer (type), output shape, parameter count, trainable; totals.
        Layers inside blocks appear under their dotted names, indented; ``depth=1`` shows only
        the model's own layers."""
        self._require_built()
        rows = []

        def walk(block, shape, prefix, level):
            for layer, shape in block.child_input_shapes(shape):
                out = layer.output_shape(shape)
                if isinstance(layer, Block):
                    t, n = layer.count_parameters()
                    flag = "-" if not t + n else ("yes" if not n else ("no" if not t else "partly"))
                else:
                    flag = ("yes" if layer.trainable else "no") if layer.params else "-"
                rows.append(("  " * level + f"{prefix}{layer.name} ({type(layer).__name__})",
                             str((None,) + tuple(out)), f"{layer.parameter_count():,}", flag))
                if isinstance(layer, Block) and (depth is None or level + 1 < depth):
                    walk(layer, shape, f"{prefix}{layer.name}.", level + 1)

        walk(self, self.input_shape, "", 0)
        head = ("Layer (type)", "Output Shape", "Param #", "Trainable")
        widths = [max(len(r[i]) for r in rows + [head]) + 2 for i in range(4)]
        line = lambda r: "".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
        rule = "=" * sum(widths)
        t, n = self.count_parameters()
        buffers = self.buffer_count()
        text = "\n".join(
            [f'Model: "{self.name}"  input {(None,) + self.input_shape}  dtype {self.dtype}', rule, line(head), rule]
            + [line(r) for r in rows]
            + [rule, f"Total params: {t + n:,}", f"Trainable params: {t:,}", f"Non-trainable params: {n:,}"]
            + ([f"Buffers (running statistics, saved, not trained): {buffers:,}"] if buffers else [])
            + [rule]
        )
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self):
        return f"Sequential({[l.name for l in self.layers]})"


class Residual(Block):
    """A residual block: ``y = relu(main(x) + shortcut(x))``.

    ``main`` is a :class:`Sequential` (or a list of layers); ``shortcut`` is None (identity,
    ``x`` must keep its shape) or a layer/block mapping ``x`` to ``main``'s output shape, e.g. a
    projection ``Sequential([Conv2D(F, 1, stride=2, use_bias=False), BatchNorm2D()],
    name="downsample")``.  Naming follows torchvision's ``BasicBlock``: the main path's layers sit
    directly under the block (``layer2.0.conv1``), the shortcut under its own name
    (``layer2.0.downsample.0``).

    Forward  (RB1)  z = main(x) + shortcut(x),   y = max(z, 0)
    Backward (RB2)  dz = dy · [z > 0]
             (RB3)  dx = ∂main/∂x ᵀ dz + ∂shortcut/∂x ᵀ dz     (dx = dz for the identity)
    x feeds two paths (a fork), so its gradient is the sum of what comes back along each
    (RB3); each path accumulates its own parameter gradients from the same ``dz``.  A path with
    nothing trainable is skipped unless ``dx`` is needed.
    """

    kind = "residual"

    def __init__(self, main, shortcut: Layer | None = None, name: str | None = None):
        self.main = main if isinstance(main, Sequential) else Sequential(main, name="main")
        if shortcut is not None and not isinstance(shortcut, Layer):
            raise TypeError(f"Residual: shortcut must be a Layer or None, got {type(shortcut).__name__}")
        self.shortcut = shortcut
        if shortcut is not None and shortcut.name is None:
            shortcut.name = "downsample"
        super().__init__(name)
        self._check_names(self.children(), f"Residual '{name}'")
        self._relu = ReLU(name="relu")  # (RB1)-(RB2): the ReLU after the sum, no parameters

    def children(self) -> list[Layer]:
        return self.main.layers + ([self.shortcut] if self.shortcut is not None else [])

    def child_input_shapes(self, input_shape):
        yield from self.main.child_input_shapes(input_shape)
        if self.shortcut is not None:
            yield self.shortcut, tuple(input_shape)

    def config(self) -> dict:
        return {"name": self.name}

    def build(self, input_shape, rng, dtype=np.float32) -> tuple:
        self.input_shape = tuple(int(s) for s in input_shape)
        self.dtype = np.dtype(dtype)
        self.main.build(self.input_shape, rng, dtype)
        if self.shortcut is not None:
            self.shortcut.build(self.input_shape, rng, dtype)
        out = self.output_shape(self.input_shape)
        self._relu.build(out, rng, dtype)
        return out

    def output_shape(self, input_shape) -> tuple:
        main = self.main.output_shape(input_shape)
        short = tuple(input_shape) if self.shortcut is None else self.shortcut.output_shape(input_shape)
        if main != short:
            fix = ("give it a projection shortcut (1×1 conv with the main path's stride and filters)"
                   if self.shortcut is None else "make the shortcut produce the main path's shape")
            raise ValueError(f"residual block '{self.name}': the main path maps {tuple(input_shape)} to {main} "
                             f"but the shortcut to {short}; {fix}")
        return main

    def astype(self, dtype) -> "Residual":
        super().astype(dtype)
        self._relu.astype(dtype)
        return self

    def forward(self, x, training: bool = False) -> np.ndarray:
        z = self.main.forward(x, training=training)                      # (RB1)
        z = z + (x if self.shortcut is None else self.shortcut.forward(x, training=training))
        return self._relu.forward(z, training=training)

    def backward(self, dy, input_grad: bool = True):
        dz = self._relu.backward(dy, input_grad=True)                    # (RB2)
        dx = self.main.backward(dz, input_grad=input_grad)               # (RB3), main path
        if self.shortcut is None:
            return dx + dz if input_grad else None
        if input_grad or self.shortcut.computes_param_grads:
            ds = self.shortcut.backward(dz, input_grad=input_grad)       # (RB3), shortcut path
            if input_grad:
                dx = dx + ds
        return dx

    def __repr__(self):
        return f"Residual({self.name!r}, main={[l.name for l in self.main.layers]}, shortcut={self.shortcut!r})"
