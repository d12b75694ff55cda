"""Reader for IDX files (the MNIST / Fashion-MNIST file format) and the
Fashion-MNIST loader.

IDX layout (all integers big-endian)::

    byte 0-1   0x00 0x00
    byte 2     element type code (0x08 uint8, 0x09 int8, 0x0B int16,
               0x0C int32, 0x0D float32, 0x0E float64)
    byte 3     number of dimensions ``ndim``
    then       ``ndim`` uint32 sizes
    then       the payload, ``prod(sizes)`` elements in C order

Files may be gzip-compressed; compression is detected from the gzip magic
bytes (``1f 8b``), not from the file name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..limits import array_bytes, exceeds_array_cap
from .errors import DataError, DatasetNotFoundError
from .splits import Splits
from .transforms import to_nchw_float

__all__ = [
    "read_idx",
    "has_idx_files",
    "load_fashion_mnist",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "IDX_DTYPES",
]

#: Default install location of the ``dataset-fashion-mnist`` system package.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist/"

#: Class names of Fashion-MNIST, indexed by label.
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: IDX type code -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"

# Fashion-MNIST file stems; each may carry a ".gz" suffix or not.
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


#: Trailing bytes counted for the error message before giving up ("more than ...").
_TRAILING_COUNTED = 1 << 20


def _open_stream(path: Path):
    """``path`` opened for reading, through a streaming gzip decoder if it starts with the
    gzip magic bytes: nothing is decompressed before it is asked for."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: IDX file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: expected an IDX file, found a directory") from None
    if fh.read(2) == _GZIP_MAGIC:
        fh.seek(0)
        return gzip.GzipFile(fileobj=fh, mode="rb"), fh
    fh.seek(0)
    return fh, fh


