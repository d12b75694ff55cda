"""Fixtures for the data-layer tests: tiny writers for IDX and CIFAR-10 files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialise ``arr`` in IDX format (big-endian, independent of nptl)."""
    arr = np.asarray(arr)
    header = bytes([0, 0, IDX_CODES[arr.dtype], arr.ndim])
    header += b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_bytes(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Serialise (N, 3, 32, 32) uint8 images + labels as a CIFAR-10 binary batch."""
    rec = np.concatenate(
        [np.asarray(labels, np.uint8)[:, None], images.reshape(len(images), -1)], axis=1
    )
    return rec.astype(np.uint8).tobytes()


@pytest.fixture
def make_idx_dir(tmp_path):
    """Write a small Fashion-MNIST-layout IDX directory; returns (dir, arrays)."""

    def make(n_train=30, n_test=12, gz=True, seed=0, hw=(28, 28), sub="idx"):
        rng = np.random.default_rng(seed)
        d = tmp_path / sub
        d.mkdir()
        arrays = {
            "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
            "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
            "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
        }
        for stem, arr in arrays.items():
            write_bytes(d / (stem + (".gz" if gz else "")), idx_bytes(arr), gz=gz)
        return d, arrays

    return make


@pytest.fixture
def make_cifar_dir(tmp_path):
    """Write a tiny CIFAR-10 binary directory; returns (root, {file: (x, y)})."""

    def make(n_per_batch=4, seed=0, subfolder=False):
        rng = np.random.default_rng(seed)
        root = tmp_path / "cifar"
        d = root / "cifar-10-batches-bin" if subfolder else root
        d.mkdir(parents=True)
        batches = {}
        for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
            x = rng.integers(0, 256, (n_per_batch, 3, 32, 32), dtype=np.uint8)
            y = rng.integers(0, 10, n_per_batch)
            (d / name).write_bytes(cifar_bytes(x, y))
            batches[name] = (x, y)
        return root, batches

    return make


@pytest.fixture(scope="session")
def helpers():
    """The writer functions above (session-scoped, so usable with hypothesis)."""
    from types import SimpleNamespace

    return SimpleNamespace(idx_bytes=idx_bytes, write_bytes=write_bytes, cifar_bytes=cifar_bytes)
