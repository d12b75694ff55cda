"""Numerical gradient checking: analytic backward passes against central differences.

``gradcheck(target, *args, **kwargs)`` works on

- a forward op of :mod:`nptl.ops` (``conv2d``, ``max_pool2d``, ``dense``, ``relu`` ...): the
  scalar checked is ``L = Σ r ⊙ op(*args)`` for a fixed random ``r``; the analytic gradients come
  from the op's backward (``conv2d_backward`` ...), found in :mod:`nptl.registry`, called with
  ``dy = r``;
- a loss op (``cross_entropy``, ``binary_cross_entropy``, ``mse``): ``L`` is the loss, the
  analytic gradient its returned derivative w.r.t. the first argument;
- a layer or a ``Sequential`` model with ``args = (x,)``: ``L = Σ r ⊙ forward(x, training=True)``,
  checked w.r.t. ``x`` and every trainable parameter (a float64 copy is used; the original is
  untouched).  The layers' state (``Layer.state()``: BatchNorm's running statistics, Dropout's
  call count) is reset before every evaluation, so each one sees the same batch statistics
  and dropout mask as the analytic pass; buffers are state, never checked.

Everything is done in float64.  For each checked array ``a`` with analytic gradient ``g`` and
numerical gradient ``ĝ[k] = (L(a + h e_k) − L(a − h e_k)) / 2h`` over *all* entries ``k``
(or a random sample of ``max_entries``), the reported error is the max relative error

    err(a) = max_k |g[k] − ĝ[k]| / max(max_k |g[k]|, max_k |ĝ[k]|, tiny)

i.e. the worst entry measured against the gradient's own scale.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np



@dataclass
class GradcheckReport:
    """Max relative error per checked array (``errors``) and the entries checked (``entries``)."""

    errors: dict = field(default_factory=dict)
    entries: dict = field(default_factory=dict)

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def ok(self, tol: float = 1e-6) -> bool:
        return self.max_error <= tol

    def assert_ok(self, tol: float = 1e-6) -> "GradcheckReport":
        if not self.ok(tol):
            raise AssertionError(f"gradient check failed (tol {tol:g}):\n{self}")
        return self

    def __str__(self) -> str:
        w = max((len(k) for k in self.errors), default=4)
        rows = [f"{k.ljust(w)}  max rel err {v:.3e}  ({self.entries[k]} entries)" for k, v in self.errors.items()]
        return "\n".join(rows)


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``max|g − ĝ| / max(max|g|, max|ĝ|)`` (0 when both are identically zero)."""
    scale = max(float(np.max(np.abs(analytic), initial=0.0)), float(np.max(np.abs(numeric), initial=0.0)))
    if scale == 0.0:
        return 0.0
    return float(np.max(np.abs(analytic - numeric))) / scale


def numerical_gradient(loss_fn, a: np.ndarray, eps: float = 1e-6, indices=None) -> np.ndarray:
    """Central differences of the scalar ``loss_fn()`` w.r.t. ``a`` (perturbed in place and
    restored), at the flat ``indices`` (default all).  Returns a flat array over ``indices``."""
    flat = a.reshape(-1)
    idx = np.arange(flat.size) if indices is None else indices
    out = np.empty(len(idx))
    for j, k in enumerate(idx):
        orig = flat[k]
        flat[k] = orig + eps
        lp = float(loss_fn())
        flat[k] = orig - eps
        lm = float(loss_fn())
        flat[k] = orig
        out[j] = (lp - lm) / (2 * eps)
    return out


def check_gradients(loss_fn, arrays: dict, analytic: dict, eps: float = 1e-6,
                    max_entries: int | None = None, seed: int = 0) -> GradcheckReport:
    """Compare ``analytic[name]`` with central differences of ``loss_fn()`` w.r.t. ``arrays[name]``
    (float64 arrays that ``loss_fn`` reads; each is perturbed in place and restored)."""
    rng = np.random.default_rng(seed)
    report = GradcheckReport()
    for name, a in arrays.items():
        if a.dtype != np.float64:
            raise TypeError(f"gradcheck: '{name}' must be float64 for a meaningful check, got {a.dtype}")
        g = np.asarray(analytic[name], dtype=np.float64).reshape(-1)
        if g.size != a.size:
            raise ValueError(f"gradcheck: analytic gradient of '{name}' has {g.size} entries, array has {a.size}")
        idx = None
        if max_entries is not None and a.size > max_entries:
            idx = np.sort(rng.choice(a.size, size=max_entries, replace=False))
        num = numerical_gradient(loss_fn, a, eps, idx)
        report.errors[name] = relative_error(g if idx is None else g[idx], num)
        report.entries[name] = a.size if idx is None else len(idx)
    return report


