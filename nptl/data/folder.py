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

from ..limits import array_bytes, exceeds_array_cap, max_image_pixels
from .errors import DataError, DatasetNotFoundError
from .splits import Splits
from .transforms import to_nchw_float, train_val_split

__all__ = [
    "load_image_folder",
    "load_image_folder_splits",
    "read_images",
    "image_files",
    "IMAGE_EXTENSIONS",
    "COLORS",
]

#: File extensions (lower case) that are read as images; other files are listed once and skipped.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Colour modes: "gray" (1 channel), "rgb" (3), "auto" (rgb if any image is in colour, else gray).
COLORS = ("auto", "rgb", "gray")
#: Pillow modes without colour; anything else (RGB, RGBA, P, CMYK, ...) is a colour image.
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


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


def _image_files(folder: Path, ignored: list | None = None) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and _visible(p))
    if ignored is not None:
        ignored.extend(p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS)
    return [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]


def image_files(paths: Sequence[str | os.PathLike], log=None) -> list[Path]:
    """The image files among ``paths``: files as given, folders searched recursively (sorted).
    Other files found in folders are reported once through ``log``.  A path that does not exist
    is a :class:`DatasetNotFoundError`."""
    found, ignored = [], []
    for path in map(Path, paths):
        if path.is_dir():
            for folder in sorted([path] + [d for d in path.rglob("*") if d.is_dir() and _visible(d)]):
                found.extend(_image_files(folder, ignored))
        elif path.is_file():
            found.append(path)
        else:
            raise DatasetNotFoundError(f"{path}: no such file or directory")
    _report_ignored(ignored, log)
    return found


def _report_ignored(ignored: list, log) -> None:
    if ignored and log is not None:
        shown = ", ".join(str(p) for p in ignored[:5])
        if len(ignored) > 5:
            shown += f", ... ({len(ignored) - 5} more)"
        log(f"ignored {len(ignored)} file(s) that are not {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} images: {shown}")


