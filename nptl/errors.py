"""Exceptions raised by nptl beyond the built-in ``ValueError`` / ``TypeError``."""


class NonFiniteError(FloatingPointError):
    """A loss or its input contains NaN or ±Inf."""
