"""Cross-check the normalisation, dropout and global/adaptive pooling layers against ``torch.nn``
(helpers and tolerances of :mod:`tests.test_torch_ops`, where the ops themselves are checked
against ``torch.nn.functional`` from the registry)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_torch_ops import DTYPES, TF, N, T, assert_close, randn, rng_from, torch

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


# ----------------------------------------------------------------------------------------------
# dropout: torch draws its own masks, so its mask is read off its output and injected
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_with_torchs_mask_matches_torch(rate, dtype):
    rng = rng_from(4)
    x = randn(rng, (2, 3, 8, 8), dtype)
    x[x == 0] = 1                                  # a zero output then means a dropped input
    torch.manual_seed(0)
    tx = T(x, True)
    ty = TF.dropout(tx, p=rate, training=True)
    dy = randn(rng, x.shape, dtype)
    ty.backward(T(dy))
    mask = N(ty) != 0
    assert 0 < mask.mean() < 1
    assert_close(nptl.ops.dropout(x, mask, rate), N(ty), dtype, "dropout y")
    assert_close(nptl.ops.dropout_backward(dy, mask, rate), N(tx.grad), dtype, "dropout dx")


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_scaling_statistics_match_torch(rate):
    """Both keep 1 − rate of the entries (within 5 standard deviations over 10⁶) and scale the
    kept ones by the same 1/(1 − rate), so the means agree with each other and with 1."""
    n = 1_000_000
    layer = nptl.Dropout(rate, seed=1, name="d")
    layer.build((n,), np.random.default_rng(0), np.float32)
    y = layer.forward(np.ones((1, n), np.float32), training=True)
    torch.manual_seed(1)
    ty = N(TF.dropout(torch.ones(1, n), p=rate, training=True))
    sd = np.sqrt(rate * (1 - rate) / n)
    for out in (y, ty):
        assert abs((out != 0).mean() - (1 - rate)) < 5 * sd
        assert abs(out.astype(np.float64).mean() - 1) < 5 * sd / (1 - rate)
    np.testing.assert_allclose(np.unique(y[y != 0]), np.unique(ty[ty != 0]), rtol=1e-7)


# ----------------------------------------------------------------------------------------------
# adaptive and global average pooling layers against the torch modules (VGG16's 7×7, ResNet's 1×1)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("hw,out", [((14, 14), (7, 7)), ((9, 11), (7, 7)), ((3, 2), (7, 7)), ((8, 8), (3, 5))])
def test_adaptive_pool_layer_matches_torch_module(hw, out, dtype):
    rng = rng_from(5)
    x = randn(rng, (2, 3) + hw, dtype)
    layer = nptl.AdaptiveAvgPool2D(out, name="p")
    layer.build(x.shape[1:], rng, dtype)
    tx = T(x, True)
    ty = torch.nn.AdaptiveAvgPool2d(out)(tx)
    dy = randn(rng, ty.shape, dtype)
    ty.backward(T(dy))
    assert_close(layer.forward(x, training=True), N(ty), dtype, f"adaptive {hw}->{out} y")
    assert_close(layer.backward(dy), N(tx.grad), dtype, f"adaptive {hw}->{out} dx")
    g = nptl.GlobalAvgPool2D(name="g")
    g.build(x.shape[1:], rng, dtype)
    tx = T(x, True)
    ty = torch.flatten(torch.nn.AdaptiveAvgPool2d(1)(tx), 1)
    ty.backward(T(dy[:, :, 0, 0]))
    assert_close(g.forward(x, training=True), N(ty), dtype, "global y")
    assert_close(g.backward(dy[:, :, 0, 0]), N(tx.grad), dtype, "global dx")
