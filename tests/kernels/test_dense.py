"""Dense: fast == reference, central differences, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from nptl import gradcheck, ops
from nptl.kernels import reference as ref
from tests.strategies import DTYPES, rand, seeds, tolerance

dims = st.integers(1, 12)


@given(N=dims, I=dims, O=dims, dtype=DTYPES, seed=seeds)
def test_matches_reference(N, I, O, dtype, seed):
    rng = np.random.default_rng(seed)
    x, w, b, dy = (rand(rng, s, dtype) for s in [(N, I), (I, O), (O,), (N, O)])
    rtol, atol = tolerance(dtype)
    y = ops.dense(x, w, b)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref.dense(x, w, b), rtol=rtol, atol=atol * 10)
    for a, r in zip(ops.dense_backward(dy, x, w), ref.dense_backward(dy, x, w)):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, r, rtol=rtol, atol=atol * 10)


@given(N=dims, I=dims, O=dims, seed=seeds)
def test_gradients_match_central_differences(N, I, O, seed):
    rng = np.random.default_rng(seed)
    gradcheck(ops.dense, rand(rng, (N, I)), rand(rng, (I, O)), rand(rng, (O,)), seed=seed % 1000).assert_ok(1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match=r"x has 5 features \(shape \(2, 5\)\) but w expects 4"):
        ops.dense(np.zeros((2, 5)), np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=r"'b' must have shape \(3,\), got \(4,\)"):
        ops.dense(np.zeros((2, 4)), np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(ValueError, match=r"'x' must be 2-D"):
        ops.dense(np.zeros((2, 4, 1)), np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(TypeError, match=r"'x' must be real-valued"):
        ops.dense(np.array([["a"]]), np.zeros((1, 3)), np.zeros(3))
