"""One camera of the live loop: its reader, smoothing, frame budget, video output, clips and counts.

The loop (:mod:`edge_runtime.live`) owns what the cameras share (the model, the JSONL file, the
live view, the event sinks); each :class:`Camera` owns what is its own, so one camera failing ends
only that camera, and its counts go into the run's summary under its name.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .outputs import VIDEO_SUFFIXES, ImageSink, VideoSink
from .readers import FrameEvent, LatestReader, OrderedReader
from .sources import FrameSource
from .stats import Smoother

log = logging.getLogger("edge_classify.runtime")

Prepare = Callable[[np.ndarray], Any]


def output_for(path: str, name: str, several: bool) -> str:
    """A camera's own ``--output`` path: ``path`` itself for one camera, ``STEM-NAME.SUFFIX`` for several."""
    if not several:
        return path
    base = Path(path).expanduser()
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return str(base.with_name(f"{base.stem}-{safe}{base.suffix}"))


class Camera:
    """A source and everything the loop keeps for it alone."""

    def __init__(
        self,
        source: FrameSource,
        *,
        classes: int,
        smooth: int,
        prepare: Prepare,
        wake: threading.Event,
        reopen: Callable[[], FrameSource] | None = None,
        reconnect_timeout: float = 30.0,
        output: str | None = None,
        output_fps: float | None = None,
        rotate_s: float | None = None,
        max_fps: float | None = None,
    ) -> None:
        self.source, self.name = source, source.name
        self.continuous = source.continuous
        self.smooth = smooth if self.continuous else 1
        self.smoother = Smoother(self.smooth, classes)
        self.frame_ends: deque[float] = deque(maxlen=30)
        self.interval = 1.0 / max_fps if max_fps else 0.0
        self.next_due = 0.0
        self.frames = self.unknown = self.skipped = self.corrupt = self.rejected = self.non_finite = 0
        self.ended = False
        self.error: str | None = None
        self.last_frame_at: float | None = None  # monotonic time of the last frame classified
        self.video: VideoSink | ImageSink | None = None
        images = list(source.paths)
        if output and images and not output.lower().endswith(VIDEO_SUFFIXES):
            self.video = ImageSink(output, images)
        elif output:
            self.video = VideoSink(output, output_fps or source.nominal_fps or 30.0, rotate_s)
        self.reader: OrderedReader | LatestReader = (
            LatestReader(source, reopen, give_up_s=reconnect_timeout, prepare=prepare, wake=wake)
            if source.is_live
            else OrderedReader(source, prepare=prepare, wake=wake)
        )

    def reset_smoothing(self, classes: int) -> None:
        """A new model with other classes: smoothing starts again."""
        self.smoother = Smoother(self.smooth, classes)
        self.frame_ends.clear()

    def due(self, now: float) -> bool:
        return not self.ended and now >= self.next_due

    def served(self, now: float) -> None:
        """A frame of this camera was taken: the next is due one frame budget later (``--max-fps``)."""
        if self.interval:  # a steady cadence, never two frames in a burst to catch up
            self.next_due = (
                self.next_due + self.interval if now - self.next_due < self.interval / 2 else now + self.interval
            )

    def fps(self, frame_end: float) -> float | None:
        """Frames per second over the last 30 frames (None until there are two)."""
        ends = self.frame_ends
        ends.append(frame_end)
        return (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 1 and ends[-1] > ends[0] else None

    def end(self) -> None:
        """The source is done (or gave up): record why and stop reading."""
        self.ended = True
        self.error = getattr(self.reader, "error", None)
        if not self.frames and not self.error:
            self.error = f"{self.name}: no frame could be read"

    def take(self) -> FrameEvent | None | bool:
        """The next frame if one is ready, None at the end of the source, False when none is ready yet."""
        import queue

        try:
            return self.reader.get(timeout=0)
        except queue.Empty:
            return False

    def close(self) -> dict[str, Any]:
        """Stop reading, close its outputs; returns its counts for the summary."""
        reader = self.reader
        reader.stop()
        counts: dict[str, Any] = {
            "name": self.name,
            "frames": self.frames,
            "unknown": self.unknown,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "non_finite": self.non_finite,
            "corrupt": self.corrupt,
            "dropped": 0,
            "reconnects": 0,
            "reconnect_attempts": 0,
            "error": self.error,
            "outputs": [],
        }
        if isinstance(reader, LatestReader):
            counts.update(
                dropped=reader.dropped, reconnects=reader.reconnects, reconnect_attempts=reader.reconnect_attempts
            )
            counts["corrupt"] += reader.corrupt
        if self.video is not None:
            self.video.close()
            counts["outputs"] = list(self.video.written)
        self.source.close()
        return counts


def wait_time(cameras: list[Camera], now: float, idle: float = 0.1) -> float:
    """How long the loop may sleep: until the next camera's frame budget allows a frame, at most ``idle``."""
    pending = [c.next_due - now for c in cameras if not c.ended and c.next_due > now]
    ready = any(not c.ended and c.next_due <= now for c in cameras)
    return idle if ready or not pending else max(0.0, min(idle, min(pending)))
