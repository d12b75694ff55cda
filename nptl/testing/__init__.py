"""Property checks for ops and layers, the way nptl tests its own (needs the ``test`` extra).

``nptl.testing.strategies`` holds the hypothesis strategies (valid conv/pool geometries, arrays,
cases for every registered op).
"""
