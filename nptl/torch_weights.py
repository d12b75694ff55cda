"""PyTorch state dicts in and out of nptl models.

The key mapping
---------------
A PyTorch ``state_dict`` key is ``<module path>.<tensor name>``; in nptl the same array lives
at ``<dotted layer name>.<key>`` (:mod:`nptl.graph`).  Models whose layers are named like the
torch modules (:func:`nptl.models.resnet18`, :func:`nptl.models.vgg16` use torchvision's
names) therefore map key by key, with only the tensor names translated:

====================  ===========================  =====================================
nptl layer            nptl key → torch name         layout
====================  ===========================  =====================================
Conv2D                ``w`` → ``weight``,           ``(F, C, KH, KW)`` in both
                      ``b`` → ``bias``
Dense                 ``w`` → ``weight``,           nptl ``(in, out)`` = torch ``(out, in)``ᵀ:
                      ``b`` → ``bias``              **transposed** on the way in and out
BatchNorm2D/1D        ``w`` → ``weight`` (γ),       ``(C,)``; ``num_batches_tracked`` is
                      ``b`` → ``bias`` (β),         optional on import (older torchvision
                      buffers keep their names      files lack it), the model keeps its own
                      (``running_mean``,
                      ``running_var``,
                      ``num_batches_tracked``)
====================  ===========================  =====================================

so ``layer3.1.bn2`` holds ``layer3.1.bn2.running_var`` and ``fc`` holds ``fc.weight``.

Reading
-------
``source`` may be a ``.pth``/``.pt`` file (read with ``torch.load(weights_only=True)``:
tensors and plain containers only, never arbitrary objects; torch is needed only for this), a
``.safetensors`` file (read with the ``safetensors`` package, no torch; extra ``weights``), or a
mapping of names to arrays (NumPy arrays or torch tensors, e.g. ``model.state_dict()``).

Everything is checked before anything is copied: ONE :class:`WeightsError` lists every missing,
unexpected and mis-shaped key, and the model is left as it was.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from .graph import Block

__all__ = ["WeightsError", "torch_keys", "import_torch", "export_torch", "read_state_dict", "HEAD_PREFIXES"]

#: top-level layer names of the classification heads of torchvision's ResNet and VGG
HEAD_PREFIXES = ("fc.", "classifier.")
_TORCH_NAMES = {"w": "weight", "b": "bias"}
_TRANSPOSED = {("Dense", "w")}
_OPTIONAL = ("num_batches_tracked",)


class WeightsError(ValueError):
    """A weights file or mapping cannot be read or does not fit the model.  The message names
    the file (or ``<mapping>``) and every key that is wrong."""


def _arrays(layer) -> dict:
    """The arrays a (non-block) layer holds: parameters, then buffers."""
    return {**layer.params, **getattr(layer, "buffers", {})}


def torch_keys(model: Block) -> dict:
    """``torch key → (dotted layer name, nptl key, transposed)`` for every array of ``model``,
    in model order (the documented mapping above)."""
    keys = {}
    for path, layer in model.leaves():
        for key in _arrays(layer):
            torch_name = _TORCH_NAMES.get(key, key)
            keys[f"{path}.{torch_name}"] = (path, key, (type(layer).__name__, key) in _TRANSPOSED)
    return keys


def export_torch(model: Block) -> dict:
    """The model's arrays keyed and laid out as a PyTorch ``state_dict`` (copies; Dense
    weights transposed to ``(out, in)``).  ``torch.nn.Module.load_state_dict({k:
    torch.from_numpy(v) ...})`` takes it."""
    out = {}
    for tkey, (path, key, transposed) in torch_keys(model).items():
        value = _arrays(model[path])[key]
        out[tkey] = np.ascontiguousarray(value.T if transposed else value).copy()
    return out


# -- reading -----------------------------------------------------------------------------------
def _fail(where: str, message: str, cause: BaseException | None = None):
    err = WeightsError(f"weights {where}: {message}")
    if cause is not None:
        raise err from cause
    raise err


def _to_numpy(value):
    """A torch tensor or array-like as a NumPy array (torch is only touched if it is one)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        t = value.detach().cpu()
        if str(t.dtype) in ("torch.bfloat16", "torch.float16"):
            t = t.float()
        return t.numpy()
    return np.asarray(value)


def _from_mapping(where: str, mapping: Mapping) -> dict:
    arrays, bad = {}, []
    for name, value in mapping.items():
        if not isinstance(name, str):
            bad.append(f"{name!r}: key is a {type(name).__name__}, expected a string")
            continue
        try:
            arr = _to_numpy(value)
        except Exception as e:  # whatever a foreign object raises when converted
            bad.append(f"{name}: a {type(value).__name__}, expected a tensor or array ({type(e).__name__}: {e})")
            continue
        if arr.dtype.kind not in "fiub" or arr.dtype == object:
            bad.append(f"{name}: a {type(value).__name__} of dtype {arr.dtype}, expected a numeric tensor")
            continue
        arrays[name] = arr
    if bad:
        _fail(where, "holds entries that are not tensors (a state dict maps names to tensors):\n  "
                     + "\n  ".join(bad))
    return arrays


