"""Exceptions the toolkit raises for predictable mistakes.

Every command catches :class:`EdgeError` in ``main`` and prints its message as one line with
exit code 2, so each message must say what went wrong *and* what to do next.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base class: a user-facing problem with a one-line, actionable message."""

    exit_code = 2

    def __init__(self, message: str = "", *args: object) -> None:
        # Messages often quote user data (file names, JSON keys); keep them on one line.
        super().__init__(" ".join(str(message).split()), *args)


class ModelFileError(EdgeError):
    """A model file is missing, unreadable, corrupt or of an unknown format."""


class MetadataError(ModelFileError):
    """A model file's embedded metadata is missing or malformed."""


class BackendUnavailableError(EdgeError):
    """No interpreter for this model type is installed."""


class FrameError(EdgeError):
    """A frame cannot be turned into a model input (empty, wrong dtype or channel count)."""


class SourceError(EdgeError):
    """A frame source (camera, file, stream) cannot be opened or stopped for good."""


class DatasetError(EdgeError):
    """A dataset file or folder is missing, corrupt or inconsistent."""


class OutputError(EdgeError):
    """An output path cannot be written (read-only, full disk, is a file)."""


def one_line(exc: BaseException) -> str:
    """Collapse an exception message to a single line for terminal output."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
