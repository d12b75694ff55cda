"""The embedded synthetic dataset."""

from __future__ import annotations


import numpy as np
import pytest

from nptl.data import SYNTHETIC_CLASSES, Splits, load_dataset, load_synthetic, make_synthetic


def test_shape_dtype_range_balance():
    x, y = make_synthetic(n_per_class=30, seed=0)
    assert x.shape == (300, 28, 28) and x.dtype == np.uint8
    assert y.shape == (300,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [30] * 10)
    assert len(SYNTHETIC_CLASSES) == 10
    # shuffled, not sorted by class
    assert np.any(np.diff(y) < 0)
    # images use the dynamic range: bright strokes over a darker background
    assert x.max() == 255 and np.median(x) < 80


def test_deterministic_by_seed():
    a = make_synthetic(20, seed=3)
    b = make_synthetic(20, seed=3)
    c = make_synthetic(20, seed=4)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].tobytes() != c[0].tobytes()


def test_other_size():
    x, y = make_synthetic(3, seed=0, size=40)
    assert x.shape == (30, 40, 40)


def test_load_synthetic_splits():
    s = load_synthetic(n_train_per_class=20, n_test_per_class=5, seed=1)
    assert isinstance(s, Splits)
    assert s.x_train.shape == (200, 1, 28, 28) and s.x_test.shape == (50, 1, 28, 28)
    assert s.x_train.dtype == np.float32 and s.y_test.dtype == np.int64
    assert 0.0 <= s.x_train.min() and s.x_train.max() <= 1.0
    assert s.class_names == SYNTHETIC_CLASSES
    np.testing.assert_array_equal(np.bincount(s.y_test), [5] * 10)
    # train and test come from different streams: no shared image
    train = {im.tobytes() for im in s.x_train}
    assert not any(im.tobytes() in train for im in s.x_test)
    s2 = load_dataset("synthetic", n_train_per_class=20, n_test_per_class=5, seed=1)
    np.testing.assert_array_equal(s2.x_test, s.x_test)


def _linear_baselines(seed=0):
    x, y = make_synthetic(300, seed=seed)
    xt, yt = make_synthetic(100, seed=seed + 1000)
    a = x.reshape(len(x), -1) / 255.0
    at = xt.reshape(len(xt), -1) / 255.0
    # nearest class mean
    means = np.stack([a[y == c].mean(0) for c in range(10)])
    d = ((at[:, None, :] - means[None]) ** 2).sum(-1)
    ncm = float((d.argmin(1) == yt).mean())
    # ridge-regularised least squares on one-hot targets
    a1 = np.hstack([a, np.ones((len(a), 1))])
    at1 = np.hstack([at, np.ones((len(at), 1))])
    w = np.linalg.solve(a1.T @ a1 + 1.0 * np.eye(a1.shape[1]), a1.T @ np.eye(10)[y])
    lsq = float(((at1 @ w).argmax(1) == yt).mean())
    return ncm, lsq


def test_hard_for_linear_models():
    ncm, lsq = _linear_baselines()
    print(f"\nsynthetic held-out accuracy: nearest-class-mean {ncm:.3f}, least-squares {lsq:.3f}")
    # far below what a small CNN reaches (~0.9+), yet clearly above chance (0.1)
    assert ncm < 0.6 and lsq < 0.6
    assert ncm > 0.15 and lsq > 0.15


@pytest.mark.parametrize("bad", [dict(n_per_class=-1), dict(size=4)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        make_synthetic(**bad)
