"""Batch normalisation: fast == reference twin, central differences, running statistics, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from nptl import gradcheck, ops
from nptl.kernels import reference as ref
from tests.strategies import DTYPES, rand, seeds, tolerance


@st.composite
def norm_shapes(draw, min_count=2):
    """``(N, C, H, W)`` or ``(N, C)`` with at least ``min_count`` values per channel."""
    C = draw(st.integers(1, 5))
    if draw(st.booleans()):
        return (draw(st.integers(min_count, 7)), C)
    N, H = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    return (N, C, H, draw(st.integers(-(-min_count // (N * H)), 6)))


def _inputs(rng, shape, dtype, running):
    C = shape[1]
    x = (rand(rng, shape) * 3 + 1.5).astype(dtype)          # mean and scale far from (0, 1)
    gamma, beta = rand(rng, (C,), dtype), rand(rng, (C,), dtype)
    stats = dict(mean=rand(rng, (C,), dtype), var=(rng.random(C) + 0.1).astype(dtype)) if running else {}
    return x, gamma, beta, stats


def _term_scales(dy, x, gamma, stats, eps=1e-5):
    """Size of the terms each gradient sums, per output: the absolute error of a float sum is
    bounded by (rounding unit)·(Σ |terms|), which for (BN4) with few values per channel can
    exceed the result itself by orders of magnitude (the terms cancel)."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    x64, dy64 = x.astype(np.float64), np.abs(dy.astype(np.float64))
    mean = stats["mean"].astype(np.float64) if stats else x64.mean(axis=axes)
    var = stats["var"].astype(np.float64) if stats else x64.var(axis=axes)
    s = 1 / np.sqrt(var + eps)
    xc = np.abs(x64 - mean.reshape(shape))
    M = x.size // x.shape[1]
    dgamma = s * (dy64 * xc).sum(axis=axes)
    dbeta = dy64.sum(axis=axes)
    g, s = np.abs(gamma).reshape(shape), s.reshape(shape)    # dx = a·dy + b·(x − μ) + c, term by term
    dx = g * s * dy64 + g * s * s * dgamma.reshape(shape) * xc / M + g * s * dbeta.reshape(shape) / M
    return dx, dgamma, dbeta


@given(shape=norm_shapes(), dtype=DTYPES, running=st.booleans(), seed=seeds)
def test_matches_reference(shape, dtype, running, seed):
    rng = np.random.default_rng(seed)
    x, gamma, beta, stats = _inputs(rng, shape, dtype, running)
    dy = rand(rng, shape, dtype)
    rtol, atol = tolerance(dtype)
    y = ops.batch_norm(x, gamma, beta, **stats)
    assert y.shape == shape and y.dtype == dtype
    np.testing.assert_allclose(y, ref.batch_norm(x, gamma, beta, **stats), rtol=rtol, atol=atol)
    got = ops.batch_norm_backward(dy, x, gamma, **stats)
    want = ref.batch_norm_backward(dy, x, gamma, **stats)
    scales = _term_scales(dy, x, gamma, stats)
    for name, a, b, scale in zip(("dx", "dgamma", "dbeta"), got, want, scales, strict=True):
        assert a.dtype == dtype and a.shape == b.shape, name
        err = np.abs(a.astype(np.float64) - b) - (atol + rtol * (scale + np.abs(b)))
        assert err.max() <= 0, f"{name}: fast {a.ravel()[err.argmax()]} vs reference {b.ravel()[err.argmax()]}"


# Two values per channel normalise to ±1/√(1 + ε/σ²) whatever they are: dx is then O(ε) and
# central differences of such a flat function measure only rounding; three or more are checked.
# The upstream gradient r comes from another seed than x: r ∝ x would make dx vanish too.
@given(shape=norm_shapes(min_count=3), running=st.booleans(), seed=seeds)
def test_gradients_match_central_differences(shape, running, seed):
    rng = np.random.default_rng(seed)
    x, gamma, beta, stats = _inputs(rng, shape, np.float64, running)
    gradcheck(ops.batch_norm, x, gamma, beta, stats.get("mean"), stats.get("var"), seed=seed % 1000 + 1).assert_ok(1e-6)


@given(shape=norm_shapes(), dtype=DTYPES, seed=seeds)
def test_batch_statistics_normalise(shape, dtype, seed):
    """With γ = 1, β = 0 each channel of the output has mean 0 and (biased) variance 1/(1 + ε/σ²)."""
    rng = np.random.default_rng(seed)
    x, _, _, _ = _inputs(rng, shape, dtype, False)
    C = shape[1]
    y = ops.batch_norm(x, np.ones(C), np.zeros(C)).astype(np.float64)
    axes = (0,) + tuple(range(2, len(shape)))
    var = x.astype(np.float64).var(axis=axes)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(y.var(axis=axes), var / (var + 1e-5), rtol=1e-4 if dtype == np.float32 else 1e-10)


def test_errors_name_the_argument():
    x = np.zeros((2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"batch_norm: argument 'gamma' must have shape \(3,\), got \(4,\)"):
        ops.batch_norm(x, np.ones(4), np.zeros(3))
    with pytest.raises(ValueError, match=r"argument 'x' must be 2-D \(N, C\) or 4-D \(N, C, H, W\), got shape \(2, 3, 4\)"):
        ops.batch_norm(np.zeros((2, 3, 4)), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"give both 'mean' and 'var'"):
        ops.batch_norm(x, np.ones(3), np.zeros(3), mean=np.zeros(3))
    with pytest.raises(ValueError, match=r"more than one value per channel, got x of shape \(1, 3\)"):
        ops.batch_norm(np.zeros((1, 3)), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"'eps' must be a positive number, got 0"):
        ops.batch_norm(x, np.ones(3), np.zeros(3), eps=0)
    with pytest.raises(ValueError, match=r"batch_norm_backward: argument 'dy' must have shape \(2, 3, 4, 4\)"):
        ops.batch_norm_backward(np.zeros((2, 3, 4, 5)), x, np.ones(3))
    # one value per channel is fine in inference mode
    y = ops.batch_norm(np.ones((1, 3)), np.ones(3), np.zeros(3), mean=np.zeros(3), var=np.ones(3), eps=0.5)
    np.testing.assert_allclose(y, 1 / np.sqrt(1.5), rtol=1e-15)
