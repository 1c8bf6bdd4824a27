"""The error family of the toolkit: every predictable mistake is an :class:`EdgeError`.

Each command prints its message as one ``error:`` line with the error's exit code, so a message
must say what went wrong *and* what to do next.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class EdgeError(Exception):
    """Base class: a user-facing problem with a one-line, actionable message."""

    exit_code = 2

    def __init__(self, message: str = "", *args: object) -> None:
        # Messages often quote user data (file names, JSON keys); keep them on one line.
        super().__init__(" ".join(str(message).split()), *args)


class OutputError(EdgeError):
    """An output path cannot be written (read-only, full disk, is a file)."""


class DatasetError(EdgeError):
    """A dataset file or folder is missing, corrupt or inconsistent."""


def one_line(exc: BaseException) -> str:
    """Collapse an exception message to a single line for terminal output."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def closest(word: str, choices: Iterable[str], cutoff: float = 0.5) -> str | None:
    """The valid choice nearest to a mistyped ``word``, if any is near enough."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else an empty string."""
    near = closest(word, choices)
    return f" (did you mean {near!r}?)" if near else ""
