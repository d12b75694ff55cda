"""Transfer learning from a pretrained ImageNet base: ResNet18 or VGG16 with a new head.

The recipe as practitioners run it on a CPU:

1. build the base at the images' size with a new head for the target classes
   (:func:`transfer_model`: ResNet18 gets a new ``fc``; VGG16 without its top gets ``flatten``
   and a new ``classifier`` Dense-ReLU-Dense, the Keras ``include_top=False`` recipe);
2. load the pretrained weights into the base only (:func:`load_base_weights`: an nptl
   checkpoint written by ``nptl import-weights``, or a ``.pth``/``.safetensors`` state dict);
3. freeze the base and train the head.  A frozen base computes the same function at every
   epoch (its BatchNorm layers run in inference mode), so :func:`nptl.fit` runs it once over
   the images and trains the head on the cached features: seconds instead of minutes;
4. optionally unfreeze the top block (``layer4`` / VGG's last conv stage) and fine-tune
   everything trainable at a 10× lower learning rate.

Images are RGB in ``[0, 1]``, normalised per channel with ImageNet's mean and standard
deviation (:func:`imagenet_normalize`), the statistics the torchvision weights expect.
"""
from __future__ import annotations

import time

import numpy as np

from . import io
from .graph import Sequential
from .layers import Dense, Flatten, ReLU
from .models import BASES, IMAGENET_MEAN, IMAGENET_STD
from .optim import make_optimizer
from .train import evaluate, fit

#: the layers fine-tuning unfreezes, per base
TOP_BLOCK = {"resnet18": ("layer4",), "vgg16": tuple(f"features.{i}" for i in range(24, 31))}


