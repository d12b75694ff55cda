"""Batch scheduling for the GEMM-based kernels: how to split a batch, and who runs the slices.

A kernel built on :mod:`nptl.kernels.conv2d_blas` works image slice by image slice: a serial
``nogil`` Numba function handles images ``[lo, hi)`` in chunks of ``nb`` images, each chunk one
*single-threaded* GEMM.  This module decides the split and runs it:

- :func:`plan` — ``(T, nb)``: ``T`` slices (one per Numba thread, 1 when BLAS itself has more than
  one thread, so two pools are never nested) and ``nb`` images per GEMM chunk (wide enough for
  the GEMM, small enough for L2).
- :func:`run_slices` — runs ``task(t, lo, hi)`` for slices ``[t·N//T, (t+1)·N//T)``: slice 0 in
  the calling thread, the others on a persistent pool of ``T−1`` Python threads.

Kernels take ``(T, nb)`` as arguments and stay pure functions on arrays; the process-wide
thread settings that :func:`plan` reads are made explicit by :func:`nptl.configure`.
"""
from __future__ import annotations

import os

import numba

from . import conv2d_blas as _blas

#: GEMM width to aim for (columns = images per chunk × Ho·Wo) ...
CHUNK_COLUMNS = 512
#: ... unless the chunk's cols buffer (R × columns) would outgrow this many bytes (L2 is 1 MB per
#: Zen 4 core; a 256 KB bound measured 10-30% slower on seed-cnn-2 and vgg-block than 512 columns)
CHUNK_BYTES = 2 * 1024 * 1024


def plan(N, L, R=1, itemsize=4, pointwise=False):
    """``(T, nb)``: threads to split a batch of ``N`` images over and images per GEMM chunk, for
    GEMMs of ``L`` columns per image and ``R`` rows (``itemsize`` bytes each).  A pointwise
    convolution with ``L ≥ 64`` keeps ``nb = 1``: its GEMMs then read ``x[n]`` in place, which
    beat copying 3 images into one wider GEMM by 10-25% on the suite's 1×1 shape.

    >>> T, nb = plan(64, 26 * 26, 9)
    >>> 1 <= T <= 64 and nb * 26 * 26 <= CHUNK_COLUMNS + 26 * 26
    True
    """
    T = numba.get_num_threads()
    if _blas.blas_threads() > 1:  # BLAS parallelises internally: do not nest two pools
        T = 1
    T = max(1, min(T, N))
    per_thread = -(-N // T)
    by_cache = CHUNK_BYTES // (R * L * itemsize)
    nb = max(1, min(per_thread, -(-CHUNK_COLUMNS // L), by_cache))
    if pointwise and L >= 64:
        nb = 1
    return T, nb


_executor = None
_executor_key = None


def run_slices(T, N, task):
    """Run ``task(t, lo, hi)`` for the ``T`` slices of ``N`` images: slice 0 in the calling
    thread, the others on a persistent pool of ``T−1`` Python threads.  The slice kernels are
    ``nogil`` and call single-threaded BLAS, so the threads run truly in parallel and nothing
    else spins.  (A Numba ``prange`` driver did the same but re-optimised the whole slice kernel
    inside every parallel wrapper: +8 s of first-call compilation per pass.)

    >>> seen = []
    >>> run_slices(2, 5, lambda t, lo, hi: seen.append((t, lo, hi)))
    >>> sorted(seen)
    [(0, 0, 2), (1, 2, 5)]
    """
    global _executor, _executor_key
    bounds = [(t * N) // T for t in range(T + 1)]
    if T == 1:
        task(0, 0, N)
        return
    key = (os.getpid(), T)  # a forked child inherits the pool object but not its threads
    if _executor is None or _executor_key != key:
        from concurrent.futures import ThreadPoolExecutor
        _executor = ThreadPoolExecutor(max_workers=T - 1, thread_name_prefix="nptl-conv")
        _executor_key = key
    futures = [_executor.submit(task, t, bounds[t], bounds[t + 1]) for t in range(1, T)]
    try:
        task(0, bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()
