"""Batch scheduling for the GEMM-based kernels: how to split a batch, and who runs the slices.

A kernel built on :mod:`nptl.kernels.conv2d_blas` works image slice by image slice: a serial
``nogil`` Numba function handles images ``[lo, hi)`` in chunks of ``nb`` images, each chunk one
*single-threaded* GEMM.  This module decides the split and runs it:

- :func:`plan` — ``(T, nb)``: ``T`` slices (one per Numba thread, 1 when BLAS itself has more than
  one thread, so two pools are never nested) and ``nb`` images per GEMM chunk (wide enough for
  the GEMM, small enough for L2).
- :func:`units` — the batch cut into work units of whole chunks, about :data:`UNITS_PER_THREAD`
  per thread (one unit when ``T = 1``).
- :func:`run_units` — runs ``task(u, lo, hi)`` for every unit: the calling thread and a persistent
  pool of ``T−1`` Python threads each take the next unit from a shared counter when they finish
  one (dynamic hand-out), so a thread that shares its core with another process does less of
  the work instead of holding up the others.

A kernel that sums partial results (``dW``) keeps one partial per *unit*, indexed by ``u``, and
reduces them in unit order: results do not depend on which thread ran which unit.

Kernels take ``(T, nb)`` as arguments and stay pure functions on arrays; the process-wide
thread settings that :func:`plan` reads are made explicit by :func:`nptl.configure`.
"""
from __future__ import annotations

import itertools
import os

import numba

from . import conv2d_blas as _blas

#: GEMM width to aim for (columns = images per chunk × Ho·Wo) ...
CHUNK_COLUMNS = 512
#: ... unless the chunk's cols buffer (R × columns) would outgrow this many bytes (L2 is 1 MB per
#: Zen 4 core; a 256 KB bound measured 10-30% slower on seed-cnn-2 and vgg-block than 512 columns)
CHUNK_BYTES = 2 * 1024 * 1024


def plan(N, L, R=1, itemsize=4, pointwise=False, F=0):
    """``(T, nb)``: threads to split a batch of ``N`` images over and images per GEMM chunk, for
    GEMMs of ``L`` columns per image and ``R`` rows (``itemsize`` bytes each) against an
    ``F × R`` weight matrix.  A pointwise convolution with ``L ≥ 64`` keeps ``nb = 1``: its GEMMs
    then read ``x[n]`` in place, which beat copying 3 images into one wider GEMM by 10-25% on
    the suite's 1×1 shape.  Every chunk's GEMM streams the whole weight matrix, so a chunk has
    at least ``R·F/(R+F)`` columns (the weights then cost no more traffic per column than the
    chunk's own rows) even past :data:`CHUNK_BYTES`: ResNet18's 512-channel 4×4 layer at batch 16
    took 13.7 ms forward in one chunk against 16.0 ms in chunks of 7 images (one Zen 4 core).

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
    nb = max(1, min(-(-CHUNK_COLUMNS // L), by_cache), -(-(R * F // (R + F)) // L))
    nb = min(per_thread, nb)
    if pointwise and L >= 64:
        nb = 1
    return T, nb


#: work units per thread when ``T > 1``: with 4, a thread slowed down by another process on its
#: core leaves most of its share to the others.  (With 1, the units are fixed per-thread slices.)
UNITS_PER_THREAD = 4


def units(T, N, nb, most=None):
    """``[(lo, hi), ...]``: images ``[0, N)`` in work units of whole ``nb``-image chunks, about
    :data:`UNITS_PER_THREAD` per thread but at most ``most`` (a kernel that keeps a large
    partial sum per unit); a single unit when ``T = 1``.

    >>> units(2, 64, 5)
    [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60), (60, 64)]
    >>> units(2, 64, 5, most=3)
    [(0, 25), (25, 50), (50, 64)]
    >>> units(1, 64, 5)
    [(0, 64)]
    """
    if T == 1:
        return [(0, N)]
    chunks = -(-N // nb)
    step = nb * max(1, -(-chunks // min(UNITS_PER_THREAD * T, most or chunks)))
    return [(lo, min(lo + step, N)) for lo in range(0, N, step)]


_executor = None
_executor_key = None


def run_units(T, bounds, task):
    """Run ``task(u, lo, hi)`` for every unit ``u`` of ``bounds`` (from :func:`units`) on ``T``
    threads: the calling thread and a persistent pool of ``T−1`` Python threads each take the
    next unit from a shared counter until none is left.  The unit kernels are ``nogil`` and call
    single-threaded BLAS, so the threads run truly in parallel and nothing else spins.  (A Numba
    ``prange`` driver did the same with static slices but re-optimised the whole kernel inside
    every parallel wrapper: +8 s of first-call compilation per pass.)

    >>> seen = []
    >>> run_units(2, units(2, 5, 1), lambda u, lo, hi: seen.append((u, lo, hi)))
    >>> sorted(seen)
    [(0, 0, 1), (1, 1, 2), (2, 2, 3), (3, 3, 4), (4, 4, 5)]
    """
    global _executor, _executor_key
    T = min(T, len(bounds))
    if T <= 1:
        for u, (lo, hi) in enumerate(bounds):
            task(u, lo, hi)
        return
    key = (os.getpid(), T)  # a forked child inherits the pool object but not its threads
    if _executor is None or _executor_key != key:
        from concurrent.futures import ThreadPoolExecutor
        _executor = ThreadPoolExecutor(max_workers=T - 1, thread_name_prefix="nptl-conv")
        _executor_key = key
    counter = itertools.count()  # next() on it is atomic under the GIL: each unit is taken once

    def work():
        for u in counter:
            if u >= len(bounds):
                return
            task(u, *bounds[u])

    futures = [_executor.submit(work) for _ in range(T - 1)]
    try:
        work()
    finally:
        for f in futures:
            f.result()
