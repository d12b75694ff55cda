"""Layers through nptl.testing.check_layer (predicted output shape == real output shape, dtype,
reference twin, gradients, frozen-layer rules), plus initialisation, dtype handling, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import nptl
from nptl import AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sigmoid, Softmax
from nptl.kernels import reference as ref
from nptl.testing import check_layer
from tests.strategies import conv_geometries, pool_geometries, seeds


def _build(layer, in_shape, seed=0, dtype=np.float64):
    layer.name = layer.name or "l"
    layer.build(in_shape, np.random.default_rng(seed), dtype)
    return layer


@given(g=conv_geometries(wide=False), seed=seeds)
def test_conv_layer(g, seed):
    report = check_layer(Conv2D(g.F, (g.KH, g.KW), g.stride, g.padding), (g.C, g.H, g.W), batch=g.N,
                         seed=seed % 1000,
                         reference=lambda x, p: ref.conv2d(x, p["w"], p["b"], g.stride, g.padding))
    assert (g.N,) + report.output_shape == g.y_shape


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
@given(g=pool_geometries(max_hw=7), seed=seeds)
def test_pool_layer(cls, g, seed):
    twin = ref.max_pool2d if cls is MaxPool2D else ref.avg_pool2d
    report = check_layer(cls(g.size, g.stride), (g.C, g.H, g.W), batch=g.N, seed=seed % 1000,
                         reference=lambda x, p: twin(x, g.size, g.stride))
    assert (g.N,) + report.output_shape == g.y_shape


@pytest.mark.parametrize("cls,twin", [(ReLU, ref.relu), (Sigmoid, ref.sigmoid), (Softmax, ref.softmax),
                                      (Flatten, lambda x: x.reshape(len(x), -1))])
@given(N=st.integers(1, 5), shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), seed=seeds)
def test_parameter_free_layers(cls, twin, N, shape, seed):
    # the input is standard normal: a ReLU kink within the central-difference step is a 1e-6 event
    report = check_layer(cls(), shape, batch=N, seed=seed % 1000, reference=lambda x, p: twin(x))
    assert report.gradients.errors.keys() == {"input"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_keeps_its_output_and_its_gradient_is_that_of_its_input(dtype):
    """The layer keeps ``y`` (the very array it returned, so the next layer's cache is the same
    object), not ``x``; its backward from ``y`` equals ``ops.relu_backward(dy, x)`` bit for bit,
    on zeros of both signs, ties at 0 and NaN too."""
    from nptl import ops

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    x.reshape(-1)[:5] = [0.0, -0.0, np.nan, np.finfo(dtype).tiny, -np.finfo(dtype).tiny]
    dy = rng.standard_normal(x.shape).astype(dtype)
    layer = _build(ReLU(), (4, 5), dtype=dtype)
    y = layer.forward(x, training=True)
    assert layer._y is y and not any(v is x for v in vars(layer).values())
    np.testing.assert_array_equal(layer.backward(dy), ops.relu_backward(dy, x))


@given(N=st.integers(1, 6), I=st.integers(1, 9), O=st.integers(1, 9), seed=seeds)
def test_dense_layer(N, I, O, seed):
    report = check_layer(Dense(O), (I,), batch=N, seed=seed % 1000,
                         reference=lambda x, p: ref.dense(x, p["w"], p["b"]))
    assert report.output_shape == (O,)
    assert set(report.gradients.entries.items()) == {("input", N * I), ("dense.w", I * O), ("dense.b", O)}


def test_initialisation_is_seeded_and_scaled():
    a = _build(Conv2D(16, 3), (8, 10, 10), seed=1, dtype=np.float32)
    b = _build(Conv2D(16, 3), (8, 10, 10), seed=1, dtype=np.float32)
    c = _build(Conv2D(16, 3), (8, 10, 10), seed=2, dtype=np.float32)
    assert a.params["w"].dtype == np.float32
    np.testing.assert_array_equal(a.params["w"], b.params["w"])
    assert not np.array_equal(a.params["w"], c.params["w"])
    # Glorot-uniform: |w| <= sqrt(6/(fan_in+fan_out)), variance 2/(fan_in+fan_out)
    fan_in, fan_out = 8 * 9, 16 * 9
    assert np.abs(a.params["w"]).max() <= np.sqrt(6 / (fan_in + fan_out))
    assert np.isclose(a.params["w"].var(), 2 / (fan_in + fan_out), rtol=0.15)
    he = _build(Dense(400, kernel_init="he_normal"), (300,), dtype=np.float64)
    assert np.isclose(he.params["w"].var(), 2 / 300, rtol=0.05)
    with pytest.raises(ValueError, match="unknown initializer 'bogus'"):
        _build(Dense(3, kernel_init="bogus"), (3,))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["he_normal", "he_uniform", "glorot_normal", "glorot_uniform"])
def test_blockwise_initialisation_equals_the_whole_draw(name, dtype, monkeypatch):
    """Weights drawn block by block (7 values at a time here, the last block partial) are the
    values of one whole float64 draw cast to ``dtype``, and the generator ends in the same state
    (the layers built after this one draw the same weights too)."""
    from nptl.layers import init

    monkeypatch.setattr(init, "BLOCK", 7)
    shape, fan_in, fan_out = (4, 3, 2, 3), 18, 24
    whole_rng, block_rng = np.random.default_rng(5), np.random.default_rng(5)
    sd, lim = {"he": (np.sqrt(2 / fan_in), np.sqrt(6 / fan_in)),
               "glorot": (np.sqrt(2 / (fan_in + fan_out)), np.sqrt(6 / (fan_in + fan_out)))}[name.split("_")[0]]
    whole = (whole_rng.normal(0.0, sd, size=shape) if name.endswith("normal")
             else whole_rng.uniform(-lim, lim, size=shape)).astype(dtype)
    blocks = init.initialize(name, shape, fan_in, fan_out, block_rng, dtype)
    assert blocks.dtype == dtype and blocks.shape == shape
    np.testing.assert_array_equal(blocks, whole)
    assert block_rng.bit_generator.state == whole_rng.bit_generator.state


def _every_layer_type():
    """One layer of each built-in type with a per-sample input shape it accepts."""
    from nptl import (AdaptiveAvgPool2D, BatchNorm1D, BatchNorm2D, ConvTranspose2D, Dropout, GlobalAvgPool2D,
                      Upsample2D)
    image = (2, 6, 6)
    return [(Conv2D(3, 3), image), (ConvTranspose2D(3, 3), image), (Dense(3), (4,)), (ReLU(), image),
            (Sigmoid(), image), (Softmax(), (4,)), (BatchNorm2D(), image), (BatchNorm1D(), (4,)),
            (MaxPool2D(2), image), (MaxPool2D(3, 2, padding=1), image), (AvgPool2D(2), image),
            (AdaptiveAvgPool2D((4, 4)), image), (GlobalAvgPool2D(), image), (Dropout(0.5), image),
            (Upsample2D(2), image), (Flatten(), image)]


@pytest.mark.parametrize("layer,shape", _every_layer_type(), ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else "")
@pytest.mark.parametrize("trainable", [True, False])
def test_backward_releases_what_forward_kept(layer, shape, trainable):
    """After its backward a layer holds no array of the batch (only parameters, gradients and
    buffers): a second backward without a new forward raises the 'forward first' error (Flatten
    keeps nothing and may run again); a new forward makes backward work again."""
    _build(layer, shape)
    if not trainable:
        layer.freeze()
    x = np.random.default_rng(1).standard_normal((3,) + shape)
    y = layer.forward(x, training=True)
    layer.backward(np.ones_like(y), input_grad=True)
    own = {id(a) for d in (layer.params, layer.grads, layer.buffers) for a in d.values()}
    kept = [k for k, v in vars(layer).items() if isinstance(v, np.ndarray) and v.ndim > 0 and id(v) not in own]
    assert kept == []
    if isinstance(layer, Flatten):
        return
    with pytest.raises(RuntimeError, match=rf"layer '{layer.name}': backward called without a forward\(\.\.\., "
                                           r"training=True\) before it"):
        layer.backward(np.ones_like(y))
    layer.forward(x, training=True)
    assert layer.backward(np.ones_like(y), input_grad=False) is None


def test_float64_noncontiguous_input_to_float32_model():
    model = nptl.Sequential([Conv2D(4, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(3)], input_shape=(2, 8, 8))
    x = np.random.default_rng(0).standard_normal((5, 8, 8, 2)).transpose(0, 3, 1, 2)  # float64 view
    assert not x.flags.c_contiguous
    y = model.forward(x)
    assert y.dtype == np.float32 and y.shape == (5, 3)
    np.testing.assert_allclose(y, model.forward(np.ascontiguousarray(x, np.float32)), rtol=1e-6)
    y_int = model.forward(np.ones((1, 2, 8, 8), dtype=np.uint8))
    assert y_int.dtype == np.float32


def test_layer_errors_name_the_layer():
    model = nptl.Sequential([Conv2D(4, 3, name="conv_a"), Flatten(), Dense(3, name="head")], input_shape=(2, 8, 8))
    with pytest.raises(ValueError, match=r"layer 'conv_a' \(Conv2D\) expects input \(N, C, H, W\) = \(N, 2, \?, \?\), got shape \(5, 3, 8, 8\)"):
        model.forward(np.zeros((5, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"layer 'conv_a' \(Conv2D\) expects input .* got shape \(8, 8\)"):
        model.forward(np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"layer 'conv_a' \(Conv2D\): kernel 3x3 is larger than the padded input 2x2"):
        nptl.Sequential([Conv2D(4, 3, name="conv_a")], input_shape=(1, 2, 2))
    with pytest.raises(ValueError, match=r"layer 'head' \(Dense\) expects input \(N, features\).*add a Flatten"):
        nptl.Sequential([Conv2D(4, 3), Dense(3, name="head")], input_shape=(2, 8, 8))
    with pytest.raises(ValueError, match=r"'stride' must be >= 1, got 0"):
        MaxPool2D(2, stride=0)
    with pytest.raises(ValueError, match=r"'filters' must be >= 1, got 0"):
        Conv2D(0, 3)
    with pytest.raises(RuntimeError, match=r"layer 'head': backward called without a forward"):
        nptl.Sequential([Flatten(), Dense(3, name="head")], input_shape=(4,)).layers[1].backward(np.zeros((1, 3)))
