"""Exceptions the runtime raises for predictable mistakes.

Every command catches :class:`EdgeError` in ``main`` and prints its message as one line with
exit code 2, so each message must say what went wrong *and* what to do next. The base class and
the errors every package shares live in :mod:`edge_common.errors`.
"""

from __future__ import annotations

from edge_common.errors import EdgeError, OutputError, one_line


class ModelFileError(EdgeError):
    """A model file is missing, unreadable, corrupt or of an unknown format."""


class MetadataError(ModelFileError):
    """A model file's embedded metadata is missing or malformed."""


class BackendUnavailableError(EdgeError):
    """No interpreter for this model type is installed."""


class FrameError(EdgeError):
    """A frame cannot be turned into a model input (empty, wrong dtype or channel count)."""


class InferenceError(EdgeError):
    """The interpreter failed on a prepared input, or the classifier was used after ``close``."""


class NonFiniteScoresError(InferenceError):
    """The model answered NaN or infinity: a broken file, never an answer to show."""


class SourceError(EdgeError):
    """A frame source (camera, file, stream) cannot be opened or stopped for good."""


__all__ = [
    "EdgeError",
    "OutputError",
    "one_line",
    "ModelFileError",
    "MetadataError",
    "BackendUnavailableError",
    "FrameError",
    "InferenceError",
    "NonFiniteScoresError",
    "SourceError",
]