def _read_into(stream, buf: memoryview) -> int:
    """Fill ``buf`` from ``stream``; returns the number of bytes read (short at end of file)."""
    got = 0
    while got < len(buf):
        n = stream.readinto(buf[got:got + (16 << 20)])
        if not n:
            break
        got += n
    return got


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a native-endian array.

    The header is read first and the payload size it declares is computed exactly (Python
    integers); a payload larger than ``NPTL_MAX_ARRAY_BYTES`` (:mod:`nptl.limits`, default
    1 GiB) is refused before anything else is read.  Gzip files are decompressed as a stream
    into the array itself, and at most 1 MiB beyond the declared payload is decompressed to
    report trailing data: a gzip bomb costs what its header declares, not what it inflates to.

    Raises :class:`DataError` (naming ``path``) if the header is not a valid IDX header, the
    declared payload exceeds the cap, the payload is shorter than the dimensions require
    (truncated file) or longer (trailing bytes), or the gzip stream is corrupt.
    """
    path = Path(path)
    stream, raw = _open_stream(path)
    # an uncompressed file's payload size is known before reading it
    size = None if stream is not raw else os.fstat(raw.fileno()).st_size
    try:
        with raw, stream:
            return _read_idx_stream(path, stream, size)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: expected a valid gzip stream (file starts with gzip magic 1f 8b), "
            f"but decompression failed: {exc}"
        ) from None


def _read_idx_stream(path: Path, stream, size: int | None) -> np.ndarray:
    head = stream.read(4)
    if len(head) < 4:
        raise DataError(
            f"{path}: expected an IDX header of at least 4 bytes, got a file of {len(head)} bytes"
        )
    if head[0] != 0 or head[1] != 0:
        raise DataError(
            f"{path}: expected IDX magic number starting with bytes 00 00, "
            f"got {head.hex(' ')} (not an IDX file?)"
        )
    type_code, ndim = head[2], head[3]
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{k:02X}" for k in IDX_DTYPES)
        raise DataError(
            f"{path}: expected an IDX element type code in ({known}), got 0x{type_code:02X}"
        )
    if ndim == 0:
        raise DataError(f"{path}: expected an IDX file with at least 1 dimension, got 0")
    header_len = 4 + 4 * ndim
    dim_bytes = stream.read(4 * ndim)
    if len(dim_bytes) < 4 * ndim:
        raise DataError(
            f"{path}: truncated IDX header: expected {header_len} bytes for {ndim} dimensions, "
            f"got {4 + len(dim_bytes)} bytes"
        )
    dims = tuple(int.from_bytes(dim_bytes[4 * i:4 * i + 4], "big") for i in range(ndim))
    dtype = IDX_DTYPES[type_code]
    expected = array_bytes(dims, dtype.itemsize)
    # an empty array must still have a representable shape: zero dimensions count as 1 here
    nominal = array_bytes([max(d, 1) for d in dims], dtype.itemsize)
    too_big = exceeds_array_cap(nominal, f"dimensions {dims} of {dtype.name}"
                                + (" (counting 0 as 1)" if nominal != expected else ""))
    if too_big:
        raise DataError(f"{path}: {too_big}")
    if size is not None and size - header_len < expected:
        got = size - header_len
    else:
        payload = np.empty(expected, dtype=np.uint8)
        got = _read_into(stream, memoryview(payload))
    if got < expected:
        raise DataError(
            f"{path}: truncated IDX file: dimensions {dims} of {dtype.name} need {expected} "
            f"payload bytes, got {got}"
        )
    extra = 0 if size is None else size - header_len - expected
    while size is None and extra <= _TRAILING_COUNTED:
        chunk = stream.read(64 << 10)
        if not chunk:
            break
        extra += len(chunk)
    if extra:
        counted = size is not None or extra <= _TRAILING_COUNTED
        raise DataError(
            f"{path}: IDX file has {extra if counted else f'more than {_TRAILING_COUNTED}'} trailing "
            f"bytes: dimensions {dims} of {dtype.name} need {expected} payload bytes, got "
            f"{expected + extra if counted else f'more than {expected + _TRAILING_COUNTED}'}"
        )
    return payload.view(dtype).astype(dtype.newbyteorder("="), copy=dtype.itemsize > 1).reshape(dims)


def _find_file(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise DatasetNotFoundError(
        f"{directory}: expected IDX file {stem}.gz (or {stem}) in this directory, "
        "but it is missing"
    )


def has_idx_files(directory: str | os.PathLike) -> bool:
    """True if ``directory`` holds the four (Fashion-)MNIST IDX files."""
    directory = Path(directory)
    return all(
        (directory / (stem + ".gz")).is_file() or (directory / stem).is_file()
        for stem in _FILES.values()
    )


def _load_pair(images_path: Path, labels_path: Path, num_classes: int):
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, H, W), "
            f"got {images.dtype} array of shape {images.shape}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{labels_path}: expected a 1-D integer label vector, "
            f"got {labels.dtype} array of shape {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"image/label count mismatch: {images_path} has {images.shape[0]} images "
            f"but {labels_path} has {labels.shape[0]} labels"
        )
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            bad = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
            raise DataError(
                f"{labels_path}: expected labels in 0..{num_classes - 1}, "
                f"got {int(labels[bad])} at index {bad}"
            )
    return images, labels.astype(np.int64)


def load_fashion_mnist(
    directory: str | os.PathLike | None = None,
    class_names: tuple = FASHION_MNIST_CLASSES,
) -> Splits:
    """Load Fashion-MNIST (or any MNIST-format IDX dataset) from ``directory``.

    ``directory`` defaults to :data:`FASHION_MNIST_DIR`
    (``/usr/share/datasets/fashion-mnist/``).  It must contain
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each either
    gzip-compressed with a ``.gz`` suffix or uncompressed.

    Labels must lie in ``0 .. len(class_names) - 1``.  Returns a
    :class:`Splits` with images as float32 NCHW ``(N, 1, 28, 28)`` in
    ``[0, 1]``.
    """
    directory = Path(directory if directory is not None else FASHION_MNIST_DIR)
    if not directory.is_dir():
        raise DatasetNotFoundError(
            f"Fashion-MNIST directory {directory} does not exist. Install the dataset with "
            "`apt-get install dataset-fashion-mnist`, or pass `--data DIR` pointing to a "
            "directory with the four IDX files (train-images-idx3-ubyte.gz, "
            "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)."
        )
    paths = {key: _find_file(directory, stem) for key, stem in _FILES.items()}
    n = len(class_names)
    x_train, y_train = _load_pair(paths["train_images"], paths["train_labels"], n)
    x_test, y_test = _load_pair(paths["test_images"], paths["test_labels"], n)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"image size mismatch: {paths['train_images']} has {x_train.shape[1:]} images but "
            f"{paths['test_images']} has {x_test.shape[1:]}"
        )
    return Splits(
        to_nchw_float(x_train), y_train, to_nchw_float(x_test), y_test, tuple(class_names)
    )
