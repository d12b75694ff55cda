"""Cross-check the normalisation, dropout and global/adaptive pooling layers against ``torch.nn``
(helpers and tolerances of :mod:`tests.test_torch_ops`, where the ops themselves are checked
against ``torch.nn.functional`` from the registry)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_torch_ops import DTYPES, N, T, assert_close, randn, rng_from, torch

import nptl  # noqa: E402


# ----------------------------------------------------------------------------------------------
# batch normalisation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cls,tcls,shape", [(nptl.BatchNorm2D, torch.nn.BatchNorm2d, (4, 5, 6)),
                                            (nptl.BatchNorm1D, torch.nn.BatchNorm1d, (7,))], ids=["2d", "1d"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_layer_matches_torch_module(cls, tcls, shape, momentum, dtype):
    """Three training steps (running statistics, PyTorch's momentum convention), then eval."""
    rng = rng_from(3)
    layer = cls(momentum=momentum, name="bn")
    layer.build(shape, rng, dtype)
    tl = tcls(shape[0], momentum=momentum).double()
    with torch.no_grad():
        tl.weight.copy_(T(randn(rng, shape[:1], dtype)))
        tl.bias.copy_(T(randn(rng, shape[:1], dtype)))
    layer.params["w"][:] = N(tl.weight)
    layer.params["b"][:] = N(tl.bias)
    for step in range(3):
        x = randn(rng, (4,) + shape, dtype, 2) + dtype(step)
        dy = randn(rng, x.shape, dtype)
        tl.train()
        tl.zero_grad()
        tx = T(x, True)
        ty = tl(tx)
        ty.backward(T(dy))
        layer.zero_grad()
        assert_close(layer.forward(x, training=True), N(ty), dtype, f"step {step} y")
        assert_close(layer.backward(dy), N(tx.grad), dtype, f"step {step} dx")
        assert_close(layer.grads["w"], N(tl.weight.grad), dtype, f"step {step} dgamma")
        assert_close(layer.grads["b"], N(tl.bias.grad), dtype, f"step {step} dbeta")
        for key in ("running_mean", "running_var"):
            assert_close(layer.buffers[key], N(getattr(tl, key)), dtype, f"step {step} {key}")
        assert int(layer.buffers["num_batches_tracked"]) == int(tl.num_batches_tracked)
    tl.eval()
    x = randn(rng, (3,) + shape, dtype)
    assert_close(layer.forward(x), N(tl(T(x))), dtype, "eval y")
