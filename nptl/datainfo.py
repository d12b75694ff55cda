"""What a checkpoint records about its data, so it can be used without guessing.

``nptl train`` and ``nptl transfer`` store, in the checkpoint's ``extra`` (a JSON value the file
format treats as opaque), ``extra["data"]``::

    {"source": "fashion-mnist",              # the --data the model was trained on
     "class_names": ["Sandal", ...],         # output k of the model is class_names[k]
     "class_ids": [5, 6, 7, 8, 9],           # ... which is class class_ids[k] of that data
     "input_shape": [1, 28, 28],             # (C, H, W): C = 1 grayscale, 3 RGB
     "normalization": {"scale": 255, "mean": null, "std": null}}

and ``extra["class_names"]`` as before.  The network's input is ``(pixel / scale - mean) / std``
per channel (no mean/std: ``pixel / scale``); images given to ``nptl predict`` are resized to
``H x W`` and converted to the colour mode of ``C`` to match.

>>> info = data_info("synthetic", ["ring", "blob"], [3, 4], (1, 28, 28))
>>> info["class_ids"], info["normalization"]["scale"]
([3, 4], 255)
"""
from __future__ import annotations

import numpy as np

#: what every nptl data loader does to pixels: uint8 / 255 -> float32 in [0, 1]
PIXELS_01 = {"scale": 255, "mean": None, "std": None}


def data_info(source: str, class_names, class_ids, input_shape, normalization: dict | None = None) -> dict:
    """The ``extra["data"]`` record described in the module docstring."""
    return {"source": str(source), "class_names": [str(n) for n in class_names],
            "class_ids": [int(c) for c in class_ids], "input_shape": [int(s) for s in input_shape],
            "normalization": dict(PIXELS_01 if normalization is None else normalization)}


def checkpoint_extra(info: dict, **more) -> dict:
    """A checkpoint's ``extra``: the data record, the class names (as older readers expect) and
    anything else (e.g. ``history``)."""
    return {"class_names": info["class_names"], "data": info, **more}


def from_metadata(meta: dict) -> dict | None:
    """The data record of a checkpoint header (:func:`nptl.io.read_metadata`), or ``None`` for a
    checkpoint saved without one (then only ``extra["class_names"]``, if any, is known)."""
    extra = meta.get("extra")
    info = extra.get("data") if isinstance(extra, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("class_names"), list):
        return None
    return info


def normalize_pixels(x: np.ndarray, normalization: dict | None) -> np.ndarray:
    """uint8 NCHW pixels -> the network's float32 input, as the record says."""
    norm = PIXELS_01 if normalization is None else normalization
    out = np.asarray(x, dtype=np.float32) / np.float32(norm.get("scale") or 1)
    if norm.get("mean") is not None:
        mean = np.asarray(norm["mean"], np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(norm["std"], np.float32).reshape(1, -1, 1, 1)
        out = (out - mean) / std
    return out.astype(np.float32, copy=False)
