"""Copy bandwidth: the ceiling for memory-bound kernels (pooling, elementwise activations).

``copy_gbytes_per_s(nbytes)`` times a copy of a float32 array of ``nbytes`` bytes into another
with a Numba ``prange`` loop on the current thread count (the loop vectorises to plain vector
loads and stores), best of ``repeats`` samples, and counts ``2·nbytes`` (read + write) per copy.
The pooling and activation rows measure it at their own input size, so an op whose data fits in
cache is compared with a copy that fits in cache too, and give "% copy" = op GB/s ÷ copy GB/s.
"""
import functools

import numpy as np

from benchmarks.timing import measure


@functools.lru_cache(maxsize=None)
def _kernel():
    from numba import njit, prange

    @njit(parallel=True)
    def copy(src, dst):
        for i in prange(src.size):
            dst[i] = src[i]

    return copy


def copy_gbytes_per_s(nbytes, repeats=7, min_time=0.05):
    """Best-of-``repeats`` copy rate in GB/s for an ``nbytes`` float32 array (read + write)."""
    n = max(1, nbytes // 4)
    src = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    dst = np.empty_like(src)
    copy = _kernel()
    r = measure(lambda: copy(src, dst), max(3, repeats), warmup=1, min_time=min_time)
    return 2 * 4 * n / r["min"] / 1e9


def pct_of_copy(gbytes_per_s, copy_gbytes):
    return 100.0 * gbytes_per_s / copy_gbytes if gbytes_per_s and copy_gbytes else None
