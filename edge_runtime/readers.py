"""Reading threads between a frame source and the live loop.

Live sources (cameras, streams) are read by a grabber thread that keeps only the newest frame, so
inference never works on a backlog, and reconnects when they stop; files are read by a thread with
a small ordered queue, so every frame is processed in order while decoding overlaps inference.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .sources import FrameSource

log = logging.getLogger("edge_classify.runtime")


@dataclass
class FrameEvent:
    """One item from a reader: a frame (or None for a corrupt frame) and when it was read."""

    index: int
    frame: np.ndarray | None
    read_ms: float
    timestamp: float
    file: str | None = None  # image sources: the file this frame came from
    tensor: Any = None  # what ``prepare`` made of the frame in the reading thread (None: not prepared)
    prepare_ms: float = 0.0


def _prepared(prepare: Callable[[np.ndarray], Any] | None, frame: np.ndarray | None) -> tuple[Any, float]:
    """The model input for ``frame``, made off the main loop; None when it cannot be (the loop then
    makes it itself and reports why)."""
    if prepare is None or frame is None:
        return None, 0.0
    started = time.perf_counter()
    try:
        return prepare(frame), (time.perf_counter() - started) * 1e3
    except Exception:  # a frame the model cannot take: the loop's own attempt names the problem
        return None, 0.0


class OrderedReader:
    """Reads a file source in a thread into a small queue: every frame, in order, decoding ahead."""

    def __init__(
        self,
        source: FrameSource,
        depth: int = 4,
        prepare: Callable[[np.ndarray], Any] | None = None,
        wake: threading.Event | None = None,
    ) -> None:
        self.source = source
        self._wake = wake  # set whenever a frame (or the end) is ready: the loop serving several cameras waits on it
        self._prepare = prepare  # preprocessing, run here so it overlaps inference on another core
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
                    self.error = (
                        f"{self.source.name}: reading failed after {index} frames ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:160]})"
                    )
                    break
                if not ok:
                    self.error = self.error or self.source.error
                    break
                read_ms = (time.perf_counter() - started) * 1e3
                tensor, prepare_ms = _prepared(self._prepare, frame)
                event = FrameEvent(index, frame, read_ms, time.time(), self.source.current, tensor, prepare_ms)
                index += 1
                while not self._stop.is_set():
                    try:
                        self._queue.put(event, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._wake is not None:
                    self._wake.set()
        finally:
            self._put_end()
            if self._wake is not None:
                self._wake.set()

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

    def __init__(
        self,
        source: FrameSource,
        reopen: Callable[[], FrameSource] | None = None,
        *,
        give_up_s: float = 30.0,
        backoff_s: tuple[float, float] = (0.25, 8.0),
        prepare: Callable[[np.ndarray], Any] | None = None,
        wake: threading.Event | None = None,
    ) -> None:
        self.source = source
        self._prepare = prepare
        self._wake = wake
        self._reopen = reopen
        self._give_up_s = give_up_s
        self._backoff = backoff_s
        self._cond = threading.Condition()
        self._latest: FrameEvent | None = None
        self._ended = False
        self.error: str | None = None
        self.reconnects = 0  # reconnects that succeeded
        self.reconnect_attempts = 0
        self.dropped = 0  # frames read but replaced before the loop took them
        self.corrupt = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-grabber", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        index = 0
        last_frame = time.monotonic()
        delay = self._backoff[0]
        reopened = False
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
                    if reopened:
                        self.reconnects, reopened = self.reconnects + 1, False
                    if frame is None:
                        self.corrupt += 1
                        continue
                    read_ms = (time.perf_counter() - started) * 1e3
                    # A camera delivers faster than a slow model infers: the newest frame is prepared
                    # only when the loop has taken the last one, so no work goes to frames it drops.
                    with self._cond:
                        waiting = self._latest is None
                    tensor, prepare_ms = _prepared(self._prepare if waiting else None, frame)
                    event = FrameEvent(index, frame, read_ms, time.time(), None, tensor, prepare_ms)
                    index += 1
                    with self._cond:
                        if self._latest is not None:
                            self.dropped += 1
                        self._latest = event
                        self._cond.notify_all()
                    if self._wake is not None:
                        self._wake.set()
                    continue
                waited = time.monotonic() - last_frame
                if waited >= self._give_up_s:
                    self.error = f"{self.source.name}: no frames for {waited:.0f}s; gave up (see --reconnect-timeout)"
                    return
                log.warning("%s: no frame; reconnecting in %.2fs", self.source.name, delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self._backoff[1])
                self.reconnect_attempts += 1
                try:
                    if self._reopen is not None:
                        self.source.close()
                        self.source = self._reopen()
                    elif hasattr(self.source, "reopen"):
                        self.source.reopen()
                    reopened = True  # counted as a reconnect once a frame arrives
                    log.info("%s: reopened", self.source.name)
                except Exception as exc:
                    log.warning("%s: reconnect failed (%s)", self.source.name, " ".join(str(exc).split())[:160])
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            if self._wake is not None:
                self._wake.set()

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
