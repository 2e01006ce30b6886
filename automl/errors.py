"""One exception hierarchy for every user-facing failure.

Each message names the offending argument, shows the bad value and says how to fix it, so that the
CLI can print it as a single line and exit with code 2.
"""

from __future__ import annotations

__all__ = [
    "AutoMLError",
    "ConfigError",
    "DataError",
    "DatabaseUnreachableError",
    "DivergedError",
    "ModelError",
    "SearchSpaceError",
    "StorageError",
    "TrainingError",
    "first_line",
]


class AutoMLError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(AutoMLError, ValueError):
    """An argument or configuration value is invalid."""


class ModelError(ConfigError):
    """An unknown model name or an invalid model argument."""


class DataError(AutoMLError):
    """A data set is missing, malformed or unknown."""


class SearchSpaceError(ConfigError):
    """A search-space file is malformed."""


class StorageError(AutoMLError):
    """The study storage cannot be reached or used as asked."""


class DatabaseUnreachableError(StorageError):
    """The database server did not answer (down, starting, or the wrong host or port).

    The one storage error worth waiting out: a worker started with its database retries it.
    """


class TrainingError(AutoMLError):
    """Training failed for a reason tied to the trial, not to the program."""


class DivergedError(TrainingError):
    """The loss became NaN or infinite."""


def first_line(e: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    return f"{type(e).__name__}: {e}".splitlines()[0][:500] if str(e) else type(e).__name__
