"""Augmenter (Keras ImageDataGenerator-style affine augmentation)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nptl.data import Augmenter, affine_sample
from tests.strategies import examples


def _batch(n=8, c=3, h=12, w=10, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


def _center_of_mass(x):
    """Per-image (row, col) centre of mass of an NCHW batch."""
    m = x.sum(axis=1)
    total = m.sum(axis=(1, 2))
    rows = (m.sum(axis=2) * np.arange(m.shape[1])).sum(1) / total
    cols = (m.sum(axis=1) * np.arange(m.shape[2])).sum(1) / total
    return rows, cols


def _blob_batch(n=16, size=28):
    """A small bright square in the middle of each image."""
    x = np.zeros((n, 1, size, size), np.float32)
    x[:, :, 12:16, 12:16] = 1.0
    return x


@settings(deadline=None, max_examples=examples(30))
@given(
    flip=st.booleans(),
    ws=st.floats(0, 0.5),
    hs=st.floats(0, 0.5),
    zoom=st.floats(0, 0.5),
    shear=st.floats(0, 45),
    seed=st.integers(0, 2**31),
    dtype=st.sampled_from([np.float32, np.float64]),
    interpolation=st.sampled_from(["bilinear", "nearest"]),
)
def test_shape_dtype_range_kept(flip, ws, hs, zoom, shear, seed, dtype, interpolation):
    x = _batch(5, 2, 9, 7).astype(dtype)
    before = x.copy()
    aug = Augmenter(flip, ws, hs, zoom, shear, seed=seed, interpolation=interpolation)
    out = aug(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out is not x
    np.testing.assert_array_equal(x, before)  # input untouched
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6  # convex combos of [0,1] and fill 0


def test_inactive_is_identity_copy():
    aug = Augmenter()
    assert not aug.active
    x = _batch()
    out = aug(x)
    np.testing.assert_array_equal(out, x)
    assert out is not x and not np.shares_memory(out, x)
    for kw in (dict(horizontal_flip=True), dict(width_shift=0.1), dict(height_shift=0.1),
               dict(zoom=0.1), dict(shear=5.0), dict(rotation=10.0)):
        assert Augmenter(**kw).active, kw


def test_flip_only_mirrors_each_image_or_leaves_it():
    x = _batch(64)
    out = Augmenter(horizontal_flip=True, seed=1)(x)
    flipped = np.array([np.array_equal(o, i[..., ::-1]) for o, i in zip(out, x)])
    same = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert np.all(flipped | same)
    assert 10 < flipped.sum() < 54  # both outcomes happen, about half each
    # flipping the flipped images again gives back the originals exactly
    back = out.copy()
    back[flipped] = back[flipped][..., ::-1]
    np.testing.assert_array_equal(back, x)


def test_deterministic_by_seed():
    x = _batch(16)
    kw = dict(horizontal_flip=True, width_shift=0.2, height_shift=0.2, zoom=0.2, shear=10)
    a1, a2, b = Augmenter(**kw, seed=5), Augmenter(**kw, seed=5), Augmenter(**kw, seed=6)
    first = a1(x)
    np.testing.assert_array_equal(first, a2(x))
    assert not np.array_equal(first, b(x))
    # the stream advances, and reset() restarts it
    second = a1(x)
    assert not np.array_equal(first, second)
    a1.reset()
    np.testing.assert_array_equal(a1(x), first)


def test_affine_sample_identity_and_integer_shift():
    x = _batch(3)
    n = len(x)
    ident = np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (n, 1, 1))
    for interp in ("bilinear", "nearest"):
        np.testing.assert_array_equal(affine_sample(x, ident, interp), x)
    # move content 2 rows down and 3 columns right
    shift = ident.copy()
    shift[:, :, 2] = [-2.0, -3.0]
    for interp in ("bilinear", "nearest"):
        out = affine_sample(x, shift, interp)
        np.testing.assert_allclose(out[:, :, 2:, 3:], x[:, :, :-2, :-3], atol=1e-6)
        assert np.all(out[:, :, :2, :] == 0) and np.all(out[:, :, :, :3] == 0)  # filled with 0


def test_affine_sample_half_pixel_bilinear():
    x = np.zeros((1, 1, 3, 4), np.float32)
    x[0, 0, 1, 1] = 1.0
    m = np.array([[[1.0, 0, 0], [0, 1.0, -0.5]]])  # half a pixel to the right
    out = affine_sample(x, m, "bilinear")
    np.testing.assert_allclose(out[0, 0, 1], [0, 0.5, 0.5, 0], atol=1e-6)
    assert out.sum() == pytest.approx(1.0)


def test_width_shift_moves_mass_horizontally_only():
    x = _blob_batch()
    r0, c0 = _center_of_mass(x)
    out = Augmenter(width_shift=0.2, seed=0)(x)
    r1, c1 = _center_of_mass(out)
    np.testing.assert_allclose(r1, r0, atol=1e-4)
    dc = c1 - c0
    assert np.all(np.abs(dc) <= 0.2 * 28 + 1e-3)
    assert np.abs(dc).max() > 1.0  # it really moves
    assert (dc > 0).any() and (dc < 0).any()  # both directions
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), x.sum(axis=(1, 2, 3)), rtol=1e-4)


def test_height_shift_moves_mass_vertically_only():
    x = _blob_batch()
    r0, c0 = _center_of_mass(x)
    r1, c1 = _center_of_mass(Augmenter(height_shift=0.2, seed=0)(x))
    np.testing.assert_allclose(c1, c0, atol=1e-4)
    assert np.abs(r1 - r0).max() > 1.0 and np.all(np.abs(r1 - r0) <= 0.2 * 28 + 1e-3)


def test_zoom_changes_size_about_center():
    x = _blob_batch(32)
    out = Augmenter(zoom=0.4, seed=0)(x)
    r0, c0 = _center_of_mass(x)
    r1, c1 = _center_of_mass(out)
    np.testing.assert_allclose(r1, r0, atol=1e-3)  # scaling about the image centre
    np.testing.assert_allclose(c1, c0, atol=1e-3)
    mass = out.sum(axis=(1, 2, 3))
    assert mass.min() < 16 * 0.85 and mass.max() > 16 * 1.15  # zoom in and out happen


def test_shear_keeps_center_and_changes_image():
    x = _blob_batch(8)
    out = Augmenter(shear=30, seed=0)(x)
    assert not np.allclose(out, x)
    r0, c0 = _center_of_mass(x)
    r1, c1 = _center_of_mass(out)
    np.testing.assert_allclose(r1, r0, atol=1e-3)
    np.testing.assert_allclose(c1, c0, atol=1e-3)


def test_large_batch_is_vectorised_fast():
    import time

    x = _batch(256, 3, 32, 32)
    aug = Augmenter(True, 0.1, 0.1, 0.1, 10, seed=0)
    t0 = time.perf_counter()
    aug(x)
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.parametrize("kw", [dict(width_shift=1.0), dict(zoom=-0.1), dict(shear=90),
                                dict(interpolation="cubic")])
def test_invalid_parameters(kw):
    with pytest.raises(ValueError):
        Augmenter(**kw)


def test_rejects_bad_input():
    aug = Augmenter(horizontal_flip=True)
    with pytest.raises(ValueError):
        aug(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(TypeError):
        aug(np.zeros((2, 1, 3, 4), np.uint8))
