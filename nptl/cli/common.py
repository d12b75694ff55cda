"""What every subcommand shares: the user-error type, argument types that check ranges as they
parse, output-path checks made before any work, the strict JSON writer and the data options.

A subcommand reports a user mistake by raising :class:`UsageError` with a message that names the
command-line flag (``--scratch-epochs must be >= 1, got -1``); :func:`nptl.cli.main` prints it as
one line and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path


class UsageError(Exception):
    """A command-line argument, input file or output path the command cannot use."""


def log(message: str) -> None:
    """A status line for the user (stderr, so stdout keeps only results)."""
    print(message, file=sys.stderr, flush=True)


# -- argument types (argparse ``type=``): range checks at parse time --------------------------
# An ArgumentTypeError message starting with "must" is shown as "--flag must ..., got ..."
def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)


def positive_float(text: str) -> float:
    """An argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def class_list(text: str) -> list[int]:
    """An argparse type: distinct non-negative class numbers, comma-separated (``0,1,2``)."""
    try:
        out = [int(t) for t in text.split(",") if t.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated class numbers like 0,1,2, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"must name at least one class, got {text!r}")
    if min(out) < 0:
        raise argparse.ArgumentTypeError(f"must be class numbers >= 0, got {text!r}")
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"must not repeat a class, got {text!r}")
    return out


def image_size(text: str) -> tuple[int, int]:
    """An argparse type: ``H`` (square) or ``H,W`` in pixels, each >= 1."""
    try:
        parts = [int(t) for t in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"must be H or H,W in pixels (each >= 1), got {text!r}")
    return (parts[0], parts[-1])


# -- checks of paths, made before any work -----------------------------------------------------
def _writable_dir(directory: Path, flag: str, target) -> None:
    if not directory.exists():
        raise UsageError(f"{flag} {target}: directory {directory} does not exist")
    if not directory.is_dir():
        raise UsageError(f"{flag} {target}: {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {target}: no permission to write in {directory}")


def output_file(path, flag: str, suffix: str = "") -> Path:
    """The file that will be written for ``path`` (with ``suffix`` appended when missing, as the
    writer does), checked now: not a directory, in an existing writable directory."""
    target = Path(os.fspath(path) if not suffix or os.fspath(path).endswith(suffix) else os.fspath(path) + suffix)
    if target.is_dir():
        raise UsageError(f"{flag} {path}: is a directory, expected a file name")
    _writable_dir(target.parent if str(target.parent) else Path("."), flag, path)
    return target


def output_dir(path, flag: str) -> Path:
    """A directory that will be created if needed: not an existing file, and its nearest
    existing ancestor a writable directory."""
    target = Path(path)
    if target.exists():
        if not target.is_dir():
            raise UsageError(f"{flag} {path}: exists and is not a directory (this option takes a directory)")
        _writable_dir(target, flag, path)
        return target
    ancestor = target.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    _writable_dir(ancestor, flag, path)
    return target


def input_file(path, flag: str) -> Path:
    """An existing, readable regular file."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{flag} {path}: no such file")
    if p.is_dir():
        raise UsageError(f"{flag} {path}: is a directory, expected a file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{flag} {path}: no permission to read it")
    return p


# -- strict JSON --------------------------------------------------------------------------------
def strict_json(obj):
    """``obj`` with every NaN/±Inf float replaced by ``None`` (JSON ``null``), tuples as lists
    and numpy scalars/arrays as Python numbers/lists: what ``json.dumps(allow_nan=False)`` accepts."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return strict_json(obj.tolist())
    return obj


