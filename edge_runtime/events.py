"""Events on a label: a debounced change of what the camera sees, sent to a webhook or MQTT.

What a frame's answer is comes from :func:`edge_runtime.classifier.frame_answer` (a class,
``unknown`` or ``uncertain``); the debouncer publishes a change once ``frames`` consecutive frames
agree on a new answer whose score reaches ``min_score`` (``unknown`` is a state like any label and
needs no score). The first stable answer of a run is an event too (``previous`` is null).

The event, as JSON (the same for both sinks)::

    {"type": "label", "label": "shoes", "score": 0.93, "previous": "unknown",
     "time": "2026-12-03T12:00:00.123Z", "timestamp": 1796299200.123, "frame": 1234,
     "source": "camera 0", "model": "clothes_lite0"}

Each sink runs in its own thread behind a bounded queue (the oldest event is dropped when it is
full), so a slow or unreachable receiver never slows inference; a failed send is retried with
exponential backoff, then dropped and counted.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

from edge_common.cli import option

from .errors import EdgeError

log = logging.getLogger("edge_classify.runtime")


@dataclass
class EventOptions:
    """When a label change is published, and where to (flags of ``python -m edge_runtime``)."""

    event_frames: int = option(3, "publish a label change once this many consecutive frames agree",
                               bounds=(1, 1000))
    event_min_score: float = option(0.0, "publish a class only when its score reaches this (unknown needs none)",
                                    bounds=(0, 1))
    webhook: str | None = option(help="POST each label-change event as JSON to this http(s) URL", metavar="URL")
    mqtt: str | None = option(help="publish each label-change event to mqtt://HOST[:PORT]/TOPIC "
                                   "(needs the mqtt extra: paho-mqtt)", metavar="URL")


class Debouncer:
    """Turns a stream of per-frame answers into label-change events."""

    def __init__(self, frames: int = 3, min_score: float = 0.0) -> None:
        self.frames, self.min_score = frames, min_score
        self.current: str | None = None  # the published answer
        self._candidate: str | None = None
        self._streak = 0

    def observe(self, answer: str, score: float, unknown: bool) -> str | None:
        """The previous answer when this frame completes a change (``""`` for the first), else None."""
        if not unknown and score < self.min_score:
            self._candidate, self._streak = None, 0  # too unsure to count towards any change
            return None
        if answer == self._candidate:
            self._streak += 1
        else:
            self._candidate, self._streak = answer, 1
        if self._streak >= self.frames and answer != self.current:
            previous, self.current = self.current, answer
            return previous or ""
        return None


def make_event(label: str, score: float, previous: str | None, frame: int, source: str, model: str) -> dict[str, Any]:
    now = time.time()
    stamp = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"type": "label", "label": label, "score": round(float(score), 5), "previous": previous or None,
            "time": stamp, "timestamp": round(now, 3), "frame": frame, "source": source, "model": model}


class _QueuedSink:
    """A sending thread behind a bounded queue, with retries and backoff."""

    name = "sink"

    def __init__(self, capacity: int = 64, attempts: int = 5, backoff_s: tuple[float, float] = (0.5, 8.0)) -> None:
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=capacity)
        self.attempts, self.backoff_s = attempts, backoff_s
        self.sent = self.dropped = self.failed = 0
        self._warned = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"events-{self.name}", daemon=True)
        self._thread.start()

    def put(self, event: dict[str, Any]) -> None:
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:  # keep the newest: the oldest change matters least now
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            delay = self.backoff_s[0]
            for attempt in range(1, self.attempts + 1):
                try:
                    self.send(event)
                    self.sent += 1
                    break
                except Exception as exc:  # any failure of the receiver: retry, never crash the loop
                    if not self._warned:  # once: a receiver that is down would otherwise flood the log
                        self._warned = True
                        log.warning("%s: sending failed (%s); retrying with backoff, failures are counted in the "
                                    "summary", self.name, " ".join(str(exc).split())[:160])
                    if attempt == self.attempts or self._stop.is_set():
                        self.failed += 1
                        break
                    if self._stop.wait(delay):
                        self.failed += 1
                        break
                    delay = min(delay * 2, self.backoff_s[1])

    def send(self, event: dict[str, Any]) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for up to ``timeout`` seconds), then stop."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(max(0.1, deadline - time.monotonic()))


class WebhookSink(_QueuedSink):
    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0, **kwargs: Any) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise EdgeError(f"--webhook {url!r} is not an http(s) URL; pass e.g. http://host:8123/api/webhook/ID")
        self.url, self.timeout_s = url, timeout_s
        super().__init__(**kwargs)

    def send(self, event: dict[str, Any]) -> None:
        request = urllib.request.Request(self.url, data=json.dumps(event).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - the user's URL
            if response.status >= 300:
                raise urllib.error.HTTPError(self.url, response.status, "not accepted", response.headers, None)


class MqttSink(_QueuedSink):
    name = "mqtt"

    def __init__(self, url: str, **kwargs: Any) -> None:
        parts = urlsplit(url)
        topic = parts.path.lstrip("/")
        if parts.scheme != "mqtt" or not parts.hostname or not topic:
            raise EdgeError(f"--mqtt {url!r} is not mqtt://HOST[:PORT]/TOPIC; pass e.g. mqtt://127.0.0.1/edge/camera")
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise EdgeError("--mqtt needs paho-mqtt: pip install 'edge-classify[mqtt]'") from None
        self.topic = topic
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        self._client.reconnect_delay_set(1, 30)
        self._client.connect_async(parts.hostname, parts.port or 1883, keepalive=30)
        self._client.loop_start()
        super().__init__(**kwargs)

    def send(self, event: dict[str, Any]) -> None:
        if not self._client.is_connected():
            raise ConnectionError("not connected to the broker")
        info = self._client.publish(self.topic, json.dumps(event), qos=1)
        info.wait_for_publish(timeout=5.0)
        if not info.is_published():
            raise ConnectionError("the broker did not acknowledge the event")

    def close(self, timeout: float = 5.0) -> None:
        super().close(timeout)
        self._client.loop_stop()
        self._client.disconnect()


class Events:
    """The debouncer and its sinks, fed once per frame by the live loop."""

    def __init__(self, options: EventOptions, source: str, model: str,
                 extra: list[Callable[[dict[str, Any]], None]] | None = None) -> None:
        self.debouncer = Debouncer(options.event_frames, options.event_min_score)
        self.source, self.model = source, model
        self.sinks: list[_QueuedSink] = []
        if options.webhook:
            self.sinks.append(WebhookSink(options.webhook))
        if options.mqtt:
            self.sinks.append(MqttSink(options.mqtt))
        self.extra = extra or []  # in-process listeners (the live view's /events)
        self.published = 0

    def observe(self, answer: str, score: float, unknown: bool, frame: int) -> dict[str, Any] | None:
        previous = self.debouncer.observe(answer, score, unknown)
        if previous is None:
            return None
        event = make_event(answer, score, previous, frame, self.source, self.model)
        self.published += 1
        for sink in self.sinks:
            sink.put(event)
        for listener in self.extra:
            listener(event)
        return event

    def close(self) -> None:
        for sink in self.sinks:
            sink.close(timeout=2.0)

    def summary(self) -> dict[str, Any]:
        """Per sink: events sent, dropped (queue full) and failed (after every retry)."""
        return {sink.name: {"sent": sink.sent, "dropped": sink.dropped, "failed": sink.failed} for sink in self.sinks}
