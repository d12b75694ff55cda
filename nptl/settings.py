"""Process settings nptl depends on for speed, made explicit: :func:`configure` and :func:`configured`.

Three process-wide settings decide how fast a training step runs on a few cores.  Importing nptl
changes none of them; the first model or op computation applies the defaults below for the ones
not configured yet (so nothing happens behind your back *before* you use nptl, and
``nptl.configure(...)`` beforehand overrides any of them).  Each is tracked on its own: setting
one never marks another as done.

``blas_threads`` (``NPTL_BLAS_THREADS``, default ``1``; ``"keep"`` leaves BLAS alone)
    The convolutions split the batch over Numba's threads, each calling a *single-threaded*
    GEMM (:mod:`nptl.kernels.schedule`).  OpenBLAS worker threads busy-wait after every GEMM;
    with both pools at 2 threads a seed-CNN step at batch 64 took 430 ms on the 2-core
    reference machine, 36 ms with BLAS at 1 thread for the whole process.  This is the setting
    that other code in the process sees too (NumPy's ``@``, torch's CPU GEMMs when they share the
    OpenBLAS): ``configure(blas_threads="keep")`` or ``NPTL_BLAS_THREADS=keep`` opts out, and
    the convolutions then let BLAS parallelise each GEMM instead (never two pools nested).
``malloc`` (``NPTL_MALLOC``, default ``"reuse"``; ``"keep"`` leaves the allocator alone)
    glibc's malloc keeps freed blocks under 64 MB for reuse instead of returning them to the
    OS: a training step frees and reallocates the same activations every time, and fresh pages
    cost a page fault per 4 KB (28.1 → 20.5 ms per seed-CNN step).  Larger blocks are still
    mapped and returned when freed: kept in the heap, VGG16's 103 and 205 MB maps at 224×224
    fragment it, and its training peak rose from 2,596 to 2,952 MB (threshold 256 MB, 4 steps
    after 3 inference passes).  Lasts for the process.
``omp_wait_policy`` (``NPTL_OMP_WAIT_POLICY``; default ``"passive"`` unless ``OMP_WAIT_POLICY``
    is set, then ``"keep"``)
    Numba's ``omp`` threading layer spin-waits after every parallel region, against the
    convolution threads (24.5 → 15.1 ms per step with ``passive``).  libgomp reads
    ``OMP_WAIT_POLICY`` once, when Numba starts its thread pool: nptl sets it, starts the pool,
    and puts the variable back, so child processes and other libraries do not inherit it.
    Lasts for the process; it cannot change after the pool has started.

>>> import nptl
>>> changes = nptl.configure()                     # the defaults, now (else at first use)
>>> with nptl.configured(blas_threads=2):          # scoped: restored on exit
...     pass
>>> nptl.configure(blas_threads="keep")            # what this call changed: nothing
{}
"""
from __future__ import annotations

import contextlib
import os

__all__ = ["configure", "configured", "ensure_configured", "current", "Changes"]

SETTINGS = ("blas_threads", "malloc", "omp_wait_policy")
_ENV = {"blas_threads": "NPTL_BLAS_THREADS", "malloc": "NPTL_MALLOC", "omp_wait_policy": "NPTL_OMP_WAIT_POLICY"}

_applied: dict[str, object] = {}   # setting -> value applied (a setting is done when it is here)


class Changes(dict):
    """What one :func:`configure` call changed: ``{setting: (before, after)}``; printed one line
    per setting."""

    def __str__(self) -> str:
        if not self:
            return "nptl.configure: nothing changed"
        return "\n".join(f"nptl.configure: {k}: {b} -> {a}" for k, (b, a) in self.items())


# -- parsing: every value is checked before anything is applied -----------------------------------
def _parse_blas_threads(value, source):
    if isinstance(value, str):
        v = value.strip().lower()
        if v == "keep":
            return "keep"
        if v.isdigit() and int(v) >= 1:
            return int(v)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return int(value)
    raise ValueError(f"{source}: expected a thread count >= 1 or 'keep', got {value!r}")


