"""The layer graph: freeze semantics, backward stopping, summary, training."""
import copy

import numpy as np
import pytest

import nptl
from nptl import Conv2D, Dense, Flatten, MaxPool2D, ReLU, ops
from nptl.kernels import conv2d as conv_kernel
from nptl.kernels import dense as dense_kernel
from nptl.models import SEED_CNN_BASE, seed_cnn


def small_cnn(seed=0, dtype=np.float32):
    return nptl.Sequential([Conv2D(4, 3, name="c1"), ReLU(), MaxPool2D(2), Conv2D(6, 3, padding=1, name="c2"),
                            ReLU(), Flatten(), Dense(8, name="d1"), ReLU(), Dense(3, name="out")],
                           input_shape=(2, 10, 10), seed=seed, dtype=dtype)


def data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2, 10, 10)).astype(np.float32), rng.integers(0, 3, n)


def sgd_steps(model, x, y, steps, lr=0.02):
    opt = nptl.optim.SGD(model, lr)
    losses = []
    for _ in range(steps):
        model.zero_grad()
        loss, d = ops.cross_entropy(model.forward(x, training=True), y)
        model.backward(d)
        opt.step()
        losses.append(float(loss))
    return losses


def test_names_are_assigned_and_unique():
    m = small_cnn()
    assert [l.name for l in m.layers] == ["c1", "relu1", "pool1", "c2", "relu2", "flatten1", "d1", "relu3", "out"]
    with pytest.raises(ValueError, match=r"layer names must be unique, repeated: \['a'\]"):
        nptl.Sequential([ReLU(name="a"), ReLU(name="a")])
    with pytest.raises(KeyError, match="has no layer 'nope'"):
        m["nope"]


def test_frozen_parameters_are_bit_identical_after_training():
    m = small_cnn()
    m.freeze("c1", "d1")
    before = {p.name: p.value.copy() for p in m.parameters()}
    x, y = data()
    sgd_steps(m, x, y, 5)
    for p in m.parameters():
        if p.layer.name in ("c1", "d1"):
            assert np.array_equal(p.value, before[p.name]), p.name
            assert not p.grad.any(), f"{p.name} received a gradient"
        else:
            assert not np.array_equal(p.value, before[p.name]), p.name
    assert {p.name for p in m.trainable_parameters()} == {"c2.w", "c2.b", "out.w", "out.b"}


def test_frozen_layers_never_compute_parameter_gradients(monkeypatch):
    calls = {"conv_w": 0, "dense_w": 0}

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    # both kernels that compute (C3): the fused one (with dx) and the weight-only one
    monkeypatch.setattr(conv_kernel, "conv2d_backward", count("conv_w", conv_kernel.conv2d_backward))
    monkeypatch.setattr(conv_kernel, "conv2d_backward_weight", count("conv_w", conv_kernel.conv2d_backward_weight))
    monkeypatch.setattr(dense_kernel, "dense_accumulate_weight_grad",                       # (D3)
                        count("dense_w", dense_kernel.dense_accumulate_weight_grad))
    m = small_cnn()
    x, y = data()
    sgd_steps(m, x, y, 1)
    assert calls == {"conv_w": 2, "dense_w": 2}
    m.freeze("c1", "c2", "out")
    sgd_steps(m, x, y, 1)
    assert calls == {"conv_w": 2, "dense_w": 3}


def test_frozen_layer_still_passes_gradient_to_trainable_layer_below():
    m = small_cnn(dtype=np.float64)
    x, y = data()
    m.zero_grad()
    _, d = ops.cross_entropy(m.forward(x, training=True), y)
    m.backward(d)
    reference = m["c1"].grads["w"].copy()
    frozen = copy.deepcopy(m)
    frozen.freeze("c2", "d1", "out")  # everything above c1 frozen
    frozen.zero_grad()
    _, d = ops.cross_entropy(frozen.forward(x, training=True), y)
    frozen.backward(d)
    np.testing.assert_array_equal(frozen["c1"].grads["w"], reference)
    # dx of a frozen layer equals dx of the same layer unfrozen
    layer = frozen["c2"]
    dy = np.random.default_rng(1).standard_normal((16, 6, 4, 4))
    frozen.forward(x, training=True)               # a forward's caches serve one backward
    dx_frozen = layer.backward(dy)
    layer.unfreeze()
    frozen.forward(x, training=True)
    np.testing.assert_array_equal(layer.backward(dy), dx_frozen)


def test_backward_stops_at_the_lowest_trainable_layer(monkeypatch):
    m = small_cnn()
    m.freeze(up_to="flatten1")
    calls = []
    for layer in m.layers:
        orig = layer.backward

        def spy(dy, input_grad=True, _name=layer.name, _orig=orig):
            calls.append((_name, input_grad))
            return _orig(dy, input_grad)
        monkeypatch.setattr(layer, "backward", spy)
    x, y = data()
    sgd_steps(m, x, y, 1)
    assert calls == [("out", True), ("relu3", True), ("d1", False)]
    assert m.lowest_trainable_index() == m.index("d1")
    m.freeze()
    assert m.backward(np.zeros((16, 3), np.float32)) is None


