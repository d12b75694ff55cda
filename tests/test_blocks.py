"""Composite layers: nested Sequential and Residual blocks, dotted names, freezing inside
blocks, gradients through the fork, checkpoints of nested models."""
import copy

import numpy as np
import pytest

import nptl
import nptl.io as nio
from nptl import Conv2D, Dense, Flatten, ReLU, ops
from nptl.graph import Residual, Sequential
from nptl.io import CheckpointError


def block(c_in, c_out, stride, name):
    main = [Conv2D(c_out, 3, stride=stride, padding=1, use_bias=False, name="conv1"), ReLU(name="relu"),
            Conv2D(c_out, 3, padding=1, use_bias=False, name="conv2")]
    short = None
    if stride != 1 or c_in != c_out:
        short = Sequential([Conv2D(c_out, 1, stride=stride, use_bias=False, name="0")], name="downsample")
    return Residual(main, short, name=name)


def tiny_resnet(seed=0, dtype=np.float32, classes=3):
    return Sequential([Conv2D(4, 3, padding=1, name="conv1"), ReLU(name="relu"),
                       Sequential([block(4, 4, 1, "0"), block(4, 4, 1, "1")], name="layer1"),
                       Sequential([block(4, 6, 2, "0"), block(6, 6, 1, "1")], name="layer2"),
                       Flatten(name="flatten"), Dense(classes, name="fc")],
                      input_shape=(2, 8, 8), seed=seed, dtype=dtype, name="tiny")


def data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2, 8, 8)).astype(np.float32), rng.integers(0, 3, n)


def step(model, x, y, lr=0.05):
    opt = nptl.optim.SGD(model, lr)
    model.zero_grad()
    loss, d = ops.cross_entropy(model.forward(x, training=True), y)
    model.backward(d)
    opt.step()
    return float(loss)


def test_dotted_names_lookup_and_parameters():
    m = tiny_resnet()
    names = [p.name for p in m.parameters()]
    assert names[:2] == ["conv1.w", "conv1.b"]
    assert "layer1.0.conv1.w" in names and "layer2.0.downsample.0.w" in names and names[-2:] == ["fc.w", "fc.b"]
    assert len(names) == len(set(names))
    assert m["layer2.0.downsample.0"] is m["layer2"]["0"]["downsample"]["0"]
    assert m["layer2.1.conv2"].params["w"].shape == (6, 6, 3, 3)
    with pytest.raises(KeyError, match=r"layer2\.0 has no layer 'conv9' \(looking up 'layer2\.0\.conv9'\)"):
        m["layer2.0.conv9"]
    assert m.output_shape() == (3,) and m["layer2"].output_shape((4, 8, 8)) == (6, 4, 4)
    total = sum(p.value.size for p in m.parameters())
    assert m.parameter_count() == total and m.count_parameters() == (total, 0)


def test_residual_checks_shapes_and_names():
    with pytest.raises(ValueError, match=r"residual block 'r': the main path maps \(4, 8, 8\) to \(6, 4, 4\) "
                                         r"but the shortcut to \(4, 8, 8\); give it a projection shortcut"):
        Sequential([Residual([Conv2D(6, 3, stride=2, padding=1)], name="r")], input_shape=(4, 8, 8))
    with pytest.raises(ValueError, match=r"layer names must be unique, repeated: \['conv1'\]"):
        Residual([Conv2D(4, 3, name="conv1")], Conv2D(4, 1, name="conv1"), name="r")
    with pytest.raises(ValueError, match=r"must not contain '\.'"):
        Sequential([ReLU(name="a.b")])


def test_residual_gradients_sum_at_the_fork():
    """(RB3): dx is the main path's dx plus the shortcut's, both fed the same dz."""
    rng = np.random.default_rng(1)
    r = block(3, 5, 2, "r")
    Sequential([r], input_shape=(3, 7, 7), dtype=np.float64)
    x = rng.standard_normal((2, 3, 7, 7))
    y = r.forward(x, training=True)
    dy = rng.standard_normal(y.shape)
    r.zero_grad()
    dx = r.backward(dy, input_grad=True)
    z = r.main.forward(x) + r.shortcut.forward(x)
    dz = dy * (z > 0)
    main, short = copy.deepcopy(r.main), copy.deepcopy(r.shortcut)
    main.forward(x, training=True), short.forward(x, training=True)
    main.zero_grad(), short.zero_grad()
    expected = main.backward(dz, input_grad=True) + short.backward(dz, input_grad=True)
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r["conv1"].grads["w"], main["conv1"].grads["w"], rtol=1e-12)
    np.testing.assert_allclose(r["downsample.0"].grads["w"], short["0"].grads["w"], rtol=1e-12)


