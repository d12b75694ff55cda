"""``@kernel``: ``numba.njit(cache=True)`` whose on-disk cache can never break a run.

Every Numba kernel of nptl is compiled through this decorator::

    @kernel                      # = njit(cache=True)
    def relu_forward(x): ...

    @kernel(parallel=True)       # = njit(cache=True, parallel=True)
    def max_pool2d_forward(x, size, stride): ...

Numba keeps compiled machine code in a cache directory (``NUMBA_CACHE_DIR``, else the
package's ``__pycache__``, else ``~/.cache/numba``).  Two ordinary situations break plain
``njit(cache=True)``:

- **no writable location** (read-only install, read-only ``NUMBA_CACHE_DIR``, no writable
  ``HOME``): ``njit(cache=True)`` raises ``RuntimeError: cannot cache function ...: no locator
  available`` when the module is imported;
- **a damaged cache entry** (a process killed while writing, a full disk, a copied tree):
  loading it raises ``UnpicklingError``/``EOFError``/... at the first call (numba#10434).

Here the first case compiles in memory instead (each process compiles on first use, ≈7 s
for the seed CNN) and the second discards that function's cache files and recompiles (the new
code is written back).  A failure to *write* the cache (disk full, permissions changed) only
stops caching that function.  Each kind of fallback emits one :class:`CacheWarning` per
process.  Nothing is changed at import time beyond the decorated functions themselves.
"""
from __future__ import annotations

import os
import warnings

import numba
from numba.core.caching import FunctionCache

__all__ = ["kernel", "CacheWarning"]


class CacheWarning(RuntimeWarning):
    """Numba's on-disk cache could not be used; kernels still work (compiled in memory)."""


_warned: set[str] = set()


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(message, CacheWarning, stacklevel=3)


class _GuardedCache(FunctionCache):
    """Numba's per-function cache, with unreadable entries discarded and write errors ignored."""

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception as e:  # any unreadable entry: truncated pickle, foreign bytes, stale code
            removed = self._discard()
            _warn_once("corrupt", f"nptl: discarded an unreadable Numba cache entry for "
                                  f"{self._name} in {self._cache_path} ({type(e).__name__}: {e}; "
                                  f"{removed} file(s) removed); recompiling")
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as e:
            self.disable()
            _warn_once("save", f"nptl: cannot write the Numba cache for {self._name} in "
                               f"{self._cache_path} ({type(e).__name__}: {e}); it is compiled in memory")

    def _discard(self) -> int:
        """Remove this function's index and data files (``<base>.nbi``, ``<base>.<n>.nbc``)."""
        prefix = self._impl.filename_base + "."
        removed = 0
        try:
            names = os.listdir(self._cache_path)
        except OSError:
            return 0
        for name in names:
            if name.startswith(prefix) and (name.endswith((".nbi", ".nbc")) or ".tmp." in name):
                try:
                    os.unlink(os.path.join(self._cache_path, name))
                    removed += 1
                except OSError:
                    pass
        return removed


def _compile(fn, options):
    dispatcher = numba.njit(**options)(fn)
    try:
        dispatcher._cache = _GuardedCache(fn)  # what njit(cache=True) does, with the guard
    except (RuntimeError, OSError) as e:  # no writable cache location
        _warn_once("locator", f"nptl: no writable Numba cache location ({e}; NUMBA_CACHE_DIR="
                              f"{os.environ.get('NUMBA_CACHE_DIR', '')!r}): kernels are compiled in "
                              "memory by every process. Set NUMBA_CACHE_DIR to a writable directory "
                              "to keep them.")
    return dispatcher


def kernel(fn=None, **options):
    """``numba.njit(cache=True, **options)`` with the fallbacks described in the module
    docstring.  Use bare (``@kernel``) or with njit options (``@kernel(parallel=True)``)."""
    if "cache" in options:
        raise TypeError("kernel: caching is always on (with fallbacks); do not pass cache=")
    if fn is None:
        return lambda f: _compile(f, options)
    return _compile(fn, options)
