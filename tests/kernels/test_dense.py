"""Dense: errors (fast == reference twin and central differences: tests/test_ops_contract.py)."""
import numpy as np
import pytest

from nptl import ops


def test_bad_input():
    with pytest.raises(ValueError, match=r"x has 5 features \(shape \(2, 5\)\) but w expects 4"):
        ops.dense(np.zeros((2, 5)), np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=r"'b' must have shape \(3,\), got \(4,\)"):
        ops.dense(np.zeros((2, 4)), np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(ValueError, match=r"'x' must be 2-D"):
        ops.dense(np.zeros((2, 4, 1)), np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(TypeError, match=r"'x' must be real-valued"):
        ops.dense(np.array([["a"]]), np.zeros((1, 3)), np.zeros(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blockwise_weight_gradient_accumulates_the_reference(monkeypatch, dtype):
    """(D3) in blocks of rows (a small block size here: 3 rows, the last block partial) adds the
    reference twin's dw to what the gradient already holds."""
    from nptl.kernels import dense as kernel
    from nptl.kernels import reference

    monkeypatch.setattr(kernel, "BLOCK_VALUES", 3 * 4)
    rng = np.random.default_rng(0)
    x, w, dy = (rng.standard_normal(s).astype(dtype) for s in ((5, 11), (11, 4), (5, 4)))
    held = rng.standard_normal((11, 4)).astype(dtype)
    acc = held.copy()
    assert kernel.dense_accumulate_weight_grad(acc, dy, x) is acc
    _, dw, _ = reference.dense_backward(dy, x, w)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(acc, held + dw, rtol=tol, atol=tol)
