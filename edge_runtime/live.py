"""The live loop: frames in, predictions drawn, shown, written and timed.

Memory is bounded however long it runs: timings keep running sums and a fixed ring of recent
values, smoothing keeps the last N probability vectors, and output files rotate.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import overlay
from .classifier import Classifier, frame_answer
from edge_common.cli import option

from .errors import EdgeError, FrameError, OutputError, SourceError
from .sources import FrameSource, LatestReader, OrderedReader

log = logging.getLogger("edge_classify.runtime")
STAGES = ("capture", "preprocess", "inference", "overlay", "output")


@dataclass
class LiveConfig:
    """Options of the live loop; each field but ``headless`` and ``window_name`` is a flag of ``python -m edge_runtime``."""

    headless: bool | None = None  # None: headless when there is no display or no GUI support (--headless/--window)
    output: str | None = option(help="write the annotated video here (.mp4 or .avi)")
    output_fps: float | None = option(help="frame rate of --output (default: the source's, else 30)")
    jsonl: str | None = option(help="write one JSON line per frame here (index, time, top-k, ms per stage)")
    rotate_minutes: float | None = option(help="start a new --output/--jsonl segment this often (long-running "
                                                "devices)")
    threshold: float = option(0.0, "show 'uncertain' below this score (0..1)")
    smooth: int = option(1, "average probabilities over the last N frames")
    top_k: int = option(3, "how many classes to report per frame")
    bars: bool = option(False, "draw top-k probability bars")
    overlay: bool = option(True, "do not draw on frames")
    max_frames: int | None = option(help="stop after N frames")
    reconnect_timeout: float = option(30.0, "seconds a lost camera/stream may take to come back before giving up")
    quiet: bool = option(False, "no status line for streams (the summary is still printed)")
    window_name: str = "edge-classify"

    def validate(self) -> None:
        """Raises EdgeError naming the option that cannot work."""
        if not 0.0 <= self.threshold <= 1.0:
            raise EdgeError("--threshold must be between 0 and 1")
        for name in ("smooth", "top_k", "max_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise EdgeError(f"--{name.replace('_', '-')} must be at least 1")
        if self.rotate_minutes is not None and self.rotate_minutes <= 0:
            raise EdgeError("--rotate-minutes must be positive")
        if self.reconnect_timeout <= 0:
            raise EdgeError("--reconnect-timeout must be positive")


class StageStats:
    """Running mean/min/max plus percentiles over a fixed ring of recent values (bounded memory)."""

    def __init__(self, ring: int = 4096) -> None:
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0
        self._ring = np.zeros(ring, dtype=np.float64)

    def add(self, value_ms: float) -> None:
        self._ring[self.count % len(self._ring)] = value_ms
        self.count += 1
        self.total += value_ms
        self.maximum = max(self.maximum, value_ms)

    def summary(self) -> dict[str, float]:
        if not self.count:
            return {"mean_ms": 0.0, "p50_ms": 0.0, "p95_ms": 0.0, "max_ms": 0.0}
        recent = self._ring[: min(self.count, len(self._ring))]
        return {"mean_ms": self.total / self.count, "p50_ms": float(np.percentile(recent, 50)),
                "p95_ms": float(np.percentile(recent, 95)), "max_ms": self.maximum}


@dataclass
class LiveStats:
    frames: int = 0
    corrupt: int = 0  # frames a camera, stream or video delivered broken
    skipped: int = 0  # image files that could not be decoded (one warning line each)
    rejected: int = 0  # frames the runtime could not use (wrong dtype, empty)
    dropped: int = 0  # live frames replaced by newer ones before inference
    reconnects: int = 0
    unknown: int = 0  # frames the model's out-of-class score called none of its classes
    wall_s: float = 0.0
    ended_by: str = ""
    outputs: list[str] = field(default_factory=list)
    stages: dict[str, StageStats] = field(default_factory=lambda: {name: StageStats() for name in STAGES})
    error: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "fps": self.fps, "wall_s": self.wall_s, "corrupt": self.corrupt,
                "skipped": self.skipped,
                "rejected": self.rejected, "dropped": self.dropped, "reconnects": self.reconnects,
                "unknown": self.unknown,
                "ended_by": self.ended_by, "outputs": self.outputs, "error": self.error,
                "stages": {name: stats.summary() for name, stats in self.stages.items()}}

    def summary(self) -> str:
        lines = [f"{self.frames} frames in {self.wall_s:.1f}s = {self.fps:.1f} FPS (ended by {self.ended_by}); "
                 f"corrupt {self.corrupt}, skipped {self.skipped}, rejected {self.rejected}, dropped {self.dropped}, "
                 f"reconnects {self.reconnects}, unknown {self.unknown}"]
        for name, stats in self.stages.items():
            s = stats.summary()
            lines.append(f"  {name:10s} mean {s['mean_ms']:7.3f} ms  p50 {s['p50_ms']:7.3f}  p95 {s['p95_ms']:7.3f}  max {s['max_ms']:8.2f}")
        if self.error:
            lines.append(f"  stopped: {self.error}")
        return "\n".join(lines)


class Smoother:
    """Mean of the last N probability vectors, and of their out-of-class scores, kept in a fixed ring.

    The out-of-class score is smoothed with the probabilities, so "unknown" is a state like any
    label: one odd frame neither starts nor ends it.
    """

    def __init__(self, window: int, classes: int) -> None:
        self._ring = np.zeros((max(1, window), classes + 1), dtype=np.float32)
        self._count = 0

    def __call__(self, probabilities: np.ndarray, unknown_score: float | None = None) -> tuple[np.ndarray, float | None]:
        if len(self._ring) == 1:
            return probabilities, unknown_score
        self._ring[self._count % len(self._ring), :-1] = probabilities
        self._ring[self._count % len(self._ring), -1] = 0.0 if unknown_score is None else unknown_score
        self._count += 1
        mean = self._ring[: min(self._count, len(self._ring))].mean(axis=0)
        return mean[:-1], (None if unknown_score is None else float(mean[-1]))


class _Segmented:
    """An output written under a temporary name and renamed when closed; optional rotation."""

    def __init__(self, path: str, rotate_s: float | None) -> None:
        self.final = Path(path).expanduser()
        self.rotate_s = rotate_s
        self.segment = 0
        self.started = 0.0
        self.written: list[str] = []
        if self.final.exists() and self.final.is_dir():
            raise OutputError(f"{self.final} is a folder; pass a file name")
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.final.parent} ({exc.strerror or exc})") from None
        if not os.access(self.final.parent, os.W_OK):
            raise OutputError(f"{self.final.parent} is not writable; choose another output path")

    def _name(self) -> Path:
        if self.rotate_s is None:
            return self.final
        return self.final.with_name(f"{self.final.stem}-{self.segment:04d}{self.final.suffix}")

    def _temp(self, final: Path) -> Path:
        return final.with_name(f".{final.stem}.partial{final.suffix}")

    def due(self, now: float) -> bool:
        return self.rotate_s is not None and now - self.started >= self.rotate_s

    def _finish(self, temp: Path, final: Path) -> None:
        try:
            os.replace(temp, final)
            self.written.append(str(final))
        except OSError as exc:
            log.warning("could not move %s to %s (%s)", temp, final, exc)


class VideoSink(_Segmented):
    # OpenCV's writer does not report failed writes, so free space is checked every so often and
    # a finished segment is read back before it gets its final name.
    _SPACE_CHECK_EVERY = 64
    _MIN_FREE_BYTES = 8 * 1024 * 1024

    def __init__(self, path: str, fps: float, rotate_s: float | None) -> None:
        super().__init__(path, rotate_s)
        suffix = self.final.suffix.lower()
        if suffix not in (".mp4", ".avi", ".mkv"):
            raise OutputError(f"{self.final}: unsupported video type {suffix or '(none)'}; use .mp4 or .avi")
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
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self._path.suffix.lower() == ".avi" else "mp4v"))
            self._writer = cv2.VideoWriter(str(self._temp_path), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                self._writer = None
                raise OutputError(f"OpenCV cannot write {self._path} (codec or folder problem); try an .avi name")
            self.started = now
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size)  # a stream that changes resolution mid-run
        if self._frames % self._SPACE_CHECK_EVERY == 0:
            import shutil

            if shutil.disk_usage(self._temp_path.parent).free < self._MIN_FREE_BYTES:
                raise OutputError(f"disk full: less than {self._MIN_FREE_BYTES // 2**20} MB free for {self._path}; "
                                  "free space or choose another --output")
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


class JsonlSink(_Segmented):
    def __init__(self, path: str, rotate_s: float | None) -> None:
        super().__init__(path, rotate_s)
        self._handle: Any = None
        self._failed = False

    def write(self, record: dict[str, Any], now: float) -> None:
        if self._handle is not None and self.due(now):
            self.close()
            self.segment += 1
        if self._handle is None:
            self._path = self._name()
            self._temp_path = self._temp(self._path)
            try:
                self._handle = open(self._temp_path, "w", buffering=1)
            except OSError as exc:
                raise OutputError(f"cannot write {self._path} ({exc.strerror or exc})") from None
            self.started = now
        try:
            self._handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        except OSError as exc:
            self._failed = True
            raise OutputError(f"cannot write {self._path} ({exc.strerror or exc}); free space or choose another "
                              "--jsonl") from None

    def close(self) -> None:
        if self._handle is None:
            return
        try:
            self._handle.close()
        except OSError as exc:
            self._failed = True
            log.warning("closing %s failed (%s)", self._temp_path, exc)
        self._handle = None
        if self._failed:  # an incomplete file never takes the final name
            log.error("%s could not be completed; what was written is in %s", self._path, self._temp_path)
        else:
            self._finish(self._temp_path, self._path)


class _StatusLine:
    """What a stream shows now: one line rewritten in place on a terminal, else a line every few seconds."""

    def __init__(self, stream: Any, every_s: float | None = None) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every_s = every_s if every_s is not None else (0.25 if self.tty else 5.0)
        self.last = 0.0
        self.shown = False

    def update(self, frames: int, answer: str, score: float, fps: float | None) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        text = f"frame {frames}: {answer} {score:.0%}" + (f", {fps:.1f} FPS" if fps else "")
        try:
            if self.tty:
                self.stream.write("\r" + text.ljust(60))
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
            self.shown = True
        except (OSError, ValueError):  # a closed or broken stderr must not stop the loop
            self.every_s = float("inf")

    def close(self) -> None:
        if self.tty and self.shown:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass


def gui_available() -> tuple[bool, str]:
    """Whether a window can be shown, and if not, why (one line)."""
    import cv2

    info = cv2.getBuildInformation()
    gui_line = next((line for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    if "NONE" in gui_line.upper() or not gui_line:
        return False, ("OpenCV here has no GUI support (opencv-python-headless); running headless. "
                       "For a window: pip install 'edge-classify[gui]'")
    if os.name != "nt" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display found (DISPLAY is not set); running headless"
    return True, ""


def run(classifier: Classifier, source: FrameSource, config: LiveConfig, *,
        reopen: Callable[[], FrameSource] | None = None, stop: threading.Event | None = None,
        on_frame: Callable[[int, list[tuple[str, float]]], None] | None = None) -> LiveStats:
    """Run the loop until the source ends, ``max_frames``, q/Esc, Ctrl-C/SIGTERM, or ``stop`` is set.

    Args:
        classifier: an opened model.
        source: any :class:`FrameSource`; live ones are read newest-frame-first with reconnects.
        reopen: how to reopen a live source that disappeared (default: its own ``reopen``).
        stop: set it from another thread to end the loop cleanly.
        on_frame: called after each frame with its index and its top-k ``(label, score)`` pairs
            (integrators' hook).

    Returns:
        The run's statistics; outputs are closed and renamed into place.

    Raises:
        SourceError: the source failed for good (its error and the run's summary in one line).
    """
    loop = _Loop(classifier, source, config, reopen, stop or threading.Event(), on_frame)
    stats = loop.run()
    if stats.ended_by == "end of source" and stats.error:
        raise SourceError(stats.error + "; " + stats.summary().splitlines()[0])
    return stats


class _Loop:
    """One run of the live loop: open the outputs, then process frames one by one, then close."""

    def __init__(self, classifier: Classifier, source: FrameSource, config: LiveConfig,
                 reopen: Callable[[], FrameSource] | None, stop: threading.Event,
                 on_frame: Callable[[int, list[tuple[str, float]]], None] | None) -> None:
        self.classifier, self.source, self.config, self.stop, self.on_frame = classifier, source, config, stop, on_frame
        self.stats = LiveStats()
        self.show = self._window_wanted()
        rotate_s = config.rotate_minutes * 60 if config.rotate_minutes else None
        self.video = VideoSink(config.output, config.output_fps or getattr(source, "nominal_fps", None) or 30.0,
                               rotate_s) if config.output else None
        self.records = JsonlSink(config.jsonl, rotate_s) if config.jsonl else None
        # Smoothing averages frames that follow one another; unrelated images are classified one by one.
        continuous = getattr(source, "continuous", True)
        if config.smooth > 1 and not continuous:
            log.warning("--smooth %d ignored: %s holds separate images, each classified on its own", config.smooth,
                        source.name)
        self.smoother = Smoother(config.smooth if continuous else 1, len(classifier.labels))
        # Image sources: the answer for each image on stdout. Streams: a status line (stderr).
        self.answers = not continuous
        self.status = _StatusLine(sys.stderr) if continuous and not config.quiet else None
        self.reader: OrderedReader | LatestReader = (
            LatestReader(source, reopen, give_up_s=config.reconnect_timeout) if source.is_live
            else OrderedReader(source))
        self.frame_ends: deque[float] = deque(maxlen=30)

    def run(self) -> LiveStats:
        restore = _install_signal_handlers(self.stop)
        started = time.perf_counter()
        try:
            self._frames()
        except KeyboardInterrupt:
            self.stats.ended_by = "Ctrl-C"
        finally:
            self.stats.wall_s = time.perf_counter() - started
            self._close()
            restore()
        return self.stats

    def _window_wanted(self) -> bool:
        if self.config.headless:
            return False
        show, why = gui_available()
        if not show and self.config.headless is False:
            log.warning("%s", why)
        return show

    def _frames(self) -> None:
        while not self.stop.is_set():
            if self.config.max_frames is not None and self.stats.frames >= self.config.max_frames:
                self.stats.ended_by = "max-frames"
                return
            wait_start = time.perf_counter()
            try:
                event = self.reader.get(timeout=0.5)
            except queue.Empty:
                continue
            if event is None:
                self.stats.ended_by = "end of source"
                self.stats.error = getattr(self.reader, "error", None)
                return
            capture_ms = (time.perf_counter() - wait_start) * 1e3
            if event.frame is None:
                if event.file is not None:
                    self.stats.skipped += 1
                else:
                    self.stats.corrupt += 1
                continue
            self._process(event, capture_ms)
        self.stats.ended_by = self.stats.ended_by or "stop requested"

    def _process(self, event: Any, capture_ms: float) -> None:
        """Classify one frame, draw it, write it, show it, and time every stage."""
        classifier, config = self.classifier, self.config
        try:
            t0 = time.perf_counter()
            tensor = classifier.input_tensor(event.frame)
            t1 = time.perf_counter()
            probabilities, unknown_score = self.smoother(*classifier.infer_all(tensor))
            t2 = time.perf_counter()
        except FrameError as exc:
            self.stats.rejected += 1
            log.warning("frame %d skipped: %s", event.index, exc)
            return
        top = classifier.top(probabilities, config.top_k)
        unknown = classifier.is_unknown(unknown_score)
        self.stats.unknown += unknown
        frame, fps = event.frame, self._fps(t2)
        if config.overlay and (self.show or self.video):
            frame = overlay.draw(frame, top, fps, threshold=config.threshold, bars=config.bars, unknown=unknown)
        t3 = time.perf_counter()
        if self.video:
            self.video.write(frame, time.time())
        if self.show:
            self.show = _show(config.window_name, frame, self.stop, self.stats)
        t4 = time.perf_counter()
        stages = dict(zip(STAGES, (capture_ms, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3)))
        for name, value in stages.items():
            self.stats.stages[name].add(value)
        if self.records:
            self._record(event, top, stages, unknown, unknown_score)
        self.stats.frames += 1
        answer = frame_answer(top, unknown, config.threshold)
        if self.answers:
            guess = f" (best guess {top[0][0]} {top[0][1]:.1%})" if answer in ("unknown", "uncertain") else \
                f" {top[0][1]:.1%}"
            print(f"{event.file or event.index}: {answer}{guess}", flush=True)
        elif self.status is not None:
            self.status.update(self.stats.frames, answer, top[0][1], fps)
        if self.on_frame is not None:
            self.on_frame(event.index, top)

    def _fps(self, frame_end: float) -> float | None:
        """Frames per second over the last 30 frames (None until there are two)."""
        ends = self.frame_ends
        ends.append(frame_end)
        return (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 1 and ends[-1] > ends[0] else None

    def _record(self, event: Any, top: list[tuple[str, float]], stages: dict[str, float], unknown: bool,
                unknown_score: float | None) -> None:
        """One JSONL line: the frame, its file (image sources), its top-k and its stage times, named as in
        the summary (``output`` is writing the video and showing the window; the line itself comes after)."""
        record = {"frame": event.index, "time": round(event.timestamp, 6)}
        if event.file is not None:
            record["file"] = event.file
        record.update(label=frame_answer(top, unknown, self.config.threshold), unknown=unknown,
                      top=[[name, round(score, 5)] for name, score in top],
                      ms={name: round(value, 3) for name, value in stages.items()})
        if unknown_score is not None:
            record["unknown_score"] = round(unknown_score, 5)
        self.records.write(record, time.time())

    def _close(self) -> None:
        """Stop the reader, close and rename the outputs, release the source and the window."""
        stats, reader = self.stats, self.reader
        reader.stop()
        if isinstance(reader, LatestReader):
            stats.reconnects, stats.dropped = reader.reconnects, reader.dropped
            stats.corrupt += reader.corrupt
        if self.status is not None:
            self.status.close()
        for sink in (self.video, self.records):
            if sink is not None:
                sink.close()
                stats.outputs.extend(sink.written)
        self.source.close()
        if self.show:
            import cv2

            cv2.destroyAllWindows()


def _show(window: str, frame: np.ndarray, stop: threading.Event, stats: LiveStats) -> bool:
    import cv2

    try:
        cv2.imshow(window, frame)
        key = cv2.waitKey(1) & 0xFF
    except cv2.error:
        log.warning("the window could not be shown; continuing headless")
        return False
    if key in (ord("q"), 27):
        stats.ended_by = "key"
        stop.set()
    return True


def _install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM end the loop cleanly (closing outputs) instead of killing it mid-write."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: Any) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