def test_trainable_change_takes_effect_at_next_step():
    m = small_cnn()
    x, y = data()
    sgd_steps(m, x, y, 2)
    m.freeze(up_to="relu2")
    w = m["c2"].params["w"].copy()
    sgd_steps(m, x, y, 2)
    np.testing.assert_array_equal(m["c2"].params["w"], w)
    m.unfreeze("c2")
    sgd_steps(m, x, y, 1)
    assert not np.array_equal(m["c2"].params["w"], w)
    # unfrozen between forward and backward: the weight gradient is still right
    m2 = small_cnn(dtype=np.float64)
    m2.freeze("c1")
    m2.zero_grad()
    _, d = ops.cross_entropy(m2.forward(x, training=True), y)
    m2.unfreeze("c1")
    m2.backward(d)
    m3 = small_cnn(dtype=np.float64)
    m3.zero_grad()
    _, d3 = ops.cross_entropy(m3.forward(x, training=True), y)
    m3.backward(d3)
    np.testing.assert_allclose(m2["c1"].grads["w"], m3["c1"].grads["w"], rtol=1e-12)


def test_summary_counts_trainable_and_non_trainable():
    m = seed_cnn()
    total = 32 * 9 + 32 + 64 * 32 * 9 + 64 + 64 * 64 * 9 + 64 + 576 * 64 + 64 + 64 * 10 + 10
    assert m.count_parameters() == (total, 0)
    m.freeze(up_to="flatten")
    base = 32 * 9 + 32 + 64 * 32 * 9 + 64 + 64 * 64 * 9 + 64
    assert m.count_parameters() == (total - base, base)
    assert (m.parameter_count(), m.parameter_count(trainable=True), m.parameter_count(trainable=False)) \
        == (total, total - base, base)
    assert m["conv1"].parameter_count() == m["conv1"].parameter_count(trainable=False) == 32 * 9 + 32
    assert m["conv1"].parameter_count(trainable=True) == 0
    text = m.summary(print_fn=None)
    assert f"Total params: {total:,}" in text
    assert f"Trainable params: {total - base:,}" in text
    assert f"Non-trainable params: {base:,}" in text
    assert "conv2 (Conv2D)" in text and "(None, 64, 11, 11)" in text
    assert all(not m[n].trainable for n in SEED_CNN_BASE)


def test_model_gradcheck_all_parameters_and_input():
    m = small_cnn()
    x = np.random.default_rng(3).standard_normal((2, 2, 10, 10))
    report = nptl.gradcheck(m, x)
    assert set(report.errors) == {"input", "c1.w", "c1.b", "c2.w", "c2.b", "d1.w", "d1.b", "out.w", "out.b"}
    report.assert_ok(1e-6)
    assert m.dtype == np.float32  # the check worked on a float64 copy


def test_gradcheck_catches_a_wrong_gradient(monkeypatch):
    m = small_cnn()
    x = np.random.default_rng(3).standard_normal((2, 2, 10, 10))
    orig = dense_kernel.dense_accumulate_weight_grad                        # (D3) 1 % too large
    monkeypatch.setattr(dense_kernel, "dense_accumulate_weight_grad", lambda dw, dy, x: orig(dw, dy * 1.01, x))
    report = nptl.gradcheck(m, x)
    assert not report.ok(1e-6)
    assert report.errors["d1.w"] > 1e-3 and report.errors["c1.w"] < 1e-6


def test_seed_cnn_learns_and_frozen_base_transfer():
    """Train the seed CNN a few steps on generated data: loss falls; freeze base, train head."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 64)
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32) * 0.1
    x[y == 1, :, 5:12, 5:12] += 1.0  # class 1 has a bright square
    m = seed_cnn(num_classes=2, seed=1)
    losses = sgd_steps(m, x, y, 30, lr=0.1)
    assert losses[-1] < 0.1 * losses[0]
    m.freeze(up_to="flatten")
    base = {p.name: p.value.copy() for p in m.parameters() if p.layer.name in SEED_CNN_BASE}
    head_losses = sgd_steps(m, x, y, 5, lr=0.05)
    assert head_losses[-1] <= head_losses[0]
    for p in m.parameters():
        if p.name in base:
            assert np.array_equal(p.value, base[p.name])


def test_gradcheck_stays_a_function_after_its_module_is_imported():
    import importlib

    importlib.import_module("nptl.gradient_check")
    from nptl import gradcheck

    assert callable(gradcheck) and gradcheck.__name__ == "gradcheck"
