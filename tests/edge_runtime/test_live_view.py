"""The live view (--serve) and label-change events, against real parts: the loop on a real video, a
real HTTP client and a real headless Chromium on the page, a real local webhook server, and a real
Mosquitto broker started here."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime import Classifier
from edge_runtime.events import Debouncer, EventOptions, Events
from edge_runtime.live import LiveConfig, run
from edge_runtime.serve import LiveView, ServeOptions, parse_bind
from edge_runtime.sources import open_source
from tests.edge_runtime.test_live import write_video
from tests.helpers import run_cli, wait_for

pytestmark = pytest.mark.dataset
REPORTS = Path(__file__).resolve().parents[2] / "reports"  # train.paths.default_reports_dir(), as the ledger


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Running:
    """The live loop in a thread on a looping video, with a live view and events."""

    def __init__(self, model: Path, video: Path, serve: ServeOptions, events: EventOptions | None = None) -> None:
        self.classifier = Classifier.open(model)
        self.view = LiveView(serve, self.classifier.metadata.model, str(video))
        self.events = Events(
            events or EventOptions(), str(video), self.classifier.metadata.model, extra=[self.view.add_change]
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.stats = None
        self._video = video
        self.thread.start()

    def _run(self) -> None:
        self.stats = run(
            self.classifier,
            open_source(str(self._video), loop=True),
            LiveConfig(headless=True, quiet=True),
            stop=self.stop,
            view=self.view,
            events=self.events,
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.view.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.events.close()
        self.view.close()
        self.classifier.close()


@pytest.fixture
def video(tmp_path):
    return write_video(tmp_path / "clip.mp4", frames=30, size=(320, 240))


@pytest.fixture
def model(tiny_runs):
    return tiny_runs / "camera_cnn" / "deploy" / "model_int8.tflite"


def _get(url: str, headers: dict | None = None, timeout: float = 10) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _read_parts(url: str, count: int) -> list[bytes]:
    """The first ``count`` JPEGs of a multipart MJPEG stream."""
    with urllib.request.urlopen(url, timeout=20) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        assert response.headers["Cache-Control"] == "no-store"
        parts: list[bytes] = []
        while len(parts) < count:
            line = response.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
                response.readline()
                parts.append(response.read(length))
        return parts


def test_every_route_serves_what_it_says_and_nothing_else(model, video, ledger):
    running = Running(model, video, ServeOptions(serve="127.0.0.1:0"))
    try:
        assert wait_for(lambda: running.view.state()["frame"] is not None)
        code, body, headers = _get(running.url("/state.json"))
        state = json.loads(body)
        assert code == 200 and headers["Cache-Control"] == "no-store"
        assert {"label", "score", "top", "unknown", "frame", "fps", "ms", "model", "source"} <= set(state)
        assert state["label"] in running.classifier.labels + ("unknown", "uncertain")
        assert state["model"] == "camera_cnn" and state["source"] == str(video)
        jpegs = _read_parts(running.url("/stream.mjpg"), 3)
        frames = [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) for jpeg in jpegs]
        assert all(frame is not None and frame.shape == (240, 320, 3) for frame in frames)
        code, page, _ = _get(running.url("/"))
        assert code == 200 and b"stream.mjpg" in page and b"EventSource" in page
        with urllib.request.urlopen(running.url("/events"), timeout=20) as response:
            assert response.headers["Content-Type"] == "text/event-stream"
            lines = [response.readline() for _ in range(6)]
        assert b"event: state\n" in lines
        for path in ("/nope", "/stream.mjpg/../etc", "/state"):
            with ledger.case("live view: routes that do not exist (404)"):
                assert _get(running.url(path))[0] == 404
    finally:
        running.close()
    assert running.stats is not None and running.stats.frames > 0


def test_the_page_carries_the_latest_answer_and_hostile_labels_stay_text(ledger):
    """The page shows the answer it was served with (no wait for the first event), and a label from
    the model file that looks like markup can end neither the page's script nor its attributes."""
    hostile = '</script><img src=x onerror=alert(1)>"&'
    view = LiveView(ServeOptions(serve="127.0.0.1:0"), "m<b>", "cam")
    try:
        view.publish(
            np.zeros((24, 32, 3), np.uint8),
            {
                "frame": 7,
                "label": hostile,
                "top": [[hostile, 0.9]],
                "unknown": False,
                "unknown_score": None,
                "fps": 1.0,
                "ms": {},
            },
        )
        code, page, _ = _get(f"http://127.0.0.1:{view.port}/")
    finally:
        view.close()
    text = page.decode()
    with ledger.case("live view: a label that looks like markup, embedded in the page"):
        assert code == 200 and text.count("</script>") == 1 and "<img src=x" not in text
        assert '<h1 id="model">m&lt;b&gt;</h1>' in text
        embedded = json.loads(text.split("const initial = ", 1)[1].split(";\n", 1)[0])
        assert embedded["label"] == hostile and embedded["frame"] == 7


