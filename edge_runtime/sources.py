"""Frame sources: cameras, video files, images, folders, globs, network streams, GStreamer, Picamera2.

Every source has the same small interface (:class:`FrameSource`); :mod:`.readers` reads them in a
thread. Image files are read by :mod:`.images`, the one decoder every command shares: only regular
files, the true pixel count checked before a byte of pixels is allocated, EXIF orientation applied.
"""

from __future__ import annotations

import glob as glob_mod
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_common.cli import invoked_as, option
from edge_common.errors import redact

from .errors import SourceError
from .images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, images_in, read_image

log = logging.getLogger("edge_classify.runtime")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class FrameSource(Protocol):
    """What the live loop reads from: every attribute every source has, so no caller probes."""

    name: str  # what every output calls it (a URL's password never in it)
    is_live: bool  # read newest-frame-first, reconnecting when it stops (cameras, live streams)
    continuous: bool  # frames follow one another in time (cameras, streams, videos), so smoothing means something
    paths: list[Path]  # image sources: their files, in order (else empty)
    path: str | None  # a video file: its path, for the outputs' checks (else None)
    nominal_fps: float | None  # the rate the source reports (videos, cameras), if any
    loop: bool  # played again from the start at its end (--loop)
    error: str | None  # why it ended early, once it has
    current: str | None  # image sources: the file the last read returned

    def read(self) -> tuple[bool, np.ndarray | None]:
        """``(True, frame)``; ``(True, None)`` for a corrupt frame; ``(False, None)`` at the end or on failure."""

    def close(self) -> None: ...


class BaseSource:
    """The defaults of :class:`FrameSource`'s attributes, for sources (an integrator's too) to build on."""

    name = "source"
    is_live = False
    continuous = True
    paths: list[Path] = []  # never mutated: image sources set their own list
    path: str | None = None
    nominal_fps: float | None = None
    loop = False
    error: str | None = None
    current: str | None = None

    def read(self) -> tuple[bool, np.ndarray | None]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class CaptureOptions:
    """How cameras and streams are asked to deliver (each field but the timeout is a command-line option)."""

    width: int | None = option(help="capture width for cameras and streams (e.g. 640)", bounds=(1, 16384))
    height: int | None = option(help="capture height (e.g. 480)", bounds=(1, 16384))
    fps: float | None = option(help="requested capture rate for cameras", bounds=(0, 1000), open_low=True)
    max_pixels: int = option(
        DEFAULT_MAX_PIXELS,
        "skip image files with more pixels than this (a 25000x25000 PNG would need 1.9 GB to decode)",
        bounds=(1, 2**31),
    )
    timeout_ms: int = 5000  # open/read timeout for network streams, so a stalled stream cannot hang a read


class OpenCVSource(BaseSource):
    """Camera index, video file, URL or GStreamer pipeline through ``cv2.VideoCapture``."""

    def __init__(self, target: int | str, kind: str, options: CaptureOptions, loop: bool = False) -> None:
        import cv2

        self.path = str(target) if kind == "video" else None  # the file read, for the outputs' checks
        self.loop = loop and kind == "video"  # a video file played again from the start at its end
        # The name is what every output shows (the page, JSONL, events, logs): never a password.
        self.name = f"camera {target}" if kind == "camera" else redact(str(target))
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
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                self._options.timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                self._options.timeout_ms,
            ]
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
        if not ok and self.loop:
            import cv2

            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()  # a video that yields nothing after rewinding ends the run
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


