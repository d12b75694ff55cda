"""Figures of training and of what a network learned, as PNG files (optional extra ``plot``).

- :func:`curves`: loss and accuracy per epoch, training solid and validation dashed, one colour
  per run (``train`` for ``nptl train``; ``scratch``/``frozen``/``finetune`` for ``nptl transfer``);
- :func:`confusion`: the confusion matrix of a :class:`nptl.metrics.Evaluation` as a heat map
  with its counts written in the cells;
- :func:`filters`: the first convolution's kernels, one small image per filter (input channels
  averaged), on one colour scale centred at 0;
- :func:`feature_maps`: one image through the model, the output of every convolution layer
  (one PNG per layer, up to 32 channels).

matplotlib is imported only inside these functions, and only its object-oriented API: each
figure is a ``matplotlib.figure.Figure`` drawn on its own Agg canvas (headless, no display), so
no pyplot state and no process-wide backend is touched.  Without matplotlib every function
raises :class:`PlotError` saying how to install it.  Files are written atomically.
"""
from __future__ import annotations

import math
import os

import numpy as np

INSTALL = 'plots need matplotlib, the "plot" extra: pip install -e ".[plot]" (or: pip install matplotlib)'
DPI = 100
#: figure sizes in inches; at DPI the PNGs are these times 100 pixels
SIZES = {"curves": (10, 4), "confusion": (7, 6), "filters": (8, 4.5), "feature_maps": (8, 4.5)}


class PlotError(ValueError):
    """Plots cannot be made (matplotlib missing, nothing to plot)."""


