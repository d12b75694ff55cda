"""Dropout, GlobalAvgPool2D and AdaptiveAvgPool2D layers: modes, reproducible masks, shapes,
gradients, checkpoints."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import nptl
import nptl.io as nio
from nptl import AdaptiveAvgPool2D, Dropout, GlobalAvgPool2D, ops
from tests.strategies import seeds


def _build(layer, shape, dtype=np.float64):
    layer.name = layer.name or "l"
    layer.build(shape, np.random.default_rng(0), dtype)
    return layer


def test_dropout_is_the_identity_at_inference_and_seeded_in_training():
    layer = _build(Dropout(0.4, seed=9), (3, 4, 5))
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(layer.forward(x), x)
    assert layer.calls == 0                                   # inference draws no mask
    for t in range(3):                                        # call t uses ops.dropout_mask(..., seed, t)
        keep = ops.dropout_mask(x.shape, 0.4, 9, t)
        np.testing.assert_array_equal(layer.forward(x, training=True), np.where(keep, x / 0.6, 0))
        dy = np.random.default_rng(t).standard_normal(x.shape)
        np.testing.assert_array_equal(layer.backward(dy), np.where(keep, dy / 0.6, 0))
    assert layer.calls == 3
    again = _build(Dropout(0.4, seed=9), (3, 4, 5))            # same seed, same calls: same masks
    for _ in range(3):
        y = again.forward(x, training=True)
    np.testing.assert_array_equal(y, np.where(ops.dropout_mask(x.shape, 0.4, 9, 2), x / 0.6, 0))
    layer.freeze()                                            # trainable does not change dropout
    assert (layer.forward(x, training=True) == 0).any()


@given(rate=st.sampled_from([0.0, 0.2, 0.5]), seed=seeds)
def test_dropout_layer_gradients(rate, seed):
    layer = _build(Dropout(rate, seed=seed % 1000), (4, 3))
    nptl.gradcheck(layer, np.random.default_rng(seed).standard_normal((3, 4, 3)), seed=seed % 1000).assert_ok(1e-6)
    assert layer.calls == 0                                   # gradcheck works on a copy


def test_dropout_errors():
    with pytest.raises(ValueError, match=r"Dropout\(drop\): 'rate' must be a number in \[0, 1\), got 1"):
        Dropout(1, name="drop")
    with pytest.raises(ValueError, match=r"Dropout\(\): 'seed' must be >= 0, got -3"):
        Dropout(0.5, seed=-3)


@pytest.mark.parametrize("out", [(7, 7), (3, 5), 1, (12, 2)])
def test_adaptive_and_global_pool_layers(out):
    layer = _build(AdaptiveAvgPool2D(out), (3, 9, 10))
    Ho, Wo = (out, out) if isinstance(out, int) else out
    assert layer.output_shape((3, 9, 10)) == (3, Ho, Wo)
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 10))
    np.testing.assert_array_equal(layer.forward(x), ops.adaptive_avg_pool2d(x, out))
    assert layer.forward(np.zeros((1, 3, 20, 13))).shape == (1, 3, Ho, Wo)   # any input size
    nptl.gradcheck(layer, x).assert_ok(1e-6)
    g = _build(GlobalAvgPool2D(), (3, 9, 10))
    assert g.output_shape((3, 9, 10)) == (3,)
    np.testing.assert_allclose(g.forward(x), x.mean(axis=(2, 3)), rtol=1e-12)
    nptl.gradcheck(g, x).assert_ok(1e-6)


def test_pool_layer_errors():
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2D\(p\): 'output_size\[0\]' must be >= 1, got 0"):
        AdaptiveAvgPool2D((0, 3), name="p")
    with pytest.raises(ValueError, match=r"layer 'gap' \(GlobalAvgPool2D\) expects input \(C, H, W\), got \(12,\)"):
        nptl.Sequential([nptl.Flatten(), GlobalAvgPool2D(name="gap")], input_shape=(3, 2, 2))


def test_checkpoint_round_trip_with_the_new_layers(tmp_path):
    model = nptl.Sequential([nptl.Conv2D(4, 3, use_bias=False), nptl.BatchNorm2D(), nptl.ReLU(),
                             AdaptiveAvgPool2D((3, 3)), nptl.Flatten(), nptl.Dense(8), Dropout(0.3, seed=5),
                             nptl.BatchNorm1D(), nptl.Dense(2)], input_shape=(2, 9, 9))
    x = np.random.default_rng(0).standard_normal((4, 2, 9, 9)).astype(np.float32)
    model.forward(x, training=True)
    loaded = nio.load(nio.save(model, tmp_path / "m.npz"))
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    assert loaded["dropout1"].rate == 0.3 and loaded["dropout1"].seed == 5 and loaded["dropout1"].calls == 0
    assert loaded["adaptive_pool1"].output_size == (3, 3)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    gap = nptl.Sequential([nptl.Conv2D(4, 3), GlobalAvgPool2D(), nptl.Dense(2)], input_shape=(2, 9, 9))
    np.testing.assert_array_equal(nio.load(nio.save(gap, tmp_path / "g.npz")).forward(x), gap.forward(x))
