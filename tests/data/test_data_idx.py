"""IDX reader and Fashion-MNIST-format loader."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nptl.data import (
    FASHION_MNIST_CLASSES,
    DataError,
    DatasetNotFoundError,
    Splits,
    load_fashion_mnist,
    read_idx,
)
from tests.strategies import examples

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(deadline=None, max_examples=examples(40))
@given(
    arr=st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(
            dt,
            hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
            elements={"allow_nan": False} if np.dtype(dt).kind == "f" else None,
        )
    ),
    gz=st.booleans(),
)
def test_idx_round_trip(helpers, arr, gz):
    with tempfile.TemporaryDirectory() as d:
        path = helpers.write_bytes(Path(d) / "a.idx", helpers.idx_bytes(arr), gz=gz)
        out = read_idx(path)
    assert out.shape == arr.shape
    assert out.dtype == arr.dtype  # native byte order, same kind/size
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_gzip_detected_by_magic_not_extension(tmp_path, helpers):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    # gzip content without .gz suffix, and raw content with a .gz suffix
    gz_no_ext = helpers.write_bytes(tmp_path / "images-idx3-ubyte", helpers.idx_bytes(arr), gz=True)
    raw_gz_ext = helpers.write_bytes(tmp_path / "images.gz", helpers.idx_bytes(arr), gz=False)
    np.testing.assert_array_equal(read_idx(gz_no_ext), arr)
    np.testing.assert_array_equal(read_idx(raw_gz_ext), arr)


def _good(helpers):
    return helpers.idx_bytes(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda b: b"\x01" + b[1:], ["magic", "00 00"]),
        (lambda b: b"\x00\x07" + b[2:], ["magic", "00 00"]),
        (lambda b: b[:2] + b"\x07" + b[3:], ["type code", "0x07"]),
        (lambda b: b[:3] + b"\x00" + b[4:], ["dimension"]),
        (lambda b: b[:3], ["header", "3 bytes"]),
        (lambda b: b[:10], ["truncated", "header"]),
        (lambda b: b[:-1], ["truncated", "24", "23"]),
        (lambda b: b[:-20], ["truncated", "need 24", "got 4"]),
        (lambda b: b + b"\x00\x01", ["trailing", "2 trailing bytes"]),
        (lambda b: b[:3] + b"\x02" + b[4:], ["trailing"]),  # ndim 2 reads fewer dims
    ],
)
def test_bad_idx_files_name_the_file(tmp_path, helpers, mutate, words, gz):
    path = helpers.write_bytes(tmp_path / "broken-file-idx3-ubyte", mutate(_good(helpers)), gz=gz)
    with pytest.raises(DataError) as exc:
        read_idx(path)
    msg = str(exc.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, (w, msg)


def test_corrupt_gzip_stream(tmp_path, helpers):
    data = gzip.compress(_good(helpers))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="gzip") as exc:
        read_idx(path)
    assert str(path) in str(exc.value)


def test_missing_idx_file(tmp_path):
    with pytest.raises(DatasetNotFoundError) as exc:
        read_idx(tmp_path / "nope.gz")
    assert "nope.gz" in str(exc.value)
    assert isinstance(exc.value, FileNotFoundError)


@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist_format_round_trip(make_idx_dir, gz):
    d, arrays = make_idx_dir(gz=gz)
    s = load_fashion_mnist(d)
    assert isinstance(s, Splits)
    assert s.x_train.shape == (30, 1, 28, 28) and s.x_test.shape == (12, 1, 28, 28)
    assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int64
    np.testing.assert_array_equal(
        np.rint(s.x_train[:, 0] * 255).astype(np.uint8), arrays["train-images-idx3-ubyte"]
    )
    np.testing.assert_array_equal(s.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert s.class_names == FASHION_MNIST_CLASSES
    assert 0.0 <= s.x_train.min() and s.x_train.max() <= 1.0


def test_count_mismatch_names_both_files_and_counts(make_idx_dir, helpers):
    d, arrays = make_idx_dir()
    labels = d / "train-labels-idx1-ubyte.gz"
    helpers.write_bytes(labels, helpers.idx_bytes(arrays["train-labels-idx1-ubyte"][:29]), gz=True)
    with pytest.raises(DataError) as exc:
        load_fashion_mnist(d)
    msg = str(exc.value)
    assert str(d / "train-images-idx3-ubyte.gz") in msg and str(labels) in msg
    assert "30" in msg and "29" in msg


def test_label_out_of_range(make_idx_dir, helpers):
    d, arrays = make_idx_dir()
    bad = arrays["t10k-labels-idx1-ubyte"].copy()
    bad[7] = 10
    labels = helpers.write_bytes(d / "t10k-labels-idx1-ubyte.gz", helpers.idx_bytes(bad), gz=True)
    with pytest.raises(DataError) as exc:
        load_fashion_mnist(d)
    msg = str(exc.value)
    assert str(labels) in msg and "0..9" in msg and "10" in msg and "index 7" in msg


def test_images_file_with_wrong_rank(make_idx_dir, helpers):
    d, _ = make_idx_dir()
    path = helpers.write_bytes(
        d / "train-images-idx3-ubyte.gz", helpers.idx_bytes(np.zeros((30, 784), np.uint8)), gz=True
    )
    with pytest.raises(DataError, match=r"\(N, H, W\)") as exc:
        load_fashion_mnist(d)
    assert str(path) in str(exc.value)


def test_missing_directory_mentions_apt_and_data_flag(tmp_path):
    with pytest.raises(DatasetNotFoundError) as exc:
        load_fashion_mnist(tmp_path / "absent")
    msg = str(exc.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "--data DIR" in msg
    assert str(tmp_path / "absent") in msg


def test_missing_one_file(make_idx_dir):
    d, _ = make_idx_dir()
    (d / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte"):
        load_fashion_mnist(d)
