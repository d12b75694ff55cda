"""Activations: properties and stability (fast == reference twin and central differences:
tests/test_ops_contract.py)."""
import numpy as np
from hypothesis import given, strategies as st

from nptl import ops
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
