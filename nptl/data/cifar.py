"""Reader for the *binary version* of CIFAR-10.

Each batch file (``data_batch_1.bin`` .. ``data_batch_5.bin``,
``test_batch.bin``) is a plain sequence of 3073-byte records::

    <1 byte label 0..9><1024 bytes red><1024 bytes green><1024 bytes blue>

each colour plane being a 32x32 image in row-major order, i.e. the image is
stored in CHW order.  The Python "pickle" version of CIFAR-10 is
deliberately *not* supported: unpickling downloaded files can execute
arbitrary code.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..limits import exceeds_array_cap
from .errors import DataError, DatasetNotFoundError
from .splits import Splits

__all__ = [
    "read_cifar10_batch",
    "load_cifar10",
    "find_cifar10_dir",
    "CIFAR10_CLASSES",
    "CIFAR10_RECORD_BYTES",
]

#: Class names of CIFAR-10, indexed by label.
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_IMAGE_SHAPE = (3, 32, 32)
#: Size of one record: 1 label byte + 3*32*32 pixel bytes.
CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32

_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_TEST_FILE = "test_batch.bin"
_SUBDIR = "cifar-10-batches-bin"


def read_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch file.

    Returns ``(images, labels)``: uint8 images of shape ``(N, 3, 32, 32)``
    (CHW, as stored) and int64 labels.  Raises :class:`DataError` naming the
    file if its size is not a positive multiple of 3073 bytes (truncated or
    not a CIFAR-10 batch), exceeds ``NPTL_MAX_ARRAY_BYTES`` (checked from the
    file size before reading; the official batches are 30 MB) or a label is
    greater than 9.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0 or size % CIFAR10_RECORD_BYTES:
                whole, rest = divmod(size, CIFAR10_RECORD_BYTES)
                raise DataError(
                    f"{path}: expected a CIFAR-10 binary batch whose size is a positive multiple of "
                    f"{CIFAR10_RECORD_BYTES} bytes (1 label + 3072 pixels per record), got {size} "
                    f"bytes ({whole} records + {rest} extra bytes; truncated file?)"
                )
            too_big = exceeds_array_cap(size, f"a batch of {size // CIFAR10_RECORD_BYTES:,} records")
            if too_big:
                raise DataError(f"{path}: {too_big}")
            records = np.fromfile(fh, dtype=np.uint8, count=size)
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: CIFAR-10 batch file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: expected a CIFAR-10 batch file, found a directory") from None
    if records.size != size:
        raise DataError(f"{path}: expected {size} bytes, read {records.size} (file changed while reading?)")
    records = records.reshape(-1, CIFAR10_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: expected labels in 0..9, got {int(labels[i])} in record {i} "
            f"(byte offset {i * CIFAR10_RECORD_BYTES}); is this the binary CIFAR-10 version?"
        )
    images = records[:, 1:].reshape((-1,) + _IMAGE_SHAPE).copy()
    return images, labels


def find_cifar10_dir(directory: str | os.PathLike) -> Path | None:
    """Return the folder holding ``test_batch.bin`` in ``directory`` or its
    ``cifar-10-batches-bin/`` sub-folder, or None if there is none."""
    directory = Path(directory)
    for candidate in (directory, directory / _SUBDIR):
        if (candidate / _TEST_FILE).is_file():
            return candidate
    return None


def load_cifar10(directory: str | os.PathLike) -> Splits:
    """Load CIFAR-10 (binary version) from ``directory``.

    ``directory`` must contain ``data_batch_1.bin`` .. ``data_batch_5.bin``
    and ``test_batch.bin``, either directly or in a ``cifar-10-batches-bin/``
    sub-folder (the layout of the official ``cifar-10-binary.tar.gz``).
    Returns a :class:`Splits` with float32 NCHW ``(N, 3, 32, 32)`` images in
    ``[0, 1]``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetNotFoundError(
            f"CIFAR-10 directory {directory} does not exist; expected a directory holding the "
            f"binary version ({', '.join(_TRAIN_FILES)}, {_TEST_FILE})"
        )
    root = find_cifar10_dir(directory) or directory
    missing = [name for name in _TRAIN_FILES + (_TEST_FILE,) if not (root / name).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{root}: expected the CIFAR-10 binary batch files {', '.join(_TRAIN_FILES)} and "
            f"{_TEST_FILE} (also looked in {_SUBDIR}/), missing: {', '.join(missing)}"
        )
    parts = [read_cifar10_batch(root / name) for name in _TRAIN_FILES]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = read_cifar10_batch(root / _TEST_FILE)
    return Splits(
        _chw_uint8_to_float(x_train), y_train, _chw_uint8_to_float(x_test), y_test,
        CIFAR10_CLASSES,
    )


def _chw_uint8_to_float(images: np.ndarray) -> np.ndarray:
    out = np.empty(images.shape, dtype=np.float32)
    np.divide(images, np.float32(255.0), out=out, casting="unsafe")
    return out
