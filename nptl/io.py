"""Safe checkpoints: save and load a :class:`~nptl.graph.Sequential` as a plain ``.npz``.

API
---
- :func:`save` ``(model, path, extra=None, extra_arrays=None, compress=False) -> Path``
- :func:`load` ``(path) -> Sequential``
- :func:`load_checkpoint` ``(path) -> Checkpoint`` (model + ``extra`` + ``extra_arrays`` + metadata)
- :func:`load_weights` ``(model, path, layers=None, strict=True) -> list[str]`` (partial loading)
- :func:`read_metadata` ``(path) -> dict`` (the JSON header, no model is built)
- :func:`import_torch` ``(model, path_or_mapping, skip_head=False) -> list[str]`` and
  :func:`export_torch` ``(model) -> dict``: PyTorch state dicts (:mod:`nptl.torch_weights`)
- :class:`CheckpointError` (a ``ValueError``): every problem with a checkpoint file

File format (``format = "nptl.checkpoint"``, ``format_version = 1``)
-------------------------------------------------------------------
A standard NumPy ``.npz`` archive (a zip of ``.npy`` files, stored uncompressed unless
``compress=True``) readable with ``np.load(path, allow_pickle=False)``.  It holds only
numeric/bool/string arrays -- never pickled objects -- and the loader always passes
``allow_pickle=False``, so loading a checkpoint never executes code.  Entries:

``__nptl__``
    The header: UTF-8 JSON stored as a 1-D ``uint8`` array (``bytes(arr).decode()``)::

        {"format": "nptl.checkpoint", "format_version": 1, "nptl_version": "0.1.0",
         "name": "seed_cnn", "input_shape": [1, 28, 28], "dtype": "float32", "seed": 0,
         "layers": [{"type": "Conv2D",                   # key of nptl.layers.LAYER_TYPES
                     "config": {"name": "conv1", ...},   # layer.config(): constructor kwargs
                     "trainable": true,
                     "params": {"w": [32, 1, 3, 3], "b": [32]}},   # shapes, informational
                    {"type": "BatchNorm2D", ...,          # a layer with state also lists
                     "buffers": {"running_mean": [64], ...}},   # its buffers (absent = none)
                    ...],
         "extra": <any JSON value or null>,              # e.g. class names, history
         "extra_arrays": ["optim/...", ...]}             # names of the extra array entries

A block (:mod:`nptl.graph`) has no ``trainable``/``params`` of its own; its entry lists its
children: ``{"type": "Sequential", "config": {"name": "layer1"}, "layers": [...]}`` and
``{"type": "Residual", "config": {"name": "0"}, "layers": [<main path>], "shortcut": <entry or
null>}``.

``<dotted layer name>.<key>``
    One array per parameter (e.g. ``conv1.w``, ``dense2.b``, ``layer1.0.conv1.w`` inside
    blocks), of the model's ``dtype``, and one per buffer (``bn1.running_mean``,
    ``bn1.running_var`` of the model's dtype, ``bn1.num_batches_tracked`` int64): the layer
    state that is saved but not trained.

``<name>`` for each name in ``extra_arrays``
    Optional user arrays (e.g. optimizer state), any numeric, bool or string dtype.

Readers must reject a ``format_version`` newer than the one they support; a new version is
needed whenever a version-1 reader would misread a file.  Adding optional header keys does
not need a new version (readers ignore unknown keys).

Paths: :func:`save` appends ``.npz`` when ``path`` does not end with it (as ``np.savez``
does) and returns the path written.  The loaders open ``path`` as given if it exists,
otherwise ``path + ".npz"``, so the same ``path`` works for saving and loading.

Atomicity: :func:`save` writes a hidden temporary file next to the target
(``.<name>.<random>.tmp``), flushes and ``fsync``\\ s it, then ``os.replace``\\ s it onto the
target.  A reader therefore sees either the previous checkpoint or the new one, never a
partial file.  On an exception the temporary file is removed and the previous checkpoint
is untouched; a process killed mid-save (SIGKILL, power loss) cannot clean up, so a stale
``.<name>.*.tmp`` may remain -- the checkpoint at ``path`` is still the previous one -- until
the next successful save to ``path`` removes it (:func:`sweep_stale_temp_files`: only files of
that name pattern, owned by the user and older than the running save).

Reading never trusts what the file declares (see :mod:`nptl.limits`): the zip directory's entry
sizes, every ``.npy`` header and the JSON header (every layer config value by the kind of its
key, the input shape, the parameter shapes) are checked with exact integer arithmetic, and the
shapes the architecture will create (``Layer.array_shapes``) compared with the file, before any
entry is decompressed or any layer is built.  Caps: one entry and the parameters in total at
most ``NPTL_MAX_ARRAY_BYTES`` (default 1 GiB), all entries together 4 times that.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
import struct
import tempfile
import time
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .graph import Block, Residual, Sequential
from .layers import LAYER_TYPES
from .limits import array_bytes, exceeds_array_cap
from .torch_weights import WeightsError, export_torch, import_torch  # noqa: F401  (PyTorch state dicts)

#: the composite layers a checkpoint can hold (their entries list their children's)
BLOCK_TYPES = {"Sequential": Sequential, "Residual": Residual}

FORMAT_NAME = "nptl.checkpoint"
FORMAT_VERSION = 1
HEADER_KEY = "__nptl__"

__all__ = ["CheckpointError", "Checkpoint", "save", "load", "load_checkpoint", "load_weights",
           "import_torch", "export_torch", "WeightsError",
           "read_metadata", "FORMAT_NAME", "FORMAT_VERSION", "HEADER_KEY"]

_PARAM_DTYPES = ("float32", "float64")
_MAX_HEADER_BYTES = 16 << 20
#: All entries of an archive together may declare this many times NPTL_MAX_ARRAY_BYTES (room for
#: the parameters plus optimizer state such as Adam's two moments).
_TOTAL_CAP_FACTOR = 4

# Layer configs are checked before any layer is built, by the *kind* of each key rather than
# per layer type, so that every layer -- including ones added later -- is covered: a key's kind
# comes from _CONFIG_KEY_KINDS (keys not listed are counts), integers are bounded in magnitude
# by their kind's limit (constructors still check signs and meaning), floats must be finite,
# strings and lists short, nested objects (the layers of a block) are checked the same way.
_CONFIG_LIMITS = {"count": 1 << 20, "size": 1 << 12, "shape": 1 << 16}
_CONFIG_KEY_KINDS = {
    **dict.fromkeys(("kernel_size", "size", "pool_size", "stride", "strides", "padding", "dilation",
                     "output_padding", "scale", "scale_factor"), "size"),
    **dict.fromkeys(("input_shape", "shape", "target_shape", "output_shape"), "shape"),
}
_MAX_CONFIG_DEPTH = 16
_MAX_CONFIG_LIST = 4096
_MAX_CONFIG_STRING = 1024
_EXTRA_KINDS = "biufcUS"  # numeric, bool, unicode and byte strings: nothing that needs pickle
# What a damaged or foreign file is known to make numpy/zipfile raise (fuzzing found, besides
# the obvious ones: RuntimeError "file is encrypted" from a flipped zip flag bit, and
# tokenize.TokenError from a damaged .npy header).  The calls that parse untrusted bytes
# (np.load and reading one entry) catch any Exception; this tuple guards the rest.
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, KeyError,
                IndexError, TypeError, struct.error, zlib.error, NotImplementedError, OverflowError,
                SyntaxError, MemoryError, UnicodeDecodeError, RuntimeError, tokenize.TokenError)


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, corrupt, of an unsupported format, or does
    not match the model it is loaded into.  The message names the file."""


