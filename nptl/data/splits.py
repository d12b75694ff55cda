"""The :class:`Splits` container returned by every dataset loader."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Splits"]


class Splits(NamedTuple):
    """A train/test pair of a labelled image dataset.

    ``x_train`` / ``x_test`` are float32 arrays in NCHW layout with values in
    ``[0, 1]``; ``y_train`` / ``y_test`` are int64 label vectors with values in
    ``0 .. len(class_names) - 1``; ``class_names`` is a tuple of strings.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        """Shape ``(C, H, W)`` of one image."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:  # arrays are too big for the default repr
        return (
            f"Splits(x_train={self.x_train.shape} {self.x_train.dtype}, "
            f"x_test={self.x_test.shape} {self.x_test.dtype}, "
            f"classes={self.num_classes})"
        )
