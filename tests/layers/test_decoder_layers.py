"""ConvTranspose2D and Upsample2D layers: shapes, gradients, freezing, checkpoints, errors."""
import numpy as np
import pytest
from hypothesis import given

import nptl
from nptl import Conv2D, ConvTranspose2D, Upsample2D
from tests.strategies import conv_transpose_geometries, seeds, upsample_factors


def _build(layer, in_shape, seed=0, dtype=np.float64):
    layer.name = layer.name or "l"
    layer.build(in_shape, np.random.default_rng(seed), dtype)
    return layer


@given(g=conv_transpose_geometries(max_batch=2, max_channels=3, max_size=4, max_kernel=3), seed=seeds)
def test_conv_transpose_layer_shape_and_gradients(g, seed):
    layer = _build(ConvTranspose2D(g.F, (g.KH, g.KW), g.stride, g.padding, g.output_padding), (g.C, g.H, g.W), seed)
    assert layer.params["w"].shape == g.w_shape
    x = np.random.default_rng(seed).standard_normal(g.x_shape)
    y = layer.forward(x)
    assert y.shape == (g.N,) + layer.output_shape((g.C, g.H, g.W)) == g.y_shape
    nptl.gradcheck(layer, x, seed=seed % 1000).assert_ok(1e-6)


@given(size=upsample_factors, seed=seeds)
def test_upsample_layer_shape_and_gradients(size, seed):
    layer = _build(Upsample2D(size), (2, 3, 4))
    x = np.random.default_rng(seed).standard_normal((2, 2, 3, 4))
    assert layer.forward(x).shape == (2,) + layer.output_shape((2, 3, 4))
    assert layer.params == {}
    nptl.gradcheck(layer, x, seed=seed % 1000).assert_ok(1e-6)


def test_frozen_conv_transpose_passes_the_same_dx_and_keeps_its_grads():
    rng = np.random.default_rng(0)
    a = _build(ConvTranspose2D(3, 3, stride=2, output_padding=1), (4, 5, 5))
    b = _build(ConvTranspose2D(3, 3, stride=2, output_padding=1), (4, 5, 5))
    b.freeze()
    x = rng.standard_normal((2, 4, 5, 5))
    dy = rng.standard_normal((2,) + a.output_shape((4, 5, 5)))
    a.forward(x, training=True), b.forward(x, training=True)
    np.testing.assert_array_equal(a.backward(dy), b.backward(dy))
    assert not np.any(b.grads["w"]) and np.any(a.grads["w"])
    a.forward(x, training=True)                    # a forward's caches serve one backward
    assert a.backward(dy, input_grad=False) is None


def test_conv_transpose_mirrors_conv_shapes():
    # a Conv2D and a ConvTranspose2D with the same geometry: output_padding picks the input size back
    for H, s, p, k in ((28, 1, 0, 3), (11, 2, 1, 3), (12, 2, 1, 3), (7, 3, 0, 2)):
        conv = _build(Conv2D(4, k, s, p), (2, H, H))
        C, Ho, _ = conv.output_shape((2, H, H))
        op = (H + 2 * p - k) % s
        up = _build(ConvTranspose2D(2, k, s, p, op), (C, Ho, Ho))
        assert up.output_shape((C, Ho, Ho)) == (2, H, H)


def test_checkpoint_round_trip(tmp_path):
    model = nptl.Sequential([Conv2D(4, 3), Upsample2D((2, 1)), ConvTranspose2D(2, 3, stride=2, output_padding=1),
                             nptl.Sigmoid()], input_shape=(1, 6, 6))
    x = np.random.default_rng(0).random((2, 1, 6, 6)).astype(np.float32)
    nptl.io.save(model, tmp_path / "m.npz")
    again = nptl.io.load(tmp_path / "m.npz")
    assert [type(l).__name__ for l in again.layers] == ["Conv2D", "Upsample2D", "ConvTranspose2D", "Sigmoid"]
    np.testing.assert_array_equal(again.forward(x), model.forward(x))


def test_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"'output_padding' must be smaller than 'stride' \(1\), got 1"):
        ConvTranspose2D(3, 3, output_padding=1)
    with pytest.raises(ValueError, match=r"layer 'up' \(ConvTranspose2D\): padding 2 crops the whole output"):
        nptl.Sequential([ConvTranspose2D(3, 1, padding=2, name="up")], input_shape=(1, 2, 2))
    model = nptl.Sequential([Upsample2D(2, name="grow")], input_shape=(3, 4, 4))
    with pytest.raises(ValueError, match=r"layer 'grow' \(Upsample2D\) expects input \(N, C, H, W\) = \(N, 3, \?, \?\)"):
        model.forward(np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"'size' must be >= 1, got 0"):
        Upsample2D(0)
