"""Frame sources: cameras, video files, images, folders, globs, network streams, GStreamer, Picamera2.

Every source has the same small interface (:class:`FrameSource`). Live sources (cameras,
streams) are read by a grabber thread that keeps only the newest frame, so inference never works
on a backlog; files are read by a thread with a small ordered queue, so every frame is processed
in order while decoding overlaps inference.
"""

from __future__ import annotations

import glob as glob_mod
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from edge_common.cli import invoked_as, option

from .errors import SourceError

log = logging.getLogger("edge_classify.runtime")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class FrameSource(Protocol):
    """What the live loop reads from."""

    name: str
    is_live: bool  # read newest-frame-first, reconnecting when it stops (cameras, live streams)
    continuous: bool  # frames follow one another in time (cameras, streams, videos), so smoothing means something

    def read(self) -> tuple[bool, np.ndarray | None]:
        """``(True, frame)``; ``(True, None)`` for a corrupt frame; ``(False, None)`` at the end or on failure."""

    def close(self) -> None: ...


@dataclass
class CaptureOptions:
    """How cameras and streams are asked to deliver (each field but the timeout is a command-line option)."""

    width: int | None = option(help="capture width for cameras and streams (e.g. 640)")
    height: int | None = option(help="capture height (e.g. 480)")
    fps: float | None = option(help="requested capture rate for cameras")
    timeout_ms: int = 5000  # open/read timeout for network streams, so a stalled stream cannot hang a read


