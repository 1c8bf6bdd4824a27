"""The live loop's output files: the annotated video, the JSONL records, annotated images.

What an output path may be (the same rule for every output of the runtime):

- a new path or a regular file: written under a temporary name and renamed into place when
  complete, so a crash never leaves half a file under the final name;
- a symlink: followed; the file it points to is replaced, the link stays;
- a character device or a FIFO (``/dev/null``, a named pipe read by another program): written
  through, never renamed over; JSONL only, since a video container has to seek;
- ``-`` (``--jsonl -``): standard output.

No output may be an input (the source, the model) or another output, after following symlinks.
Unfinished files left by a killed run (``.NAME.partial-PID.EXT``) are removed by the next run of
the same output once their process is gone. A failed write (full disk, I/O error) ends the run
with one line and a non-zero exit.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np

from edge_common import files

from . import overlay
from .errors import OutputError

log = logging.getLogger("edge_classify.runtime")
STDOUT = "-"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv")
IMAGE_OUTPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def is_stream(path: str | Path) -> bool:
    """Whether ``path`` (after symlinks) is standard output, a character device or a FIFO: written through."""
    return str(path) == STDOUT or files.is_stream(path)


def check_distinct(inputs: Iterable[tuple[str, str | Path | None]], outputs: dict[str, str | None]) -> None:
    """Refuse an output that is an input or another output once symlinks are followed.

    Args:
        inputs: (flag, path) of what is read: the ``--model`` file, each file of ``--source``.
        outputs: flag -> path of what is written; ``-`` and devices may repeat (``/dev/null`` twice).

    Raises:
        OutputError: naming both flags.
    """
    readers = {
        os.path.realpath(Path(path).expanduser()): flag
        for flag, path in inputs
        if path and str(path) != STDOUT and Path(path).expanduser().exists()
    }
    writers: dict[str, str] = {}
    for flag, path in outputs.items():
        if not path or path == STDOUT:
            continue
        real = os.path.realpath(Path(path).expanduser())
        if real in readers:
            raise OutputError(
                f"{flag} {path} is what {readers[real]} reads, and would be overwritten; choose another {flag} path"
            )
        if real in writers and not is_stream(path):
            raise OutputError(
                f"{flag} {path} is also {writers[real]}, and one would destroy the other; give each output its own path"
            )
        writers[real] = flag


class Segmented:
    """An output file, written under a temporary name and renamed when closed; optional rotation.

    Streams (devices, FIFOs, ``-``) are written through instead, and cannot rotate.
    """

    def __init__(self, path: str, rotate_s: float | None, flag: str) -> None:
        self.flag = flag
        self.stream = is_stream(path)
        self.final = Path(path) if path == STDOUT else Path(os.path.realpath(Path(path).expanduser()))
        self.rotate_s = rotate_s
        self.segment = 0
        self.started = 0.0
        self.written: list[str] = []
        if self.stream:
            if rotate_s is not None:
                raise OutputError(
                    f"{flag} {path} is not a regular file, so it cannot rotate; drop --rotate-minutes "
                    "or write to a file"
                )
            return
        if self.final.is_dir():
            raise OutputError(f"{flag} {path} is a folder; pass a file name")
        if self.final.exists() and not self.final.is_file():
            raise OutputError(f"{flag} {path} is not a regular file, device or FIFO; choose another path")
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.final.parent} ({exc.strerror or exc})") from None
        if not os.access(self.final.parent, os.W_OK):
            raise OutputError(f"{self.final.parent} is not writable; choose another output path")
        remove_stale_partials(self.final)

    def _name(self) -> Path:
        if self.rotate_s is None:
            return self.final
        return self.final.with_name(f"{self.final.stem}-{self.segment:04d}{self.final.suffix}")

    def _temp(self, final: Path) -> Path:
        return final.with_name(f".{final.stem}.partial-{os.getpid()}{final.suffix}")

    def due(self, now: float) -> bool:
        return self.rotate_s is not None and now - self.started >= self.rotate_s

    def _finish(self, temp: Path, final: Path) -> None:
        try:
            os.replace(temp, final)
            self.written.append(str(final))
        except OSError as exc:
            log.warning("could not move %s to %s (%s)", temp, final, exc)


def remove_stale_partials(final: Path) -> list[Path]:
    """Remove unfinished files of ``final`` (and of its rotated segments) whose writer has died."""
    pattern = re.compile(rf"^\.{re.escape(final.stem)}(-\d{{4}})?\.partial-(\d+){re.escape(final.suffix)}$")
    removed: list[Path] = []
    try:
        candidates = list(final.parent.iterdir())
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.match(candidate.name)
        if match and not _alive(int(match.group(2))) and candidate.is_file():
            try:
                candidate.unlink()
                removed.append(candidate)
                log.info("removed %s, left unfinished by an earlier run", candidate)
            except OSError:
                pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


class VideoSink(Segmented):
    # OpenCV's writer does not report failed writes, so free space is checked every so often and
    # a finished segment is read back before it gets its final name.
    _SPACE_CHECK_EVERY = 64
    _MIN_FREE_BYTES = 8 * 1024 * 1024

    def __init__(self, path: str, fps: float, rotate_s: float | None) -> None:
        if is_stream(path):
            raise OutputError(
                f"--output {path}: a video must be a regular file (its container is rewritten at the "
                "end); to discard frames, leave --output out"
            )
        super().__init__(path, rotate_s, "--output")
        suffix = self.final.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise OutputError(
                f"{self.final}: unsupported video type {suffix or '(none)'}; use {', '.join(VIDEO_SUFFIXES)}"
            )
        self.fps = fps
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self._frames = 0

    def write(self, frame: np.ndarray, now: float) -> None:
        import cv2

        if self._writer is not None and self.due(now):
            self.close()
            self.segment += 1
        frame = overlay.displayable(frame)
        if self._writer is None:
            # Codecs refuse tiny frames; a stream that starts with one gets a usable size.
            self._size = (max(64, frame.shape[1]), max(64, frame.shape[0]))
            self._path = self._name()
            self._temp_path = self._temp(self._path)
            fourcc = cv2.VideoWriter.fourcc(*("MJPG" if self._path.suffix.lower() == ".avi" else "mp4v"))
            self._writer = cv2.VideoWriter(str(self._temp_path), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                self._writer = None
                raise OutputError(
                    f"OpenCV cannot write {self._path} (no encoder for {self._path.suffix} in this "
                    "OpenCV build, or the folder is not writable); try an .avi name"
                )
            self.started = now
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size)  # a stream that changes resolution mid-run
        if self._frames % self._SPACE_CHECK_EVERY == 0:
            import shutil

            if shutil.disk_usage(self._temp_path.parent).free < self._MIN_FREE_BYTES:
                raise OutputError(
                    f"disk full: less than {self._MIN_FREE_BYTES // 2**20} MB free for {self._path}; "
                    "free space or choose another --output"
                )
        self._writer.write(frame)
        self._frames += 1

    def close(self) -> None:
        import cv2

        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        check = cv2.VideoCapture(str(self._temp_path))
        readable = check.isOpened() and check.read()[0]
        check.release()
        if readable:
            self._finish(self._temp_path, self._path)
        else:
            log.error("%s could not be completed (disk full?); the unfinished file is %s", self._path, self._temp_path)
        self._frames = 0


class JsonlSink(Segmented):
    """One JSON object per line; a file, or written through to a device, a FIFO or stdout (``-``)."""

    def __init__(self, path: str, rotate_s: float | None) -> None:
        super().__init__(path, rotate_s, "--jsonl")
        self._handle: IO[str] | None = None
        self._failed = False

    def _open(self) -> IO[str]:
        if str(self.final) == STDOUT:
            return sys.stdout
        if self.stream:
            return files.open_write_through(self.final, "w", buffering=1)
        return open(self._temp_path, "w", buffering=1)

    def write(self, record: dict[str, Any], now: float) -> None:
        if self._handle is not None and self.due(now):
            self.close()
            self.segment += 1
        if self._handle is None:
            self._path = self._name()
            self._temp_path = self._temp(self._path)
            try:
                self._handle = self._open()
            except OSError as exc:
                raise OutputError(f"cannot write {self._path} ({exc.strerror or exc})") from None
            self.started = now
        try:
            self._handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            if self.stream:
                self._handle.flush()
        except BrokenPipeError:
            if self._handle is not sys.stdout:
                self._failed = True
                raise OutputError(f"cannot write {self._path}: its reader went away") from None
            # `--jsonl - | head`: the reader has what it wanted; the command ends quietly with 141.
            self._handle = None
            raise
        except OSError as exc:
            self._failed = True
            raise OutputError(
                f"cannot write {self._path} ({exc.strerror or exc}); free space or choose another --jsonl"
            ) from None

    def close(self) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        try:
            if handle is sys.stdout:
                handle.flush()
            else:
                handle.close()
        except OSError as exc:
            self._failed = True
            log.error("closing %s failed (%s)", self._path, exc.strerror or exc)
        if self.stream:
            if not self._failed:
                self.written.append(str(self.final))
        elif self._failed:  # an incomplete file never takes the final name
            log.error("%s could not be completed; what was written is in %s", self._path, self._temp_path)
        else:
            self._finish(self._temp_path, self._path)

    @property
    def failed(self) -> bool:
        return self._failed


class ImageSink:
    """Annotated images for image sources: one file for one image, a folder for many.

    In a folder each image keeps its name (and its subfolder, for a glob over several folders).
    Each file is written atomically; an input image is never overwritten.
    """

    def __init__(self, path: str, inputs: Iterable[Path]) -> None:
        from edge_common.files import atomic_write_bytes

        self._write_bytes = atomic_write_bytes
        self.inputs = [Path(p) for p in inputs]
        target = Path(path).expanduser()
        self.single = len(self.inputs) == 1 and target.suffix.lower() in IMAGE_OUTPUT_SUFFIXES and not target.is_dir()
        if is_stream(path):
            raise OutputError(f"--output {path}: annotated images are written to a file or a folder")
        if not self.single and target.suffix.lower() in IMAGE_OUTPUT_SUFFIXES and not target.is_dir():
            raise OutputError(
                f"--output {path} is one image's name but the source has {len(self.inputs)} images; pass a folder"
            )
        if not self.single and target.exists() and not target.is_dir():
            raise OutputError(f"--output {path} is a file; for several images pass a folder")
        self.target = target
        self.written: list[str] = []
        self._inputs_real = {os.path.realpath(p) for p in self.inputs}
        self._root = Path(os.path.commonpath([str(p.resolve().parent) for p in self.inputs])) if self.inputs else None
        if not self.single:
            real = os.path.realpath(target)
            if any(os.path.realpath(p.parent) == real for p in self.inputs):
                raise OutputError(
                    f"--output {path} is the folder the images come from; annotated images would "
                    "replace them; choose another folder"
                )

    def destination(self, source: str | Path) -> Path:
        if self.single:
            return self.target
        source = Path(source).resolve()
        relative = source.relative_to(self._root) if self._root is not None else Path(source.name)
        return self.target / relative

    def write(self, frame: np.ndarray, source: str | Path) -> None:
        import cv2

        out = self.destination(source)
        if os.path.realpath(out) in self._inputs_real:
            raise OutputError(f"--output {self.target}: {out} is one of the input images; choose another folder")
        suffix = out.suffix.lower() if out.suffix.lower() in IMAGE_OUTPUT_SUFFIXES else ".png"
        ok, encoded = cv2.imencode(suffix, overlay.displayable(frame))
        if not ok:
            raise OutputError(f"OpenCV cannot encode {out} as {suffix}; use a .jpg or .png name")
        self._write_bytes(out, encoded.tobytes())
        self.written.append(str(out))

    def close(self) -> None:
        pass
