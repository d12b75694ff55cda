"""Training loop and evaluation.

``fit`` runs mini-batch training with seeded shuffling, a progress bar per epoch (tqdm) with
running loss and accuracy, validation each epoch, an optional learning-rate schedule, early
stopping with best-weights restore, and a :class:`History`.

Frozen-feature caching: when every layer below the lowest trainable one is frozen (or has no
parameters) and no augmentation is on, those layers compute the same function at every epoch.
``fit`` then runs them once over the training and validation sets and trains the remaining
layers (the head) on the cached features — the same updates, without recomputing the base.

Progress: ``fit(progress=True)`` shows a tqdm bar per epoch and a line per epoch;
``progress=False`` is silent; any other value is a :class:`Progress` whose hooks ``fit`` calls
(the command line's terminal display is one).

Non-finite values are caught where they enter (see :func:`fit`): a NaN or ±Inf in an input
batch, the loss, a parameter gradient or an updated parameter stops training with
:class:`~nptl.errors.NonFiniteError` naming the epoch, the step and what was non-finite.

Reconstruction (autoencoders): ``fit(model, x, None, optimizer, loss="mse")`` trains the model
to reproduce its input.  Each batch is its own target (the data set is never copied), the loss is
``"mse"`` on a sigmoid output or ``"binary_cross_entropy"`` on logits (per-pixel means, as in
:mod:`nptl.ops`), and the history's metric is the PSNR of the reconstruction in dB,
``10·log10(1 / mean squared error)`` for images in [0, 1] (sigmoid applied to logits first).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import ops
from ._checks import all_finite, describe_non_finite
from .errors import NonFiniteError
from .metrics import Evaluation, classification_report


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs;
    with ``restore_best_weights`` the best epoch's weights are put back at the end."""

    monitor: str = "val_loss"
    patience: int = 3
    min_delta: float = 0.0
    restore_best_weights: bool = True

    def better(self, value: float, best: float) -> bool:
        if self.monitor.endswith("loss"):
            return value < best - self.min_delta
        return value > best + self.min_delta


def _history_keys(metric: str = "accuracy") -> dict:
    return {k: [] for k in ("loss", metric, "val_loss", f"val_{metric}", "lr", "seconds")}


@dataclass
class History:
    """Per-epoch records: ``history["loss" | "accuracy" | "val_loss" | "val_accuracy" | "lr" | "seconds"]``
    (``"psnr"``, ``"val_psnr"`` instead of the accuracies for a reconstruction)."""

    history: dict = field(default_factory=_history_keys)
    best_epoch: int | None = None
    stopped_early: bool = False
    cached_features: bool = False

    @property
    def epochs(self) -> int:
        return len(self.history["loss"])

    def as_dict(self) -> dict:
        return {"history": self.history, "best_epoch": self.best_epoch, "stopped_early": self.stopped_early,
                "cached_features": self.cached_features}


class Progress:
    """What ``fit`` reports while it trains; subclass and override the hooks you need.

    ``begin`` once (``steps`` = mini-batches per epoch), ``step`` after every mini-batch (running
    means over the epoch so far), ``epoch`` after every epoch (``logs``: that epoch's ``loss``,
    ``accuracy``, ``val_loss``, ``val_accuracy`` (NaN without validation), ``lr``, ``seconds``),
    ``end`` when ``fit`` returns or raises (``history`` is ``None`` when it raised).
    ``metric`` (set by ``fit`` before ``begin``) names the value ``step`` receives after the
    loss and the ``logs`` key holding it: ``"accuracy"``, or ``"psnr"`` for a reconstruction.
    """

    metric = "accuracy"

    def begin(self, model, desc: str, epochs: int, steps: int) -> None:
        pass

    def step(self, epoch: int, step: int, loss: float, accuracy: float) -> None:
        pass

    def epoch(self, epoch: int, logs: dict) -> None:
        pass

    def end(self, history) -> None:
        pass


def metric_label(metric: str) -> str:
    """The short name a progress display gives ``metric``."""
    return "acc" if metric == "accuracy" else metric


