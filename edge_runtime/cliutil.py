"""Small helpers shared by every command-line entry point."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, NoReturn

from .errors import EdgeError, OutputError, one_line


class ArgumentParser(argparse.ArgumentParser):
    """argparse that answers a mistyped option with the closest valid one, on one line."""

    def error(self, message: str) -> NoReturn:
        if "unrecognized arguments:" in message:
            options = [opt for action in self._actions for opt in action.option_strings]
            hints = []
            for word in message.split("unrecognized arguments:", 1)[1].split():
                close = difflib.get_close_matches(word.split("=")[0], options, n=1, cutoff=0.6)
                if close:
                    hints.append(f"{word} -> {close[0]}?")
            if hints:
                message += " (did you mean " + ", ".join(hints) + ")"
        self.exit(2, f"{self.prog}: error: {message}; see --help\n")


def run_reporting_errors(work: Callable[[], int], interrupted: str) -> int:
    """Run a command body: a predictable mistake becomes one ``error:`` line and its exit code,
    Ctrl-C says what was kept (``interrupted``) and exits 130."""
    try:
        return work()
    except EdgeError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130


def setup_logging(verbose: bool = False) -> None:
    """Warnings and progress lines to stderr, one line each, no tracebacks."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s: %(message)s",
                        stream=sys.stderr, force=True)
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL", "tf2onnx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter before it is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN changes numerics run to run


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    A crash, a kill or a full disk never leaves a truncated file under the final name, and the
    previous file stays intact until the new one is complete.

    Raises:
        OutputError: when the folder cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent} ({exc.strerror or exc}); choose a writable output folder") from None
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _chmod_default(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise OutputError(f"cannot write {path} ({exc.strerror or exc}); check free space and permissions") from None
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


def temp_path_beside(path: str | Path) -> Path:
    """A fresh temporary name in the same folder (for libraries that insist on writing a path)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent} ({exc.strerror or exc}); choose a writable output folder") from None
    os.close(fd)
    _chmod_default(tmp)
    return Path(tmp)


def _chmod_default(tmp: str | Path) -> None:
    """mkstemp makes 0600 files; give the final file the permissions a plain open() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def dump_json(data: Any) -> str:
    """Indented JSON whose innermost lists of numbers stay on one line (confusion matrices)."""
    import json
    import re

    text = json.dumps(data, indent=2, allow_nan=False, default=_json_default)
    return re.sub(r"\[\s*([-0-9.eE+,\s]*?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text) + "\n"


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _remove(tmp: str | Path) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass
