"""Kernels: pure functions on ndarrays.

``reference`` holds the formulas as plain loops (the oracle); ``conv2d``, ``pool``, ``dense``,
``activations`` and ``losses`` hold the fast twins.  Kernels never import layers, and trust
their arguments: validation lives in :mod:`nptl.ops`.
"""
