"""``nptl train``: train the seed CNN on one data set and report test metrics."""
from __future__ import annotations

import time

from ..common import (UsageError, add_data_option, add_image_options, add_output_options, add_plots_option,
                      add_training_options, check_classes, class_list, default_data, fraction, load_data, log,
                      output_dir, output_file, positive_float, positive_int, write_json)

ORDER = 20


def add_parser(subparsers):
    p = subparsers.add_parser("train", help="train the seed CNN and report test metrics",
                              description="Train the seed CNN on --data and report test accuracy, per-class "
                                          "precision/recall/F1 and the confusion matrix.")
    add_data_option(p)
    p.add_argument("--classes", type=class_list, default=None, metavar="C,C,...",
                   help="train on these classes only, renumbered 0.. in the order given (default: all)")
    p.add_argument("--labels-per-class", type=positive_int, default=None, metavar="N",
                   help="train on N randomly drawn training images of each class; --val-fraction holds part of "
                        "them out (default: all of them)")
    p.add_argument("--epochs", type=positive_int, default=3, metavar="N", help="training epochs")
    add_training_options(p)
    p.add_argument("--val-fraction", type=fraction, default=0.0, metavar="F",
                   help="hold out this fraction of the training images (per class) for validation; 0 = none")
    p.add_argument("--patience", type=positive_int, default=None, metavar="N",
                   help="stop when the validation loss has not improved for N epochs and keep the best "
                        "epoch's weights (needs --val-fraction; default: no early stopping)")
    p.add_argument("--decay-every", type=positive_int, default=None, metavar="N",
                   help="multiply the learning rate by --decay every N epochs (default: constant rate)")
    p.add_argument("--decay", type=positive_float, default=0.1, help="learning-rate factor for --decay-every")
    p.add_argument("--save", default=None, metavar="FILE",
                   help="write the trained model to FILE (.npz appended if missing); on Ctrl-C, the model after "
                        "the last completed epoch")
    add_output_options(p)
    add_plots_option(p)
    add_image_options(p)
    return p


def run(args) -> int:
    from ... import io
    from ...data import select_classes, take_per_class, train_val_split
    from ...datainfo import checkpoint_extra, data_info
    from ...models import seed_cnn
    from ...optim import StepDecay, make_optimizer
    from ...train import EarlyStopping, evaluate, fit
    from ..progress import Console

    # every flag and output path first: nothing is loaded or trained before these pass
    if args.patience is not None and args.val_fraction == 0:
        raise UsageError("--patience needs --val-fraction > 0 (early stopping watches the validation loss)")
    save = output_file(args.save, "--save", suffix=".npz") if args.save else None
    json_path = output_file(args.json, "--json") if args.json else None
    if args.plots:
        from ... import plots

        output_dir(args.plots, "--plots")
        plots.require()

    data_name = args.data or default_data()
    data = load_data(data_name, args.seed, args.image_size, args.color, args.skip_bad_files)
    check_classes("--classes", args.classes, data, data_name)
    x, y, xt, yt, names = data.x_train, data.y_train, data.x_test, data.y_test, list(data.class_names)
    class_ids = args.classes or list(range(len(names)))
    if args.classes:
        x, y = select_classes(x, y, args.classes)
        xt, yt = select_classes(xt, yt, args.classes)
        names = [names[c] for c in args.classes]
    if args.labels_per_class:
        check_labels_per_class(args.labels_per_class, y, names)
        x, y = take_per_class(x, y, args.labels_per_class, seed=args.seed, num_classes=len(names))
    val = None
    stop = None
    if args.val_fraction > 0:
        x, y, xv, yv = train_val_split(x, y, args.val_fraction, seed=args.seed)
        if len(xv) == 0:
            raise UsageError(f"--val-fraction {args.val_fraction} holds out no image of the {len(x)} training images")
        val = (xv, yv)
        stop = EarlyStopping(patience=args.patience) if args.patience else None

    info = data_info(data_name, names, class_ids, x.shape[1:])
    model = seed_cnn(x.shape[1:], len(names), seed=args.seed)
    console = Console([("train", args.epochs, len(x))], quiet=args.quiet, verbose=args.verbose)
    t0 = time.perf_counter()
    opt = make_optimizer(args.optimizer, model, lr=args.lr)
    schedule = StepDecay(opt, args.decay_every, args.decay) if args.decay_every else None
    try:
        hist = fit(model, x, y, opt, epochs=args.epochs, batch_size=args.batch_size, validation_data=val,
                   early_stopping=stop, scheduler=schedule, seed=args.seed, progress=console)
    except KeyboardInterrupt:
        save_interrupted(console, save, info)
        raise
    seconds = time.perf_counter() - t0
    ev = evaluate(model, xt, yt, class_names=names)
    print(ev.report())
    print(f"trained {hist.epochs} epochs in {seconds:.1f}s; test accuracy {ev.accuracy:.4f}")
    if save:
        io.save(model, save, extra=checkpoint_extra(info, history=hist.as_dict()))
        log(f"saved {save}")
    if json_path:
        write_json(json_path, {"data": data_name, "seconds": seconds, "test": ev.as_dict(), **hist.as_dict()})
    if args.plots:
        for path in plots.write_all(args.plots, {"train": hist.history}, ev, model, xt[0], "test image 0",
                                    f"nptl train on {data_name}"):
            log(f"wrote {path}")
    return 0


def save_interrupted(console, path, info) -> None:
    """On Ctrl-C: save the model as it was after the last completed epoch, and say where."""
    from ... import io
    from ...datainfo import checkpoint_extra
    from ...train import restore

    last = console.last_completed()
    if path is None:
        return
    if last is None:
        log(f"interrupted before the first epoch completed: nothing saved to {path}")
        return
    model, weights, epoch = last
    restore(model, weights)
    io.save(model, path, extra=checkpoint_extra(info, interrupted_after_epoch=epoch))
    log(f"interrupted: saved the model after epoch {epoch} to {path}")


def check_labels_per_class(n: int, y, names, flag: str = "--labels-per-class") -> None:
    """Every class has at least ``n`` training images."""
    import numpy as np

    counts = np.bincount(y, minlength=len(names))
    short = [(names[c], int(counts[c])) for c in range(len(names)) if counts[c] < n]
    if short:
        name, count = min(short, key=lambda s: s[1])
        raise UsageError(f"{flag} {n} is more than the {count} training images of class {name!r}"
                         + (f" ({len(short)} classes have fewer than {n})" if len(short) > 1 else ""))
