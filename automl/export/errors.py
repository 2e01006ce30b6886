"""Errors of loading, exporting and running a chosen model: part of the one ``AutoMLError`` tree.

Each message is one line that names the problem and says how to fix it; the CLI prints it and
exits with code 2.
"""

from __future__ import annotations

from automl.errors import AutoMLError, DataError

__all__ = ["BundleError", "ImageError", "TrialSelectionError"]


class BundleError(AutoMLError):
    """An exported bundle is missing, incomplete, tampered with or cannot be written."""


class TrialSelectionError(AutoMLError):
    """The trial asked for cannot be exported (unknown, not complete, no weights, no fit)."""


class ImageError(DataError):
    """An input image cannot be read or does not match what the model was trained on."""