def test_a_token_guards_every_route_and_viewers_are_bounded(model, video, ledger, capfd):
    running = Running(model, video, ServeOptions(serve="127.0.0.1:0", serve_token="s3cret", serve_clients=1))
    try:
        for path in ("/", "/state.json", "/stream.mjpg", "/events"):
            with ledger.case("live view: a route without its token (401)"):
                assert _get(running.url(path))[0] == 401
        assert _get(running.url("/state.json?token=wrong"))[0] == 401
        assert _get(running.url("/state.json?token=s3cret"))[0] == 200
        assert _get(running.url("/state.json"), {"Authorization": "Bearer s3cret"})[0] == 200
        # One viewer allowed: a second gets 503 while the first is connected, and a stalled first
        # viewer (never reading) does not stop inference.
        stalled = socket.create_connection(("127.0.0.1", running.view.port))
        stalled.sendall(b"GET /stream.mjpg?token=s3cret HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_for(lambda: running.view.clients == 1)
        with ledger.case("live view: more viewers than --serve-clients (503)"):
            assert _get(running.url("/stream.mjpg?token=s3cret"))[0] == 503
        assert wait_for(lambda: running.view.state()["frame"] is not None, 30)  # the loop has published
        before = running.view.state()["frame"]
        with ledger.case("live view: a stalled viewer never slows inference"):
            assert wait_for(lambda: running.view.state()["frame"] > before + 50, 30)
        stalled.close()
        assert wait_for(lambda: running.view.clients == 0, 30), "a viewer that went away is released"
        # A flood: 1,000 connections that send nothing, then half a request each; the view keeps answering.
        flood = []
        with ledger.case("live view: 1,000 idle and half-sent connections (no stack trace, still answering)"):
            for _ in range(1000):
                try:
                    flood.append(socket.create_connection(("127.0.0.1", running.view.port), timeout=5))
                except OSError:
                    break  # the listen queue is full: refused connections are what a flood should meet
            for sock in flood[::2]:
                try:
                    sock.sendall(b"GET /state.json?token=s3cret HTTP/1.1\r\n")
                except OSError:
                    pass
            for sock in flood:
                sock.close()
            assert _get(running.url("/state.json?token=s3cret"), timeout=30)[0] == 200
    finally:
        running.close()
    # Any bind but loopback gets a random token unless one is given.
    view = LiveView(ServeOptions(serve="0.0.0.0:0"), "m", "s")
    try:
        assert view.token and len(view.token) >= 20 and f"?token={view.token}" in view.url
    finally:
        view.close()
    local = LiveView(ServeOptions(serve="127.0.0.1:0"), "m", "s")
    local.close()
    assert local.token is None
    assert "Traceback" not in capfd.readouterr().err
    assert parse_bind("8080") == ("127.0.0.1", 8080) and parse_bind("[::1]:9") == ("::1", 9)


def test_the_debouncer_publishes_a_change_once_frames_agree():
    debouncer = Debouncer(frames=3, min_score=0.5)
    answers = (
        [("shoes", 0.9, False)] * 2
        + [("hat", 0.9, False)]
        + [("shoes", 0.9, False)] * 3
        + [("unknown", 0.2, True)] * 3
        + [("hat", 0.3, False)] * 5
        + [("hat", 0.8, False)] * 3
    )
    published = [(i, debouncer.observe(*answer)) for i, answer in enumerate(answers)]
    changes = [(i, previous, answers[i][0]) for i, previous in published if previous is not None]
    # shoes after three in a row (the first event: no previous); unknown after three; hat only once it
    # is sure enough (0.3 < --event-min-score does not count).
    assert changes == [(5, "", "shoes"), (8, "shoes", "unknown"), (16, "unknown", "hat")]


class Receiver:
    """A real local HTTP server that records POSTed events (failing the first ``fail`` of them)."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[dict] = []
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(500)
                else:
                    receiver.events.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_label_changes_reach_a_webhook_with_retries(model, video, ledger):
    receiver = Receiver(fail=2)
    options = EventOptions(event_frames=2, webhook=receiver.url)
    running = Running(model, video, ServeOptions(serve="127.0.0.1:0"), options)
    try:
        with ledger.case("events: a webhook that fails twice, then accepts"):
            assert wait_for(lambda: len(receiver.events) >= 1, 30), "the first change arrives despite two failures"
    finally:
        running.close()
        receiver.close()
    event = receiver.events[0]
    assert set(event) == {"type", "label", "score", "previous", "time", "timestamp", "frame", "camera", "source"} | {
        "model"
    }
    assert event["type"] == "label" and event["previous"] is None and event["model"] == "camera_cnn"
    assert event["source"] == str(video) and event["time"].endswith("Z")
    # A change is a change, in order (the tiny model flips often: when the queue is full the oldest
    # events are dropped, so "previous" need not be the last one received).
    for earlier, later in zip(receiver.events, receiver.events[1:]):
        assert later["previous"] != later["label"] and later["frame"] > earlier["frame"]


def test_an_unreachable_webhook_never_stops_the_loop(model, video, tmp_path, ledger):
    port = _free_port()  # nothing listens there
    with ledger.case("events: an unreachable webhook (the run ends normally)"):
        result = run_cli(
            "-m",
            "edge_runtime",
            "--model",
            str(model),
            "--source",
            str(video),
            "--headless",
            "--webhook",
            f"http://127.0.0.1:{port}/hook",
            "--event-frames",
            "1",
            "--summary-json",
            str(tmp_path / "s.json"),
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads((tmp_path / "s.json").read_text())["frames"] == 30
    summary = json.loads((tmp_path / "s.json").read_text())["events"]["webhook"]
    assert summary["sent"] == 0 and summary["failed"] + summary["dropped"] >= 1
    assert result.stderr.count("webhook: sending failed") == 1, "a receiver that is down is warned about once"


def test_bad_serve_and_event_options_are_one_line_errors(model, video, ledger):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    cases = {
        ("--serve", f"127.0.0.1:{taken.getsockname()[1]}"): "cannot listen on",
        ("--serve", "no-such-host.invalid:8080"): "host 'no-such-host.invalid' is not known here",
        ("--serve", "http://x"): "expected [HOST:]PORT",
        ("--serve", "8080", "--serve-fps", "0"): "--serve-fps must be (0, 60]",
        ("--serve", "8080", "--serve-fps", "nan"): "--serve-fps must be (0, 60]",
        ("--webhook", "ftp://x/y"): "is not an http(s) URL",
        ("--mqtt", "http://x/y"): "mqtt://HOST[:PORT]/TOPIC",
        ("--mqtt", "mqtt://host-without-topic"): "mqtt://HOST[:PORT]/TOPIC",
        # Checked whole at start-up, before the model and the source are opened: no traceback.
        ("--mqtt", "mqtt://127.0.0.1:99999/t"): "Port out of range",
        ("--mqtt", "mqtt://h:abc/t"): "Port could not be cast",
        ("--mqtt", "mqtt://[::1/t"): "Invalid IPv6 URL",
        ("--webhook", "http://[::1/x"): "Invalid IPv6 URL",
        ("--webhook", "http://127.0.0.1:83071/x"): "Port out of range",
        ("--webhook", "http://user:secret@127.0.0.1:83071/x"): "'http://***@127.0.0.1:83071/x'",
    }
    try:
        for args, message in cases.items():
            with ledger.case("live view and events: bad --serve, --serve-fps, --webhook, --mqtt (one line, exit 2)"):
                result = run_cli(
                    "-m",
                    "edge_runtime",
                    "--model",
                    str(model),
                    "--source",
                    str(video),
                    "--headless",
                    *args,
                    timeout=120,
                )
                lines = result.stderr.strip().splitlines()
                assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr)
                assert message in lines[-1], (args, lines[-1])
                assert "secret" not in result.stderr
    finally:
        taken.close()


def test_label_changes_reach_a_real_mqtt_broker(model, video, tmp_path, ledger):
    import paho.mqtt.client as mqtt

    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    (tmp_path / "broker.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen(
        [mosquitto, "-c", str(tmp_path / "broker.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    received: list[dict] = []
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    subscriber.on_message = lambda client, userdata, message: received.append(json.loads(message.payload))
    try:
        assert wait_for(lambda: _connects(port), 20), "mosquitto did not start"
        subscriber.connect("127.0.0.1", port)
        subscriber.subscribe("edge/camera", qos=1)
        subscriber.loop_start()
        time.sleep(0.5)
        result = run_cli(
            "-m",
            "edge_runtime",
            "--model",
            str(model),
            "--source",
            str(video),
            "--headless",
            "--mqtt",
            f"mqtt://127.0.0.1:{port}/edge/camera",
            "--event-frames",
            "2",
            timeout=120,
        )
        with ledger.case("events: label changes published to a real MQTT broker"):
            assert result.returncode == 0, result.stderr
            assert wait_for(lambda: len(received) >= 1, 20)
    finally:
        subscriber.loop_stop()
        broker.terminate()
        broker.wait(10)
    assert received[0]["type"] == "label" and received[0]["model"] == "camera_cnn"


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_the_page_in_a_real_browser_shows_the_stream_and_the_answer(model, video, ledger):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is installed by .ci/run (Debian's chromium package)"
    running = Running(model, video, ServeOptions(serve="127.0.0.1:0", serve_token="t0ken"))
    try:
        assert wait_for(lambda: running.view.state()["frame"] is not None)
        browser = [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1100,620",
            "--timeout=8000",
        ]
        shown = set()

        def watch() -> None:  # what /state.json says while the browser has the page open
            while not running.stop.is_set():
                shown.add(running.view.state()["label"])
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        dom = subprocess.run(
            [*browser, "--dump-dom", running.url("/?token=t0ken")], capture_output=True, text=True, timeout=90
        ).stdout
        # The screenshot is kept where the suite's reports go: look at it.
        screenshot = REPORTS / "live_view.png"
        REPORTS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [*browser, f"--screenshot={screenshot}", running.url("/?token=t0ken")], capture_output=True, timeout=90
        )
    finally:
        running.close()
    with ledger.case("live view: the page in headless Chromium (stream shown, the answer /state.json gave)"):
        assert 'data-stream-loaded="320"' in dom, dom[:2000]
        label = dom.split('data-label="', 1)[1].split('"', 1)[0]
        assert label in shown, (label, shown)  # the page shows an answer the server gave while it was open
        assert 'class="bar"' in dom and "waiting for frames" not in dom
        assert screenshot.is_file() and screenshot.stat().st_size > 10_000
