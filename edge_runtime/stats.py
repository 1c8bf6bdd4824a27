"""What a run of the live loop measured: per-stage times, counts, smoothing and the status line.

Memory is bounded however long it runs: timings keep running sums and a fixed ring of recent
values, and smoothing keeps the last N probability vectors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_common.errors import printable

STAGES = ("capture", "preprocess", "inference", "overlay", "output")


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
        return {
            "mean_ms": self.total / self.count,
            "p50_ms": float(np.percentile(recent, 50)),
            "p95_ms": float(np.percentile(recent, 95)),
            "max_ms": self.maximum,
        }


@dataclass
class LiveStats:
    frames: int = 0
    corrupt: int = 0  # frames a camera, stream or video delivered broken
    skipped: int = 0  # image files that could not be decoded (one warning line each)
    rejected: int = 0  # frames the runtime could not use (wrong dtype, empty)
    non_finite: int = 0  # frames the model answered NaN or infinity for (a broken file): no answer given
    dropped: int = 0  # live frames replaced by newer ones before inference
    reconnects: int = 0  # reconnects after which frames came again
    reconnect_attempts: int = 0
    unknown: int = 0  # frames the model's out-of-class score called none of its classes
    looked_again: int = 0  # unsure frames given a second look (edge_runtime.second_look)
    zoom_answered: int = 0  # of those, frames a zoom answered
    wall_s: float = 0.0
    ended_by: str = ""
    outputs: list[str] = field(default_factory=list)
    stages: dict[str, StageStats] = field(default_factory=lambda: {name: StageStats() for name in STAGES})
    error: str | None = None
    signal: int | None = None  # the signal (SIGINT, SIGTERM) that ended the run, if one did
    events: dict[str, dict[str, int]] = field(default_factory=dict)  # per sink: sent, dropped, failed
    engine: str = ""  # what ran the model, as the engine reported it
    swaps: int = 0  # new models taken while running (edge_runtime.swap)
    cameras: list[dict[str, Any]] = field(default_factory=list)  # each camera's own counts, by name
    clips: dict[str, Any] = field(default_factory=dict)  # event clips written, deleted, failed

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "frames": self.frames,
            "fps": self.fps,
            "wall_s": self.wall_s,
            "corrupt": self.corrupt,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "non_finite": self.non_finite,
            "dropped": self.dropped,
            "reconnects": self.reconnects,
            "reconnect_attempts": self.reconnect_attempts,
            "unknown": self.unknown,
            "looked_again": self.looked_again,
            "zoom_answered": self.zoom_answered,
            "ended_by": self.ended_by,
            "signal": self.signal,
            "events": self.events,
            "outputs": self.outputs,
            "error": self.error,
            "stages": {name: stats.summary() for name, stats in self.stages.items()},
            "swaps": self.swaps,
            "cameras": self.cameras,
            "clips": self.clips,
        }

    def summary(self) -> str:
        lines = [
            f"{self.frames} frames in {self.wall_s:.1f}s = {self.fps:.1f} FPS (ended by {self.ended_by}); "
            f"corrupt {self.corrupt}, skipped {self.skipped}, rejected {self.rejected}, "
            f"{f'non-finite {self.non_finite}, ' if self.non_finite else ''}dropped {self.dropped}, "
            f"reconnects {self.reconnects} of {self.reconnect_attempts} tried, unknown {self.unknown}"
            + (f", looked again {self.looked_again} (a zoom answered {self.zoom_answered})" * bool(self.looked_again))
        ]
        if self.engine:
            lines.append(f"  engine     {self.engine}" + (f" (models swapped in: {self.swaps})" if self.swaps else ""))
        if len(self.cameras) > 1:
            for camera in self.cameras:
                failed = f"; failed: {camera['error']}" if camera["error"] else ""
                lines.append(
                    f"  camera {camera['name']}: {camera['frames']} frames, dropped {camera['dropped']}, "
                    f"reconnects {camera['reconnects']}, unknown {camera['unknown']}{failed}"
                )
        if self.clips:
            lines.append(
                f"  clips      {self.clips['written']} written, {self.clips['deleted']} deleted (--clips-max-mb), "
                f"{self.clips['failed']} failed"
            )
        for name, stats in self.stages.items():
            s = stats.summary()
            lines.append(
                f"  {name:10s} mean {s['mean_ms']:7.3f} ms  p50 {s['p50_ms']:7.3f}  p95 "
                f"{s['p95_ms']:7.3f}  max {s['max_ms']:8.2f}"
            )
        for sink, counts in self.events.items():
            lines.append(
                f"  events   {sink}: {counts['sent']} sent, {counts['dropped']} dropped (queue full), "
                f"{counts['failed']} failed, {counts.get('unsent', 0)} unsent at exit"
            )
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

    def __call__(
        self, probabilities: np.ndarray, unknown_score: float | None = None
    ) -> tuple[np.ndarray, float | None]:
        if len(self._ring) == 1:
            return probabilities, unknown_score
        self._ring[self._count % len(self._ring), :-1] = probabilities
        self._ring[self._count % len(self._ring), -1] = 0.0 if unknown_score is None else unknown_score
        self._count += 1
        mean = self._ring[: min(self._count, len(self._ring))].mean(axis=0)
        return mean[:-1], (None if unknown_score is None else float(mean[-1]))


class StatusLine:
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
        text = f"frame {frames}: {printable(answer)} {score:.0%}" + (f", {fps:.1f} FPS" if fps else "")
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