@dataclass
class Checkpoint:
    """Everything :func:`load_checkpoint` read: the rebuilt model, the user metadata
    (``extra``), the user arrays (``extra_arrays``), the full JSON header and the path."""

    model: Sequential
    extra: object = None
    extra_arrays: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    path: Path | None = None


# -- saving ------------------------------------------------------------------------------------
def _json_default(obj):
    """Let numpy scalars/arrays in ``extra`` serialise as plain JSON numbers/lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _entry(layer) -> dict:
    """The header entry of one layer; a block's lists its children's entries."""
    cls = type(layer).__name__
    if isinstance(layer, Block):
        if BLOCK_TYPES.get(cls) is not type(layer):
            raise ValueError(f"save: block '{layer.name}' has type {cls}, which is not one of "
                             f"{sorted(BLOCK_TYPES)}; it could not be loaded back")
        if isinstance(layer, Residual):
            return {"type": cls, "config": layer.config(), "layers": [_entry(l) for l in layer.main.layers],
                    "shortcut": None if layer.shortcut is None else _entry(layer.shortcut)}
        return {"type": cls, "config": layer.config(), "layers": [_entry(l) for l in layer.layers]}
    if LAYER_TYPES.get(cls) is not type(layer):
        raise ValueError(f"save: layer '{layer.name}' has type {cls}, which is not in "
                         f"nptl.layers.LAYER_TYPES {sorted(LAYER_TYPES)}; it could not be loaded back")
    entry = {"type": cls, "config": layer.config(), "trainable": bool(layer.trainable),
             "params": {k: list(v.shape) for k, v in layer.params.items()}}
    if layer.buffers:
        entry["buffers"] = {k: list(v.shape) for k, v in layer.buffers.items()}
    return entry


def _stored(layer) -> dict:
    """Every array of a (non-block) layer that a checkpoint holds, by key: parameters, then
    buffers (BatchNorm's running statistics)."""
    return {**layer.params, **layer.buffers}


def _listed(entry) -> dict:
    """Key → shape of every array a header entry of a (non-block) layer lists."""
    return {**entry["params"], **entry.get("buffers", {})}


def _header(model: Sequential, extra, extra_names: list[str]) -> dict:
    from . import __version__

    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "nptl_version": __version__,
            "name": model.name, "input_shape": list(model.input_shape), "dtype": model.dtype.name,
            "seed": model.seed, "layers": [_entry(l) for l in model.layers], "extra": extra,
            "extra_arrays": extra_names}


