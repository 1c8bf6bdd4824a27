"""What a new user met: sources that end, images that are not, and what the run says about them."""

from __future__ import annotations

import functools
import http.server
import json
import struct
import threading
import zlib

import cv2
import numpy as np
import pytest

from edge_runtime import overlay
from edge_runtime.errors import SourceError
from edge_runtime.live import LiveConfig, run
from edge_runtime.sources import ImageSource
from tests.helpers import run_cli

pytestmark = pytest.mark.dataset


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (with one tiny data chunk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture
def photos_with_bad_files(tmp_path):
    """Six good photos and two bad files: an interrupted copy (0 bytes) and a 60000x60000 PNG header."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(folder / f"good{i}.jpg"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    (folder / "good2x.jpg").write_bytes(b"")  # sorts among the good ones: the rest must still be read
    (folder / "huge.png").write_bytes(_png_claiming(60000, 60000))
    return folder


def test_bad_files_in_a_folder_are_skipped_counted_and_named(tiny_runs, photos_with_bad_files, tmp_path):
    model = tiny_runs / "camera_cnn" / "deploy" / "model_int8.tflite"
    result = run_cli(
        "-m",
        "edge_runtime",
        "--model",
        str(model),
        "--source",
        str(photos_with_bad_files),
        "--headless",
        "--jsonl",
        str(tmp_path / "p.jsonl"),
        "--summary-json",
        str(tmp_path / "s.json"),
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == 6 and summary["skipped"] == 2 and summary["ended_by"] == "end of source"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING: skipping")]
    assert len(warnings) == 2 and any("good2x.jpg: empty file" in w for w in warnings)
    assert any("huge.png: 60000x60000 is 3600 MP, over --max-pixels 50 MP" in w for w in warnings)
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["file"].rsplit("/", 1)[1] for r in records] == [f"good{i}.jpg" for i in range(6)]


class _Failing(ImageSource):
    """Real images, then a read that raises (a driver or library bug in the reader thread)."""

    def __init__(self, paths):
        super().__init__(paths, "failing source")

    def read(self):
        if self._index == 3:
            raise RuntimeError("decoder crashed")
        return super().read()


def test_an_exception_in_the_reader_thread_never_ends_a_run_silently(tiny_runs, photos_with_bad_files):
    from edge_runtime import Classifier

    paths = sorted(photos_with_bad_files.glob("good?.jpg"))
    with Classifier.open(tiny_runs / "camera_cnn" / "deploy" / "model_float32.tflite") as classifier:
        with pytest.raises(SourceError, match=r"reading failed after 3 frames \(RuntimeError: decoder crashed\)"):
            run(classifier, _Failing(paths), LiveConfig(headless=True))


def test_smoothing_applies_to_continuous_sources_only(tiny_runs, photos_with_bad_files, tmp_path):
    model = tiny_runs / "camera_cnn" / "deploy" / "model_float32.tflite"
    tops = {}
    for smooth in ("1", "5"):
        result = run_cli(
            "-m",
            "edge_runtime",
            "--model",
            str(model),
            "--source",
            str(photos_with_bad_files),
            "--headless",
            "--smooth",
            smooth,
            "--jsonl",
            str(tmp_path / f"{smooth}.jsonl"),
        )
        assert result.returncode == 0, result.stderr
        tops[smooth] = [json.loads(line)["top"] for line in (tmp_path / f"{smooth}.jsonl").read_text().splitlines()]
    assert tops["5"] == tops["1"]  # each image classified on its own
    assert "--smooth 5 ignored" in result.stderr


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_a_video_file_served_over_http_ends_at_its_end(tiny_runs, tmp_path):
    # AVI (MJPG) plays from the first byte; Python's test server cannot serve the range requests an
    # .mp4 with its index at the end needs (real web servers can).
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    for i in range(90):
        writer.write(np.full((240, 320, 3), (i * 6) % 255, np.uint8))
    writer.release()
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.avi"
        model = tiny_runs / "camera_cnn" / "deploy" / "model_int8.tflite"
        result = run_cli(
            "-m",
            "edge_runtime",
            "--model",
            str(model),
            "--source",
            url,
            "--headless",
            "--summary-json",
            str(tmp_path / "s.json"),
            "--reconnect-timeout",
            "5",
            timeout=120,
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == 90 and summary["reconnects"] == 0 and summary["ended_by"] == "end of source"


def test_overlay_text_sits_on_a_filled_box_readable_on_bright_scenes():
    white = np.full((640, 640, 3), 255, np.uint8)  # scale 1: text at (10, 32), size 0.9, thickness 2
    drawn = overlay.draw(white.copy(), (("Sneaker", 0.93),), 29.7)
    (w, h), _ = cv2.getTextSize("Sneaker 93%", 0, 0.9, 2)
    region = drawn[32 - h : 32, 10 : 10 + w]
    # Behind the letters the scene is replaced by the dark box: most of the text's area is dark.
    assert np.mean(region.max(axis=2) < 64) > 0.5
    assert np.array_equal(drawn[300:, 300:], white[300:, 300:])  # the rest of the frame is untouched
