"""The transfer-learning recipe of the seed documents, as one function.

1. **source**: train the seed CNN on the source classes (all their training images).
2. Take ``labels_per_class`` labelled images of each target class (the same for every arm)
   and run three arms on them, each evaluated on the full test set of the target classes:

   - ``scratch``:  the same architecture from a random initialisation;
   - ``frozen``:   the pretrained convolutional base (``conv1 … flatten``, loaded by layer name
     from the saved source checkpoint) frozen, a new head (``dense1, relu4, dense2``) trained;
   - ``finetune``: the frozen arm, then the top conv block (``conv3``) unfrozen and everything
     trainable fine-tuned at a 10× lower learning rate.  Its ``seconds`` include the frozen phase;

   and on request (``arms=``) two arms pretrained without labels:

   - ``autoencoder``: :func:`~nptl.models.seed_autoencoder` trained to reconstruct every training
     image of the target classes (their labels are never read), its encoder (``conv1 … relu3``)
     loaded into the classifier, then the ``finetune`` recipe (frozen head, then fine-tuning);
   - ``source+autoencoder``: the same, the autoencoder's encoder starting from the source
     network's base (supervised pretraining, then unsupervised on the target images).

   The autoencoders are trained once (they do not depend on the labelled draw); their seconds
   are added to every draw's seconds of the arm.

   Every arm trains with the same augmentation (random shift and zoom, as the seeds'
   ``ImageDataGenerator``; ``augment=False`` turns it off — then the frozen arm trains its head
   on base features cached once).
3. With so few labels the result depends on which images were drawn, so step 2 is repeated for
   ``repeats`` draws (seeds ``seed, seed+1, ...``); the reported figures are means over the
   draws, with their standard deviation and the per-draw values.
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from . import io
from .data import Augmenter, select_classes, take_per_class
from .models import SEED_CNN_BASE, SEED_CNN_ENCODER, seed_autoencoder, seed_cnn
from .datainfo import checkpoint_extra, data_info
from .optim import make_optimizer
from .train import evaluate, evaluate_reconstruction, fit

#: the recipe's arms (the default of ``run_transfer(arms=...)``)
ARMS = ("scratch", "frozen", "finetune")
#: arms whose base is an autoencoder's encoder trained on the unlabelled target images
AUTOENCODER_ARMS = ("autoencoder", "source+autoencoder")
ALL_ARMS = ARMS + AUTOENCODER_ARMS


def _augmenter(enabled: bool, seed: int):
    return Augmenter(width_shift=0.1, height_shift=0.1, zoom=0.1, seed=seed) if enabled else None


def pretrain_source(data, source_classes, path, epochs: int = 2, batch_size: int = 64, lr: float = 1e-3,
                    optimizer: str = "adam", seed: int = 0, progress: bool = True, log=print,
                    data_name: str = "") -> dict:
    """Step 1: train ``seed_cnn`` (initialised with ``seed``) on every training image of
    ``source_classes``, test it on their test images and save it to ``path`` (with the data
    record of :mod:`nptl.datainfo`, ``data_name`` as its source).  Returns
    ``{"test_accuracy", "macro_f1", "seconds", "train_images", "history"}``."""
    names = list(data.class_names)
    xs, ys = select_classes(data.x_train, data.y_train, source_classes)
    xs_test, ys_test = select_classes(data.x_test, data.y_test, source_classes)
    log(f"source: {len(xs)} training images of classes {[names[c] for c in source_classes]}")
    t0 = time.perf_counter()
    source = seed_cnn(data.x_train.shape[1:], len(source_classes), seed=seed)
    hist = fit(source, xs, ys, make_optimizer(optimizer, source, lr=lr), epochs=epochs,
               batch_size=batch_size, seed=seed, progress=progress, desc="source ")
    ev = evaluate(source, xs_test, ys_test)
    summary = {"test_accuracy": ev.accuracy, "macro_f1": ev.macro_f1,
               "seconds": time.perf_counter() - t0, "train_images": int(len(xs)), "history": hist.history}
    log(f"source: test accuracy {ev.accuracy:.4f} ({summary['seconds']:.1f}s)")
    info = data_info(data_name, [names[c] for c in source_classes], source_classes, data.x_train.shape[1:])
    io.save(source, path, extra=checkpoint_extra(info))
    return summary


def pretrain_autoencoder(x, path, epochs: int = 2, batch_size: int = 64, lr: float = 1e-3,
                         optimizer: str = "adam", seed: int = 0, init_from=None, progress: bool = True,
                         log=print, desc: str = "autoencoder ") -> dict:
    """Train :func:`~nptl.models.seed_autoencoder` (initialised with ``seed``) to reconstruct the
    images ``x`` (MSE on its sigmoid output; no labels) and save it to ``path``.  ``init_from``:
    a seed-CNN checkpoint whose base initialises the encoder (``source+autoencoder``).  Returns
    ``{"loss", "psnr", "seconds", "train_images"}`` (loss and PSNR of the last epoch)."""
    t0 = time.perf_counter()
    ae = seed_autoencoder(tuple(np.asarray(x).shape[1:]), seed=seed)
    if init_from is not None:
        io.load_weights(ae, init_from, layers=SEED_CNN_ENCODER)
    log(f"{desc.strip()}: {len(x)} unlabelled training images"
        + (f", encoder initialised from {os.path.basename(str(init_from))}" if init_from is not None else ""))
    hist = fit(ae, x, None, make_optimizer(optimizer, ae, lr=lr), epochs=epochs, batch_size=batch_size,
               seed=seed, loss="mse", progress=progress, desc=desc)
    summary = {"loss": hist.history["loss"][-1], "psnr": hist.history["psnr"][-1],
               "seconds": time.perf_counter() - t0, "train_images": int(len(x))}
    log(f"{desc.strip()}: reconstruction loss {summary['loss']:.4f}, PSNR {summary['psnr']:.2f} dB "
        f"({summary['seconds']:.1f}s)")
    io.save(ae, path, extra={"history": hist.as_dict()})
    return summary


def fine_tune(model, x, y, seed: int, fine_tune_from: str = "conv3", finetune_epochs: int = 30,
              batch_size: int = 20, lr: float = 1e-3, optimizer: str = "adam", augment: bool = True,
              progress: bool = True, histories: dict | None = None) -> float:
    """Unfreeze the base from layer ``fine_tune_from`` up to ``flatten`` and train everything trainable
    at ``lr / 10`` for ``finetune_epochs``; returns the seconds taken (and, given a dict
    ``histories``, puts the per-epoch records in ``histories["finetune"]``).

    ``fine_tune_from="conv3"`` (the recipe's default) unfreezes ``conv3, relu3, flatten``;
    ``"conv1"`` the whole base.
    """
    names = [layer.name for layer in model.layers]
    if fine_tune_from not in names[:names.index("flatten")]:
        raise ValueError(f"fine_tune: 'fine_tune_from' must be a base layer, one of "
                         f"{names[:names.index('flatten')]}, got {fine_tune_from!r}")
    t0 = time.perf_counter()
    model.unfreeze(*names[names.index(fine_tune_from):names.index("flatten") + 1])
    hist = fit(model, x, y, make_optimizer(optimizer, model, lr=lr / 10), epochs=finetune_epochs,
               batch_size=batch_size, seed=seed + 1, augment=_augmenter(augment, seed + 1), progress=progress,
               desc="finetune ")
    if histories is not None:
        histories["finetune"] = hist.history
    return time.perf_counter() - t0


def train_arm(arm: str, source_path, x, y, num_classes: int, seed: int, fine_tune_from: str = "conv3",
              scratch_epochs: int = 60, head_epochs: int = 60, finetune_epochs: int = 30,
              batch_size: int = 20, lr: float = 1e-3, optimizer: str = "adam", augment: bool = True,
              progress: bool = True, histories: dict | None = None):
    """Train one arm of the recipe on the labelled images ``x, y`` of draw ``seed``; returns
    ``(model, seconds)``; a dict ``histories`` receives each phase's per-epoch records
    (``"scratch"``, or ``"frozen"`` and for the fine-tuned arms also ``"finetune"``).
    ``source_path`` is the pretrained checkpoint the arm starts from: the source network, or for
    the :data:`AUTOENCODER_ARMS` the autoencoder (unused by ``scratch``).  Every arm is a pure
    function of its arguments: the same call gives the same model, whichever process runs it
    (the sweep relies on this).

    - ``scratch``: ``seed_cnn`` initialised with ``seed + 1``, trained ``scratch_epochs``;
    - ``frozen``: the same network, the source base loaded and frozen, the head trained ``head_epochs``;
    - ``finetune``: the frozen arm, then :func:`fine_tune` from ``fine_tune_from`` (seconds include both);
    - ``autoencoder``, ``source+autoencoder``: ``finetune`` with the autoencoder's encoder
      (``conv1 … relu3``) as the base (the seconds exclude the autoencoder's training).
    """
    if arm not in ALL_ARMS:
        raise ValueError(f"train_arm: unknown arm {arm!r}; arms: {list(ALL_ARMS)}")
    shape = tuple(np.asarray(x).shape[1:])
    t0 = time.perf_counter()
    model = seed_cnn(shape, num_classes, seed=seed + 1)
    if arm == "scratch":
        epochs, desc = scratch_epochs, "scratch "
    else:
        io.load_weights(model, source_path, layers=SEED_CNN_ENCODER if arm in AUTOENCODER_ARMS else SEED_CNN_BASE)
        model.freeze(up_to="flatten")
        epochs, desc = head_epochs, "frozen "
    hist = fit(model, x, y, make_optimizer(optimizer, model, lr=lr), epochs=epochs, batch_size=batch_size,
               seed=seed, augment=_augmenter(augment, seed), progress=progress, desc=desc)
    if histories is not None:
        histories[desc.strip()] = hist.history
    seconds = time.perf_counter() - t0
    if arm not in ("scratch", "frozen"):
        seconds += fine_tune(model, x, y, seed, fine_tune_from=fine_tune_from, finetune_epochs=finetune_epochs,
                             batch_size=batch_size, lr=lr, optimizer=optimizer, augment=augment, progress=progress,
                             histories=histories)
    return model, seconds


def _curves(phases: dict) -> dict:
    """One arm's per-epoch records: its single phase, or a fine-tuned arm's frozen phase followed
    by fine-tuning."""
    if "finetune" not in phases:
        return next(iter(phases.values()))
    return {k: phases["frozen"][k] + phases["finetune"][k] for k in phases["finetune"]}


def run_transfer(data, data_name: str, source_classes, target_classes, labels_per_class: int = 20,
                 source_epochs: int = 2, scratch_epochs: int = 60, head_epochs: int = 60,
                 finetune_epochs: int = 30, batch_size: int = 64, target_batch_size: int = 20,
                 lr: float = 1e-3, optimizer: str = "adam", augment: bool = True, repeats: int = 3,
                 seed: int = 0, save_dir=None, progress: bool = True, log=print, arms=ARMS,
                 autoencoder_epochs: int = 2, autoencoder_fine_tune_from: str = "conv3") -> dict:
    """Run the recipe on ``data`` (a :class:`nptl.data.Splits`); returns the results dict:
    ``config``, ``source`` and per arm the means over the draws and ``runs`` (one per draw, each
    with its per-epoch ``history``; the finetune run's is the fine-tuning phase, its head phase is
    the frozen run's), and ``histories`` (the first draw's curves per arm, the finetune arm's being
    its frozen phase followed by fine-tuning).  ``progress``: True, False or a :class:`nptl.train.Progress` (one ``fit``
    call for the source, then per draw: scratch, frozen, finetune).

    ``arms``: any of :data:`ALL_ARMS`, in the order the table lists them.  The autoencoder arms
    train their autoencoders ``autoencoder_epochs`` on the target classes' training images
    (before the draws: they do not depend on them) and fine-tune from
    ``autoencoder_fine_tune_from``; their pretraining figures are in ``result["autoencoders"]``,
    their seconds are included in the arms' seconds."""
    source_classes, target_classes = list(source_classes), list(target_classes)
    overlap = sorted(set(source_classes) & set(target_classes))
    if overlap:
        raise ValueError(f"transfer: source and target classes overlap: {overlap}")
    if repeats < 1:
        raise ValueError(f"transfer: 'repeats' must be >= 1, got {repeats}")
    names = list(data.class_names)
    result = {"data": data_name, "config": {
        "source_classes": source_classes, "target_classes": target_classes,
        "labels_per_class": labels_per_class, "source_epochs": source_epochs,
        "scratch_epochs": scratch_epochs, "head_epochs": head_epochs, "finetune_epochs": finetune_epochs,
        "batch_size": batch_size, "target_batch_size": target_batch_size, "lr": lr,
        "optimizer": optimizer, "augment": augment, "repeats": repeats, "seed": seed}, "arms": {}}
    arms = list(dict.fromkeys(arms))
    unknown = [a for a in arms if a not in ALL_ARMS]
    if unknown or not arms:
        raise ValueError(f"transfer: unknown arm(s) {unknown}; arms: {list(ALL_ARMS)}")
    if arms != list(ARMS):
        result["config"]["arms"] = arms
    if any(a in AUTOENCODER_ARMS for a in arms):
        result["config"].update(autoencoder_epochs=autoencoder_epochs,
                                autoencoder_fine_tune_from=autoencoder_fine_tune_from)

    tmp = None
    if save_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="nptl-transfer-")
        save_dir = tmp.name
    os.makedirs(save_dir, exist_ok=True)
    source_path = os.path.join(save_dir, "source.npz")
    if any(a in ("frozen", "finetune", "source+autoencoder") for a in arms):
        result["source"] = pretrain_source(data, source_classes, source_path, epochs=source_epochs,
                                           batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed,
                                           progress=progress, log=log, data_name=data_name)

    # 2. the arms, on the same labelled images, for each draw of those images
    xt_all, yt_all = select_classes(data.x_train, data.y_train, target_classes)
    xt_test, yt_test = select_classes(data.x_test, data.y_test, target_classes)
    target_names = [names[c] for c in target_classes]
    info = data_info(data_name, target_names, target_classes, data.x_train.shape[1:])

    # the autoencoders see every training image of the target classes, never their labels
    checkpoint = {arm: source_path for arm in ARMS}
    pretrain_seconds = {arm: 0.0 for arm in ALL_ARMS}
    for arm in (a for a in arms if a in AUTOENCODER_ARMS):
        checkpoint[arm] = os.path.join(save_dir, arm.replace("+", "_") + "_pretrained.npz")
        summary = pretrain_autoencoder(
            xt_all, checkpoint[arm], epochs=autoencoder_epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
            seed=seed, init_from=source_path if arm == "source+autoencoder" else None, progress=progress, log=log,
            desc=f"{arm} ")
        test = evaluate_reconstruction(io.load(checkpoint[arm]), xt_test)
        summary.update(test_loss=test["loss"], test_psnr=test["psnr"])
        result.setdefault("autoencoders", {})[arm] = summary
        pretrain_seconds[arm] = summary["seconds"]

    runs = {arm: [] for arm in arms}
    for r in range(repeats):
        s = seed + r
        xt, yt = take_per_class(xt_all, yt_all, labels_per_class, seed=s, num_classes=len(target_classes))
        log(f"target draw {r + 1}/{repeats}: {len(xt)} labelled images ({labels_per_class} per class) of "
            f"{target_names}, {len(xt_test)} test images")

        def record(arm, model, seconds, phases):
            # a run's history is its last phase: a fine-tuned arm's head phase is in its curves
            history = phases["finetune"] if "finetune" in phases else next(iter(phases.values()))
            ev = evaluate(model, xt_test, yt_test, class_names=target_names)
            runs[arm].append({"test_accuracy": ev.accuracy, "macro_f1": ev.macro_f1, "seconds": seconds, "seed": s,
                              "history": history})
            log(f"  {arm}: test accuracy {ev.accuracy:.4f}, macro F1 {ev.macro_f1:.4f} ({seconds:.1f}s)")
            if r == 0:
                io.save(model, os.path.join(save_dir, f"{arm.replace('+', '_')}.npz"), extra=checkpoint_extra(info))
                histories[arm] = _curves(phases)
            return ev

        hyper = dict(scratch_epochs=scratch_epochs, head_epochs=head_epochs, finetune_epochs=finetune_epochs,
                     batch_size=target_batch_size, lr=lr, optimizer=optimizer, augment=augment, progress=progress)
        histories = {}   # per-epoch curves of the first draw, per arm
        for arm in arms:
            if arm == "finetune" and "frozen" in arms:
                continue                  # continued from the frozen model below
            phases = {}
            fine_tune_from = autoencoder_fine_tune_from if arm in AUTOENCODER_ARMS else "conv3"
            model, seconds = train_arm(arm, checkpoint[arm], xt, yt, len(target_classes), s,
                                       fine_tune_from=fine_tune_from, histories=phases, **hyper)
            ev = record(arm, model, pretrain_seconds[arm] + seconds, phases)
            if arm == "frozen" and "finetune" in arms:
                seconds += fine_tune(model, xt, yt, s, finetune_epochs=finetune_epochs,
                                     batch_size=target_batch_size, lr=lr, optimizer=optimizer,
                                     augment=augment, progress=progress, histories=phases)
                arm, ev = "finetune", record("finetune", model, seconds, phases)
            if r == 0 and arm == "finetune":
                result["finetune_report"] = ev.as_dict()
        if r == 0:
            result["histories"] = histories

    for arm in arms:
        acc = np.array([run["test_accuracy"] for run in runs[arm]])
        f1 = np.array([run["macro_f1"] for run in runs[arm]])
        result["arms"][arm] = {
            "test_accuracy": float(acc.mean()), "test_accuracy_std": float(acc.std()),
            "macro_f1": float(f1.mean()), "seconds": float(np.mean([run["seconds"] for run in runs[arm]])),
            "runs": runs[arm]}
    if tmp is not None:
        tmp.cleanup()
    return result


def format_table(result: dict) -> str:
    """The arms as a Markdown table (means over the label draws)."""
    n = result["config"]["repeats"]
    pre = [f"source test accuracy {result['source']['test_accuracy']:.4f} ({result['source']['seconds']:.1f}s)"] \
        if "source" in result else []
    pre += [f"{arm} reconstruction PSNR {ae['test_psnr']:.2f} dB on the test images ({ae['seconds']:.1f}s)"
            for arm, ae in result.get("autoencoders", {}).items()]
    lines = [f"data: {result['data']}   {'   '.join(pre)}   target: mean over {n} draw(s) of the labelled images", "",
             "| arm | test accuracy | ± std | per draw | macro F1 | seconds |", "|---|---|---|---|---|---|"]
    for arm, r in result["arms"].items():
        per = ", ".join(f"{run['test_accuracy']:.4f}" for run in r["runs"])
        lines.append(f"| {arm} | {r['test_accuracy']:.4f} | {r['test_accuracy_std']:.4f} | {per} | "
                     f"{r['macro_f1']:.4f} | {r['seconds']:.1f} |")
    return "\n".join(lines)
