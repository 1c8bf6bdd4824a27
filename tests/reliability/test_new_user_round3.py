"""What a new user hit, round 3: a shipped file overwritten, passwords shown, pixel limits walked
around, stalled event feeds, a Sequential model, broken event URLs, FIFOs as models, a trickling
webhook, EXIF orientation, NaN models, and the small words. Real files, real processes, real sockets."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime import Classifier
from edge_runtime.contract import METADATA_KEY, InputSpec, ModelMetadata
from edge_runtime.events import EventOptions, Events, WebhookSink, check_options
from edge_runtime.images import image_size, images_in, read_image
from edge_runtime.metadata import embed_tflite_entries, read_tflite_entries
from edge_runtime.serve import LiveView, ServeOptions
from edge_runtime.sources import open_source
from tests.helpers import ROOT, run_cli

EXTRACTOR = ROOT / "runs/imagenet_lite0/features/features_int8.tflite"
MODEL = ROOT / "runs/clothes_lite0/deploy/model_int8.tflite"
PHOTOS = ROOT / "data/clothing-small"
SECRET = "s3cr3t-pw"


def _examples(root: Path, classes: list[str], count: int, split: str = "train") -> Path:
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True)
        for path in sorted((PHOTOS / split / name).iterdir())[:count]:
            (folder / path.name).symlink_to(path)
    return root


def _teach(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_cli("-m", "edge_runtime", "teach", "--quiet", *map(str, args), cwd=cwd, env=env, timeout=300)


def _one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and lines and lines[-1].startswith("error: "), result.stderr[-2000:]
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])


# -- 1. the shipped extractor is never an output ------------------------------------------------


def test_teach_refuses_to_overwrite_the_extractor_it_uses_given_or_default_linked_or_not(tmp_path, ledger):
    examples = _examples(tmp_path / "ex", ["hat", "shoes"], 5)
    work = tmp_path / "checkout"
    default = work / "runs/imagenet_lite0/features/features_int8.tflite"
    default.parent.mkdir(parents=True)
    shutil.copyfile(EXTRACTOR, default)
    before = default.read_bytes()
    (work / "link.tflite").symlink_to(default)
    os.link(default, work / "hard.tflite")
    outputs = [
        "runs/imagenet_lite0/features/features_int8.tflite",
        "link.tflite",
        "hard.tflite",
        "runs/imagenet_lite0/features/../features/features_int8.tflite",
    ]
    runs = {"EDGE_RUNS_DIR": str(work / "runs")}  # the default extractor is the runs folder's, never the cwd's
    for output in outputs:
        with ledger.case("new user round 3: teach --output is the extractor in use (default, link, hard link)"):
            result = _teach("--examples", examples, "--output", output, "--overwrite", cwd=work, env=runs)
            _one_line_error(result, "is the --extractor input")
            assert default.read_bytes() == before
    # The same file named explicitly is refused too, and a real output next to it is written.
    result = _teach("--extractor", default, "--examples", examples, "--output", work / "mine.tflite", cwd=work)
    assert result.returncode == 0, result.stderr
    assert default.read_bytes() == before


# -- 2. passwords never shown or sent -----------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - the base class's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def _serve(handler) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _clip(path: Path, frames: int = 60) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    photos = sorted((PHOTOS / "test" / "dress").iterdir())[:2] + sorted((PHOTOS / "test" / "shoes").iterdir())[:2]
    for i in range(frames):
        writer.write(cv2.resize(cv2.imread(str(photos[(i // 15) % len(photos)])), (320, 240)))
    writer.release()
    return path


def test_camera_passwords_appear_in_no_output_page_event_or_error(tmp_path, ledger):
    _clip(tmp_path / "clip.avi")
    files = _serve(functools.partial(_Quiet, directory=str(tmp_path)))
    _Receiver.received = []
    hook = _serve(_Receiver)
    try:
        url = f"http://viewer:{SECRET}@127.0.0.1:{files.server_address[1]}/clip.avi"
        with ledger.case("new user round 3: a stream URL's password in stderr, JSONL, summary, events"):
            result = run_cli(
                "-m",
                "edge_runtime",
                "--model",
                str(MODEL),
                "--source",
                url,
                "--headless",
                "--jsonl",
                str(tmp_path / "a.jsonl"),
                "--summary-json",
                str(tmp_path / "s.json"),
                "--webhook",
                f"http://hook:{SECRET}@127.0.0.1:{hook.server_address[1]}/e",
                "--event-frames",
                "2",
                "--verbose",
                timeout=180,
            )
            assert result.returncode == 0, result.stderr[-2000:]
            assert _Receiver.received, "no event reached the webhook"
            for text in (
                result.stdout,
                result.stderr,
                (tmp_path / "a.jsonl").read_text(),
                (tmp_path / "s.json").read_text(),
                json.dumps(_Receiver.received),
            ):
                assert SECRET not in text
            assert {event["source"] for event in _Receiver.received} == {
                f"http://***@127.0.0.1:{files.server_address[1]}/clip.avi"
            }
        with ledger.case("new user round 3: a stream URL's password on the live page and /state.json"):
            source = open_source(url)
            view = LiveView(ServeOptions(serve="127.0.0.1:0"), "clothes_lite0", source.name)
            try:
                view.publish(np.zeros((48, 64, 3), np.uint8), {"label": "dress"})
                for route in ("/", "/state.json"):
                    with socket.create_connection(("127.0.0.1", view.port), timeout=10) as sock:
                        sock.sendall(f"GET {route} HTTP/1.0\r\n\r\n".encode())
                        page = b"".join(iter(lambda s=sock: s.recv(65536), b"")).decode()
                    assert "200 OK" in page and SECRET not in page and "***@127.0.0.1" in page
            finally:
                view.close()
                source.close()
        for bad in (
            f"rtsp://cam:{SECRET}@127.0.0.1:1/stream",
            f"http://cam:{SECRET}@127.0.0.1:1/x.mjpg",
            f"rtspsrc location=rtsp://cam:{SECRET}@127.0.0.1:1/s user-pw={SECRET} ! fakesink",
        ):
            with ledger.case("new user round 3: a stream URL's password in the error of a source that fails"):
                result = run_cli(
                    "-m",
                    "edge_runtime",
                    "--model",
                    str(MODEL),
                    "--source",
                    bad,
                    "--headless",
                    "--reconnect-timeout",
                    "1",
                    timeout=120,
                )
                assert result.returncode == 2 and SECRET not in result.stderr + result.stdout, result.stderr
    finally:
        files.shutdown()
        hook.shutdown()


# -- 3. the pixel limit holds for every format and every command --------------------------------


def _photo(size: tuple[int, int] = (1500, 2000)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, size + (3,), np.uint8)


def _jpeg_with_leading_comment(image: np.ndarray) -> bytes:
    """A JPEG whose size header sits after 128 KB of comment segments."""
    data = cv2.imencode(".jpg", image)[1].tobytes()
    comment = b"\xff\xfe" + struct.pack(">H", 65535) + b"c" * 65533
    return data[:2] + comment + comment + data[2:]


def _tiff_claiming(width: int, height: int) -> bytes:
    """A deflate TIFF whose directory claims ``width`` x ``height`` over a few bytes of zeros."""
    strip = zlib.compress(b"\0" * 4096)
    entries = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 8),
        (262, 3, 1),
        (273, 4, 0),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, len(strip)),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    strip_at = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = strip_at if tag == 273 else value
        ifd += struct.pack("<HHI", tag, kind, 1) + (
            struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + strip


def _png_claiming(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(header))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + b"\0" * 64
    )


def test_the_true_pixel_count_is_read_for_every_format_before_decoding(tmp_path, ledger):
    image = _photo()
    cases = {
        "deflate.tiff": cv2.imencode(".tiff", image, [cv2.IMWRITE_TIFF_COMPRESSION, 8])[1].tobytes(),
        "comment.jpg": _jpeg_with_leading_comment(image),
        "plain.png": cv2.imencode(".png", image)[1].tobytes(),
        "plain.webp": cv2.imencode(".webp", image)[1].tobytes(),
        "plain.bmp": cv2.imencode(".bmp", image)[1].tobytes(),
    }
    for name, data in cases.items():
        with ledger.case("new user round 3: pixel guard by the file's true size (TIFF, JPEG after 128 KB, ...)"):
            path = tmp_path / name
            path.write_bytes(data)
            assert image_size(data) == (2000, 1500), name
            frame, why, kind = read_image(path, max_pixels=1_000_000)
            assert frame is None and kind == "too many pixels" and "2000x1500" in why, (name, why)
            frame, why, _ = read_image(path)  # within the default limit it decodes, whole
            assert frame is not None and frame.shape == (1500, 2000, 3), (name, why)
    bombs = {"bomb.tiff": _tiff_claiming(12000, 12000), "bomb.png": _png_claiming(30000, 30000)}
    for name, data in bombs.items():
        with ledger.case("new user round 3: decompression bombs refused before a pixel is allocated"):
            (tmp_path / name).write_bytes(data)
            frame, why, kind = read_image(tmp_path / name, max_pixels=1_000_000)
            assert frame is None and kind == "too many pixels", why
    with ledger.case("new user round 3: a format whose size cannot be read is refused, not decoded blind"):
        (tmp_path / "odd.png").write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n" + b"\0" * 99)
        frame, why, kind = read_image(tmp_path / "odd.png")
        assert frame is None and kind == "unknown size" and "convert it to PNG or JPEG" in why


def test_training_teaching_and_the_runtime_share_the_pixel_guard(tmp_path, ledger):
    from train.datasets.folder import open_folder

    root = tmp_path / "set"
    for name in ("dress", "shoes"):
        (root / name).mkdir(parents=True)
        for path in sorted((PHOTOS / "train" / name).iterdir())[:5]:
            (root / name / path.name).symlink_to(path)
    (root / "dress" / "bomb.png").write_bytes(_png_claiming(30000, 30000))
    (root / "shoes" / "bomb.tiff").write_bytes(_tiff_claiming(12000, 12000))
    with ledger.case("new user round 3: train --folder refuses a PNG bomb (it trained on it before)"):
        dataset = open_folder(root)
        spec = InputSpec(32, 32, 3, "RGB")
        images = sum(len(batch[1]) for batch in dataset.iter_batches(spec, batch_size=4))
        assert images == 10 and dataset.skipped == {"too many pixels": 2}
    with ledger.case("new user round 3: teach warns about and counts the photos it skips"):
        result = _teach("--extractor", EXTRACTOR, "--examples", root, "--output", tmp_path / "t.tflite")
        assert result.returncode == 0, result.stderr
        assert "bomb.png: 30000x30000 is 900 MP" in result.stderr and "skipped 2 of 12 photos" in result.stderr
    with ledger.case("new user round 3: the runtime skips the bombs in a folder source"):
        result = run_cli(
            "-m",
            "edge_runtime",
            "--model",
            str(MODEL),
            "--source",
            str(root),
            "--headless",
            "--summary-json",
            str(tmp_path / "s.json"),
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads((tmp_path / "s.json").read_text())
        assert summary["frames"] == 10 and summary["skipped"] == 2


# -- 4. event feeds that never read cannot lock the page out ------------------------------------


def test_event_feeds_that_never_read_give_their_slots_to_new_viewers(ledger):
    view = LiveView(ServeOptions(serve="127.0.0.1:0", serve_clients=8), "m", "camera 0")
    stop = threading.Event()

    def feed() -> None:  # the loop, publishing a state every 20 ms
        while not stop.is_set():
            view.publish(np.zeros((48, 64, 3), np.uint8), {"label": "dress", "top": [["dress", 0.9]] * 3})
            time.sleep(0.02)

    threading.Thread(target=feed, daemon=True).start()
    stalled = []
    try:
        with ledger.case("new user round 3: eight /events clients that never read, then a real viewer"):
            for _ in range(8):
                sock = socket.create_connection(("127.0.0.1", view.port), timeout=10)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
                stalled.append(sock)
            deadline = time.monotonic() + 10
            while view.clients < 8 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert view.clients == 8
            for _ in range(3):  # one after another, each gets its feed
                with socket.create_connection(("127.0.0.1", view.port), timeout=10) as sock:
                    sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
                    head = sock.recv(4096)
                    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head[:80]
            assert view.evicted >= 1 and view.clients <= 8  # a closed viewer frees its own slot
    finally:
        stop.set()
        for sock in stalled:
            sock.close()
        view.close()


# -- 5. a Sequential model converts -------------------------------------------------------------


def test_a_sequential_keras_model_converts(tmp_path, ledger):
    script = (
        "import keras\n"
        "m = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255.0),\n"
        "    keras.layers.Conv2D(4, 3, activation='relu'), keras.layers.GlobalAveragePooling2D(),\n"
        "    keras.layers.Dense(3, activation='softmax')])\n"
        f"m.save({str(tmp_path / 'mine.keras')!r})\n"
    )
    result = run_cli("-c", script, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    with ledger.case("new user round 3: python -m convert on a Sequential model"):
        result = run_cli("-m", "convert", str(tmp_path / "mine.keras"), timeout=600)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
        with Classifier.open(tmp_path / "mine_deploy" / "model_float32.tflite") as classifier:
            assert classifier.labels == ("a", "b", "c")
            assert classifier.predict(np.zeros((28, 28), np.uint8)).probabilities.shape == (3,)


# -- 6. broken event URLs: one line at start-up -------------------------------------------------


@pytest.mark.parametrize(
    "flag, url, words",
    [
        ("mqtt", "mqtt://127.0.0.1:99999/t", "Port out of range"),
        ("mqtt", "mqtt://h:abc/t", "Port could not be cast"),
        ("mqtt", "mqtt://[::1/t", "Invalid IPv6 URL"),
        ("mqtt", "mqtt://h:0/t", "port 0 is not 1..65535"),
        ("webhook", "http://[::1/x", "Invalid IPv6 URL"),
        ("webhook", "http://127.0.0.1:83071/x", "Port out of range"),
        ("webhook", "ftp://127.0.0.1/x", "is not an http(s) URL"),
    ],
)
def test_event_urls_are_checked_whole_before_anything_opens(flag, url, words, ledger):
    from edge_runtime.errors import EdgeError

    with ledger.case("new user round 3: a broken --webhook/--mqtt URL (port, IPv6, scheme)"):
        with pytest.raises(EdgeError, match=words.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            check_options(EventOptions(**{flag: url}))


# -- 7. FIFOs and devices are not model files ---------------------------------------------------


def test_a_fifo_or_a_device_named_like_a_model_is_refused_at_once(tmp_path, ledger):
    fifo = tmp_path / "m.tflite"
    os.mkfifo(fifo)
    device = tmp_path / "z.onnx"
    os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # a zero device of our own, in a temp folder
    examples = _examples(tmp_path / "ex", ["hat", "shoes"], 2)
    commands = {
        "--model": lambda path: ("-m", "edge_runtime", "--model", str(path), "--source", str(examples / "hat")),
        "inspect": lambda path: ("-m", "edge_runtime", "inspect", str(path)),
        "teach --extractor": lambda path: (
            "-m",
            "edge_runtime",
            "teach",
            "--extractor",
            str(path),
            "--examples",
            str(examples),
            "--output",
            str(tmp_path / f"out{path.suffix}"),
        ),
    }
    for name, command in commands.items():
        for path in (fifo, device):
            with ledger.case(f"new user round 3: a FIFO or device as a model ({name})"):
                started = time.monotonic()
                result = run_cli(*command(path), timeout=60)
                _one_line_error(result, "is not a regular file")
                assert time.monotonic() - started < 50


# -- 8. a webhook that trickles or never answers ------------------------------------------------


def _trickler(mode: str) -> tuple[socket.socket, threading.Event]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.recv(65536)
            if mode == "trickle":  # a byte a second, never a whole reply
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000:
                    if done.wait(0.5):
                        break
                    try:
                        connection.send(bytes([byte]))
                    except OSError:
                        break
            else:
                done.wait(60)
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, done


@pytest.mark.parametrize("mode", ["trickle", "silent"])
def test_a_webhook_that_trickles_or_never_replies_is_cut_off_retried_and_counted(mode, ledger):
    server, done = _trickler(mode)
    try:
        with ledger.case(f"new user round 3: a webhook receiver that {mode}s: each request cut at its deadline"):
            sink = WebhookSink(
                f"http://127.0.0.1:{server.getsockname()[1]}/e", timeout_s=1.0, attempts=2, backoff_s=(0.1, 0.1)
            )
            started = time.monotonic()
            for index in range(2):
                sink.put({"type": "label", "label": "dress", "frame": index})
            deadline = time.monotonic() + 20
            while sink.failed < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sink.failed == 2 and sink.sent == 0
            assert time.monotonic() - started < 10  # 2 events x 2 attempts x 1 s, not forever
            sink.close(timeout=1)
        with ledger.case(f"new user round 3: every event counted when the run ends ({mode})"):
            events = Events(
                EventOptions(webhook=f"http://127.0.0.1:{server.getsockname()[1]}/e", event_frames=1), "camera 0", "m"
            )
            for index, label in enumerate(["dress", "shoes", "hat"]):
                events.observe(label, 0.9, False, index)
            events.close()
            counts = events.summary()["webhook"]
            assert sum(counts.values()) == events.published == 3, counts
    finally:
        done.set()
        server.close()


# -- 9. one decoding rule: EXIF orientation everywhere -------------------------------------------


def _exif_rotated(upright: np.ndarray) -> bytes:
    """The photo stored sideways with EXIF orientation 6 (turn 90 degrees clockwise to view), as phones do."""
    stored = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)
    data = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    tiff = b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def test_exif_orientation_is_applied_the_same_way_by_training_teaching_and_the_runtime(tmp_path, ledger):
    from edge_runtime.teach.examples import from_folder
    from edge_runtime.teach.taught import open_extractor
    from train.datasets.folder import read_image as training_read

    photos = sorted((PHOTOS / "test" / "dress").iterdir())[:6]
    folder = tmp_path / "rotated" / "dress"
    folder.mkdir(parents=True)
    for path in photos:
        (folder / (path.stem + ".jpg")).write_bytes(_exif_rotated(cv2.imread(str(path))))
    rotated = images_in(folder)
    with ledger.case("new user round 3: EXIF orientation 6: training, teaching and the runtime see one image"):
        source = open_source(str(folder))
        for path, original in zip(rotated, photos):
            ok, runtime_frame = source.read()
            trained = training_read(path)[0]
            assert ok and runtime_frame is not None and trained is not None
            assert np.array_equal(runtime_frame, trained)
            upright = cv2.imread(str(original))
            assert runtime_frame.shape == upright.shape
            assert np.mean(np.abs(runtime_frame.astype(int) - upright)) < 4  # upright, up to JPEG noise
        source.close()
    with ledger.case("new user round 3: EXIF orientation 6: the classifier's answer is the upright photo's"):
        with Classifier.open(MODEL) as classifier:
            for path, original in zip(rotated, photos):
                seen = classifier.predict(read_image(path)[0])
                upright = classifier.predict(cv2.imread(str(original)))
                assert seen.label == upright.label and abs(seen.score - upright.score) < 0.05
    with ledger.case("new user round 3: EXIF orientation 6: teach's features are the upright photo's"):
        base = open_extractor(EXTRACTOR)
        (tmp_path / "rotated" / "shoes").mkdir()
        (tmp_path / "rotated" / "shoes" / "a.jpg").write_bytes(_exif_rotated(cv2.imread(str(photos[0]))))
        taught = from_folder(tmp_path / "rotated", base.extractor, flip=False)
        upright = np.stack([base.extractor.features_of_frame(cv2.imread(str(p))) for p in photos])
        cosine = np.sum(taught.features[:6] * upright, axis=1) / (
            np.linalg.norm(taught.features[:6], axis=1) * np.linalg.norm(upright, axis=1)
        )
        assert cosine.min() > 0.97


# -- 10. labels a taught file cannot carry; NaN scores are an error -----------------------------


def test_teach_add_refuses_duplicated_empty_or_extra_labels(tmp_path, ledger):
    examples = _examples(tmp_path / "ex", ["hat", "shoes"], 5)
    taught = tmp_path / "taught.tflite"
    result = _teach("--extractor", EXTRACTOR, "--examples", examples, "--output", taught)
    assert result.returncode == 0, result.stderr
    data = taught.read_bytes()
    contract = json.loads(read_tflite_entries(data)[METADATA_KEY])
    more = _examples(tmp_path / "more", ["dress"], 5)
    for name, labels in {"duplicated": ["hat", "hat"], "empty": ["hat", ""], "too many": ["hat", "shoes", "x"]}.items():
        with ledger.case("new user round 3: teach --add on a file whose labels are duplicated, empty or too many"):
            bad = tmp_path / f"bad-{name.replace(' ', '-')}.tflite"
            bad.write_bytes(
                embed_tflite_entries(data, {METADATA_KEY: json.dumps({**contract, "labels": labels}).encode()})
            )
            out = tmp_path / f"out-{name.replace(' ', '-')}.tflite"
            result = _teach("--add", bad, "--examples", more, "--output", out)
            _one_line_error(result, "teach it again from the photos")
            assert not out.exists()
    for bad_class in ("", "a/b", "x\x1by"):
        with ledger.case("new user round 3: --class that is empty, a path or holds control characters"):
            result = _teach(
                "--extractor",
                EXTRACTOR,
                "--source",
                examples / "hat",
                "--class",
                bad_class,
                "--class",
                "ok",
                "--output",
                tmp_path / "c.tflite",
            )
            _one_line_error(result, "--class")


def _nan_model(path: Path) -> Path:
    """A real ONNX classifier whose every score is NaN (weights of NaN), with a valid contract."""
    import onnx
    from onnx import TensorProto, helper

    from edge_runtime.teach.graph_onnx import set_props

    weights = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [float("nan")] * 6)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2], keepdims=0),
            helper.make_node("MatMul", ["mean", "w"], ["probabilities"]),
        ],
        "nan",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 16, 16, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 2])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    metadata = ModelMetadata(model="nan", format="onnx", labels=("a", "b"), input=InputSpec(16, 16, 3, "BGR"))
    path.write_bytes(set_props(model.SerializeToString(), {METADATA_KEY: metadata.to_json()}))
    onnx.checker.check_model(str(path))
    return path


def test_a_model_answering_nan_is_an_error_counted_once_never_an_answer(tmp_path, ledger):
    from edge_runtime.errors import NonFiniteScoresError

    model = _nan_model(tmp_path / "nan.onnx")
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / f"{index}.png"), np.full((20, 20, 3), 40 * index, np.uint8))
    with ledger.case("new user round 3: a model that answers NaN (library)"):
        with Classifier.open(model) as classifier, pytest.raises(NonFiniteScoresError):
            classifier.predict(np.zeros((16, 16, 3), np.uint8))
    with ledger.case("new user round 3: a model that answers NaN (command: one error, a count, exit 2)"):
        result = run_cli(
            "-m",
            "edge_runtime",
            "--model",
            str(model),
            "--source",
            str(folder),
            "--headless",
            "--jsonl",
            str(tmp_path / "a.jsonl"),
            timeout=120,
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("NaN or infinity") == 2  # once in the log, once in the final error line
        assert "non-finite 3" in result.stderr.splitlines()[-1]
        jsonl = tmp_path / "a.jsonl"
        assert not jsonl.exists() or not jsonl.read_text().strip()  # no answer was written for any frame


# -- 11. the small words ------------------------------------------------------------------------


def test_jsonl_to_a_closed_pipe_ends_quietly_with_141(tmp_path, ledger):
    with ledger.case("new user round 3: --jsonl - | head -c 10"):
        command = (
            f"{sys.executable} -m edge_runtime --model {MODEL} --source {PHOTOS / 'test' / 'dress'} "
            f'--headless --jsonl - | head -c 10 >/dev/null; echo "exit=${{PIPESTATUS[0]}}" >&2'
        )
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert "exit=141" in result.stderr and "error:" not in result.stderr, result.stderr[-2000:]


def test_class_subfolders_follow_one_rule_in_train_teach_and_the_runtime(tmp_path, ledger):
    from edge_runtime.teach.examples import from_folder
    from edge_runtime.teach.taught import open_extractor
    from train.datasets.folder import open_folder

    root = tmp_path / "set"
    for name in ("hat", "shoes"):
        for index, path in enumerate(sorted((PHOTOS / "train" / name).iterdir())[:4]):
            nested = root / name / ("indoor" if index % 2 else "outdoor")
            nested.mkdir(parents=True, exist_ok=True)
            (nested / path.name).symlink_to(path)
    (root / "hat" / ".hidden").mkdir()
    (root / "hat" / ".hidden" / "x.jpg").symlink_to(sorted((PHOTOS / "train" / "hat").iterdir())[10])
    with ledger.case("new user round 3: photos in class subfolders: train, teach and --source agree"):
        assert open_folder(root).counts() == {"hat": 4, "shoes": 4}
        assert from_folder(root, open_extractor(EXTRACTOR).extractor, flip=False).shots == {"hat": 4, "shoes": 4}
        source = open_source(str(root / "hat"))
        assert len(source.paths) == 4
        source.close()


def test_the_small_words(tmp_path, ledger):
    examples = _examples(tmp_path / "ex", ["hat", "shoes"], 1)
    (examples / "hat" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with ledger.case("new user round 3: teach from one photo a class warns; a broken photo is named"):
        result = _teach("--extractor", EXTRACTOR, "--examples", examples, "--output", tmp_path / "one.tflite")
        assert result.returncode == 0, result.stderr
        assert "fewer than 5 examples" in result.stderr and "broken.jpg" in result.stderr
    with ledger.case("new user round 3: teach --examples FILE says it is a file"):
        photo = sorted((PHOTOS / "train" / "hat").iterdir())[0]
        _one_line_error(
            _teach("--extractor", EXTRACTOR, "--examples", photo, "--output", tmp_path / "f.tflite"), "is a file"
        )
    with ledger.case("new user round 3: inspect escapes control characters in labels"):
        data = (tmp_path / "one.tflite").read_bytes()
        contract = json.loads(read_tflite_entries(data)[METADATA_KEY])
        contract["labels"] = ["hat\x1b[31mred\x00", "sho\res"]
        hostile = tmp_path / "hostile.tflite"
        hostile.write_bytes(embed_tflite_entries(data, {METADATA_KEY: json.dumps(contract).encode()}))
        result = run_cli("-m", "edge_runtime", "inspect", str(hostile))
        assert result.returncode == 0, result.stderr
        assert not any(ch in result.stdout for ch in "\x1b\x00\r")
        assert "hat\\x1b[31mred\\x00, sho\\res" in result.stdout
    with ledger.case("new user round 3: Authorization: bearer (lower case) is accepted"):
        view = LiveView(ServeOptions(serve="127.0.0.1:0", serve_token="tok"), "m", "camera 0")
        try:
            answers = []
            for header in ("bearer tok", "BEARER tok", "Bearer tok", "bearer nope"):
                with socket.create_connection(("127.0.0.1", view.port), timeout=10) as sock:
                    sock.sendall(f"GET /state.json HTTP/1.0\r\nAuthorization: {header}\r\n\r\n".encode())
                    answers.append(sock.recv(64).split(b"\r\n")[0])
            assert [a.split()[1] for a in answers] == [b"200", b"200", b"200", b"401"]
        finally:
            view.close()
