"""The live loop: frames in, predictions drawn, shown, written and timed.

Memory is bounded however long it runs: timings keep running sums and a fixed ring of recent
values, smoothing keeps the last N probability vectors, and output files rotate.
"""

from __future__ import annotations

import logging
import queue
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from edge_common.cli import check_ranges, option
from edge_common.errors import printable
from edge_common.files import atomic_write_text, dump_json

from . import overlay, window
from .classifier import Classifier, frame_answer
from .errors import EdgeError, FrameError, NonFiniteScoresError, OutputError, SourceError
from .events import EventOptions, Events
from .outputs import STDOUT, VIDEO_SUFFIXES, ImageSink, JsonlSink, VideoSink, check_distinct
from .readers import FrameEvent, LatestReader, OrderedReader
from .serve import LiveView, ServeOptions
from .sources import FrameSource
from .stats import STAGES, LiveStats, Smoother, StatusLine

log = logging.getLogger("edge_classify.runtime")
__all__ = ["LiveConfig", "LiveStats", "STAGES", "Smoother", "run"]


@dataclass
class LiveConfig:
    """Options of the live loop; each field but ``window_name`` is a flag of ``python -m edge_runtime``."""

    headless: bool | None = option(
        help="never open a window (default: headless when there is no display)",
        off="--window",
        off_help="insist on a window (needs the gui extra)",
    )
    output: str | None = option(
        help="write the annotated video here (.mp4, .avi or .mkv); for image sources, "
        "annotated images (a file for one image, a folder for many)"
    )
    output_fps: float | None = option(
        help="frame rate of --output (default: the source's, else 30)", bounds=(0, 1000), open_low=True
    )
    jsonl: str | None = option(
        help="write one JSON line per frame here (index, time, top-k, ms per stage); '-' for standard output"
    )
    rotate_minutes: float | None = option(
        help="start a new --output/--jsonl segment this often (long-running devices)", bounds=(0, None), open_low=True
    )
    threshold: float = option(0.0, "show 'uncertain' below this score", bounds=(0, 1))
    smooth: int = option(1, "average probabilities over the last N frames", bounds=(1, 1000))
    top_k: int = option(3, "how many classes to report per frame", bounds=(1, 1000))
    bars: bool = option(False, "draw top-k probability bars")
    overlay: bool = option(True, "do not draw on frames")
    max_frames: int | None = option(help="stop after N frames", bounds=(1, None))
    reconnect_timeout: float = option(
        30.0, "seconds a lost camera/stream may take to come back before giving up", bounds=(0, 86400), open_low=True
    )
    quiet: bool = option(False, "no status line for streams (the summary is still printed)")
    summary_json: str | None = option(help="also write the end-of-run summary here as JSON")
    window_name: str = "edge-classify"

    def validate(self) -> None:
        """Raises EdgeError naming the option that cannot work."""
        check_ranges(self)
        if self.rotate_minutes is not None and not (self.output or self.jsonl):
            raise EdgeError("--rotate-minutes rotates --output and --jsonl files; pass one of them, or drop it")


def run(
    classifier: Classifier,
    source: FrameSource,
    config: LiveConfig,
    *,
    reopen: Callable[[], FrameSource] | None = None,
    stop: threading.Event | None = None,
    on_frame: Callable[[int, Sequence[tuple[str, float]]], None] | None = None,
    view: LiveView | None = None,
    events: Events | None = None,
    serve: ServeOptions | None = None,
    event_options: EventOptions | None = None,
) -> LiveStats:
    """Run the loop until the source ends, ``max_frames``, q/Esc, Ctrl-C/SIGTERM, or ``stop`` is set.

    Args:
        classifier: an opened model.
        source: any :class:`FrameSource`; live ones are read newest-frame-first with reconnects.
        reopen: how to reopen a live source that disappeared (default: its own ``reopen``).
        stop: set it from another thread to end the loop cleanly.
        on_frame: called after each frame with its index and its top-k ``(label, score)`` pairs
            (integrators' hook).
        view, events: a live view and label-change events the caller made and closes itself.
        serve, event_options: or the options to make them from (``--serve``, ``--webhook``,
            ``--mqtt``): the loop then opens them, says the view's URL, and closes them at the end,
            the events' counts going into the returned statistics.

    Returns:
        The run's statistics; outputs are closed and renamed into place.

    Raises:
        SourceError: the source failed for good (its error and the run's summary in one line).
    """
    made_view = made_events = None
    try:
        if view is None and serve is not None and serve.serve:
            view = made_view = LiveView(serve, classifier.metadata.model, source.name, classifier.engine)
            print(f"live view: {view.url}", file=sys.stderr, flush=True)
        if events is None and event_options is not None and (event_options.webhook or event_options.mqtt or view):
            events = made_events = Events(
                event_options, source.name, classifier.metadata.model, extra=[view.add_change] if view else None
            )
        loop = _Loop(classifier, source, config, reopen, stop or threading.Event(), on_frame, view, events)
        stats = loop.run()
    finally:
        if made_events is not None:
            made_events.close()
        if made_view is not None:
            made_view.close()
    if made_events is not None:
        stats.events = made_events.summary()
    if config.summary_json:
        atomic_write_text(config.summary_json, dump_json(stats.to_dict()))
    if stats.non_finite and not stats.frames:
        raise NonFiniteScoresError(
            f"{classifier.path or classifier.metadata.model}: every frame's scores were NaN or "
            f"infinity; the model file is broken; " + stats.summary().splitlines()[0]
        )
    if stats.ended_by == "end of source" and stats.error:
        raise SourceError(stats.error + "; " + stats.summary().splitlines()[0])
    if loop.records is not None and loop.records.failed:
        raise OutputError(f"--jsonl {loop.records.final} could not be completed (see above)")
    return stats


