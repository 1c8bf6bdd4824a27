"""A video file served as a live IP camera: MJPEG over HTTP at the file's frame rate, looping.

Network cameras serve exactly this (``multipart/x-mixed-replace`` JPEGs), and the runtime reads it
as a live stream (newest frame first, reconnects), so the benchmark and the tests measure several
cameras, frame budgets and stalls without a camera on the machine::

    python -m benchmarks.ipcamera VIDEO [--port 8081] [--fps 30]    # then --source http://127.0.0.1:8081/

Each client gets its own pacing; frames are JPEG-encoded once when the file is loaded.
"""

from __future__ import annotations

import argparse
import http.server
import threading
import time
from pathlib import Path

BOUNDARY = "frame"


class IPCamera:
    """Serves ``video`` on 127.0.0.1 (port 0: any free one) until :meth:`close`; :meth:`stall` stops the frames."""

    def __init__(self, video: str | Path, fps: float | None = None, port: int = 0, max_frames: int = 300) -> None:
        import cv2

        cap = cv2.VideoCapture(str(video))
        self.fps = float(fps or cap.get(cv2.CAP_PROP_FPS) or 30.0)
        self.jpegs: list[bytes] = []
        while len(self.jpegs) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            self.jpegs.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
        cap.release()
        if not self.jpegs:
            raise ValueError(f"{video}: no frame could be read")
        self.stalled = threading.Event()
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the base class's name
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                started, index = time.monotonic(), 0
                try:
                    while not camera.closed:
                        if camera.stalled.is_set():  # a hung camera: the connection stays, nothing comes
                            time.sleep(0.1)
                            continue
                        jpeg = camera.jpegs[index % len(camera.jpegs)]
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg
                            + b"\r\n"
                        )
                        index += 1
                        delay = started + index / camera.fps - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.closed = False
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stall(self) -> None:
        self.stalled.set()

    def close(self) -> None:
        self.closed = True
        self.server.shutdown()
        self.server.server_close()


def build_parser() -> argparse.ArgumentParser:
    from edge_common.cli import ArgumentParser

    parser = ArgumentParser(prog="python -m benchmarks.ipcamera", description=__doc__.split("\n\n")[0])
    parser.add_argument("video", help="a video file (its first 300 frames loop)")
    parser.add_argument("--port", type=int, default=8081, help="the port on 127.0.0.1 (default: 8081)")
    parser.add_argument("--fps", type=float, default=None, help="frame rate (default: the file's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from edge_common.cli import run_command

    return run_command(build_parser(), _serve, argv, "stopped")


def _serve(args: argparse.Namespace) -> int:
    from edge_common.errors import EdgeError

    if not Path(args.video).is_file():
        raise EdgeError(f"{args.video}: no such file; pass a video file")
    try:
        camera = IPCamera(args.video, args.fps, args.port)
    except ValueError as exc:
        raise EdgeError(f"{exc}; pass a video OpenCV can read") from None
    except OSError as exc:
        raise EdgeError(f"--port {args.port}: cannot listen ({exc.strerror or exc}); choose another port") from None
    print(f"serving {args.video} at {camera.fps:g} FPS: {camera.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        camera.close()


if __name__ == "__main__":
    raise SystemExit(main())
