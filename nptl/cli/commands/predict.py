"""``nptl predict``: classify image files (or folders of them) with a saved model."""
from __future__ import annotations

from ..common import UsageError, log, output_file, positive_int, write_json

ORDER = 40


def add_parser(subparsers):
    p = subparsers.add_parser(
        "predict", help="classify image files or folders with a saved model",
        description="Classify PNG/JPEG images with a saved model: each is read as the model was trained\n"
                    "(size, colour and pixel scaling from the checkpoint) and gets its most probable classes.")
    p.add_argument("model", metavar="CHECKPOINT", help="an .npz checkpoint written by nptl train/transfer")
    p.add_argument("images", nargs="+", metavar="IMAGE|DIR", help="image files, or folders searched recursively")
    p.add_argument("--top", type=positive_int, default=1, metavar="K", help="show the K most probable classes")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the predictions to FILE as JSON")
    p.add_argument("--skip-bad-files", action="store_true",
                   help="leave out files that cannot be read as images, listing each, instead of stopping")
    return p


def run(args) -> int:
    import numpy as np

    from ... import io, ops
    from ...data.folder import image_files, read_images
    from ...datainfo import from_metadata, normalize_pixels
    from .evaluate import model_classes

    json_path = output_file(args.json, "--json") if args.json else None
    ckpt = io.load_checkpoint(args.model)
    model = ckpt.model
    channels, height, width = model.input_shape
    if channels not in (1, 3):
        raise UsageError(f"{args.model}: the model takes {channels}-channel input; predict reads gray (1) or RGB (3) "
                         "images")
    outputs = model.output_shape()[-1]
    names = model_classes(ckpt)
    if names is None or len(names) != outputs:
        log(f"note: {args.model} records no class names; classes are shown by output number")
        names = [f"class {k}" for k in range(outputs)]
    info = from_metadata(ckpt.metadata) or {}
    files = image_files(args.images, log=log)
    if not files:
        raise UsageError(f"no .png/.jpg/.jpeg image among {' '.join(args.images)}")
    x, kept, _ = read_images(files, (height, width), "rgb" if channels == 3 else "gray", args.skip_bad_files, log)
    files = [files[i] for i in kept]
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    probs = ops.softmax(model.predict(normalize_pixels(x, info.get("normalization")), batch_size=256))
    top = min(args.top, outputs)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    rows = [[{"class": names[k], "output": int(k), "probability": float(p[k])} for k in o]
            for p, o in zip(probs, order)]
    if json_path:
        write_json(json_path, {"checkpoint": str(args.model), "class_names": names, "predictions": [
            {"file": str(f), **r[0], "top": r} for f, r in zip(files, rows)]})
    width_file = max(len("file"), *(len(str(f)) for f in files))
    width_class = max(len("class"), *(len(r[0]["class"]) for r in rows))
    print(f"{'file':<{width_file}}  {'class':<{width_class}}  probability" + ("  next" if top > 1 else ""))
    for f, r in zip(files, rows):
        rest = ", ".join(f"{c['class']} {c['probability']:.4f}" for c in r[1:])
        print(f"{str(f):<{width_file}}  {r[0]['class']:<{width_class}}  {r[0]['probability']:11.4f}"
              + (f"  {rest}" if rest else ""))
    return 0
