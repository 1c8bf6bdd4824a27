"""The live view over HTTP (``--serve``), from the standard library: watch a headless device from a browser.

Routes (every other path is 404, every other method 501):

- ``/``: a page with the annotated stream, the answer, top-k bars, the unknown state, FPS, stage
  times, the model, the engine that runs it and the source;
- ``/stream.mjpg``: the annotated frames as multipart MJPEG;
- ``/state.json``: the latest prediction and stats (``label``, ``score``, ``top``, ``unknown``,
  ``unknown_score``, ``frame``, ``fps``, ``ms``, ``model``, ``engine``, ``source``);
- ``/events``: server-sent events: ``state`` (the latest state, at most 5 a second) and ``label``
  (each debounced label change, the same JSON as the webhook and MQTT events).

Cost: JPEG encoding happens only while someone watches the stream, at most ``--serve-fps`` frames
a second, in its own thread; each viewer gets the newest JPEG, so a slow or stalled viewer only
slows itself, and one that disconnects mid-stream is no error. Security: 127.0.0.1 by default;
any other bind needs a token (``--serve-token``, else a random one printed with the URL), checked
in constant time on every route as ``?token=`` or an ``Authorization: Bearer`` header; at most
``--serve-clients`` long-lived connections (the stream and event feeds); when they are all taken, the
oldest event feed gives its slot to the newcomer (a browser's EventSource reconnects by itself), and
otherwise more get 503; a viewer or feed that stops reading is dropped by a 10 s write timeout;
nothing is cached.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edge_common.cli import option

from .errors import EdgeError
from .serve_page import PAGE

log = logging.getLogger("edge_classify.runtime")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
STATE_EVENTS_PER_S = 5.0
BOUNDARY = "edgeclassifyframe"


@dataclass
class ServeOptions:
    """The live view's flags of ``python -m edge_runtime``."""

    serve: str | None = option(
        help="serve the live view over HTTP on [HOST:]PORT (host default 127.0.0.1; any other host needs a token)",
        metavar="[HOST:]PORT",
    )
    serve_fps: float = option(
        15.0, "most frames per second the live view encodes, only while someone watches", bounds=(0, 60), open_low=True
    )
    serve_token: str | None = option(
        help="the live view's token (default: none on 127.0.0.1, a random one on other hosts, printed with the URL)"
    )
    serve_clients: int = option(8, "most simultaneous stream and event connections (more get 503)", bounds=(1, 256))