def _collect_arrays(model: Sequential, extra, extra_arrays) -> dict[str, np.ndarray]:
    """Every entry of the archive, validated before any file is touched."""
    if not isinstance(model, Sequential):
        raise TypeError(f"save: expected a Sequential model, got {type(model).__name__}")
    if model.input_shape is None:
        raise ValueError(f"save: model '{model.name}' is not built: pass input_shape= or call build()")
    if model.dtype.name not in _PARAM_DTYPES:
        raise ValueError(f"save: model dtype must be one of {_PARAM_DTYPES}, got {model.dtype}")
    arrays: dict[str, np.ndarray] = {}
    for path, layer in model.leaves():
        for key, value in _stored(layer).items():
            if value.dtype != model.dtype and not (key in layer.buffers and value.dtype.kind in "iu"):
                what = "buffer" if key in layer.buffers else "parameter"
                raise ValueError(f"save: {what} {path}.{key} has dtype {value.dtype} but the model's "
                                 f"dtype is {model.dtype}; call model.astype(...) first")
            arrays[f"{path}.{key}"] = value
    extra_arrays = {} if extra_arrays is None else dict(extra_arrays)
    for name, value in extra_arrays.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"save: extra_arrays names must be non-empty strings, got {name!r}")
        if name == HEADER_KEY or name in arrays:
            raise ValueError(f"save: extra_arrays name {name!r} collides with "
                             f"{'the header entry' if name == HEADER_KEY else 'a parameter'}")
        arr = np.asarray(value)
        if arr.dtype.kind not in _EXTRA_KINDS:
            raise TypeError(f"save: extra_arrays[{name!r}] has dtype {arr.dtype}; only numeric, bool and "
                            f"string arrays can be stored (object arrays would need pickle)")
        arrays[name] = arr
    header = _header(model, extra, list(extra_arrays))
    try:
        text = json.dumps(header, default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"save: the checkpoint metadata (extra= or a layer config) is not JSON "
                        f"serialisable: {e}") from e
    return {HEADER_KEY: np.frombuffer(text.encode("utf-8"), dtype=np.uint8), **arrays}


def _write_npz(fileobj, arrays: dict[str, np.ndarray], compress: bool) -> None:
    """Write the archive into an open binary file (the step a crash can interrupt)."""
    writer = np.savez_compressed if compress else np.savez
    writer(fileobj, allow_pickle=False, **arrays)


def _current_umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # not thread-safe, hence only the fallback
    os.umask(mask)
    return mask


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (POSIX); best effort elsewhere."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(model: Sequential, path, extra=None, extra_arrays: dict | None = None,
         compress: bool = False) -> Path:
    """Save ``model`` (architecture, weights, trainable flags) to ``path`` atomically.

    ``path`` gets a ``.npz`` suffix appended when it does not already end with ``.npz``;
    the path actually written is returned.  ``extra`` is any JSON-serialisable value
    (numpy scalars/arrays are converted), e.g. ``{"classes": [...], "history": {...}}``;
    ``extra_arrays`` maps names to arrays stored alongside (e.g. optimizer state as
    ``{"optim/conv1.w/velocity": v}``).  ``compress=True`` deflates the entries.

    Everything is validated before the file system is touched.  The archive is written to a
    temporary file in the target's directory, fsync'ed and renamed onto ``path``
    (``os.replace``): on any exception the temporary file is removed and an existing
    checkpoint at ``path`` is left untouched.  See the module docstring for the format.
    """
    started = time.time()
    arrays = _collect_arrays(model, extra, extra_arrays)
    target = os.fspath(path)
    if not target.endswith(".npz"):
        target += ".npz"
    target = os.path.abspath(target)
    directory, base = os.path.split(target)
    try:
        mode = os.stat(target).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_current_umask()
    tmp = tempfile.NamedTemporaryFile(dir=directory, prefix=f".{base}.", suffix=".tmp", delete=False)
    try:
        with tmp:
            _write_npz(tmp, arrays, compress)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, mode)
        os.replace(tmp.name, target)
    except BaseException:
        try:
            os.unlink(tmp.name)
        except OSError:
            pass
        raise
    _fsync_dir(directory)
    sweep_stale_temp_files(target, older_than=started)
    return Path(target)


def sweep_stale_temp_files(path, older_than: float) -> list[str]:
    """Remove the temp files that killed saves to ``path`` left behind: regular files (not
    links) in its directory, owned by this user, named as :func:`save` names them
    (``.<name>.<8 random characters>.tmp``) and last modified before ``older_than`` (a
    ``time.time()``; :func:`save` passes its own start, so a concurrent save still writing is
    never touched).  Returns the names removed; errors are ignored (best effort)."""
    directory, base = os.path.split(os.path.abspath(os.fspath(path)))
    pattern = re.compile(re.escape(f".{base}.") + r"[a-z0-9_]{8}\.tmp")
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not pattern.fullmatch(name):
            continue
        full = os.path.join(directory, name)
        try:
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and st.st_mtime < older_than:
                os.unlink(full)
                removed.append(name)
        except OSError:
            pass
    return removed


# -- reading -----------------------------------------------------------------------------------
def _resolve(path) -> str:
    p = os.fspath(path)
    if os.path.exists(p) or p.endswith(".npz"):
        return p
    return p + ".npz" if os.path.exists(p + ".npz") else p