def require():
    """``(Figure, FigureCanvasAgg)`` from matplotlib, or :class:`PlotError` with the install hint."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError(INSTALL) from None
    return Figure, FigureCanvasAgg


def _figure(kind: str):
    Figure, Canvas = require()
    fig = Figure(figsize=SIZES[kind], dpi=DPI)
    Canvas(fig)
    return fig


def _save(fig, path) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.png"
    try:
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def curves(histories: dict, path, title: str = "") -> str:
    """Loss (left) and accuracy (right) per epoch for each run in ``histories``
    (``name -> {"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...]}``,
    as :class:`nptl.train.History` records them); validation lines are drawn where finite."""
    if not histories or not any(h.get("loss") for h in histories.values()):
        raise PlotError("no training history to plot")
    from matplotlib.ticker import MaxNLocator

    fig = _figure("curves")
    axes = fig.subplots(1, 2)
    single = len(histories) == 1
    for k, (name, h) in enumerate(histories.items()):
        colour = f"C{k}"
        for ax, key in zip(axes, ("loss", "accuracy")):
            train = np.asarray(h.get(key, []), dtype=float)
            epochs = np.arange(1, len(train) + 1)
            width = 1.5 + 1.5 * (len(histories) - 1 - k)  # earlier runs wider: lines that coincide stay visible
            ax.plot(epochs, train, color=colour, lw=width, marker="o", ms=3, label="training" if single else name)
            val = np.asarray(h.get(f"val_{key}", []), dtype=float)
            if val.size and np.isfinite(val).any():
                ax.plot(np.arange(1, len(val) + 1), val, color=colour, lw=width, ls="--", marker="s", ms=3,
                        label="validation" if single else f"{name} (validation)")
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    return _save(fig, path)


def confusion(evaluation, path, title: str = "") -> str:
    """Heat map of ``evaluation.confusion`` (rows: true class, columns: predicted), each cell
    showing its count; ``evaluation`` is a :class:`nptl.metrics.Evaluation`."""
    return _save(confusion_figure(evaluation, title), path)


def confusion_figure(evaluation, title: str = ""):
    """The figure :func:`confusion` saves (its cell texts are the counts)."""
    m = np.asarray(evaluation.confusion)
    names = [str(n) for n in evaluation.class_names]
    fig = _figure("confusion")
    ax = fig.subplots()
    im = ax.imshow(m, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    K = len(names)
    ax.set_xticks(range(K), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(K), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    cut = m.max(initial=0) / 2
    for t in range(K):
        for p in range(K):
            ax.text(p, t, str(int(m[t, p])), ha="center", va="center", fontsize=7 if K > 6 else 9,
                    color="white" if m[t, p] > cut else "black")
    ax.set_title(title or f"confusion matrix (accuracy {evaluation.accuracy:.4f})")
    fig.tight_layout()
    return fig


def _conv_layers(model) -> list:
    return [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]


def _grid(fig, count: int, title: str):
    cols = min(count, 8)
    rows = math.ceil(count / cols)
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title)
    return axes


def filters(model, path) -> str:
    """The kernels ``w[f]`` of the model's first Conv2D, averaged over input channels, one
    panel per filter on a common colour scale centred at 0 (red positive, blue negative)."""
    convs = _conv_layers(model)
    if not convs:
        raise PlotError(f"model '{model.name}' has no Conv2D layer: no filters to show")
    layer = convs[0]
    w = layer.params["w"].mean(axis=1)
    lim = float(np.abs(w).max()) or 1.0
    fig = _figure("filters")
    axes = _grid(fig, w.shape[0], f"{layer.name}: {w.shape[0]} filters {w.shape[1]}×{w.shape[2]} "
                                  f"(mean over {layer.params['w'].shape[1]} input channel(s))")
    for f, ax in enumerate(axes[: w.shape[0]]):
        ax.imshow(w[f], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(str(f), fontsize=7)
    return _save(fig, path)


def feature_maps(model, image, directory, max_channels: int = 32) -> list:
    """Run ``image (C, H, W)`` through ``model`` and write ``feature_maps_<layer>.png`` for every
    Conv2D layer: its output channels (up to ``max_channels``), each on its own scale."""
    convs = _conv_layers(model)
    if not convs:
        raise PlotError(f"model '{model.name}' has no Conv2D layer: no feature maps to show")
    paths, x = [], np.asarray(image)[None]
    for layer in model.layers:
        x = layer.forward(x)
        if layer in convs:
            maps = x[0, :max_channels]
            fig = _figure("feature_maps")
            axes = _grid(fig, maps.shape[0], f"{layer.name}: output channels 0..{maps.shape[0] - 1} of "
                                             f"{x.shape[1]}, {x.shape[2]}×{x.shape[3]} (before ReLU)")
            for c, ax in enumerate(axes[: maps.shape[0]]):
                ax.imshow(maps[c], cmap="viridis")
                ax.set_title(str(c), fontsize=7)
            paths.append(_save(fig, os.path.join(directory, f"feature_maps_{layer.name}.png")))
    return paths


def input_image(image, path, title: str = "") -> str:
    """The image the feature maps were computed from."""
    img = np.asarray(image)
    fig = _figure("feature_maps")
    ax = fig.subplots()
    ax.imshow(img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1), cmap="gray")
    ax.set_axis_off()
    ax.set_title(title)
    return _save(fig, path)


def write_all(directory, histories=None, evaluation=None, model=None, image=None, image_title: str = "",
              title: str = "") -> list:
    """Every figure the arguments allow, into ``directory``; returns the paths written:
    ``curves.png``, ``confusion.png``, ``filters.png``, ``image.png`` and
    ``feature_maps_<conv layer>.png``."""
    require()
    os.makedirs(directory, exist_ok=True)
    paths = []
    if histories:
        paths.append(curves(histories, os.path.join(directory, "curves.png"), title))
    if evaluation is not None:
        paths.append(confusion(evaluation, os.path.join(directory, "confusion.png")))
    if model is not None and _conv_layers(model):
        paths.append(filters(model, os.path.join(directory, "filters.png")))
        if image is not None:
            paths.append(input_image(image, os.path.join(directory, "image.png"), image_title))
            paths += feature_maps(model, image, directory)
    return paths


# ----------------------------------------------------------------------------------------------
# what ``nptl train/transfer --plots DIR`` and ``nptl plot`` write
# ----------------------------------------------------------------------------------------------
MAX_JSON_BYTES = 64 << 20


def _evaluation(report: dict):
    """An :class:`nptl.metrics.Evaluation` from its ``as_dict()`` form (as the JSON results hold it)."""
    from .metrics import Evaluation

    return Evaluation(np.asarray(report["confusion_matrix"], dtype=np.int64), list(report["per_class"]))


def for_transfer(directory, result: dict, save_dir, data) -> list:
    """Figures of a :func:`nptl.transfer.run_transfer` result: curves of the three arms (first
    draw), the fine-tuned model's confusion matrix, its first-layer filters and feature maps of
    the first target test image (``save_dir`` holds the arms' checkpoints)."""
    from . import io
    from .data import select_classes

    model = io.load(os.path.join(save_dir, "finetune.npz"))
    xt, _ = select_classes(data.x_test, data.y_test, result["config"]["target_classes"])
    return write_all(directory, result.get("histories"), _evaluation(result["finetune_report"]), model,
                     xt[0] if len(xt) else None, "first target test image",
                     f"transfer on {result['data']}: one line per arm (first draw of the labelled images)")


def add_arguments(p) -> None:
    """Arguments of ``nptl plot``."""
    p.add_argument("source", metavar="RESULT.json|MODEL.npz",
                   help="nptl train/transfer --json output, a history JSON ({'loss': [...], ...}) or a checkpoint")
    p.add_argument("--out", default="plots", help="directory for the PNG files (default: plots)")
    p.add_argument("--data", default=None, help="data set for a checkpoint's confusion matrix and feature maps "
                                                "(default: fashion-mnist if installed, else synthetic)")
    p.add_argument("--image", type=int, default=0, help="test image for the feature maps")


def _from_json(path) -> tuple:
    import json

    if os.path.getsize(path) > MAX_JSON_BYTES:
        raise PlotError(f"{path}: {os.path.getsize(path)} bytes; results files are at most {MAX_JSON_BYTES}")
    with open(path) as fh:
        try:
            obj = json.load(fh)
        except json.JSONDecodeError as err:
            raise PlotError(f"{path}: not JSON ({err})") from None
    if isinstance(obj, dict) and "arms" in obj and "finetune_report" in obj:
        return obj.get("histories"), _evaluation(obj["finetune_report"]), f"transfer on {obj.get('data')}"
    if isinstance(obj, dict) and isinstance(obj.get("history"), dict):
        ev = _evaluation(obj["test"]) if isinstance(obj.get("test"), dict) else None
        return {"train": obj["history"]}, ev, f"nptl train on {obj.get('data')}"
    if isinstance(obj, dict) and isinstance(obj.get("loss"), list):  # a bare History.history
        return {"train": obj}, None, os.path.basename(path)
    raise PlotError(f"{path}: not a result of 'nptl train --json' or 'nptl transfer --json', nor a history "
                    "with per-epoch 'loss' (and 'accuracy', 'val_loss', 'val_accuracy') lists")


def _from_checkpoint(args) -> list:
    from . import io
    from .cli.common import default_data
    from .data import load_dataset, select_classes
    from .train import evaluate

    ckpt = io.load_checkpoint(args.source)
    model, extra = ckpt.model, ckpt.extra or {}
    histories = None
    if isinstance(extra.get("history"), dict) and isinstance(extra["history"].get("history"), dict):
        histories = {"train": extra["history"]["history"]}
    data_name = args.data or default_data()
    data = load_dataset(data_name, seed=0) if data_name == "synthetic" else load_dataset(data_name)
    names = extra.get("class_names") or list(data.class_names)
    x, y = data.x_test, data.y_test
    evaluation = None
    if len(names) == model.output_shape()[-1] and all(n in data.class_names for n in names):
        x, y = select_classes(x, y, [list(data.class_names).index(n) for n in names])
        evaluation = evaluate(model, x, y, class_names=names)
    if not 0 <= args.image < len(x):
        raise PlotError(f"--image {args.image} is outside the {len(x)} test images of {data_name} "
                        f"(of the model's classes)")
    return write_all(args.out, histories, evaluation, model, x[args.image],
                     f"test image {args.image} of {data_name}", f"{args.source}")


def command(args) -> int:
    """``nptl plot RESULT.json|MODEL.npz``: write the figures, print their paths."""
    require()
    if not os.path.isfile(args.source):
        raise FileNotFoundError(f"{args.source}: no such file")
    if args.source.endswith(".json"):
        histories, evaluation, title = _from_json(args.source)
        paths = write_all(args.out, histories, evaluation, title=title)
    else:
        paths = _from_checkpoint(args)
    print("\n".join(paths))
    return 0
