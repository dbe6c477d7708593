"""Errors raised by :mod:`kopaths.data` when data are missing or a request is invalid."""

from __future__ import annotations

__all__ = ["DataNotFoundError"]


class DataNotFoundError(FileNotFoundError):
    """Data needed by kopaths are not where they should be.

    The message always says how to obtain or prepare the data.
    """
