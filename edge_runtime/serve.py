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
import logging
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_common.cli import option

from .errors import EdgeError
from .serve_http import ViewServer

log = logging.getLogger("edge_classify.runtime")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


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
            self._server = ViewServer((host, port), self)
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
