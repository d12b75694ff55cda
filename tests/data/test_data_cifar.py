"""CIFAR-10 binary reader."""

from __future__ import annotations

import numpy as np
import pytest

from nptl.data import (
    CIFAR10_CLASSES,
    DataError,
    DatasetNotFoundError,
    load_cifar10,
    load_dataset,
    read_cifar10_batch,
)


def test_batch_round_trip(tmp_path, helpers):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, 7)
    path = tmp_path / "b.bin"
    path.write_bytes(helpers.cifar_bytes(x, y))
    xr, yr = read_cifar10_batch(path)
    assert xr.shape == (7, 3, 32, 32) and xr.dtype == np.uint8
    assert yr.dtype == np.int64
    np.testing.assert_array_equal(xr, x)
    np.testing.assert_array_equal(yr, y)


def test_record_layout_is_label_then_chw(tmp_path):
    rec = np.zeros(3073, np.uint8)
    rec[0] = 3
    rec[1 + 0 * 1024 + 5] = 11  # red plane, row 0, col 5
    rec[1 + 1 * 1024 + 32 * 2 + 1] = 22  # green plane, row 2, col 1
    rec[1 + 2 * 1024 + 1023] = 33  # blue plane, last pixel
    path = tmp_path / "one.bin"
    path.write_bytes(rec.tobytes())
    x, y = read_cifar10_batch(path)
    assert y.tolist() == [3]
    assert x[0, 0, 0, 5] == 11 and x[0, 1, 2, 1] == 22 and x[0, 2, 31, 31] == 33
    assert x.sum() == 66


@pytest.mark.parametrize("cut", [1, 3072, 5000])
def test_truncated_batch(tmp_path, helpers, cut):
    x = np.zeros((3, 3, 32, 32), np.uint8)
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(helpers.cifar_bytes(x, [1, 2, 3])[:-cut])
    with pytest.raises(DataError) as exc:
        read_cifar10_batch(path)
    msg = str(exc.value)
    assert str(path) in msg and "3073" in msg and str(3 * 3073 - cut) in msg


def test_empty_batch(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty.bin"):
        read_cifar10_batch(path)


def test_label_out_of_range(tmp_path, helpers):
    x = np.zeros((4, 3, 32, 32), np.uint8)
    path = tmp_path / "test_batch.bin"
    path.write_bytes(helpers.cifar_bytes(x, [0, 9, 10, 1]))
    with pytest.raises(DataError) as exc:
        read_cifar10_batch(path)
    msg = str(exc.value)
    assert str(path) in msg and "0..9" in msg and "got 10" in msg and "record 2" in msg


@pytest.mark.parametrize("subfolder", [False, True])
def test_load_cifar10(make_cifar_dir, subfolder):
    root, batches = make_cifar_dir(subfolder=subfolder)
    s = load_cifar10(root)
    assert s.x_train.shape == (20, 3, 32, 32) and s.x_test.shape == (4, 3, 32, 32)
    assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int64
    x_expected = np.concatenate([batches[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    np.testing.assert_allclose(s.x_train, x_expected / 255.0, atol=1e-6)
    np.testing.assert_array_equal(s.y_test, batches["test_batch.bin"][1])
    assert s.class_names == CIFAR10_CLASSES
    # dispatch by name and by directory detection give the same data
    for spec in (f"cifar10:{root}", str(root), root):
        np.testing.assert_array_equal(load_dataset(spec).y_train, s.y_train)


def test_missing_batch_named(make_cifar_dir):
    root, _ = make_cifar_dir()
    (root / "data_batch_4.bin").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_4.bin"):
        load_cifar10(root)


def test_truncated_batch_in_directory_names_file(make_cifar_dir):
    root, _ = make_cifar_dir()
    path = root / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match="data_batch_3.bin"):
        load_cifar10(root)


def test_missing_directory(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="absent"):
        load_cifar10(tmp_path / "absent")
