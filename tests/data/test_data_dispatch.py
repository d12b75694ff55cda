"""`load_dataset` dispatch and package-level hygiene."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nptl.data
from nptl.data import DataError, DatasetNotFoundError, load_dataset


def test_idx_directory_detected(make_idx_dir):
    d, arrays = make_idx_dir(gz=False)
    for spec in (str(d), d, f"fashion-mnist:{d}"):
        s = load_dataset(spec)
        np.testing.assert_array_equal(s.y_train, arrays["train-labels-idx1-ubyte"])


def test_unknown_directory(tmp_path):
    with pytest.raises(DatasetNotFoundError) as exc:
        load_dataset(str(tmp_path / "nowhere"))
    msg = str(exc.value)
    assert "nowhere" in msg and "synthetic" in msg


def test_directory_of_unknown_format(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match="format"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("spec", ["cifar10", "folder", "synthetic:/tmp"])
def test_name_needs_or_forbids_directory(spec):
    with pytest.raises(ValueError):
        load_dataset(spec)


def test_unknown_option_rejected():
    with pytest.raises(TypeError):
        load_dataset("synthetic", colour="rgb")


def test_public_api_exported():
    for name in nptl.data.__all__:
        assert hasattr(nptl.data, name), name


def test_import_is_light():
    """Importing nptl.data adds no heavy module beyond what `import nptl` already loads."""
    code = (
        "import sys; heavy = ('PIL', 'numba', 'torch', 'tqdm', 'scipy'); "
        "import nptl; before = {m for m in heavy if m in sys.modules}; "
        "import nptl.data; after = {m for m in heavy if m in sys.modules}; "
        "print(','.join(sorted(after - before)))"
    )
    root = Path(nptl.data.__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=root)
    assert out.stdout.strip() == ""


def test_missing_pillow_gives_install_hint(tmp_path, monkeypatch):
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "a.png").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `import PIL` fail
    with pytest.raises(ImportError, match=r"pip install nptl\[images\]"):
        nptl.data.load_image_folder(tmp_path)
