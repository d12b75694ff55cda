"""Fast dropout kernels (Numba, parallel over the flat array).

Same formulas as :func:`nptl.kernels.reference.dropout`:

(DO1)  ``y = x · keep / (1 − rate)``      (inverted dropout: the expectation of ``y`` is ``x``)
(DO2)  ``dx = dy · keep / (1 − rate)``
(DO3)  the mask of element ``k`` (flat C-order index) at call ``t`` of a layer seeded ``seed``:
       ``keep[k] = u_k ≥ rate`` with ``u_k = (z_k >> 11) · 2⁻⁵³ ∈ [0, 1)`` and
       ``z_k = mix(base + (k + 1)·γ)``, ``base = mix(mix(seed) + t)`` (all mod 2⁶⁴)

where ``mix`` is SplitMix64's finaliser and ``γ = 0x9E3779B97F4A7C15``: ``z_k`` is the
``k``-th output of the SplitMix64 generator started at ``base``.  The mask is therefore a pure
function of ``(seed, t, k)``: reproducible on any machine and any thread count, computable
for any element without generating the others.
"""
from __future__ import annotations

import numpy as np
from numba import prange, uint64

from .jit import kernel

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


@kernel
def _mix(z):
    """SplitMix64's finaliser on a uint64 (wrapping arithmetic)."""
    z = (z ^ (z >> uint64(30))) * uint64(MIX1)
    z = (z ^ (z >> uint64(27))) * uint64(MIX2)
    return z ^ (z >> uint64(31))


@kernel
def dropout_stream(seed, call):
    """``base = mix(mix(seed) + call)`` of (DO3), for non-negative ``seed`` and ``call``."""
    return _mix(_mix(uint64(seed)) + uint64(call))


@kernel(parallel=True)
def dropout_mask(size, rate, seed, call):
    """(DO3): boolean keep-mask of ``size`` elements for ``(seed, call)``."""
    keep = np.empty(size, dtype=np.bool_)
    base = dropout_stream(seed, call)
    unit = 1.0 / 9007199254740992.0          # 2⁻⁵³
    for k in prange(size):
        z = _mix(base + uint64(k + 1) * uint64(GOLDEN))
        keep[k] = float(z >> uint64(11)) * unit >= rate
    return keep


@kernel(parallel=True)
def dropout_forward(x, keep, scale):
    """(DO1) on flat arrays: ``y = x·scale`` where kept, 0 elsewhere (``scale = 1/(1 − rate)``
    in ``x``'s dtype).  Also the backward (DO2), with ``dy`` for ``x``."""
    y = np.empty_like(x)
    zero = x.dtype.type(0.0)
    for k in prange(x.size):
        y[k] = x[k] * scale if keep[k] else zero
    return y


@kernel
def dropout_backward(dy, keep, scale):
    """(DO2) ``dx = dy·keep/(1 − rate)``: the same elementwise map as the forward."""
    return dropout_forward(dy, keep, scale)
