"""Image-folder reader (needs Pillow, the optional `images` extra)."""

from __future__ import annotations

import numpy as np
import pytest

from nptl.data import (
    DataError,
    DatasetNotFoundError,
    load_dataset,
    load_image_folder,
    load_image_folder_splits,
)

Image = pytest.importorskip("PIL.Image", reason="Pillow (pip install nptl[images]) not installed")


def _save(path, array, fmt=None):
    Image.fromarray(array).save(path, format=fmt)


@pytest.fixture
def folder(tmp_path):
    """Three classes; 'b_dark' images are dark, 'c_bright' images are bright."""
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for name, value, n in (("c_bright", 230, 3), ("a_mid", 120, 2), ("b_dark", 20, 4)):
        d = root / name
        d.mkdir(parents=True)
        for i in range(n):
            img = np.full((40, 30, 3), value, np.uint8)
            img[..., 0] = value  # keep colour uniform so JPEG stays close to value
            if i % 2:
                _save(d / f"img{i}.JPG", img, fmt="JPEG")
            else:
                _save(d / f"img{i}.png", img)
    (root / "a_mid" / "notes.txt").write_text("not an image, ignored")
    (root / "a_mid" / ".hidden.png").write_bytes(b"ignored hidden file")
    (root / ".cache").mkdir()
    return root


def test_gray_read(folder):
    x, y, names = load_image_folder(folder)
    assert names == ("a_mid", "b_dark", "c_bright")  # sorted
    assert x.shape == (9, 28, 28) and x.dtype == np.uint8
    assert y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [2, 4, 3])
    for label, value in enumerate((120, 20, 230)):
        assert np.abs(x[y == label].astype(int) - value).max() <= 3


def test_rgb_and_size(folder):
    x, y, _ = load_image_folder(folder, size=(16, 20), color="rgb")
    assert x.shape == (9, 16, 20, 3)


def test_classes_order_defines_labels(folder):
    x, y, names = load_image_folder(folder, classes=["c_bright", "b_dark"])
    assert names == ("c_bright", "b_dark")
    np.testing.assert_array_equal(np.bincount(y), [3, 4])
    assert x[y == 0].mean() > 200 and x[y == 1].mean() < 50


def test_unknown_class(folder):
    with pytest.raises(DatasetNotFoundError, match="zebra"):
        load_image_folder(folder, classes=["zebra"])


def test_unreadable_image_names_file(folder):
    bad = folder / "b_dark" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(DataError) as exc:
        load_image_folder(folder)
    assert str(bad) in str(exc.value)


def test_truncated_jpeg_names_file(folder):
    src = folder / "b_dark" / "img1.JPG"
    bad = folder / "b_dark" / "cut.jpg"
    bad.write_bytes(src.read_bytes()[:40])
    with pytest.raises(DataError, match="cut.jpg"):
        load_image_folder(folder)


def test_empty_class_folder(folder):
    (folder / "d_empty").mkdir()
    with pytest.raises(DataError) as exc:
        load_image_folder(folder)
    assert "d_empty" in str(exc.value)


def test_folder_without_subfolders(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="sub-folder"):
        load_image_folder(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError):
        load_image_folder(tmp_path / "absent")


def test_bad_color(folder):
    with pytest.raises(ValueError, match="color"):
        load_image_folder(folder, color="cmyk")


def test_splits_single_folder_stratified(folder):
    s = load_image_folder_splits(folder, test_fraction=0.5, seed=0)
    assert s.x_train.shape[1:] == (1, 28, 28) and s.x_train.dtype == np.float32
    assert len(s.y_train) + len(s.y_test) == 9
    np.testing.assert_array_equal(np.bincount(s.y_test, minlength=3), [1, 2, 2])
    assert s.class_names == ("a_mid", "b_dark", "c_bright")
    # directory detection picks the image-folder loader
    s2 = load_dataset(folder, test_fraction=0.5, seed=0)
    np.testing.assert_array_equal(s2.y_test, s.y_test)


def test_splits_train_test_layout(tmp_path):
    for part, n in (("train", 3), ("test", 1)):
        for name, value in (("cat", 10), ("dog", 250)):
            d = tmp_path / part / name
            d.mkdir(parents=True)
            for i in range(n):
                _save(d / f"{i}.png", np.full((8, 8), value, np.uint8))
    s = load_dataset(f"folder:{tmp_path}", size=8, color="rgb")
    assert s.x_train.shape == (6, 3, 8, 8) and s.x_test.shape == (2, 3, 8, 8)
    assert s.class_names == ("cat", "dog")
    assert s.x_test[s.y_test == 1].min() > 0.9
