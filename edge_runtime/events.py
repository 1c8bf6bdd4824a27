"""Events on a label: a debounced change of what the camera sees, sent to a webhook or MQTT.

What a frame's answer is comes from :func:`edge_runtime.classifier.frame_answer` (a class,
``unknown`` or ``uncertain``); the debouncer publishes a change once ``frames`` consecutive frames
agree on a new answer whose score reaches ``min_score`` (``unknown`` is a state like any label and
needs no score). The first stable answer of a run is an event too (``previous`` is null).

The event, as JSON (the same for both sinks)::

    {"type": "label", "label": "shoes", "score": 0.93, "previous": "unknown",
     "time": "2026-12-03T12:00:00.123Z", "timestamp": 1796299200.123, "frame": 1234,
     "camera": "door", "source": "door", "model": "clothes_lite0"}

With several cameras each has its own debouncer; ``camera`` (and ``source``, its older name) says
which camera saw the change. Home Assistant's discovery (``--ha-discovery``) publishes beside it.

Each sink runs in its own thread behind a bounded queue (the oldest event is dropped when it is
full), so a slow or unreachable receiver never slows inference; a failed send is retried with
exponential backoff, then dropped and counted.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from edge_common.cli import option
from edge_common.errors import redact

from .errors import EdgeError

log = logging.getLogger("edge_classify.runtime")


@dataclass
class EventOptions:
    """When a label change is published, and where to (flags of ``python -m edge_runtime``)."""

    event_frames: int = option(3, "publish a label change once this many consecutive frames agree", bounds=(1, 1000))
    event_min_score: float = option(
        0.0, "publish a class only when its score reaches this (unknown needs none)", bounds=(0, 1)
    )
    webhook: str | None = option(help="POST each label-change event as JSON to this http(s) URL", metavar="URL")
    mqtt: str | None = option(
        help="publish each label-change event to mqtt://HOST[:PORT]/TOPIC (needs the mqtt extra: paho-mqtt)",
        metavar="URL",
    )


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
    return {
        "type": "label",
        "label": label,
        "score": round(float(score), 5),
        "previous": previous or None,
        "time": stamp,
        "timestamp": round(now, 3),
        "frame": frame,
        "camera": source,
        "source": source,
        "model": model,
    }


class _QueuedSink:
    """A sending thread behind a bounded queue, with retries and backoff."""

    name = "sink"

    def __init__(self, capacity: int = 64, attempts: int = 5, backoff_s: tuple[float, float] = (0.5, 8.0)) -> None:
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=capacity)
        self.attempts, self.backoff_s = attempts, backoff_s
        self.accepted = self.sent = self.dropped = self.failed = 0
        self._warned = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"events-{self.name}", daemon=True)
        self._thread.start()

    def put(self, event: dict[str, Any]) -> None:
        self.accepted += 1
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
                        log.warning(
                            "%s: sending failed (%s); retrying with backoff, failures are counted in the summary",
                            self.name,
                            " ".join(str(exc).split())[:160],
                        )
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


WEBHOOK_EXAMPLE = "http://host:8123/api/webhook/ID"
MQTT_EXAMPLE = "mqtt://[USER:PASSWORD@]127.0.0.1[:1883]/edge/camera"


def parse_event_url(url: str, flag: str, schemes: tuple[str, ...], example: str) -> tuple[str, str, int | None, str]:
    """``(scheme, host, port or None, path)`` of a sink's URL, checked whole at start-up.

    Raises:
        EdgeError: a scheme not in ``schemes``, no host, a malformed address or a port outside 1..65535.
    """
    shown = redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "[::1/x", a port of letters or over 65535
        raise EdgeError(f"{flag} {shown!r}: {exc}; pass e.g. {example}") from None
    if parts.scheme not in schemes or not parts.hostname:
        form = "an http(s) URL" if "http" in schemes else "mqtt://HOST[:PORT]/TOPIC"
        raise EdgeError(f"{flag} {shown!r} is not {form}; pass e.g. {example}")
    if port is not None and not 1 <= port <= 65535:
        raise EdgeError(f"{flag} {shown!r}: port {port} is not 1..65535; pass e.g. {example}")
    return parts.scheme, parts.hostname, port, parts.path


def check_options(options: EventOptions) -> None:
    """Every sink URL checked before the model or the source is opened (one line, exit 2)."""
    if options.webhook:
        parse_event_url(options.webhook, "--webhook", ("http", "https"), WEBHOOK_EXAMPLE)
    if options.mqtt:
        _mqtt_address(options.mqtt)


def _mqtt_address(url: str) -> tuple[str, int, str]:
    """(host, port, topic) of an --mqtt URL."""
    _, host, port, path = parse_event_url(url, "--mqtt", ("mqtt",), MQTT_EXAMPLE)
    topic = path.lstrip("/")
    if not topic:
        raise EdgeError(f"--mqtt {redact(url)!r} names no topic (mqtt://HOST[:PORT]/TOPIC); pass e.g. {MQTT_EXAMPLE}")
    return host, port or 1883, topic


class WebhookSink(_QueuedSink):
    """POSTs each event; a request that is not answered whole within ``timeout_s`` (a receiver that
    never replies, or trickles its reply) is cut off and retried like any failure."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 10.0, **kwargs: Any) -> None:
        scheme, host, port, _ = parse_event_url(url, "--webhook", ("http", "https"), WEBHOOK_EXAMPLE)
        parts = urlsplit(url)
        self.url, self.timeout_s = url, timeout_s
        self._scheme, self._host, self._port = scheme, host, port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/json"}
        if parts.username is not None:  # http://user:password@host/... as basic authentication
            import base64

            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        super().__init__(**kwargs)

    def send(self, event: dict[str, Any]) -> None:
        import http.client

        body = json.dumps(event).encode()
        kind = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        connection = kind(self._host, self._port, timeout=self.timeout_s)
        # The socket timeout bounds each read; this bounds the whole request, a trickled reply included.
        deadline = threading.Timer(self.timeout_s, _cut, (connection,))
        deadline.daemon = True
        deadline.start()
        try:
            connection.request("POST", self._target, body=body, headers=self._headers)
            response = connection.getresponse()
            response.read(65536)
            if response.status >= 300:
                raise ConnectionError(f"the receiver answered HTTP {response.status}")
        except (OSError, http.client.HTTPException) as exc:
            if not deadline.is_alive():
                raise TimeoutError(f"no complete reply within {self.timeout_s:g} s") from None
            raise ConnectionError(" ".join(str(exc).split()) or type(exc).__name__) from None
        finally:
            deadline.cancel()
            connection.close()