class ImageSource(BaseSource):
    """Still images: one file, a folder, or a glob, in sorted order (optionally looping).

    With ``loop``, a whole pass that decodes no image ends the source with an error instead of
    spinning over the same bad files forever.
    """

    is_live = False
    continuous = False  # unrelated pictures: each is classified on its own

    def __init__(self, paths: list[Path], name: str, loop: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        if not paths:
            raise SourceError(f"{name}: no images found in it or its subfolders ({', '.join(IMAGE_SUFFIXES)})")
        self.name, self.paths, self.loop, self._index = name, paths, loop, 0
        self.max_pixels = max_pixels
        self.current = None  # the file the last read returned (JSONL records name it)
        self.skipped = 0
        self.error = None  # why the source ended early
        self._decoded_this_pass = 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self._index >= len(self.paths):
            if not self.loop:
                return False, None
            if not self._decoded_this_pass:
                self.error = f"{self.name}: none of its {len(self.paths)} images could be read; --loop stopped"
                return False, None
            self._index, self._decoded_this_pass = 0, 0
        path = self.paths[self._index]
        self._index += 1
        self.current = str(path)
        frame, why, _ = read_image(path, self.max_pixels)
        if frame is None:
            self.skipped += 1
            log.warning("skipping %s: %s", path, why)
            return True, None
        self._decoded_this_pass += 1
        return True, frame

    def close(self) -> None:
        pass


class Picamera2Source(BaseSource):
    """The Raspberry Pi camera through libcamera's Picamera2 (OpenCV's V4L2 path cannot see it)."""

    is_live = True
    continuous = True

    def __init__(self, options: CaptureOptions) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(
                "Picamera2 is not installed; on Raspberry Pi OS: `sudo apt install python3-picamera2` "
                "and create the venv with --system-site-packages (see README)"
            ) from None
        self.name = "picamera2"
        size = (options.width or 640, options.height or 480)
        try:
            self._camera = Picamera2()
            config = self._camera.create_video_configuration(main={"size": size, "format": "RGB888"})
            self._camera.configure(config)
            self._camera.start()
        except Exception as exc:  # libcamera raises RuntimeError/IndexError when no camera is attached
            raise SourceError(
                f"Picamera2 could not start the camera ({exc}); check the ribbon cable and "
                "`rpicam-hello --list-cameras`"
            ) from None

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


def open_source(source: str, options: CaptureOptions | None = None, *, loop: bool = False) -> FrameSource:
    """Open a source from its command-line spelling.

    ``0``/``1``: camera index; ``picamera2``: the Pi camera; ``rtsp://…``/``http://…``: a stream; a
    string containing ``!``: a GStreamer pipeline (Jetson CSI cameras); a folder or a glob: images;
    an image file; otherwise a video file. ``loop`` repeats image sources and video files.

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
        return ImageSource(_images_in(path), str(path), loop, options.max_pixels)
    if any(ch in text for ch in "*?[") and not path.exists():
        matches = sorted(Path(p) for p in glob_mod.glob(os.path.expanduser(text)) if p.lower().endswith(IMAGE_SUFFIXES))
        return ImageSource(matches, text, loop, options.max_pixels)
    if not path.exists():
        raise SourceError(_missing(text, path))
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource([path], str(path), loop, options.max_pixels)
    if not path.is_file():
        raise SourceError(
            f"source {text!r} is not a regular file (a FIFO or device); pass a video file, a camera index or a URL"
        )
    return OpenCVSource(str(path), "video", options, loop)


def _missing(text: str, path: Path) -> str:
    """Why a path that does not exist as a file cannot be opened: a dangling or looping link, or nothing."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            return f"source {text!r} is a symlink loop; point it at a file"
        except OSError as exc:
            if exc.errno == 40:  # ELOOP
                return f"source {text!r} is a symlink loop; point it at a file"
            return f"source {text!r} is a symlink to {os.readlink(path)!r}, which does not exist"
    return f"source {text!r}: no such file, folder, camera index or URL"


def _images_in(folder: Path) -> list[Path]:
    try:
        return images_in(folder)
    except OSError as exc:
        raise SourceError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None


def _camera_api() -> int:
    import sys

    import cv2

    return cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY


def _open_hint(kind: str, target: int | str) -> str:
    if kind == "camera":
        device = f"/dev/video{target}"
        exists = os.path.exists(device)
        return (
            f"camera {target} did not open (tried OpenCV V4L2 on {device}, which "
            f"{'exists' if exists else 'does not exist'}): check the camera is connected and not used by "
            "another program, that your user is in the 'video' group, or try another index; a Raspberry Pi "
            "CSI camera needs --source picamera2; a Jetson CSI camera needs a GStreamer pipeline (see README)"
        )
    if kind == "gstreamer":
        return (
            f"the GStreamer pipeline did not open: OpenCV needs GStreamer support (see "
            f"`{invoked_as('python -m edge_runtime doctor')}`) and the pipeline must end in appsink"
        )
    if kind == "stream":
        return f"stream {redact(str(target))} did not open: check the URL, the network and credentials"
    return f"{redact(str(target))}: not a video OpenCV can decode (and not an image); check the file"
