"""Figures: every PNG exists, decodes and has its size; the confusion matrix drawn is nptl.metrics';
matplotlib is needed only when plotting (and its absence is one clear line)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from nptl import io, metrics, plots
from nptl.cli import main
from nptl.models import seed_cnn
from tests.data.conftest import idx_bytes

pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
from matplotlib.image import imread  # noqa: E402


def _png_size(path):
    img = imread(str(path))  # decodes the PNG
    return img.shape[1], img.shape[0]


def _expected(kind):
    w, h = plots.SIZES[kind]
    return round(w * plots.DPI), round(h * plots.DPI)


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    """The synthetic shapes in Fashion-MNIST's file layout: 12 train and 12 test images per class."""
    from nptl.data import make_synthetic

    d = tmp_path_factory.mktemp("idx-plots")
    x, y = make_synthetic(n_per_class=24, seed=2)
    test = np.zeros(len(y), bool)
    for c in range(10):
        test[np.flatnonzero(y == c)[:12]] = True
    for stem, arr in {"train-images-idx3-ubyte": x[~test], "train-labels-idx1-ubyte": y[~test].astype(np.uint8),
                      "t10k-images-idx3-ubyte": x[test], "t10k-labels-idx1-ubyte": y[test].astype(np.uint8)}.items():
        (d / stem).write_bytes(idx_bytes(arr))
    return d


def test_each_figure_has_its_size(tmp_path):
    model = seed_cnn((1, 28, 28), 4, seed=0)
    image = np.random.default_rng(0).random((1, 28, 28)).astype(np.float32)
    hist = {"loss": [1.0, 0.5, 0.3], "accuracy": [0.3, 0.6, 0.8], "val_loss": [1.1, 0.7, 0.6],
            "val_accuracy": [0.2, 0.5, float("nan")]}
    ev = metrics.classification_report([0, 1, 2, 3, 3], [0, 1, 3, 3, 3], 4, ["a", "b", "c", "d"])
    paths = plots.write_all(tmp_path / "out", {"frozen": hist, "finetune": hist}, ev, model, image)
    names = sorted(p.split("/")[-1] for p in paths)
    assert names == ["confusion.png", "curves.png", "feature_maps_conv1.png", "feature_maps_conv2.png",
                     "feature_maps_conv3.png", "filters.png", "image.png"]
    for p in paths:
        kind = next(k for k in ("curves", "confusion", "filters") if k in p) if "feature" not in p and "image" not in p else "feature_maps"
        assert _png_size(p) == _expected(kind), p
    assert not list((tmp_path / "out").glob("*.tmp*"))  # atomic writes leave nothing behind


def test_confusion_figure_shows_the_metrics_counts():
    y_true = np.array([0, 0, 1, 2, 2, 2, 1, 0])
    y_pred = np.array([0, 1, 1, 2, 0, 2, 1, 0])
    ev = metrics.classification_report(y_true, y_pred, 3)
    fig = plots.confusion_figure(ev)
    texts = [int(t.get_text()) for t in fig.axes[0].texts]
    want = metrics.confusion_matrix(y_true, y_pred, 3)
    assert np.array_equal(np.array(texts).reshape(3, 3), want)
    assert want.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]


def test_train_plots_and_plot_command(idx_dir, tmp_path, monkeypatch, capsys):
    drawn = []
    real = plots.confusion_figure
    monkeypatch.setattr(plots, "confusion_figure", lambda ev, title="": drawn.append(ev) or real(ev, title))
    out = tmp_path / "figs"
    ckpt, result = tmp_path / "m.npz", tmp_path / "r.json"
    assert main(["train", "--data", str(idx_dir), "--epochs", "2", "--val-fraction", "0.25", "--quiet",
                 "--plots", str(out), "--save", str(ckpt), "--json", str(result)]) == 0
    for name in ("curves", "confusion", "filters"):
        assert _png_size(out / f"{name}.png") == _expected(name)
    assert _png_size(out / "feature_maps_conv3.png") == _expected("feature_maps")
    # the confusion matrix drawn is nptl.metrics' for the saved model's test predictions
    model = io.load(ckpt)
    from nptl.data import load_dataset

    data = load_dataset(str(idx_dir))
    want = metrics.confusion_matrix(data.y_test, model.predict(data.x_test).argmax(axis=1), 10)
    assert np.array_equal(drawn[0].confusion, want)
    assert json.loads(result.read_text())["test"]["confusion_matrix"] == want.tolist()
    capsys.readouterr()
    assert main(["plot", str(result), "--out", str(tmp_path / "again")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "again" / "curves.png"),
                                               str(tmp_path / "again" / "confusion.png")]
    bare = tmp_path / "history.json"
    bare.write_text(json.dumps(json.loads(result.read_text())["history"]))
    assert main(["plot", str(bare), "--out", str(tmp_path / "bare")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "bare" / "curves.png")]
    (tmp_path / "other.json").write_text('{"x": 1}')
    assert main(["plot", str(tmp_path / "other.json")]) == 2
    assert "nor a history with per-epoch 'loss'" in capsys.readouterr().err
    assert main(["plot", str(ckpt), "--data", str(idx_dir), "--image", "3", "--out", str(tmp_path / "m")]) == 0
    written = capsys.readouterr().out.split()
    assert len(written) == 7 and all(_png_size(p) for p in written)


def test_transfer_plots_one_line_per_arm(idx_dir, tmp_path, monkeypatch):
    seen = {}
    real = plots.curves
    monkeypatch.setattr(plots, "curves", lambda h, path, title="": seen.update(h) or real(h, path, title))
    out = tmp_path / "figs"
    assert main(["transfer", "--data", str(idx_dir), "--labels-per-class", "3", "--epochs", "1", "--scratch-epochs",
                 "2", "--head-epochs", "2", "--finetune-epochs", "1", "--repeats", "1", "--quiet",
                 "--plots", str(out), "--json", str(tmp_path / "t.json")]) == 0
    assert list(seen) == ["scratch", "frozen", "finetune"]
    assert [len(seen[a]["loss"]) for a in seen] == [2, 2, 3]  # finetune: the frozen phase, then fine-tuning
    assert seen["finetune"]["loss"][:2] == seen["frozen"]["loss"]
    for name in ("curves", "confusion", "filters"):
        assert _png_size(out / f"{name}.png") == _expected(name)
    assert json.loads((tmp_path / "t.json").read_text())["histories"]["scratch"]["loss"] == seen["scratch"]["loss"]


def test_without_matplotlib_plots_say_how_to_install(idx_dir, tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # import matplotlib now fails
    with pytest.raises(plots.PlotError, match=r'pip install -e "\.\[plot\]"'):
        plots.require()
    # refused before any training starts
    assert main(["train", "--data", str(idx_dir), "--epochs", "50", "--quiet", "--plots", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"nptl train: error: {plots.INSTALL}"
    assert main(["plot", str(tmp_path / "x.json")]) == 2
    assert plots.INSTALL in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_nptl_never_imports_matplotlib_or_pyplot_by_itself(tmp_path):
    code = ("import sys, numpy as np, nptl, nptl.cli, nptl.plots, nptl.explain\n"
            "print('matplotlib' in sys.modules)\n"
            "from nptl.metrics import classification_report\n"
            f"nptl.plots.confusion(classification_report([0, 1], [0, 0], 2), {str(tmp_path / 'c.png')!r})\n"
            "print('matplotlib.pyplot' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]  # no pyplot: no global figure state, no backend switched
    assert (tmp_path / "c.png").exists()