class _Loop:
    """One run of the live loop: open the outputs, then process frames one by one, then close."""

    def __init__(
        self,
        classifier: Classifier,
        source: FrameSource,
        config: LiveConfig,
        reopen: Callable[[], FrameSource] | None,
        stop: threading.Event,
        on_frame: Callable[[int, Sequence[tuple[str, float]]], None] | None,
        view: LiveView | None = None,
        events: Events | None = None,
    ) -> None:
        self.classifier, self.source, self.config, self.stop, self.on_frame = classifier, source, config, stop, on_frame
        self.stats = LiveStats(engine=classifier.engine)
        self.view, self.events = view, events
        self.show = self._window_wanted()
        images: list[Any] = list(source.paths)
        inputs = [("--model", classifier.path)] + [("--source", path) for path in images or [source.path]]
        if images:  # the folder, glob or file the images were named by, too: an output must not replace it
            inputs.append(("--source", source.name))
        # The one check that no output is an input or another output (the CLI leaves it to the loop).
        check_distinct(
            inputs, {"--output": config.output, "--jsonl": config.jsonl, "--summary-json": config.summary_json}
        )
        rotate_s = config.rotate_minutes * 60 if config.rotate_minutes else None
        self.video: VideoSink | ImageSink | None = None
        if config.output and images and not config.output.lower().endswith(VIDEO_SUFFIXES):
            self.video = ImageSink(config.output, images)
        elif config.output:
            self.video = VideoSink(config.output, config.output_fps or source.nominal_fps or 30.0, rotate_s)
        self.records = JsonlSink(config.jsonl, rotate_s) if config.jsonl else None
        # Smoothing averages frames that follow one another; unrelated images are classified one by one.
        continuous = source.continuous
        if config.smooth > 1 and not continuous:
            log.warning(
                "--smooth %d ignored: %s holds separate images, each classified on its own", config.smooth, source.name
            )
        self.smoother = Smoother(config.smooth if continuous else 1, len(classifier.labels))
        # Image sources: the answer for each image on stdout (unless stdout carries --jsonl -).
        # Streams: a status line on stderr.
        self.answers = not continuous and config.jsonl != STDOUT
        self.status = StatusLine(sys.stderr) if continuous and not config.quiet else None
        self.reader: OrderedReader | LatestReader = (
            LatestReader(source, reopen, give_up_s=config.reconnect_timeout, prepare=classifier.input_tensor)
            if source.is_live
            else OrderedReader(source, prepare=classifier.input_tensor)
        )
        self.frame_ends: deque[float] = deque(maxlen=30)

    def run(self) -> LiveStats:
        restore = _install_signal_handlers(self.stop, self.stats)
        started = time.perf_counter()
        try:
            self._frames()
        except KeyboardInterrupt:
            self.stats.ended_by, self.stats.signal = "SIGINT", int(signal.SIGINT)
        finally:
            self.stats.wall_s = time.perf_counter() - started
            self._close()
            restore()
        return self.stats

    def _window_wanted(self) -> bool:
        if self.config.headless:
            return False
        show, why = window.gui_available()
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
                if not self.stats.frames and not self.stats.error:
                    self.stats.error = f"{self.source.name}: no frame could be read"
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

    def _process(self, event: FrameEvent, capture_ms: float) -> None:
        """Classify one frame, draw it, write it, show it, and time every stage."""
        classifier, config = self.classifier, self.config
        frame = event.frame
        assert frame is not None  # the caller skips empty events
        try:
            t0 = time.perf_counter()
            # Prepared in the reading thread (overlapping the last inference); else here.
            tensor = event.tensor if event.tensor is not None else classifier.input_tensor(frame)
            t1 = time.perf_counter()
            probabilities, unknown_score = self.smoother(*classifier.infer_all(tensor))
            t2 = time.perf_counter()
        except FrameError as exc:
            self.stats.rejected += 1
            log.warning("frame %d skipped: %s", event.index, exc)
            return
        except NonFiniteScoresError as exc:
            if not self.stats.non_finite:  # once a run; the summary has the count
                log.error("%s; such frames get no answer and are counted in the summary", exc)
            self.stats.non_finite += 1
            return
        top = classifier.top(probabilities, config.top_k)
        unknown = classifier.is_unknown(unknown_score)
        answer = frame_answer(top, unknown, config.threshold)  # once: the overlay, outputs and events share it
        self.stats.unknown += unknown
        fps = self._fps(t2)
        if config.overlay and (self.show or self.video or self.view):
            frame = overlay.draw(frame, top, fps, answer=answer, bars=config.bars)
        t3 = time.perf_counter()
        if isinstance(self.video, ImageSink):
            self.video.write(frame, event.file or str(event.index))
        elif self.video:
            self.video.write(frame, time.time())
        if self.show:
            self.show = window.show(config.window_name, frame, self.stop, self.stats)
        t4 = time.perf_counter()
        stages = dict(zip(STAGES, (capture_ms, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3)))
        for name, value in stages.items():
            self.stats.stages[name].add(value)
        if self.records or self.view:
            record = self._record(event, answer, top, stages, unknown, unknown_score)
            if self.records:
                self.records.write(record, time.time())
            if self.view:
                self.view.publish(frame, {**record, "score": round(top[0][1], 5), "fps": fps})
        if self.events:
            self.events.observe(answer, top[0][1], unknown, event.index)
        self.stats.frames += 1
        if self.answers:
            guess = (
                f" (best guess {printable(top[0][0])} {top[0][1]:.1%})"
                if answer in ("unknown", "uncertain")
                else f" {top[0][1]:.1%}"
            )
            print(f"{printable(str(event.file or event.index))}: {printable(answer)}{guess}", flush=True)
        elif self.status is not None:
            self.status.update(self.stats.frames, answer, top[0][1], fps)
        if self.on_frame is not None:
            self.on_frame(event.index, top)

    def _fps(self, frame_end: float) -> float | None:
        """Frames per second over the last 30 frames (None until there are two)."""
        ends = self.frame_ends
        ends.append(frame_end)
        return (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 1 and ends[-1] > ends[0] else None

    @staticmethod
    def _record(
        event: FrameEvent,
        answer: str,
        top: Sequence[tuple[str, float]],
        stages: dict[str, float],
        unknown: bool,
        unknown_score: float | None,
    ) -> dict[str, Any]:
        """What a frame's answer is, as one JSONL line and the live view's state: the frame, its file
        (image sources), the answer, its top-k and its stage times, named as in the summary (``output``
        is writing the video and showing the window; the line itself comes after)."""
        record: dict[str, Any] = {"frame": event.index, "time": round(event.timestamp, 6)}
        if event.file is not None:
            record["file"] = event.file
        record.update(
            label=answer,
            unknown=unknown,
            top=[[name, round(score, 5)] for name, score in top],
            ms={name: round(value, 3) for name, value in stages.items()},
        )
        if unknown_score is not None:
            record["unknown_score"] = round(unknown_score, 5)
        return record

    def _close(self) -> None:
        """Stop the reader, close and rename the outputs, release the source and the window."""
        stats, reader = self.stats, self.reader
        reader.stop()
        if isinstance(reader, LatestReader):
            stats.reconnects, stats.dropped = reader.reconnects, reader.dropped
            stats.reconnect_attempts = reader.reconnect_attempts
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


def _install_signal_handlers(stop: threading.Event, stats: LiveStats) -> Callable[[], None]:
    """SIGINT/SIGTERM end the loop cleanly (closing outputs) instead of killing it mid-write; the
    signal is kept in ``stats`` so the command exits 128 + its number, as the shell expects."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: Any) -> None:
        stats.signal = signum
        stats.ended_by = signal.Signals(signum).name
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
