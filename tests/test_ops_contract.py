"""Every op of :mod:`nptl.registry` against its contract: the fast path equals the plain-loop
reference twin (float32 and float64, generated cases and one fixed case per fast-path branch),
the gradients equal central differences in float64, and the entry is complete (twin, kernels,
formula labels in the docstrings, strategy, torch oracle, benchmark family).  The torch
cross-check of every entry is in ``tests/test_torch_ops.py``."""
import importlib
import inspect

import numpy as np
import pytest
from hypothesis import given, strategies as st

from nptl import gradcheck, registry
from nptl.kernels import reference as ref
from tests.strategies import DTYPES, rand, seeds, tolerance

OPS = list(registry.OPS.values())
BRANCHES = [(op, b) for op in OPS for b in op.branches]


def _close(a, b, dtype, what):
    rtol, atol = tolerance(dtype)
    b = np.asarray(b)
    scale = max(1.0, float(np.max(np.abs(b), initial=0)))
    assert np.asarray(a).dtype == dtype, f"{what}: dtype {np.asarray(a).dtype}, expected {dtype}"
    assert np.shape(a) == b.shape, f"{what}: shape {np.shape(a)} vs reference {b.shape}"
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale, err_msg=what)


def check_twins(op, case, seed=0):
    """``ops`` forward and backward (fast kernels) == reference forward and backward."""
    dtype = case.args[0].dtype
    fast, slow = op.forward(*case.args, **case.params), op.reference[0](*case.args, **case.params)
    if op.kind == "loss":
        for name, a, b in zip(("loss", "gradient"), fast, slow, strict=True):
            _close(a, b, dtype, f"{op.name} {name}")
        return
    _close(fast, slow, dtype, f"{op.name} forward")
    dy = rand(np.random.default_rng(seed), fast.shape, dtype)
    for name, a, b in zip(op.differentiable, op.gradients(dy, case), op.gradients(dy, case, reference=True),
                          strict=True):
        _close(a, b, dtype, f"{op.name} d{name}")


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
@given(data=st.data(), dtype=DTYPES, seed=seeds)
def test_fast_equals_reference(op, data, dtype, seed):
    check_twins(op, data.draw(op.strategy(dtype)), seed)


@pytest.mark.parametrize("op,branch", BRANCHES, ids=[f"{op.name}-{b.name}" for op, b in BRANCHES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_fast_path_branch_equals_reference(op, branch, dtype):
    assert branch.when(branch.shapes, branch.params), f"{op.name}: case of '{branch.name}' misses its branch"
    check_twins(op, branch.case(dtype, seed=len(branch.name)))


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
@given(data=st.data(), seed=seeds)
def test_gradients_match_central_differences(op, data, seed):
    case = data.draw(op.strategy(np.float64, small=True))
    report = gradcheck(op.forward, *case.args, seed=seed % 1000, **case.params)
    assert set(report.errors) == {n for n, a in zip(op.differentiable, case.args) if a is not None}
    report.assert_ok(1e-6)


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_entry_is_complete(op):
    from benchmarks.__main__ import FAMILIES
    from nptl.testing import strategies

    fwd, bwd = op.reference
    assert fwd.__module__ == ref.__name__ and fwd.__name__ == op.name
    assert (bwd is None) == (op.kind == "loss")
    if bwd is not None:
        assert bwd.__module__ == ref.__name__ and bwd.__name__ == f"{op.name}_backward"
        assert op.backward.__name__ == f"{op.name}_backward"
        assert set(op.backward_args) <= set(op.arg_names) | {"y"}
    # the formula labels are written in the reference module (where the loops are) and in the
    # docstrings of the fast kernels' module
    text = (ref.__doc__ or "") + "".join(inspect.getdoc(f) or "" for f in op.reference if f) + inspect.getsource(ref)
    for label in op.formulas:
        assert f"({label})" in text, f"{op.name}: label ({label}) not in nptl.kernels.reference"
    for path in op.kernels:
        module, name = path.split(".")
        kernel_module = importlib.import_module(f"nptl.kernels.{module}")
        assert callable(getattr(kernel_module, name)), path
        assert name.startswith(op.name + "_"), f"kernel {path} does not follow <op>_<pass> naming"
        doc = (kernel_module.__doc__ or "") + (getattr(kernel_module, name).__doc__ or "")
        assert any(f"({label})" in doc for label in op.formulas), f"{path}: no formula label in its docstrings"
    assert callable(getattr(strategies, op.cases))
    assert op.torch is not None, f"{op.name}: no torch oracle"
    assert op.benchmark is None or op.benchmark in FAMILIES


def test_registry_finds_ops_and_refuses_duplicates():
    from nptl import ops

    assert registry.find(ops.conv2d) is registry.get("conv2d")
    assert registry.find(ops.conv2d_backward) is None
    with pytest.raises(ValueError, match="'relu' is already registered"):
        registry.register(registry.get("relu"))
    with pytest.raises(KeyError, match="no op 'nope'"):
        registry.get("nope")
    with pytest.raises(TypeError, match="not a registered op"):
        gradcheck(np.tanh, np.zeros(3))
