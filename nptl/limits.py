"""Memory caps of the readers: a file never makes nptl allocate more than these.

Every reader (IDX, CIFAR-10 batches, image folders, checkpoints) computes the size of each
array it is about to create from what the file *declares* (header dimensions, record counts,
image sizes, ``.npy`` headers), with exact integer arithmetic, and refuses the file before
allocating or decompressing anything when a cap is exceeded:

``NPTL_MAX_ARRAY_BYTES`` (default 1 GiB = 1073741824)
    the largest array one file may produce (an IDX payload, a CIFAR-10 batch, an image
    folder's stacked images, one checkpoint entry) and the largest total of a checkpoint's
    parameters.  Fashion-MNIST's training images are 47 MB, CIFAR-10's 614 MB as float32,
    VGG16's parameters 553 MB.
``NPTL_MAX_IMAGE_PIXELS`` (default 2**25 = 33554432, e.g. 8192 × 4096)
    the largest image (width × height) an image folder may hold; checked from the image header
    before it is decoded.

Both are read when a file is opened (never at import) and accept an integer with an optional
``K``/``M``/``G`` suffix (powers of 1024): ``NPTL_MAX_ARRAY_BYTES=4G nptl train ...``.
"""
from __future__ import annotations

import math
import os

__all__ = ["max_array_bytes", "max_image_pixels", "array_bytes", "exceeds_array_cap",
           "DEFAULT_MAX_ARRAY_BYTES", "DEFAULT_MAX_IMAGE_PIXELS"]

DEFAULT_MAX_ARRAY_BYTES = 1 << 30
DEFAULT_MAX_IMAGE_PIXELS = 1 << 25
_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _setting(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    scale = _SUFFIX.get(raw[-1].upper(), 1)
    digits = raw[:-1] if scale > 1 else raw
    try:
        value = int(digits) * scale
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"environment variable {name}: expected a positive integer with an optional "
                         f"K/M/G/T suffix, got {raw!r}")
    return value


def max_array_bytes() -> int:
    """The cap on one array read from a file (``NPTL_MAX_ARRAY_BYTES``, default 1 GiB)."""
    return _setting("NPTL_MAX_ARRAY_BYTES", DEFAULT_MAX_ARRAY_BYTES)


def max_image_pixels() -> int:
    """The cap on one image's width × height (``NPTL_MAX_IMAGE_PIXELS``, default 2**25)."""
    return _setting("NPTL_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


def array_bytes(shape, itemsize: int) -> int:
    """Exact size in bytes of an array of ``shape`` (Python integers: no int64 wrap-around)."""
    return math.prod(int(s) for s in shape) * int(itemsize)


def exceeds_array_cap(nbytes: int, what: str) -> str | None:
    """``None`` if ``nbytes`` fits under ``NPTL_MAX_ARRAY_BYTES``, else the sentence saying
    why not (for the caller's error, which names the file)."""
    cap = max_array_bytes()
    if nbytes <= cap:
        return None
    return (f"{what} would need {nbytes:,} bytes, more than the {cap:,}-byte cap "
            f"(NPTL_MAX_ARRAY_BYTES; raise it if the file is trusted)")
