"""Image-folder datasets: one sub-folder per class, PNG/JPEG files inside.

::

    directory/
        cats/  a.png b.jpg ...
        dogs/  c.jpeg ...

Class names are the sub-folder names; labels follow their sorted order
(or the order of an explicit ``classes`` list).  Images are decoded with
Pillow, which is an optional dependency (``pip install nptl[images]``) and
is imported only when an image folder is actually read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import DataError, DatasetNotFoundError
from .splits import Splits
from .transforms import to_nchw_float, train_val_split

__all__ = [
    "load_image_folder",
    "load_image_folder_splits",
    "IMAGE_EXTENSIONS",
]

#: File extensions (lower case) that are read as images; other files are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def _require_pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading image folders needs Pillow, which is not installed; "
            "install it with `pip install nptl[images]` (or `pip install pillow`)"
        ) from exc
    return Image, ImageOps


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _class_dirs(directory: Path) -> list[Path]:
    return sorted((p for p in directory.iterdir() if p.is_dir() and _visible(p)),
                  key=lambda p: p.name)


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _parse_size(size) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive (height, width), got {size}")
    return h, w


def load_image_folder(
    directory: str | os.PathLike,
    size: tuple[int, int] | int = (28, 28),
    color: str = "gray",
    classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Read a one-sub-folder-per-class image dataset.

    Parameters
    ----------
    directory:
        Folder with one sub-folder per class.  Hidden entries (``.name``)
        and files that are not ``.png``/``.jpg``/``.jpeg`` are ignored.
    size:
        Output ``(height, width)`` (or one int for square images); every
        image is resized to it with bilinear resampling.
    color:
        ``"gray"`` for ``(N, H, W)`` images or ``"rgb"`` for ``(N, H, W, 3)``.
    classes:
        Optional list of sub-folder names to read; label ``i`` is
        ``classes[i]``.  Default: all sub-folders in sorted order.

    Returns ``(x, y, class_names)`` with ``x`` uint8, ``y`` int64 and
    ``class_names`` a tuple.  Raises :class:`DataError` naming the path for
    a missing/empty folder or an unreadable image.
    """
    directory = Path(directory)
    height, width = _parse_size(size)
    if color not in ("gray", "rgb"):
        raise ValueError(f"color must be 'gray' or 'rgb', got {color!r}")
    if not directory.is_dir():
        raise DatasetNotFoundError(f"image folder {directory} does not exist")
    if classes is None:
        class_dirs = _class_dirs(directory)
        if not class_dirs:
            raise DataError(
                f"{directory}: expected one sub-folder per class, found no sub-folders"
            )
    else:
        classes = [str(c) for c in classes]
        if not classes or len(set(classes)) != len(classes):
            raise ValueError(f"classes must be a non-empty list of distinct names, got {classes}")
        class_dirs = [directory / c for c in classes]
        for d in class_dirs:
            if not d.is_dir():
                raise DatasetNotFoundError(
                    f"{d}: expected a sub-folder for class {d.name!r}, but it does not exist"
                )
    files: list[Path] = []
    labels: list[int] = []
    for label, d in enumerate(class_dirs):
        found = _image_files(d)
        if not found:
            raise DataError(
                f"{d}: expected at least one image ({', '.join(IMAGE_EXTENSIONS)}) "
                f"for class {d.name!r}, found none"
            )
        files.extend(found)
        labels.extend([label] * len(found))

    Image, ImageOps = _require_pillow()
    resample = getattr(getattr(Image, "Resampling", Image), "BILINEAR")
    mode = "L" if color == "gray" else "RGB"
    shape = (len(files), height, width) + (() if color == "gray" else (3,))
    x = np.empty(shape, dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:
                img = ImageOps.exif_transpose(img)
                img = img.convert(mode)
                if img.size != (width, height):
                    img = img.resize((width, height), resample=resample)
                x[i] = np.asarray(img, dtype=np.uint8)
        except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, ...
            raise DataError(
                f"{f}: expected a readable PNG/JPEG image, but Pillow failed: {exc}"
            ) from None
    return x, np.asarray(labels, dtype=np.int64), tuple(d.name for d in class_dirs)


_SPLIT_NAMES = (("train", "test"), ("train", "val"), ("train", "valid"),
                ("train", "validation"))


def load_image_folder_splits(
    directory: str | os.PathLike,
    size: tuple[int, int] | int = (28, 28),
    color: str = "gray",
    classes: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Splits:
    """Load an image folder as a :class:`Splits`.

    If ``directory`` contains exactly the sub-folders ``train`` and ``test``
    (or ``train`` and ``val``/``valid``/``validation``), each laid out as
    one-sub-folder-per-class, they are used as the two splits (the class
    list comes from ``train``).  Otherwise the single class folder is split
    with a stratified, seeded ``test_fraction`` hold-out.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetNotFoundError(f"image folder {directory} does not exist")
    names = {p.name for p in _class_dirs(directory)}
    for train_name, test_name in _SPLIT_NAMES:
        if names == {train_name, test_name}:
            x_tr, y_tr, class_names = load_image_folder(directory / train_name, size, color,
                                                        classes)
            x_te, y_te, _ = load_image_folder(directory / test_name, size, color, class_names)
            break
    else:
        x, y, class_names = load_image_folder(directory, size, color, classes)
        x_tr, y_tr, x_te, y_te = train_val_split(x, y, test_fraction, seed)
    return Splits(to_nchw_float(x_tr), y_tr, to_nchw_float(x_te), y_te, class_names)
