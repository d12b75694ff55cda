"""Array transforms: class selection, per-class sampling, splits, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nptl.data import (
    normalize,
    select_classes,
    take_per_class,
    to_nchw_float,
    train_val_split,
)
from tests.strategies import examples


def _toy(counts, seed=0):
    """x[i] encodes the example index so we can track which rows survive."""
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)]).astype(np.int64)
    y = np.random.default_rng(seed).permutation(y)
    x = np.arange(len(y), dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
    return x, y


def test_select_classes_relabels_in_given_order():
    x, y = _toy([3, 4, 5, 6])
    xs, ys = select_classes(x, y, [3, 1])
    assert ys.dtype == np.int64
    idx = xs[:, 0, 0, 0].astype(int)
    assert np.all(np.diff(idx) > 0)  # original order kept
    np.testing.assert_array_equal(ys, np.where(y[idx] == 3, 0, 1))
    np.testing.assert_array_equal(np.bincount(ys), [6, 4])


@pytest.mark.parametrize("classes", [[], [1, 1], [7], [-1]])
def test_select_classes_rejects(classes):
    x, y = _toy([2, 2])
    with pytest.raises(ValueError):
        select_classes(x, y, classes)


@settings(deadline=None, max_examples=examples(50))
@given(
    counts=st.lists(st.integers(3, 12), min_size=2, max_size=6),
    n=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_take_per_class_counts(counts, n, seed):
    x, y = _toy(counts, seed=1)
    xs, ys = take_per_class(x, y, n, seed=seed)
    np.testing.assert_array_equal(np.bincount(ys, minlength=len(counts)), [n] * len(counts))
    idx = xs[:, 0, 0, 0].astype(int)
    np.testing.assert_array_equal(y[idx], ys)  # rows stay paired with labels
    assert len(set(idx.tolist())) == len(idx)  # no duplicates
    again = take_per_class(x, y, n, seed=seed)
    np.testing.assert_array_equal(again[1], ys)
    np.testing.assert_array_equal(again[0], xs)


def test_take_per_class_too_few_names_class():
    x, y = _toy([5, 2, 5])
    with pytest.raises(ValueError) as exc:
        take_per_class(x, y, 3)
    msg = str(exc.value)
    assert "class 1" in msg and "2" in msg and "3" in msg


def test_take_per_class_num_classes_detects_absent_class():
    x, y = _toy([5, 5])
    with pytest.raises(ValueError, match="class 2 has only 0"):
        take_per_class(x, y, 1, num_classes=3)


def test_take_per_class_seed_matters():
    x, y = _toy([50, 50])
    a = take_per_class(x, y, 5, seed=0)[0]
    b = take_per_class(x, y, 5, seed=1)[0]
    assert not np.array_equal(a, b)


@settings(deadline=None, max_examples=examples(50))
@given(
    counts=st.lists(st.integers(2, 40), min_size=1, max_size=5),
    frac=st.floats(0.0, 0.9),
    seed=st.integers(0, 1000),
)
def test_train_val_split_stratified(counts, frac, seed):
    x, y = _toy(counts)
    if frac > 0 and all(np.floor(n * frac + 0.5) == 0 for n in counts):
        # every class rounds to no validation example: refused with the numbers
        with pytest.raises(ValueError, match=rf"gives an empty split: {len(y)} examples in {len(counts)} classes, "
                                             rf"{min(counts)} to {max(counts)} per class"):
            train_val_split(x, y, frac, seed=seed)
        return
    xt, yt, xv, yv = train_val_split(x, y, frac, seed=seed)
    it, iv = xt[:, 0, 0, 0].astype(int), xv[:, 0, 0, 0].astype(int)
    # partition of the input, labels stay paired
    assert sorted(it.tolist() + iv.tolist()) == list(range(len(y)))
    np.testing.assert_array_equal(y[it], yt)
    np.testing.assert_array_equal(y[iv], yv)
    vc = np.bincount(yv, minlength=len(counts))
    tc = np.bincount(yt, minlength=len(counts))
    for c, n in enumerate(counts):
        assert abs(vc[c] - n * frac) <= 1.0  # stratified up to rounding
        assert tc[c] >= 1  # every class keeps a training example


def test_train_val_split_exact_and_deterministic():
    x, y = _toy([100, 50, 10])
    _, yt, _, yv = train_val_split(x, y, 0.2, seed=3)
    np.testing.assert_array_equal(np.bincount(yv), [20, 10, 2])
    np.testing.assert_array_equal(np.bincount(yt), [80, 40, 8])
    _, _, xv2, _ = train_val_split(x, y, 0.2, seed=3)
    _, _, xv3, _ = train_val_split(x, y, 0.2, seed=4)
    np.testing.assert_array_equal(train_val_split(x, y, 0.2, seed=3)[2], xv2)
    assert not np.array_equal(xv2, xv3)
    with pytest.raises(ValueError):
        train_val_split(x, y, 1.0)


def test_normalize_per_channel_and_reuse():
    rng = np.random.default_rng(0)
    xtr = rng.normal([1.0, -2.0, 5.0], [2.0, 0.5, 3.0], size=(200, 4, 4, 3)).transpose(0, 3, 1, 2)
    xtr = xtr.astype(np.float32)
    xn, mean, std = normalize(xtr)
    assert xn.dtype == np.float32 and mean.shape == (3,) and std.shape == (3,)
    np.testing.assert_allclose(xn.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(xn.std(axis=(0, 2, 3)), 1.0, atol=1e-4)
    np.testing.assert_allclose(mean, [1.0, -2.0, 5.0], atol=0.3)
    # the test set is normalised with the training statistics, not its own
    xte = xtr[:10] + 1.0
    xten, m2, s2 = normalize(xte, mean, std)
    np.testing.assert_array_equal(m2, mean)
    np.testing.assert_allclose(xten, (xte - mean[None, :, None, None]) / std[None, :, None, None],
                               rtol=1e-6, atol=1e-6)
    assert abs(xten.mean() - xn[:10].mean() - np.mean(1.0 / std)) < 1e-3


def test_normalize_constant_and_non_4d():
    xn, mean, std = normalize(np.full((5, 1, 2, 2), 0.5, np.float32))
    assert np.all(np.isfinite(xn)) and np.all(xn == 0)
    x2 = np.arange(12, dtype=np.float32).reshape(3, 4)
    xn2, m, s = normalize(x2)
    assert m.shape == () and abs(float(xn2.mean())) < 1e-6
    with pytest.raises(ValueError):
        normalize(x2, mean=1.0)


def test_to_nchw_float():
    gray = np.array([[[0, 255], [51, 102]]], np.uint8)
    out = to_nchw_float(gray)
    assert out.shape == (1, 1, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [[0.0, 1.0], [0.2, 0.4]], atol=1e-7)
    assert out.max() == 1.0
    rgb = np.zeros((2, 3, 4, 3), np.uint8)
    rgb[..., 1] = 255
    out = to_nchw_float(rgb)
    assert out.shape == (2, 3, 3, 4)
    assert np.all(out[:, 1] == 1.0) and np.all(out[:, [0, 2]] == 0.0)
    with pytest.raises(TypeError):
        to_nchw_float(gray.astype(np.float32))
    with pytest.raises(ValueError):
        to_nchw_float(np.zeros((2, 3, 32, 32), np.uint8))  # NCHW, not channels-last
