"""``nptl pretrain --autoencoder``: unsupervised pretraining of the seed autoencoder on images alone."""
from __future__ import annotations

import time

from ..common import (UsageError, add_data_option, add_image_options, add_output_options, add_training_options,
                      check_classes, class_list, default_data, input_file, load_data, log, output_file,
                      positive_int, write_json)

ORDER = 15


def add_parser(subparsers):
    p = subparsers.add_parser(
        "pretrain", help="unsupervised pretraining: train the seed autoencoder on images only",
        description="Train nptl.seed_autoencoder to reconstruct the training images of --classes: its\n"
                    "encoder is the seed CNN's convolutional base (same layer names, conv1 ... relu3), its\n"
                    "decoder the mirror image.  The training never reads a label (labels only pick the\n"
                    "images of --classes).  Put the encoder under a classifier with\n"
                    "nptl.io.load_weights(model, FILE, layers=nptl.models.SEED_CNN_ENCODER), or compare\n"
                    "it with the other arms: nptl transfer --arms scratch,frozen,finetune,autoencoder.")
    p.add_argument("--autoencoder", action="store_true",
                   help="train an autoencoder (the kind of pretraining this command does; required)")
    add_data_option(p)
    p.add_argument("--classes", type=class_list, default=None, metavar="C,C,...",
                   help="use the training images of these classes (default: all)")
    p.add_argument("--epochs", type=positive_int, default=2, metavar="N", help="training epochs")
    p.add_argument("--loss", choices=("mse", "bce"), default="mse",
                   help="mse on the sigmoid output, or bce: binary cross-entropy on logits (the network then "
                        "ends without the sigmoid); both per-pixel means")
    p.add_argument("--init-from", default=None, metavar="FILE",
                   help="start the encoder from the base of this seed-CNN checkpoint (e.g. the source.npz of "
                        "'nptl transfer --save DIR')")
    add_training_options(p)
    p.add_argument("--save", default=None, metavar="FILE",
                   help="write the trained autoencoder to FILE (.npz appended if missing)")
    add_output_options(p)
    add_image_options(p)
    return p


def run(args) -> int:
    from ... import io
    from ...data import select_classes
    from ...datainfo import checkpoint_extra, data_info
    from ...models import SEED_CNN_ENCODER, seed_autoencoder
    from ...optim import make_optimizer
    from ...train import evaluate_reconstruction, fit
    from ..progress import Console

    if not args.autoencoder:
        raise UsageError("give --autoencoder: this command trains an autoencoder (for supervised pretraining "
                         "use 'nptl train --classes ... --save FILE')")
    save = output_file(args.save, "--save", suffix=".npz") if args.save else None
    json_path = output_file(args.json, "--json") if args.json else None
    init_from = input_file(args.init_from, "--init-from") if args.init_from else None

    data_name = args.data or default_data()
    data = load_data(data_name, args.seed, args.image_size, args.color, args.skip_bad_files)
    check_classes("--classes", args.classes, data, data_name)
    x, xt, class_ids = data.x_train, data.x_test, args.classes or list(range(len(data.class_names)))
    if args.classes:
        x, _ = select_classes(x, data.y_train, args.classes)
        xt, _ = select_classes(xt, data.y_test, args.classes)
    loss = "binary_cross_entropy" if args.loss == "bce" else "mse"
    model = seed_autoencoder(tuple(x.shape[1:]), seed=args.seed, output="logits" if args.loss == "bce" else "sigmoid")
    if init_from:
        io.load_weights(model, init_from, layers=SEED_CNN_ENCODER)
        log(f"encoder initialised from {init_from}")
    log(f"autoencoder: {len(x)} training images of shape {tuple(x.shape[1:])}, labels unused, loss {loss}")
    console = Console([("autoencoder", args.epochs, len(x))], quiet=args.quiet, verbose=args.verbose)
    t0 = time.perf_counter()
    hist = fit(model, x, None, make_optimizer(args.optimizer, model, lr=args.lr), epochs=args.epochs,
               batch_size=args.batch_size, seed=args.seed, loss=loss, progress=console)
    seconds = time.perf_counter() - t0
    h = hist.history
    for epoch, (value, psnr) in enumerate(zip(h["loss"], h["psnr"]), 1):
        print(f"epoch {epoch}: reconstruction loss {value:.5f}, PSNR {psnr:.2f} dB")
    test = evaluate_reconstruction(model, xt, loss) if len(xt) else None
    if test is not None:
        print(f"test images ({len(xt)}): reconstruction loss {test['loss']:.5f}, PSNR {test['psnr']:.2f} dB; "
              f"trained {hist.epochs} epochs in {seconds:.1f}s")
    if save:
        info = data_info(data_name, [data.class_names[c] for c in class_ids], class_ids, x.shape[1:])
        io.save(model, save, extra=checkpoint_extra(info, history=hist.as_dict()))
        log(f"saved {save}")
    if json_path:
        write_json(json_path, {"data": data_name, "classes": class_ids, "loss": loss, "seconds": seconds,
                               "test": test, **hist.as_dict()})
    return 0
