"""Hostile and unlucky files for every reader: gzip bombs, overflowing IDX headers, sparse
CIFAR batches, decompression-bomb images, checkpoints asking for huge layers or hiding huge
members.  Used by ``tests/test_reliability.py`` (small sizes, low caps) and, as

    python -m tests.hostile_files [--out hostile.json] [CASE ...]

to measure the time and peak memory of rejecting each full-size file, every case in a fresh
process (the figures in the reliability notes and the README's Safety section).
"""
from __future__ import annotations

import gzip
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib

import numpy as np

MiB = 1 << 20
GiB = 1 << 30


# -- IDX ---------------------------------------------------------------------------------------
def idx_header(dims, type_code=0x08) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


def zeros_gzip(nbytes: int, chunk: int = MiB) -> bytes:
    """``nbytes`` zero bytes as a multi-member gzip stream (one compressed chunk repeated)."""
    member = gzip.compress(bytes(chunk), compresslevel=9)
    whole, rest = divmod(nbytes, chunk)
    return member * whole + (gzip.compress(bytes(rest)) if rest else b"")


def gzip_bomb_idx(path, dims, payload_bytes: int):
    """A gzip IDX file whose header declares ``dims`` (uint8) followed by ``payload_bytes``
    zero bytes: a few MB on disk per GiB inflated."""
    with open(path, "wb") as f:
        f.write(gzip.compress(idx_header(dims)))
        f.write(zeros_gzip(payload_bytes))
    return path


def raw_idx(path, dims, payload: bytes = b"\x00" * 16):
    with open(path, "wb") as f:
        f.write(idx_header(dims) + payload)
    return path


# -- CIFAR -------------------------------------------------------------------------------------
def sparse_cifar(path, records: int):
    """A CIFAR-10 batch of ``records`` all-zero records that takes no disk space (sparse)."""
    with open(path, "wb") as f:
        f.truncate(records * 3073)
    return path


# -- images ------------------------------------------------------------------------------------
def png_bomb(path, side: int):
    """A ``side × side`` grayscale PNG of zeros: ~side²/1000 bytes on disk, side² decoded.
    Written directly (zlib of zero rows) so that building it needs no side² buffer."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    comp = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0 + zero pixels
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def image_folder_bomb(directory, side: int):
    """An image folder with two classes, one image being a ``side²`` PNG bomb."""
    from PIL import Image

    for cls in ("a", "b"):
        os.makedirs(os.path.join(directory, cls), exist_ok=True)
        Image.new("L", (8, 8)).save(os.path.join(directory, cls, "small.png"))
    png_bomb(os.path.join(directory, "b", "bomb.png"), side)
    return directory


# -- checkpoints -------------------------------------------------------------------------------
def small_checkpoint(path):
    """A saved seed CNN (1×28×28, 10 classes): the base every hostile checkpoint edits."""
    import nptl.io
    from nptl.models import seed_cnn

    return nptl.io.save(seed_cnn(input_shape=(1, 28, 28), num_classes=10, seed=0), path)


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def edit_checkpoint(src, dst, header=None, add: dict | None = None, drop=()):
    """Copy checkpoint ``src`` to ``dst`` with the JSON header edited by ``header(meta)`` and
    raw members (``name.npy`` -> bytes, or -> callable writing into the open member) added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info.filename)
            if info.filename == "__nptl__.npy" and header is not None:
                arr = np.load(io.BytesIO(data), allow_pickle=False)
                meta = json.loads(arr.tobytes().decode())
                header(meta)
                data = npy_bytes(np.frombuffer(json.dumps(meta).encode(), np.uint8))
            zout.writestr(info.filename, data, zipfile.ZIP_STORED)
        for name, content in (add or {}).items():
            if callable(content):
                with zout.open(name, "w", force_zip64=True) as member:
                    content(member)
            else:
                zout.writestr(name, content)
    return dst


def deflated_zeros_member(shape, dtype="<f4"):
    """A writer for a ``.npy`` member of ``shape`` zeros (streamed: no big buffer)."""
    def write(member):
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
        member.write(header.getvalue())
        left = int(np.prod(shape)) * np.dtype(dtype).itemsize
        block = bytes(16 * MiB)
        while left:
            n = min(left, len(block))
            member.write(block[:n])
            left -= n
    return write


def layer_config(meta, name):
    return next(e for e in meta["layers"] if e["config"]["name"] == name)


def set_config(name, key, value):
    def edit(meta):
        layer_config(meta, name)["config"][key] = value
    return edit


def set_input_shape(shape):
    def edit(meta):
        meta["input_shape"] = list(shape)
    return edit


