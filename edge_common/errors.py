"""The error family of the toolkit: every predictable mistake is an :class:`EdgeError`.

Each command prints its message as one ``error:`` line with the error's exit code (2), so a message
must say what went wrong *and* what to do next. The whole family::

    EdgeError                      edge_common.errors: any predictable mistake
    ├── OutputError                edge_common.errors: an output cannot be written (read-only, full disk)
    ├── DatasetError               edge_common.errors: a dataset file or folder is missing or corrupt
    ├── ModelFileError             edge_runtime.errors: a model file missing, corrupt, of the wrong type
    │   └── MetadataError          edge_runtime.errors: its embedded contract missing or malformed
    ├── BackendUnavailableError    edge_runtime.errors: no interpreter or accelerator that can run it here
    ├── FrameError                 edge_runtime.errors: a frame that cannot become a model input
    ├── InferenceError             edge_runtime.errors: the interpreter failed, or a closed classifier
    │   └── NonFiniteScoresError   edge_runtime.errors: the model answered NaN or infinity
    ├── SourceError                edge_runtime.errors: a camera, file or stream cannot be read
    ├── ConfigError                train.config: training options that cannot work together
    ├── UnknownModelError          train.models: a model name not in the registry
    ├── BackboneError              train.backbones: an ImageNet backbone that cannot be built
    └── WeightsFileError           train.backbones.torch_weights: a weights file that cannot be read safely

Files that are not regular files or too large to read are ``OSError``s
(:class:`edge_common.files.NotRegularFile`, :class:`edge_common.files.FileTooLarge`) that each
reader turns into its own :class:`EdgeError`.
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable

# user:password@ in any URL (rtsp://, http://, mqtt://, inside a GStreamer pipeline too), and the
# password properties of GStreamer's rtspsrc/souphttpsrc: never shown, logged or sent anywhere.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s?#]+@")
_PIPELINE_SECRETS = re.compile(r"(?i)\b(user-pw|user_pw|password|passwd|proxy-pw)=(\"[^\"]*\"|'[^']*'|\S+)")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***`` (``rtsp://***@host/x``)."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    return _PIPELINE_SECRETS.sub(r"\1=***", text)


class EdgeError(Exception):
    """Base class: a user-facing problem with a one-line, actionable message."""

    exit_code = 2

    def __init__(self, message: str = "", *args: object) -> None:
        # Messages often quote user data (file names, JSON keys, URLs); keep them on one line, and
        # never repeat a camera's or a broker's password.
        super().__init__(redact(" ".join(str(message).split())), *args)


class OutputError(EdgeError):
    """An output path cannot be written (read-only, full disk, is a file)."""


class DatasetError(EdgeError):
    """A dataset file or folder is missing, corrupt or inconsistent."""


def one_line(exc: BaseException) -> str:
    """Collapse an exception message to a single line for terminal output."""
    text = redact(" ".join(str(exc).split()))
    return text or type(exc).__name__


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (ESC, NUL, CR, ...) shown as escapes such as
    ``\\x1b``, so a label from a model file cannot move the cursor, recolour or hide a line."""
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in text)


def closest(word: str, choices: Iterable[str], cutoff: float = 0.5) -> str | None:
    """The valid choice nearest to a mistyped ``word``, if any is near enough."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else an empty string."""
    near = closest(word, choices)
    return f" (did you mean {near!r}?)" if near else ""