def _cut(connection: Any) -> None:
    """Shut a request's socket at its deadline: the read blocked on it fails at once."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class MqttSink(_QueuedSink):
    name = "mqtt"

    def __init__(self, url: str, **kwargs: Any) -> None:
        host, port, topic = _mqtt_address(url)
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise EdgeError("--mqtt needs paho-mqtt: pip install 'edge-classify[mqtt]'") from None
        parts = urlsplit(url)
        self.topic = topic
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        if parts.username is not None:
            self._client.username_pw_set(unquote(parts.username), unquote(parts.password) if parts.password else None)
        self._client.reconnect_delay_set(1, 30)
        self._client.connect_async(host, port, keepalive=30)
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
    """The debouncers (one per camera) and the shared sinks, fed once per frame by the live loop."""

    def __init__(
        self,
        options: EventOptions,
        source: str,
        model: str,
        extra: list[Callable[[dict[str, Any]], None]] | None = None,
        sinks: list[_QueuedSink] | None = None,
        before: list[Callable[[dict[str, Any]], None]] | None = None,
    ) -> None:
        self.options = options
        self.debouncers: dict[str, Debouncer] = {}
        self.source, self.model = source, model
        self.sinks: list[_QueuedSink] = list(sinks or [])
        if options.webhook:
            self.sinks.append(WebhookSink(options.webhook))
        if options.mqtt and not any(isinstance(sink, MqttSink) for sink in self.sinks):
            self.sinks.append(MqttSink(options.mqtt))
        self.extra = extra or []  # in-process listeners (the live view's /events, Home Assistant)
        self.before = before or []  # run before the sinks see an event (clips add its "clip")
        self.published = 0

    @property
    def debouncer(self) -> Debouncer:
        """The first camera's debouncer (one-camera callers)."""
        return self.debouncer_for(self.source)

    def debouncer_for(self, camera: str) -> Debouncer:
        if camera not in self.debouncers:
            self.debouncers[camera] = Debouncer(self.options.event_frames, self.options.event_min_score)
        return self.debouncers[camera]

    def observe(
        self, answer: str, score: float, unknown: bool, frame: int, camera: str | None = None
    ) -> dict[str, Any] | None:
        name = camera or self.source
        previous = self.debouncer_for(name).observe(answer, score, unknown)
        if previous is None:
            return None
        event = make_event(answer, score, previous, frame, name, self.model)
        for hook in self.before:
            hook(event)
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
        """Per sink: events sent, dropped (queue full), failed (after every retry) and unsent (still
        queued or in flight when the run ended); the four add up to every event published."""
        return {
            sink.name: {
                "sent": sink.sent,
                "dropped": sink.dropped,
                "failed": sink.failed,
                "unsent": max(0, sink.accepted - sink.sent - sink.dropped - sink.failed),
            }
            for sink in self.sinks
        }
