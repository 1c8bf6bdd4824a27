"""Event clips (``--clips DIR``): an MP4 of what each camera saw around each label change.

Every camera keeps a ring of its recent annotated frames, bounded by ``--clip-before`` seconds and by
:data:`RING_MB` of memory. At a label event the ring becomes the clip's pre-roll, the frames of the
next ``--clip-after`` seconds follow, and the clip is written by a thread of its own (the loop never
waits for the disk) to a hidden temporary name, then renamed to
``CAMERA-YYYYmmdd-HHMMSS-LABEL.mp4``; the event's JSON carries that path (``clip``). ``--clips-max-mb``
deletes the oldest clips first. Clips never leave less than :data:`MIN_FREE_MB` free on their disk:
a full or failing disk ends clips with one warning (the partial clip removed); the loop goes on.

Time: a live camera's frames are timed by the clock; a video file's by its frame rate, so a clip
of a file holds the same frames however fast the file is read.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import re
import shutil
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.cli import option

from .errors import EdgeError

log = logging.getLogger("edge_classify.runtime")

RING_MB = 96  # the most memory one camera's pre-roll ring may hold
MIN_FREE_MB = 50  # clips never fill the disk below this: the system and the other outputs need room
SUFFIX = ".mp4"


@dataclass
class ClipOptions:
    """Event clips (flags of ``python -m edge_runtime``)."""

    clips: str | None = option(help="write an MP4 clip of each label event into this folder", metavar="DIR")
    clip_before: float = option(3.0, "seconds of each clip before the event (pre-roll)", bounds=(0, 60))
    clip_after: float = option(5.0, "seconds of each clip after the event", bounds=(0, 600))
    clips_max_mb: float | None = option(
        help="keep the clips folder under this many MB, deleting the oldest clips first", bounds=(1, None)
    )


@dataclass
class _Clip:
    camera: str
    final: Path
    temp: Path
    end: float  # the camera's clock at which the clip ends
    fps: float
    frames: int = 0


class Clips:
    """The rings, the clips being recorded and the thread that writes them."""

    def __init__(self, options: ClipOptions) -> None:
        assert options.clips is not None
        self.folder = Path(options.clips).expanduser()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeError(f"--clips {options.clips}: cannot create the folder ({exc.strerror or exc})") from None
        if not os.access(self.folder, os.W_OK):
            raise EdgeError(f"--clips {options.clips}: the folder is not writable; choose another")
        self.before, self.after = options.clip_before, options.clip_after
        self.max_bytes = options.clips_max_mb * 1e6 if options.clips_max_mb else None
        self._rings: dict[str, deque[tuple[float, np.ndarray]]] = {}
        self._active: dict[str, _Clip] = {}
        self._queue: queue.Queue[tuple[_Clip, np.ndarray | None] | None] = queue.Queue(maxsize=256)
        self._pending: dict[str, Path] = {}  # cameras whose event named its clip, to start at its frame
        self.disabled: str | None = None  # why clips stopped (a full disk)
        self.written: list[str] = []
        self.deleted = self.failed = 0
        self._writer = threading.Thread(target=self._write, name="clips", daemon=True)
        self._writer.start()

    # -- fed by the loop (and the events) ------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        """A label event, before it is sent: name its clip (the event's ``clip``), to start at its frame."""
        camera = str(event.get("camera") or event.get("source"))
        if self.disabled or camera in self._active or camera in self._pending:
            return  # a clip of this camera is being recorded: this change is in it
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{camera}-{stamp}-{event.get('label')}").strip("_")
        final, n = self.folder / f"{name}{SUFFIX}", 2
        taken = {c.final for c in self._active.values()} | set(self._pending.values())
        while final.exists() or final in taken:
            final, n = self.folder / f"{name}-{n}{SUFFIX}", n + 1
        self._pending[camera] = final
        event["clip"] = str(final)

    def frame(self, camera: str, frame: np.ndarray, clock: float, fps: float | None) -> None:
        """One annotated frame of ``camera`` at ``clock`` seconds (after its event, if it completed one)."""
        if self.disabled:
            return
        ring = self._rings.setdefault(camera, deque())
        final = self._pending.pop(camera, None)
        if final is not None:
            self._start(camera, final, clock, ring, fps)
        clip = self._active.get(camera)
        if clip is not None:
            if clock <= clip.end:
                self._put(clip, frame)
            else:
                self._put(clip, None)
                del self._active[camera]
        ring.append((clock, frame))
        while ring and (clock - ring[0][0] > self.before or len(ring) * frame.nbytes > RING_MB * 1e6):
            ring.popleft()

    def _start(self, camera: str, final: Path, clock: float, ring: deque, fps: float | None) -> None:
        if shutil.disk_usage(self.folder).free < MIN_FREE_MB * 1e6:
            self._disable(f"less than {MIN_FREE_MB} MB free in {self.folder}")
            return
        span = ring[-1][0] - ring[0][0] if len(ring) > 1 else 0.0
        rate = fps or ((len(ring) - 1) / span if span > 0 else 10.0)
        clip = _Clip(camera, final, final.with_name(f".{final.stem}.partial{SUFFIX}"), clock + self.after, rate)
        self._active[camera] = clip
        for at, old in ring:
            if at >= clock - self.before - 1e-9:  # the pre-roll: the last ``before`` seconds
                self._put(clip, old)

    def _put(self, clip: _Clip, frame: np.ndarray | None) -> None:
        try:
            self._queue.put((clip, frame), timeout=1.0)
        except queue.Full:  # the disk is too slow: lose a frame of the clip, never stall the loop
            log.debug("clip %s: a frame dropped (the disk is slower than the cameras)", clip.final.name)

    def _disable(self, why: str) -> None:
        if not self.disabled:
            self.disabled = why
            log.warning("clips stopped: %s; classification goes on", why)

    # -- the writer thread -----------------------------------------------------------------------

    def _write(self) -> None:
        import cv2

        writers: dict[int, Any] = {}
        dead: set[int] = set()  # clips that failed: what is still queued for them is dropped
        while True:
            item = self._queue.get()
            if item is None:
                for writer in writers.values():
                    writer.release()
                return
            clip, frame = item
            key = id(clip)
            if key in dead:
                continue
            try:
                if frame is not None:
                    if shutil.disk_usage(self.folder).free < MIN_FREE_MB * 1e6:
                        raise OSError(errno.ENOSPC, f"less than {MIN_FREE_MB} MB free in {self.folder}")
                    writer = writers.get(key)
                    if writer is None:
                        height, width = frame.shape[:2]
                        fourcc = cv2.VideoWriter.fourcc(*"mp4v")
                        writer = cv2.VideoWriter(str(clip.temp), fourcc, max(1.0, clip.fps), (width, height))
                        if not writer.isOpened():
                            raise OSError(f"cannot write {clip.temp}")
                        writers[key] = writer
                    writer.write(frame)
                    clip.frames += 1
                    continue
                writer = writers.pop(key, None)
                if writer is not None:
                    writer.release()
                    if clip.temp.stat().st_size == 0:
                        raise OSError("the clip came out empty (disk full?)")
                    os.replace(clip.temp, clip.final)
                    self.written.append(str(clip.final))
                    self._trim()
            except OSError as exc:
                self.failed += 1
                dead.add(key)
                broken = writers.pop(key, None)
                if broken is not None:
                    broken.release()
                clip.temp.unlink(missing_ok=True)
                self._disable(f"{clip.final.name}: {exc.strerror or exc}")

    def _trim(self) -> None:
        """Delete the oldest clips until the folder is under ``--clips-max-mb``."""
        if self.max_bytes is None:
            return
        clips = sorted(
            (p for p in self.folder.glob(f"*{SUFFIX}") if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime
        )
        total = sum(p.stat().st_size for p in clips)
        while clips and total > self.max_bytes:
            oldest = clips.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
            self.deleted += 1

    def close(self, timeout: float = 30.0) -> None:
        """Finish the clips being recorded (cut at the run's end) and stop the writer."""
        for clip in self._active.values():
            self._put(clip, None)
        self._active.clear()
        self._queue.put(None)
        self._writer.join(timeout)

    def summary(self) -> dict[str, Any]:
        return {"written": len(self.written), "deleted": self.deleted, "failed": self.failed, "files": self.written}


def clock_of(index: int, timestamp: float, live: bool, fps: float | None) -> float:
    """A frame's time for clips: the clock for live cameras, index / frame rate for files."""
    return timestamp if live or not fps else index / fps
