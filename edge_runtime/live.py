"""The live loop: frames in from one camera or several, predictions drawn, shown, written and timed.

Several sources share one model: each has its own reader (newest frame first, its own reconnects),
and the loop serves them in turn, one frame at a time, so a fast camera cannot starve a slow one;
``max_fps`` caps each camera's frames a second and the loop sleeps otherwise. One camera failing
ends that camera only. The model can be swapped between two frames (:mod:`edge_runtime.swap`).

Memory is bounded however long it runs: timings keep running sums and a fixed ring of recent
values, smoothing keeps the last N probability vectors, and output files rotate.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from edge_common.cli import check_ranges, option
from edge_common.files import atomic_write_text, dump_json

from .classifier import Classifier
from .errors import EdgeError, NonFiniteScoresError, OutputError, SourceError
from .events import EventOptions, Events
from .live_loop import Loop
from .serve import LiveView, ServeOptions
from .sources import FrameSource
from .stats import STAGES, LiveStats, Smoother
from .swap import ModelSlot

if TYPE_CHECKING:
    from .clips import Clips
    from .service import Service
    from .teach_panel import TeachPanel

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
    max_fps: float | None = option(
        help="classify at most N frames a second from each camera (the newest) and sleep otherwise; "
        "saves power and heat (the live view's rate is --serve-fps)",
        bounds=(0, 1000),
        open_low=True,
    )
    window_name: str = "edge-classify"

    def validate(self) -> None:
        """Raises EdgeError naming the option that cannot work."""
        check_ranges(self)
        if self.rotate_minutes is not None and not (self.output or self.jsonl):
            raise EdgeError("--rotate-minutes rotates --output and --jsonl files; pass one of them, or drop it")


def run(
    classifier: Classifier | ModelSlot,
    source: FrameSource | Sequence[FrameSource],
    config: LiveConfig,
    *,
    reopen: Callable[[], FrameSource] | Sequence[Callable[[], FrameSource] | None] | None = None,
    stop: threading.Event | None = None,
    on_frame: Callable[[int, Sequence[tuple[str, float]]], None] | None = None,
    view: LiveView | None = None,
    events: Events | None = None,
    serve: ServeOptions | None = None,
    event_options: EventOptions | None = None,
    service: "Service | None" = None,
    clips: "Clips | None" = None,
    listeners: Sequence[Callable[[dict], None]] | None = None,
    teach: "TeachPanel | None" = None,
) -> LiveStats:
    """Run the loop until every source ends, ``max_frames``, q/Esc, Ctrl-C/SIGTERM, or ``stop`` is set.

    Args:
        classifier: an opened model, or a :class:`ModelSlot` whose model may be swapped while running.
        source: one :class:`FrameSource` or several (each camera's ``name`` labels its outputs);
            live ones are read newest-frame-first with reconnects.
        reopen: how to reopen a live source that disappeared (one callable, or one per source;
            default: its own ``reopen``).
        stop: set it from another thread to end the loop cleanly.
        on_frame: called after each frame with its index and its top-k ``(label, score)`` pairs
            (integrators' hook).
        view, events: a live view and label-change events the caller made and closes itself.
        serve, event_options: or the options to make them from (``--serve``, ``--webhook``,
            ``--mqtt``): the loop then opens them, says the view's URL, and closes them at the end,
            the events' counts going into the returned statistics.
        service: systemd's notify socket and watchdog (:mod:`edge_runtime.service`), fed per frame.
        clips: event clips (:mod:`edge_runtime.clips`), fed every frame of every camera.
        listeners: more in-process receivers of every label event (Home Assistant's discovery).
        teach: the live page's Teach panel (:mod:`edge_runtime.teach_panel`; needs ``serve``): it gets
            every camera's raw frames and reports its progress on the page's ``/events``.

    Returns:
        The run's statistics; outputs are closed and renamed into place.

    Raises:
        SourceError: every source ended and one failed for good (its error and the summary in one line).
    """
    slot = classifier if isinstance(classifier, ModelSlot) else ModelSlot(classifier)
    sources: list[FrameSource] = list(source) if isinstance(source, (list, tuple)) else [source]  # type: ignore[list-item]
    reopens: list[Callable[[], FrameSource] | None] = (
        list(reopen) if isinstance(reopen, (list, tuple)) else [reopen] * len(sources)  # type: ignore[list-item]
    )
    names = [s.name for s in sources]
    model = slot.current
    made_view = made_events = None
    try:
        if view is None and serve is not None and serve.serve:
            # /healthz calls frames stopped after --stale-after seconds, or three frame budgets (--max-fps).
            stale = max(serve.stale_after, 3.0 / config.max_fps) if config.max_fps else serve.stale_after
            view = made_view = LiveView(serve, model.metadata.model, names, model.engine, stale_s=stale, teach=teach)
            if teach is not None:
                teach.publish = view.add_change
            print(f"live view: {view.url}", file=sys.stderr, flush=True)
        if clips is not None and event_options is None:
            event_options = EventOptions()  # clips follow label events: debounced as the defaults say
        wanted = event_options is not None and (event_options.webhook or event_options.mqtt or view or clips)
        if events is None and wanted:
            assert event_options is not None
            extra = ([view.add_change] if view else []) + list(listeners or [])
            before: list[Callable[[dict], None]] | None = [clips.on_event] if clips else None
            events = made_events = Events(event_options, names[0], model.metadata.model, extra=extra, before=before)
        elif events is not None and clips is not None:
            events.before.append(clips.on_event)  # the caller's events name their clips too
        loop = Loop(slot, sources, reopens, config, stop or threading.Event(), on_frame, view, events, service, clips)
        if teach is not None:
            loop.taps.append(teach.frame)
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
    model = slot.current
    if stats.non_finite and not stats.frames:
        raise NonFiniteScoresError(
            f"{model.path or model.metadata.model}: every frame's scores were NaN or "
            f"infinity; the model file is broken; " + stats.summary().splitlines()[0]
        )
    if stats.ended_by == "end of source" and stats.error:
        raise SourceError(stats.error + "; " + stats.summary().splitlines()[0])
    if loop.records is not None and loop.records.failed:
        raise OutputError(f"--jsonl {loop.records.final} could not be completed (see above)")
    return stats
