"""``nptl transfer``: the transfer-learning recipe (see :mod:`nptl.transfer`)."""
from __future__ import annotations

import argparse

from ..common import (UsageError, add_data_option, add_image_options, add_output_options, add_plots_option,
                      add_training_options, check_classes, class_list, default_data, input_file, int_at_least,
                      load_data, log, output_dir, output_file, positive_int, write_json)
from .train import check_labels_per_class, save_interrupted

ORDER = 10


def add_parser(subparsers):
    p = subparsers.add_parser(
        "transfer", help="pretrain on source classes, then scratch / frozen / finetune arms on target classes",
        description="Pretrain the seed CNN on the source classes, then train three arms on a few\n"
                    "labelled images of each target class and test them on all target test images:\n"
                    "  scratch   random initialisation\n"
                    "  frozen    pretrained convolutional base frozen, new head trained\n"
                    "  finetune  the frozen arm, then conv3 unfrozen and fine-tuned at a 10x lower rate\n"
                    "and on request (--arms) two arms pretrained without labels:\n"
                    "  autoencoder         the seed autoencoder trained on the target classes' training\n"
                    "                      images (labels unused); its encoder as the base, then finetune\n"
                    "  source+autoencoder  the same, the encoder starting from the source network's base\n"
                    "The labelled images are drawn --repeats times; results are means over the draws.\n\n"
                    "With --base resnet18|vgg16: transfer from that pretrained base instead (--weights, an\n"
                    "nptl import-weights checkpoint or a .pth/.safetensors state dict): RGB images at\n"
                    "--image-size (default 112) normalised with ImageNet's mean/std, a new head trained on\n"
                    "the frozen base's features computed once, then --finetune-epochs of the top block\n"
                    "(layer4 / VGG's last stage) if given.  The source/target options do not apply.")
    p.add_argument("--base", choices=("resnet18", "vgg16"), default=None,
                   help="transfer from this pretrained ImageNet base instead of the seed recipe")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="with --base: the base's weights (.npz from nptl import-weights, .pth, .pt or .safetensors); "
                        "without it the base is randomly initialised")
    add_data_option(p)
    p.add_argument("--source-classes", type=class_list, default=[0, 1, 2, 3, 4], metavar="C,C,...",
                   help="classes to pretrain on")
    p.add_argument("--target-classes", type=class_list, default=[5, 6, 7, 8, 9], metavar="C,C,...",
                   help="classes to transfer to (none in common with --source-classes)")
    p.add_argument("--labels-per-class", type=positive_int, default=20, metavar="N",
                   help="labelled training images of each target class that the arms train on")
    p.add_argument("--epochs", type=positive_int, default=2, metavar="N", help="source pretraining epochs")
    p.add_argument("--scratch-epochs", type=positive_int, default=60, metavar="N", help="epochs of the scratch arm")
    p.add_argument("--head-epochs", type=positive_int, default=60, metavar="N",
                   help="epochs of the frozen arm (new head on the frozen base)")
    p.add_argument("--finetune-epochs", type=int_at_least(0), default=None, metavar="N",
                   help="epochs of fine-tuning after the frozen arm's head training (default: 30; with --base: 0)")
    p.add_argument("--repeats", type=positive_int, default=3, metavar="N",
                   help="draws of the labelled target images (results are means over the draws)")
    p.add_argument("--arms", type=arm_list, default=None, metavar="ARM,ARM,...",
                   help="arms to run, in the table's order: any of scratch, frozen, finetune, autoencoder, "
                        "source+autoencoder (default: scratch,frozen,finetune)")
    p.add_argument("--autoencoder-epochs", type=positive_int, default=2, metavar="N",
                   help="epochs of the autoencoder arms' unsupervised pretraining")
    p.add_argument("--no-augment", action="store_true",
                   help="train the target arms without shift/zoom augmentation (the frozen arm then caches "
                        "base features)")
    add_training_options(p)
    p.add_argument("--save", default=None, metavar="DIR",
                   help="write source.npz and one checkpoint per arm (first draw; source_autoencoder.npz for "
                        "source+autoencoder, the autoencoders as <arm>_pretrained.npz) into DIR; on "
                        "Ctrl-C also interrupted.npz, the model being trained after its last completed epoch")
    add_output_options(p)
    add_plots_option(p)
    add_image_options(p)
    return p


def arm_list(text: str) -> list[str]:
    """``--arms``: comma-separated arm names, each one of :data:`nptl.transfer.ALL_ARMS`."""
    from ...transfer import ALL_ARMS

    arms = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in arms if a not in ALL_ARMS]
    if bad or not arms:
        raise argparse.ArgumentTypeError(f"must be arms among {','.join(ALL_ARMS)}, got {text!r}")
    return arms


