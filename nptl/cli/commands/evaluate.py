"""``nptl evaluate``: a saved model's test metrics on a data set."""
from __future__ import annotations

from ..common import (UsageError, add_data_option, add_image_options, check_classes, class_list, default_data,
                      load_data, log, output_file, write_json)

ORDER = 30


def add_parser(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="accuracy, per-class precision/recall/F1 and confusion matrix",
        description="Test a saved model on the test split of its data: accuracy, per-class precision/recall/F1 and\n"
                    "the confusion matrix.  The checkpoint says which data and classes it was trained on; other\n"
                    "data must have the same class names (matched by name), unless --force.")
    p.add_argument("model", metavar="CHECKPOINT", help="an .npz checkpoint written by nptl train/transfer")
    add_data_option(p, help="the data to test on (default: the data the checkpoint was trained on; for older "
                            "checkpoints fashion-mnist if installed, else synthetic)")
    p.add_argument("--classes", type=class_list, default=None, metavar="C,C,...",
                   help="test on these classes of --data, in the model's output order (default: the classes "
                        "the checkpoint records, found by name)")
    p.add_argument("--force", action="store_true",
                   help="evaluate even when the data's class names differ from the checkpoint's (with a warning)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics to FILE as JSON")
    add_image_options(p, defaults_from="the checkpoint's input shape")
    return p


def model_classes(ckpt) -> list[str] | None:
    """The class names a checkpoint records (``None`` if it records none)."""
    from ...datainfo import from_metadata

    info = from_metadata(ckpt.metadata)
    if info is not None:
        return list(info["class_names"])
    names = ckpt.extra.get("class_names") if isinstance(ckpt.extra, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else None


def choose_classes(ckpt, data, data_name: str, classes, force: bool) -> tuple[list[int], list[str]]:
    """The classes of ``data`` that the model's outputs stand for, in output order: ``--classes``,
    else the checkpoint's class ids (same data), else its class names looked up in ``data``,
    else all.  Refuses (or with ``force`` warns) when their names differ from the checkpoint's."""
    from ...datainfo import from_metadata

    info = from_metadata(ckpt.metadata)
    expected = model_classes(ckpt)
    names = list(data.class_names)
    outputs = ckpt.model.output_shape()[-1]
    if classes is not None:
        ids = list(classes)
    elif (info is not None and info.get("source") == data_name and info.get("class_ids")
          and max(info["class_ids"]) < len(names)):
        ids = list(info["class_ids"])
    elif expected is not None and len(expected) == outputs and all(n in names for n in expected):
        ids = [names.index(n) for n in expected]
    else:
        ids = list(range(len(names)))
    chosen = [names[c] for c in ids]
    if len(ids) != outputs:
        raise UsageError(f"the model has {outputs} outputs{f' ({_short(expected)})' if expected else ''} but --data "
                         f"{data_name} gives {len(ids)} classes ({_short(chosen)}); pick {outputs} with --classes")
    if expected is not None and chosen != expected:
        message = (f"class names differ: the model was trained on {_short(expected)}, --data {data_name} "
                   f"(classes {','.join(map(str, ids))}) has {_short(chosen)}")
        if not force:
            raise UsageError(message + " (--classes picks others; --force evaluates anyway)")
        log(f"warning: {message}; evaluating anyway (--force)")
    return ids, chosen


def _short(names) -> str:
    return ", ".join(names[:6]) + (f", ... ({len(names)} classes)" if len(names) > 6 else "")


def check_input_shape(model, shape, data_name: str) -> None:
    from ...data import dataset_kind

    if tuple(shape) != tuple(model.input_shape):
        raise UsageError(f"the model takes images of shape {tuple(model.input_shape)} (C, H, W), --data {data_name} "
                         f"has {tuple(shape)}" + ("; --image-size and --color set it for an image folder"
                                                  if dataset_kind(data_name) == "folder" else ""))


def run(args) -> int:
    from ... import io
    from ...data import select_classes
    from ...datainfo import from_metadata
    from ...train import evaluate

    json_path = output_file(args.json, "--json") if args.json else None
    ckpt = io.load_checkpoint(args.model)
    info = from_metadata(ckpt.metadata)
    data_name = args.data or (info or {}).get("source") or default_data()
    data = load_data(data_name, 0, args.image_size, args.color, args.skip_bad_files,
                     input_shape=ckpt.model.input_shape)
    check_classes("--classes", args.classes, data, data_name)
    check_input_shape(ckpt.model, data.x_test.shape[1:], data_name)
    ids, names = choose_classes(ckpt, data, data_name, args.classes, args.force)
    xt, yt = select_classes(data.x_test, data.y_test, ids)
    ev = evaluate(ckpt.model, xt, yt, class_names=names)
    print(ev.report())
    if json_path:
        write_json(json_path, {"checkpoint": str(args.model), "data": data_name, "class_ids": ids, **ev.as_dict()})
    return 0
