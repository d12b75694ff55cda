"""Fast nearest-neighbour upsampling by integer factors (Numba, parallel over ``(n, c)`` planes).

Same formulas as :mod:`nptl.kernels.reference` (factors ``sh``, ``sw``)::

    (U1)  y[n,c,h,v]  = x[n,c,h // sh, v // sw]                       y (N, C, H·sh, W·sw)
    (U2)  dx[n,c,i,j] = Σ_{0≤p<sh} Σ_{0≤q<sw} dy[n,c,i·sh+p, j·sw+q]

Each input pixel is copied into an ``sh×sw`` block, so its gradient is the sum of that block.
"""
from __future__ import annotations

import numpy as np
from numba import prange, uintp

from .jit import kernel


@kernel(parallel=True)
def upsample2d_forward(x, sh, sw):
    """(U1): ``y (N, C, H·sh, W·sw)``."""
    N, C, H, W = x.shape
    Ho, Wo = H * sh, W * sw
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    xs = x.reshape(-1)
    ys = y.reshape(-1)
    for nc in prange(N * C):
        for i in range(H):
            src = (nc * H + i) * W
            row = (nc * Ho + i * sh) * Wo
            for j in range(W):       # the first output row of the block ...
                v = xs[uintp(src + j)]
                for q in range(sw):
                    ys[uintp(row + j * sw + q)] = v
            for p in range(1, sh):   # ... repeated sh − 1 times
                dst = row + p * Wo
                for k in range(Wo):
                    ys[uintp(dst + k)] = ys[uintp(row + k)]
    return y


@kernel(parallel=True)
def upsample2d_backward(dy, sh, sw):
    """(U2): ``dx (N, C, Ho//sh, Wo//sw)``, each entry the sum of its ``sh×sw`` block of dy."""
    N, C, Ho, Wo = dy.shape
    H, W = Ho // sh, Wo // sw
    dx = np.zeros((N, C, H, W), dtype=dy.dtype)
    ds = dy.reshape(-1)
    xs = dx.reshape(-1)
    for nc in prange(N * C):
        for i in range(H):
            dst = (nc * H + i) * W
            for p in range(sh):
                row = (nc * Ho + i * sh + p) * Wo
                for j in range(W):
                    acc = xs[uintp(dst + j)]
                    for q in range(sw):
                        acc += ds[uintp(row + j * sw + q)]
                    xs[uintp(dst + j)] = acc
    return dx
