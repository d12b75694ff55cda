"""The ``nptl`` command line: ``transfer`` (the main job), ``train``, ``evaluate``, ``summary``, ``explain``, ``plot``.

Also run as ``python -m nptl``.  ``--data`` takes ``fashion-mnist`` (the Debian package
``dataset-fashion-mnist``, files in /usr/share/datasets/fashion-mnist/), ``synthetic`` (generated
in code), ``cifar10:DIR`` or a directory (IDX files, CIFAR-10 binary batches, or one sub-folder
per class).  The default is Fashion-MNIST when installed, else the synthetic set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _classes(text: str) -> list[int]:
    try:
        out = [int(t) for t in text.split(",") if t.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated class numbers like 0,1,2, got {text!r}")
    if not out:
        raise argparse.ArgumentTypeError("expected at least one class")
    return out


def _names(text: str) -> list[str]:
    out = [t.strip() for t in text.split(",") if t.strip()]
    if not out:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return out


def _default_data() -> str:
    from .data import FASHION_MNIST_DIR, has_idx_files

    return "fashion-mnist" if has_idx_files(FASHION_MNIST_DIR) else "synthetic"


def _load(name: str, seed: int, log):
    from .data import load_dataset

    if name == "synthetic":
        log("data: synthetic (generated in code; install dataset-fashion-mnist for real images)")
        return load_dataset("synthetic", seed=seed)
    data = load_dataset(name)
    log(f"data: {name}: {len(data.x_train)} train / {len(data.x_test)} test images of shape {data.x_train.shape[1:]}")
    return data


def _write_json(path, obj) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2)
    os.replace(tmp, path)


def cmd_transfer(args) -> int:
    from .transfer import format_table, run_transfer

    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    if args.plots:
        import tempfile

        from . import plots

        plots.require()
        keep = tempfile.TemporaryDirectory(prefix="nptl-plots-") if args.save is None else None
    data_name = args.data or _default_data()
    data = _load(data_name, args.seed, log)
    for arg, classes in (("--source-classes", args.source_classes), ("--target-classes", args.target_classes)):
        bad = [c for c in classes if not 0 <= c < len(data.class_names)]
        if bad:
            raise SystemExit(f"nptl transfer: {arg} {bad} out of range: {data_name} has classes 0..{len(data.class_names) - 1}")
    result = run_transfer(
        data, data_name, args.source_classes, args.target_classes, args.labels_per_class,
        source_epochs=args.epochs, scratch_epochs=args.scratch_epochs, head_epochs=args.head_epochs,
        finetune_epochs=args.finetune_epochs, batch_size=args.batch_size, lr=args.lr,
        optimizer=args.optimizer, augment=not args.no_augment, repeats=args.repeats, seed=args.seed,
        save_dir=args.save or (keep.name if args.plots else None), progress=not args.quiet, log=log)
    print(format_table(result))
    if args.json:
        _write_json(args.json, result)
    if args.plots:
        for path in plots.for_transfer(args.plots, result, args.save or keep.name, data):
            log(f"wrote {path}")
    return 0


def cmd_train(args) -> int:
    from . import io
    from .data import select_classes, take_per_class
    from .models import seed_cnn
    from .optim import make_optimizer
    from .train import EarlyStopping, evaluate, fit

    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    if args.plots:
        from . import plots

        plots.require()
    data_name = args.data or _default_data()
    data = _load(data_name, args.seed, log)
    x, y, xt, yt, names = data.x_train, data.y_train, data.x_test, data.y_test, list(data.class_names)
    if args.classes:
        x, y = select_classes(x, y, args.classes)
        xt, yt = select_classes(xt, yt, args.classes)
        names = [names[c] for c in args.classes]
    if args.labels_per_class:
        x, y = take_per_class(x, y, args.labels_per_class, seed=args.seed, num_classes=len(names))
    model = seed_cnn(x.shape[1:], len(names), seed=args.seed)
    t0 = time.perf_counter()
    val = None
    stop = None
    if args.val_fraction > 0:
        from .data import train_val_split

        x, y, xv, yv = train_val_split(x, y, args.val_fraction, seed=args.seed)
        val = (xv, yv)
        stop = EarlyStopping(patience=args.patience) if args.patience else None
    from .optim import StepDecay

    opt = make_optimizer(args.optimizer, model, lr=args.lr)
    schedule = StepDecay(opt, args.decay_every, args.decay) if args.decay_every else None
    hist = fit(model, x, y, opt, epochs=args.epochs, batch_size=args.batch_size, validation_data=val,
               early_stopping=stop, scheduler=schedule, seed=args.seed, progress=not args.quiet)
    seconds = time.perf_counter() - t0
    ev = evaluate(model, xt, yt, class_names=names)
    print(ev.report())
    print(f"trained {hist.epochs} epochs in {seconds:.1f}s; test accuracy {ev.accuracy:.4f}")
    if args.save:
        io.save(model, args.save, extra={"class_names": names, "history": hist.as_dict()})
        log(f"saved {args.save}")
    if args.json:
        _write_json(args.json, {"data": data_name, "seconds": seconds, "test": ev.as_dict(), **hist.as_dict()})
    if args.plots:
        for path in plots.write_all(args.plots, {"train": hist.history}, ev, model, xt[0], "test image 0",
                                    f"nptl train on {data_name}"):
            log(f"wrote {path}")
    return 0


def cmd_evaluate(args) -> int:
    from . import io
    from .data import select_classes
    from .train import evaluate

    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    model = io.load(args.model)
    meta = io.read_metadata(args.model)
    data = _load(args.data or _default_data(), 0, log)
    xt, yt = data.x_test, data.y_test
    names = list(data.class_names)
    if args.classes:
        xt, yt = select_classes(xt, yt, args.classes)
        names = [names[c] for c in args.classes]
    names = (meta.get("extra") or {}).get("class_names", names)
    ev = evaluate(model, xt, yt, class_names=names)
    print(ev.report())
    if args.json:
        _write_json(args.json, ev.as_dict())
    return 0


def cmd_sweep(args) -> int:
    from .sweep import SweepConfig, format_summary, make_grid, run_sweep

    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    tasks = make_grid(args.labels_per_class, args.arms, args.fine_tune_from, args.draws)
    config = SweepConfig(
        data=args.data or _default_data(), source_classes=tuple(args.source_classes),
        target_classes=tuple(args.target_classes), source_epochs=args.epochs, scratch_epochs=args.scratch_epochs,
        head_epochs=args.head_epochs, finetune_epochs=args.finetune_epochs, batch_size=args.batch_size,
        lr=args.lr, optimizer=args.optimizer, augment=not args.no_augment, seed=args.seed,
        threads_per_task=args.threads_per_task)
    rows = run_sweep(config, tasks, args.out, workers=args.workers, scheduler=args.scheduler,
                     connect_timeout=args.connect_timeout, progress=not args.quiet, plots=args.plots, log=log)
    print(format_summary(rows))
    log(f"results: {args.out}/results.jsonl, summary: {args.out}/summary.csv"
        + (f", curves: {args.out}/accuracy.png" if args.plots else ""))
    return 0


def cmd_summary(args) -> int:
    from . import io

    io.load(args.model).summary()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nptl", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def plots_dir(sp):
        sp.add_argument("--plots", default=None, metavar="DIR",
                        help="write PNG figures here: curves, confusion matrix, filters, feature maps (needs matplotlib)")

    def common(sp, data_help="fashion-mnist, synthetic, cifar10:DIR or a directory"):
        sp.add_argument("--data", default=None, help=f"{data_help} (default: fashion-mnist if installed, else synthetic)")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--batch-size", type=int, default=64)
        sp.add_argument("--lr", type=float, default=1e-3)
        sp.add_argument("--optimizer", default="adam", choices=["sgd", "momentum", "nesterov", "adam", "adamw"])
        sp.add_argument("--json", default=None, help="write the results as JSON to this file")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    t = sub.add_parser("transfer", help="pretrain on source classes, then scratch / frozen / finetune arms on target classes")
    common(t)
    plots_dir(t)
    t.add_argument("--source-classes", type=_classes, default=[0, 1, 2, 3, 4])
    t.add_argument("--target-classes", type=_classes, default=[5, 6, 7, 8, 9])
    t.add_argument("--labels-per-class", type=int, default=20)
    t.add_argument("--epochs", type=int, default=2, help="source pretraining epochs")
    t.add_argument("--scratch-epochs", type=int, default=60)
    t.add_argument("--head-epochs", type=int, default=60)
    t.add_argument("--finetune-epochs", type=int, default=30)
    t.add_argument("--repeats", type=int, default=3, help="draws of the labelled target images (results are means)")
    t.add_argument("--no-augment", action="store_true", help="train the target arms without shift/zoom augmentation")
    t.add_argument("--save", default=None, help="directory for source/scratch/frozen/finetune checkpoints")
    t.set_defaults(func=cmd_transfer)

    tr = sub.add_parser("train", help="train the seed CNN and report test metrics")
    common(tr)
    plots_dir(tr)
    tr.add_argument("--classes", type=_classes, default=None)
    tr.add_argument("--labels-per-class", type=int, default=0)
    tr.add_argument("--epochs", type=int, default=3)
    tr.add_argument("--val-fraction", type=float, default=0.0)
    tr.add_argument("--patience", type=int, default=0, help="early stopping patience (needs --val-fraction)")
    tr.add_argument("--decay-every", type=int, default=0, help="multiply the learning rate by --decay every N epochs")
    tr.add_argument("--decay", type=float, default=0.1)
    tr.add_argument("--save", default=None, help="checkpoint path (.npz)")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="accuracy, per-class precision/recall/F1 and confusion matrix")
    ev.add_argument("model")
    ev.add_argument("--data", default=None)
    ev.add_argument("--classes", type=_classes, default=None)
    ev.add_argument("--json", default=None)
    ev.set_defaults(func=cmd_evaluate)

    sw = sub.add_parser("sweep", help="the transfer recipe over a grid: labels per class x arm x fine-tune depth x draws")
    common(sw)
    sw.add_argument("--source-classes", type=_classes, default=[0, 1, 2, 3, 4], help="default: 0,1,2,3,4")
    sw.add_argument("--target-classes", type=_classes, default=[5, 6, 7, 8, 9], help="default: 5,6,7,8,9")
    sw.add_argument("--labels-per-class", type=_classes, default=[5, 10, 20, 50, 100],
                    help="comma-separated labelled images per target class (default: 5,10,20,50,100)")
    sw.add_argument("--arms", type=_names, default=["scratch", "frozen", "finetune"],
                    help="comma-separated arms: scratch, frozen, finetune (default: all three)")
    sw.add_argument("--fine-tune-from", type=_names, default=["conv3"],
                    help="comma-separated depths the finetune arm unfreezes from: conv1, conv2, conv3 or none "
                         "(none = the frozen arm) (default: conv3)")
    sw.add_argument("--draws", type=int, default=3, help="draws of the labelled images per cell (default: 3)")
    sw.add_argument("--epochs", type=int, default=2, help="source pretraining epochs (default: 2)")
    sw.add_argument("--scratch-epochs", type=int, default=60, help="default: 60")
    sw.add_argument("--head-epochs", type=int, default=60, help="default: 60")
    sw.add_argument("--finetune-epochs", type=int, default=30, help="default: 30")
    sw.add_argument("--no-augment", action="store_true", help="train the arms without shift/zoom augmentation")
    sw.add_argument("--out", required=True, help="results folder: results.jsonl, summary.csv, config.json, source.npz")
    sw.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="local worker processes (default: one per core)")
    sw.add_argument("--threads-per-task", type=int, default=1,
                    help="Numba and BLAS threads of each task; results depend on it, not on --workers (default: 1)")
    sw.add_argument("--scheduler", default=None, help="a dask.distributed scheduler, tcp://HOST:8786 (extra distributed)")
    sw.add_argument("--connect-timeout", type=float, default=10.0,
                    help="seconds to wait for --scheduler before giving up (default: 10)")
    sw.add_argument("--plots", action="store_true", help="also write accuracy.png (extra plot)")
    sw.set_defaults(func=cmd_sweep)

    sm = sub.add_parser("summary", help="print a saved model's layers and parameter counts")
    sm.add_argument("model")
    sm.set_defaults(func=cmd_summary)

    from . import explain

    xp = sub.add_parser("explain", help="expand one element of a formula term by term, or walk one image through a model")
    explain.add_arguments(xp)
    xp.set_defaults(func=explain.command)

    from . import plots

    pl = sub.add_parser("plot", help="PNG figures from 'train/transfer --json' results or a saved model")
    plots.add_arguments(pl)
    pl.set_defaults(func=plots.command)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .data import DataError

    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"nptl {args.command}: interrupted", file=sys.stderr)
        return 130
    except (DataError, ValueError, FileNotFoundError) as err:
        print(f"nptl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
