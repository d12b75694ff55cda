"""Reliability: what a hostile or unlucky user meets.

- readers bound memory by what they accept (gzip bombs, overflowing headers, huge layers,
  hidden members): rejected with the project's error type naming the file, before allocating;
- non-finite values are caught where they enter ``fit``; max pooling propagates NaN as PyTorch;
- an unwritable or corrupt Numba cache never breaks a run (subprocesses);
- empty or too-small splits are refused up front with the numbers;
- stale temp files of killed saves are swept by the next save.

Sizes here are small and the caps lowered (``NPTL_MAX_ARRAY_BYTES``) so that the cases run
fast; ``python -m tests.hostile_files`` measures the full-size files.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, env: dict, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; fail the test with its output if it fails."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CACHE_DIR", "PYTHONPATH"))}
    full_env.update(env, PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env, cwd=cwd,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"subprocess failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out


# -- Numba cache ---------------------------------------------------------------------------------
TRAIN_AND_REPORT = """
    import warnings
    import numpy as np
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import nptl
        from nptl import Conv2D, Dense, Flatten, MaxPool2D, ReLU
        rng = np.random.default_rng(0)
        x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
        y = rng.integers(0, 2, 16)
        model = nptl.Sequential([Conv2D(2, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(2)],
                                input_shape=(1, 8, 8), seed=0)
        hist = nptl.fit(model, x, y, nptl.optim.SGD(model, lr=0.1), epochs=2, batch_size=8, progress=False)
    from nptl.kernels.jit import CacheWarning
    cache_warnings = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert np.all(np.isfinite(hist.history["loss"])), hist.history
    print("CACHE_WARNINGS", len(cache_warnings))
    for m in cache_warnings:
        print("WARNING", m)
"""


def _warnings_of(out) -> tuple[int, str]:
    count = int(next(l for l in out.stdout.splitlines() if l.startswith("CACHE_WARNINGS")).split()[1])
    return count, out.stdout


def test_training_works_without_a_writable_cache_location(tmp_path):
    # a private copy of the package whose __pycache__ cannot be a directory, and a cache dir,
    # HOME and XDG cache under a regular file: no location is writable (even for root)
    shutil.copytree(ROOT / "nptl", tmp_path / "pkg" / "nptl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for d in (tmp_path / "pkg" / "nptl").rglob("*"):
        if d.is_dir():
            (d / "__pycache__").write_text("not a directory")
    (tmp_path / "pkg" / "nptl" / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {"PYTHONPATH": str(tmp_path / "pkg"), "NUMBA_CACHE_DIR": str(blocker / "cache"),
           "HOME": str(blocker), "XDG_CACHE_HOME": str(blocker / "xdg")}
    out = run_python(TRAIN_AND_REPORT, env, cwd=tmp_path)
    count, text = _warnings_of(out)
    assert count == 1, text
    assert "no writable Numba cache location" in text and "NUMBA_CACHE_DIR" in text


def test_corrupt_cache_entries_are_discarded_and_rewritten(tmp_path):
    cache = tmp_path / "cache"
    env = {"PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(cache)}
    count, text = _warnings_of(run_python(TRAIN_AND_REPORT, env, cwd=tmp_path))
    assert count == 0, text
    data = sorted(cache.rglob("*.nbc"))
    index = sorted(cache.rglob("*.nbi"))
    assert data and index
    for i, f in enumerate(data):  # truncated (killed writer), or garbage
        raw = f.read_bytes()
        f.write_bytes(raw[: len(raw) // 2] if i % 2 else b"\x80\x05garbage")
    index[0].write_bytes(index[0].read_bytes()[:10])  # a truncated index too
    count, text = _warnings_of(run_python(TRAIN_AND_REPORT, env, cwd=tmp_path))
    assert count == 1, text
    assert "discarded an unreadable Numba cache entry" in text
    # the entries were written back: a third run loads them without a warning
    count, text = _warnings_of(run_python(TRAIN_AND_REPORT, env, cwd=tmp_path))
    assert count == 0, text


def test_every_kernel_compiles_through_the_guarded_cache():
    """New kernels are covered too: no module compiles with plain njit/jit, and every Numba
    dispatcher of nptl.kernels carries the guarded cache."""
    import importlib
    import pkgutil

    import numba

    import nptl.kernels
    from nptl.kernels.jit import _GuardedCache

    for path in (ROOT / "nptl").rglob("*.py"):
        if path.name != "jit.py":
            text = path.read_text()
            assert not any(f in text for f in ("@njit", "@jit", "njit(", "numba.jit(")), path
    dispatchers = 0
    for mod in pkgutil.iter_modules(nptl.kernels.__path__):
        module = importlib.import_module(f"nptl.kernels.{mod.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.__module__ == module.__name__:
                assert isinstance(obj._cache, _GuardedCache), f"{module.__name__}.{name}"
                dispatchers += 1
    assert dispatchers > 30


def test_kernel_decorator_refuses_cache_argument():
    from nptl.kernels.jit import kernel

    with pytest.raises(TypeError, match="cache"):
        kernel(cache=False)


# -- non-finite values ---------------------------------------------------------------------------
def _toy(n=48, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    x[:, :, 2:5, 2:5] += y[:, None, None, None]
    return x, y


def _model():
    import nptl
    from nptl import Conv2D, Dense, Flatten, MaxPool2D, ReLU

    return nptl.Sequential([Conv2D(3, 3, name="conv1"), ReLU(), MaxPool2D(2), Flatten(), Dense(3, name="dense1")],
                           input_shape=(1, 8, 8), seed=0)


def _params(model):
    return {p.name: p.value.copy() for p in model.parameters()}


def _same(model, expected):
    return all(np.array_equal(p.value, expected[p.name]) for p in model.parameters())


class _Recorder:
    """An optimizer wrapper recording the weights after every update."""

    def __init__(self, model, inner):
        self.model, self.inner, self.after = model, inner, []
        self.lr = inner.lr

    def step(self):
        self.inner.step()
        self.after.append(_params(self.model))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_stops_at_its_step_and_keeps_the_last_update(bad):
    import nptl
    from nptl.errors import NonFiniteError

    x, y = _toy()
    x[40, 0, 3, 3] = bad  # every epoch reaches image 40 at some step of epoch 1
    model = _model()
    opt = _Recorder(model, nptl.optim.SGD(model, lr=0.1))
    with pytest.raises(NonFiniteError, match=r"non-finite input at epoch 1, step \d+ \(input batch: ") as info:
        nptl.fit(model, x, y, opt, epochs=2, batch_size=16, progress=False)
    err = info.value
    assert (err.what, err.epoch) == ("input", 1) and err.step >= 1
    assert len(opt.after) == err.step - 1          # the failing step applied no update
    assert _same(model, opt.after[-1] if opt.after else _params(_model()))
    assert all(np.isfinite(p.value).all() for p in model.parameters())


def test_nan_from_augmentation_is_caught_after_augmenting():
    import nptl
    from nptl.errors import NonFiniteError

    class PoisonSecondBatch:
        active = True
        calls = 0

        def __call__(self, xb):
            self.calls += 1
            xb = xb.copy()
            if self.calls == 2:
                xb[0, 0, 0, 0] = np.nan
            return xb

    x, y = _toy()
    model = _model()
    with pytest.raises(NonFiniteError, match=r"input at epoch 1, step 2 \(input batch after augmentation: 1 NaN"):
        nptl.fit(model, x, y, nptl.optim.SGD(model, lr=0.1), batch_size=16, augment=PoisonSecondBatch(),
                 progress=False)


def test_huge_finite_input_stops_training_with_finite_weights():
    import nptl
    from nptl.errors import NonFiniteError

    x, y = _toy()
    x[:] = 1e30  # finite: step 1's gradients are ~1e30, its update makes step 2's logits overflow
    model = _model()
    start = _params(model)
    with pytest.raises(NonFiniteError, match=r"non-finite loss at epoch 1, step 2 .*weights restored") as info:
        nptl.fit(model, x, y, nptl.optim.SGD(model, lr=0.1), batch_size=16, progress=False)
    assert (info.value.what, info.value.step) == ("loss", 2)
    assert _same(model, start)  # step 1's update gave no finite loss: put back


def test_non_finite_gradient_names_the_parameter():
    import nptl
    from nptl.errors import NonFiniteError

    x, y = _toy()
    model = _model()
    dense = model["dense1"]
    original = dense.backward

    def backward(dy, input_grad=True):  # an overflowing gradient at the third step
        dx = original(dy, input_grad)
        backward.calls += 1
        if backward.calls == 3:
            dense.grads["b"][1] = np.inf
        return dx
    backward.calls = 0
    dense.backward = backward
    opt = _Recorder(model, nptl.optim.SGD(model, lr=0.1))
    with pytest.raises(NonFiniteError, match=r"gradient of dense1\.b at epoch 1, step 3 \(0 NaN, 1 \+Inf") as info:
        nptl.fit(model, x, y, opt, batch_size=16, progress=False)
    assert info.value.what == "gradient of dense1.b"
    assert len(opt.after) == 2 and _same(model, opt.after[-1])


def test_overflowing_update_is_undone():
    import nptl
    from nptl.errors import NonFiniteError

    class Overflow(_Recorder):  # SGD whose second update overflows one weight
        def step(self):
            super().step()
            if len(self.after) == 2:
                self.model["conv1"].params["w"][0, 0, 0, 0] = np.inf

    x, y = _toy()
    model = _model()
    opt = Overflow(model, nptl.optim.SGD(model, lr=0.1))
    with pytest.raises(NonFiniteError, match=r"conv1\.w after the update at epoch 1, step 2 \(0 NaN, 1 \+Inf"):
        nptl.fit(model, x, y, opt, batch_size=16, progress=False)
    assert _same(model, opt.after[0])


def test_non_finite_validation_and_cached_training_images_are_named():
    import nptl
    from nptl.errors import NonFiniteError

    x, y = _toy()
    model = _model()
    xv = x[:8].copy()
    xv[5, 0, 1, 1] = np.nan
    with pytest.raises(NonFiniteError, match=r"validation input: image 5 \(1 NaN"):
        nptl.fit(model, x, y, nptl.optim.SGD(model, lr=0.1), validation_data=(xv, y[:8]), progress=False)
    model.freeze("conv1")  # frozen base: its features are cached, so the raw images are checked
    x[7, 0, 0, 0] = np.inf
    with pytest.raises(NonFiniteError, match=r"training input \(checked before its features are cached\): image 7"):
        nptl.fit(model, x, y, nptl.optim.SGD(model, lr=0.1), progress=False)


def _require_torch():
    if os.environ.get("NPTL_REQUIRE_TORCH") == "1":
        import torch
        return torch
    return pytest.importorskip("torch")


def _sprinkle(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, np.nan], dtype)
    mask = rng.random(shape) < 0.3
    x[mask] = rng.choice(specials, size=int(mask.sum()))
    return x


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.strategies import pool_geometries  # noqa: E402


@given(g=pool_geometries(max_hw=9), f64=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_max_pool_propagates_nan_like_torch_in_fast_kernel_and_reference(g, f64, seed):
    torch = _require_torch()
    from nptl import ops
    from nptl.kernels import reference as ref

    dtype = np.float64 if f64 else np.float32
    rng = np.random.default_rng(seed)
    x = _sprinkle(rng, g.x_shape, dtype)
    dy = rng.integers(1, 9, size=g.y_shape).astype(dtype)  # integers: overlapping sums are exact
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, g.size, g.stride)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    for name, y, dx in (("fast", ops.max_pool2d(x, g.size, g.stride), ops.max_pool2d_backward(dy, x, g.size, g.stride)),
                        ("reference", ref.max_pool2d(x, g.size, g.stride), ref.max_pool2d_backward(dy, x, g.size, g.stride))):
        np.testing.assert_array_equal(y, ty.detach().numpy().astype(dtype), err_msg=f"{name} forward")
        np.testing.assert_array_equal(dx, tx.grad.numpy().astype(dtype), err_msg=f"{name} backward")


def test_max_pool_nan_rule_on_one_window():
    from nptl import ops
    from nptl.kernels import reference as ref

    x = np.array([[[[1.0, np.nan], [np.nan, 2.0]]]], np.float32)   # NaN wins; gradient to the last NaN
    for fwd, bwd in ((ops.max_pool2d, ops.max_pool2d_backward), (ref.max_pool2d, ref.max_pool2d_backward)):
        assert np.isnan(fwd(x, 2)).all()
        np.testing.assert_array_equal(bwd(np.ones((1, 1, 1, 1), np.float32), x, 2)[0, 0], [[0, 0], [1, 0]])


# -- empty or too-small splits ---------------------------------------------------------------------
def test_validation_split_that_rounds_to_zero_is_refused_with_the_numbers():
    from nptl.data import train_val_split

    x = np.zeros((20, 1, 4, 4), np.float32)
    y = np.repeat(np.arange(10), 2)
    with pytest.raises(ValueError, match=r"val_fraction 0\.1 gives an empty split: 20 examples in 10 classes, "
                                         r"2 to 2 per class.*at least 5 examples"):
        train_val_split(x, y, 0.1)
    xt, yt, xv, yv = train_val_split(x, y, 0.25)  # round(2 × 0.25) = 1 per class
    assert len(xv) == 10 and len(xt) == 10


def test_empty_validation_data_is_refused_before_training():
    import nptl

    x, y = _toy()
    model = _model()
    before = _params(model)
    with pytest.raises(ValueError, match="validation_data has 0 images"):
        nptl.fit(model, x, y, nptl.optim.SGD(model, lr=0.1), validation_data=(x[:0], y[:0]), progress=False)
    assert _same(model, before)


def test_image_folder_too_small_for_a_test_split(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    from nptl.data import DataError, load_image_folder_splits

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("L", (6, 6)).save(tmp_path / cls / "one.png")
    with pytest.raises(DataError, match=r"cannot hold out a test split: test_fraction 0\.2 gives an empty split: "
                                        r"2 examples in 2 classes, 1 to 1 per class"):
        load_image_folder_splits(tmp_path)


# -- hostile files: every reader bounds memory by what it accepts --------------------------------
from tests import hostile_files as hf  # noqa: E402

MiB = 1 << 20


def rejected(fn, error, *patterns, peak_mb=16):
    """Call ``fn``; it must raise ``error`` whose message matches every pattern, having
    allocated at most ``peak_mb`` MB on the way (tracemalloc sees numpy's buffers)."""
    import re
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(error) as info:
            fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for p in patterns:
        assert re.search(p, str(info.value)), (p, str(info.value))
    assert peak < peak_mb * MiB, f"rejecting took {peak / MiB:.1f} MB"
    return info.value


def test_idx_gzip_bomb_is_rejected_after_the_declared_payload(tmp_path):
    from nptl.data import DataError, read_idx

    path = hf.gzip_bomb_idx(tmp_path / "bomb.gz", (10, 28, 28), 64 * MiB)  # 64 KB on disk
    assert path.stat().st_size < MiB
    rejected(lambda: read_idx(path), DataError, str(path), r"more than 1048576 trailing bytes", peak_mb=4)


def test_idx_declaring_more_than_the_cap_is_rejected_before_reading(tmp_path, monkeypatch):
    from nptl.data import DataError, read_idx

    monkeypatch.setenv("NPTL_MAX_ARRAY_BYTES", "1M")
    path = hf.gzip_bomb_idx(tmp_path / "big.gz", (4, 1024, 1024), 4 * MiB)
    rejected(lambda: read_idx(path), DataError, str(path), r"would need 4,194,304 bytes, more than the "
             r"1,048,576-byte cap \(NPTL_MAX_ARRAY_BYTES", peak_mb=1)


@pytest.mark.parametrize("dims, nbytes", [((65536,) * 4, 2**64), ((2**32 - 1,) * 2, (2**32 - 1) ** 2),
                                          ((2**32 - 1,) * 3, (2**32 - 1) ** 3)],
                         ids=["wraps-to-0", "(2^32-1)^2", "(2^32-1)^3"])
def test_idx_dimensions_that_overflow_int64_are_sized_exactly(tmp_path, dims, nbytes):
    from nptl.data import DataError, read_idx

    path = hf.raw_idx(tmp_path / "dims.idx", dims)
    rejected(lambda: read_idx(path), DataError, str(path), rf"would need {nbytes:,} bytes", peak_mb=1)


def test_idx_within_the_cap_still_reads(tmp_path, monkeypatch):
    from nptl.data import read_idx

    monkeypatch.setenv("NPTL_MAX_ARRAY_BYTES", "1000")
    arr = np.arange(1000, dtype=np.uint8).reshape(10, 100)
    path = hf.raw_idx(tmp_path / "ok.idx", arr.shape, arr.tobytes())
    np.testing.assert_array_equal(read_idx(path), arr)


@given(magic=st.sampled_from([b"\0\0\x08", b"\0\0\x0d", b"\0\0\x07", b"\x01\0\x08"]),
       dims=st.lists(st.sampled_from([0, 1, 2, 3, 255, 65536, 2**31, 2**32 - 1]), max_size=5),
       ndim_delta=st.integers(-1, 1), tail=st.binary(max_size=64), gz=st.booleans())
def test_idx_reader_fuzz_raises_data_error_or_reads_exactly(magic, dims, ndim_delta, tail, gz):
    """Random headers and payloads: a DataError, or an array of exactly the declared shape --
    never another exception, never more than a few MB whatever the header declares."""
    import gzip
    import tempfile
    import tracemalloc

    from nptl.data import DataError, read_idx

    ndim = max(0, len(dims) + ndim_delta)
    body = b"".join(d.to_bytes(4, "big") for d in dims) + tail
    raw = magic + bytes([ndim]) + body
    saved = os.environ.get("NPTL_MAX_ARRAY_BYTES")
    os.environ["NPTL_MAX_ARRAY_BYTES"] = "1M"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz-idx"
        path.write_bytes(gzip.compress(raw) if gz else raw)
        tracemalloc.start()
        try:
            out = read_idx(path)
        except DataError as e:
            assert str(path) in str(e)
            out = None
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if saved is None:
                del os.environ["NPTL_MAX_ARRAY_BYTES"]
            else:
                os.environ["NPTL_MAX_ARRAY_BYTES"] = saved
    assert peak < 4 * MiB
    if out is not None:  # what the header declared, filled with exactly the rest of the file
        declared = tuple(int.from_bytes(body[4 * i:4 * i + 4], "big") for i in range(ndim))
        assert out.shape == declared
        assert out.astype(out.dtype.newbyteorder(">")).tobytes() == body[4 * ndim:]


def test_cifar_batch_larger_than_the_cap_is_rejected_from_its_size(tmp_path, monkeypatch):
    from nptl.data import DataError, read_cifar10_batch

    monkeypatch.setenv("NPTL_MAX_ARRAY_BYTES", "1M")
    path = hf.sparse_cifar(tmp_path / "data_batch_1.bin", 1000)  # 3 MB, sparse
    rejected(lambda: read_cifar10_batch(path), DataError, str(path), r"a batch of 1,000 records would need "
             r"3,073,000 bytes", peak_mb=1)


def test_image_bombs_are_rejected_from_the_header(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    from nptl.data import DataError, load_image_folder

    folder = hf.image_folder_bomb(tmp_path / "f", 6000)  # 36 Mpixel > the default 2**25 cap, 36 KB on disk
    bomb = folder / "b" / "bomb.png"
    rejected(lambda: load_image_folder(folder), DataError, str(bomb), r"6000×6000 = 36,000,000 pixels, more than "
             r"the 33,554,432-pixel cap \(NPTL_MAX_IMAGE_PIXELS", peak_mb=8)
    monkeypatch.setenv("NPTL_MAX_ARRAY_BYTES", "10000")  # 3 images of 28×28 float32 = 9408 bytes fit
    (bomb).unlink()
    assert load_image_folder(folder)[0].shape == (2, 28, 28)
    rejected(lambda: load_image_folder(folder, size=64), DataError, str(folder),
             r"2 images of 64×64 as float32 would need 32,768 bytes")


def json_nest(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    return hf.small_checkpoint(tmp_path_factory.mktemp("ck") / "base.npz")


@pytest.mark.parametrize("edit, patterns", [
    (hf.set_config("conv1", "filters", 10**9), [r"header field conv1\.config\.filters: 1000000000 is beyond the limit for a "
                                                r"count"]),
    (hf.set_config("dense1", "units", 2**40), [r"config\.units: 1099511627776 is beyond the limit"]),
    (hf.set_config("conv1", "kernel_size", [3, 10**5]), [r"config\.kernel_size\[1\]: 100000 is beyond the limit for "
                                                         r"a size"]),
    (hf.set_input_shape((1, 3000, 3000)), [r"cannot build the architecture for input_shape \(1, 3000, 3000\): the "
                                           r"output of layer 'conv1' for one input would need 1,150,464,512 bytes"]),
    (hf.set_input_shape((1, 300, 300)), [r"parameters do not match the architecture",
                                         r"dense1\.w: the architecture needs shape \(322624, 64\), found \(576, 64\)"]),
    (hf.set_input_shape((1, 2**16, 2**16)), [r"one input of shape \(1, 65536, 65536\) would need 17,179,869,184 "
                                             r"bytes"]),
    (hf.set_input_shape((1, 10**6, 28)), [r"input_shape\[1\]: 1000000 is beyond the limit for a shape"]),
    (hf.set_config("conv1", "momentum", float("nan")), [r"config\.momentum: expected a finite number"]),
    (hf.set_config("conv1", "nested", {"a": json_nest(20)}), [r"nested more than 16 levels"]),
    (lambda m: hf.layer_config(m, "dense1")["params"].update(w=[2**20, 2**20]),
     [r"the parameters listed in the header would need 4,398,04\d,\d{3},\d{3} bytes"]),
], ids=["filters", "units", "kernel", "input-3000", "input-300", "input-huge", "input-dim", "nan-config", "deep", "params"])
def test_checkpoint_headers_asking_for_too_much_are_rejected_before_building(base_checkpoint, tmp_path, edit, patterns):
    import nptl.io

    bad = hf.edit_checkpoint(base_checkpoint, tmp_path / "bad.npz", edit)
    for read in (nptl.io.load, nptl.io.read_metadata, nptl.io.load_checkpoint):
        if read is nptl.io.read_metadata and "architecture" in " ".join(patterns):
            continue  # the header alone is consistent: only building would show the mismatch
        rejected(lambda: read(bad), nptl.io.CheckpointError, rf"checkpoint '{bad}'", *patterns, peak_mb=8)


def test_config_limits_cover_layer_types_added_later(base_checkpoint, tmp_path, monkeypatch):
    """A layer type the loader has never heard of gets the same limits, by key kind."""
    import nptl.io
    from nptl.layers import LAYER_TYPES, ReLU

    class Widen(ReLU):
        def __init__(self, channels=1, pool_size=1, name=None):
            super().__init__(name=name)

    monkeypatch.setitem(LAYER_TYPES, "Widen", Widen)

    def edit(meta):
        meta["layers"][1].update(type="Widen", config={"name": "relu1", "channels": 10**7, "pool_size": 3})
    bad = hf.edit_checkpoint(base_checkpoint, tmp_path / "new.npz", edit)
    rejected(lambda: nptl.io.load(bad), nptl.io.CheckpointError, r"config\.channels: 10000000 is beyond the limit "
             r"for a count")

    def edit2(meta):
        meta["layers"][1].update(type="Widen", config={"name": "relu1", "channels": 8, "pool_size": 5000})
    bad = hf.edit_checkpoint(base_checkpoint, tmp_path / "new2.npz", edit2)
    rejected(lambda: nptl.io.load(bad), nptl.io.CheckpointError, r"config\.pool_size: 5000 is beyond the limit for a "
             r"size")


def test_every_layer_type_with_parameters_declares_their_shapes():
    """Checkpoint loading compares ``array_shapes`` with the file before building: a layer type
    with parameters must compute them without allocating."""
    import nptl
    from nptl.layers import LAYER_TYPES, Layer

    for name, cls in LAYER_TYPES.items():
        if cls._init_params is not Layer._init_params:
            assert cls.array_shapes is not Layer.array_shapes, f"{name} has parameters but no array_shapes"
    model = nptl.seed_cnn(input_shape=(3, 32, 32), num_classes=7, seed=0)
    shape = model.input_shape
    for layer in model.layers:  # and they agree with what build made
        assert layer.array_shapes(shape) == {k: v.shape for k, v in {**layer.params, **layer.buffers}.items()}, \
            layer.name
        shape = layer.output_shape(shape)


@pytest.mark.parametrize("member, patterns", [
    ("junk", [r"entry 'junk' would need 2,097,\d+ bytes, more than the 1,048,576-byte cap"]),
    ("listed", [r"entry 'optim/m' would need 2,097,\d+ bytes"]),
    ("lying-header", [r"entry 'conv1\.w': its \.npy header declares float32 \(100000, 100000\) "
                      r"\(40,000,000,000 bytes\) but the entry holds 64 bytes"]),
    ("many", [r"the archive's \d+ entries \(declared [\d,]+ bytes in all, counted 1/4\) would need"]),
])
def test_checkpoint_members_are_checked_before_any_is_read(base_checkpoint, tmp_path, monkeypatch, member, patterns):
    import nptl.io

    monkeypatch.setenv("NPTL_MAX_ARRAY_BYTES", "1M")
    if member == "junk":
        bad = hf.edit_checkpoint(base_checkpoint, tmp_path / "b.npz", add={"junk.npy": hf.deflated_zeros_member((MiB // 2,))})
    elif member == "listed":
        bad = hf.edit_checkpoint(base_checkpoint, tmp_path / "b.npz", lambda m: m["extra_arrays"].append("optim/m"),
                                 add={"optim/m.npy": hf.deflated_zeros_member((MiB // 2,))})
    elif member == "lying-header":
        bad = hf.edit_checkpoint(base_checkpoint, tmp_path / "b.npz", drop=("conv1.w.npy",),
                                 add={"conv1.w.npy": hf.lying_npy((100000, 100000))})
    else:  # many entries, each under the cap, together over 4 caps
        names = [f"optim/{i}" for i in range(5)]
        bad = hf.edit_checkpoint(base_checkpoint, tmp_path / "b.npz", lambda m: m["extra_arrays"].extend(names),
                                 add={f"{n}.npy": hf.deflated_zeros_member((MiB // 4 - 64,)) for n in names})
    assert bad.stat().st_size < MiB
    rejected(lambda: nptl.io.load(bad), nptl.io.CheckpointError, rf"checkpoint '{bad}'", *patterns, peak_mb=4)


# -- stale temp files of killed saves ------------------------------------------------------------------
def test_next_save_sweeps_only_stale_temp_files_of_the_same_checkpoint(tmp_path):
    import time

    import nptl.io
    from nptl.models import seed_cnn

    model = seed_cnn(input_shape=(1, 28, 28), num_classes=3, seed=0)
    path = nptl.io.save(model, tmp_path / "ck.npz")
    old = time.time() - 3600
    stale = [tmp_path / f".ck.npz.{tag}.tmp" for tag in ("abcd1234", "zz_9y8x7")]  # as killed saves leave them
    keep = {
        "fresh": tmp_path / ".ck.npz.fresh123.tmp",       # a concurrent save, started after this one
        "other": tmp_path / ".other.npz.abcd1234.tmp",    # another checkpoint's
        "pattern": tmp_path / ".ck.npz.abc.tmp",          # not the temp-name pattern
        "user": tmp_path / "ck.npz.abcd1234.tmp",         # not hidden: not ours
    }
    for f in [*stale, *keep.values()]:
        f.write_bytes(b"partial")
        os.utime(f, (old, old))
    future = time.time() + 3600
    os.utime(keep["fresh"], (future, future))
    link = tmp_path / ".ck.npz.link0000.tmp"
    link.symlink_to(keep["other"])
    os.utime(link, (old, old), follow_symlinks=False)
    nptl.io.save(model, path)
    assert not any(f.exists() for f in stale)
    assert all(f.exists() for f in keep.values()) and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ck.npz.")) == \
        [".ck.npz.abc.tmp", ".ck.npz.fresh123.tmp", ".ck.npz.link0000.tmp"]
    nptl.io.load(path)


def test_nested_blocks_are_checked_layer_by_layer_before_building(tmp_path):
    """A layer inside a residual block asking for a huge weight: found from the shapes alone."""
    import nptl.io
    from tests.test_blocks import tiny_resnet

    path = nptl.io.save(tiny_resnet(), tmp_path / "resnet.npz")

    def edit(meta):  # layer1.0.conv1 with a 999×999 kernel and the padding that keeps its output shape
        stage = next(e for e in meta["layers"] if e["config"]["name"] == "layer1")
        stage["layers"][0]["layers"][0]["config"].update(kernel_size=[999, 999], padding=499)
    bad = hf.edit_checkpoint(path, tmp_path / "bad.npz", edit)
    rejected(lambda: nptl.io.load(bad), nptl.io.CheckpointError, rf"checkpoint '{bad}'",
             r"layer1\.0\.conv1\.w: the architecture needs shape \(4, 4, 999, 999\), found \(4, 4, 3, 3\)",
             peak_mb=4)
    assert nptl.io.load(path).count_parameters() == tiny_resnet().count_parameters()