def _fail(path, message: str, cause: BaseException | None = None):
    err = CheckpointError(f"checkpoint '{path}': {message}")
    if cause is not None:
        raise err from cause
    raise err


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _npy_header(fh) -> tuple[tuple, np.dtype]:
    """``(shape, dtype)`` from the ``.npy`` header at the start of ``fh`` (numpy bounds the
    header's length; nothing else is read)."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(shape), dtype


class _Archive:
    """The members of an ``.npz`` opened with :mod:`zipfile`, read one at a time and only after
    what they declare (zip directory size, ``.npy`` header dtype and shape) has been checked:
    nothing is decompressed or allocated beyond what the checks accepted."""

    def __init__(self, path: str, zf: zipfile.ZipFile):
        self.path, self.zf = path, zf
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if name in self.members:
                _fail(path, f"entry '{name}' appears twice in the archive")
            self.members[name] = info
        self.files = list(self.members)
        declared = sum(info.file_size for info in self.members.values())
        too_big = exceeds_array_cap(declared // _TOTAL_CAP_FACTOR,
                                    f"the archive's {len(self.members)} entries (declared {declared:,} bytes "
                                    f"in all, counted 1/{_TOTAL_CAP_FACTOR})")
        if too_big:
            _fail(path, too_big)
        for name, info in self.members.items():
            too_big = exceeds_array_cap(info.file_size, f"entry '{name}'")
            if too_big:
                _fail(path, too_big)

    def describe(self, name: str) -> tuple[np.dtype, tuple]:
        """``(dtype, shape)`` from the entry's ``.npy`` header, after checking that the entry
        holds exactly the bytes they need and no Python objects (which would need pickle)."""
        info = self.members[name]
        try:
            with self.zf.open(info) as fh:
                shape, dtype = _npy_header(fh)
                offset = fh.tell()
        except Exception as e:  # untrusted bytes: anything numpy/zipfile raises means a bad entry
            _fail(self.path, f"entry '{name}' is unreadable (corrupt, truncated, or not a .npy array): "
                             f"{_describe(e)}", e)
        if dtype.hasobject:
            _fail(self.path, f"entry '{name}' is unreadable: a pickled/object array ({dtype}), which is never "
                             f"loaded")
        nbytes = array_bytes(shape, dtype.itemsize)
        if offset + nbytes != info.file_size:
            _fail(self.path, f"entry '{name}': its .npy header declares {dtype} {shape} ({nbytes:,} bytes) but "
                             f"the entry holds {info.file_size - offset:,} bytes of data")
        return dtype, tuple(shape)

    def read(self, name: str) -> np.ndarray:
        """The entry's array (its header checked by :meth:`describe` first)."""
        self.describe(name)
        try:
            with self.zf.open(self.members[name]) as fh:
                value = np.lib.format.read_array(fh, allow_pickle=False)
        except Exception as e:  # untrusted bytes, as in describe
            _fail(self.path, f"entry '{name}' is unreadable (corrupt, truncated, or a pickled/object array, "
                             f"which is never loaded): {_describe(e)}", e)
        return value


@contextlib.contextmanager
def _open(path):
    """Open the archive with :mod:`zipfile` (never with pickle); yields ``(resolved_path,
    _Archive)``.  The zip directory is read and every entry's declared size checked against
    ``NPTL_MAX_ARRAY_BYTES`` before any entry is read."""
    p = _resolve(path)
    if not os.path.exists(p):
        tried = f"'{p}' does not exist" if p.endswith(".npz") else f"neither '{p}' nor '{p}.npz' exists"
        _fail(p, f"no such file ({tried})")
    if os.path.isdir(p):
        _fail(p, "is a directory, expected an .npz checkpoint file")
    try:
        fh = open(p, "rb")
    except OSError as e:
        _fail(p, f"cannot open: {_describe(e)}", e)
    with fh:
        magic = fh.read(4)
        fh.seek(0)
        # neither a zip (first local header, or an empty zip) nor a .npy: say so before numpy
        # guesses "pickled data" and suggests allow_pickle=True
        if magic not in (b"PK\x03\x04", b"PK\x05\x06", b"\x93NUM"):
            found = "an empty file" if not magic else f"a file starting with {fh.read(16)!r}"
            _fail(p, f"not a readable .npz archive (a zip of arrays, as nptl.io.save writes): found {found}")
        if fh.read(6) == b"\x93NUMPY":
            fh.seek(0)
            try:
                shape = _npy_header(fh)[0]
            except Exception:  # untrusted bytes
                shape = "?"
            _fail(p, f"expected an .npz archive (zip of arrays), found a single .npy array of shape {shape}")
        fh.seek(0)
        try:
            zf = zipfile.ZipFile(fh)
        except Exception as e:  # untrusted bytes: anything zipfile raises means a bad file
            _fail(p, f"not a readable .npz archive (truncated, corrupt or another format): {_describe(e)}", e)
        with zf:
            yield p, _Archive(p, zf)


def _check_type(path, where: str, value, types, expected: str):
    if not isinstance(value, types) or (types is int and isinstance(value, bool)):
        _fail(path, f"header field {where}: expected {expected}, found {value!r}")
    return value


