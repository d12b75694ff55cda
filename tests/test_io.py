"""Checkpoints: bit-exact round trips, partial loading, every bad-file case, atomic saves."""
import json
import os
import signal
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

import nptl
import nptl.io as nio
from nptl import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from nptl.io import CheckpointError
from nptl.models import SEED_CNN_BASE, seed_cnn


def small_cnn(seed=0, dtype=np.float32):
    return nptl.Sequential([Conv2D(4, 3, name="c1"), ReLU(), MaxPool2D(2), Conv2D(6, 3, padding=1, name="c2"),
                            ReLU(), Flatten(), Dense(8, name="d1"), ReLU(), Dense(3, name="out")],
                           input_shape=(2, 10, 10), seed=seed, dtype=dtype)


def params_of(model):
    return {p.name: p.value.copy() for p in model.parameters()}


def assert_same_params(model, expected):
    got = {p.name: p.value for p in model.parameters()}
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, name
        assert np.array_equal(got[name], value), name


def rewrite(src, dst, header=None, drop=(), add=None):
    """Copy the entries of checkpoint ``src`` into a new npz ``dst``, editing the JSON header
    with ``header(meta)``, dropping entries and adding/replacing arrays (raw np.savez)."""
    with np.load(src, allow_pickle=False) as f:
        entries = {k: f[k] for k in f.files if k not in drop}
    if header is not None:
        meta = json.loads(entries[nio.HEADER_KEY].tobytes().decode())
        header(meta)
        entries[nio.HEADER_KEY] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    entries.update(add or {})
    np.savez(dst, **entries)
    return dst


@pytest.fixture
def ckpt(tmp_path):
    """A saved small_cnn (c1 frozen) and its parameters."""
    model = small_cnn(seed=7)
    model.freeze("c1")
    path = nio.save(model, tmp_path / "model.npz")
    return path, params_of(model)


# -- round trip ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_exact(tmp_path, dtype):
    model = small_cnn(seed=3, dtype=dtype)
    rng = np.random.default_rng(0)
    for p in model.parameters():  # non-trivial biases too
        p.value[...] = rng.standard_normal(p.value.shape)
    model.freeze("c1", "d1")
    path = nio.save(model, tmp_path / "m.npz")
    loaded = nio.load(path)
    assert type(loaded) is nptl.Sequential
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert [l.config() for l in loaded.layers] == [l.config() for l in model.layers]
    assert [l.trainable for l in loaded.layers] == [l.trainable for l in model.layers]
    assert (loaded.name, loaded.input_shape, loaded.dtype, loaded.seed) == (model.name, (2, 10, 10), np.dtype(dtype), 3)
    assert_same_params(loaded, params_of(model))
    for layer in loaded.layers:
        assert all(g.shape == v.shape and g.dtype == v.dtype and not g.any()
                   for g, v in zip(layer.grads.values(), layer.params.values()))
    x = rng.standard_normal((4, 2, 10, 10)).astype(dtype)
    assert np.array_equal(loaded.forward(x), model.forward(x))


def test_seed_cnn_round_trip_with_extra_metadata_and_arrays(tmp_path):
    model = seed_cnn(num_classes=5, seed=1)
    model.freeze(up_to="flatten")
    optim_state = {f"optim/{p.name}/velocity": np.full(p.value.shape, 0.5, p.value.dtype) for p in model.parameters()}
    optim_state["optim/step"] = np.array(12)
    extra = {"classes": ["a", "b", "c", "d", "e"], "history": {"loss": [np.float32(2.5), 1.25]},
             "epoch": np.int64(3), "shape": (1, 2)}
    path = nio.save(model, tmp_path / "seed", extra=extra, extra_arrays=optim_state)
    assert path == tmp_path / "seed.npz" and path.exists()
    ck = nio.load_checkpoint(tmp_path / "seed")  # suffix-less path finds seed.npz
    assert ck.path == path
    assert ck.extra == {"classes": ["a", "b", "c", "d", "e"], "history": {"loss": [2.5, 1.25]}, "epoch": 3,
                        "shape": [1, 2]}
    assert list(ck.extra_arrays) == list(optim_state)
    for k, v in optim_state.items():
        assert ck.extra_arrays[k].dtype == v.dtype and np.array_equal(ck.extra_arrays[k], v)
    assert_same_params(ck.model, params_of(model))
    assert [l.trainable for l in ck.model.layers] == [False] * 9 + [True] * 3
    assert ck.metadata["format"] == nio.FORMAT_NAME and ck.metadata["format_version"] == nio.FORMAT_VERSION


