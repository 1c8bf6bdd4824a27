"""Teaching from the live page: a real headless Chromium presses the buttons against real camera
streams, and the JSON API's guards hold against requests that must not act."""

from __future__ import annotations

import json
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

import cv2
import pytest

from benchmarks.ipcamera import IPCamera
from tests.browser import Browser
from tests.edge_runtime.garments import MODEL, photos, write_video
from tests.helpers import ROOT, wait_for

TOKEN = "s3cret-token"
REPORTS = ROOT / "reports" / "tests"


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Device:
    """``python -m edge_runtime`` with two camera streams, the live view and the Teach panel."""

    def __init__(self, tmp: Path, teach_dir: Path, *extra: str) -> None:
        self.tmp, self.teach_dir, self.port = tmp, teach_dir, _port()
        shots = {"boots": photos("shoes", 6), "caps": photos("hat", 6)}
        self.cameras = {
            "a": IPCamera(write_video(tmp / "a.mp4", [(p, 6) for p in shots["boots"]]), fps=20),
            "b": IPCamera(write_video(tmp / "b.mp4", [(p, 6) for p in shots["caps"]]), fps=20),
        }
        self.records: list[dict] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_runtime", "--headless", "--quiet", "--model", str(MODEL),
             "--source", f"a={self.cameras['a'].url}", "--source", f"b={self.cameras['b'].url}",
             "--serve", f"127.0.0.1:{self.port}", "--serve-token", TOKEN, "--teach-dir", str(teach_dir),
             "--max-fps", "10", "--jsonl", "-", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 60
        while len(self.records) < 4:
            assert time.monotonic() < deadline and self.process.poll() is None, "the runtime did not start"
            time.sleep(0.1)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.records.append(json.loads(line))

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, action: str, body: object = None, *, token: str | None = TOKEN, kind: str = "application/json",
             origin: str | None = None, raw: bytes | None = None) -> tuple[int, dict]:  # fmt: skip
        headers = {"Content-Type": kind}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if origin is not None:
            headers["Origin"] = origin
        data = raw if raw is not None else json.dumps(body or {}).encode()
        request = urllib.request.Request(self.url(f"/api/teach/{action}"), data=data, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        try:
            _, stderr = self.process.communicate(timeout=30)
        finally:
            self.process.kill()
            for camera in self.cameras.values():
                camera.close()
        return stderr


def test_capture_two_classes_and_teach_them_in_a_real_browser(tmp_path, ledger):
    device = Device(tmp_path, tmp_path / "examples")
    browser = Browser()
    try:
        browser.open(device.url(f"/?token={TOKEN}"))
        browser.wait("document.querySelectorAll('.tile').length === 2 && !!document.getElementById('t-capture')")
        for camera, name in (("a", "boots"), ("b", "caps")):
            browser.js(f"document.querySelector('.tile[data-camera=\"{camera}\"]').click()")
            browser.js(
                f"document.getElementById('t-class').value = '{name}';"
                "document.getElementById('t-count').value = '10'; document.getElementById('t-seconds').value = '2';"
                "document.getElementById('t-capture').click(); true"
            )
            browser.wait(f"document.querySelector('.count[data-class=\"{name}\"]')?.textContent === '10'", 30)
        assert sorted(p.name for p in (tmp_path / "examples").iterdir()) == ["boots", "caps"]
        assert all(len(list((tmp_path / "examples" / c).glob("*.jpg"))) == 10 for c in ("boots", "caps"))
        pressed = time.time()
        browser.js("document.getElementById('t-teach').click(); true")
        browser.wait("document.body.dataset.labels === 'boots,caps'", 60)
        assert wait_for(lambda: any(r["model"] == "taught" for r in device.records), 30)
        first_answer = next(r["time"] for r in device.records if r["model"] == "taught")
        time.sleep(3)  # about 30 frames of each camera from the taught file
        shown = browser.js("[...document.querySelectorAll('.tile span')].map((s) => s.textContent)")
        REPORTS.mkdir(parents=True, exist_ok=True)
        browser.screenshot(str(REPORTS / "teach_panel.png"))
        with urllib.request.urlopen(device.url(f"/state.json?token={TOKEN}"), timeout=10) as response:
            state = json.loads(response.read())
    finally:
        browser.close()
        device.stop()
    taught = [r for r in device.records if r["model"] == "taught"]
    with ledger.case("teach panel: two classes captured and taught in Chromium, answered live"):
        for camera, name in (("a", "boots"), ("b", "caps")):
            mine = [r["label"] for r in taught if r["camera"] == camera]
            assert len(mine) >= 20 and mine.count(name) / len(mine) >= 0.8, (camera, mine)
        assert shown == ["boots", "caps"]
        assert [c["label"] for c in state["cameras"]] == ["boots", "caps"] and state["model"] == "taught"
    ledger.note(f"teach panel: pressing teach to the first answer from the taught file: {first_answer - pressed:.2f} s")


def test_every_action_is_guarded_and_bounded_and_errors_are_words(tmp_path):
    examples = tmp_path / "examples"
    device = Device(tmp_path, examples)
    try:
        for action in ("capture", "examples", "delete", "teach", "status"):
            assert device.post(action, {"class": "x"}, token=None)[0] == 401
            assert device.post(action, {"class": "x"}, token="wrong")[0] == 401
        # The token in the URL is not enough for an action (a link could carry it).
        request = urllib.request.Request(
            device.url(f"/api/teach/capture?token={TOKEN}"), data=b'{"class": "x"}', method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as by_get:
            urllib.request.urlopen(device.url(f"/api/teach/capture?token={TOKEN}"), timeout=10)
        assert by_get.value.code == 405  # never by a GET (a link, an <img>)
        # Another site's form: a form encoding (and its Origin) is refused before anything is read.
        form = device.post("capture", raw=b"class=x&count=10", kind="application/x-www-form-urlencoded",
                           origin="http://evil.example")  # fmt: skip
        assert form[0] == 415
        assert device.post("capture", {"class": "x"}, origin="http://evil.example")[0] == 403
        assert device.post("capture", raw=b"{" + b" " * 5000 + b"}")[0] == 413
        assert list(examples.iterdir()) == []  # nothing written by any of these
        # Bounded: a flood of frames in one capture, a second capture while one runs.
        assert "50" in device.post("capture", {"class": "boots", "count": 1000})[1]["error"]
        assert device.post("capture", {"class": "boots", "count": 6, "seconds": 1.5, "camera": "a"})[0] == 200
        busy = device.post("capture", {"class": "boots", "count": 6, "camera": "a"})
        assert busy[0] == 409 and "already capturing" in busy[1]["error"]
        for bad, words in (("", "type a name"), ("../etc", "no /"), ("<b>x</b>", "no /"), ("a\x1b[31m", "no /")):
            code, answer = device.post("capture", {"class": bad, "camera": "a"})
            assert code == 400 and words in answer["error"], (bad, answer)
        assert wait_for(lambda: len(list((examples / "boots").glob("*.jpg"))) == 6, 20)
        assert device.post("capture", {"class": "caps", "count": 3, "seconds": 0.5, "camera": "b"})[0] == 200
        assert wait_for(lambda: len(list((examples / "caps").glob("*.jpg"))) == 3, 20)
        code, answer = device.post("teach")
        assert code == 400 and "too few examples: caps (3)" in answer["error"] and "at least 5" in answer["error"]
        listed = device.post("examples")[1]["classes"]
        assert [(c["class"], c["count"]) for c in listed] == [("boots", 6), ("caps", 3)]
        assert all(t["jpeg"].startswith("data:image/jpeg;base64,") for c in listed for t in c["thumbnails"])
        gone = listed[0]["thumbnails"][0]["file"]
        after = device.post("delete", {"class": "boots", "file": gone})[1]["classes"]
        assert after[0]["count"] == 5 and not (examples / "boots" / gone).exists()
        assert device.post("delete", {"class": "boots", "file": "../../x.jpg"})[0] == 400
        status = device.post("status")[1]
        assert status["model"] == "clothes_lite0" and not status["teaching"]
    finally:
        stderr = device.stop()
    assert all(r["model"] == "clothes_lite0" for r in device.records), "the old model kept running throughout"
    assert "Traceback" not in stderr


def test_examples_survive_a_restart_and_teaching_again_from_the_folder_gives_the_same_file(tmp_path):
    examples = tmp_path / "examples"
    device = Device(tmp_path, examples, "--teach-output", str(tmp_path / "page" / "mine.tflite"))
    try:
        (tmp_path / "page").mkdir()
        for camera, name in (("a", "boots"), ("b", "caps")):
            assert device.post("capture", {"class": name, "count": 6, "seconds": 1, "camera": camera})[0] == 200
            assert wait_for(lambda n=name: len(list((examples / n).glob("*.jpg"))) == 6, 20)
        assert device.post("teach")[0] == 200
        assert wait_for(lambda: device.post("status")[1]["labels"] == ["boots", "caps"], 60)
    finally:
        device.stop()
    again = Device(tmp_path, examples, "--teach-output", str(tmp_path / "page" / "mine.tflite"))
    try:
        listed = again.post("examples")[1]["classes"]
        assert [(c["class"], c["count"]) for c in listed] == [("boots", 6), ("caps", 6)]
    finally:
        again.stop()
    (tmp_path / "cli").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "edge_runtime", "teach", "--examples", str(examples), "--output",
         str(tmp_path / "cli" / "mine.tflite"), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    from edge_runtime.classifier import Classifier

    files = [tmp_path / "page" / "mine.tflite", tmp_path / "cli" / "mine.tflite"]
    contracts = [Classifier.open(f, threads=1).metadata.to_dict() for f in files]
    for contract in contracts:
        contract["extra"]["taught"].pop("when")  # when each was taught: the one difference
    assert contracts[0] == contracts[1]
    frames = [cv2.imread(str(p)) for c in ("boots", "caps") for p in sorted((examples / c).glob("*.jpg"))]
    answers = []
    for path in files:
        with Classifier.open(path, threads=1) as classifier:
            answers.append([classifier.predict(frame).probabilities.tolist() for frame in frames])
    assert answers[0] == answers[1]  # the same weights, bit for bit


def test_the_panel_refuses_what_cannot_work_at_start_up(tmp_path):
    def start(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "edge_runtime", "--model", str(MODEL), "--source", str(tmp_path), *args],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    (tmp_path / "notes.tflite").write_text("my notes")
    for args, words in (
        (("--teach-dir", str(tmp_path / "ex")), "pass --serve"),
        (("--teach-add",), "pass --teach-dir"),
        (("--serve", "0", "--teach-dir", str(tmp_path / "ex"), "--teach-output", str(tmp_path / "notes.tflite")),
         "not a taught model"),
        (("--serve", "0", "--teach-dir", str(tmp_path / "ex"), "--teach-add"), "extends a taught file"),
    ):  # fmt: skip
        result = start(*args)
        assert result.returncode == 2 and words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert (tmp_path / "notes.tflite").read_text() == "my notes"
    shutil.rmtree(tmp_path / "ex", ignore_errors=True)


def test_a_full_disk_and_a_failing_teach_are_reported_in_words_and_the_model_keeps_running(tmp_path):
    """The examples folder on a real, small filesystem (a 3 MB tmpfs)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], check=True)
    try:
        device = Device(tmp_path, disk / "examples")
        try:
            for camera, name in (("a", "boots"), ("b", "caps")):
                assert device.post("capture", {"class": name, "count": 5, "seconds": 0.5, "camera": camera})[0] == 200
                assert wait_for(lambda n=name: len(list((disk / "examples" / n).glob("*.jpg"))) == 5, 20)
            (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - 200_000))
            assert device.post("teach")[0] == 200  # the taught file (4 MB) cannot be written here
            assert wait_for(lambda: device.post("status")[1]["error"] is not None, 60)
            status = device.post("status")[1]
            assert "teaching failed" in status["error"] or "No space" in status["error"], status
            assert status["model"] == "clothes_lite0" and not (disk / "examples" / "taught.tflite").exists()
            filler = disk / "filler"
            filler.write_bytes(b"\0" * (filler.stat().st_size + shutil.disk_usage(disk).free - 8192))  # full
            assert device.post("capture", {"class": "boots", "count": 10, "seconds": 1, "camera": "a"})[0] == 200
            assert wait_for(lambda: "disk is full" in (device.post("status")[1]["error"] or ""), 30)
            assert not list((disk / "examples" / "boots").glob(".*partial*"))  # no half-written example
            frames = len(device.records)
            assert wait_for(lambda: len(device.records) > frames + 10, 20)  # the loop goes on
        finally:
            stderr = device.stop()
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    assert all(r["model"] == "clothes_lite0" for r in device.records) and "Traceback" not in stderr