def read_images(files: Sequence[Path], size: tuple[int, int] | int = (28, 28), color: str = "gray",
                skip_bad_files: bool = False, log=None) -> tuple[np.ndarray, list[int], str]:
    """Decode ``files`` with Pillow (EXIF orientation applied), convert to ``color`` and resize to
    ``size`` (bilinear).  Returns ``(x, kept, color)``: uint8 ``x`` of shape ``(N, H, W)`` for
    gray or ``(N, H, W, 3)`` for rgb, the indices into ``files`` of the images in ``x``, and the
    colour mode used (``"auto"`` resolves to rgb if any file is a colour image, else gray).

    A grayscale file in rgb output (or a colour file in gray output) is converted and counted;
    the count is reported through ``log``.  A file Pillow cannot read is a :class:`DataError`
    naming it, or with ``skip_bad_files`` reported through ``log`` and left out; so is an image
    larger than ``NPTL_MAX_IMAGE_PIXELS`` (checked from its header, before decoding).  Images
    whose float32 stack would exceed ``NPTL_MAX_ARRAY_BYTES`` are refused before any is read
    (:mod:`nptl.limits`).
    """
    height, width = _parse_size(size)
    if color not in COLORS:
        raise ValueError(f"color must be one of {', '.join(COLORS)}, got {color!r}")
    Image, ImageOps = _require_pillow()
    resample = getattr(getattr(Image, "Resampling", Image), "BILINEAR")
    shape = (len(files), height, width) + ((3,) if color != "gray" else ())
    too_big = exceeds_array_cap(array_bytes(shape, 4), f"{len(files)} images of {height}×{width} as float32")
    if too_big:
        raise DataError(f"{files[0]} and the {len(files) - 1} other file(s): {too_big}")
    max_pixels = max_image_pixels()
    decoded, kept, gray_files, skipped = [], [], 0, []
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:  # reads the header only: the size is known before decoding
                if img.width * img.height > max_pixels:
                    problem = (f"image of {img.width}×{img.height} = {img.width * img.height:,} pixels, more than "
                               f"the {max_pixels:,}-pixel cap (NPTL_MAX_IMAGE_PIXELS; raise it if the file is "
                               "trusted)")
                    if not skip_bad_files:
                        raise DataError(f"{f}: {problem}; not decoded")
                    skipped.append(f)
                    if log is not None:
                        log(f"skipped {f}: {problem}")
                    continue
                img = ImageOps.exif_transpose(img)
                is_gray = img.mode in _GRAY_MODES
                img = img.convert("L" if is_gray else "RGB")
                if img.size != (width, height):
                    img = img.resize((width, height), resample=resample)
                decoded.append(np.asarray(img, dtype=np.uint8))
        except DataError:
            raise
        except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, ...
            if not skip_bad_files:
                raise DataError(f"{f}: expected a readable PNG/JPEG image, but Pillow failed: {exc} "
                                "(--skip-bad-files leaves such files out)") from None
            skipped.append(f)
            if log is not None:
                log(f"skipped {f}: not a readable image ({exc})")
            continue
        kept.append(i)
        gray_files += is_gray
    if skipped and log is not None:
        log(f"skipped {len(skipped)} unreadable file(s) of {len(files)}")
    if not decoded:
        raise DataError(f"no readable image among the {len(files)} file(s) given")
    colour_files = len(decoded) - gray_files
    if color == "auto":
        color = "rgb" if colour_files else "gray"
    converted = gray_files if color == "rgb" else colour_files
    if converted and log is not None:
        log(f"converted {converted} of {len(decoded)} images to {color} "
            f"({'grayscale images among colour ones' if color == 'rgb' else 'colour images to grayscale'})")
    shape = (len(decoded), height, width) + ((3,) if color == "rgb" else ())
    x = np.empty(shape, dtype=np.uint8)
    for i, img in enumerate(decoded):
        if color == "rgb":
            x[i] = img if img.ndim == 3 else img[:, :, None]
        else:
            # ITU-R 601-2 luma, as Pillow's convert("L")
            x[i] = img if img.ndim == 2 else np.asarray(Image.fromarray(img).convert("L"), dtype=np.uint8)
    return x, kept, color


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
    skip_bad_files: bool = False,
    log=None,
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
        ``"gray"`` for ``(N, H, W)`` images, ``"rgb"`` for ``(N, H, W, 3)``,
        ``"auto"`` for rgb if any image is in colour, else gray.  Files of
        the other mode are converted and counted (see :func:`read_images`).
    classes:
        Optional list of sub-folder names to read; label ``i`` is
        ``classes[i]``.  Default: all sub-folders in sorted order.
    skip_bad_files, log:
        See :func:`read_images`; files that are not images are listed once
        through ``log`` too.

    Returns ``(x, y, class_names)`` with ``x`` uint8, ``y`` int64 and
    ``class_names`` a tuple.  Raises :class:`DataError` naming the path for
    a missing/empty folder, an unreadable image, an image larger than
    ``NPTL_MAX_IMAGE_PIXELS`` (checked from its header, before decoding) or
    a data set whose float32 array would exceed ``NPTL_MAX_ARRAY_BYTES``
    (see :mod:`nptl.limits`).
    """
    directory = Path(directory)
    _parse_size(size)
    if color not in COLORS:
        raise ValueError(f"color must be one of {', '.join(COLORS)}, got {color!r}")
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
    ignored: list[Path] = []
    for label, d in enumerate(class_dirs):
        found = _image_files(d, ignored)
        if not found:
            raise DataError(
                f"{d}: expected at least one image ({', '.join(IMAGE_EXTENSIONS)}) "
                f"for class {d.name!r}, found none"
            )
        files.extend(found)
        labels.extend([label] * len(found))
    _report_ignored(ignored, log)
    x, kept, _ = read_images(files, size, color, skip_bad_files, log)
    y = np.asarray(labels, dtype=np.int64)[kept]
    empty = [d.name for label, d in enumerate(class_dirs) if not np.any(y == label)]
    if empty:
        raise DataError(f"{directory}: no readable image left for class(es) {empty}")
    return x, y, tuple(d.name for d in class_dirs)


_SPLIT_NAMES = (("train", "test"), ("train", "val"), ("train", "valid"),
                ("train", "validation"))


def load_image_folder_splits(
    directory: str | os.PathLike,
    size: tuple[int, int] | int = (28, 28),
    color: str = "gray",
    classes: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_bad_files: bool = False,
    log=None,
) -> Splits:
    """Load an image folder as a :class:`Splits`.

    If ``directory`` contains exactly the sub-folders ``train`` and ``test``
    (or ``train`` and ``val``/``valid``/``validation``), each laid out as
    one-sub-folder-per-class, they are used as the two splits (the class
    list comes from ``train``).  Otherwise the single class folder is split
    with a stratified, seeded ``test_fraction`` hold-out.  ``color="auto"``
    is decided on the training images and applied to the test images.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetNotFoundError(f"image folder {directory} does not exist")
    names = {p.name for p in _class_dirs(directory)}
    for train_name, test_name in _SPLIT_NAMES:
        if names == {train_name, test_name}:
            x_tr, y_tr, class_names = load_image_folder(directory / train_name, size, color,
                                                        classes, skip_bad_files, log)
            color = "rgb" if x_tr.ndim == 4 else "gray"
            x_te, y_te, _ = load_image_folder(directory / test_name, size, color, class_names,
                                              skip_bad_files, log)
            break
    else:
        x, y, class_names = load_image_folder(directory, size, color, classes, skip_bad_files, log)
        try:
            x_tr, y_tr, x_te, y_te = train_val_split(x, y, test_fraction, seed, name="test_fraction")
        except ValueError as e:
            raise DataError(f"{directory}: cannot hold out a test split: {e}") from None
    return Splits(to_nchw_float(x_tr), y_tr, to_nchw_float(x_te), y_te, class_names)