def test_compressed_round_trip(tmp_path):
    model = seed_cnn(seed=2)
    plain = nio.save(model, tmp_path / "plain.npz")
    small = nio.save(model, tmp_path / "small.npz", compress=True)
    assert small.stat().st_size < plain.stat().st_size
    assert_same_params(nio.load(small), params_of(model))


def test_file_is_a_plain_npz_without_pickles(ckpt):
    path, params = ckpt
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == sorted([nio.HEADER_KEY + ".npy"] + [k + ".npy" for k in params])
    with np.load(path, allow_pickle=False) as f:
        entries = {k: f[k] for k in f.files}
    assert all(a.dtype != object for a in entries.values())
    header = entries.pop(nio.HEADER_KEY)
    assert header.dtype == np.uint8 and header.ndim == 1
    meta = json.loads(header.tobytes().decode("utf-8"))
    assert meta["format"] == "nptl.checkpoint" and meta["format_version"] == 1
    assert (meta["name"], meta["input_shape"], meta["dtype"], meta["seed"]) == ("sequential", [2, 10, 10], "float32", 7)
    assert meta["layers"][0] == {"type": "Conv2D", "trainable": False, "params": {"w": [4, 2, 3, 3], "b": [4]},
                                 "config": {"name": "c1", "filters": 4, "kernel_size": [3, 3], "stride": 1,
                                            "padding": 0, "use_bias": True, "kernel_init": "glorot_uniform"}}
    assert meta["layers"][1] == {"type": "ReLU", "config": {"name": "relu1"}, "trainable": True, "params": {}}
    for k, v in params.items():
        assert np.array_equal(entries[k], v)


def test_read_metadata_does_not_build_the_model(ckpt, monkeypatch):
    path, _ = ckpt
    monkeypatch.setattr(nio, "Sequential", None)  # building would fail
    meta = nio.read_metadata(path)
    assert [l["config"]["name"] for l in meta["layers"]] == ["c1", "relu1", "pool1", "c2", "relu2", "flatten1",
                                                              "d1", "relu3", "out"]
    assert meta["layers"][-1]["params"] == {"w": [8, 3], "b": [3]}
    assert meta["extra"] is None and meta["extra_arrays"] == []


