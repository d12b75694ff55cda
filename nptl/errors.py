"""Exceptions raised by nptl beyond the built-in ``ValueError`` / ``TypeError``."""


class NonFiniteError(FloatingPointError):
    """A value that must be finite holds NaN or ±Inf.  Raised by :func:`nptl.fit` with
    ``what`` (``"input"``, ``"loss"``, ``"gradient of conv1.w"``, ...), ``epoch`` and ``step``
    (0 for checks before training); by the ops with only the message."""

    def __init__(self, message: str, *, what: str | None = None, epoch: int | None = None,
                 step: int | None = None):
        super().__init__(message)
        self.what, self.epoch, self.step = what, epoch, step