def write_json(path, obj) -> Path:
    """Write ``obj`` as strict JSON (``null`` for NaN) to ``path`` atomically: a temporary file in
    the same directory, renamed onto ``path``; removed again on any error."""
    path = Path(path)
    text = json.dumps(strict_json(obj), indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


# -- data ---------------------------------------------------------------------------------------
DATA_HELP = ("fashion-mnist, synthetic, cifar10:DIR, or a directory: the four IDX files, CIFAR-10 binary "
             "batches, or one sub-folder of PNG/JPEG images per class (default: fashion-mnist if installed, "
             "else synthetic)")


def default_data() -> str:
    from ..data import FASHION_MNIST_DIR, has_idx_files

    return "fashion-mnist" if has_idx_files(FASHION_MNIST_DIR) else "synthetic"


def add_data_option(parser, help: str = DATA_HELP) -> None:
    parser.add_argument("--data", default=None, metavar="NAME|DIR", help=help)


IMAGE_SIZE_DEFAULT = (28, 28)


def add_image_options(parser, defaults_from: str = "") -> None:
    """--image-size, --color, --skip-bad-files (image folders only)."""
    g = parser.add_argument_group(
        "image folders", "For --data DIR with one sub-folder of PNG/JPEG images per class: classes are the "
                         "sub-folder names in sorted order (class 0 = first name); DIR/train + DIR/test (or "
                         "val) are used as the splits, else 20%% of each class is held out for testing.")
    size_default = defaults_from or f"{IMAGE_SIZE_DEFAULT[0]}"
    g.add_argument("--image-size", type=image_size, default=None, metavar="H[,W]",
                   help=f"resize every image to H x W pixels (default: {size_default})")
    g.add_argument("--color", choices=("auto", "rgb", "gray"), default=None,
                   help="colour mode of the network input: rgb (3 channels), gray (1), auto = rgb if any "
                        f"image is in colour, else gray (default: {defaults_from or 'auto'})")
    g.add_argument("--skip-bad-files", action="store_true",
                   help="leave out files that cannot be read as images, listing each, instead of stopping")


def load_data(name: str, seed: int = 0, image_size=None, color=None, skip_bad_files: bool = False,
              input_shape=None):
    """The :class:`~nptl.data.Splits` for ``--data name``, with status lines; the image-folder
    options are refused for other data.  ``input_shape`` (C, H, W) of a model sets the image
    size and colour of a folder unless given."""
    from ..data import dataset_kind, load_dataset

    kind = dataset_kind(name)
    if kind == "folder" and input_shape is not None:
        image_size = image_size or tuple(input_shape[1:])
        color = color or ("rgb" if input_shape[0] == 3 else "gray")
    if kind != "folder":
        given = [flag for flag, value in (("--image-size", image_size), ("--color", color),
                                          ("--skip-bad-files", skip_bad_files)) if value]
        if given:
            raise UsageError(f"{given[0]} applies to image folders; --data {name} is {kind} data")
    if kind == "synthetic":
        log("data: synthetic (generated in code; install dataset-fashion-mnist for real images)")
        return load_dataset("synthetic", seed=seed)
    options = {}
    if kind == "folder":
        options = dict(size=image_size or IMAGE_SIZE_DEFAULT, color=color or "auto",
                       skip_bad_files=skip_bad_files, log=lambda msg: log(f"data: {msg}"))
    data = load_dataset(name, **options)
    log(f"data: {name}: {len(data.x_train)} train / {len(data.x_test)} test images of shape "
        f"{tuple(data.x_train.shape[1:])}, {len(data.class_names)} classes")
    return data


def check_classes(flag: str, classes, data, data_name: str) -> None:
    """Every class number in ``classes`` exists in ``data``."""
    if classes is None:
        return
    n = len(data.class_names)
    bad = [c for c in classes if c >= n]
    if bad:
        raise UsageError(f"{flag} {','.join(map(str, bad))} out of range: {data_name} has classes 0..{n - 1}")


def add_training_options(parser, epochs: int | None = None) -> None:
    """Options shared by the commands that train: seed, batch size, learning rate, optimizer."""
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for initialisation, shuffling, draws and augmentation")
    parser.add_argument("--batch-size", type=positive_int, default=64, metavar="N", help="mini-batch size")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate")
    parser.add_argument("--optimizer", default="adam", choices=["sgd", "momentum", "nesterov", "adam", "adamw"],
                        help="optimizer (momentum/nesterov: SGD with momentum 0.9; adamw: weight decay 0.01)")


def add_plots_option(parser) -> None:
    parser.add_argument("--plots", default=None, metavar="DIR",
                        help="write PNG figures here: curves, confusion matrix, filters, feature maps "
                             "(needs matplotlib)")


def add_output_options(parser) -> None:
    """--json, --quiet, --verbose."""
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the results to FILE as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress output, only the results")
    parser.add_argument("--verbose", action="store_true", help="also one line per epoch")
