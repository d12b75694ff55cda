"""Activations: properties and stability (fast == reference twin and central differences:
tests/test_ops_contract.py)."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from nptl import ops
from nptl.kernels import activations as A
from nptl.kernels import reference as ref
from tests.strategies import rand, seeds

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)


@given(shape=shapes, seed=seeds, shift=st.floats(-1e3, 1e3))
def test_softmax_sums_to_one_and_shift_invariant(shape, seed, shift):
    x = rand(np.random.default_rng(seed), shape) * 5
    y = ops.softmax(x)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ops.softmax(x + shift), y, rtol=1e-9, atol=1e-15)


def test_large_magnitudes_stay_finite():
    x = np.array([-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4])
    for dtype in (np.float32, np.float64):
        s = ops.sigmoid(x.astype(dtype))
        assert np.all(np.isfinite(s))
        np.testing.assert_allclose(s[[0, 1, -2, -1]], [0, 0, 1, 1], atol=1e-30)
        sm = ops.softmax(x.astype(dtype)[None])
        assert np.all(np.isfinite(sm)) and np.isclose(sm[0, -1], 1.0)


@pytest.mark.parametrize("impl", ["reference", "ops"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_losses_on_extreme_logits(impl, dtype):
    """Both twins on logits where e^x overflows (|x| up to 3e4): the max subtraction (SM1),
    log-sum-exp (L1) and the sign split of σ (S1, B1) must hold in each — a twin test on small
    logits cannot tell a formula that overflows from one that does not.  Expected values are
    the closed forms, not either implementation."""
    f = ref if impl == "reference" else ops
    x = np.array([[1e4, 1e4, -1e4], [3e4, 3e4 - np.log(3.0), -3e4], [-1e4, -1e4, -1e4]], dtype)
    with np.errstate(all="raise"):
        y = f.softmax(x)
        np.testing.assert_allclose(y, [[0.5, 0.5, 0], [0.75, 0.25, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-3, atol=1e-30)
        dx = f.softmax_backward(np.ones_like(x), y)            # softmax is shift invariant: dx = 0
        np.testing.assert_allclose(dx, 0, atol=1e-6)
        s = f.sigmoid(np.array([-1e4, -1e3, 0.0, 1e3, 1e4], dtype))
        np.testing.assert_array_equal(s, np.array([0, 0, 0.5, 1, 1], dtype))
        loss, dz = f.cross_entropy(x[:2], np.array([2, 0]))     # −log softmax at the label, mean
        np.testing.assert_allclose(float(loss), (2e4 + np.log(2) + np.log(4 / 3)) / 2, rtol=1e-6)
        assert np.isfinite(dz).all()
        bl, bd = f.binary_cross_entropy(np.array([1e4, -1e4], dtype), np.array([0.0, 0.0], dtype))
        np.testing.assert_allclose(float(bl), 1e4 / 2, rtol=1e-6)   # max(z,0) − z·t + log(1+e^{−|z|})
        np.testing.assert_allclose(bd, [0.5, 0.0], atol=1e-7)


SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 80.0, -80.0, 87.5, -87.5, 700.0, -710.0]


def _inputs(n, dtype, seed=0):
    """``n`` values: the special ones, then normal draws of scale 1 to 100 (both signs)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * rng.choice([1.0, 10.0, 100.0], n)
    x[:len(SPECIAL)] = SPECIAL
    return x.astype(dtype)


# one size per path of the elementwise kernels: one thread, and blocks with a partial last one
SIZES = [A.PARALLEL_MIN - 1, A.PARALLEL_MIN + A.BLOCK // 2 + 3]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernels_equal_reference_bit_for_bit(n, dtype):
    """The formula is unchanged (a select), so the bits are the reference's: NaN and −0 → +0."""
    x, dy = _inputs(n, dtype), _inputs(n, dtype, seed=1)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    y = A.relu_forward(x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y.view(bits), ref.relu(x).view(bits))
    np.testing.assert_array_equal(A.relu_backward(dy, x).view(bits), ref.relu_backward(dy, x).view(bits))


def _ulps(a, b):
    """|a − b| in units of b's last place (b's dtype), NaN where both are NaN."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore"):
        d = np.where(a64 == b64, 0.0, np.abs(a64 - b64))
    return d / np.spacing(np.abs(b)).astype(np.float64)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_within_three_ulps_of_reference(n, dtype):
    """The vectorised σ (its own exp, (E1)-(E3)) against the reference (libm exp in float64,
    rounded): at most 3 ulp apart where σ is a normal number (measured: 2.3 ulp from the exact
    value at worst, the reference 0.5); where σ(x) is subnormal (x < −87.3 in float32) the fast
    kernel gives 0, less than the smallest normal number away.  Special values exactly."""
    x = _inputs(n, dtype)
    y, r = A.sigmoid_forward(x), ref.sigmoid(x)
    assert y.dtype == dtype
    tiny = np.finfo(dtype).tiny
    normal = np.abs(r) >= tiny
    assert np.max(_ulps(y[normal], r[normal])) <= 3.0
    assert np.all(np.abs(y[~normal & ~np.isnan(r)]) <= tiny) and np.all(np.abs(r[~normal & ~np.isnan(r)]) < tiny)
    np.testing.assert_array_equal(y[:5], np.array([np.nan, 1.0, 0.0, 0.5, 0.5], dtype))
    dy = np.random.default_rng(1).standard_normal(n).astype(dtype)
    np.testing.assert_allclose(A.sigmoid_backward(dy, y), ref.sigmoid_backward(dy, y), rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_nonpositive_compiled_and_as_formula(dtype):
    """(E1)-(E3) compiled within 2 ulp of exp (float64 libm, rounded); the Python formula (what
    runs without JIT) is that rounded exp; both 0 below the smallest normal number, NaN kept."""
    from numba import njit

    compiled = njit(lambda t: np.array([A.exp_nonpositive(v) for v in t]))
    t = np.concatenate([[np.nan, -np.inf, -0.0, -1e3, -87.3, -87.4, -708.3, -708.5],
                        -np.abs(_inputs(5000, np.float64)[len(SPECIAL):])]).astype(dtype)
    libm = np.array([math.exp(v) for v in t.astype(np.float64)])
    exact = np.where(t < np.finfo(dtype).minexp * np.log(2.0), 0, libm).astype(dtype)
    e = compiled(t)
    assert e.dtype == dtype
    assert np.isnan(e[0]) and np.all(e[1:][exact[1:] == 0] == 0)
    assert np.max(_ulps(e[1:], exact[1:])) <= 2.0
    python = np.array([A.exp_nonpositive(v) for v in t])
    np.testing.assert_array_equal(python, exact)