def imagenet_normalize(x: np.ndarray) -> np.ndarray:
    """``(x − mean_c) / std_c`` per RGB channel of ``(N, 3, H, W)`` images in ``[0, 1]``."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"ImageNet normalisation needs RGB images (N, 3, H, W), got shape {x.shape}; "
                         f"load the folder in colour")
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    return (x - mean) / std


def transfer_model(base: str, num_classes: int, image_size, seed: int = 0, hidden: int = 256):
    """``(model, base_layer_names)``: the base with a new head, built for RGB images of
    ``image_size`` (``S`` or ``(H, W)``); the base layers are the top-level ones the pretrained
    weights fill."""
    if base not in BASES:
        raise ValueError(f"unknown base {base!r}; expected one of {sorted(BASES)}")
    builder, _ = BASES[base]
    shape = (3,) + ((int(image_size),) * 2 if np.isscalar(image_size) else tuple(image_size))
    if base == "resnet18":
        model = builder(num_classes=num_classes, input_shape=shape, seed=seed)
        return model, [l.name for l in model.layers if l.name != "fc"]
    features = builder(include_top=False, input_shape=shape, seed=seed).layers
    head = Sequential([Dense(hidden, name="0"), ReLU(name="1"), Dense(num_classes, name="2")], name="classifier")
    model = Sequential(features + [Flatten(name="flatten"), head], input_shape=shape, seed=seed, name=base)
    return model, [l.name for l in model.layers if l.name != "classifier"]


def load_base_weights(model, weights, base_layers) -> str:
    """Fill the base layers from ``weights``: an nptl ``.npz`` (``nptl import-weights``
    output; loaded by layer name) or a PyTorch ``.pth``/``.pt``/``.safetensors`` state dict
    (its head ignored).  Nothing is changed on any mismatch.  Returns what was loaded."""
    path = str(weights)
    if path.endswith(".npz"):
        io.load_weights(model, path, layers=base_layers)
        return f"{path} (nptl checkpoint, layers {', '.join(base_layers)})"
    keys = io.import_torch(model, path, skip_head=True)
    return f"{path} ({len(keys)} tensors of a PyTorch state dict)"


def run_base_transfer(data, base: str = "resnet18", weights=None, epochs: int = 10, finetune_epochs: int = 0,
                      batch_size: int = 32, lr: float = 1e-3, optimizer: str = "adam", seed: int = 0,
                      save=None, extra: dict | None = None, progress: bool = True, log=print) -> dict:
    """Run the recipe on ``data`` (a :class:`nptl.data.Splits` of RGB images in ``[0, 1]``);
    returns a results dict (accuracies, seconds, whether features were cached).  ``save``: a
    checkpoint path for the trained model, ``extra`` what it records besides (default: class
    names, base, normalisation)."""
    x, y = imagenet_normalize(data.x_train), np.asarray(data.y_train)
    xt, yt = imagenet_normalize(data.x_test), np.asarray(data.y_test)
    names = list(data.class_names)
    model, base_layers = transfer_model(base, len(names), x.shape[2:], seed=seed)
    loaded = "random initialisation (no --weights)" if weights is None else load_base_weights(model, weights, base_layers)
    log(f"base: {base} at {x.shape[2]}x{x.shape[3]}, weights: {loaded}")
    model.freeze(up_to=base_layers[-1])
    result = {"base": base, "weights": None if weights is None else str(weights), "image_size": list(x.shape[2:]),
              "classes": names, "train_images": int(len(x)), "test_images": int(len(xt))}
    t0 = time.perf_counter()
    hist = fit(model, x, y, make_optimizer(optimizer, model, lr=lr), epochs=epochs, batch_size=batch_size,
               seed=seed, progress=progress, desc="head ")
    ev = evaluate(model, xt, yt, class_names=names)
    result["head"] = {"test_accuracy": ev.accuracy, "macro_f1": ev.macro_f1, "seconds": time.perf_counter() - t0,
                      "cached_features": hist.cached_features, "epochs": hist.epochs}
    log(f"head: test accuracy {ev.accuracy:.4f} ({result['head']['seconds']:.1f}s, base features "
        f"{'cached' if hist.cached_features else 'recomputed'})")
    if finetune_epochs:
        t0 = time.perf_counter()
        model.unfreeze(*TOP_BLOCK[base])
        fit(model, x, y, make_optimizer(optimizer, model, lr=lr / 10), epochs=finetune_epochs,
            batch_size=batch_size, seed=seed + 1, progress=progress, desc="finetune ")
        ev = evaluate(model, xt, yt, class_names=names)
        result["finetune"] = {"test_accuracy": ev.accuracy, "macro_f1": ev.macro_f1,
                              "seconds": time.perf_counter() - t0, "unfrozen": list(TOP_BLOCK[base])}
        log(f"finetune: test accuracy {ev.accuracy:.4f} ({result['finetune']['seconds']:.1f}s)")
    result["report"] = ev.as_dict()
    if save:
        if extra is None:
            extra = {"class_names": names, "base": base,
                     "normalization": {"scale": 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}
        written = io.save(model, save, extra=extra)
        result["saved"] = str(written)
    return result


def format_base_table(result: dict) -> str:
    """The phases as a Markdown table."""
    size = "x".join(map(str, result["image_size"]))
    lines = [f"base {result['base']} at {size} (weights: {result['weights'] or 'random'}): "
             f"{result['train_images']} train / {result['test_images']} test images, {len(result['classes'])} classes",
             "", "| phase | test accuracy | macro F1 | seconds | base features |", "|---|---|---|---|---|"]
    for phase in ("head", "finetune"):
        if phase in result:
            r = result[phase]
            how = ("cached" if r.get("cached_features") else "recomputed") if phase == "head" else \
                f"{', '.join(r['unfrozen'][:1])}{' ...' if len(r['unfrozen']) > 1 else ''} unfrozen"
            lines.append(f"| {phase} | {r['test_accuracy']:.4f} | {r['macro_f1']:.4f} | {r['seconds']:.1f} | {how} |")
    return "\n".join(lines)