def _parse_header(path, raw: np.ndarray) -> dict:
    """Decode and validate the JSON header (format, version, structure)."""
    try:
        if raw.dtype == np.uint8 and raw.ndim == 1:
            text = raw.tobytes().decode("utf-8")
        elif raw.dtype.kind == "U" and raw.size == 1:
            text = str(raw.reshape(()))
        else:
            _fail(path, f"header entry '{HEADER_KEY}': expected a 1-D uint8 array of UTF-8 JSON, found "
                        f"dtype {raw.dtype} shape {raw.shape}")
        meta = json.loads(text)
    except (UnicodeDecodeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        _fail(path, f"header entry '{HEADER_KEY}' is not valid UTF-8 JSON: {_describe(e)}", e)
    if not isinstance(meta, dict):
        _fail(path, f"header: expected a JSON object, found {type(meta).__name__}")
    fmt = meta.get("format")
    if fmt != FORMAT_NAME:
        _fail(path, f"wrong format: expected format {FORMAT_NAME!r}, found {fmt!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        _fail(path, f"header field format_version: expected a positive integer, found {version!r}")
    if version > FORMAT_VERSION:
        _fail(path, f"format_version {version} is newer than the newest supported ({FORMAT_VERSION}); "
                    f"it was written by nptl {meta.get('nptl_version', '?')} -- upgrade nptl to load it")
    shape = _check_type(path, "input_shape", meta.get("input_shape"), list, "a list of positive integers")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        _fail(path, f"header field input_shape: expected a list of positive integers, found {shape!r}")
    if meta.get("dtype") not in _PARAM_DTYPES:
        _fail(path, f"header field dtype: expected one of {_PARAM_DTYPES}, found {meta.get('dtype')!r}")
    _check_type(path, "name", meta.get("name"), str, "a string")
    if meta.get("seed") is not None:
        _check_type(path, "seed", meta.get("seed"), int, "an integer or null")
    _check_entries(path, _check_type(path, "layers", meta.get("layers"), list, "a list of layer entries"),
                   "layers")
    extra_names = _check_type(path, "extra_arrays", meta.get("extra_arrays", []), list, "a list of entry names")
    if not all(isinstance(n, str) for n in extra_names):
        _fail(path, f"header field extra_arrays: expected a list of entry names, found {extra_names!r}")
    return meta


def _check_entries(path, entries: list, where: str) -> None:
    """Validate a list of layer entries (recursively into blocks); names unique per list."""
    names = []
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        _check_type(path, at, entry, dict, "an object with type, config, trainable, params")
        kind = _check_type(path, f"{at}.type", entry.get("type"), str, "a layer class name")
        config = _check_type(path, f"{at}.config", entry.get("config"), dict, "an object of constructor kwargs")
        names.append(_check_type(path, f"{at}.config.name", config.get("name"), str, "the layer name"))
        if kind in BLOCK_TYPES:
            _check_entries(path, _check_type(path, f"{at}.layers", entry.get("layers"), list,
                                             "a list of layer entries"), f"{at}.layers")
            if kind == "Residual" and entry.get("shortcut") is not None:
                _check_entries(path, [entry["shortcut"]], f"{at}.shortcut")
                names_here = [e["config"]["name"] for e in entry["layers"]] + [entry["shortcut"]["config"]["name"]]
                if len(set(names_here)) != len(names_here):
                    _fail(path, f"header: layer names must be unique, repeated in {at}: {names_here}")
            continue
        _check_type(path, f"{at}.trainable", entry.get("trainable"), bool, "true or false")
        params = _check_type(path, f"{at}.params", entry.get("params"), dict, "an object key -> shape")
        buffers = _check_type(path, f"{at}.buffers", entry.get("buffers", {}), dict, "an object key -> shape")
        for field_name, listed in (("params", params), ("buffers", buffers)):
            for key, pshape in listed.items():
                if not isinstance(pshape, list) or not all(isinstance(s, int) and not isinstance(s, bool)
                                                            and s >= 0 for s in pshape):
                    _fail(path, f"header field {at}.{field_name}[{key!r}]: expected a shape (list of integers), "
                                f"found {pshape!r}")
        clash = sorted(set(params) & set(buffers))
        if clash:
            _fail(path, f"header field {at}: {clash} listed both as parameters and as buffers")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        _fail(path, f"header: layer names must be unique, repeated: {dupes}")


def _header_named(entries: list, prefix: str = ""):
    """``(dotted name, entry)`` of every entry, blocks before their children (as
    ``Block.named_layers``)."""
    for entry in entries:
        path = prefix + entry["config"]["name"]
        yield path, entry
        if entry["type"] in BLOCK_TYPES:
            children = entry["layers"] + ([entry["shortcut"]] if entry.get("shortcut") else [])
            yield from _header_named(children, path + ".")


def _header_leaves(entries: list) -> list:
    """``(dotted name, entry)`` of every non-block entry, in the order of ``Block.leaves()``."""
    return [(p, e) for p, e in _header_named(entries) if e["type"] not in BLOCK_TYPES]


def _check_config(path, where: str, key: str, value, depth: int = 0) -> None:
    """Bound one config value by its key's kind (see ``_CONFIG_LIMITS``), recursively."""
    if depth > _MAX_CONFIG_DEPTH:
        _fail(path, f"header field {where}: nested more than {_MAX_CONFIG_DEPTH} levels deep")
    kind = _CONFIG_KEY_KINDS.get(key, "count")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        limit = _CONFIG_LIMITS[kind]
        if abs(value) > limit:
            _fail(path, f"header field {where}: {value} is beyond the limit for a {kind} "
                        f"(|value| <= {limit}); a checkpoint never needs it")
    elif isinstance(value, float):
        if not math.isfinite(value):
            _fail(path, f"header field {where}: expected a finite number, found {value}")
    elif isinstance(value, str):
        if len(value) > _MAX_CONFIG_STRING:
            _fail(path, f"header field {where}: a string of {len(value)} characters (at most "
                        f"{_MAX_CONFIG_STRING})")
    elif isinstance(value, list):
        if len(value) > _MAX_CONFIG_LIST:
            _fail(path, f"header field {where}: a list of {len(value)} items (at most {_MAX_CONFIG_LIST})")
        for i, item in enumerate(value):
            _check_config(path, f"{where}[{i}]", key, item, depth + 1)
    elif isinstance(value, dict):
        for k, item in value.items():
            _check_config(path, f"{where}.{k}", k, item, depth + 1)
    else:  # json.loads yields nothing else
        _fail(path, f"header field {where}: unexpected value {value!r}")


def _check_sizes(path, meta: dict) -> None:
    """Everything the header says will be allocated, checked with exact integers: the layer
    configs, one image of ``input_shape`` and the parameters (each and in total)."""
    itemsize = np.dtype(meta["dtype"]).itemsize
    shape = meta["input_shape"]
    _check_config(path, "input_shape", "input_shape", shape)
    too_big = exceeds_array_cap(array_bytes(shape, itemsize), f"one input of shape {tuple(shape)}")
    if too_big:
        _fail(path, f"header field input_shape: {too_big}")
    total = 0
    for name, entry in _header_named(meta["layers"]):
        _check_config(path, f"{name}.config", "config", entry["config"])
    for _, entry in _header_leaves(meta["layers"]):
        for pshape in entry["params"].values():
            total += array_bytes(pshape, itemsize)
    too_big = exceeds_array_cap(total, "the parameters listed in the header")
    if too_big:
        _fail(path, f"header: {too_big}")


def _read_header(path, f: _Archive) -> dict:
    if HEADER_KEY not in f.files:
        shown = sorted(f.files)[:8]
        _fail(path, f"missing the architecture entry '{HEADER_KEY}' (not an nptl checkpoint?); found "
                    f"entries {shown}{' ...' if len(f.files) > 8 else ''}")
    if f.members[HEADER_KEY].file_size > _MAX_HEADER_BYTES:
        _fail(path, f"header entry '{HEADER_KEY}' declares {f.members[HEADER_KEY].file_size:,} bytes, more than "
                    f"the {_MAX_HEADER_BYTES:,} a header may take")
    meta = _parse_header(path, f.read(HEADER_KEY))
    _check_sizes(path, meta)
    return meta


def read_metadata(path) -> dict:
    """The checkpoint's JSON header (format, version, name, input_shape, dtype, seed, layers
    with type/config/trainable/param shapes, extra, extra_arrays names), without reading the
    weights or building the model.  Raises :class:`CheckpointError` on a bad file."""
    with _open(path) as (p, f):
        try:
            return _read_header(p, f)
        except CheckpointError:
            raise
        except _READ_ERRORS as e:
            _fail(p, f"corrupt archive: {_describe(e)}", e)


@dataclass
class _Contents:
    path: str
    meta: dict
    params: dict  # "<layer>.<key>" -> array, parameters and buffers
    extra_arrays: dict


def _read_all(path) -> _Contents:
    """Read and cross-check the whole archive: header, every parameter listed in it (dtype and
    shape), the extra arrays, and nothing else."""
    with _open(path) as (p, f):
        try:
            meta = _read_header(p, f)
            entries = {name: f.describe(name) for name in f.files if name != HEADER_KEY}
            dtype = meta["dtype"]
            problems, wanted_params, wanted_extra = [], [], []
            for lname, entry in _header_leaves(meta["layers"]):
                for key, shape in entry["params"].items():
                    full = f"{lname}.{key}"
                    found = entries.pop(full, None)
                    if found is None:
                        problems.append(f"{full}: expected a {dtype} array of shape {tuple(shape)}, found no such "
                                        f"entry")
                    elif found[0].name != dtype or found[1] != tuple(shape):
                        problems.append(f"{full}: expected {dtype} {tuple(shape)}, found {found[0]} {found[1]}")
                    else:
                        wanted_params.append(full)
                for key, shape in entry.get("buffers", {}).items():
                    full = f"{lname}.{key}"
                    found = entries.pop(full, None)
                    if found is None:
                        problems.append(f"{full}: expected a buffer of shape {tuple(shape)}, found no such entry")
                    elif found[0].name not in (dtype, "int64") or found[1] != tuple(shape):
                        problems.append(f"{full}: expected a {dtype} or int64 buffer {tuple(shape)}, found "
                                        f"{found[0]} {found[1]}")
                    else:
                        wanted_params.append(full)
            for name in meta.get("extra_arrays", []):
                found = entries.pop(name, None)
                if found is None:
                    problems.append(f"{name}: listed in extra_arrays, found no such entry")
                elif found[0].kind not in _EXTRA_KINDS:
                    problems.append(f"{name}: extra array of unsupported dtype {found[0]}")
                else:
                    wanted_extra.append(name)
            if entries:
                problems.append(f"unexpected entries not listed in the header: {sorted(entries)}")
            if problems:
                _fail(p, "archive does not match its header:\n  " + "\n  ".join(problems))
            params = {name: f.read(name) for name in wanted_params}
            extra_arrays = {name: f.read(name) for name in wanted_extra}
        except CheckpointError:
            raise
        except _READ_ERRORS as e:
            _fail(p, f"corrupt archive: {_describe(e)}", e)
    return _Contents(p, meta, params, extra_arrays)


def _param_mismatches(name: str, want: dict, listed: dict, dtypes) -> list[str]:
    """How the arrays an architecture needs (``want``: key -> shape) differ from those the
    header lists (parameters and buffers); ``dtypes`` is the model's dtype or key -> dtype."""
    problems = []
    for key in dict.fromkeys([*want, *listed]):
        if key not in listed:
            dtype = dtypes[key] if isinstance(dtypes, dict) else dtypes
            problems.append(f"{name}.{key}: the architecture needs {dtype} {tuple(want[key])}, found no such entry")
        elif key not in want:
            problems.append(f"{name}.{key}: the architecture has no such parameter, found an entry "
                            f"of shape {tuple(listed[key])}")
        elif tuple(want[key]) != tuple(listed[key]):
            problems.append(f"{name}.{key}: the architecture needs shape {tuple(want[key])}, found "
                            f"{tuple(listed[key])}")
    return problems


def _construct(p, entry: dict, where: str):
    """The layer (or block, with its children) an entry describes, not yet built."""
    kind, config = entry["type"], entry["config"]
    if kind in BLOCK_TYPES:
        children = [_construct(p, e, f"{where}.layers[{i}]") for i, e in enumerate(entry["layers"])]
        try:
            if kind == "Residual":
                short = entry.get("shortcut")
                return Residual(Sequential(children, name="main"),
                                None if short is None else _construct(p, short, f"{where}.shortcut"), **config)
            return Sequential(children, **config)
        except (TypeError, ValueError) as e:
            _fail(p, f"{where}: cannot construct {kind}(**{config}): {_describe(e)}", e)
    cls = LAYER_TYPES.get(kind)
    if cls is None:
        _fail(p, f"{where} ('{config['name']}'): unknown layer type {kind!r}; "
                 f"known types: {sorted(LAYER_TYPES) + sorted(BLOCK_TYPES)}")
    try:
        return cls(**config)
    except (TypeError, ValueError) as e:
        _fail(p, f"{where}: cannot construct {kind}(**{config}): {_describe(e)}", e)


def _plan(layer, shape: tuple, path: str):
    """``(dotted name, leaf layer, array_shapes or None, output shape)`` of every non-block layer
    in ``layer`` receiving per-sample ``shape``, computed from shapes alone (nothing is built)."""
    if isinstance(layer, Block):
        for child, child_shape in layer.child_input_shapes(shape):
            yield from _plan(child, tuple(child_shape), f"{path}.{child.name}")
    else:
        yield path, layer, layer.array_shapes(shape), tuple(layer.output_shape(shape))


def _build(c: _Contents) -> Sequential:
    """Rebuild the model from the header and copy the weights in."""
    meta, p = c.meta, c.path
    layers = [_construct(p, e, f"layers[{i}]") for i, e in enumerate(meta["layers"])]
    # before anything is allocated: the shape every layer outputs and the arrays it will create
    # (Layer.array_shapes: parameters and buffers), against the cap and the arrays in the file
    header_leaves = dict(_header_leaves(meta["layers"]))
    shape, problems, itemsize = tuple(meta["input_shape"]), [], np.dtype(meta["dtype"]).itemsize
    try:
        for layer in layers:
            for path, leaf, want, out in _plan(layer, shape, layer.name):
                too_big = exceeds_array_cap(array_bytes(out, itemsize), f"the output of layer '{path}' for one input")
                if too_big:
                    _fail(p, f"cannot build the architecture for input_shape {tuple(meta['input_shape'])}: {too_big}")
                if want is not None:
                    problems += _param_mismatches(path, want, _listed(header_leaves[path])
                                                  if path in header_leaves else {}, meta["dtype"])
            shape = tuple(layer.output_shape(shape))
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        _fail(p, f"cannot build the architecture for input_shape {tuple(meta['input_shape'])}: {_describe(e)}", e)
    if problems:
        _fail(p, "parameters do not match the architecture:\n  " + "\n  ".join(problems))
    try:
        model = Sequential(layers, input_shape=tuple(meta["input_shape"]), seed=meta["seed"],
                           dtype=meta["dtype"], name=meta["name"])
    except (TypeError, ValueError) as e:
        _fail(p, f"cannot build the architecture for input_shape {tuple(meta['input_shape'])}: {_describe(e)}", e)
    pairs = list(zip(model.leaves(), _header_leaves(meta["layers"])))
    for (path, layer), (_, entry) in pairs:  # what was built (layers without array_shapes), and dtypes
        stored, listed = _stored(layer), _listed(entry)
        problems += _param_mismatches(path, {k: v.shape for k, v in stored.items()}, listed,
                                      {k: v.dtype for k, v in stored.items()})
        problems += [f"{path}.{key}: the architecture needs dtype {want.dtype}, found {c.params[f'{path}.{key}'].dtype}"
                     for key, want in stored.items()
                     if key in listed and want.shape == tuple(listed[key])
                     and want.dtype != c.params[f"{path}.{key}"].dtype]
    if problems:
        _fail(p, "parameters do not match the architecture:\n  " + "\n  ".join(problems))
    for (path, layer), (_, entry) in pairs:
        for key, dst in _stored(layer).items():
            np.copyto(dst, c.params[f"{path}.{key}"])
        layer.trainable = entry["trainable"]
    return model


def load_checkpoint(path) -> Checkpoint:
    """Load a checkpoint with everything saved alongside the model: returns a
    :class:`Checkpoint` (``model``, ``extra``, ``extra_arrays``, ``metadata``, ``path``)."""
    c = _read_all(path)
    model = _build(c)
    return Checkpoint(model=model, extra=c.meta.get("extra"), extra_arrays=c.extra_arrays,
                      metadata=c.meta, path=Path(c.path))


def load(path) -> Sequential:
    """Rebuild the model saved at ``path``: architecture (via ``nptl.layers.LAYER_TYPES``),
    input shape, dtype, seed, name, bit-exact weights and trainable flags.

    Always reads with ``allow_pickle=False``: loading never executes code.  Any problem --
    missing file, not an npz, truncated/corrupt, no header, wrong format name, newer
    ``format_version``, unknown layer type, missing/extra/mis-shaped/mis-typed parameter
    arrays -- raises :class:`CheckpointError` naming the file, what was expected and what
    was found.  ``path`` without ``.npz`` is tried with the suffix appended."""
    return load_checkpoint(path).model


def _subtree(leaves: list, name: str) -> dict:
    """The leaves at or under dotted ``name``, keyed by their path relative to ``name``."""
    return {path[len(name):]: item for path, item in leaves if path == name or path.startswith(name + ".")}


def load_weights(model: Sequential, path, layers=None, strict: bool = True) -> list[str]:
    """Copy the weights of the named ``layers`` from the checkpoint at ``path`` into the
    built ``model`` (matched by dotted name), e.g. a pretrained base into a model with a
    different head: ``load_weights(model, path, layers=nptl.models.SEED_CNN_BASE)``.  A
    block's name (``"layer3"``) selects every layer inside it; ``"layer3.1.conv2"`` one layer.

    ``layers=None`` selects every top-level layer name present in both.  With ``strict=True`` a
    requested layer missing from the checkpoint or the model is an error; with
    ``strict=False`` it is skipped.  Everything is checked before anything is copied: if any
    selected layer differs in structure, type or any parameter's shape, ONE
    :class:`CheckpointError` lists every mismatch (``dense2.w: checkpoint (64, 10) vs model
    (64, 5)``) and the model is left unmodified.  Buffers (BatchNorm running statistics) are
    loaded with the parameters.  Values are cast to the model's dtype and copied in place
    (trainable flags are not changed).  Returns the names of the layers loaded
    (parameter-free layers included), in the order selected."""
    if not isinstance(model, Sequential):
        raise TypeError(f"load_weights: expected a Sequential model, got {type(model).__name__}")
    model._require_built()
    c = _read_all(path)
    ck_named = dict(_header_named(c.meta["layers"]))
    model_named = dict(model.named_layers())
    if layers is None:
        selected = [l.name for l in model.layers if l.name in ck_named]
    else:
        requested = [layers] if isinstance(layers, str) else list(layers)
        if strict:
            not_ck = [n for n in requested if n not in ck_named]
            not_model = [n for n in requested if n not in model_named]
            if not_ck or not_model:
                parts = []
                if not_ck:
                    parts.append(f"not in the checkpoint: {not_ck} (checkpoint layers: "
                                 f"{[e['config']['name'] for e in c.meta['layers']]})")
                if not_model:
                    parts.append(f"not in the model: {not_model} (model layers: {[l.name for l in model.layers]})")
                _fail(c.path, "requested layers missing (strict=True); " + "; ".join(parts))
        selected = list(dict.fromkeys(n for n in requested if n in ck_named and n in model_named))
    model_leaves, ck_leaves = model.leaves(), list(_header_leaves(c.meta["layers"]))
    problems, copies = [], []
    for name in selected:
        ck_type, m_type = ck_named[name]["type"], type(model_named[name]).__name__
        if ck_type != m_type and isinstance(model_named[name], Block):  # leaves are compared below
            problems.append(f"{name}: checkpoint {ck_type} vs model {m_type}")
        mine, theirs = _subtree(model_leaves, name), _subtree(ck_leaves, name)
        for rel in dict.fromkeys([*mine, *theirs]):
            full = name + rel
            if rel not in theirs or rel not in mine:
                where = "the model" if rel in mine else "the checkpoint"
                problems.append(f"{full}: only in {where}")
                continue
            layer, entry = mine[rel], theirs[rel]
            if entry["type"] != type(layer).__name__:
                problems.append(f"{full}: checkpoint {entry['type']} vs model {type(layer).__name__}")
            stored, listed = _stored(layer), _listed(entry)
            for key in dict.fromkeys([*stored, *listed]):
                ck_shape = tuple(listed[key]) if key in listed else None
                m_shape = stored[key].shape if key in stored else None
                if ck_shape != m_shape:
                    problems.append(f"{full}.{key}: checkpoint {ck_shape if ck_shape is not None else 'absent'} "
                                    f"vs model {m_shape if m_shape is not None else 'absent'}")
                else:
                    copies.append((stored[key], c.params[f"{full}.{key}"]))
    if problems:
        _fail(c.path, f"cannot load weights into model '{model.name}', nothing was modified; "
                      f"{len(problems)} mismatch(es):\n  " + "\n  ".join(problems))
    for dst, src in copies:
        np.copyto(dst, src, casting="same_kind")
    return selected