def lying_npy(shape, dtype="<f4", payload=b"\x00" * 64) -> bytes:
    """A ``.npy`` whose header declares ``shape`` but which holds only ``payload``."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return header.getvalue() + payload


# -- full-size cases: (name, builder(dir) -> path, python statement that reads the path) -------
def _cases():
    read_idx = "from nptl.data import read_idx; read_idx(P)"
    load = "import nptl.io; nptl.io.load(P)"
    return [
        ("IDX gzip bomb 4 GiB, header (60000, 28, 28)",
         lambda d: gzip_bomb_idx(os.path.join(d, "bomb4g.gz"), (60000, 28, 28), 4 * GiB), read_idx),
        ("IDX gzip bomb 4 GiB, header declares 4 GiB",
         lambda d: gzip_bomb_idx(os.path.join(d, "bomb4gd.gz"), (4, 1024, 1024, 1024), 4 * GiB), read_idx),
        ("IDX gzip bomb 1 GiB, header (10, 28, 28)",
         lambda d: gzip_bomb_idx(os.path.join(d, "bomb1g.gz"), (10, 28, 28), GiB), read_idx),
        ("IDX dims (65536,)*4 (product wraps int64 to 0)",
         lambda d: raw_idx(os.path.join(d, "wrap.idx"), (65536,) * 4), read_idx),
        ("IDX dims (2^32-1, 2^32-1)",
         lambda d: raw_idx(os.path.join(d, "neg.idx"), (2**32 - 1, 2**32 - 1)), read_idx),
        ("CIFAR batch, sparse 2.1 GB (700,000 records)",
         lambda d: sparse_cifar(os.path.join(d, "data_batch_1.bin"), 700_000),
         "from nptl.data import read_cifar10_batch; read_cifar10_batch(P)"),
        ("image folder with a 12000x12000 PNG (144 Mpixel)",
         lambda d: image_folder_bomb(os.path.join(d, "folder"), 12000),
         "from nptl.data import load_image_folder; load_image_folder(P)"),
        ("checkpoint conv1 filters = 10**9",
         lambda d: edit_checkpoint(small_checkpoint(os.path.join(d, "base.npz")), os.path.join(d, "f.npz"),
                                   set_config("conv1", "filters", 10**9)), load),
        ("checkpoint dense1 units = 2**40",
         lambda d: edit_checkpoint(small_checkpoint(os.path.join(d, "base.npz")), os.path.join(d, "u.npz"),
                                   set_config("dense1", "units", 2**40)), load),
        ("checkpoint input_shape = [1, 3000, 3000]",
         lambda d: edit_checkpoint(small_checkpoint(os.path.join(d, "base.npz")), os.path.join(d, "s.npz"),
                                   set_input_shape((1, 3000, 3000))), load),
        ("checkpoint with a deflated 2 GiB member",
         lambda d: edit_checkpoint(small_checkpoint(os.path.join(d, "base.npz")), os.path.join(d, "z.npz"),
                                   add={"junk.npy": deflated_zeros_member((512 * MiB,))}), load),
        ("checkpoint member header declares (100000, 100000)",
         lambda d: edit_checkpoint(small_checkpoint(os.path.join(d, "base.npz")), os.path.join(d, "l.npz"),
                                   drop=("conv1.w.npy",), add={"conv1.w.npy": lying_npy((100000, 100000))}), load),
    ]


_RUNNER = r"""
import resource, sys, time
P = sys.argv[1]
import numpy, nptl, nptl.io, nptl.data
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    exec(sys.argv[2])
    outcome = "accepted"
except BaseException as e:
    outcome = type(e).__name__ + ": " + str(e).splitlines()[0][:150]
dt = time.perf_counter() - t0
import json
print(json.dumps({"seconds": dt, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "base_mb": base / 1024, "outcome": outcome}))
"""


def measure(selected=(), timeout=300, root=None):
    rows = []
    root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    with tempfile.TemporaryDirectory() as d:
        for name, build, stmt in _cases():
            if selected and not any(s.lower() in name.lower() for s in selected):
                continue
            path = build(d)
            size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs) \
                if os.path.isdir(path) else os.path.getsize(path)
            try:
                out = subprocess.run([sys.executable, "-c", _RUNNER, str(path), stmt], capture_output=True,
                                     text=True, timeout=timeout, env=env, cwd=d)  # cwd: not this tree
                row = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() \
                    else {"outcome": f"process failed ({out.returncode}): {out.stderr.strip()[-200:]}"}
            except subprocess.TimeoutExpired:
                row = {"outcome": f"timeout after {timeout} s"}
            row.update(case=name, file_mb=size / MiB)
            rows.append(row)
            print(f"| {name} | {size / MiB:.2f} | {row.get('seconds', float('nan')):.3g} | "
                  f"{row.get('peak_mb', float('nan')):.0f} | {row.get('base_mb', float('nan')):.0f} | "
                  f"{row['outcome']} |", flush=True)
            if os.path.isdir(path):
                import shutil
                shutil.rmtree(path)
            else:
                os.unlink(path)
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", help="substrings of case names (default: all)")
    ap.add_argument("--out", help="write the rows as JSON")
    ap.add_argument("--root", help="the source tree whose nptl reads the files (default: this one)")
    args = ap.parse_args()
    print("| case | file MB | seconds | peak RSS MB | RSS after imports MB | outcome |")
    print("|---|---|---|---|---|---|")
    result = measure(args.cases, root=args.root)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
