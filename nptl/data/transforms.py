"""Array-level dataset transforms: class selection, sub-sampling, splitting,
normalisation and layout conversion.

All functions are pure: they return new arrays and never modify their inputs.
Random choices are driven by an explicit ``seed`` so results are
reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "select_classes",
    "take_per_class",
    "train_val_split",
    "normalize",
    "to_nchw_float",
]


def _check_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {y.shape}")
    if x.shape[:1] != y.shape:
        raise ValueError(
            f"x and y disagree on the number of examples: x has {x.shape[0] if x.ndim else 0}, "
            f"y has {y.shape[0]}"
        )
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    return x, y


def select_classes(
    x: np.ndarray, y: np.ndarray, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Keep only examples whose label is in ``classes`` and relabel them.

    The new label of an example is the *position* of its old label in
    ``classes``: ``select_classes(x, y, [7, 2])`` maps label 7 to 0 and label
    2 to 1.  The original example order is preserved.

    Raises ``ValueError`` if ``classes`` is empty, has duplicates, or names a
    label that does not occur in ``y``.
    """
    x, y = _check_xy(x, y)
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("classes must not be empty")
    if min(classes) < 0:
        raise ValueError(f"classes must be non-negative labels, got {classes}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes contains duplicates: {classes}")
    present = set(np.unique(y).tolist())
    missing = [c for c in classes if c not in present]
    if missing:
        raise ValueError(
            f"classes {missing} do not occur in the labels (labels present: {sorted(present)})"
        )
    lut_size = max(max(classes), int(y.max())) + 1
    lut = np.full(lut_size, -1, dtype=np.int64)
    lut[classes] = np.arange(len(classes), dtype=np.int64)
    keep = (y >= 0) & (lut[np.clip(y, 0, None)] >= 0)
    return x[keep], lut[y[keep]]


def take_per_class(
    x: np.ndarray,
    y: np.ndarray,
    n: int,
    seed: int = 0,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly pick exactly ``n`` labelled examples of every class.

    The classes are the distinct labels of ``y``, or ``0 .. num_classes-1``
    when ``num_classes`` is given (then a class absent from ``y`` is an
    error too).  The chosen examples keep their original relative order.

    Raises ``ValueError`` naming the class and the counts if some class has
    fewer than ``n`` examples.
    """
    x, y = _check_xy(x, y)
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    classes = np.arange(num_classes) if num_classes is not None else np.unique(y)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        if idx.size < n:
            raise ValueError(
                f"class {int(c)} has only {idx.size} examples but {n} per class were requested"
            )
        chosen.append(rng.choice(idx, size=n, replace=False))
    sel = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return x[sel], y[sel]


def _val_count(count: int, fraction: float) -> int:
    """Validation examples taken from a class of ``count``: ``round(count·fraction)``, leaving
    at least one for training."""
    k = int(np.floor(count * fraction + 0.5))
    return min(k, count - 1) if count > 1 else 0


def train_val_split(
    x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int = 0, name: str = "val_fraction"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified split into ``(x_train, y_train, x_val, y_val)``.

    For each class ``round(count * val_fraction)`` randomly chosen examples
    go to the validation part and the rest to the training part (at least
    one stays), so the class proportions of both parts match the input (up
    to rounding).  ``val_fraction`` must lie in ``[0, 1)``.  Both parts keep
    the original relative order of the examples.

    A positive ``val_fraction`` that would leave the validation part empty
    (every class too small for ``round(count * val_fraction) >= 1``) raises
    ``ValueError`` with the per-class counts and the smallest class size
    that would give one validation example; ``name`` is the argument's name
    in that message.
    """
    x, y = _check_xy(x, y)
    val_fraction = float(val_fraction)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {val_fraction}")
    classes, counts = np.unique(y, return_counts=True)
    if val_fraction > 0 and not any(_val_count(int(c), val_fraction) for c in counts):
        needed = 0.5 / val_fraction  # round(count·fraction) >= 1  <=>  count >= 0.5 / fraction
        if np.isfinite(needed) and needed < 2**53:
            needed = max(2, int(np.ceil(needed)))
            while not _val_count(needed, val_fraction):  # exact .5 rounding
                needed += 1
        else:
            needed = f"{needed:.3g}"
        raise ValueError(
            f"{name} {val_fraction:g} gives an empty split: {len(y)} examples in {len(classes)} "
            f"classes, {int(counts.min()) if counts.size else 0} to {int(counts.max()) if counts.size else 0} "
            f"per class, and round(count × {val_fraction:g}) is 0 for every class; a class needs at "
            f"least {needed} examples for one to be held out at this fraction"
        )
    rng = np.random.default_rng(seed)
    is_val = np.zeros(y.shape[0], dtype=bool)
    for c in classes:
        idx = np.flatnonzero(y == c)
        k = _val_count(idx.size, val_fraction)
        if k:
            is_val[rng.choice(idx, size=k, replace=False)] = True
    return x[~is_val], y[~is_val], x[is_val], y[is_val]


def normalize(
    x: np.ndarray,
    mean: np.ndarray | float | None = None,
    std: np.ndarray | float | None = None,
    eps: float = 1e-7,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardise ``x`` to zero mean and unit variance.

    For a 4-D NCHW array the statistics are per channel (shape ``(C,)``);
    for any other shape they are global scalars (0-d arrays).  Pass the
    ``mean`` and ``std`` returned for the training set to normalise the test
    set with the *training* statistics::

        x_train_n, mean, std = normalize(x_train)
        x_test_n, _, _ = normalize(x_test, mean, std)

    Returns ``(x_norm, mean, std)`` with ``x_norm`` float32.  ``std`` is
    clamped below by ``eps`` so constant inputs do not divide by zero.
    """
    x = np.asarray(x)
    if (mean is None) != (std is None):
        raise ValueError("pass both mean and std, or neither")
    per_channel = x.ndim == 4
    if mean is None:
        axes = (0, 2, 3) if per_channel else None
        x64 = x.astype(np.float64, copy=False)
        mean = x64.mean(axis=axes)
        std = np.maximum(x64.std(axis=axes), eps)
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if per_channel and mean.ndim == 1:
        if mean.shape[0] != x.shape[1] or std.shape != mean.shape:
            raise ValueError(
                f"mean/std have shape {mean.shape}/{std.shape} but x has {x.shape[1]} channels"
            )
        m, s = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
    else:
        m, s = mean, std
    x_norm = ((x.astype(np.float32, copy=False) - m) / s).astype(np.float32, copy=False)
    return x_norm, mean, std


def to_nchw_float(images: np.ndarray) -> np.ndarray:
    """Convert uint8 images to float32 NCHW in ``[0, 1]``.

    Accepts ``(N, H, W)`` grayscale (gets one channel) or ``(N, H, W, C)``
    channels-last with ``C`` in 1..4.  Any other dtype or layout is a
    ``TypeError`` / ``ValueError`` rather than a silent guess.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"to_nchw_float expects uint8 images, got dtype {images.dtype}")
    if images.ndim == 3:
        out = images[:, None, :, :]
    elif images.ndim == 4:
        if not 1 <= images.shape[3] <= 4:
            raise ValueError(
                f"expected channels-last (N, H, W, C) with C in 1..4, got shape {images.shape}"
            )
        out = images.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"expected (N, H, W) or (N, H, W, C) images, got shape {images.shape}")
    result = np.empty(out.shape, dtype=np.float32)
    np.divide(out, np.float32(255.0), out=result, casting="unsafe")
    return result
