"""nptl benchmark suite: run with ``python -m benchmarks`` (see benchmarks/README.md).

This package imports nothing at load time on purpose: ``__main__`` sets thread-count
environment variables before NumPy, Numba or OpenBLAS are first imported.
"""
