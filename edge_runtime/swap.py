"""A new model while running: open it beside the old one, check it, swap it in between two frames.

A swap is asked for by SIGHUP, by a change of the model file (``--watch-model``), or by a caller
(the teach panel, an integrator's :meth:`ModelSlot.request`). The new file is opened in a thread of
its own with the running model's engine options, so inference never waits for it; it must open,
its contract must read, and one frame (the newest the loop saw, else a grey one) must run with
finite scores. Only then does the loop take it, between two frames; the old classifier is closed
after. A file that fails any check leaves the old model running, with one warning naming why.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .classifier import Classifier
from .errors import EdgeError

log = logging.getLogger("edge_classify.runtime")

Opener = Callable[[Path], Classifier]


class ModelSlot:
    """The classifier the live loop uses now, and the one being checked to replace it."""

    def __init__(self, classifier: Classifier, opener: Opener | None = None) -> None:
        self.current = classifier
        self._opener = opener
        self._lock = threading.Lock()
        self._pending: Classifier | None = None
        self._checking = False
        self._again: Path | None = None  # a request that came while another was being checked
        self.sample: np.ndarray | None = None  # the newest frame, for the check's one inference
        self.swaps = 0
        self.refused = 0
        self.last_error: str | None = None

    @property
    def path(self) -> Path | None:
        return self.current.path

    def request(self, path: str | Path | None = None, why: str = "requested") -> None:
        """Open and check ``path`` (default: the running model's file) in the background."""
        target = Path(path) if path is not None else self.current.path
        if target is None:
            log.warning("model swap (%s) ignored: the running model was not opened from a file", why)
            return
        with self._lock:
            if self._checking:  # one check at a time; the newest request runs after it
                self._again = target
                return
            self._checking = True
        threading.Thread(target=self._check, args=(target, why), name="model-swap", daemon=True).start()

    def _check(self, path: Path | None, why: str) -> None:
        try:
            while path is not None:
                self._try(path, why)
                with self._lock:
                    path, self._again = self._again, None
        finally:
            with self._lock:
                self._checking = False

    def _try(self, path: Path, why: str) -> None:
        log.info("model swap (%s): opening %s", why, path)
        try:
            candidate = self._opener(path) if self._opener is not None else Classifier.open(path)
        except EdgeError as exc:
            self._refuse(why, exc)
            return
        try:
            frame = self.sample if self.sample is not None else np.full((240, 320, 3), 127, np.uint8)
            candidate.predict(frame)  # NaN or infinity raises NonFiniteScoresError
        except EdgeError as exc:
            candidate.close()
            self._refuse(why, exc)
            return
        with self._lock:
            stale, self._pending = self._pending, candidate
        if stale is not None:
            stale.close()

    def _refuse(self, why: str, exc: EdgeError) -> None:
        self.refused += 1
        self.last_error = str(exc)
        log.warning("model swap (%s) refused, the old model keeps running: %s", why, exc)

    def take(self) -> Classifier | None:
        """Called by the loop between two frames: the new classifier if one passed its checks (now
        current, the old one closed), else None."""
        with self._lock:
            candidate, self._pending = self._pending, None
        if candidate is None:
            return None
        old, self.current = self.current, candidate
        self.swaps += 1
        self.last_error = None
        log.warning(
            "model swapped in: %s (%s), replacing %s (%s)",
            candidate.metadata.model,
            candidate.sha256[:12],
            old.metadata.model,
            old.sha256[:12],
        )
        old.close()
        return candidate

    def close(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.close()


class FileWatcher:
    """Asks for a swap when the model file changes (``--watch-model``): its size, time or inode,
    steady for ``settle_s`` (a copy still being written is not opened half-way)."""

    def __init__(self, slot: ModelSlot, path: Path, interval_s: float = 1.0, settle_s: float = 0.5) -> None:
        self.slot, self.path, self.interval_s, self.settle_s = slot, path, interval_s, settle_s
        self._stop = threading.Event()
        self._seen = self._signature()
        self._thread = threading.Thread(target=self._run, name="model-watch", daemon=True)
        self._thread.start()

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None  # being replaced: the next look sees the new file
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = self._signature()
            if now is None or now == self._seen:
                continue
            time.sleep(self.settle_s)
            if self._signature() != now:
                continue  # still changing: look again next time
            self._seen = now
            self.slot.request(self.path, "the model file changed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
