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


def initialize(name: str, shape: tuple, fan_in: int, fan_out: int, rng: np.random.Generator, dtype) -> np.ndarray:
    if name == "he_normal":
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    elif name == "he_uniform":
        lim = np.sqrt(6.0 / fan_in)
        w = rng.uniform(-lim, lim, size=shape)
    elif name == "glorot_normal":
        w = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape)
    elif name == "glorot_uniform":
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-lim, lim, size=shape)
    else:
        raise ValueError(f"unknown initializer {name!r}; expected one of {INITIALIZERS}")
    return w.astype(dtype)