@pytest.mark.parametrize("shortcut", [False, True])
def test_residual_block_gradcheck(shortcut):
    r = block(3, 5 if shortcut else 3, 2 if shortcut else 1, "r")
    Sequential([r], input_shape=(3, 6, 6))
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 6))
    report = nptl.gradcheck(r, x)
    expected = {"input", "conv1.w", "conv2.w"} | ({"downsample.0.w"} if shortcut else set())
    assert set(report.errors) == expected
    report.assert_ok(1e-6)


def test_model_gradcheck_through_nested_blocks():
    m = tiny_resnet()
    report = nptl.gradcheck(m, np.random.default_rng(3).standard_normal((2, 2, 8, 8)))
    assert {"layer2.0.downsample.0.w", "layer1.1.conv2.w", "fc.w", "input"} <= set(report.errors)
    report.assert_ok(1e-6)


def test_freeze_by_dotted_name_and_up_to_a_block():
    m = tiny_resnet()
    m.freeze(up_to="layer1")
    frozen = {p.name for p in m.parameters()} - {p.name for p in m.trainable_parameters()}
    assert frozen == {"conv1.w", "conv1.b", "layer1.0.conv1.w", "layer1.0.conv2.w", "layer1.1.conv1.w",
                      "layer1.1.conv2.w"}
    assert not m["layer1"].trainable and m["layer2"].trainable and m.trainable
    m.unfreeze("layer1.1.conv2")
    assert m["layer1"].trainable and m["layer1.1.conv2"].trainable and not m["layer1.1.conv1"].trainable
    m.freeze("layer2")
    assert not any(m[f"layer2.{b}.{c}"].trainable for b in "01" for c in ("conv1", "conv2"))
    assert not m["layer2.0.downsample.0"].trainable
    m.unfreeze()
    assert len(m.trainable_parameters()) == len(m.parameters())
    with pytest.raises(KeyError, match="has no layer 'layer9'"):
        m.freeze(up_to="layer9")


def test_frozen_layers_inside_blocks_keep_their_values_and_pass_dx():
    m = tiny_resnet(dtype=np.float64)
    x, y = data()
    m.zero_grad()
    _, d = ops.cross_entropy(m.forward(x, training=True), y)
    m.backward(d)
    reference = m["conv1"].grads["w"].copy()
    # everything above the stem frozen, including layers inside residual blocks
    m.freeze("layer1", "layer2", "fc")
    before = {p.name: p.value.copy() for p in m.parameters()}
    arrays = {p.name: p.value for p in m.parameters()}
    step(m, x, y)
    for p in m.parameters():
        if p.name.startswith("conv1."):
            assert not np.array_equal(p.value, before[p.name])
        else:
            assert np.array_equal(p.value, before[p.name]) and not p.grad.any(), p.name
        assert p.value is arrays[p.name]  # updated in place: nothing rebuilt on freeze
    m2 = tiny_resnet(dtype=np.float64)
    m2.freeze("layer1", "layer2", "fc")
    m2.zero_grad()
    _, d = ops.cross_entropy(m2.forward(x, training=True), y)
    m2.backward(d)
    np.testing.assert_array_equal(m2["conv1"].grads["w"], reference)


def test_backward_stops_at_the_lowest_trainable_layer_inside_a_block(monkeypatch):
    m = tiny_resnet()
    m.freeze(up_to="layer2.0.conv1")   # inside block layer2.0: conv1 frozen, conv2 and downsample not
    calls = []
    for path, layer in m.named_layers():
        orig = layer.backward

        def spy(dy, input_grad=True, _name=path, _orig=orig):
            calls.append((_name, input_grad))
            return _orig(dy, input_grad=input_grad)
        monkeypatch.setattr(layer, "backward", spy)
    x, y = data()
    step(m, x, y)
    called = dict(calls)
    # layer2.0's main path stops at conv2 (lowest trainable there): conv2 gives no dx, conv1 never runs
    assert called["layer2.0.conv2"] is False and "layer2.0.conv1" not in called
    assert called["layer2.0.downsample"] is False and called["layer2.0"] is False
    assert called["layer2.1"] is True and called["layer2"] is False
    assert not any(n.startswith("layer1") or n in ("conv1", "relu") for n in called)


def test_trainable_flag_and_nothing_recompiled_on_freeze():
    m = tiny_resnet()
    x, y = data()
    step(m, x, y)
    objects = [id(l) for _, l in m.named_layers()]
    m["layer1"].trainable = False
    m.freeze("conv1")
    assert not m["layer1"].trainable and all(not l.trainable for _, l in m["layer1"].leaves())
    assert m.lowest_trainable_index() == m.index("layer2")
    step(m, x, y)
    assert [id(l) for _, l in m.named_layers()] == objects


