"""CBLAS ``?gemm`` callable from inside Numba-compiled code (nopython, ``parallel=True``).

Why: the convolution kernels split the batch over Numba's threads and let every thread run
its own *single-threaded* GEMM on its slice, so one thread pool (Numba's) does all the work and
BLAS never spins up threads of its own to fight it.  Numba's ``np.dot`` inside ``njit`` needs
SciPy; instead we call the OpenBLAS that NumPy already ships (``numpy.libs/libscipy_openblas*``,
or a ``scipy_openblas64``/``scipy_openblas32`` package), through a
:class:`numba.types.ExternalFunction`.  The symbol is resolved by name when compiled code is
linked, so the callers stay ``cache=True``: we only register the library's address for the
fixed alias names below (``llvmlite.binding.add_symbol``) before any kernel runs.

Calling convention (x86-64 System V and AArch64 Linux): all integer arguments are declared
64-bit.  For an LP64 (32-bit ``int``) CBLAS the callee reads the low half of each register or
8-byte stack slot, which is the same value, so one declaration serves both interfaces.
Array arguments are passed as integer addresses (``arr.ctypes.data + offset·itemsize``); the
caller keeps the arrays alive across the call.

``AVAILABLE`` is False when no such library was found (e.g. NumPy linked to MKL or
Accelerate); :mod:`nptl.kernels.conv2d` then falls back to NumPy matmuls.
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys

import numpy as np
from numba import types

from .jit import kernel

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

_i64, _ptr = types.int64, types.intp
_sgemm_sig = types.void(_i64, _i64, _i64, _i64, _i64, _i64, types.float32, _ptr, _i64, _ptr, _i64,
                        types.float32, _ptr, _i64)
_dgemm_sig = types.void(_i64, _i64, _i64, _i64, _i64, _i64, types.float64, _ptr, _i64, _ptr, _i64,
                        types.float64, _ptr, _i64)
cblas_sgemm = types.ExternalFunction("nptl_cblas_sgemm", _sgemm_sig)
cblas_dgemm = types.ExternalFunction("nptl_cblas_dgemm", _dgemm_sig)

# (gemm prefix/suffix, thread-count getter) in the order NumPy/SciPy wheels name them.
_NAMES = [("scipy_cblas_", "64_", "scipy_openblas_get_num_threads64_"),
          ("scipy_cblas_", "", "scipy_openblas_get_num_threads"),
          ("cblas_", "64_", "openblas_get_num_threads64_"),
          ("cblas_", "", "openblas_get_num_threads")]

AVAILABLE = False
_get_threads = None


def _candidates():
    here = os.path.dirname(np.__file__)
    pats = [os.path.join(here, os.pardir, "numpy.libs", "lib*openblas*.so*"),
            os.path.join(here, ".dylibs", "lib*openblas*.dylib")]
    for mod in ("scipy_openblas64", "scipy_openblas32"):
        spec = sys.modules.get(mod)
        try:
            if spec is None:
                import importlib.util
                found = importlib.util.find_spec(mod)
                base = os.path.dirname(found.origin) if found and found.origin else None
            else:
                base = os.path.dirname(spec.__file__)
        except (ImportError, ValueError):
            base = None
        if base:
            pats.append(os.path.join(base, "lib", "lib*openblas*"))
    for pat in pats:
        yield from sorted(glob.glob(pat))


def _bind() -> None:
    global AVAILABLE, _get_threads
    if os.environ.get("NPTL_CONV_BLAS", "1").strip() == "0":
        return
    import llvmlite.binding as llvm

    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre, suf, getter in _NAMES:
            try:
                s, d = getattr(lib, f"{pre}sgemm{suf}"), getattr(lib, f"{pre}dgemm{suf}")
                g = getattr(lib, getter)
            except AttributeError:
                continue
            llvm.add_symbol("nptl_cblas_sgemm", ctypes.cast(s, ctypes.c_void_p).value)
            llvm.add_symbol("nptl_cblas_dgemm", ctypes.cast(d, ctypes.c_void_p).value)
            g.restype = ctypes.c_int
            g.argtypes = []
            _get_threads, AVAILABLE = g, True
            return


def blas_threads() -> int:
    """Current thread count of the bound OpenBLAS (1 when unknown)."""
    return int(_get_threads()) if _get_threads is not None else 1


@kernel
def gemm(trans_a, trans_b, M, N, K, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """``C[M,N] = op(A)·op(B) + beta·C`` on row-major blocks that start ``*_off`` elements into
    the (contiguous) arrays ``a``, ``b``, ``c`` with leading dimensions ``lda``, ``ldb``, ``ldc``.
    ``trans_*`` is :data:`NO_TRANS` or :data:`TRANS`.  One thread; dtype float32 or float64."""
    size = a.itemsize
    pa = a.ctypes.data + a_off * size
    pb = b.ctypes.data + b_off * size
    pc = c.ctypes.data + c_off * size
    if size == 4:
        cblas_sgemm(ROW_MAJOR, trans_a, trans_b, M, N, K, np.float32(1.0), pa, lda, pb, ldb,
                    np.float32(beta), pc, ldc)
    else:
        cblas_dgemm(ROW_MAJOR, trans_a, trans_b, M, N, K, 1.0, pa, lda, pb, ldb, beta, pc, ldc)
    # keep the arrays referenced until after the call
    return a.shape[0] + b.shape[0] + c.shape[0]


_bind()
