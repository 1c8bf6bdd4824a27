"""What a new user meets with the runtime's inputs and outputs: answers shown, annotated images,
outputs that never destroy inputs, devices and FIFOs written through, sources that cannot give a
frame refused instead of exiting 0 or spinning, and bounded options."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from edge_runtime import Classifier
from edge_runtime.errors import EdgeError, InferenceError, OutputError, SourceError
from edge_runtime.images import image_size
from edge_runtime.live import LiveConfig, run
from edge_runtime.outputs import check_distinct, remove_stale_partials
from edge_runtime.sources import BaseSource, open_source
from tests.edge_runtime.test_live import read_video, write_video
from tests.helpers import ROOT, run_cli

pytestmark = pytest.mark.dataset


@pytest.fixture
def model(tiny_runs):
    return tiny_runs / "camera_cnn" / "deploy" / "model_int8.tflite"


@pytest.fixture
def photos(tmp_path, rng):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.jpg"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    return folder


def runtime(model, *args, **kwargs):
    return run_cli("-m", "edge_runtime", "--model", str(model), "--headless", *args, **kwargs)


def one_error_line(result, code=2):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and lines[-1].startswith("error:"), result.stderr
    return lines[-1]


def test_image_sources_print_answers_and_write_annotated_images(model, photos, tmp_path):
    single = runtime(model, "--source", str(photos / "p0.jpg"), "--output", str(tmp_path / "one.png"))
    assert single.returncode == 0, single.stderr
    assert single.stdout.startswith(str(photos / "p0.jpg") + ": ")
    drawn = cv2.imread(str(tmp_path / "one.png"))
    assert drawn.shape == (96, 128, 3) and not np.array_equal(drawn, cv2.imread(str(photos / "p0.jpg")))
    many = runtime(model, "--source", str(photos), "--output", str(tmp_path / "annotated"))
    assert many.returncode == 0, many.stderr
    assert len(many.stdout.splitlines()) == 3
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    # The folder the images come from is never the output folder, and one file name cannot take three images.
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    assert "is what --source reads" in one_error_line(runtime(model, "--source", str(photos), "--output", str(photos)))
    with pytest.raises(OutputError, match="is the folder the images come from"):
        from edge_runtime.outputs import ImageSink

        ImageSink(str(photos / "." / ""), sorted(photos.iterdir()))
    assert "pass a folder" in one_error_line(
        runtime(model, "--source", str(photos), "--output", str(tmp_path / "x.jpg"))
    )
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_an_output_that_is_an_input_or_another_output_is_refused(model, tmp_path, ledger):
    video = write_video(tmp_path / "clip.mp4", frames=5)
    original = video.read_bytes()
    link = tmp_path / "link.mp4"
    link.symlink_to(video)
    cases = {
        ("--output", str(video)): "is what --source reads",
        ("--jsonl", str(link)): "is what --source reads",
        ("--jsonl", str(model)): "is what --model reads",
        ("--output", str(tmp_path / "o.mp4"), "--jsonl", str(tmp_path / "o.mp4")): "is also --output",
        ("--jsonl", str(tmp_path / "r.jsonl"), "--summary-json", str(tmp_path / "r.jsonl")): "is also --jsonl",
    }
    for args, message in cases.items():
        with ledger.case("outputs: an output path that is an input (source, model, via a symlink) or another output"):
            assert message in one_error_line(runtime(model, "--source", str(video), *args)), args
            assert video.read_bytes() == original
    assert video.read_bytes() == original and link.is_symlink() and model.stat().st_size > 0
    with pytest.raises(OutputError, match="would be overwritten"):
        check_distinct([("--source", video)], {"--output": str(link)})


def test_devices_fifos_symlinks_and_stdout_as_outputs(model, tmp_path, ledger):
    category = "outputs: devices (null, full), FIFOs with and without a reader, symlinks, stdout"
    video = write_video(tmp_path / "clip.mp4", frames=6)
    # Device nodes made here (never the machine's own): a null device and a full one.
    null, full = tmp_path / "null", tmp_path / "full"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    with ledger.case(category):
        ok = runtime(model, "--source", str(video), "--jsonl", str(null), "--summary-json", str(null))
        assert ok.returncode == 0, ok.stderr
        assert stat.S_ISCHR(null.stat().st_mode) and stat.S_ISCHR(full.stat().st_mode)
    with ledger.case(category):
        assert "No space left on device" in one_error_line(runtime(model, "--source", str(video), "--jsonl", str(full)))
        assert stat.S_ISCHR(full.stat().st_mode)
    with ledger.case(category):
        assert "must be a regular file" in one_error_line(runtime(model, "--source", str(video), "--output", str(null)))
    # A FIFO is written through to its reader, and one nobody reads is refused instead of waited on.
    fifo = tmp_path / "frames.fifo"
    os.mkfifo(fifo)
    with ledger.case(category):
        assert "nothing is reading the FIFO" in one_error_line(
            runtime(model, "--source", str(video), "--jsonl", str(fifo), timeout=60)
        )
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.extend(open(fifo).read().splitlines()))
    reader.start()
    time.sleep(0.2)
    through = runtime(model, "--source", str(video), "--jsonl", str(fifo), timeout=60)
    reader.join(timeout=30)
    with ledger.case(category):
        assert through.returncode == 0, through.stderr
        assert len(received) == 6 and stat.S_ISFIFO(fifo.stat().st_mode)
    # A symlink is followed: the file it points to gets the records, the link stays a link.
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    with ledger.case(category):
        assert runtime(model, "--source", str(video), "--jsonl", str(link)).returncode == 0
        assert link.is_symlink() and len(target.read_text().splitlines()) == 6
    # "-" streams the records to stdout.
    with ledger.case(category):
        piped = runtime(model, "--source", str(video), "--jsonl", "-")
        assert piped.returncode == 0
        assert [json.loads(line)["frame"] for line in piped.stdout.splitlines()] == list(range(6))


def test_sources_that_give_no_frame_fail_instead_of_exiting_0_or_spinning(model, tmp_path, ledger):
    category = "sources: no readable frame (bad image, bad folder, --loop over it, FIFO as image, link loops)"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not an image")
    (bad / "b.png").write_bytes(b"")
    with ledger.case(category):
        assert "no frame could be read" in one_error_line(runtime(model, "--source", str(bad / "a.jpg")))
    with ledger.case(category):
        assert "no frame could be read" in one_error_line(runtime(model, "--source", str(bad)))
    with ledger.case(category):
        started = time.monotonic()
        looped = one_error_line(runtime(model, "--source", str(bad), "--loop", timeout=60))
        assert "none of its 2 images could be read; --loop stopped" in looped and time.monotonic() - started < 60
    fifo = tmp_path / "a.jpg"
    os.mkfifo(fifo)  # a FIFO named like an image: refused, never opened for reading
    with ledger.case(category):
        assert "no frame could be read" in one_error_line(runtime(model, "--source", str(fifo), timeout=60))
    loop = tmp_path / "loop.mp4"
    loop.symlink_to(loop)
    with ledger.case(category), pytest.raises(SourceError, match="symlink loop"):
        open_source(str(loop))
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    with ledger.case(category), pytest.raises(SourceError, match="which does not exist"):
        open_source(str(tmp_path / "dangling.mp4"))


def test_looping_a_video_repeats_it(model, tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=4)
    with Classifier.open(model) as classifier:
        stats = run(classifier, open_source(str(video), loop=True), LiveConfig(headless=True, max_frames=10))
    assert stats.frames == 10 and stats.ended_by == "max-frames"


def test_options_out_of_range_are_refused_in_one_line_naming_the_range(model, tmp_path, ledger):
    video = write_video(tmp_path / "clip.mp4", frames=3)
    cases = {
        ("--threads", "100000"): "--threads must be 1..",
        ("--output-fps", "-5"): "--output-fps must be (0, 1000]",
        ("--output-fps", "0"): "--output-fps must be (0, 1000]",
        ("--fps", "nan"): "--fps must be (0, 1000]",
        ("--top-k", "0"): "--top-k must be 1..1000",
        ("--rotate-minutes", "5"): "--rotate-minutes rotates --output and --jsonl files",
        ("--output", str(tmp_path / "o.mov")): "use .mp4, .avi, .mkv",
        ("--loop", "--source", "0"): "",  # a camera cannot loop (or, here, open): either way one line
    }
    for args, message in cases.items():
        with ledger.case("options: out of range, nan, or meaningless without another option"):
            line = one_error_line(runtime(model, "--source", str(video), *args))
            assert message in line, (args, line)
    help_text = run_cli("-m", "edge_runtime", "--help").stdout
    assert "[0..1]" in help_text and "[(0, 1000]]" in help_text
    with Classifier.open(model) as classifier:
        with pytest.raises(EdgeError, match="top_k must be a whole number of at least 1"):
            classifier.predict(np.zeros((32, 32, 3), np.uint8), top_k=0)
    with pytest.raises(EdgeError, match="threads must be 1.."):
        Classifier.open(model, threads=100000)


def test_images_claiming_too_many_pixels_are_skipped_before_decoding(model, tmp_path, rng, ledger):
    from tests.edge_runtime.test_sources_end import _png_claiming

    assert image_size(_png_claiming(25000, 25000)) == (25000, 25000)
    for suffix in (".jpg", ".png", ".bmp", ".webp"):
        ok, data = cv2.imencode(suffix, rng.integers(0, 255, (30, 70, 3), dtype=np.uint8))
        assert image_size(data.tobytes()) == (70, 30), suffix
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "small.png"), rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "big.png"), rng.integers(0, 255, (200, 300, 3), dtype=np.uint8))
    with ledger.case("images: a header claiming more pixels than --max-pixels"):
        result = runtime(model, "--source", str(folder), "--max-pixels", "10000")
        assert result.returncode == 0 and len(result.stdout.splitlines()) == 1
        assert "big.png: 300x200 is 0 MP, over --max-pixels 0.01 MP" in result.stderr


def test_broken_pipes_end_quietly(model, ledger):
    for args in (["doctor"], ["inspect", "--json", str(model)]):
        with ledger.case("pipes: stdout closed by its reader (doctor, inspect --json)"):
            _closed_stdout(args)


def _closed_stdout(args):
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    process.stdout.close()  # `| head -0`: the reader is gone before the first line
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141 and b"Traceback" not in err and b"BrokenPipe" not in err, err


def test_sigint_completes_outputs_and_exits_130(model, tmp_path, ledger):
    video = write_video(tmp_path / "clip.mp4", frames=20)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_runtime",
            "--model",
            str(model),
            "--source",
            str(video),
            "--loop",
            "--headless",
            "--jsonl",
            str(tmp_path / "p.jsonl"),
            "--output",
            str(tmp_path / "o.avi"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".p.partial-*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    with ledger.case("signals: SIGINT mid-run (outputs complete, exit 130)"):
        assert process.returncode == 130, err
        records = (tmp_path / "p.jsonl").read_text().splitlines()
        assert records and len(read_video(tmp_path / "o.avi")) == len(records)
        assert not list(tmp_path.glob(".*partial*"))


def test_stale_partial_files_of_a_killed_run_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".out.partial-{dead.pid}.jsonl", tmp_path / f".out-0003.partial-{dead.pid}.jsonl"]
    mine = tmp_path / f".out.partial-{os.getpid()}.jsonl"
    other = tmp_path / f".other.partial-{dead.pid}.jsonl"
    for path in stale + [mine, other]:
        path.write_text("x")
    assert sorted(remove_stale_partials(tmp_path / "out.jsonl")) == sorted(stale)
    assert mine.exists() and other.exists()


def test_reconnects_count_only_those_that_brought_frames_back(tiny_runs):
    class DeadCamera(BaseSource):
        is_live, continuous, name = True, True, "dead camera"

        def read(self):
            return False, None

        def reopen(self):
            pass

        def close(self):
            pass

    with Classifier.open(tiny_runs / "edge_cnn" / "deploy" / "model_int8.tflite") as classifier:
        from edge_runtime.readers import LatestReader

        reader = LatestReader(DeadCamera(), give_up_s=1.2, backoff_s=(0.05, 0.1))
        assert reader.get(timeout=5) is None
        assert reader.reconnects == 0 and reader.reconnect_attempts >= 3 and "gave up" in reader.error
        del classifier


def test_one_classifier_shared_by_threads_and_closed(model, rng, ledger):
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(8)]
    classifier = Classifier.open(model)
    expected = [classifier.predict(frame).probabilities for frame in frames]
    failures: list[BaseException] = []
    mismatches = []

    def work() -> None:
        for i in range(100):
            try:
                got = classifier.predict(frames[i % 8]).probabilities
                if not np.array_equal(got, expected[i % 8]):
                    mismatches.append(i)
            except BaseException as exc:  # noqa: BLE001 - every failure is counted
                failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with ledger.case("API: one classifier shared by two threads (200 calls)"):
        assert not failures and not mismatches
    classifier.close()
    with ledger.case("API: predict after close"), pytest.raises(InferenceError, match="the classifier is closed"):
        classifier.predict(frames[0])