def test_summary_recurses_and_counts():
    m = tiny_resnet()
    m.freeze("layer1")
    text = m.summary(print_fn=None)
    assert "layer2.0.downsample.0 (Conv2D)" in text and "(None, 6, 4, 4)" in text
    assert "layer1 (Sequential)" in text and "layer2.0 (Residual)" in text
    t, n = m.count_parameters()
    assert f"Non-trainable params: {n:,}" in text and n == m["layer1"].parameter_count()
    short = m.summary(print_fn=None, depth=1)
    assert "layer1.0" not in short and "layer2 (Sequential)" in short


def test_nested_checkpoint_round_trip(tmp_path):
    m = tiny_resnet(seed=3)
    x, y = data()
    step(m, x, y)
    m.freeze("layer1.0")
    path = nio.save(m, tmp_path / "tiny.npz")
    back = nio.load(path)
    assert [p.name for p in back.parameters()] == [p.name for p in m.parameters()]
    for a, b in zip(back.parameters(), m.parameters()):
        assert np.array_equal(a.value, b.value), a.name
    assert [l.trainable for _, l in back.leaves()] == [l.trainable for _, l in m.leaves()]
    assert isinstance(back["layer2.0"], Residual) and back["layer2.1"].shortcut is None
    np.testing.assert_array_equal(back.forward(x), m.forward(x))
    assert back.summary(print_fn=None) == m.summary(print_fn=None)


def test_partial_load_by_dotted_name_and_one_error_for_every_mismatch(tmp_path):
    src = tiny_resnet(seed=1)
    path = nio.save(src, tmp_path / "src.npz")
    dst = tiny_resnet(seed=2, classes=5)
    before = {p.name: p.value.copy() for p in dst.parameters()}
    assert nio.load_weights(dst, path, layers=["layer1", "layer2.0.conv1"]) == ["layer1", "layer2.0.conv1"]
    for p in dst.parameters():
        if p.name.startswith("layer1.") or p.name.startswith("layer2.0.conv1."):
            assert np.array_equal(p.value, src[p.name.rsplit(".", 1)[0]].params[p.key]), p.name
        else:
            assert np.array_equal(p.value, before[p.name]), p.name
    # a different architecture: every mismatch in one error, nothing modified
    other = Sequential([Conv2D(4, 3, padding=1, name="conv1"), ReLU(name="relu"),
                        Sequential([block(4, 4, 1, "0"), block(4, 8, 2, "1")], name="layer1"),
                        Flatten(name="flatten"), Dense(3, name="fc")], input_shape=(2, 8, 8))
    snap = {p.name: p.value.copy() for p in other.parameters()}
    with pytest.raises(CheckpointError) as exc:
        nio.load_weights(other, path)
    msg = str(exc.value)
    assert "nothing was modified" in msg
    assert "layer1.1.conv1.w: checkpoint (4, 4, 3, 3) vs model (8, 4, 3, 3)" in msg
    assert "layer1.1.conv2.w: checkpoint (4, 4, 3, 3) vs model (8, 8, 3, 3)" in msg
    assert "layer1.1.downsample.0: only in the model" in msg
    assert "fc.w: checkpoint (96, 3) vs model (128, 3)" in msg
    for p in other.parameters():
        assert np.array_equal(p.value, snap[p.name]), p.name


def test_readme_pretrained_bases_example_runs():
    import pathlib
    import re

    text = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "resnet18" in b)
    scope = {}
    exec(compile(block, "README.md", "exec"), scope)
    model = scope["model"]
    assert not model["layer3.0.conv1"].trainable and model["layer3.1.conv1"].trainable
    assert model["layer4"].trainable and model.output_shape() == (5,)


@pytest.mark.parametrize("frozen", [False, True])
def test_basic_block_with_batchnorm_gradcheck(frozen):
    """ResNet's basic block (BatchNorm in training mode, projection shortcut): every gradient
    by central differences; frozen, its BatchNorms are affine maps and dx still flows."""
    from nptl.models import basic_block

    model = Sequential([basic_block(4, 2, 3, name="b")], input_shape=(3, 6, 6), name="m")
    if frozen:
        model.freeze("b.bn1", "b.downsample")
    x = np.random.default_rng(8).standard_normal((3, 3, 6, 6))
    report = nptl.gradcheck(model, x)
    expected = {"input", "b.conv1.w", "b.conv2.w", "b.bn2.w", "b.bn2.b"}
    if not frozen:
        expected |= {"b.bn1.w", "b.bn1.b", "b.downsample.0.w", "b.downsample.1.w", "b.downsample.1.b"}
    assert set(report.errors) == expected
    report.assert_ok(1e-6)
