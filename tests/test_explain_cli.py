"""``nptl explain``: every op from the command line, the three formats, users' .npy inputs, the
model walk, and bad input (one line, exit code 2, no traceback)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from nptl import explain, io, ops
from nptl.cli import main
from nptl.models import seed_cnn
from tests.data.conftest import idx_bytes


@pytest.mark.parametrize("op", sorted(explain.EXPLAINERS))
def test_every_op_forward_and_backward_in_json(op, capsys):
    argv = ["explain", op, "--format", "json"] + ([] if op == "conv2d_true" else ["--backward"])
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    traces = out["traces"]
    want = 1 + (0 if op == "conv2d_true" else len(explain.EXPLAINERS[op].backward_targets))
    assert len(traces) == want and all(t["matches"] for t in traces)
    for t in traces:  # small integer inputs: every term is an exact product of integers
        assert all(float(v).is_integer() for v in np.ravel(list(out["inputs"].values())[0]))
        assert t["terms"] or t["combine"] == "sum"


def test_issue_example(capsys):
    assert main(["explain", "conv2d", "--shape", "1,1,4,4", "--kernel", "3", "--stride", "1", "--padding", "1",
                 "--at", "0,0,1,2", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "(C1) y[n,f,i,j] = b[f] + Σ_c Σ_p Σ_q xp[n,c,i·s+p,j·s+q]·w[f,c,p,q]" in out
    assert "y[0,0,1,2] = b[0] + x[0,0,0,1]·w[0,0,0,0] + x[0,0,0,2]·w[0,0,0,1]" in out
    assert "fast kernel nptl.ops.conv2d: y[0,0,1,2] = " in out and "-- matches" in out
    assert out.count("  x[0,0] =") == 1 and "output:" in out


def test_backward_text_and_markdown(capsys):
    assert main(["explain", "conv2d", "--padding", "1", "--backward", "--dx-at", "0,0,0,0", "--dw-at", "0,0,0,0",
                 "--db-at", "0"]) == 0
    out = capsys.readouterr().out
    for target in ("dx[0,0,0,0] = dy[", "dw[0,0,0,0] = dy[", "db[0] = dy["):
        assert target in out
    assert "read the zero padding" in out and "dy  shape (1, 1, 4, 4)" in out
    assert "DIFFERS" not in out
    assert main(["explain", "max_pool2d", "--backward", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "### max_pool2d: `y[0,0,1,1]`" in out and "winner: x[0,0," in out and "window y[0,0," in out


def test_user_arrays_from_npy(tmp_path, capsys):
    x = np.arange(12.0).reshape(1, 1, 3, 4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", np.ones((2, 1, 2, 2)))
    assert main(["explain", "conv2d", "--input", str(tmp_path / "x.npy"), "--input", f"w={tmp_path / 'w.npy'}",
                 "--at", "0,1,0,0", "--format", "json"]) == 0
    t = json.loads(capsys.readouterr().out)["traces"][0]
    assert t["target"] == "y[0,1,0,0]" and t["matches"]
    assert t["total"] == t["terms"][0]["value"] + 0 + 1 + 4 + 5   # bias + x[0,0,0:2,0:2]·1


@pytest.mark.parametrize("argv, message", [
    (["explain", "conv2d", "--at", "0,0,5,2"], "--at 0,0,5,2 is outside the output y of shape (1, 1, 2, 2)"),
    (["explain", "conv2d", "--backward", "--dw-at", "0,0,3,0"], "--dw-at 0,0,3,0 is outside dw"),
    (["explain", "avg_pool2d", "--backward", "--dx-at", "0,0,4,0"], "--dx-at 0,0,4,0 is outside dx"),
    (["explain", "conv2d", "--at", "0,0,1"], "--at 0,0,1 must be 4 integer indices"),
    (["explain", "convolution"], "unknown op 'convolution'; ops: conv2d, conv2d_true"),
    (["explain", "conv2d", "--shape", "1,1,2,2", "--kernel", "3"], "kernel 3x3 is larger than the padded input"),
    (["explain", "max_pool2d", "--shape", "1,1,4,4", "--kernel", "5"], "pool size 5 is larger than the input 4x4"),
    (["explain", "relu", "--shape", "2,0"], "--shape 2,0: every size must be >= 1"),
    (["explain", "mse", "--at", "0,0"], "mse gives the scalar loss L: --at does not apply"),
    (["explain", "conv2d_true", "--backward"], "conv2d_true has no backward trace"),
    (["explain", "relu", "--input", "y=nope.npy"], "this op's inputs are x, dy, not 'y'"),
    (["explain", "relu", "--input", "missing.npy"], "--input missing.npy: cannot read"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nptl explain: error: ") and message in err and err.count("\n") == 1


def test_bad_input_from_a_real_process_has_no_traceback():
    for args in (["conv2d", "--at", "9,9,9,9"], ["nope"], ["conv2d", "--shape", "1,1,1,1", "--kernel", "2"]):
        r = subprocess.run([sys.executable, "-m", "nptl", "explain", *args], capture_output=True, text=True)
        assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_npy_files_are_bounded_and_never_unpickled(tmp_path, capsys):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["explain", "relu", "--input", str(tmp_path / "obj.npy")]) == 2
    assert "expected a real-valued array, found dtype object" in capsys.readouterr().err
    big = tmp_path / "big.npy"
    with open(big, "wb") as fh:  # a header that declares 10^9 elements, with no data behind it
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (1000, 1000000)})
    assert main(["explain", "relu", "--input", str(big)]) == 2
    assert "explain reads at most 100000" in capsys.readouterr().err
    (tmp_path / "text.npy").write_text("hello")
    assert main(["explain", "relu", "--input", str(tmp_path / "text.npy")]) == 2
    assert "not a .npy array file" in capsys.readouterr().err


# -- the model walk ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_idx(tmp_path_factory):
    from nptl.data import make_synthetic

    d = tmp_path_factory.mktemp("idx-explain")
    x, y = make_synthetic(n_per_class=3, seed=1)
    for stem, arr in {"train-images-idx3-ubyte": x, "train-labels-idx1-ubyte": y.astype(np.uint8),
                      "t10k-images-idx3-ubyte": x, "t10k-labels-idx1-ubyte": y.astype(np.uint8)}.items():
        (d / stem).write_bytes(idx_bytes(arr))
    return d


def test_walk_records_every_layer_and_backward_like_training():
    model = seed_cnn((1, 28, 28), 10, seed=0)
    model.freeze(up_to="pool2")
    image = np.random.default_rng(0).random((1, 28, 28)).astype(np.float32)
    w = explain.walk(model, image, label=3, backward=True)
    shape = model.input_shape
    for rec, layer in zip(w.layers, model.layers):
        shape = layer.output_shape(shape)
        assert rec.shape == shape
    logits = model.forward(image[None])
    np.testing.assert_allclose(w.probabilities, ops.softmax(logits.astype(np.float64))[0], rtol=1e-6)
    assert w.skipped == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2"]
    assert [r.status for r in w.layers[:4]] == ["frozen", "no parameters", "no parameters", "frozen"]
    assert all(not np.any(g) for layer in model.layers for g in layer.grads.values())  # left as found
    # the same backward through Sequential gives the same gradients
    loss, d = ops.cross_entropy(model.forward(image[None], training=True), np.array([3]))
    assert w.loss == pytest.approx(float(loss))
    assert w.layers[-1].grad_norm == pytest.approx(float(np.linalg.norm(d)))
    model.backward(d)
    for rec, layer in zip(w.layers, model.layers):
        if layer.computes_param_grads:
            for k, g in layer.grads.items():
                assert rec.param_grad_norms[k] == pytest.approx(float(np.linalg.norm(g)), rel=1e-5)


def test_walk_from_the_command_line(small_idx, tmp_path, capsys):
    model = seed_cnn((1, 28, 28), 10, seed=0)
    model.freeze(up_to="flatten")
    io.save(model, tmp_path / "m.npz")
    assert main(["explain", str(tmp_path / "m.npz"), "--data", str(small_idx), "--image", "4", "--backward"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:15]}
    assert rows["conv1"][:2] == ["conv1", "Conv2D"] and "(32, 26, 26)" in " ".join(rows["conv1"])
    assert rows["conv1"][-3:] == ["frozen", "skipped", "-"] and rows["dense2"][-6] == "trainable"
    assert "<- predicted" in out and "<- label" in out
    assert "skipped (nothing below them trains): conv1, relu1, pool1, conv2, relu2, pool2, conv3, relu3, flatten" in out
    assert main(["explain", str(tmp_path / "m.npz"), "--data", str(small_idx), "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["layers"]) == 12 and sum(d["probabilities"].values()) == pytest.approx(1.0)
    assert main(["explain", str(tmp_path / "m.npz"), "--data", str(small_idx), "--image", "30"]) == 2
    assert "--image 30 is outside the 30 test images" in capsys.readouterr().err


def test_walk_backward_leaves_batch_norm_and_dropout_state_as_found():
    from nptl import Sequential
    from nptl.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, ReLU

    model = Sequential([Conv2D(4, 3), BatchNorm2D(), ReLU(), Dropout(0.5), Flatten(), Dense(3)],
                       input_shape=(1, 6, 6), seed=0)
    before = [(leaf.name, leaf.state()) for _, leaf in model.leaves()]
    image = np.random.default_rng(0).random((1, 6, 6)).astype(np.float32)
    w = explain.walk(model, image, label=1, backward=True)
    assert not w.skipped and all(r.grad_norm is not None for r in w.layers)
    for (name, state), (_, leaf) in zip(before, model.leaves()):
        after = leaf.state()
        assert state.keys() == after.keys() and all(np.array_equal(state[k], after[k]) for k in state), name
    # a batch of one image with 1x1 maps has no batch statistics: one clear error, state still restored
    model = Sequential([Conv2D(2, 6), BatchNorm2D(), Flatten(), Dense(2)], input_shape=(1, 6, 6), seed=0)
    with pytest.raises(explain.ExplainError, match="training mode"):
        explain.walk(model, image, label=0, backward=True)
    assert np.array_equal(model.layers[1].buffers["running_mean"], np.zeros(2))
