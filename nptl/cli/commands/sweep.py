"""``nptl sweep``: the transfer recipe over a grid (see :mod:`nptl.sweep`)."""
from __future__ import annotations

import argparse
import os

from ..common import (add_data_option, add_training_options, class_list, default_data, log,
                      output_dir, positive_float, positive_int)

ORDER = 15


def _names(text: str) -> list[str]:
    out = [t.strip() for t in text.split(",") if t.strip()]
    if not out:
        raise argparse.ArgumentTypeError("must be a comma-separated list of names")
    return out


def _counts(text: str) -> list[int]:
    parts = [t for t in text.split(",") if t.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list like 5,10,20, got {text!r}")
    return [positive_int(t) for t in parts]


def add_parser(subparsers):
    sw = subparsers.add_parser("sweep", help="the transfer recipe over a grid: labels per class x arm x fine-tune "
                                             "depth x draws")
    add_data_option(sw)
    add_training_options(sw)
    sw.add_argument("--quiet", action="store_true", help="no progress output, only the results")
    sw.add_argument("--source-classes", type=class_list, default=[0, 1, 2, 3, 4], help="default: 0,1,2,3,4")
    sw.add_argument("--target-classes", type=class_list, default=[5, 6, 7, 8, 9], help="default: 5,6,7,8,9")
    sw.add_argument("--labels-per-class", type=_counts, default=[5, 10, 20, 50, 100],
                    help="comma-separated labelled images per target class (default: 5,10,20,50,100)")
    sw.add_argument("--arms", type=_names, default=["scratch", "frozen", "finetune"],
                    help="comma-separated arms: scratch, frozen, finetune (default: all three)")
    sw.add_argument("--fine-tune-from", type=_names, default=["conv3"],
                    help="comma-separated depths the finetune arm unfreezes from: conv1, conv2, conv3 or none "
                         "(none = the frozen arm) (default: conv3)")
    sw.add_argument("--draws", type=positive_int, default=3, help="draws of the labelled images per cell (default: 3)")
    sw.add_argument("--epochs", type=positive_int, default=2, help="source pretraining epochs (default: 2)")
    sw.add_argument("--scratch-epochs", type=positive_int, default=60, help="default: 60")
    sw.add_argument("--head-epochs", type=positive_int, default=60, help="default: 60")
    sw.add_argument("--finetune-epochs", type=positive_int, default=30, help="default: 30")
    sw.add_argument("--no-augment", action="store_true", help="train the arms without shift/zoom augmentation")
    sw.add_argument("--out", required=True, help="results folder: results.jsonl, summary.csv, config.json, source.npz")
    sw.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1,
                    help="local worker processes (default: one per core)")
    sw.add_argument("--threads-per-task", type=positive_int, default=1,
                    help="Numba and BLAS threads of each task; results depend on it, not on --workers (default: 1)")
    sw.add_argument("--scheduler", default=None, help="a dask.distributed scheduler, tcp://HOST:8786 (extra distributed)")
    sw.add_argument("--connect-timeout", type=positive_float, default=10.0,
                    help="seconds to wait for --scheduler before giving up (default: 10)")
    sw.add_argument("--plots", action="store_true", help="also write accuracy.png (extra plot)")
    return sw


def run(args) -> int:
    from ...sweep import SweepConfig, format_summary, make_grid, run_sweep

    output_dir(args.out, "--out")
    tasks = make_grid(args.labels_per_class, args.arms, args.fine_tune_from, args.draws)
    config = SweepConfig(
        data=args.data or default_data(), source_classes=tuple(args.source_classes),
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
