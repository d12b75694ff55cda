"""Test your own ops and layers the way nptl tests its own (needs the ``test`` extra: hypothesis).

- :mod:`nptl.testing.strategies` — hypothesis strategies: valid conv/pool geometries, arrays,
  cases for every registered op.
- :func:`check_op` — an :class:`nptl.registry.Op` against its reference twin, central
  differences and (optionally) torch, on generated cases.
- :func:`check_layer` — a layer's predicted output shape, twin, gradients, frozen-layer rules
  and (optionally) torch.

``examples/test_my_layer.py`` is a test file to copy.
"""
from .checks import LayerReport, assert_close, check_layer, check_op, check_op_case

__all__ = ["check_op", "check_op_case", "check_layer", "LayerReport", "assert_close", "strategies"]


def __getattr__(name):
    if name == "strategies":
        from . import strategies
        return strategies
    raise AttributeError(f"module 'nptl.testing' has no attribute {name!r}")
