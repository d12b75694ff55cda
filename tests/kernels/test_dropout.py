"""Dropout: the mask formula (DO3) against its twin, reproducibility, keep statistics, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from nptl import ops
from nptl.kernels import reference as ref
from tests.strategies import seeds

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)
rates = st.sampled_from([0.0, 0.1, 0.5, 0.9])


@given(shape=shapes, rate=rates, seed=seeds, call=st.integers(0, 2**40))
def test_mask_matches_reference(shape, rate, seed, call):
    """(DO3) computed with Python integers (reference) == the Numba kernel's uint64 arithmetic.
    (Forward, backward and gradients of dropout itself are checked from the registry.)"""
    keep = ops.dropout_mask(shape, rate, seed, call)
    assert keep.shape == shape and keep.dtype == np.bool_
    np.testing.assert_array_equal(keep, ref.dropout_mask(shape, rate, seed, call))


def test_mask_is_a_pure_function_of_seed_call_and_index():
    a = ops.dropout_mask(10_000, 0.5, seed=3, call=0)
    np.testing.assert_array_equal(a, ops.dropout_mask(10_000, 0.5, seed=3, call=0))
    np.testing.assert_array_equal(a[:100], ops.dropout_mask(100, 0.5, seed=3, call=0))    # prefix-stable
    np.testing.assert_array_equal(a.reshape(100, 100), ops.dropout_mask((100, 100), 0.5, seed=3, call=0))
    for other in (ops.dropout_mask(10_000, 0.5, seed=4, call=0), ops.dropout_mask(10_000, 0.5, seed=3, call=1)):
        agree = (a == other).mean()
        assert 0.47 < agree < 0.53               # independent masks agree on half the entries
    # a larger rate drops a superset: the uniforms are shared, only the threshold moves
    assert not (ops.dropout_mask(10_000, 0.7, 3, 0) & ~a).any()


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_keep_fraction_and_scaling(rate):
    """P(keep) = 1 − rate (within 5 standard deviations over 10⁶ entries) and E[y] = x."""
    n = 1_000_000
    keep = ops.dropout_mask(n, rate, seed=11, call=5)
    sd = np.sqrt(rate * (1 - rate) / n)
    assert abs(keep.mean() - (1 - rate)) < 5 * sd
    y = ops.dropout(np.ones(n, np.float32), keep, rate)
    assert set(np.unique(y).tolist()) == {0.0, np.float32(1 / (1 - rate))}
    assert abs(y.astype(np.float64).mean() - 1) < 5 * sd / (1 - rate)
    # the uniforms behind the mask are uniform: the keep fraction at every threshold matches
    for t in (0.05, 0.25, 0.5, 0.75, 0.95):
        assert abs(ops.dropout_mask(100_000, t, 11, 5).mean() - (1 - t)) < 5 * np.sqrt(t * (1 - t) / 100_000)


def test_errors_name_the_argument():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"dropout: 'rate' must be a number in \[0, 1\), got 1.0"):
        ops.dropout(x, np.ones((2, 3), bool), 1.0)
    with pytest.raises(TypeError, match=r"dropout: 'mask' must be a boolean keep-mask, got dtype float64"):
        ops.dropout(x, np.ones((2, 3)), 0.5)
    with pytest.raises(ValueError, match=r"dropout_backward: argument 'mask' must have shape \(2, 3\), got \(3, 2\)"):
        ops.dropout_backward(x, np.ones((3, 2), bool), 0.5)
    with pytest.raises(ValueError, match=r"dropout_mask: 'seed' must be >= 0, got -1"):
        ops.dropout_mask(4, 0.5, -1)
