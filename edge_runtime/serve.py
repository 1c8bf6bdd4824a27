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
from typing import Any, Sequence

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
    stale_after: float = option(
        10.0, "/healthz answers 503 after this many seconds without a frame from any camera", bounds=(0, 86400)
    )


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


@dataclass
class _Tile:
    """One camera's newest frame, its JPEG and its state."""

    name: str
    frame: np.ndarray | None = None
    frame_seq: int = 0
    jpeg: bytes | None = None
    jpeg_seq: int = 0
    encoded_seq: int = 0
    viewers: int = 0
    state: dict[str, Any] | None = None
    last_frame_at: float | None = None  # monotonic


class LiveView:
    """The newest annotated frame and state of each camera, served to browsers while the loop runs."""

    def __init__(
        self,
        options: ServeOptions,
        model: str,
        source: str | Sequence[str],
        engine: str = "",
        stale_s: float = 10.0,
        teach: Any = None,
    ) -> None:
        assert options.serve is not None
        host, port = parse_bind(options.serve)
        # The Teach panel writes files and swaps the model: it always needs a token, on loopback too.
        open_ok = host in LOOPBACK and teach is None
        self.token = options.serve_token or (None if open_ok else secrets.token_urlsafe(18))
        self.teach = teach  # the Teach panel (edge_runtime.teach_panel), or None
        self.fps, self.max_clients = options.serve_fps, options.serve_clients
        names = [source] if isinstance(source, str) else list(source)
        self.source = ", ".join(names)
        self.model, self.engine = model, engine
        self.stale_s = stale_s  # /healthz: frames older than this on every camera are "stopped"
        self._cond = threading.Condition()
        self._tiles = {name: _Tile(name) for name in names}
        self._state_seq = 0
        self._changes: deque[tuple[int, dict[str, Any]]] = deque(maxlen=32)
        self._change_seq = 0
        self.clients = 0  # stream and event connections together, bounded
        self.closed = False
        self._feeds: list[socket.socket] = []  # event-feed connections, oldest first
        self._evicted: list[socket.socket] = []  # feeds whose slot was given to a newer client
        self.evicted = 0
        self.started = time.monotonic()
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

    @property
    def cameras(self) -> list[str]:
        return list(self._tiles)

    @property
    def viewers(self) -> int:
        """Stream connections: JPEGs are encoded only while a camera has one."""
        with self._cond:
            return sum(tile.viewers for tile in self._tiles.values())

    # -- fed by the live loop ------------------------------------------------------------------

    def publish(self, frame: np.ndarray, state: dict[str, Any], camera: str | None = None) -> None:
        """A camera's newest annotated frame and its state (cheap: no copy, no encoding here)."""
        with self._cond:
            tile = self._tiles.get(camera or "") or next(iter(self._tiles.values()))
            tile.frame, tile.frame_seq = frame, tile.frame_seq + 1
            tile.state = {**state, "model": self.model, "engine": self.engine, "source": tile.name}
            tile.last_frame_at = time.monotonic()
            self._state_seq += 1
            self._cond.notify_all()

    def set_model(self, model: str, engine: str) -> None:
        """A model was swapped in: the page's title and every later state name it."""
        with self._cond:
            self.model, self.engine = model, engine

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
        """JPEG-encode each watched camera's newest frame at most ``fps`` times a second."""
        import cv2

        last = 0.0
        while True:
            with self._cond:
                while not self.closed and not self._watched_new():
                    self._cond.wait(0.5)
                if self.closed:
                    return
                work = [(t, t.frame, t.frame_seq) for t in self._tiles.values() if self._new(t)]
            wait = 1.0 / self.fps - (time.monotonic() - last)
            if wait > 0:
                time.sleep(wait)
            last = time.monotonic()
            for tile, frame, seq in work:
                if frame is None:
                    continue
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
                with self._cond:
                    tile.encoded_seq = seq
                    if ok:
                        tile.jpeg, tile.jpeg_seq = jpeg.tobytes(), tile.jpeg_seq + 1
                        self._cond.notify_all()

    @staticmethod
    def _new(tile: _Tile) -> bool:
        return tile.viewers > 0 and tile.frame is not None and tile.frame_seq != tile.encoded_seq

    def _watched_new(self) -> bool:
        return any(self._new(tile) for tile in self._tiles.values())

    def state(self) -> dict[str, Any]:
        """The first camera's state at the top (as with one camera), and every camera's in ``cameras``."""
        with self._cond:
            states = [
                dict(t.state)
                if t.state is not None
                else {"model": self.model, "engine": self.engine, "source": t.name, "camera": t.name}
                | {"frame": None, "label": None}
                for t in self._tiles.values()
            ]
        return {**states[0], "cameras": states}

    def health(self) -> tuple[bool, str]:
        """Whether frames flow: a frame within ``stale_s`` on at least one camera (or the run just began)."""
        now = time.monotonic()
        with self._cond:
            ages = {t.name: None if t.last_frame_at is None else now - t.last_frame_at for t in self._tiles.values()}
        fresh = [name for name, age in ages.items() if age is not None and age <= self.stale_s]
        if fresh:
            return True, f"frames flowing from {len(fresh)} of {len(ages)} camera(s)"
        if all(age is None for age in ages.values()) and now - self.started <= self.stale_s:
            return True, "starting: no frame yet"
        return False, f"no frame for more than {self.stale_s:g} s"

    def next_jpeg(self, after: int, timeout: float = 1.0, camera: str | None = None) -> tuple[int, bytes | None]:
        with self._cond:
            tile = self._tiles.get(camera or "") or next(iter(self._tiles.values()))
            if tile.jpeg_seq <= after and not self.closed:
                self._cond.wait(timeout)
            return tile.jpeg_seq, tile.jpeg if tile.jpeg_seq > after else None

    def next_update(
        self, state_seen: int, change_seen: int, timeout: float = 1.0
    ) -> tuple[int, dict[str, Any] | None, list[tuple[int, dict[str, Any]]]]:
        with self._cond:
            if self._state_seq <= state_seen and self._change_seq <= change_seen and not self.closed:
                self._cond.wait(timeout)
            seq, changes = self._state_seq, [c for c in self._changes if c[0] > change_seen]
        return seq, (self.state() if seq > state_seen else None), changes

    def change_count(self) -> int:
        """How many label changes have been published so far (a new feed sends only later ones)."""
        with self._cond:
            return self._change_seq

    def admit(self, stream: bool, connection: socket.socket | None = None, camera: str | None = None) -> bool:
        """Take a long-lived slot. When every slot is taken, the oldest event feed gives its slot up:
        a client that never reads its events would otherwise hold a slot for minutes while the
        kernel's buffers fill (a browser's EventSource reconnects by itself within seconds)."""
        with self._cond:
            if self.clients >= self.max_clients and not self._evict_oldest_feed():
                return False
            self.clients += 1
            if stream:
                (self._tiles.get(camera or "") or next(iter(self._tiles.values()))).viewers += 1
            if connection is not None and not stream:
                self._feeds.append(connection)
            self._cond.notify_all()
            return True

    def leave(self, stream: bool, connection: socket.socket | None = None, camera: str | None = None) -> None:
        with self._cond:
            if connection is not None and connection in self._feeds:
                self._feeds.remove(connection)
            elif connection is not None and connection in self._evicted:
                self._evicted.remove(connection)
                return  # its slot went to the client that evicted it
            self.clients -= 1
            if stream:
                (self._tiles.get(camera or "") or next(iter(self._tiles.values()))).viewers -= 1

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
