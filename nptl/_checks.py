"""Argument checks shared by ops and layers: every message names the argument (or layer),
what was expected and what came."""
from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def compute_dtype(x, where: str, name: str = "x") -> np.dtype:
    """The dtype an op computes in: ``x``'s if float32/float64, float64 for other real numbers."""
    dt = np.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype
    if dt in FLOAT_DTYPES:
        return dt
    if dt.kind in "biuf":
        return np.dtype(np.float64) if dt.kind != "f" or dt.itemsize > 4 else np.dtype(np.float32)
    raise TypeError(f"{where}: argument '{name}' must be real-valued, got dtype {dt}")


def as_array(a, name: str, dtype, where: str) -> np.ndarray:
    """``a`` as a C-contiguous array of ``dtype`` (a copy only when needed)."""
    if a is None:
        raise TypeError(f"{where}: argument '{name}' is None, expected an array")
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{where}: argument '{name}' must be real-valued, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def check_ndim(a: np.ndarray, ndim: int, name: str, layout: str, where: str) -> None:
    if a.ndim != ndim:
        raise ValueError(
            f"{where}: argument '{name}' must be {ndim}-D {layout}, got shape {tuple(a.shape)}"
        )


def check_shape(a: np.ndarray, expected: tuple, name: str, where: str) -> None:
    if tuple(a.shape) != tuple(expected):
        raise ValueError(
            f"{where}: argument '{name}' must have shape {tuple(expected)}, got {tuple(a.shape)}"
        )


def check_int(v, name: str, where: str, minimum: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{where}: '{name}' must be an integer >= {minimum}, got {v!r}")
    if v < minimum:
        raise ValueError(f"{where}: '{name}' must be >= {minimum}, got {v}")
    return int(v)


def all_finite(a: np.ndarray) -> bool:
    """True if no element of ``a`` is NaN or ±Inf.  A finite sum proves it (NaN and Inf
    propagate through addition) without the boolean temporary of ``isfinite``; only a sum that
    overflowed is re-checked element by element."""
    return bool(np.isfinite(np.add.reduce(a, axis=None))) or bool(np.isfinite(a).all())


def describe_non_finite(a: np.ndarray) -> str:
    """``"3 NaN, 1 +Inf, 0 -Inf of 784 values"``."""
    nan = int(np.count_nonzero(np.isnan(a)))
    pos = int(np.count_nonzero(np.isposinf(a)))
    neg = int(np.count_nonzero(np.isneginf(a)))
    return f"{nan} NaN, {pos} +Inf, {neg} -Inf of {a.size} values"


def check_finite(a: np.ndarray, name: str, where: str) -> None:
    from .errors import NonFiniteError

    if not np.isfinite(a).all():
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        raise NonFiniteError(f"{where}: '{name}' contains {bad} non-finite value(s) (NaN or Inf)")
