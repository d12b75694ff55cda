"""BatchNorm layers: training vs inference mode, the frozen rule, running statistics, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import nptl
from nptl import BatchNorm1D, BatchNorm2D
from nptl.kernels import reference as ref
from tests.strategies import seeds

CASES = [(BatchNorm2D, (3, 4, 5)), (BatchNorm1D, (6,))]
IDS = ["2d", "1d"]


def _layer(cls, shape, seed=0, dtype=np.float64, **kw):
    layer = cls(name="bn", **kw)
    layer.build(shape, np.random.default_rng(seed), dtype)
    rng = np.random.default_rng(seed + 1)
    layer.params["w"][:] = rng.standard_normal(shape[0])
    layer.params["b"][:] = rng.standard_normal(shape[0])
    layer.buffers["running_mean"][:] = rng.standard_normal(shape[0])
    layer.buffers["running_var"][:] = rng.random(shape[0]) + 0.5
    return layer


def _x(shape, seed=0, n=4):
    return np.random.default_rng(seed + 2).standard_normal((n,) + shape) * 2 + 1


def _buffers(layer):
    return {k: v.copy() for k, v in layer.buffers.items()}


@pytest.mark.parametrize("cls,shape", CASES, ids=IDS)
def test_parameters_buffers_and_shapes(cls, shape):
    layer = _layer(cls, shape, dtype=np.float32)
    C = shape[0]
    assert sorted(layer.params) == ["b", "w"] and layer.parameter_count() == 2 * C
    assert sorted(layer.buffers) == ["num_batches_tracked", "running_mean", "running_var"]
    assert layer.buffers["running_mean"].dtype == np.float32 and layer.buffers["num_batches_tracked"].dtype == np.int64
    assert [p.name for p in layer.parameters()] == ["bn.w", "bn.b"]         # buffers are not parameters
    assert layer.buffer_count() == 2 * C + 1
    assert layer.forward(_x(shape)).shape == (4,) + layer.output_shape(shape)
    layer.astype(np.float64)
    assert layer.buffers["running_var"].dtype == np.float64 and layer.buffers["num_batches_tracked"].dtype == np.int64


@pytest.mark.parametrize("cls,shape", CASES, ids=IDS)
@given(seed=seeds, momentum=st.sampled_from([0.1, 0.5, 1.0]))
def test_training_mode_uses_batch_statistics_and_updates_running_ones(cls, shape, seed, momentum):
    layer = _layer(cls, shape, seed % 1000, momentum=momentum)
    x = _x(shape, seed % 1000)
    before = _buffers(layer)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, ref.batch_norm(x, layer.params["w"], layer.params["b"]), rtol=1e-10, atol=1e-12)
    mean, var = ref.batch_norm_running_update(before["running_mean"], before["running_var"], x, momentum)
    np.testing.assert_allclose(layer.buffers["running_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], var, rtol=1e-12)
    assert layer.buffers["num_batches_tracked"] == 1


@pytest.mark.parametrize("cls,shape", CASES, ids=IDS)
def test_inference_mode_uses_running_statistics_without_updating_them(cls, shape):
    layer = _layer(cls, shape)
    x = _x(shape)
    before = _buffers(layer)
    y = layer.forward(x, training=False)
    want = ref.batch_norm(x, layer.params["w"], layer.params["b"], before["running_mean"], before["running_var"])
    np.testing.assert_allclose(y, want, rtol=1e-12)
    for k, v in before.items():
        np.testing.assert_array_equal(layer.buffers[k], v, err_msg=k)


@pytest.mark.parametrize("cls,shape", CASES, ids=IDS)
def test_frozen_layer_runs_in_inference_mode_even_when_training(cls, shape):
    """Keras (TF 2) rule: frozen BatchNorm = running statistics, no update, affine gradient."""
    layer = _layer(cls, shape)
    x = _x(shape)
    inference = layer.forward(x, training=False)
    before = _buffers(layer)
    layer.freeze()
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, inference)
    for k, v in before.items():
        np.testing.assert_array_equal(layer.buffers[k], v, err_msg=k)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    layer.zero_grad()
    dx = layer.backward(dy)
    s = (layer.params["w"] / np.sqrt(before["running_var"] + layer.eps)).reshape((1, -1) + (1,) * (len(shape) - 1))
    np.testing.assert_allclose(dx, s * dy, rtol=1e-12)                  # dx = γ·dy/√(r_σ² + ε)
    assert not layer.grads["w"].any() and not layer.grads["b"].any()    # frozen: no parameter gradients
    nptl.gradcheck(layer, x).assert_ok(1e-6)
    layer.unfreeze()                                                    # back to batch statistics
    assert not np.allclose(layer.forward(x, training=True), inference)
    assert layer.buffers["num_batches_tracked"] == 1


@pytest.mark.parametrize("cls,shape", CASES, ids=IDS)
@given(seed=seeds)
def test_layer_gradients_in_training_mode(cls, shape, seed):
    layer = _layer(cls, shape, seed % 1000)
    report = nptl.gradcheck(layer, _x(shape, seed % 1000, n=3), seed=seed % 1000 + 7)
    assert set(report.errors) == {"input", "bn.w", "bn.b"}               # buffers never checked
    report.assert_ok(1e-6)


def test_gradcheck_leaves_the_running_statistics_alone():
    layer = _layer(BatchNorm2D, (3, 4, 5))
    before = _buffers(layer)
    nptl.gradcheck(layer, _x((3, 4, 5)))
    for k, v in before.items():
        np.testing.assert_array_equal(layer.buffers[k], v, err_msg=k)


def test_momentum_none_is_the_cumulative_average():
    layer = _layer(BatchNorm1D, (3,), momentum=None)
    xs = [_x((3,), seed) for seed in range(3)]
    for x in xs:
        layer.forward(x, training=True)
    np.testing.assert_allclose(layer.buffers["running_mean"], np.mean([x.mean(0) for x in xs], axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], np.mean([x.var(0, ddof=1) for x in xs], axis=0),
                               rtol=1e-12)
    assert layer.buffers["num_batches_tracked"] == 3


def test_optimizer_never_sees_buffers():
    model = nptl.Sequential([nptl.Conv2D(4, 3, use_bias=False), BatchNorm2D(), nptl.ReLU(), nptl.Flatten(),
                             nptl.Dense(2)], input_shape=(1, 6, 6))
    opt = nptl.optim.SGD(model, lr=0.1)
    x = np.random.default_rng(0).standard_normal((4, 1, 6, 6))
    model.zero_grad()
    model.backward(model.forward(x, training=True))
    running = model["bn1"].buffers["running_mean"].copy()
    opt.step()
    np.testing.assert_array_equal(model["bn1"].buffers["running_mean"], running)
    assert "bn1.running_mean" not in [p.name for p in model.parameters()]
    assert "Buffers (running statistics, saved, not trained): 9" in model.summary(print_fn=None)


@pytest.mark.parametrize("cls,shape,x_shape", [(BatchNorm2D, (3, 1, 1), (1, 3, 1, 1)), (BatchNorm1D, (3,), (1, 3))],
                         ids=IDS)
def test_single_value_per_channel_in_training_mode_is_an_error(cls, shape, x_shape):
    model = nptl.Sequential([cls(name="bn_top")], input_shape=shape)
    with pytest.raises(ValueError, match=r"layer 'bn_top' \(BatchNorm.D\): training mode needs more than one value "
                                         r"per channel.*got input shape \(1, 3.*\(1 value per channel\)"):
        model.forward(np.ones(x_shape), training=True)
    model.forward(np.ones(x_shape))                     # inference mode is fine
    model.freeze()
    model.forward(np.ones(x_shape), training=True)      # and so is a frozen layer


def test_construction_and_input_errors():
    with pytest.raises(ValueError, match=r"BatchNorm2D\(b\): 'momentum' must be a number in \[0, 1\] or None, got 1.5"):
        BatchNorm2D(momentum=1.5, name="b")
    with pytest.raises(ValueError, match=r"'eps' must be a positive number, got -1"):
        BatchNorm1D(eps=-1)
    with pytest.raises(ValueError, match=r"layer 'bn1' \(BatchNorm2D\) expects input \(N, C, H, W\), got per-sample shape \(8,\)"):
        nptl.Sequential([nptl.Flatten(), BatchNorm2D()], input_shape=(2, 2, 2))
    model = nptl.Sequential([BatchNorm2D(name="bn")], input_shape=(3, 4, 4))
    with pytest.raises(ValueError, match=r"layer 'bn' \(BatchNorm2D\) expects input \(N, C, H, W\) = \(N, 3, \?, \?\)"):
        model.forward(np.zeros((2, 4, 4, 4)))
    assert model.forward(np.zeros((2, 3, 7, 9))).shape == (2, 3, 7, 9)   # any spatial size


def test_residual_block_with_batch_norm_gradients_checkpoint_and_freezing(tmp_path):
    """BatchNorm inside nested blocks: gradients through both paths (training mode), running
    statistics saved by dotted name, and freezing the block puts its BatchNorms in inference mode."""
    from nptl.graph import Residual, Sequential
    import nptl.io as nio

    def bn_block():
        main = [nptl.Conv2D(4, 3, stride=2, padding=1, use_bias=False, name="conv1"), BatchNorm2D(name="bn1"),
                nptl.ReLU(name="relu"), nptl.Conv2D(4, 3, padding=1, use_bias=False, name="conv2"),
                BatchNorm2D(name="bn2")]
        short = Sequential([nptl.Conv2D(4, 1, stride=2, use_bias=False, name="0"), BatchNorm2D(name="1")],
                           name="downsample")
        return Residual(main, short, name="0")

    model = Sequential([Sequential([bn_block()], name="layer1"), nptl.Flatten(name="flatten"),
                        nptl.Dense(2, name="fc")], input_shape=(3, 6, 6), name="m")
    x = np.random.default_rng(0).standard_normal((3, 3, 6, 6))
    report = nptl.gradcheck(model, x, seed=11)
    assert "layer1.0.downsample.1.w" in report.errors
    report.assert_ok(1e-6)
    model.forward(x, training=True)
    path = nio.save(model, tmp_path / "m.npz")
    loaded = nio.load(path)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_array_equal(loaded["layer1.0.downsample.1"].buffers[key],
                                      model["layer1.0.downsample.1"].buffers[key])
    assert int(loaded["layer1.0.bn2"].buffers["num_batches_tracked"]) == 1
    loaded.freeze("layer1")
    before = _buffers(loaded["layer1.0.bn1"])
    np.testing.assert_allclose(loaded.forward(x, training=True), loaded.forward(x), rtol=1e-6)
    for k, v in before.items():
        np.testing.assert_array_equal(loaded["layer1.0.bn1"].buffers[k], v, err_msg=k)
    assert "Buffers (running statistics, saved, not trained): 27" in loaded.summary(print_fn=None)