def gradcheck(target, *args, eps: float = 1e-6, max_entries: int | None = None, seed: int = 0,
              **kwargs) -> GradcheckReport:
    """Check ``target``'s analytic gradients against central differences in float64.

    ``target`` is an op of :mod:`nptl.registry` (its backward is found there), a loss op, a
    layer or a model (every trainable parameter and the input, in training mode).  Returns a
    :class:`GradcheckReport`: the max relative error per checked array.

    >>> import nptl
    >>> from nptl import ops
    >>> rng = np.random.default_rng(0)
    >>> x, w, b = rng.standard_normal((2, 3, 7, 7)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    >>> report = gradcheck(ops.conv2d, x, w, b, stride=2, padding=1)
    >>> sorted(report.errors), report.entries["w"], report.ok(1e-6)
    (['b', 'w', 'x'], 108, True)
    >>> gradcheck(ops.cross_entropy, rng.standard_normal((4, 3)), [0, 2, 1, 1]).ok(1e-6)
    True
    >>> model = nptl.Sequential([nptl.Dense(3), nptl.ReLU(), nptl.Dense(2)], input_shape=(5,))
    >>> gradcheck(model, rng.standard_normal((4, 5))).assert_ok(1e-6).entries["dense1.w"]
    15
    """
    from . import registry
    from .graph import Sequential
    from .layers import Layer

    if isinstance(target, (Layer, Sequential)):
        return _check_module(target, args, np.random.default_rng(seed), eps, max_entries, seed)
    op = registry.find(target)
    if op is None:
        raise TypeError(f"gradcheck: {target!r} is not a registered op (nptl.registry) nor a layer or "
                        f"model; use check_gradients()")
    return check_op_gradients(op, args, kwargs, eps, max_entries, seed)


def check_op_gradients(op, args, params, eps: float = 1e-6, max_entries: int | None = None,
                       seed: int = 0) -> GradcheckReport:
    """:func:`gradcheck` of the op described by ``op`` (an :class:`nptl.registry.Op`, registered or
    not) called as ``op.forward(*args, **params)``."""
    from .registry import Case

    names = op.differentiable
    n_arr = sum(1 for a in args[: len(names)] if isinstance(a, np.ndarray))
    arrays = [np.array(a, dtype=np.float64) if i < n_arr else a for i, a in enumerate(args)]
    forward = op.forward
    if op.kind == "loss":
        rest = [np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else a for a in args[1:]]
        first = arrays[0]
        _, grad = forward(first, *rest, **params)
        return check_gradients(lambda: forward(first, *rest, **params)[0], {names[0]: first}, {names[0]: grad},
                               eps, max_entries, seed)
    y = forward(*arrays, **params)
    r = np.random.default_rng(seed).standard_normal(np.shape(y))
    grads = op.gradients(r, Case(tuple(arrays), dict(params)))
    checked = {names[i]: arrays[i] for i in range(n_arr)}
    analytic = {names[i]: grads[i] for i in range(n_arr)}
    return check_gradients(lambda: float(np.sum(r * forward(*arrays, **params))), checked, analytic,
                           eps, max_entries, seed)


def _check_module(module, args, rng, eps, max_entries, seed):
    from .graph import Block

    (x,) = args
    m = copy.deepcopy(module).astype(np.float64)
    x = np.array(x, dtype=np.float64)
    params = m.parameters()
    layers = [l for _, l in m.leaves()] if isinstance(m, Block) else [m]
    state = [layer.state() for layer in layers]

    def forward():
        for layer, st in zip(layers, state):
            layer.set_state(st)
        return m.forward(x, training=True)

    m.zero_grad()
    y = forward()
    r = rng.standard_normal(y.shape)
    dx = m.backward(r, input_grad=True)
    # frozen layers compute no parameter gradient: check only trainable parameters
    trainable = [p for p in params if p.layer.trainable]
    arrays = {"input": x, **{p.name: p.value for p in trainable}}
    analytic = {"input": dx, **{p.name: p.grad.copy() for p in trainable}}
    return check_gradients(lambda: float(np.sum(r * forward())), arrays, analytic, eps, max_entries, seed)

