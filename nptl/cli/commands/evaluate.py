"""``nptl evaluate``: a saved model's test metrics on a data set."""
from __future__ import annotations

from ..common import add_data_option, check_classes, class_list, default_data, load_data, output_file, write_json

ORDER = 30


def add_parser(subparsers):
    p = subparsers.add_parser("evaluate", help="accuracy, per-class precision/recall/F1 and confusion matrix",
                              description="Test a saved model: accuracy, per-class precision/recall/F1 and the "
                                          "confusion matrix on the test split of --data.")
    p.add_argument("model", metavar="CHECKPOINT", help="an .npz checkpoint written by nptl train/transfer")
    add_data_option(p)
    p.add_argument("--classes", type=class_list, default=None, metavar="C,C,...",
                   help="test on these classes of --data, in the model's output order")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics to FILE as JSON")
    return p


def run(args) -> int:
    from ... import io
    from ...data import select_classes
    from ...train import evaluate

    json_path = output_file(args.json, "--json") if args.json else None
    model = io.load(args.model)
    meta = io.read_metadata(args.model)
    data_name = args.data or default_data()
    data = load_data(data_name)
    check_classes("--classes", args.classes, data, data_name)
    xt, yt = data.x_test, data.y_test
    names = list(data.class_names)
    if args.classes:
        xt, yt = select_classes(xt, yt, args.classes)
        names = [names[c] for c in args.classes]
    names = (meta.get("extra") or {}).get("class_names", names)
    ev = evaluate(model, xt, yt, class_names=names)
    print(ev.report())
    if json_path:
        write_json(json_path, ev.as_dict())
    return 0