def _parse_choice(choices):
    def parse(value, source):
        v = value.strip().lower() if isinstance(value, str) else value
        if v not in choices:
            raise ValueError(f"{source}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return v
    return parse


_PARSE = {"blas_threads": _parse_blas_threads, "malloc": _parse_choice(("reuse", "keep")),
          "omp_wait_policy": _parse_choice(("passive", "active", "keep"))}


def _default(name):
    """The value for ``name`` from the environment, and where it came from."""
    var = _ENV[name]
    if var in os.environ:
        return os.environ[var], f"environment variable {var}"
    if name == "omp_wait_policy":
        return ("keep" if "OMP_WAIT_POLICY" in os.environ else "passive"), "default"
    return {"blas_threads": "1", "malloc": "reuse"}[name], "default"


# -- applying -------------------------------------------------------------------------------------
def _blas_thread_count():
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return counts[0] if counts else None


def _apply_blas_threads(n):
    from threadpoolctl import threadpool_limits

    before = _blas_thread_count()
    if n != "keep":
        threadpool_limits(limits=n, user_api="blas")
    return before, _blas_thread_count()


def _keep_freed_memory() -> bool:
    """glibc: keep freed blocks under 64 MB for reuse (mmap threshold), trim the heap only
    above 512 MB, grow it 16 MB at a time.  False where there is no glibc."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    ok = mallopt(M_MMAP_THRESHOLD, 64 << 20) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, 512 << 20) == 1
    ok &= mallopt(M_TOP_PAD, 16 << 20) == 1
    return bool(ok)


def _apply_malloc(mode):
    before = _applied.get("malloc", "glibc default")
    if mode == "keep" or before == "reuse":
        return before, before
    return before, ("reuse" if _keep_freed_memory() else "glibc default (no glibc)")


def _numba_pool_started() -> bool:
    try:
        from numba.np.ufunc import parallel
        return bool(parallel._is_initialized)
    except (ImportError, AttributeError):  # another Numba: assume it may have started
        return True


def _apply_omp_wait_policy(policy, explicit):
    before = _applied.get("omp_wait_policy", os.environ.get("OMP_WAIT_POLICY", "unset"))
    if policy == "keep":
        return before, before
    if _numba_pool_started():
        if explicit:
            raise RuntimeError(
                "nptl.configure: omp_wait_policy can only be set before Numba's thread pool starts "
                "(before the first model or op computation); call nptl.configure first")
        return before, before  # a default comes too late (a kernel ran first): nothing to do
    saved = os.environ.get("OMP_WAIT_POLICY")
    os.environ["OMP_WAIT_POLICY"] = policy.upper()
    try:  # libgomp reads the variable once, when the pool starts: start it now, then restore
        from numba.np.ufunc import parallel
        parallel._launch_threads()
    except (ImportError, AttributeError):
        return before, policy.upper()  # cannot start it here: leave the variable set
    if saved is None:
        del os.environ["OMP_WAIT_POLICY"]
    else:
        os.environ["OMP_WAIT_POLICY"] = saved
    return before, policy.upper()


_APPLY = {"blas_threads": _apply_blas_threads, "malloc": _apply_malloc}


def configure(blas_threads=None, malloc=None, omp_wait_policy=None) -> Changes:
    """Apply process settings (see the module docstring) and return what changed.

    An argument given is applied now.  An argument left ``None`` gets its environment default,
    applied only if that setting has not been applied yet — so ``nptl.configure()`` applies the
    defaults the first model or op computation would, and is cheap afterwards.  Every value
    (arguments and environment variables) is parsed before anything is applied or marked
    done: a bad value raises ``ValueError`` naming it, every time.

    >>> print(configure(malloc="keep"))  # doctest: +ELLIPSIS
    nptl.configure...
    """
    given = {"blas_threads": blas_threads, "malloc": malloc, "omp_wait_policy": omp_wait_policy}
    todo = {}
    for name in SETTINGS:
        if given[name] is not None:
            todo[name] = _PARSE[name](given[name], f"nptl.configure: '{name}'")
        elif name not in _applied:
            raw, source = _default(name)
            todo[name] = _PARSE[name](raw, f"nptl.configure: {source} ({name})")
    changes = Changes()
    # omp first: it must precede anything that could start Numba's pool
    for name in sorted(todo, key=lambda n: n != "omp_wait_policy"):
        if name == "omp_wait_policy":
            before, after = _apply_omp_wait_policy(todo[name], given[name] is not None)
        else:
            before, after = _APPLY[name](todo[name])
        _applied[name] = todo[name] if name != "malloc" else after
        if before != after:
            changes[name] = (before, after)
    return changes


def ensure_configured() -> None:
    """Apply the defaults of the settings not applied yet (the first-use hook of models and ops;
    one dict lookup once done)."""
    if len(_applied) < len(SETTINGS):
        configure()


def current() -> dict:
    """The settings as applied so far (a setting not applied yet is absent), plus the BLAS
    thread count in effect now (``blas_threads_now``)."""
    return {**_applied, "blas_threads_now": _blas_thread_count()}


@contextlib.contextmanager
def configured(blas_threads):
    """``with nptl.configured(blas_threads=n):`` — BLAS at ``n`` threads (or ``"keep"``) inside
    the block, the previous count restored after it.  (``malloc`` and ``omp_wait_policy`` last
    for the process: glibc and libgomp read them once.)"""
    ensure_configured()
    n = _parse_blas_threads(blas_threads, "nptl.configured: 'blas_threads'")
    before_setting, before_count = _applied.get("blas_threads"), _blas_thread_count()
    configure(blas_threads=n)
    try:
        yield
    finally:
        if before_count is not None:
            from threadpoolctl import threadpool_limits
            threadpool_limits(limits=before_count, user_api="blas")
        _applied["blas_threads"] = before_setting
