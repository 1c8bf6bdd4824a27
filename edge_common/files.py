"""Atomic files and JSON: a crash, a kill or a full disk never leaves half a file under a final name."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from .errors import OutputError


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    The previous file stays intact until the new one is complete. A symlink is followed (the file
    it points to is replaced, the link stays); a character device or FIFO (``/dev/null``, a named
    pipe) is written through, never renamed over; anything else that is not a regular file is refused.

    Raises:
        OutputError: when the folder cannot be written, or the write fails (full disk, I/O error).
    """
    path = Path(os.path.realpath(Path(path).expanduser()))
    kind = _existing_kind(path)
    if kind == "stream":
        yield from _write_through(path, mode)
        return
    if kind == "other":
        raise OutputError(f"{path} exists and is not a regular file, device or FIFO; choose another output path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(
            f"cannot write to {path.parent} ({exc.strerror or exc}); choose a writable output folder"
        ) from None
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


def _existing_kind(path: Path) -> str:
    """ "new", "file", "stream" (character device or FIFO: written through) or "other"."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "new"
    if stat.S_ISREG(mode):
        return "file"
    return "stream" if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) else "other"


def is_stream(path: str | Path) -> bool:
    """Whether ``path`` (after symlinks) is a character device or a FIFO: written through, never renamed over."""
    return _existing_kind(Path(path).expanduser()) == "stream"


def open_write_through(path: str | Path, mode: str = "w", buffering: int = -1) -> IO:
    """A device or FIFO opened for writing. The open is non-blocking, so a FIFO nobody reads is refused
    at once instead of waited on forever; writes then block as usual.

    Raises:
        OutputError: it cannot be opened (no reader, permissions).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
    except OSError as exc:
        hint = (
            "nothing is reading the FIFO; start its reader first"
            if exc.errno == errno.ENXIO
            else (exc.strerror or str(exc))
        )
        raise OutputError(f"cannot write {path} ({hint})") from None
    return os.fdopen(fd, mode, buffering)


def _write_through(path: Path, mode: str) -> Iterator[IO]:
    """Write straight into a device or FIFO."""
    try:
        with open_write_through(path, mode) as handle:
            yield handle
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


def atomic_save(path: str | Path, save: Callable[[Path], Any]) -> None:
    """``save(temporary path)`` for libraries that insist on writing a path themselves (Keras'
    ``model.save``), then rename into place.

    Raises:
        OutputError: the library could not write (full disk, permissions).
    """
    path = Path(path)
    tmp = temp_path_beside(path)
    try:
        save(tmp)
        os.replace(tmp, path)
    except (OSError, ValueError, RuntimeError) as exc:  # h5py/zipfile wrap ENOSPC in their own types
        _remove(tmp)
        raise OutputError(
            f"cannot write {path} ({getattr(exc, 'strerror', None) or exc}); check free space and permissions"
        ) from None
    except BaseException:
        _remove(tmp)
        raise


def temp_path_beside(path: str | Path) -> Path:
    """A fresh temporary name in the same folder (for libraries that insist on writing a path)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(
            f"cannot write to {path.parent} ({exc.strerror or exc}); choose a writable output folder"
        ) from None
    os.close(fd)
    _chmod_default(tmp)
    return Path(tmp)


class NotRegularFile(OSError):
    """The path is a FIFO, a device or a socket: reading one could block forever or never end."""


class FileTooLarge(OSError):
    """The file holds more bytes than its reader allows."""


def read_regular(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, read through one open descriptor.

    The open is non-blocking, so a FIFO is refused at once instead of waited on; the kind is checked
    on the opened descriptor (no race with a rename), and at most ``max_bytes + 1`` bytes are read, so
    a file that grows while it is read cannot exhaust memory either.

    Raises:
        NotRegularFile: a FIFO, device or socket.
        FileTooLarge: more than ``max_bytes``.
        OSError: missing, unreadable, a folder.
    """
    fd = os.open(Path(path).expanduser(), os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder")
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file (a FIFO, device or socket)")
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while total <= max_bytes:
            block = os.read(fd, min(1 << 22, max_bytes + 1 - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
        if total > max_bytes:
            raise FileTooLarge(errno.EFBIG, f"larger than {max_bytes:,} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_json(path: str | Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def dump_json(data: Any) -> str:
    """Indented JSON whose innermost lists of numbers stay on one line (confusion matrices)."""
    text = json.dumps(data, indent=2, allow_nan=False, default=_json_default)
    return (
        re.sub(
            r"\[\s*([-0-9.eE+,\s]*?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text
        )
        + "\n"
    )


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _chmod_default(tmp: str | Path) -> None:
    """mkstemp makes 0600 files; give the final file the permissions a plain open() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def _remove(tmp: str | Path) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass
