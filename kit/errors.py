"""Errors a user can cause and fix. The CLI prints these as one line, never a traceback."""

from __future__ import annotations


class KitError(Exception):
    """Base class for every error that is the user's input or environment, not a bug."""


class ConfigError(KitError):
    """A setting or argument is invalid."""


class DataError(KitError):
    """Candle data is missing, malformed or not what was asked for."""


class ExchangeError(KitError):
    """The exchange refused a request or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DataWarning(UserWarning):
    """Candle data is incomplete (e.g. ``kit.load`` covers only part of the range asked for)."""


class InputError(ConfigError, ValueError):
    """A value passed to kit's Python API is invalid (a strategy parameter out of range, an
    unknown name). Also a ``ValueError``, what Python code expects of a bad argument, so
    ``except ValueError`` keeps working; being a :class:`KitError`, the CLI prints it as one line.
    """
