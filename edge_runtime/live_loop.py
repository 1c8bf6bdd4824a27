"""The live loop itself (:func:`edge_runtime.live.run` opens it): cameras served in turn, each frame
classified, drawn, written, shown and timed; SIGINT/SIGTERM end it cleanly."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from edge_common.errors import printable

from . import overlay, window
from .classifier import Classifier, frame_answer
from .errors import FrameError, NonFiniteScoresError
from .events import Events
from .live_camera import Camera, output_for, wait_time
from .outputs import STDOUT, ImageSink, JsonlSink, check_distinct
from .readers import FrameEvent
from .second_look import FIRST
from .serve import LiveView
from .sources import FrameSource
from .stats import STAGES, LiveStats, StatusLine
from .swap import ModelSlot

if TYPE_CHECKING:
    from .clips import Clips
    from .live import LiveConfig
    from .service import Service

log = logging.getLogger("edge_classify.runtime")


class Loop:
    """One run of the live loop: open the outputs, serve the cameras' frames in turn, then close."""

    def __init__(
        self,
        slot: ModelSlot,
        sources: list[FrameSource],
        reopens: list[Callable[[], FrameSource] | None],
        config: LiveConfig,
        stop: threading.Event,
        on_frame: Callable[[int, Sequence[tuple[str, float]]], None] | None,
        view: LiveView | None = None,
        events: Events | None = None,
        service: "Service | None" = None,
        clips: "Clips | None" = None,
    ) -> None:
        self.slot, self.config, self.stop, self.on_frame = slot, config, stop, on_frame
        classifier = slot.current
        self.stats = LiveStats(engine=classifier.engine)
        self.view, self.events, self.service, self.clips = view, events, service, clips
        self.show = self._window_wanted()
        self.several = len(sources) > 1
        inputs: list[tuple[str, Any]] = [("--model", classifier.path)]
        outputs: dict[str, str | None] = {}
        for source in sources:
            images: list[Any] = list(source.paths)
            inputs += [("--source", path) for path in images or [source.path]]
            if images:  # the folder, glob or file the images were named by, too: an output must not replace it
                inputs.append(("--source", source.name))
            if config.output:
                flag = f"--output ({source.name})" if self.several else "--output"
                outputs[flag] = output_for(config.output, source.name, self.several)
        outputs.update({"--jsonl": config.jsonl, "--summary-json": config.summary_json})
        # The one check that no output is an input or another output (the CLI leaves it to the loop).
        check_distinct(inputs, outputs)
        rotate_s = config.rotate_minutes * 60 if config.rotate_minutes else None
        self.records = JsonlSink(config.jsonl, rotate_s) if config.jsonl else None
        self.wake = threading.Event()
        self.cameras: list[Camera] = []
        try:
            for source, reopen in zip(sources, reopens):
                if config.smooth > 1 and not source.continuous:
                    log.warning(
                        "--smooth %d ignored: %s holds separate images, each classified on its own",
                        config.smooth,
                        source.name,
                    )
                self.cameras.append(
                    Camera(
                        source,
                        classes=len(classifier.labels),
                        smooth=config.smooth,
                        prepare=self._prepare,
                        wake=self.wake,
                        reopen=reopen,
                        reconnect_timeout=config.reconnect_timeout,
                        output=output_for(config.output, source.name, self.several) if config.output else None,
                        output_fps=config.output_fps,
                        rotate_s=rotate_s,
                        max_fps=config.max_fps,
                    )
                )
        except BaseException:
            for camera in self.cameras:
                camera.close()
            raise
        # Image sources: the answer for each image on stdout (unless stdout carries --jsonl -).
        # Streams: a status line on stderr.
        continuous = all(camera.continuous for camera in self.cameras)
        self.answers = not continuous and config.jsonl != STDOUT
        self.status = StatusLine(sys.stderr) if continuous and not config.quiet else None
        self.turn = 0  # the camera served first on the next pass: each in turn
        self.taps: list[Callable[[str, Any], None]] = []  # get each camera's raw frames (the Teach panel)
        self.last_end = time.perf_counter()

    def _prepare(self, frame: Any) -> tuple[Any, Any]:
        """The model input, made in a reading thread, with the contract it was made for (a swap between
        reading and inference makes it stale: the loop then prepares the frame again)."""
        classifier = self.slot.current
        return classifier.input_spec, classifier.input_tensor(frame)

    def run(self) -> LiveStats:
        restore = _install_signal_handlers(self.stop, self.stats)
        started = time.perf_counter()
        try:
            if self.service is not None:
                self.service.ready(self._status_text)
            self._frames()
        except KeyboardInterrupt:
            self.stats.ended_by, self.stats.signal = "SIGINT", int(signal.SIGINT)
        finally:
            self.stats.wall_s = time.perf_counter() - started
            self._close()
            restore()
        return self.stats

    def _status_text(self) -> str:
        return f"{self.stats.frames} frames, {sum(not c.ended for c in self.cameras)} of {len(self.cameras)} cameras"

    def _window_wanted(self) -> bool:
        if self.config.headless:
            return False
        show, why = window.gui_available()
        if not show and self.config.headless is False:
            log.warning("%s", why)
        return show

    def _frames(self) -> None:
        cameras = self.cameras
        while not self.stop.is_set():
            self._swap()
            if self.config.max_frames is not None and self.stats.frames >= self.config.max_frames:
                self.stats.ended_by = "max-frames"
                return
            if all(camera.ended for camera in cameras):
                self.stats.ended_by = "end of source"
                failed = [c.error for c in cameras if c.error]
                if failed:
                    self.stats.error = (
                        failed[0]
                        if len(cameras) == 1
                        else (f"{len(failed)} of {len(cameras)} cameras failed: " + "; ".join(failed))
                    )
                return
            self.wake.clear()
            now = time.monotonic()
            for k in range(len(cameras)):
                camera = cameras[(self.turn + k) % len(cameras)]
                if not camera.due(now):
                    continue
                event = camera.take()
                if event is False:
                    continue
                self.turn = (self.turn + k + 1) % len(cameras)  # the next pass starts after this camera
                if event is None:
                    camera.end()
                    if camera.error and len(cameras) > 1:
                        log.error("%s; the other cameras go on", camera.error)
                elif isinstance(event, FrameEvent):
                    camera.served(now)
                    self._frame(camera, event)
                break
            else:
                self.wake.wait(wait_time(cameras, now, 0.5))
        self.stats.ended_by = self.stats.ended_by or "stop requested"

    def _swap(self) -> None:
        """Between two frames: take a new model that passed its checks (SIGHUP, --watch-model, teach)."""
        new = self.slot.take()
        if new is None:
            return
        self.stats.engine = new.engine
        self.stats.swaps += 1
        for camera in self.cameras:
            camera.reset_smoothing(len(new.labels))
        if self.view is not None:
            self.view.set_model(new.metadata.model, new.engine)
            self.view.add_change({"type": "model", "labels": list(new.labels), **new.identity})
        if self.events is not None:
            self.events.model = new.metadata.model

    def _frame(self, camera: Camera, event: FrameEvent) -> None:
        capture_ms = (time.perf_counter() - self.last_end) * 1e3
        if event.frame is None:
            if event.file is not None:
                camera.skipped += 1
                self.stats.skipped += 1
            else:
                camera.corrupt += 1
                self.stats.corrupt += 1
            return
        self._process(camera, event, capture_ms)
        self.last_end = time.perf_counter()

    def _process(self, camera: Camera, event: FrameEvent, capture_ms: float) -> None:
        """Classify one frame, draw it, write it, show it, and time every stage."""
        classifier, config = self.slot.current, self.config
        frame = event.frame
        assert frame is not None  # the caller skips empty events
        try:
            t0 = time.perf_counter()
            # Prepared in the reading thread (overlapping the last inference) for this model; else here.
            prepared = event.tensor
            if prepared is not None and prepared[0] is classifier.input_spec:
                tensor = prepared[1]
            else:
                tensor = classifier.input_tensor(frame)
            t1 = time.perf_counter()
            # The second look (unsure frames only) answers for the frame before smoothing.
            probabilities, unknown_score, look, looked = classifier.look_again(frame, *classifier.infer_all(tensor))
            probabilities, unknown_score = camera.smoother(probabilities, unknown_score)
            t2 = time.perf_counter()
        except FrameError as exc:
            camera.rejected += 1
            self.stats.rejected += 1
            log.warning("%sframe %d skipped: %s", self._who(camera), event.index, exc)
            return
        except NonFiniteScoresError as exc:
            if not self.stats.non_finite:  # once a run; the summary has the count
                log.error("%s; such frames get no answer and are counted in the summary", exc)
            camera.non_finite += 1
            self.stats.non_finite += 1
            return
        self.slot.sample = frame
        for tap in self.taps:
            tap(camera.name, frame)
        top = classifier.top(probabilities, config.top_k)
        unknown = classifier.is_unknown(unknown_score)
        answer = frame_answer(top, unknown, config.threshold)  # once: the overlay, outputs and events share it
        self.stats.unknown += unknown
        camera.unknown += unknown
        self.stats.looked_again += looked
        self.stats.zoom_answered += look != FIRST
        fps = camera.fps(t2)
        if config.overlay and (self.show or camera.video or self.view or self.clips):
            frame = overlay.draw(frame, top, fps, answer=answer, bars=config.bars)
        t3 = time.perf_counter()
        if isinstance(camera.video, ImageSink):
            camera.video.write(frame, event.file or str(event.index))
        elif camera.video:
            camera.video.write(frame, time.time())
        if self.show:
            name = f"{config.window_name}: {camera.name}" if self.several else config.window_name
            self.show = window.show(name, frame, self.stop, self.stats)
        t4 = time.perf_counter()
        stages = dict(zip(STAGES, (capture_ms, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3)))
        for name, value in stages.items():
            self.stats.stages[name].add(value)
        if self.records or self.view:  # built only for someone who reads it
            record = self._record(camera, event, answer, top, stages, unknown, unknown_score, look, classifier)
            if self.records:
                self.records.write(record, time.time())
            if self.view:
                self.view.publish(frame, {**record, "score": round(top[0][1], 5), "fps": fps}, camera.name)
        if self.events:
            self.events.observe(answer, top[0][1], unknown, event.index, camera.name)
        if self.clips is not None:
            rate = camera.source.nominal_fps
            clock = event.timestamp if camera.source.is_live or not rate else event.index / rate
            self.clips.frame(camera.name, frame, clock, None if camera.source.is_live else rate)
        camera.frames += 1
        camera.last_frame_at = time.monotonic()
        self.stats.frames += 1
        if self.service is not None:
            self.service.frame()
        if self.answers:
            guess = (
                f" (best guess {printable(top[0][0])} {top[0][1]:.1%})"
                if answer in ("unknown", "uncertain")
                else f" {top[0][1]:.1%}"
            )
            print(
                f"{self._who(camera)}{printable(str(event.file or event.index))}: {printable(answer)}{guess}",
                flush=True,
            )
        elif self.status is not None:
            self.status.update(self.stats.frames, f"{self._who(camera)}{answer}", top[0][1], fps)
        if self.on_frame is not None:
            self.on_frame(event.index, top)

    def _who(self, camera: Camera) -> str:
        return f"{printable(camera.name)}: " if self.several else ""

    @staticmethod
    def _record(
        camera: Camera,
        event: FrameEvent,
        answer: str,
        top: Sequence[tuple[str, float]],
        stages: dict[str, float],
        unknown: bool,
        unknown_score: float | None,
        look: str,
        classifier: Classifier,
    ) -> dict[str, Any]:
        """What a frame's answer is, as one JSONL line and the live view's state: the camera, the frame,
        its file (image sources), the answer, its top-k, the look and the model that answered, and its
        stage times, named as in the summary (``output`` is writing the video and showing the window;
        the line itself comes after)."""
        record: dict[str, Any] = {"camera": camera.name, "frame": event.index, "time": round(event.timestamp, 6)}
        if event.file is not None:
            record["file"] = event.file
        record.update(
            label=answer,
            unknown=unknown,
            look=look,
            top=[[name, round(score, 5)] for name, score in top],
            ms={name: round(value, 3) for name, value in stages.items()},
            **classifier.identity,
        )
        if unknown_score is not None:
            record["unknown_score"] = round(unknown_score, 5)
        return record

    def _close(self) -> None:
        """Stop the readers, close and rename the outputs, release the sources and the windows."""
        stats = self.stats
        if self.status is not None:
            self.status.close()
        for camera in self.cameras:
            counts = camera.close()
            stats.cameras.append(counts)
            stats.dropped += counts["dropped"]
            stats.reconnects += counts["reconnects"]
            stats.reconnect_attempts += counts["reconnect_attempts"]
            stats.corrupt += counts["corrupt"] - camera.corrupt
            stats.outputs.extend(counts["outputs"])
        if self.records is not None:
            self.records.close()
            stats.outputs.extend(self.records.written)
        if self.clips is not None:
            self.clips.close()
            stats.clips = self.clips.summary()
        self.slot.close()
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
