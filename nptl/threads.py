"""Thread-pool policy: Numba's parallel kernels and BLAS must not fight over the cores.

OpenBLAS worker threads busy-wait after every GEMM; when Numba's parallel loops (im2col,
pooling, ...) start right after, the two pools oversubscribe the cores.  Measured on the
2-core reference machine (another process busy on one core), a seed-CNN training step at
batch 64 took 430 ms with both pools at 2 threads, 170 ms when BLAS was limited to 1 thread
around each model call (switching the pool size back and forth wakes the spinning workers),
and 36 ms with BLAS at 1 thread for the whole process while Numba keeps both cores.

So the first model computation (and the first ``nptl.ops`` convolution) calls
:func:`configure`, which sets the process-wide BLAS thread count to ``NPTL_BLAS_THREADS``
(default 1; ``NPTL_BLAS_THREADS=keep`` leaves BLAS alone).  :func:`set_blas_threads` changes it
explicitly at any time.  It also tunes glibc's malloc to reuse freed memory
(:func:`keep_freed_memory`; ``NPTL_MALLOC=keep`` opts out).

The convolution kernels (:mod:`nptl.kernels.conv2d`) are built for that policy: they split the
batch over ``numba.get_num_threads()`` threads, each calling a single-threaded GEMM, so all the
parallelism comes from one set of threads.  If BLAS has more than one thread when they run
(``keep``, or an explicit :func:`set_blas_threads`), they use one slice and let BLAS
parallelise each GEMM instead, so two pools are never nested.
"""
from __future__ import annotations

import os

# Numba's ``omp`` threading layer (libgomp) spin-waits after every parallel region; the
# convolution threads (Python threads running nogil kernels) then share the cores with
# spinning workers.  Measured on the 2-core machine, a seed-CNN training step at batch 64 took
# 24.5 ms with the default policy and 15.1 ms with ``OMP_WAIT_POLICY=PASSIVE``.  libgomp reads
# the variable when Numba first starts its thread pool (the first parallel kernel), which comes
# after this import; a value set by the user is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_configured = False


def set_blas_threads(n: int) -> None:
    """Set the process-wide BLAS (OpenBLAS/MKL) thread count."""
    from threadpoolctl import threadpool_limits

    global _configured
    threadpool_limits(limits=int(n), user_api="blas")
    _configured = True


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks (up to 256 MB each) for reuse instead of
    returning them to the OS.

    A training step allocates and frees the same multi-megabyte activations and gradients
    every time; by default glibc serves them with fresh ``mmap`` pages (or trims the heap
    after freeing), so every step pays a page fault per 4 KB touched.  Measured on the 2-core
    machine, that was 25% of a seed-CNN step at batch 64 (28.1 ms → 20.5 ms with these
    settings; ReLU backward alone 3.5 ms → 0.7 ms).  Returns False where there is no glibc.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    ok = mallopt(M_MMAP_THRESHOLD, 256 << 20) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, 512 << 20) == 1
    ok &= mallopt(M_TOP_PAD, 16 << 20) == 1
    return bool(ok)


def configure() -> None:
    """Apply the ``NPTL_BLAS_THREADS`` and ``NPTL_MALLOC`` policies once per process (cheap
    after the first call).  ``NPTL_MALLOC=keep`` leaves the allocator alone."""
    global _configured
    if _configured:
        return
    _configured = True
    setting = os.environ.get("NPTL_BLAS_THREADS", "1").strip().lower()
    if setting != "keep":
        set_blas_threads(int(setting))
    if os.environ.get("NPTL_MALLOC", "").strip().lower() != "keep":
        keep_freed_memory()
