"""Layers: state (params, grads, trainable) around the kernels."""
from .activations import ReLU, Sigmoid, Softmax
from .base import Layer, Parameter
from .conv import Conv2D, ConvTranspose2D
from .dense import Dense
from .dropout import Dropout
from .norm import BatchNorm1D, BatchNorm2D
from .pool import AdaptiveAvgPool2D, AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .shape import Flatten
from .upsample import Upsample2D

LAYER_TYPES = {cls.__name__: cls for cls in (Conv2D, ConvTranspose2D, Upsample2D, MaxPool2D, AvgPool2D, Dense,
                                             Flatten, ReLU, Sigmoid, Softmax, BatchNorm2D, BatchNorm1D, Dropout,
                                             GlobalAvgPool2D, AdaptiveAvgPool2D)}

__all__ = ["Layer", "Parameter", "Conv2D", "ConvTranspose2D", "Upsample2D", "MaxPool2D", "AvgPool2D", "Dense",
           "Flatten", "ReLU", "Sigmoid", "Softmax", "BatchNorm2D", "BatchNorm1D", "Dropout", "GlobalAvgPool2D",
           "AdaptiveAvgPool2D", "LAYER_TYPES"]