class TqdmProgress(Progress):
    """``fit(progress=True)``: a tqdm bar per epoch (running loss and accuracy), then one line
    per epoch."""

    def begin(self, model, desc, epochs, steps):
        self.desc, self.epochs, self.steps, self.bar = desc, epochs, steps, None

    def step(self, epoch, step, loss, accuracy):
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=self.steps, leave=False, desc=f"{self.desc}epoch {epoch}/{self.epochs}",
                            unit="batch")
        self.bar.set_postfix({"loss": f"{loss:.4f}", metric_label(self.metric): f"{accuracy:.4f}"}, refresh=False)
        self.bar.update()

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def epoch(self, epoch, logs):
        from tqdm.auto import tqdm

        self._close()
        m, label = self.metric, metric_label(self.metric)
        msg = f"{self.desc}epoch {epoch}/{self.epochs}: loss {logs['loss']:.4f} {label} {logs[m]:.4f}"
        if not math.isnan(logs["val_loss"]):
            msg += f" val_loss {logs['val_loss']:.4f} val_{label} {logs['val_' + m]:.4f}"
        tqdm.write(msg + f" ({logs['seconds']:.1f}s)")

    def end(self, history):
        self._close()


def snapshot(model, trainable_only: bool = False) -> dict:
    """Copies of every parameter (or of the trainable ones), by name."""
    params = model.trainable_parameters() if trainable_only else model.parameters()
    return {p.name: p.value.copy() for p in params}


def restore(model, snap: dict) -> None:
    """Copy the snapshot's values back into the parameters it names."""
    for p in model.parameters():
        if p.name in snap:
            np.copyto(p.value, snap[p.name])


def cacheable_prefix(model, augment=None) -> int:
    """Number of bottom layers whose output can be computed once (0 when caching can't apply)."""
    k = model.lowest_trainable_index()
    if k is None or (augment is not None and augment.active):
        return 0
    return k


def _batches(n: int, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


class _Classification:
    """Cross-entropy on logits against integer labels; metric: accuracy."""

    name, metric = "cross_entropy", "accuracy"

    def loss(self, out, target):
        return ops.cross_entropy(out, target)

    def score(self, out, target) -> float:
        """The metric summed over the batch (``metric(total, n)`` turns sums into the value)."""
        return float(np.sum(np.argmax(out, axis=1) == target))

    def metric_value(self, total: float, n: int) -> float:
        return total / n


class _Reconstruction:
    """``mse`` (on the output) or ``binary_cross_entropy`` (on logits) against a target image;
    metric: PSNR in dB of the reconstruction, images in [0, 1]."""

    metric = "psnr"

    def __init__(self, loss: str):
        self.name, self.loss = loss, RECONSTRUCTION_LOSSES[loss]   # loss(out, target) -> (value, gradient)
        self.logits = loss == "binary_cross_entropy"

    def score(self, out, target) -> float:
        image = ops.sigmoid(out) if self.logits else out
        diff = image.reshape(len(image), -1) - target.reshape(len(target), -1)
        return float(np.sum(np.mean(np.square(diff, dtype=np.float64), axis=1)))   # Σ_n per-image MSE

    def metric_value(self, total: float, n: int) -> float:
        mse = total / n
        return 10 * math.log10(1 / mse) if mse > 0 else math.inf


#: per-pixel mean losses ``fit(..., loss=...)`` accepts for a reconstruction target
RECONSTRUCTION_LOSSES = {"mse": ops.mse, "binary_cross_entropy": ops.binary_cross_entropy}


def _objective(model, x, y, loss, where="fit"):
    """The objective for ``fit``: classification (integer labels) or reconstruction (``y`` None:
    the input itself; or an array shaped like the model's output).  Checks the target's shape."""
    if loss is None:
        loss = "cross_entropy" if y is not None else "mse"
    if loss == "cross_entropy":
        if y is None:
            raise ValueError(f"{where}: y=None trains a reconstruction of the input, which needs loss='mse' or "
                             f"'binary_cross_entropy', not 'cross_entropy'")
        return _Classification(), ops.check_labels(y, len(x), model.output_shape()[-1], where)
    if loss not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"{where}: unknown loss {loss!r}; expected 'cross_entropy' or one of "
                         f"{sorted(RECONSTRUCTION_LOSSES)}")
    out = tuple(model.output_shape())
    if y is None:
        if tuple(x.shape[1:]) != out:
            raise ValueError(f"{where}: y=None reconstructs the input, but model '{model.name}' outputs "
                             f"{out} per sample for input {tuple(x.shape[1:])}")
    else:
        y = np.asarray(y)
        if y.shape != (len(x),) + out:
            raise ValueError(f"{where}: a {loss} target must be shaped like the model's output (N,) + {out} = "
                             f"{(len(x),) + out}, got 'y' of shape {tuple(y.shape)}")
    return _Reconstruction(loss), y


