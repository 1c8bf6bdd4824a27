"""The live view's HTTP side: the server and one request handler that serves the page, the MJPEG
stream, ``/state.json`` and the ``/events`` feed from :class:`edge_runtime.serve.LiveView`'s public
methods (see that module for the routes and the security rules)."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .serve_page import PAGE, TEACH_PANEL

if TYPE_CHECKING:
    from .serve import LiveView

log = logging.getLogger("edge_classify.runtime")
STATE_EVENTS_PER_S = 5.0
BOUNDARY = "edgeclassifyframe"


class ViewServer(ThreadingHTTPServer):
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
    camera: str | None = None  # ?camera=NAME of this request
    timeout = 30  # a request that never finishes arriving is dropped

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("live view: " + format, *args)

    @property
    def view(self) -> LiveView:
        return self.server.view  # type: ignore[attr-defined]

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        """The Teach panel's JSON API: POST only, the token in a header, JSON bodies (see teach_api)."""
        from .teach_api import handle

        try:
            code, body = handle(self.view, urlsplit(self.path).path, self.headers, self.rfile)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, TimeoutError):
            return
        data = json.dumps(body).encode()
        self._head(code, "application/json", len(data))
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        token = (query.get("token") or [""])[0]
        self.camera = query["camera"][0] if query.get("camera") else None
        if parts.path == "/healthz":  # for supervisors and load balancers: no token, no state in it
            self._health()
            return
        if parts.path.startswith("/api/"):  # actions are never triggered by a GET (a link, an <img>)
            self.send_response(405)
            self.send_header("Allow", "POST")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
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
            self._plain(404, "not found: /, /stream.mjpg[?camera=NAME], /state.json, /events, /healthz")
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
            "TEACH": TEACH_PANEL if self.view.teach is not None else "",
        }
        body = re.sub(r"\{\{(MODEL|SOURCE|ENGINE|STATE|TEACH)\}\}", lambda m: fields[m.group(1)], PAGE).encode()
        self._head(200, "text/html; charset=utf-8", len(body))
        self.wfile.write(body)

    def _health(self) -> None:
        healthy, why = self.view.health()
        self._plain(200 if healthy else 503, ("ok: " if healthy else "stopped: ") + why)

    def _state(self) -> None:
        body = json.dumps(self.view.state()).encode()
        self._head(200, "application/json", len(body))
        self.wfile.write(body)

    def _stream(self) -> None:
        if self.camera is not None and self.camera not in self.view.cameras:
            self._plain(404, "no such camera; /state.json lists them")
            return
        if not self.view.admit(stream=True, camera=self.camera):
            self._plain(503, f"busy: at most {self.view.max_clients} viewers (--serve-clients)")
            return
        try:
            self.connection.settimeout(10)  # a stalled viewer is dropped, never waited on for long
            self._head(200, f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            seen = 0
            while not self.view.closed:
                seen, jpeg = self.view.next_jpeg(seen, camera=self.camera)
                if jpeg is None:
                    continue
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    + jpeg
                    + b"\r\n"
                )
                self.wfile.flush()
        finally:
            self.view.leave(stream=True, camera=self.camera)

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
                for seq, event in changes:  # label changes, and the Teach panel's progress
                    kind = str(event["type"]).encode() if event.get("type") in ("teach", "model") else b"label"
                    out += b"event: " + kind + b"\ndata: " + json.dumps(event).encode() + b"\n\n"
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
