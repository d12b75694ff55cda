"""The nptl command line end to end, on small generated data written as IDX files."""
import json
import subprocess
import sys

import numpy as np
import pytest

from nptl import io
from nptl.cli import main
from nptl.data import make_synthetic
from tests.data.conftest import idx_bytes


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    """The synthetic set (10 classes, 28x28) in Fashion-MNIST's file layout: 60 train / 20 test per class."""
    d = tmp_path_factory.mktemp("idx")
    x, y = make_synthetic(n_per_class=80, seed=0)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    test = np.zeros(len(y), bool)
    for c in range(10):
        test[np.flatnonzero(y == c)[:20]] = True
    files = {"train-images-idx3-ubyte": x[~test], "train-labels-idx1-ubyte": y[~test].astype(np.uint8),
             "t10k-images-idx3-ubyte": x[test], "t10k-labels-idx1-ubyte": y[test].astype(np.uint8)}
    for stem, arr in files.items():
        (d / stem).write_bytes(idx_bytes(arr))
    return d


def test_transfer_end_to_end(idx_dir, tmp_path, capsys):
    out = tmp_path / "result.json"
    save = tmp_path / "ckpt"
    rc = main(["transfer", "--data", str(idx_dir), "--source-classes", "0,1,2,3,4", "--target-classes", "5,6,7,8,9",
               "--labels-per-class", "5", "--epochs", "1", "--scratch-epochs", "2", "--head-epochs", "2",
               "--finetune-epochs", "1", "--repeats", "2", "--json", str(out), "--save", str(save), "--quiet"])
    assert rc == 0
    table = capsys.readouterr().out
    assert "| arm | test accuracy | ± std | per draw | macro F1 | seconds |" in table
    result = json.loads(out.read_text())
    assert result["data"] == str(idx_dir)
    assert set(result["arms"]) == {"scratch", "frozen", "finetune"}
    for arm in result["arms"].values():
        assert 0.0 <= arm["test_accuracy"] <= 1.0 and arm["seconds"] >= 0 and 0.0 <= arm["macro_f1"] <= 1.0
        assert len(arm["runs"]) == 2
        assert arm["test_accuracy"] == pytest.approx(np.mean([r["test_accuracy"] for r in arm["runs"]]))
    assert 0.0 <= result["source"]["test_accuracy"] <= 1.0
    # the frozen arm's base is the source model's base, bit for bit
    source, frozen = io.load(save / "source.npz"), io.load(save / "frozen.npz")
    for name in ("conv1", "conv2", "conv3"):
        np.testing.assert_array_equal(source[name].params["w"], frozen[name].params["w"])
    finetune = io.load(save / "finetune.npz")
    assert not np.array_equal(finetune["conv3"].params["w"], source["conv3"].params["w"])
    np.testing.assert_array_equal(finetune["conv2"].params["w"], source["conv2"].params["w"])


def test_train_evaluate_summary(idx_dir, tmp_path, capsys):
    ckpt = tmp_path / "m.npz"
    assert main(["train", "--data", str(idx_dir), "--epochs", "2", "--save", str(ckpt), "--quiet",
                 "--decay-every", "1",
                 "--val-fraction", "0.2", "--patience", "2"]) == 0
    out = capsys.readouterr().out
    assert "confusion matrix" in out and "test accuracy" in out
    assert main(["evaluate", str(ckpt), "--data", str(idx_dir), "--json", str(tmp_path / "ev.json")]) == 0
    out = capsys.readouterr().out
    assert "macro avg" in out and "Ankle boot" in out  # IDX folders get Fashion-MNIST class names
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert np.array(ev["confusion_matrix"]).sum() == 200
    assert main(["summary", str(ckpt)]) == 0
    assert "Trainable params: 93,322" in capsys.readouterr().out


def test_clear_errors(idx_dir, tmp_path, capsys):
    assert main(["transfer", "--data", str(tmp_path / "missing"), "--quiet"]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope.npz"), "--data", str(idx_dir)]) == 2
    assert "nope.npz" in capsys.readouterr().err
    assert main(["transfer", "--data", str(idx_dir), "--target-classes", "5,12", "--quiet"]) == 2
    assert "--target-classes 12 out of range" in capsys.readouterr().err


def test_python_dash_m_runs():
    out = subprocess.run([sys.executable, "-m", "nptl", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("transfer", "train", "evaluate", "summary"):
        assert cmd in out


def test_transfer_on_the_builtin_synthetic_set(tmp_path, capsys):
    out = tmp_path / "synthetic.json"
    assert main(["transfer", "--data", "synthetic", "--labels-per-class", "5", "--epochs", "1",
                 "--scratch-epochs", "1", "--head-epochs", "1", "--finetune-epochs", "1", "--repeats", "1",
                 "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["data"] == "synthetic" and result["config"]["repeats"] == 1
    assert result["source"]["train_images"] == 5000  # 1,000 generated images for each of 5 source classes
    assert result["source"]["test_accuracy"] > 0.3   # one epoch already learns the shapes (chance: 0.2)
    assert "| finetune |" in capsys.readouterr().out
