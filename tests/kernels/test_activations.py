"""Activations: fast == reference, properties, stability, central differences."""
import numpy as np
from hypothesis import given, strategies as st

from nptl import gradcheck, ops
from nptl.kernels import reference as ref
from tests.strategies import DTYPES, rand, seeds, tolerance

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)


@given(shape=shapes, dtype=DTYPES, seed=seeds)
def test_match_reference(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rand(rng, shape) * 10).astype(dtype)
    rtol, atol = tolerance(dtype)
    for fast, slow in [(ops.relu, ref.relu), (ops.sigmoid, ref.sigmoid), (ops.softmax, ref.softmax)]:
        y = fast(x)
        assert y.dtype == dtype and y.shape == x.shape
        np.testing.assert_allclose(y, slow(x), rtol=rtol, atol=atol)


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


@given(shape=shapes, seed=seeds)
def test_gradients_match_central_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, shape)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the ReLU kink
    for op in (ops.relu, ops.sigmoid, ops.softmax):
        gradcheck(op, x, seed=seed % 1000).assert_ok(1e-6)