def test_save_rejects_bad_input_before_touching_the_file(ckpt, tmp_path):
    path, params = ckpt
    model = small_cnn(seed=1)
    with pytest.raises(TypeError, match="not JSON serialisable"):
        nio.save(model, path, extra={"f": object()})
    with pytest.raises(TypeError, match=r"extra_arrays\['bad'\] has dtype object"):
        nio.save(model, path, extra_arrays={"bad": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="collides with a parameter"):
        nio.save(model, path, extra_arrays={"c1.w": np.zeros(1)})
    with pytest.raises(ValueError, match="not built"):
        nio.save(nptl.Sequential([ReLU()]), path)
    assert_same_params(nio.load(path), params)
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


# -- partial loading -------------------------------------------------------------------------------
def test_partial_load_of_pretrained_base_into_new_head(tmp_path):
    pretrained = seed_cnn(num_classes=5, seed=11)
    rng = np.random.default_rng(0)  # "pretrain": a few SGD steps so every parameter moves off its init
    x, y = rng.standard_normal((8, 1, 28, 28)).astype(np.float32), rng.integers(0, 5, 8)
    opt = nptl.optim.SGD(pretrained, lr=0.1)
    for _ in range(2):
        pretrained.zero_grad()
        pretrained.backward(nptl.ops.cross_entropy(pretrained.forward(x, training=True), y)[1])
        opt.step()
    path = nio.save(pretrained, tmp_path / "base.npz")
    model = seed_cnn(num_classes=3, seed=22)
    before = params_of(model)
    loaded = nio.load_weights(model, path, layers=SEED_CNN_BASE)
    assert loaded == list(SEED_CNN_BASE)
    src = params_of(pretrained)
    for name, value in params_of(model).items():
        if name.split(".")[0] in SEED_CNN_BASE:
            assert np.array_equal(value, src[name]), name
            assert not np.array_equal(value, before[name]), name
        else:  # dense1, dense2: the head keeps its own initialisation
            assert np.array_equal(value, before[name]), name


def test_mismatch_lists_every_layer_and_modifies_nothing(tmp_path):
    path = nio.save(seed_cnn(num_classes=10, seed=1), tmp_path / "c.npz")
    model = seed_cnn(num_classes=5, hidden=32, seed=2)
    before = params_of(model)
    with pytest.raises(CheckpointError) as exc:
        nio.load_weights(model, path)  # every shared layer: conv base matches, the head does not
    msg = str(exc.value)
    assert str(path) in msg and "nothing was modified" in msg and "4 mismatch" in msg
    for line in ("dense1.w: checkpoint (576, 64) vs model (576, 32)", "dense1.b: checkpoint (64,) vs model (32,)",
                 "dense2.w: checkpoint (64, 10) vs model (32, 5)", "dense2.b: checkpoint (10,) vs model (5,)"):
        assert line in msg
    assert "conv" not in msg
    assert_same_params(model, before)  # not even the matching conv layers were copied


def test_load_weights_default_strict_and_casting(tmp_path):
    src = small_cnn(seed=5, dtype=np.float64)
    path = nio.save(src, tmp_path / "c.npz")
    model = small_cnn(seed=6, dtype=np.float32)
    ids = {p.name: id(p.value) for p in model.parameters()}
    assert nio.load_weights(model, path) == [l.name for l in model.layers]
    for p, q in zip(model.parameters(), src.parameters()):
        assert p.value.dtype == np.float32 and id(p.value) == ids[p.name]  # copied in place
        assert np.array_equal(p.value, q.value.astype(np.float32))

    with pytest.raises(CheckpointError, match=r"not in the checkpoint: \['nope'\].*not in the model: \['nope'\]"):
        nio.load_weights(model, path, layers=["c1", "nope"])
    assert nio.load_weights(small_cnn(), path, layers=["c1", "nope"], strict=False) == ["c1"]
    assert nio.load_weights(small_cnn(), path, layers="out") == ["out"]

    other = nptl.Sequential([Conv2D(4, 3, name="c1"), ReLU(), Flatten(), Dense(3, name="c2")],
                            input_shape=(2, 10, 10))
    with pytest.raises(CheckpointError) as exc:
        nio.load_weights(other, path, layers=["c1", "c2"])
    msg = str(exc.value)
    assert "c2: checkpoint Conv2D vs model Dense" in msg
    assert "c2.w: checkpoint (6, 4, 3, 3) vs model (256, 3)" in msg and "c2.b: checkpoint (6,) vs model (3,)" in msg

    nobias = nptl.Sequential([Flatten(), Dense(3, use_bias=False, name="out")], input_shape=(8,))
    with pytest.raises(CheckpointError, match=r"out\.b: checkpoint \(3,\) vs model absent"):
        nio.load_weights(nobias, path, layers=["out"])


# -- bad files -------------------------------------------------------------------------------------
def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"no such file \(neither '.*nothere' nor '.*nothere\.npz' exists\)"):
        nio.load(tmp_path / "nothere")
    with pytest.raises(CheckpointError, match="no such file"):
        nio.read_metadata(tmp_path / "nothere.npz")
    with pytest.raises(CheckpointError, match="is a directory"):
        nio.load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"PK", b"garbage bytes, not a zip" * 10, b"PK\x03\x04" + bytes(100)],
                         ids=["empty", "zip-magic-only", "garbage", "zip-header-zeros"])