class OpenCVSource:
    """Camera index, video file, URL or GStreamer pipeline through ``cv2.VideoCapture``."""

    def __init__(self, target: int | str, kind: str, options: CaptureOptions) -> None:
        import cv2

        self.name = f"camera {target}" if kind == "camera" else str(target)
        self.kind = kind
        self.continuous = True
        self._target, self._options = target, options
        self._cap = self._open()
        self.nominal_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0) or None
        # A file served over HTTP reports how many frames it has; a live stream does not. A source
        # that has an end ends the run there; reconnecting is for live cameras and streams.
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if kind in ("video", "stream") else 0
        self.is_live = kind != "video" and not (kind == "stream" and self.frame_count > 0)

    def _open(self):
        import cv2

        params: list[int] = []
        if self.kind == "stream":
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._options.timeout_ms,
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._options.timeout_ms]
        api = {"gstreamer": cv2.CAP_GSTREAMER, "camera": _camera_api()}.get(self.kind, cv2.CAP_ANY)
        cap = cv2.VideoCapture(self._target, api, params) if params else cv2.VideoCapture(self._target, api)
        if not cap.isOpened():
            cap.release()
            raise SourceError(_open_hint(self.kind, self._target))
        if self.kind in ("camera", "gstreamer", "stream"):
            if self._options.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._options.width)
            if self._options.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._options.height)
            if self._options.fps:
                cap.set(cv2.CAP_PROP_FPS, self._options.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # drivers that honour it keep no stale frames
        return cap

    def read(self) -> tuple[bool, np.ndarray | None]:
        ok, frame = self._cap.read()
        if not ok:
            return False, None
        if frame is None or frame.size == 0:
            return True, None
        return True, frame

    def reopen(self) -> None:
        self._cap.release()
        self._cap = self._open()

    def close(self) -> None:
        self._cap.release()


def _decode(path: Path) -> tuple[np.ndarray | None, str]:
    """An image file decoded, or None and why not."""
    import cv2

    try:
        raw = np.fromfile(path, dtype=np.uint8)
        if not raw.size:
            return None, "empty file"
        # OpenCV raises (cv2.error) on images whose header claims more pixels than it allows.
        frame = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    except (OSError, ValueError, cv2.error) as exc:
        return None, f"not a readable image ({' '.join(str(exc).split())[:120]})"
    if frame is None or frame.size == 0:
        return None, "not a readable image"
    return frame, ""


class ImageSource:
    """Still images: one file, a folder, or a glob, in sorted order (optionally looping)."""

    is_live = False
    continuous = False  # unrelated pictures: each is classified on its own

    def __init__(self, paths: list[Path], name: str, loop: bool = False) -> None:
        if not paths:
            raise SourceError(f"{name}: no images found ({', '.join(IMAGE_SUFFIXES)})")
        self.name, self._paths, self._loop, self._index = name, paths, loop, 0
        self.current: str | None = None  # the file the last read returned (JSONL records name it)
        self.skipped = 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self._index >= len(self._paths):
            if not self._loop:
                return False, None
            self._index = 0
        path = self._paths[self._index]
        self._index += 1
        self.current = str(path)
        frame, why = _decode(path)
        if frame is None:
            self.skipped += 1
            log.warning("skipping %s: %s", path, why)
            return True, None
        return True, frame

    def close(self) -> None:
        pass


class Picamera2Source:
    """The Raspberry Pi camera through libcamera's Picamera2 (OpenCV's V4L2 path cannot see it)."""

    is_live = True
    continuous = True

    def __init__(self, options: CaptureOptions) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError:
            raise SourceError("Picamera2 is not installed; on Raspberry Pi OS: `sudo apt install python3-picamera2` "
                              "and create the venv with --system-site-packages (see README)") from None
        self.name = "picamera2"
        size = (options.width or 640, options.height or 480)
        try:
            self._camera = Picamera2()
            config = self._camera.create_video_configuration(main={"size": size, "format": "RGB888"})
            self._camera.configure(config)
            self._camera.start()
        except Exception as exc:  # libcamera raises RuntimeError/IndexError when no camera is attached
            raise SourceError(f"Picamera2 could not start the camera ({exc}); check the ribbon cable and "
                              "`rpicam-hello --list-cameras`") from None

    def read(self) -> tuple[bool, np.ndarray | None]:
        try:
            # "RGB888" in libcamera terms is B,G,R byte order: already what OpenCV calls BGR.
            return True, self._camera.capture_array("main")
        except Exception as exc:
            log.warning("Picamera2 read failed: %s", exc)
            return False, None

    def close(self) -> None:
        try:
            self._camera.stop()
            self._camera.close()
        except Exception:
            pass


def open_source(source: str, options: CaptureOptions | None = None, *, loop_images: bool = False) -> FrameSource:
    """Open a source from its command-line spelling.

    ``0``/``1``: camera index; ``picamera2``: the Pi camera; ``rtsp://…``/``http://…``: a stream; a
    string containing ``!``: a GStreamer pipeline (Jetson CSI cameras); a folder or a glob: images;
    an image file; otherwise a video file.

    Raises:
        SourceError: with what was tried and the likely fix.
    """
    options = options or CaptureOptions()
    text = source.strip()
    if not text:
        raise SourceError("empty --source; pass a camera index (0), a file, a folder, a URL or a pipeline")
    if text.lower() in ("picamera2", "picam", "picamera"):
        return Picamera2Source(options)
    if text.isdigit():
        return OpenCVSource(int(text), "camera", options)
    if "!" in text:
        return OpenCVSource(text, "gstreamer", options)
    if _URL.match(text):
        return OpenCVSource(text, "stream", options)
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageSource(_images_in(path), str(path), loop_images)
    if any(ch in text for ch in "*?[") and not path.exists():
        matches = sorted(Path(p) for p in glob_mod.glob(os.path.expanduser(text)) if p.lower().endswith(IMAGE_SUFFIXES))
        return ImageSource(matches, text, loop_images)
    if not path.exists():
        raise SourceError(f"source {text!r}: no such file, folder, camera index or URL")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource([path], str(path), loop_images)
    return OpenCVSource(str(path), "video", options)


def _images_in(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as exc:
        raise SourceError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None


def _camera_api() -> int:
    import cv2
    import sys

    return cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY


def _open_hint(kind: str, target: int | str) -> str:
    if kind == "camera":
        device = f"/dev/video{target}"
        exists = os.path.exists(device)
        return (f"camera {target} did not open (tried OpenCV V4L2 on {device}, which "
                f"{'exists' if exists else 'does not exist'}): check the camera is connected and not used by "
                "another program, that your user is in the 'video' group, or try another index; a Raspberry Pi "
                "CSI camera needs --source picamera2; a Jetson CSI camera needs a GStreamer pipeline (see README)")
    if kind == "gstreamer":
        return (f"the GStreamer pipeline did not open: OpenCV needs GStreamer support (see "
                f"`{invoked_as('python -m edge_runtime doctor')}`) and the pipeline must end in appsink")
    if kind == "stream":
        return f"stream {target} did not open: check the URL, the network and credentials"
    return f"{target}: not a video OpenCV can decode (and not an image); check the file"


# --- reading threads ---------------------------------------------------------------------------

@dataclass
class FrameEvent:
    """One item from a reader: a frame (or None for a corrupt frame) and when it was read."""

    index: int
    frame: np.ndarray | None
    read_ms: float
    timestamp: float
    file: str | None = None  # image sources: the file this frame came from


class OrderedReader:
    """Reads a file source in a thread into a small queue: every frame, in order, decoding ahead."""

    def __init__(self, source: FrameSource, depth: int = 4) -> None:
        self.source = source
        self.error: str | None = None  # why reading stopped early, when it did
        self._queue: queue.Queue[FrameEvent | None] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok, frame = self.source.read()
                except Exception as exc:  # never end a run silently: the loop reports it and exits non-zero
                    self.error = f"{self.source.name}: reading failed after {index} frames ({type(exc).__name__}: " \
                                 f"{' '.join(str(exc).split())[:160]})"
                    break
                if not ok:
                    break
                event = FrameEvent(index, frame, (time.perf_counter() - started) * 1e3, time.time(),
                                   getattr(self.source, "current", None))
                index += 1
                while not self._stop.is_set():
                    try:
                        self._queue.put(event, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        finally:
            self._put_end()

    def _put_end(self) -> None:
        while True:
            try:
                self._queue.put(None, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    return

    def get(self, timeout: float | None = None) -> FrameEvent | None:
        """The next frame, or None at the end of the source."""
        return self._queue.get(timeout=timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


class LatestReader:
    """Reads a live source in a thread and keeps only the newest frame (no backlog, no growing latency).

    When the source stops delivering, it reopens it with exponential backoff, and gives up after
    ``give_up_s`` seconds without a frame.
    """

    def __init__(self, source: FrameSource, reopen: Callable[[], FrameSource] | None = None, *,
                 give_up_s: float = 30.0, backoff_s: tuple[float, float] = (0.25, 8.0)) -> None:
        self.source = source
        self._reopen = reopen
        self._give_up_s = give_up_s
        self._backoff = backoff_s
        self._cond = threading.Condition()
        self._latest: FrameEvent | None = None
        self._ended = False
        self.error: str | None = None
        self.reconnects = 0
        self.dropped = 0  # frames read but replaced before the loop took them
        self.corrupt = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-grabber", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        index = 0
        last_frame = time.monotonic()
        delay = self._backoff[0]
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok, frame = self.source.read()
                except Exception as exc:  # a driver error must not kill the grabber
                    log.warning("%s: read failed (%s)", self.source.name, exc)
                    ok, frame = False, None
                if ok:
                    last_frame, delay = time.monotonic(), self._backoff[0]
                    if frame is None:
                        self.corrupt += 1
                        continue
                    event = FrameEvent(index, frame, (time.perf_counter() - started) * 1e3, time.time())
                    index += 1
                    with self._cond:
                        if self._latest is not None:
                            self.dropped += 1
                        self._latest = event
                        self._cond.notify_all()
                    continue
                waited = time.monotonic() - last_frame
                if waited >= self._give_up_s:
                    self.error = f"{self.source.name}: no frames for {waited:.0f}s; gave up (see --reconnect-timeout)"
                    return
                log.warning("%s: no frame; reconnecting in %.2fs", self.source.name, delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self._backoff[1])
                try:
                    if self._reopen is not None:
                        self.source.close()
                        self.source = self._reopen()
                    elif hasattr(self.source, "reopen"):
                        self.source.reopen()  # type: ignore[attr-defined]
                    self.reconnects += 1
                    log.info("%s: reconnected", self.source.name)
                except Exception as exc:
                    log.warning("%s: reconnect failed (%s)", self.source.name, " ".join(str(exc).split())[:160])
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def get(self, timeout: float | None = None) -> FrameEvent | None:
        """The newest frame not yet taken (waiting for one), or None when the source is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._latest is None and not self._ended:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise queue.Empty
                self._cond.wait(remaining if remaining is not None else 0.5)
            event, self._latest = self._latest, None
            return event

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
