"""Running as a systemd service: ``Type=notify`` with a watchdog, written by hand over the socket.

systemd passes ``$NOTIFY_SOCKET`` (a Unix datagram socket; ``@`` starts an abstract name) and, with
``WatchdogSec=``, ``$WATCHDOG_USEC``. The runtime sends ``READY=1`` once the model is loaded and the
sources are open, ``STATUS=...`` (frames and cameras) every few seconds, and ``WATCHDOG=1`` at half
the interval systemd asks for, but only while frames flow: a loop that stops producing frames stops
feeding the watchdog, and systemd restarts the service. ``STOPPING=1`` is sent at the end. Without
``$NOTIFY_SOCKET`` nothing is sent and nothing is started.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable

log = logging.getLogger("edge_classify.runtime")


class Service:
    """The notify socket, and the thread that feeds the watchdog while frames flow."""

    def __init__(self, address: str, watchdog_s: float | None = None) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s = watchdog_s
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._last_frame: float | None = None
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status: Callable[[], str] = lambda: ""
        self.sent: list[str] = []  # what was sent, in order (the summary's count; tests read it)

    @classmethod
    def from_environment(cls) -> "Service | None":
        """The service systemd describes in the environment, or None when not run by systemd."""
        address = os.environ.get("NOTIFY_SOCKET")
        if not address:
            return None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        watchdog = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 else None
        if pid.isdigit() and int(pid) != os.getpid():
            watchdog = None  # the watchdog is meant for another process (a wrapper)
        return cls(address, watchdog)

    def notify(self, message: str) -> None:
        try:
            self._socket.sendto(message.encode(), self.address)
            self.sent.append(message.split("=", 1)[0])
        except OSError as exc:  # a missing socket must not stop classification
            log.debug("notify socket: %s", exc)

    def ready(self, status: Callable[[], str]) -> None:
        """The model is loaded and the sources are open: READY=1, then the watchdog thread."""
        self._status = status
        self.notify("READY=1\nSTATUS=" + (status() or "running"))
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def frame(self) -> None:
        """A frame was classified (called by the loop for every frame)."""
        self._last_frame = time.monotonic()

    def _run(self) -> None:
        interval = self.watchdog_s / 2 if self.watchdog_s else 5.0
        status_every, last_status = 5.0, time.monotonic()
        while not self._stop.wait(min(interval, status_every)):
            now = time.monotonic()
            since = now - (self._last_frame if self._last_frame is not None else self._started)
            if self.watchdog_s and since < self.watchdog_s:
                self.notify("WATCHDOG=1")
            if now - last_status >= status_every:
                self.notify("STATUS=" + self._status())
                last_status = now

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.notify("STOPPING=1")
        self._socket.close()
