"""Exceptions raised by the data layer.

Every problem with a data *file* (wrong magic number, truncated payload,
labels out of range, unreadable image, ...) raises :class:`DataError`.  Its
message always names the offending file, what was expected and what was
found, so that a user can fix the file without reading the source.

A dataset that is not there at all raises :class:`DatasetNotFoundError`,
which is both a :class:`DataError` and a :class:`FileNotFoundError`, so
callers may catch whichever is more natural.
"""

from __future__ import annotations

__all__ = ["DataError", "DatasetNotFoundError"]


class DataError(ValueError):
    """A data file (or data directory) is malformed or inconsistent."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset directory or one of its required files does not exist."""