def parse_bind(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPV6]:PORT`` as (host, port).

    Raises:
        EdgeError: not a port number 0..65535.
    """
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise EdgeError(f"--serve {text!r}: expected [HOST:]PORT with a port 0..65535, e.g. 8080 or 0.0.0.0:8080")
    return host, int(port)


class LiveView:
    """The newest annotated frame and state, served to browsers while the loop runs."""

    def __init__(self, options: ServeOptions, model: str, source: str, engine: str = "") -> None:
        assert options.serve is not None
        host, port = parse_bind(options.serve)
        self.token = options.serve_token or (None if host in LOOPBACK else secrets.token_urlsafe(18))
        self.fps, self.max_clients = options.serve_fps, options.serve_clients
        self.model, self.source, self.engine = model, source, engine
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._frame_seq = 0
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self._state: dict[str, Any] = {"model": model, "engine": engine, "source": source, "frame": None, "label": None}
        self._state_seq = 0
        self._changes: deque[tuple[int, dict[str, Any]]] = deque(maxlen=32)
        self._change_seq = 0
        self.viewers = 0  # stream connections: JPEGs are encoded only while there is one
        self.clients = 0  # stream and event connections together, bounded
        self.closed = False
        self._feeds: list[socket.socket] = []  # event-feed connections, oldest first
        self._evicted: list[socket.socket] = []  # feeds whose slot was given to a newer client
        self.evicted = 0
        try:
            self._server = _Server((host, port), self)
        except socket.gaierror:
            raise EdgeError(
                f"--serve {options.serve}: host {host!r} is not known here; pass an address of this "
                "machine (127.0.0.1, 0.0.0.0 for every interface) or its name"
            ) from None
        except OSError as exc:
            hint = (
                f"{host} is not an address of this machine; pass 127.0.0.1 or 0.0.0.0"
                if exc.errno == errno.EADDRNOTAVAIL
                else "choose another port"
            )
            raise EdgeError(
                f"--serve {options.serve}: cannot listen on {host}:{port} ({exc.strerror or exc}); {hint}"
            ) from None
        address = self._server.server_address
        self.host, self.port = str(address[0]), int(address[1])
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="live-view", daemon=True),
            threading.Thread(target=self._encode, name="live-view-jpeg", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    # -- fed by the live loop ------------------------------------------------------------------

    def publish(self, frame: np.ndarray, state: dict[str, Any]) -> None:
        """The newest annotated frame and its state (cheap: no copy, no encoding here)."""
        with self._cond:
            self._frame, self._frame_seq = frame, self._frame_seq + 1
            self._state = {**state, "model": self.model, "engine": self.engine, "source": self.source}
            self._state_seq += 1
            self._cond.notify_all()

    def add_change(self, event: dict[str, Any]) -> None:
        with self._cond:
            self._change_seq += 1
            self._changes.append((self._change_seq, event))
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    # -- inside the server -----------------------------------------------------------------------

    def _encode(self) -> None:
        """JPEG-encode the newest frame at most ``fps`` times a second, only while someone watches."""
        import cv2

        encoded_seq, last = 0, 0.0
        while True:
            with self._cond:
                while not self.closed and (self.viewers == 0 or self._frame_seq == encoded_seq):
                    self._cond.wait(0.5)
                if self.closed:
                    return
                frame, encoded_seq = self._frame, self._frame_seq
            if frame is None:
                continue
            wait = 1.0 / self.fps - (time.monotonic() - last)
            if wait > 0:
                time.sleep(wait)
            last = time.monotonic()
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
            if ok:
                with self._cond:
                    self._jpeg, self._jpeg_seq = jpeg.tobytes(), self._jpeg_seq + 1
                    self._cond.notify_all()

    def state(self) -> dict[str, Any]:
        with self._cond:
            return dict(self._state)

    def next_jpeg(self, after: int, timeout: float = 1.0) -> tuple[int, bytes | None]:
        with self._cond:
            if self._jpeg_seq <= after and not self.closed:
                self._cond.wait(timeout)
            return self._jpeg_seq, self._jpeg if self._jpeg_seq > after else None

    def next_update(
        self, state_seen: int, change_seen: int, timeout: float = 1.0
    ) -> tuple[int, dict[str, Any] | None, list[tuple[int, dict[str, Any]]]]:
        with self._cond:
            if self._state_seq <= state_seen and self._change_seq <= change_seen and not self.closed:
                self._cond.wait(timeout)
            state = dict(self._state) if self._state_seq > state_seen else None
            return self._state_seq, state, [c for c in self._changes if c[0] > change_seen]

    def change_count(self) -> int:
        """How many label changes have been published so far (a new feed sends only later ones)."""
        with self._cond:
            return self._change_seq

    def admit(self, stream: bool, connection: socket.socket | None = None) -> bool:
        """Take a long-lived slot. When every slot is taken, the oldest event feed gives its slot up:
        a client that never reads its events would otherwise hold a slot for minutes while the
        kernel's buffers fill (a browser's EventSource reconnects by itself within seconds)."""
        with self._cond:
            if self.clients >= self.max_clients and not self._evict_oldest_feed():
                return False
            self.clients += 1
            self.viewers += stream
            if connection is not None and not stream:
                self._feeds.append(connection)
            self._cond.notify_all()
            return True

    def leave(self, stream: bool, connection: socket.socket | None = None) -> None:
        with self._cond:
            if connection is not None and connection in self._feeds:
                self._feeds.remove(connection)
            elif connection is not None and connection in self._evicted:
                self._evicted.remove(connection)
                return  # its slot went to the client that evicted it
            self.clients -= 1
            self.viewers -= stream

    def _evict_oldest_feed(self) -> bool:
        if not self._feeds:
            return False
        oldest = self._feeds.pop(0)
        self._evicted.append(oldest)
        self.clients -= 1
        self.evicted += 1
        try:
            oldest.shutdown(socket.SHUT_RDWR)  # its handler's next write fails, and it leaves
        except OSError:
            pass
        return True

    def authorized(self, query_token: str, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, credentials = (header or "").strip().partition(" ")
        # The scheme is case-insensitive (RFC 9110 11.1): "bearer" works as "Bearer" does.
        given = query_token or (credentials.strip() if scheme.lower() == "bearer" else "")
        return hmac.compare_digest(given.encode(), self.token.encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line, never a traceback on the device's console (a flood of connections, a reset)."""
        import sys

        log.debug("live view: request from %s failed (%s)", client_address, sys.exc_info()[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread left for it (a flood): drop this connection, keep serving
            self.shutdown_request(request)

    def __init__(self, address: tuple[str, int], view: LiveView) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.view = view  # what every request serves
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """One request to the live view; it uses only :class:`LiveView`'s public methods."""

    server_version = "edge-classify"
    timeout = 30  # a request that never finishes arriving is dropped

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("live view: " + format, *args)

    @property
    def view(self) -> LiveView:
        return self.server.view  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        parts = urlsplit(self.path)
        token = (parse_qs(parts.query).get("token") or [""])[0]
        if not self.view.authorized(token, self.headers.get("Authorization")):
            self._plain(401, "a token is needed: open the URL printed at start-up (?token=...)")
            return
        route = {
            "/": self._page,
            "/state.json": self._state,
            "/stream.mjpg": self._stream,
            "/events": self._events,
        }.get(parts.path)
        if route is None:
            self._plain(404, "not found: /, /stream.mjpg, /state.json, /events")
            return
        try:
            route()
        except (BrokenPipeError, ConnectionResetError, socket.timeout, TimeoutError):
            pass  # a viewer that went away mid-stream is no error

    def _head(self, code: int, kind: str, length: int | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _plain(self, code: int, text: str) -> None:
        body = (text + "\n").encode()
        self._head(code, "text/plain; charset=utf-8", len(body))
        self.wfile.write(body)

    def _page(self) -> None:
        # The latest state rides in the page, so it shows the answer at once, not at the first event.
        fields = {
            "MODEL": _html(self.view.model),
            "SOURCE": _html(self.view.source),
            "ENGINE": _html(self.view.engine),
            "STATE": _script_json(self.view.state()),
        }
        body = re.sub(r"\{\{(MODEL|SOURCE|ENGINE|STATE)\}\}", lambda m: fields[m.group(1)], PAGE).encode()
        self._head(200, "text/html; charset=utf-8", len(body))
        self.wfile.write(body)

    def _state(self) -> None:
        body = json.dumps(self.view.state()).encode()
        self._head(200, "application/json", len(body))
        self.wfile.write(body)

    def _stream(self) -> None:
        if not self.view.admit(stream=True):
            self._plain(503, f"busy: at most {self.view.max_clients} viewers (--serve-clients)")
            return
        try:
            self.connection.settimeout(10)  # a stalled viewer is dropped, never waited on for long
            self._head(200, f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            seen = 0
            while not self.view.closed:
                seen, jpeg = self.view.next_jpeg(seen)
                if jpeg is None:
                    continue
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    + jpeg
                    + b"\r\n"
                )
                self.wfile.flush()
        finally:
            self.view.leave(stream=True)

    def _events(self) -> None:
        if not self.view.admit(stream=False, connection=self.connection):
            self._plain(503, f"busy: at most {self.view.max_clients} viewers (--serve-clients)")
            return
        try:
            _small_send_buffer(self.connection)
            self.connection.settimeout(10)
            self._head(200, "text/event-stream")
            self.wfile.write(b"retry: 2000\n\n")
            state_seen, change_seen, last_state, last_write = 0, 0, 0.0, time.monotonic()
            change_seen = self.view.change_count()  # only changes from now on
            while not self.view.closed:
                state_seq, state, changes = self.view.next_update(state_seen, change_seen)
                out = b""
                for seq, event in changes:
                    out += b"event: label\ndata: " + json.dumps(event).encode() + b"\n\n"
                    change_seen = seq
                now = time.monotonic()
                if state is not None and now - last_state >= 1.0 / STATE_EVENTS_PER_S:
                    out += b"event: state\ndata: " + json.dumps(state).encode() + b"\n\n"
                    state_seen, last_state = state_seq, now
                elif state is None and now - last_write > 15:
                    out = b": keep-alive\n\n"
                if out:
                    self.wfile.write(out)
                    self.wfile.flush()
                    last_write = now
                elif state is not None:
                    time.sleep(min(0.05, 1.0 / STATE_EVENTS_PER_S))
        except OSError:
            pass  # evicted for a newer client, or gone
        finally:
            self.view.leave(stream=False, connection=self.connection)


def _small_send_buffer(connection: socket.socket) -> None:
    """A small kernel send buffer, so a client that stops reading blocks the writer (and is dropped
    by the 10 s write timeout) after kilobytes, not after the megabytes autotuning would allow."""
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    except OSError:
        pass


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _script_json(value: Any) -> str:
    """JSON to place inside a <script>: no "<", ">" or "&" that could end the script early (labels come
    from the model file)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
