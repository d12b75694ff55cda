"""Ready-made architectures."""
from __future__ import annotations

import numpy as np

from .graph import Sequential
from .layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU

#: the layers of the convolutional base of :func:`seed_cnn` (frozen in transfer learning)
SEED_CNN_BASE = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "flatten")


def seed_cnn(input_shape=(1, 28, 28), num_classes: int = 10, seed: int = 0, dtype=np.float32,
             hidden: int = 64) -> Sequential:
    """The seed documents' CNN: Conv32-ReLU-MaxPool2-Conv64-ReLU-MaxPool2-Conv64-ReLU-Flatten-
    Dense64-ReLU-Dense(num_classes), all 3×3 valid convolutions.  Outputs logits.

    The base is ``conv1 … flatten`` (:data:`SEED_CNN_BASE`), the head ``dense1, relu4, dense2``:
    ``model.freeze(up_to="flatten")`` freezes the base.
    """
    layers = [
        Conv2D(32, 3, name="conv1"), ReLU(name="relu1"), MaxPool2D(2, name="pool1"),
        Conv2D(64, 3, name="conv2"), ReLU(name="relu2"), MaxPool2D(2, name="pool2"),
        Conv2D(64, 3, name="conv3"), ReLU(name="relu3"), Flatten(name="flatten"),
        Dense(hidden, name="dense1"), ReLU(name="relu4"), Dense(num_classes, name="dense2"),
    ]
    return Sequential(layers, input_shape=input_shape, seed=seed, dtype=dtype, name="seed_cnn")
