"""The real Fashion-MNIST from the ``dataset-fashion-mnist`` system package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nptl.data import FASHION_MNIST_DIR, load_dataset, load_fashion_mnist


@pytest.fixture(scope="module")
def fashion():
    if not Path(FASHION_MNIST_DIR).is_dir():
        pytest.skip(
            f"{FASHION_MNIST_DIR} not present (apt-get install dataset-fashion-mnist); "
            "environment-dependent dataset test"
        )
    return load_fashion_mnist()


def test_shapes_and_types(fashion):
    assert fashion.x_train.shape == (60000, 1, 28, 28)
    assert fashion.x_test.shape == (10000, 1, 28, 28)
    assert fashion.x_train.dtype == np.float32 and fashion.y_train.dtype == np.int64
    assert fashion.x_train.min() >= 0.0 and fashion.x_train.max() <= 1.0
    assert fashion.num_classes == 10


def test_label_balance(fashion):
    np.testing.assert_array_equal(np.bincount(fashion.y_train, minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(fashion.y_test, minlength=10), [1000] * 10)


def test_known_first_labels(fashion):
    # The published order of the Fashion-MNIST training set.
    np.testing.assert_array_equal(fashion.y_train[:5], [9, 0, 0, 3, 0])


def test_dispatch_by_name(fashion):
    s = load_dataset("fashion-mnist")
    np.testing.assert_array_equal(s.y_test, fashion.y_test)
