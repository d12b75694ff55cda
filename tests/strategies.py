"""The hypothesis strategies nptl's tests share: those of :mod:`nptl.testing.strategies`, the
kit users test their own ops and layers with."""
from nptl.testing.strategies import (  # noqa: F401
    DTYPES, ConvGeometry, ConvTransposeGeometry, PoolGeometry, conv_geometries, conv_transpose_geometries,
    pool_geometries, rand, seeds, tolerance, upsample_factors,
)
