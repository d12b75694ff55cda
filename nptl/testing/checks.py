"""Property checks for your own ops and layers, the checks nptl runs on its own.

:func:`check_op` takes an :class:`nptl.registry.Op` (the same record nptl's ops are registered
with, registered or not) and checks, on hypothesis-generated cases: the fast forward/backward
against the reference twin (float32 and float64), the gradients against central differences in
float64, and optionally torch.

:func:`check_layer` takes a layer and one input shape and checks: the predicted output shape
against the real one, the output dtype, an optional twin (a plain function of the input and the
layer's parameters), the gradients w.r.t. the input and every parameter against central
differences in float64, the frozen-layer rules (no parameter gradient, the same ``dx``, nothing
computed for ``input_grad=False``), and optionally torch.  Wrap it in ``@given`` to run it over
generated shapes.  ``examples/test_my_layer.py`` is a file to copy.

>>> import nptl
>>> from nptl.testing import check_layer
>>> report = check_layer(nptl.Conv2D(4, 3, stride=2, padding=1), (3, 7, 7))
>>> report.output_shape, sorted(report.gradients.errors)
((4, 4, 4), ['conv.b', 'conv.w', 'input'])
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from ..gradient_check import GradcheckReport, check_op_gradients, gradcheck
from ..registry import Case, Op
from .strategies import rand, tolerance

__all__ = ["check_op", "check_layer", "LayerReport", "assert_close"]


def assert_close(actual, expected, dtype, what: str = "") -> None:
    """``actual`` has ``dtype``, ``expected``'s shape, and equals it within the twin tolerance of
    ``dtype`` (:func:`nptl.testing.strategies.tolerance`, atol scaled by ``max|expected|``)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    rtol, atol = tolerance(dtype)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


# ----------------------------------------------------------------------------------------------
# ops
# ----------------------------------------------------------------------------------------------
def check_op_case(op: Op, case: Case, seed: int = 0, tol: float = 1e-6, torch: bool = False) -> None:
    """Every check of :func:`check_op` on one case: twin equality in ``case``'s dtype, and (for a
    float64 case) central differences; with ``torch=True`` also ``op.torch``."""
    dtype = case.args[0].dtype
    fast = op.forward(*case.args, **case.params)
    if op.reference[0] is not None:
        slow = op.reference[0](*case.args, **case.params)
        if op.kind == "loss":
            for name, a, b in zip(("loss", "gradient"), fast, slow, strict=True):
                assert_close(a, b, dtype, f"{op.name} {name} vs reference")
        else:
            assert_close(fast, slow, dtype, f"{op.name} forward vs reference")
    if op.kind != "loss" and op.reference[1] is not None:
        dy = rand(np.random.default_rng(seed), np.shape(fast), dtype)
        for name, a, b in zip(op.differentiable, op.gradients(dy, case), op.gradients(dy, case, reference=True),
                              strict=True):
            assert_close(a, b, dtype, f"{op.name} d{name} vs reference")
    if dtype == np.float64:
        check_op_gradients(op, case.args, case.params, seed=seed).assert_ok(tol)
    if torch:
        _op_vs_torch(op, case, seed)


