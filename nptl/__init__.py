"""nptl — a NumPy/Numba reference implementation of CNN transfer learning.

Kernels are compiled lazily (Numba, ``cache=True``) on first use, so ``import nptl`` stays fast.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "ops": ("nptl.ops", None),
    "layers": ("nptl.layers", None),
    "optim": ("nptl.optim", None),
    "models": ("nptl.models", None),
    "io": ("nptl.io", None),
    "data": ("nptl.data", None),
    "train": ("nptl.train", None),
    "fit": ("nptl.train", "fit"),
    "evaluate": ("nptl.train", "evaluate"),
    "kernels": ("nptl.kernels", None),
    "Sequential": ("nptl.graph", "Sequential"),
    "gradcheck": ("nptl.gradient_check", "gradcheck"),
    "check_gradients": ("nptl.gradient_check", "check_gradients"),
    "seed_cnn": ("nptl.models", "seed_cnn"),
    "seed_autoencoder": ("nptl.models", "seed_autoencoder"),
    "configure": ("nptl.settings", "configure"),
    "configured": ("nptl.settings", "configured"),
    "settings": ("nptl.settings", None),
    "registry": ("nptl.registry", None),
    "testing": ("nptl.testing", None),
    "Conv2D": ("nptl.layers", "Conv2D"),
    "ConvTranspose2D": ("nptl.layers", "ConvTranspose2D"),
    "Upsample2D": ("nptl.layers", "Upsample2D"),
    "MaxPool2D": ("nptl.layers", "MaxPool2D"),
    "AvgPool2D": ("nptl.layers", "AvgPool2D"),
    "Dense": ("nptl.layers", "Dense"),
    "Flatten": ("nptl.layers", "Flatten"),
    "ReLU": ("nptl.layers", "ReLU"),
    "Sigmoid": ("nptl.layers", "Sigmoid"),
    "Softmax": ("nptl.layers", "Softmax"),
    "BatchNorm2D": ("nptl.layers", "BatchNorm2D"),
    "BatchNorm1D": ("nptl.layers", "BatchNorm1D"),
    "Dropout": ("nptl.layers", "Dropout"),
    "GlobalAvgPool2D": ("nptl.layers", "GlobalAvgPool2D"),
    "AdaptiveAvgPool2D": ("nptl.layers", "AdaptiveAvgPool2D"),
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    """Import submodules on first access (numba is heavy to import)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'nptl' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
