"""Weight initialisers, drawn from a seeded ``numpy.random.Generator``.

fan_in = inputs feeding one output unit (C·KH·KW for conv, in_features for dense),
fan_out = outputs fed by one input unit (F·KH·KW, out_features).

- ``he_normal``:      N(0, 2/fan_in)                     (He et al. 2015, for ReLU)
- ``he_uniform``:     U(±√(6/fan_in))
- ``glorot_normal``:  N(0, 2/(fan_in+fan_out))           (Glorot & Bengio 2010)
- ``glorot_uniform``: U(±√(6/(fan_in+fan_out)))          (Keras' default)
"""
from __future__ import annotations

import numpy as np

INITIALIZERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform")

#: values drawn at a time (8 MB of float64): the weights are drawn block by block into the
#: array of ``dtype``, never as one float64 array (VGG16's classifier.0 would take 822 MB)
BLOCK = 1 << 20


def _sampler(name: str, fan_in: int, fan_out: int, rng: np.random.Generator):
    """``draw(n)``: the next ``n`` float64 values of the initializer ``name`` from ``rng``."""
    if name == "he_normal":
        return lambda n: rng.normal(0.0, np.sqrt(2.0 / fan_in), size=n)
    if name == "he_uniform":
        lim = np.sqrt(6.0 / fan_in)
        return lambda n: rng.uniform(-lim, lim, size=n)
    if name == "glorot_normal":
        return lambda n: rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=n)
    if name == "glorot_uniform":
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        return lambda n: rng.uniform(-lim, lim, size=n)
    raise ValueError(f"unknown initializer {name!r}; expected one of {INITIALIZERS}")


def initialize(name: str, shape: tuple, fan_in: int, fan_out: int, rng: np.random.Generator, dtype) -> np.ndarray:
    """Weights of ``shape`` and ``dtype``: the values (and the generator's state afterwards) of
    one draw ``rng.normal(..., size=shape)`` / ``rng.uniform`` cast to ``dtype``, drawn
    :data:`BLOCK` values at a time (a Generator fills an array sequentially, so consecutive
    blocks continue the same stream)."""
    draw = _sampler(name, fan_in, fan_out, rng)
    w = np.empty(shape, dtype=dtype)
    flat = w.reshape(-1)
    for start in range(0, flat.size, BLOCK):
        flat[start:start + BLOCK] = draw(min(BLOCK, flat.size - start))
    return w