def _load_pth(path: str) -> dict:
    try:
        import torch
    except ImportError:
        _fail(f"'{path}'", "reading a .pth/.pt file needs PyTorch (pip install torch); or convert it "
                           "where torch is installed to .safetensors, which nptl reads without torch")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # untrusted bytes: a refused pickle, a truncated zip, another format
        text = f"{type(e).__name__}: {e}".splitlines()[0]
        if "weights_only" in str(e) or "Unpickling" in type(e).__name__:
            _fail(f"'{path}'", f"holds pickled objects other than tensors, which are never loaded "
                               f"(torch.load(weights_only=True) refused: {text})", e)
        _fail(f"'{path}'", f"not a readable PyTorch file (truncated, corrupt or another format): {text}", e)
    if isinstance(obj, Mapping) and set(obj) <= {"state_dict", "model"} and len(obj) == 1:
        obj = next(iter(obj.values()))  # {"state_dict": {...}}, as training scripts save
    if not isinstance(obj, Mapping):
        _fail(f"'{path}'", f"holds a {type(obj).__name__}, expected a state dict (a mapping of names to "
                           f"tensors, e.g. torch.save(model.state_dict(), path))")
    return _from_mapping(f"'{path}'", obj)


def _load_safetensors(path: str) -> dict:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        _fail(f"'{path}'", "reading .safetensors needs the safetensors package: pip install -e \".[weights]\"")
    try:
        return load_file(path)
    except Exception as e:  # untrusted bytes
        _fail(f"'{path}'", f"not a readable safetensors file (truncated, corrupt or another format): "
                           f"{type(e).__name__}: {e}", e)


def read_state_dict(source) -> tuple[str, dict]:
    """``(description, {name: ndarray})`` from a ``.pth``/``.pt``/``.safetensors`` path or a
    mapping; raises :class:`WeightsError` naming the file."""
    if isinstance(source, Mapping):
        return "<mapping>", _from_mapping("<mapping>", source)
    path = os.fspath(source)
    if not os.path.isfile(path):
        _fail(f"'{path}'", "no such file" if not os.path.exists(path) else "is not a file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".pth", ".pt", ".bin", ".ckpt"):
        return f"'{path}'", _load_pth(path)
    if suffix == ".safetensors":
        return f"'{path}'", _load_safetensors(path)
    _fail(f"'{path}'", f"unknown file type {suffix or '(no suffix)'!r}: expected .pth, .pt or .safetensors")


# -- importing ---------------------------------------------------------------------------------
def import_torch(model: Block, source, skip_head: bool = False, source_name: str | None = None) -> list[str]:
    """Copy a PyTorch state dict into ``model`` using the key mapping in the module docstring;
    returns the torch keys copied.

    ``skip_head=True`` ignores ``fc.*`` and ``classifier.*`` on both sides: the file's head is
    dropped and the model's head (a new one, or none with ``include_top=False``) keeps its
    initial weights.  Every missing, unexpected or mis-shaped key is listed in ONE
    :class:`WeightsError` before anything is changed.  Values are cast to the model's dtype.
    ``source_name`` names a mapping's origin in messages (a file already read by the caller).
    """
    where, arrays = read_state_dict(source)
    if source_name is not None:
        where = f"'{source_name}'"
    if skip_head:
        arrays = {k: v for k, v in arrays.items() if not k.startswith(HEAD_PREFIXES)}
    expected = {k: v for k, v in torch_keys(model).items() if not (skip_head and k.startswith(HEAD_PREFIXES))}
    missing = [k for k in expected if k not in arrays and not k.endswith(_OPTIONAL)]
    unexpected = [k for k in arrays if k not in expected]
    shaped, copies = [], []
    for tkey, (path, key, transposed) in expected.items():
        if tkey not in arrays:
            continue
        dst, src = _arrays(model[path])[key], arrays[tkey]
        want = dst.shape[::-1] if transposed else dst.shape
        if src.shape != want:
            shaped.append(f"{tkey}: file {tuple(src.shape)} vs model {tuple(want)}"
                          + (" (torch layout (out, in))" if transposed else ""))
        else:
            copies.append((dst, src.T if transposed else src))
    if missing or unexpected or shaped:
        lines = []
        for title, keys in (("missing from the file", missing), ("unexpected in the file", unexpected),
                            ("mis-shaped", shaped)):
            if keys:
                lines += [f"{title} ({len(keys)}):"] + [f"  {k}" for k in keys]
        hint = ""
        if unexpected and all(k.startswith(HEAD_PREFIXES) for k in unexpected) and not missing and not shaped:
            hint = "\n  (only the head differs: pass skip_head=True / --skip-head to drop it)"
        elif len(missing) + len(unexpected) > len(expected) // 2:
            hint = "\n  (most keys differ: is this state dict from another architecture?)"
        _fail(where, f"does not fit model '{model.name}', nothing was changed; {len(missing)} missing, "
                     f"{len(unexpected)} unexpected, {len(shaped)} mis-shaped:\n  " + "\n  ".join(lines) + hint)
    for dst, src in copies:
        np.copyto(dst, src, casting="unsafe")
    return [k for k in expected if k in arrays]
