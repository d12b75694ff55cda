"""Activations: properties and stability (fast == reference twin and central differences:
tests/test_ops_contract.py)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from nptl import ops
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
