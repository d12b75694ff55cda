"""Optimizers: they update only ``model.trainable_parameters()``, read afresh at every step,
so freezing or unfreezing a layer takes effect at the next step."""
from __future__ import annotations


class SGD:
    """Plain stochastic gradient descent: ``θ ← θ − lr · ∇θ`` for every trainable parameter."""

    def __init__(self, model, lr: float = 0.01):
        if not lr > 0:
            raise ValueError(f"SGD: learning rate 'lr' must be > 0, got {lr}")
        self.model = model
        self.lr = float(lr)

    def step(self) -> None:
        for p in self.model.trainable_parameters():
            value = p.value
            value -= value.dtype.type(self.lr) * p.grad  # in place: the layer holds this array