def check_op(op: Op, examples: int = 20, tol: float = 1e-6, torch: bool = False, strategy=None) -> None:
    """Run :func:`check_op_case` on ``examples`` generated cases per dtype (float32, float64).

    ``op`` is an :class:`nptl.registry.Op`; its cases come from ``strategy(dtype=, small=)`` if
    given, else from ``op.cases`` (a strategy name in :mod:`nptl.testing.strategies`).  float64
    cases are drawn ``small`` so that central differences over every entry stay cheap.
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    make = strategy or (lambda dtype, small: op.strategy(dtype, small))

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data(), seed=st.integers(0, 2**31 - 1))
    def run(data, seed):
        for dtype, small in ((np.float32, False), (np.float64, True)):
            check_op_case(op, data.draw(make(dtype=dtype, small=small)), seed, tol, torch)

    run()


def _op_vs_torch(op, case, seed):
    import torch
    import torch.nn.functional as F

    dtype = case.args[0].dtype
    targs = []
    for name, a in zip(op.arg_names, case.args):
        if a is None or np.asarray(a).dtype.kind != "f":
            targs.append(None if a is None else torch.from_numpy(np.asarray(a)))
        else:
            targs.append(torch.tensor(np.asarray(a, np.float64), requires_grad=name in op.differentiable))
    ty = op.torch(F, *targs, **case.params)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    close = lambda a, t, what: np.testing.assert_allclose(
        np.asarray(a, np.float64), t.detach().numpy(), rtol=tol,
        atol=tol * max(1.0, float(t.detach().abs().max())), err_msg=f"{op.name} {what} vs torch")
    if op.kind == "loss":
        loss, grad = op.forward(*case.args, **case.params)
        ty.backward()
        close(loss, ty, "loss")
        close(grad, targs[0].grad, f"d{op.arg_names[0]}")
        return
    y = op.forward(*case.args, **case.params)
    close(y, ty, "forward")
    dy = rand(np.random.default_rng(seed), y.shape, dtype)
    ty.backward(torch.from_numpy(dy.astype(np.float64)))
    for name, g in zip(op.differentiable, op.gradients(dy, case)):
        t = targs[op.arg_names.index(name)]
        if t is not None:
            close(g, t.grad, f"d{name}")


# ----------------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------------
@dataclass
class LayerReport:
    """What :func:`check_layer` checked: the output shape, the gradient errors (float64 central
    differences, per array) and the names of the other checks that ran."""

    output_shape: tuple
    gradients: GradcheckReport
    checks: list = field(default_factory=list)


def check_layer(layer, input_shape, batch: int = 2, seed: int = 0, reference=None, torch=None,
                training: bool = False, tol: float = 1e-6, dtype=np.float32,
                frozen_same_dx: bool = True) -> LayerReport:
    """Check ``layer`` on a random input of per-sample shape ``input_shape``.

    Parameters
    ----------
    layer : an unbuilt or built :class:`nptl.layers.Layer` (a built one is copied, not changed)
    input_shape : per-sample input shape (no batch axis)
    batch, seed : batch size and seed of the input, the parameters and ``dy``
    reference : optional ``reference(x, params) -> y``, a plain function (float64) of the input
        and the layer's parameters: the layer's output must equal it
    torch : optional ``torch(F, x, params) -> y`` on torch tensors (``F`` is
        ``torch.nn.functional``): output, ``dx`` and parameter gradients must equal autograd's
    training : compare the output shape, dtype and ``reference`` in training mode (layers whose
        output depends on it); gradients are always checked in training mode
    tol : bound on the max relative gradient error
    dtype : the layer's dtype for the shape and dtype checks (gradients are checked in float64)
    frozen_same_dx : False for a layer whose frozen state is inference mode (BatchNorm): its
        frozen ``dx`` is then not compared with the unfrozen one

    Returns
    -------
    LayerReport; raises AssertionError naming the first check that fails.
    """
    rng = np.random.default_rng(seed)
    layer = copy.deepcopy(layer)
    if layer.name is None:
        layer.name = layer.kind
    layer.build(tuple(input_shape), rng, dtype)
    where = f"layer '{layer.name}' ({type(layer).__name__})"
    shape = layer.output_shape(tuple(input_shape))
    x = rand(rng, (batch,) + tuple(input_shape), dtype)
    y = layer.forward(x, training=training)
    assert y.shape == (batch,) + tuple(shape), f"{where}: output {y.shape}, output_shape predicts {(batch,) + shape}"
    assert y.dtype == np.dtype(dtype), f"{where}: output dtype {y.dtype} for a {np.dtype(dtype)} layer"
    report = LayerReport(tuple(shape), GradcheckReport(), ["output shape", "dtype"])

    layer64 = copy.deepcopy(layer).astype(np.float64)
    x64 = x.astype(np.float64)
    if reference is not None:
        want = reference(x64, {k: v.copy() for k, v in layer64.params.items()})
        assert_close(layer64.forward(x64, training=training), want, np.float64, f"{where}: output vs reference")
        report.checks.append("reference")

    # the upstream gradient r of gradcheck comes from its own stream: with the seed of x, r would
    # equal x whenever building drew nothing (Σ x ⊙ BatchNorm(x) has a near-zero input gradient)
    report.gradients = gradcheck(layer64, x64, seed=seed + 1).assert_ok(tol)
    report.checks.append("gradients")

    _check_frozen(layer64, x64, rng, where, frozen_same_dx)
    report.checks.append("frozen")

    if torch is not None:
        _layer_vs_torch(layer64, x64, torch, rng, where)
        report.checks.append("torch")
    return report


def _check_frozen(layer, x, rng, where, same_dx=True):
    """A frozen layer computes no parameter gradient, returns the same ``dx`` as unfrozen (unless
    ``same_dx`` is False), keeps its parameters, and returns None for ``input_grad=False``."""
    dy = rng.standard_normal(layer.forward(x, training=True).shape)
    live = copy.deepcopy(layer)
    live.unfreeze()
    live.zero_grad()
    live.forward(x, training=True)
    dx_live = live.backward(dy, input_grad=True)
    frozen = copy.deepcopy(layer)
    frozen.freeze()
    for g in frozen.grads.values():
        g.fill(7.0)  # a marker: a frozen layer must leave its gradients untouched
    before = {k: v.copy() for k, v in frozen.params.items()}
    frozen.forward(x, training=True)
    dx_frozen = frozen.backward(dy, input_grad=True)
    assert not frozen.computes_param_grads, f"{where}: frozen but computes_param_grads is True"
    for k, g in frozen.grads.items():
        assert np.all(g == 7.0), f"{where}: frozen layer changed its gradient '{k}'"
        np.testing.assert_array_equal(frozen.params[k], before[k], err_msg=f"{where}: frozen layer changed '{k}'")
    if same_dx:
        np.testing.assert_allclose(dx_frozen, dx_live, rtol=1e-12, atol=1e-12,
                                   err_msg=f"{where}: dx of the frozen layer differs from the unfrozen one")
    frozen.forward(x, training=True)
    assert frozen.backward(dy, input_grad=False) is None, f"{where}: backward(input_grad=False) returned dx"


def _layer_vs_torch(layer, x, torch_fn, rng, where):
    import torch
    import torch.nn.functional as F

    layer = copy.deepcopy(layer)
    layer.zero_grad()
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy, input_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    ty = torch_fn(F, tx, tparams)
    ty.backward(torch.from_numpy(dy))
    close = lambda a, t, what: np.testing.assert_allclose(
        a, t.detach().numpy(), rtol=1e-9, atol=1e-9 * max(1.0, float(t.detach().abs().max())),
        err_msg=f"{where}: {what} vs torch")
    close(y, ty, "output")
    close(dx, tx.grad, "dx")
    for k, t in tparams.items():
        close(layer.grads[k], t.grad, f"d{k}")
