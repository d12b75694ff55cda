"""The hypothesis strategies nptl's tests share: those of :mod:`nptl.testing.strategies`, the
kit users test their own ops and layers with, and :func:`examples`."""
from hypothesis import settings

from nptl.testing.strategies import (  # noqa: F401
    DTYPES, ConvGeometry, ConvTransposeGeometry, PoolGeometry, conv_geometries, conv_transpose_geometries,
    pool_geometries, rand, seeds, tolerance, upsample_factors,
)


def examples(n: int) -> int:
    """``n`` examples for a property that needs more (or fewer) than the profile's default, but
    never fewer than the active profile asks for (``thorough``: 500)."""
    return max(n, settings.default.max_examples) if settings.default.max_examples > 40 else n
