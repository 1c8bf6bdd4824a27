"""Several cameras in one process, a frame budget, a model swapped while running, systemd's notify
socket and watchdog, /healthz, and event clips: real videos, a real IP-camera stream, real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from benchmarks.ipcamera import IPCamera
from tests.edge_runtime.garments import MODEL, OTHER, frame_of, photos, write_video
from tests.edge_runtime.test_live import read_video
from tests.helpers import wait_for

KINDS = ("shoes", "pants", "t-shirt", "dress")


def _runtime(*args: str, env: dict | None = None) -> list[str]:
    return [sys.executable, "-m", "edge_runtime", "--headless", "--quiet", "--threads", "1", *args]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Running:
    """``python -m edge_runtime`` running with ``--jsonl -``: its records as they come, and its stderr."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.records: list[dict] = []
        self.process = subprocess.Popen(
            _runtime(*args, "--jsonl", "-"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.records.append(json.loads(line))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> str:
        """Send ``sig`` (None: wait for the end), then its stderr once it has exited."""
        if sig is not None:
            self.process.send_signal(sig)
        assert self.process.stderr is not None
        stderr = self.process.stderr.read()
        self.process.wait(timeout)
        self._reader.join(5)
        return stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("cameras")
    out = []
    for k in range(4):
        order = KINDS[k:] + KINDS[:k]
        shots = [(photo, 5) for kind in order for photo in photos(kind, 2, skip=k)]
        out.append(write_video(folder / f"cam{k}.mp4", shots))
    return out


def test_two_and_four_cameras_in_one_process_answer_as_each_does_alone(videos, tmp_path):
    alone = {}
    for k, video in enumerate(videos):
        jsonl = tmp_path / f"alone{k}.jsonl"
        result = subprocess.run(
            _runtime("--model", str(MODEL), "--source", f"cam{k}={video}", "--jsonl", str(jsonl)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        alone[f"cam{k}"] = [(r["frame"], r["label"], r["top"], r["look"]) for r in _records(jsonl)]
        assert len(alone[f"cam{k}"]) == 40
    for count in (2, 4):
        jsonl, summary = tmp_path / f"together{count}.jsonl", tmp_path / f"together{count}.json"
        sources = [arg for k in range(count) for arg in ("--source", f"cam{k}={videos[k]}")]
        result = subprocess.run(
            _runtime("--model", str(MODEL), *sources, "--jsonl", str(jsonl), "--summary-json", str(summary)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        records = _records(jsonl)
        for k in range(count):
            mine = [(r["frame"], r["label"], r["top"], r["look"]) for r in records if r["camera"] == f"cam{k}"]
            assert mine == alone[f"cam{k}"], f"cam{k} with {count} cameras"
        # Served in turn: once every camera has started and until the first ends, any 3 x count lines in a
        # row hold every camera (a camera with no frame ready yet is passed over, never waited for).
        order = [r["camera"] for r in records]
        start = max(order.index(f"cam{k}") for k in range(count))
        end = min(len(order) - order[::-1].index(f"cam{k}") for k in range(count))
        window = 3 * count
        for i in range(start, max(start, end - window)):
            assert len(set(order[i : i + window])) == count, (count, i, order[i : i + window])
        # ... so when the first camera's video ends, every other has had most of its 40 frames served.
        assert all(order[:end].count(f"cam{k}") >= 30 for k in range(count)), (end, order)
        stats = json.loads(summary.read_text())
        assert [c["name"] for c in stats["cameras"]] == [f"cam{k}" for k in range(count)]
        assert all(c["frames"] == 40 and c["error"] is None for c in stats["cameras"])
        assert all(f"camera cam{k}: 40 frames" in result.stderr for k in range(count))


def test_a_camera_that_dies_ends_alone_and_the_summary_counts_it(videos, tmp_path):
    good, dying = IPCamera(videos[0], fps=20), IPCamera(videos[1], fps=20)
    summary = tmp_path / "summary.json"
    run = Running(
        "--model", str(MODEL), "--source", f"good={good.url}", "--source", f"dying={dying.url}",
        "--reconnect-timeout", "1", "--summary-json", str(summary),
    )  # fmt: skip
    try:
        assert wait_for(lambda: any(r["camera"] == "dying" for r in run.records), 60)
        dying.close()  # the camera goes away for good: its reader gives up after --reconnect-timeout
        died = time.time()
        assert wait_for(lambda: any(r["camera"] == "good" and r["time"] > died + 3 for r in run.records), 60)
        stderr = run.stop()
    finally:
        run.kill()
        good.close()
    assert run.process.returncode == 128 + signal.SIGTERM, stderr
    cameras = {c["name"]: c for c in json.loads(summary.read_text())["cameras"]}
    assert cameras["good"]["error"] is None and cameras["good"]["frames"] > 40
    assert "dying" in cameras["dying"]["error"] and "gave up" in cameras["dying"]["error"]
    assert "camera dying" in stderr and "failed" in stderr


def test_max_fps_takes_the_newest_frame_at_most_n_times_a_second(videos, tmp_path):
    camera = IPCamera(videos[0], fps=30)
    try:
        gaps = {}
        for cap in ("5", None):
            jsonl = tmp_path / f"cap{cap}.jsonl"
            extra = ["--max-fps", cap] if cap else []
            result = subprocess.run(
                _runtime("--model", str(MODEL), "--source", camera.url, "--max-frames", "12", "--jsonl", str(jsonl))
                + extra,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 0, result.stderr
            times = [r["time"] for r in _records(jsonl)]
            gaps[cap] = np.diff(times)
    finally:
        camera.close()
    assert len(gaps["5"]) == 11 and float(np.min(gaps["5"])) >= 0.15  # 0.2 s a frame, give or take the clock
    # Without a budget the loop takes frames as the camera sends them: far closer together than the cap's.
    assert float(np.median(gaps[None])) < float(np.median(gaps["5"])) / 2


def _swap_video(tmp_path: Path) -> Path:
    shots = [(photo, 8) for kind in KINDS for photo in photos(kind, 3)] * 2
    return write_video(tmp_path / "long.mp4", shots, fps=30)


def test_a_new_model_file_is_checked_and_swapped_in_between_two_frames(tmp_path):
    video = _swap_video(tmp_path)  # 192 frames, read at 40 a second
    model = tmp_path / "model.tflite"
    shutil.copyfile(MODEL, model)
    run = Running("--model", str(model), "--source", str(video), "--watch-model", "--max-fps", "40")
    try:
        assert wait_for(lambda: len(run.records) > 5, 60)
        staged = tmp_path / "staged.tflite"
        shutil.copyfile(OTHER, staged)
        os.replace(staged, model)  # a new model, renamed into place as a deploy tool does
        assert wait_for(lambda: len({r["model_sha256"] for r in run.records}) == 2, 30), "no swap"
        (tmp_path / "broken.tflite").write_bytes(b"TFL3" + os.urandom(5000))
        os.replace(tmp_path / "broken.tflite", model)  # a corrupt replacement
        stderr = run.stop(None, timeout=60)
    finally:
        run.kill()
    assert run.process.returncode == 0, stderr
    records = run.records
    assert [r["frame"] for r in records] == list(range(192))  # no frame lost, none twice
    hashes = [r["model_sha256"] for r in records]
    switch = hashes.index(hashes[-1])
    assert hashes[:switch] == [hashes[0]] * switch and hashes[switch:] == [hashes[-1]] * (192 - switch)
    assert 0 < switch < 192 and hashes[0] != hashes[-1]
    assert "model swapped in" in stderr and "refused, the old model keeps running" in stderr
    # The corrupt file was refused: the new model answered every frame after it, to the end.
    assert "models swapped in: 1" in stderr


def test_sighup_swaps_the_model_file_in(tmp_path):
    camera = IPCamera(_swap_video(tmp_path), fps=30)
    model = tmp_path / "model.tflite"
    shutil.copyfile(MODEL, model)
    run = Running("--model", str(model), "--source", camera.url)
    try:
        assert wait_for(lambda: len(run.records) > 5, 60)
        shutil.copyfile(OTHER, model)
        run.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: len({r["model_sha256"] for r in run.records}) == 2, 30), "no swap on SIGHUP"
        run.stop()
    finally:
        run.kill()
        camera.close()
    names = {r["model_sha256"]: r["model"] for r in run.records}
    assert len(names) == 2 and set(names.values()) == {"clothes_lite0"}


def test_systemd_gets_ready_then_watchdog_while_frames_flow_and_healthz_follows(videos, tmp_path):
    camera = IPCamera(videos[0], fps=20)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="1000000")
    process = subprocess.Popen(
        _runtime("--model", str(MODEL), "--source", camera.url, "--serve", str(port), "--stale-after", "1.5"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    messages: list[tuple[float, str]] = []

    def receive(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                messages.append((time.monotonic(), notify.recv(4096).decode()))
            except socket.timeout:
                pass

    def health() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        receive(6)
        assert messages and messages[0][1].startswith("READY=1"), messages[:3]
        assert health() == 200
        pings = [t for t, text in messages if text == "WATCHDOG=1"]
        assert len(pings) >= 6 and float(np.max(np.diff(pings))) <= 0.8  # every 0.5 s: half of WatchdogSec
        camera.stall()  # the camera hangs: no frame comes, the connection stays open
        stalled = time.monotonic()
        receive(4)
        late = [t for t, text in messages if text == "WATCHDOG=1" and t > stalled + 1.2]
        assert late == [], "the watchdog was fed after frames stopped"
        assert health() == 503
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        receive(0.5)
    finally:
        process.kill()
        camera.close()
        notify.close()
    assert messages[-1][1] == "STOPPING=1"


def test_a_clip_holds_the_seconds_before_and_after_a_label_change(tmp_path):
    shoes, pants = photos("shoes", 1)[0], photos("pants", 1)[0]
    video = write_video(tmp_path / "change.mp4", [(shoes, 20), (pants, 20)], fps=10)
    clips = tmp_path / "clips"
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        _runtime("--model", str(MODEL), "--source", f"porch={video}", "--clips", str(clips), "--clip-before", "1",
                 "--clip-after", "1", "--event-frames", "1", "--summary-json", str(summary), "--no-overlay"),
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = json.loads(summary.read_text())["clips"]["files"]
    assert len(written) == 2 and all(Path(f).name.startswith("porch-") for f in written)
    assert written[0].endswith("-shoes.mp4") and written[1].endswith("-pants.mp4")
    assert sorted(p.name for p in clips.iterdir()) == sorted(Path(f).name for f in written)  # no partial left
    frames = read_video(written[1])
    # The change is at frame 20 (2.0 s): 1 s before it (frames 10-19) and 1 s from it (frames 20-30).
    assert len(frames) == 21
    before, after = frame_of(shoes).astype(np.float32), frame_of(pants).astype(np.float32)
    near = ["shoes" if np.mean(np.abs(f - before)) < np.mean(np.abs(f - after)) else "pants" for f in frames]
    assert near == ["shoes"] * 10 + ["pants"] * 11


def test_clips_keep_the_folder_under_its_size_deleting_the_oldest(tmp_path):
    from edge_runtime.clips import ClipOptions, Clips

    folder = tmp_path / "clips"
    clips = Clips(ClipOptions(clips=str(folder), clip_before=0.5, clip_after=0.5, clips_max_mb=1))
    frame = frame_of(photos("dress", 1)[0])
    rng = np.random.default_rng(0)
    for n in range(6):  # six events, each a clip of noisy frames (a few hundred KB each)
        event = {"camera": "door", "label": f"x{n}"}
        clips.on_event(event)
        for i in range(12):
            noisy = np.clip(frame + rng.normal(0, 12, frame.shape), 0, 255).astype(np.uint8)
            clips.frame("door", noisy, n * 10 + i / 10, 10.0)
        assert event["clip"].startswith(str(folder))
    clips.close()
    kept = sorted(folder.glob("*.mp4"), key=lambda p: p.stat().st_mtime)
    assert len(clips.written) == 6 and clips.deleted >= 1 and len(kept) == 6 - clips.deleted
    assert sum(p.stat().st_size for p in kept) <= 1e6
    assert [p.name for p in kept] == [Path(f).name for f in clips.written[clips.deleted :]]  # the oldest went
    assert clips.disabled is None


def test_a_full_disk_ends_clips_with_one_warning_and_the_loop_goes_on(tmp_path):
    """A real, small filesystem (tmpfs) left with just over the 50 MB clips keep free."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=52m", "tmpfs", str(disk)], check=True)
    try:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * int(shutil.disk_usage(disk).free - 50.03e6))  # 30 KB above the line
        shots = [(photo, 15) for kind in KINDS for photo in photos(kind, 2)]
        video = write_video(tmp_path / "busy.mp4", shots)
        jsonl = tmp_path / "frames.jsonl"
        result = subprocess.run(
            _runtime("--model", str(MODEL), "--source", str(video), "--clips", str(disk / "clips"), "--clip-after",
                     "3", "--event-frames", "1", "--jsonl", str(jsonl)),
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert len(_records(jsonl)) == 120  # every frame classified
        assert result.stderr.count("clips stopped") == 1 and "50 MB free" in result.stderr
        assert not list((disk / "clips").glob(".*partial*"))  # the clip being written was removed
    finally:
        subprocess.run(["umount", str(disk)], check=False)
