"""Thread-pool policy: Numba's parallel kernels and BLAS must not fight over the cores.

OpenBLAS worker threads busy-wait after every GEMM; when Numba's parallel loops (im2col,
pooling, ...) start right after, the two pools oversubscribe the cores.  Measured on the
2-core reference machine (another process busy on one core), a seed-CNN training step at
batch 64 took 430 ms with both pools at 2 threads, 170 ms when BLAS was limited to 1 thread
around each model call (switching the pool size back and forth wakes the spinning workers),
and 36 ms with BLAS at 1 thread for the whole process while Numba keeps both cores.

So the first model computation calls :func:`configure`, which sets the process-wide BLAS
thread count to ``NPTL_BLAS_THREADS`` (default 1; ``NPTL_BLAS_THREADS=keep`` leaves BLAS
alone).  :func:`set_blas_threads` changes it explicitly at any time.
"""
from __future__ import annotations

import os

_configured = False


def set_blas_threads(n: int) -> None:
    """Set the process-wide BLAS (OpenBLAS/MKL) thread count."""
    from threadpoolctl import threadpool_limits

    global _configured
    threadpool_limits(limits=int(n), user_api="blas")
    _configured = True


def configure() -> None:
    """Apply the ``NPTL_BLAS_THREADS`` policy once per process (cheap after the first call)."""
    global _configured
    if _configured:
        return
    _configured = True
    setting = os.environ.get("NPTL_BLAS_THREADS", "1").strip().lower()
    if setting != "keep":
        set_blas_threads(int(setting))