def test_garbage_files(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    for fn in (nio.load, nio.read_metadata, lambda p: nio.load_weights(small_cnn(), p)):
        with pytest.raises(CheckpointError, match=rf"checkpoint '{path}': not a readable \.npz archive"):
            fn(path)


def test_single_npy_file(tmp_path):
    path = tmp_path / "arr.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(CheckpointError, match=r"expected an \.npz archive.*single \.npy array of shape \(3,\)"):
        nio.load(path)


def test_truncated_files_never_load(ckpt, tmp_path):
    path, params = ckpt
    data = path.read_bytes()
    bad = tmp_path / "trunc.npz"
    cuts = sorted(set(list(range(0, 64)) + list(range(0, len(data), max(1, len(data) // 150))) +
                      [len(data) - k for k in range(1, 64)]))
    for n in cuts:
        bad.write_bytes(data[:n])
        with pytest.raises(CheckpointError, match=str(bad)):
            nio.load(bad)


@pytest.mark.parametrize("compress", [False, True], ids=["stored", "deflated"])
def test_corrupted_bytes_are_detected_or_harmless(tmp_path, compress):
    """Flip bits anywhere (data, local headers, central directory): loading either raises
    CheckpointError or returns exactly the saved weights -- never wrong weights, never another
    exception."""
    model = small_cnn(seed=7)
    path = nio.save(model, tmp_path / "model.npz", compress=compress)
    params = params_of(model)
    data = path.read_bytes()
    bad = tmp_path / "flip.npz"
    rng = np.random.default_rng(0)
    positions = list(rng.integers(0, len(data), 150)) + list(range(0, 120)) + list(range(len(data) - 200, len(data)))
    errors = 0
    for pos in positions:
        b = bytearray(data)
        b[int(pos)] ^= 1 << int(rng.integers(8))
        bad.write_bytes(bytes(b))
        try:
            model = nio.load(bad)
        except CheckpointError:
            errors += 1
            continue
        assert_same_params(model, params)
    assert errors > len(positions) // 2


def test_npz_without_architecture(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.zeros(3), b=np.zeros(2))
    for fn in (nio.load, nio.read_metadata):
        with pytest.raises(CheckpointError, match=rf"'{path}': missing the architecture entry '__nptl__'.*\['b', 'w'\]"):
            fn(path)


class _Evil:
    marker = None

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_objects_are_never_loaded(ckpt, tmp_path):
    path, _ = ckpt
    _Evil.marker = str(tmp_path / "PWNED")
    evil = np.array([_Evil()], dtype=object)
    # an object array among valid entries, and listed in the header as an extra array
    bad = rewrite(path, tmp_path / "evil.npz", header=lambda m: m["extra_arrays"].append("evil"), add={"evil": evil})
    for fn in (nio.load, lambda p: nio.load_weights(small_cnn(), p)):
        with pytest.raises(CheckpointError, match=rf"'{bad}': entry 'evil' is unreadable.*pickled/object array"):
            fn(bad)
    # the header itself replaced by a pickle
    bad2 = rewrite(path, tmp_path / "evil2.npz", add={nio.HEADER_KEY: evil})
    with pytest.raises(CheckpointError, match=rf"'{bad2}': entry '__nptl__' is unreadable"):
        nio.read_metadata(bad2)
    # a whole-file pickle
    bad3 = tmp_path / "evil3.npz"
    import pickle
    bad3.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError, match=rf"'{bad3}': not a readable"):
        nio.load(bad3)
    assert not os.path.exists(_Evil.marker)


@pytest.mark.parametrize("edit, pattern", [
    (lambda m: m.update(format="keras.h5"), r"wrong format: expected format 'nptl.checkpoint', found 'keras.h5'"),
    (lambda m: m.pop("format"), r"wrong format: expected format 'nptl.checkpoint', found None"),
    (lambda m: m.update(format_version=2), r"format_version 2 is newer than the newest supported \(1\)"),
    (lambda m: m.update(format_version="1"), r"format_version: expected a positive integer, found '1'"),
    (lambda m: m.update(dtype="int8"), r"dtype: expected one of \('float32', 'float64'\), found 'int8'"),
    (lambda m: m.update(input_shape=[2, -1, 10]), r"input_shape: expected a list of positive integers"),
    (lambda m: m["layers"][1].update(type="EvilLayer"), r"unknown layer type 'EvilLayer'; known types: \['AdaptiveAvgPool2D', 'AvgPool2D'"),
    (lambda m: m["layers"][0]["config"].update(bogus=1), r"cannot construct Conv2D.*unexpected keyword argument 'bogus'"),
    (lambda m: m["layers"][0].update(trainable="no"), r"layers\[0\].trainable: expected true or false"),
    (lambda m: m["layers"][2]["config"].update(name="c1"), r"layer names must be unique, repeated: \['c1'\]"),
    (lambda m: m.update(input_shape=[2, 3, 3]), r"cannot build the architecture for input_shape \(2, 3, 3\)"),
])
def test_bad_headers(ckpt, tmp_path, edit, pattern):
    path, _ = ckpt
    bad = rewrite(path, tmp_path / "bad.npz", header=edit)
    with pytest.raises(CheckpointError, match=rf"checkpoint '{bad}': .*{pattern}"):
        nio.load(bad)


def test_newer_version_rejected_by_every_reader(ckpt, tmp_path):
    path, _ = ckpt
    bad = rewrite(path, tmp_path / "v99.npz", header=lambda m: m.update(format_version=99, nptl_version="9.0"))
    for fn in (nio.load, nio.read_metadata, lambda p: nio.load_weights(small_cnn(), p)):
        with pytest.raises(CheckpointError, match=r"format_version 99 is newer.*nptl 9\.0 -- upgrade nptl"):
            fn(bad)


def test_header_that_is_not_json(ckpt, tmp_path):
    path, _ = ckpt
    bad = rewrite(path, tmp_path / "h.npz", add={nio.HEADER_KEY: np.frombuffer(b"{not json", np.uint8)})
    with pytest.raises(CheckpointError, match="header entry '__nptl__' is not valid UTF-8 JSON"):
        nio.load(bad)
    bad = rewrite(path, tmp_path / "h2.npz", add={nio.HEADER_KEY: np.zeros((2, 2))})
    with pytest.raises(CheckpointError, match="expected a 1-D uint8 array of UTF-8 JSON, found dtype float64"):
        nio.load(bad)


def test_missing_extra_and_mismatched_parameter_arrays(ckpt, tmp_path):
    path, params = ckpt
    bad = rewrite(path, tmp_path / "missing.npz", drop=["c2.w", "out.b"])
    with pytest.raises(CheckpointError) as exc:
        nio.load(bad)
    msg = str(exc.value)
    assert str(bad) in msg and "c2.w: expected a float32 array of shape (6, 4, 3, 3), found no such entry" in msg
    assert "out.b: expected a float32 array of shape (3,), found no such entry" in msg

    bad = rewrite(path, tmp_path / "extra.npz", add={"stray.w": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match=r"unexpected entries not listed in the header: \['stray.w'\]"):
        nio.load(bad)

    bad = rewrite(path, tmp_path / "shape.npz", add={"d1.w": np.zeros((100, 7), np.float32),
                                                     "d1.b": params["d1.b"].astype(np.float64)})
    with pytest.raises(CheckpointError) as exc:
        nio.load(bad)
    msg = str(exc.value)
    assert "d1.w: expected float32 (96, 8), found float32 (100, 7)" in msg
    assert "d1.b: expected float32 (8,), found float64 (8,)" in msg

    # header and arrays agree with each other but not with what the architecture builds
    bad = rewrite(path, tmp_path / "arch.npz", header=lambda m: m["layers"][-1]["params"].update(w=[8, 4]),
                  add={"out.w": np.zeros((8, 4), np.float32)})
    with pytest.raises(CheckpointError, match=r"out\.w: the architecture needs shape \(8, 3\), found \(8, 4\)"):
        nio.load(bad)
    bad = rewrite(path, tmp_path / "arch2.npz", header=lambda m: m["layers"][-1]["params"].pop("b"), drop=["out.b"])
    with pytest.raises(CheckpointError, match=r"out\.b: the architecture needs float32 \(3,\), found no such entry"):
        nio.load(bad)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


# -- atomicity -------------------------------------------------------------------------------------
@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()], ids=["oserror", "interrupt"])
def test_crash_during_write_keeps_previous_checkpoint(ckpt, tmp_path, monkeypatch, exc):
    path, params = ckpt
    real = np.lib.format.write_array
    calls = []

    def failing(fp, array, *a, **k):
        calls.append(1)
        if len(calls) == 4:  # a few entries already written to the temporary file
            fp.write(b"half an array")
            raise exc
        return real(fp, array, *a, **k)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(type(exc)):
        nio.save(small_cnn(seed=99), path)
    assert len(calls) == 4
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]  # no temp file left behind
    assert_same_params(nio.load(path), params)


def test_crash_before_rename_keeps_previous_checkpoint(ckpt, tmp_path, monkeypatch):
    path, params = ckpt

    def failing_replace(src, dst):
        assert os.path.getsize(src) > 1000  # the new archive was fully written
        raise OSError("rename failed")

    monkeypatch.setattr(nio.os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        nio.save(small_cnn(seed=99), path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert_same_params(nio.load(path), params)


def test_save_replaces_and_keeps_permissions(ckpt, tmp_path):
    path, _ = ckpt
    os.chmod(path, 0o640)
    new = small_cnn(seed=123)
    assert nio.save(new, path) == path
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert_same_params(nio.load(path), params_of(new))
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    fresh = nio.save(new, tmp_path / "fresh.npz")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(fresh).st_mode & 0o777 == 0o666 & ~umask


_KILLED_SAVE = r"""
import io, sys, time
import numpy as np
import nptl.io
from nptl.models import seed_cnn

real = np.lib.format.write_array
calls = []

def partial_then_hang(fp, array, *a, **k):
    calls.append(1)
    if len(calls) < 8:          # header + conv1..conv3 (w, b) written in full
        return real(fp, array, *a, **k)
    buf = io.BytesIO()          # dense1.w (~2.4 MB): write half of it, then hang
    real(buf, array, *a, **k)
    fp.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    print("WRITING", flush=True)
    time.sleep(120)

np.lib.format.write_array = partial_then_hang
nptl.io.save(seed_cnn(hidden=1024, seed=5), sys.argv[1])
print("FINISHED", flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_save_keeps_previous_checkpoint(tmp_path):
    previous = seed_cnn(hidden=1024, seed=4)
    path = nio.save(previous, tmp_path / "ck.npz")
    expected = params_of(previous)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_SAVE, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        line = proc.stdout.readline()
        assert line.strip() == "WRITING", proc.stderr.read()
        temps = [p for p in tmp_path.iterdir() if p.name != "ck.npz"]
        assert len(temps) == 1 and temps[0].name.startswith(".ck.npz.") and temps[0].name.endswith(".tmp")
        assert temps[0].stat().st_size > 1_000_000  # killed in the middle of writing the new file
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert_same_params(nio.load(path), expected)  # still the previous checkpoint, bit-exact
    with pytest.raises(CheckpointError):  # the partial temp file (a killed process cannot clean up)
        nio.load(temps[0])


# -- buffers (BatchNorm running statistics) --------------------------------------------------------
def bn_model(seed=0, dtype=np.float32):
    return nptl.Sequential([Conv2D(4, 3, use_bias=False, name="c1"), nptl.BatchNorm2D(name="bn1"), ReLU(),
                            Flatten(), Dense(5, name="d1"), nptl.BatchNorm1D(momentum=None, name="bn2"),
                            Dense(3, name="out")], input_shape=(2, 6, 6), seed=seed, dtype=dtype)


def buffers_of(model):
    return {f"{l.name}.{k}": v.copy() for l in model.layers for k, v in l.buffers.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_keeps_running_statistics(tmp_path, dtype):
    model = bn_model(dtype=dtype)
    x = np.random.default_rng(0).standard_normal((6, 2, 6, 6)).astype(dtype)
    for _ in range(2):                                   # move the running statistics off their init
        model.forward(x, training=True)
    model.freeze("bn1")
    loaded = nio.load(nio.save(model, tmp_path / "bn.npz"))
    assert_same_params(loaded, params_of(model))
    want, got = buffers_of(model), buffers_of(loaded)
    assert list(got) == ["bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
                         "bn2.running_mean", "bn2.running_var", "bn2.num_batches_tracked"]
    for name, value in want.items():
        assert got[name].dtype == value.dtype and np.array_equal(got[name], value), name
    assert int(got["bn2.num_batches_tracked"]) == 2 and loaded["bn2"].momentum is None
    assert not loaded["bn1"].trainable
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    meta = nio.read_metadata(tmp_path / "bn.npz")
    assert meta["layers"][1]["buffers"] == {"running_mean": [4], "running_var": [4], "num_batches_tracked": []}


def test_load_weights_copies_buffers_and_reports_their_mismatches(tmp_path):
    src = bn_model(seed=1)
    src.forward(np.random.default_rng(0).standard_normal((6, 2, 6, 6)), training=True)
    path = nio.save(src, tmp_path / "bn.npz")
    dst = bn_model(seed=2)
    assert nio.load_weights(dst, path, layers=["c1", "bn1"]) == ["c1", "bn1"]
    for key, value in src["bn1"].buffers.items():
        np.testing.assert_array_equal(dst["bn1"].buffers[key], value)
    assert dst["bn2"].buffers["num_batches_tracked"] == 0             # not selected: untouched
    other = nptl.Sequential([Conv2D(4, 3, use_bias=False, name="c1"), nptl.BatchNorm2D(name="bn1")],
                            input_shape=(2, 6, 6))
    path2 = nio.save(other, tmp_path / "other.npz")
    wider = nptl.Sequential([Conv2D(5, 3, use_bias=False, name="c1"), nptl.BatchNorm2D(name="bn1")],
                            input_shape=(2, 6, 6))
    before = buffers_of(wider)
    with pytest.raises(CheckpointError) as exc:
        nio.load_weights(wider, path2)
    assert "bn1.running_mean: checkpoint (4,) vs model (5,)" in str(exc.value)
    for name, value in before.items():
        np.testing.assert_array_equal(buffers_of(wider)[name], value)


def test_missing_or_mismatched_buffers_are_reported(tmp_path):
    path = nio.save(bn_model(), tmp_path / "bn.npz")
    bad = rewrite(path, tmp_path / "missing.npz", drop=["bn1.running_var"])
    with pytest.raises(CheckpointError, match=r"bn1\.running_var: expected a buffer of shape \(4,\), found no such entry"):
        nio.load(bad)
    bad = rewrite(path, tmp_path / "dtype.npz", add={"bn1.num_batches_tracked": np.zeros((), np.float32)})
    with pytest.raises(CheckpointError, match=r"bn1\.num_batches_tracked: the architecture needs dtype int64, found float32"):
        nio.load(bad)
    bad = rewrite(path, tmp_path / "nobuf.npz", header=lambda m: m["layers"][1].pop("buffers"),
                  drop=["bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"])
    with pytest.raises(CheckpointError, match=r"bn1\.running_mean: the architecture needs float32 \(4,\), found no such entry"):
        nio.load(bad)


def test_layers_without_buffers_have_no_buffers_entry(ckpt):
    """Layers without state are written as before buffers existed: files of models without
    BatchNorm are unchanged, and older files load."""
    path, params = ckpt
    assert all("buffers" not in e for e in nio.read_metadata(path)["layers"])
    assert_same_params(nio.load(path), params)
