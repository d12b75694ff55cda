"""Losses: fast == reference, closed-form gradients, stability, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from nptl import ops
from nptl.errors import NonFiniteError
from nptl.kernels import reference as ref
from tests.strategies import DTYPES, rand, seeds, tolerance

batch = st.integers(1, 8)
classes = st.integers(2, 7)


@given(N=batch, K=classes, dtype=DTYPES, seed=seeds)
def test_cross_entropy_matches_reference_and_closed_form(N, K, dtype, seed):
    rng = np.random.default_rng(seed)
    z = (rand(rng, (N, K)) * 3).astype(dtype)
    y = rng.integers(0, K, N)
    loss, dz = ops.cross_entropy(z, y)
    rloss, rdz = ref.cross_entropy(z, y)
    rtol, atol = tolerance(dtype)
    assert dz.dtype == dtype and np.asarray(loss).dtype == dtype
    np.testing.assert_allclose(loss, rloss, rtol=rtol)
    np.testing.assert_allclose(dz, rdz, rtol=rtol, atol=atol)
    # d(cross_entropy)/dlogits = (softmax − onehot)/N
    onehot = np.eye(K)[y]
    np.testing.assert_allclose(dz, (ops.softmax(z) - onehot) / N, rtol=rtol, atol=atol)


def test_huge_logits_stay_finite():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]])
    for dtype in (np.float32, np.float64):
        loss, dz = ops.cross_entropy(z.astype(dtype), [1, 1])
        # row 0: lse = 1e4, true class logit −1e4 → 2e4; row 1: lse ≈ 1e4 and label logit 1e4 → 0
        np.testing.assert_allclose(loss, (2e4 + 0.0) / 2, rtol=1e-6)
        assert np.all(np.isfinite(dz))
        bl, bd = ops.binary_cross_entropy(z.astype(dtype), np.ones_like(z, dtype=dtype))
        assert np.isfinite(bl) and np.all(np.isfinite(bd))
        np.testing.assert_allclose(bl, (1e4 + 1e4 + np.log(2) + 0) / 6, rtol=1e-5)


def test_label_errors():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"'labels' must be in \[0, 4\) for 4 classes, got \[4\]"):
        ops.cross_entropy(z, [0, 4, 1])
    with pytest.raises(ValueError, match=r"got \[-1\]"):
        ops.cross_entropy(z, [0, -1, 1])
    with pytest.raises(TypeError, match=r"'labels' must be integers"):
        ops.cross_entropy(z, [0.5, 1, 1])
    with pytest.raises(ValueError, match=r"'labels' must have shape \(3,\) to match logits, got \(2,\)"):
        ops.cross_entropy(z, [0, 1])
    with pytest.raises(ValueError, match=r"'pred' and 'target' must have the same shape, got \(3, 4\) and \(4, 3\)"):
        ops.mse(z, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"'logits' and 'targets' must have the same shape"):
        ops.binary_cross_entropy(z, np.zeros(3))


def test_non_finite_input_raises():
    z = np.zeros((2, 3))
    z[1, 2] = np.nan
    with pytest.raises(NonFiniteError, match=r"'logits' contains 1 non-finite"):
        ops.cross_entropy(z, [0, 1])
    with pytest.raises(NonFiniteError, match=r"'pred' contains 1 non-finite"):
        ops.mse(z, np.zeros((2, 3)))