def _loss_and_metric(net, x, target, objective, batch_size) -> tuple[float, float]:
    total, score = 0.0, 0.0
    for idx in _batches(len(x), batch_size, None):
        out = net.forward(x[idx])
        loss, _ = objective.loss(out, target[idx])
        total += float(loss) * len(idx)
        score += objective.score(out, target[idx])
    return total / len(x), objective.metric_value(score, len(x))


def _non_finite(what: str, where: str, detail: str, epoch: int, step: int) -> NonFiniteError:
    return NonFiniteError(f"fit: non-finite {what} at {where} ({detail})", what=what, epoch=epoch, step=step)


def _check_images(x: np.ndarray, what: str) -> None:
    """Before training: name the first image of ``x`` holding NaN or ±Inf."""
    if not all_finite(x):
        first = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
        raise NonFiniteError(f"fit: non-finite {what}: image {first} ({describe_non_finite(x[first])}); "
                             f"all images: {describe_non_finite(x)}", what=what, epoch=0, step=0)


def fit(model, x, y, optimizer, epochs: int = 1, batch_size: int = 64, validation_data=None,
        seed: int = 0, augment=None, early_stopping: EarlyStopping | None = None, scheduler=None,
        cache_features: bool | str = "auto", progress: bool = True, desc: str = "",
        loss: str | None = None) -> History:
    """Train ``model`` (a :class:`~nptl.graph.Sequential`): a classifier producing logits with
    cross-entropy, or a reconstruction.

    ``x (N, C, H, W)``, integer ``y (N,)``; ``validation_data = (x_val, y_val)``;
    ``y = None`` (and ``y_val = None``): reconstruct the input — every batch is its own target
    (augmented if ``augment`` is on), nothing is copied — with ``loss`` = ``"mse"`` (default,
    for a sigmoid output) or ``"binary_cross_entropy"`` (on logits); ``y`` may also be an array
    shaped like the model's output for those losses.  ``loss`` defaults to ``"cross_entropy"``
    when ``y`` is given;
    ``augment`` a callable on float batches with an ``active`` flag (``nptl.data.Augmenter``);
    ``scheduler.step()`` is called after every epoch; ``cache_features`` = "auto" (cache when
    possible), True (require it) or False; ``progress`` True, False or a :class:`Progress`.

    Non-finite values (NaN, ±Inf) stop training with :class:`~nptl.errors.NonFiniteError`
    (attributes ``epoch``, ``step``, ``what``) where they first appear.  Every step checks, in
    order: the input batch as the model receives it (after augmentation; with cached features
    the training images are checked once, before caching), the loss, every trainable
    parameter's gradient (before the update) and every updated parameter.  The validation
    images are checked once, before epoch 1.  The model keeps the weights of the last good
    update:

    - non-finite input or gradient at step k: step k's update is not applied; the weights are
      those step k−1 left;
    - non-finite parameter after step k's update (the optimizer overflowed): the weights are
      put back to those step k−1 left;
    - non-finite loss at step k: the weights step k−1 left give no finite loss, so they are put
      back to those from before step k−1's update (the last weights with a finite loss).

    Frozen parameters never change; the optimizer's state (momenta, step count) is not rolled
    back.  The checks cost a pass over the batch, the gradients and the trainable parameters
    and one copy of the trainable parameters per step (measured by ``python -m benchmarks``).

    Returns a :class:`History`.

    >>> import nptl
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 128)
    >>> x = rng.normal(0, 0.3, (128, 1, 28, 28)).astype(np.float32)
    >>> x[y == 1, :, 4:10, 4:10] += 1.0                          # class 1: a bright square
    >>> model = nptl.seed_cnn(num_classes=2, seed=0)
    >>> model.freeze(up_to="flatten")
    >>> h = fit(model, x, y, nptl.optim.Adam(model, lr=1e-2), epochs=3, progress=False)
    >>> h.epochs, h.cached_features, h.history["accuracy"][-1] > 0.9
    (3, True, True)
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"fit: 'epochs' and 'batch_size' must be >= 1, got {epochs} and {batch_size}")
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError("fit: the training set is empty")
    objective, y = _objective(model, x, y, loss)
    if model.lowest_trainable_index() is None:
        raise ValueError(f"fit: model '{model.name}' has no trainable parameters (every layer is frozen)")
    xv = yv = None
    if validation_data is not None:
        xv = np.asarray(validation_data[0])
        _, yv = _objective(model, xv, validation_data[1], objective.name, "fit (validation_data)")
        if len(xv) == 0:
            raise ValueError("fit: validation_data has 0 images; pass validation_data=None to train "
                             "without validation")
        _check_images(xv, "validation input")

    start = cacheable_prefix(model, augment) if cache_features else 0
    if cache_features is True and start == 0:
        raise ValueError("fit: cache_features=True but there is no frozen base to cache (or augmentation is on)")
    net = model.slice(start) if start else model
    if start:
        _check_images(x, "training input (checked before its features are cached)")
        base = model.slice(0, start)
        x_in = base.predict(x, batch_size=256)
        xv_in = base.predict(xv, batch_size=256) if validation_data is not None else None
    else:
        x_in, xv_in = x, (xv if validation_data is not None else None)

    # a reconstruction's targets: the raw images when the network's input is cached features
    # (with augmentation on nothing is cached, and each augmented batch is its own target)
    targets = y if y is not None else (x if start else None)
    val_targets = yv if yv is not None else xv
    report = TqdmProgress() if progress is True else progress if progress else Progress()
    report.metric = objective.metric
    report.begin(model, desc, epochs, math.ceil(len(x_in) / batch_size))
    try:
        hist = _train(model, net, x_in, targets, xv_in, val_targets, objective, optimizer,
                      epochs, batch_size, seed, augment, early_stopping, scheduler, bool(start), report)
    except BaseException:
        report.end(None)
        raise
    report.end(hist)
    return hist


def _train(model, net, x_in, targets, xv_in, val_targets, objective, optimizer, epochs, batch_size, seed, augment,
           early_stopping, scheduler, cached, report) -> History:
    """``fit``'s epochs, on the (possibly cached) inputs ``x_in`` of the layers ``net``; a batch's
    target is ``targets[idx]``, or with ``targets`` None the (augmented) input batch itself."""
    rng = np.random.default_rng(seed)
    metric = objective.metric
    hist = History(history=_history_keys(metric), cached_features=cached)
    best_value, best_weights, bad_epochs = None, None, 0
    # frozen parameters cannot change during fit: the non-finite guard only copies trainable ones;
    # ``before`` holds the weights from just before the latest update
    trainable = model.trainable_parameters()
    before = snapshot(model, trainable_only=True)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        seen, loss_sum, score = 0, 0.0, 0.0
        for step, idx in enumerate(_batches(len(x_in), batch_size, rng), 1):
            xb = x_in[idx]
            augmented = augment is not None and augment.active
            if augmented:
                xb = augment(xb)
            target = targets[idx] if targets is not None else xb
            where = f"epoch {epoch}, step {step}"
            if not all_finite(xb):
                raise _non_finite("input", where, f"input batch{' after augmentation' if augmented else ''}: "
                                  f"{describe_non_finite(xb)}; weights unchanged", epoch, step)
            model.zero_grad()
            out = net.forward(xb, training=True)
            try:
                loss, dout = objective.loss(out, target)
                if not np.isfinite(loss):
                    raise NonFiniteError(f"loss is {loss}")
            except NonFiniteError as err:
                restore(model, before)
                raise _non_finite("loss", where, f"{err}; weights restored to the last step with a finite "
                                  "loss", epoch, step) from None
            net.backward(dout)
            for p in trainable:
                if not all_finite(p.grad):
                    raise _non_finite(f"gradient of {p.name}", where, f"{describe_non_finite(p.grad)}; "
                                      "update not applied", epoch, step)
            for p in trainable:
                np.copyto(before[p.name], p.value)
            optimizer.step()
            for p in trainable:
                if not all_finite(p.value):
                    bad = describe_non_finite(p.value)
                    restore(model, before)
                    raise _non_finite(f"{p.name} after the update", where, f"{bad} (the optimizer "
                                      "overflowed); weights restored to those before the update", epoch, step)
            seen += len(idx)
            loss_sum += float(loss) * len(idx)
            score += objective.score(out, target)
            report.step(epoch, step, loss_sum / seen, objective.metric_value(score, seen))
        h = hist.history
        h["loss"].append(loss_sum / seen)
        h[metric].append(objective.metric_value(score, seen))
        h["lr"].append(float(getattr(optimizer, "lr", float("nan"))))
        if val_targets is not None:
            vl, vm = _loss_and_metric(net, xv_in, val_targets, objective, 256)
        else:
            vl, vm = float("nan"), float("nan")
        h["val_loss"].append(vl)
        h[f"val_{metric}"].append(vm)
        h["seconds"].append(time.perf_counter() - t0)
        report.epoch(epoch, {k: v[-1] for k, v in h.items()})
        if scheduler is not None:
            scheduler.step()
        if early_stopping is not None:
            if early_stopping.monitor not in h:
                raise ValueError(f"fit: EarlyStopping monitors unknown metric {early_stopping.monitor!r}")
            value = h[early_stopping.monitor][-1]
            if math.isnan(value):
                raise ValueError(f"fit: EarlyStopping monitors {early_stopping.monitor!r}, which needs validation_data")
            if best_value is None or early_stopping.better(value, best_value):
                best_value, bad_epochs, hist.best_epoch = value, 0, epoch
                best_weights = snapshot(model) if early_stopping.restore_best_weights else None
            else:
                bad_epochs += 1
                if bad_epochs >= early_stopping.patience:
                    hist.stopped_early = True
                    break
    if best_weights is not None:
        restore(model, best_weights)
    return hist


def evaluate(model, x, y, batch_size: int = 256, class_names=None) -> Evaluation:
    """Accuracy, loss, per-class precision/recall/F1, macro averages and the confusion matrix."""
    num_classes = model.output_shape()[-1]
    y = ops.check_labels(y, len(x), num_classes, "evaluate")
    logits = model.predict(np.asarray(x), batch_size=batch_size)
    loss, _ = ops.cross_entropy(logits, y)
    return classification_report(y, np.argmax(logits, axis=1), num_classes, class_names, float(loss))


def evaluate_reconstruction(model, x, loss: str = "mse", batch_size: int = 256) -> dict:
    """``{"loss": per-pixel mean loss, "psnr": dB}`` of ``model`` reconstructing ``x`` (an
    autoencoder with a sigmoid output for ``loss="mse"``, logits for ``"binary_cross_entropy"``)."""
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError("evaluate_reconstruction: 'x' is empty")
    objective, _ = _objective(model, x, None, loss, "evaluate_reconstruction")
    value, psnr = _loss_and_metric(model, x, x, objective, batch_size)
    return {"loss": value, "psnr": psnr}