def run(args) -> int:
    import os

    import numpy as np

    from ...datainfo import data_info
    from ...transfer import ARMS, AUTOENCODER_ARMS, format_table, run_transfer
    from ..progress import Console

    if args.base and args.arms:
        raise UsageError("--arms applies to the seed recipe, not to --base")
    if args.base:
        return run_base(args)
    if args.weights:
        raise UsageError("--weights applies to --base (the seed recipe pretrains its own base)")
    if args.finetune_epochs is None:
        args.finetune_epochs = 30
    args.arms = list(dict.fromkeys(args.arms or ARMS))
    overlap = sorted(set(args.source_classes) & set(args.target_classes))
    if overlap:
        raise UsageError(f"--source-classes and --target-classes share class(es) {','.join(map(str, overlap))}")
    save_dir = output_dir(args.save, "--save") if args.save else None
    json_path = output_file(args.json, "--json") if args.json else None
    if args.plots and "finetune" not in args.arms:
        raise UsageError("--plots draws the finetune arm's report: add finetune to --arms")
    if args.plots:
        import tempfile

        from ... import plots

        output_dir(args.plots, "--plots")
        plots.require()
        keep = tempfile.TemporaryDirectory(prefix="nptl-plots-") if save_dir is None else None

    data_name = args.data or default_data()
    data = load_data(data_name, args.seed, args.image_size, args.color, args.skip_bad_files)
    check_classes("--source-classes", args.source_classes, data, data_name)
    check_classes("--target-classes", args.target_classes, data, data_name)
    target = [data.class_names[c] for c in args.target_classes]
    labels = np.searchsorted(np.sort(args.target_classes), data.y_train[np.isin(data.y_train, args.target_classes)])
    check_labels_per_class(args.labels_per_class, labels, [data.class_names[c] for c in sorted(args.target_classes)])

    # the fit calls to come, for one bar per arm and draw and an ETA over the whole run
    n_source = int(np.isin(data.y_train, args.source_classes).sum())
    epochs = {"scratch": args.scratch_epochs, "frozen": args.head_epochs, "finetune": args.finetune_epochs}
    plan = []
    if any(a in ("frozen", "finetune", "source+autoencoder") for a in args.arms):
        plan.append(("source", args.epochs, n_source))
    n_target = int(np.isin(data.y_train, args.target_classes).sum())
    plan += [(arm, args.autoencoder_epochs, n_target) for arm in args.arms if arm in AUTOENCODER_ARMS]
    for r in range(args.repeats):
        for arm in args.arms:
            # the finetune arm continues the frozen arm's model when both run; otherwise (and for
            # the autoencoder arms) it trains a head first
            phases = {"scratch": ["scratch"], "frozen": ["frozen"]}.get(arm, ["frozen", "finetune"])
            if arm == "finetune" and "frozen" in args.arms:
                phases = ["finetune"]
            plan += [(f"draw {r + 1}/{args.repeats} {arm}" + ("" if p == arm or p == "finetune" else " head"),
                      epochs[p], len(target) * args.labels_per_class) for p in phases]
    console = Console(plan, quiet=args.quiet, verbose=args.verbose)
    try:
        result = run_transfer(
            data, data_name, args.source_classes, args.target_classes, args.labels_per_class,
            source_epochs=args.epochs, scratch_epochs=args.scratch_epochs, head_epochs=args.head_epochs,
            finetune_epochs=args.finetune_epochs, batch_size=args.batch_size, lr=args.lr,
            optimizer=args.optimizer, augment=not args.no_augment, repeats=args.repeats, seed=args.seed,
            save_dir=save_dir or (keep.name if args.plots else None), progress=console, log=console.log,
            arms=args.arms, autoencoder_epochs=args.autoencoder_epochs)
    except KeyboardInterrupt:
        if save_dir is not None:
            classes = args.source_classes if console.desc == "source" else args.target_classes
            info = data_info(data_name, [data.class_names[c] for c in classes], classes, data.x_train.shape[1:])
            save_interrupted(console, os.path.join(save_dir, "interrupted.npz"), info)
        raise
    print(format_table(result))
    if json_path:
        write_json(json_path, result)
    if args.plots:
        for path in plots.for_transfer(args.plots, result, save_dir or keep.name, data):
            console.log(f"wrote {path}")
    if save_dir is not None:
        names = (["source"] if "source" in result else []) + [a.replace("+", "_") for a in args.arms]
        log(f"saved {', '.join(f'{n}.npz' for n in names)} in {save_dir}")
    return 0


def run_base(args) -> int:
    """``nptl transfer --base``: :func:`nptl.base_transfer.run_base_transfer` on ``--data``."""
    import os

    from ...base_transfer import format_base_table, run_base_transfer
    from ...datainfo import checkpoint_extra, data_info
    from ...models import IMAGENET_MEAN, IMAGENET_STD
    from ..progress import Console

    weights = input_file(args.weights, "--weights") if args.weights else None
    save_dir = output_dir(args.save, "--save") if args.save else None
    json_path = output_file(args.json, "--json") if args.json else None
    data_name = args.data or default_data()
    data = load_data(data_name, args.seed, args.image_size, args.color, args.skip_bad_files,
                     input_shape=(3, 112, 112))
    if data.x_train.shape[1] != 3:
        raise UsageError(f"--base {args.base} needs colour images (3 channels); --data {data_name} has "
                         f"{data.x_train.shape[1]} (for an image folder pass --color rgb)")
    names = list(data.class_names)
    finetune = args.finetune_epochs or 0
    if save_dir is not None:
        os.makedirs(save_dir, exist_ok=True)
    n = len(data.x_train)  # the plan counts training images per epoch
    console = Console([("head", args.head_epochs, n)] + ([("finetune", finetune, n)] if finetune else []),
                      quiet=args.quiet, verbose=args.verbose)
    info = data_info(data_name, names, list(range(len(names))), data.x_train.shape[1:],
                     normalization={"scale": 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
    result = run_base_transfer(
        data, args.base, weights, epochs=args.head_epochs, finetune_epochs=finetune, batch_size=args.batch_size,
        lr=args.lr, optimizer=args.optimizer, seed=args.seed,
        save=os.path.join(save_dir, f"{args.base}-transfer.npz") if save_dir is not None else None,
        extra=checkpoint_extra(info, base=args.base), progress=console, log=console.log)
    print(format_base_table(result))
    if json_path:
        write_json(json_path, result)
    if save_dir is not None:
        log(f"saved {result['saved']}")
    return 0
