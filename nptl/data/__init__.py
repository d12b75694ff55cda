"""Data layer of nptl: dataset readers, transforms and augmentation.

Every loader returns a :class:`Splits` (``x_train, y_train, x_test, y_test,
class_names``) with float32 NCHW images in ``[0, 1]`` and int64 labels.
Only numpy is imported here; Pillow is imported lazily by the image-folder
reader.  Nothing is ever downloaded.

Use :func:`load_dataset` to pick a dataset by name or by directory::

    load_dataset("fashion-mnist")          # /usr/share/datasets/fashion-mnist/
    load_dataset("fashion-mnist:/my/dir")  # IDX files in /my/dir
    load_dataset("synthetic", n_train_per_class=500)
    load_dataset("cifar10:/data/cifar")    # binary CIFAR-10
    load_dataset("folder:/data/pets")      # one sub-folder per class
    load_dataset("/some/dir")              # detected from the files inside
"""

from __future__ import annotations

import os
from pathlib import Path

from .augment import Augmenter, affine_sample
from .cifar import CIFAR10_CLASSES, find_cifar10_dir, load_cifar10, read_cifar10_batch
from .errors import DataError, DatasetNotFoundError
from .folder import load_image_folder, load_image_folder_splits
from .idx import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    has_idx_files,
    load_fashion_mnist,
    read_idx,
)
from .splits import Splits
from .synthetic import SYNTHETIC_CLASSES, load_synthetic, make_synthetic
from .transforms import (
    normalize,
    select_classes,
    take_per_class,
    to_nchw_float,
    train_val_split,
)

__all__ = [
    "Augmenter",
    "CIFAR10_CLASSES",
    "DataError",
    "DatasetNotFoundError",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "SYNTHETIC_CLASSES",
    "Splits",
    "affine_sample",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "load_image_folder_splits",
    "load_synthetic",
    "make_synthetic",
    "normalize",
    "read_cifar10_batch",
    "read_idx",
    "select_classes",
    "take_per_class",
    "to_nchw_float",
    "train_val_split",
    "DATASET_NAMES",
    "dataset_kind",
]

#: Names accepted by :func:`load_dataset` (besides directories).
DATASET_NAMES = ("fashion-mnist", "synthetic", "cifar10:DIR", "fashion-mnist:DIR", "folder:DIR")

_ALIASES = {
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "synthetic": "synthetic",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "folder": "folder",
}


def _directory_kind(directory: Path) -> str:
    if not directory.is_dir():
        raise DatasetNotFoundError(
            f"{directory}: not a known dataset name or an existing directory; "
            f"expected one of {', '.join(DATASET_NAMES)} or a directory holding IDX files, "
            "CIFAR-10 *.bin batches or one sub-folder per class"
        )
    if has_idx_files(directory):
        return "fashion-mnist"
    if find_cifar10_dir(directory) is not None:
        return "cifar10"
    if any(p.is_dir() and not p.name.startswith(".") for p in directory.iterdir()):
        return "folder"
    raise DataError(
        f"{directory}: cannot tell the dataset format; expected the four (Fashion-)MNIST IDX "
        "files, CIFAR-10 binary batches (data_batch_1.bin .. test_batch.bin) or one "
        "sub-folder per class"
    )


_DIRECTORY_LOADERS = {"fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10,
                      "folder": load_image_folder_splits}


def dataset_kind(name_or_dir: str | os.PathLike) -> str:
    """Which reader :func:`load_dataset` uses for ``name_or_dir``: ``"synthetic"``,
    ``"fashion-mnist"`` (IDX files), ``"cifar10"`` or ``"folder"`` (one sub-folder of images per
    class), decided from the name or the directory's files without reading them.  Raises
    :class:`DatasetNotFoundError` / :class:`DataError` as :func:`load_dataset` would."""
    if isinstance(name_or_dir, str):
        kind = _ALIASES.get(name_or_dir.partition(":")[0].strip().lower())
        if kind is not None:
            return kind
    return _directory_kind(Path(name_or_dir))


def load_dataset(name_or_dir: str | os.PathLike, **options) -> Splits:
    """Load a dataset by name, ``name:DIR`` or directory, as a :class:`Splits`.

    * ``"fashion-mnist"`` - :func:`load_fashion_mnist` from
      ``/usr/share/datasets/fashion-mnist/``; ``"fashion-mnist:DIR"`` from DIR;
    * ``"synthetic"`` - :func:`load_synthetic` (generated, no files);
    * ``"cifar10:DIR"`` - :func:`load_cifar10` (binary version);
    * ``"folder:DIR"`` - :func:`load_image_folder_splits`;
    * any other string or path (use ``./synthetic`` for a directory that
      happens to be called like a dataset) is a directory whose format is
      detected: the
      four IDX files -> Fashion-MNIST format, ``test_batch.bin`` (directly
      or in ``cifar-10-batches-bin/``) -> CIFAR-10, sub-folders -> image
      folder.

    ``options`` are passed to the selected loader (e.g. ``seed`` and
    ``n_train_per_class`` for synthetic, ``size``/``color`` for folders).
    """
    if isinstance(name_or_dir, str):
        key, sep, rest = name_or_dir.partition(":")
        kind = _ALIASES.get(key.strip().lower())
        if kind is not None:
            if kind == "synthetic":
                if rest:
                    raise ValueError(f"'synthetic' takes no directory, got {name_or_dir!r}")
                return load_synthetic(**options)
            if kind == "fashion-mnist":
                return load_fashion_mnist(rest or None, **options)
            if not rest:
                raise ValueError(f"{key!r} needs a directory: use '{key}:DIR'")
            if kind == "cifar10":
                return load_cifar10(rest, **options)
            return load_image_folder_splits(rest, **options)
    directory = Path(name_or_dir)
    return _DIRECTORY_LOADERS[_directory_kind(directory)](directory, **options)
