"""The live loop on real video files decoded by OpenCV, images, folders, and a source that fails."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from edge_runtime import Classifier
from edge_runtime.errors import SourceError
from edge_runtime.live import STAGES, LiveConfig, run
from edge_runtime.sources import BaseSource, open_source
from tests.helpers import run_cli

pytestmark = pytest.mark.dataset


def write_video(path, frames=40, size=(640, 480), fps=30.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), (i * 6) % 255, np.uint8)
        cv2.circle(frame, (size[0] // 2, size[1] // 2), 40 + i, (0, 0, 255 - i), -1)
        writer.write(frame)
    writer.release()
    return path


def read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def test_headless_run_writes_video_and_jsonl_frame_by_frame(tiny_runs, video, tmp_path):
    model = tiny_runs / "camera_cnn" / "deploy" / "model_int8.tflite"
    result = run_cli(
        "-m",
        "edge_runtime",
        "--model",
        str(model),
        "--source",
        str(video),
        "--headless",
        "--output",
        str(tmp_path / "out.mp4"),
        "--jsonl",
        str(tmp_path / "preds.jsonl"),
        "--bars",
        "--summary-json",
        str(tmp_path / "summary.json"),
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(40))  # files: every frame, in order
    with Classifier.open(model) as classifier:
        for record in records:
            assert len(record["top"]) == 3 and record["top"][0][0] in classifier.labels
            assert set(record["ms"]) == set(STAGES) == {"capture", "preprocess", "inference", "overlay", "output"}
            assert "file" not in record  # a video's frames come from no file of their own
            # A file without the out-of-class output never calls a frame unknown, and says so.
            assert record["unknown"] is False and "unknown_score" not in record
        frames = read_video(video)
        for index in (0, 17, 39):  # the jsonl is what the model says about that very frame
            assert classifier.predict(frames[index]).label == records[index]["top"][0][0]
    written = read_video(tmp_path / "out.mp4")
    assert len(written) == 40 and written[0].shape == (480, 640, 3)
    assert np.abs(written[5].astype(int) - frames[5].astype(int)).mean() > 0.5  # the overlay is drawn
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] == 40 and summary["ended_by"] == "end of source" and summary["unknown"] == 0
    assert set(summary["stages"]) == {"capture", "preprocess", "inference", "overlay", "output"}
    assert "40 frames" in result.stderr and "inference" in result.stderr
    assert not list(tmp_path.glob(".*partial*"))


def test_threshold_and_smoothing(tiny_runs, video, tmp_path):
    model = tiny_runs / "edge_cnn" / "deploy" / "model_float32.tflite"
    result = run_cli(
        "-m",
        "edge_runtime",
        "--model",
        str(model),
        "--source",
        str(video),
        "--headless",
        "--jsonl",
        str(tmp_path / "p.jsonl"),
        "--threshold",
        "0.99",
        "--smooth",
        "5",
        "--max-frames",
        "12",
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(records) == 12 and all(r["label"] == "uncertain" for r in records)


def test_image_file_folder_and_glob_sources(tiny_runs, tmp_path, rng):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    model = tiny_runs / "edge_cnn" / "deploy" / "model_int8.tflite"
    with Classifier.open(model) as classifier:
        folder = run(classifier, open_source(str(tmp_path)), LiveConfig(headless=True))
        assert folder.frames == 3 and folder.skipped == 1 and folder.corrupt == 0
    with Classifier.open(model) as classifier:
        assert run(classifier, open_source(str(tmp_path / "img*.png")), LiveConfig(headless=True)).frames == 3
    with Classifier.open(model) as classifier:
        assert run(classifier, open_source(str(tmp_path / "img0.png")), LiveConfig(headless=True)).frames == 1


def test_sources_that_cannot_open_say_why():
    with pytest.raises(SourceError, match=r"camera 7 did not open .*/dev/video7.*picamera2"):
        open_source("7")
    with pytest.raises(SourceError, match="no such file, folder, camera index or URL"):
        open_source("/nonexistent/clip.mp4")
    with pytest.raises(SourceError, match="Picamera2 is not installed"):
        open_source("picamera2")


def test_cli_errors_are_one_line_with_exit_code_2(tiny_runs, tmp_path):
    model = tiny_runs / "edge_cnn" / "deploy" / "model_int8.tflite"
    missing = run_cli("-m", "edge_runtime", "--model", str(tmp_path / "none.tflite"), "--source", "0")
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and missing.stderr.count("\n") == 1
    camera = run_cli("-m", "edge_runtime", "--model", str(model), "--source", "9", "--headless")
    assert camera.returncode == 2 and "camera 9 did not open" in camera.stderr and "Traceback" not in camera.stderr
    blocked = tmp_path / "file"
    blocked.write_text("x")
    out = run_cli(
        "-m",
        "edge_runtime",
        "--model",
        str(model),
        "--source",
        str(tmp_path),
        "--headless",
        "--output",
        str(blocked / "out.mp4"),
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    bad_threshold = run_cli("-m", "edge_runtime", "--model", str(model), "--threshold", "2")
    assert bad_threshold.returncode == 2 and "--threshold" in bad_threshold.stderr


class FlakySource(BaseSource):
    """A live source that delivers, then fails for a while (a camera unplugged), then delivers again."""

    is_live = True
    name = "flaky test camera"

    def __init__(self, frames_before: int, failures: int) -> None:
        self.frames_before, self.failures = frames_before, failures
        self.delivered = 0
        self.closed = False

    def read(self):
        if self.delivered == self.frames_before and self.failures > 0:
            self.failures -= 1
            return False, None
        self.delivered += 1
        time.sleep(0.002)
        if self.delivered % 50 == 7:
            return True, None  # a corrupt frame
        return True, np.full((120, 160, 3), self.delivered % 256, np.uint8)

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_live_source_that_drops_out_is_reconnected_and_the_output_stays_valid(tiny_runs, tmp_path):
    source = FlakySource(frames_before=30, failures=3)
    with Classifier.open(tiny_runs / "edge_cnn" / "deploy" / "model_int8.tflite") as classifier:
        stats = run(
            classifier,
            source,
            LiveConfig(headless=True, output=str(tmp_path / "live.avi"), max_frames=80, reconnect_timeout=20),
        )
    assert stats.frames == 80 and stats.reconnects >= 1 and stats.corrupt >= 1
    assert stats.ended_by == "max-frames" and source.closed
    assert len(read_video(tmp_path / "live.avi")) == 80


def test_live_source_that_never_comes_back_gives_up_cleanly(tiny_runs, tmp_path):
    source = FlakySource(frames_before=5, failures=10**9)
    with Classifier.open(tiny_runs / "edge_cnn" / "deploy" / "model_int8.tflite") as classifier:
        with pytest.raises(SourceError, match="gave up"):
            run(classifier, source, LiveConfig(headless=True, jsonl=str(tmp_path / "p.jsonl"), reconnect_timeout=1.5))
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 5  # closed and renamed into place


def test_live_sources_always_serve_the_newest_frame(tiny_runs):
    from edge_runtime.readers import LatestReader

    source = FlakySource(frames_before=10**9, failures=0)
    reader = LatestReader(source)
    time.sleep(0.3)
    first = reader.get(timeout=2)
    time.sleep(0.2)
    second = reader.get(timeout=2)
    reader.stop()
    assert second.index - first.index > 20 and reader.dropped > 20  # stale frames were dropped, not queued


def test_stop_event_ends_the_loop(tiny_runs):
    source = FlakySource(frames_before=10**9, failures=0)
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    with Classifier.open(tiny_runs / "edge_cnn" / "deploy" / "model_int8.tflite") as classifier:
        stats = run(classifier, source, LiveConfig(headless=True), stop=stop)
    assert stats.frames > 10 and stats.ended_by == "stop requested"


def test_smoothing_treats_unknown_as_a_state():
    from edge_runtime.live import Smoother

    smoother = Smoother(3, 2)
    scores = [smoother(np.array([0.9, 0.1], np.float32), score)[1] for score in (0.1, 0.1, 0.9, 0.9, 0.9)]
    # One odd frame does not flip the state past a 0.5 threshold; two in three do.
    assert [s > 0.5 for s in scores] == [False, False, False, True, True]
    assert Smoother(1, 2)(np.array([0.5, 0.5], np.float32), None)[1] is None


def test_an_image_source_prints_each_answer_and_a_stream_a_status_line(tiny_runs, video, tmp_path, rng):
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"shoe{i}.png"), rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    model = tiny_runs / "edge_cnn" / "deploy" / "model_int8.tflite"
    result = run_cli("-m", "edge_runtime", "--model", str(model), "--source", str(tmp_path), "--headless")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    with Classifier.open(model) as classifier:
        for i, line in enumerate(lines):
            name, answer = line.split(": ", 1)
            assert name == str(tmp_path / f"shoe{i}.png")
            expected = classifier.predict(cv2.imread(name))
            assert answer == f"{expected.label} {expected.score:.1%}", answer
    assert len(lines) == 2
    # Not a terminal: a stream's status goes to stderr every few seconds, never to stdout.
    streamed = run_cli("-m", "edge_runtime", "--model", str(model), "--source", str(video), "--headless")
    assert streamed.returncode == 0 and streamed.stdout == "" and "frame 1: " in streamed.stderr
