"""End-to-end camera pipeline measurements on a real 640x480 video decoded by OpenCV.

- ``make_scene_video``: a 640x480 video of the fixed camera test scenes (never training images),
  each held for a few frames, with the true label of every frame.
- ``capture_ceiling``: the same video only decoded and resized to the model input: what capture
  alone allows.
- ``live_loop``: the real live loop (``python -m edge_runtime``) headless on that video, in its own
  process, with its per-stage summary.
- ``keras_predict_loop``: the tutorials' way: ``model.predict`` on the Keras model for every frame.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.files import temp_path_beside
from edge_runtime.contract import InputSpec
from edge_runtime.images import read_image
from edge_runtime.preprocess import to_model_image

FRAME_SIZE = (640, 480)


def make_scene_video(
    path: Path, scenes_rgb: np.ndarray, labels: np.ndarray, *, hold: int = 6, fps: float = 30.0
) -> np.ndarray:
    """Write the scenes as a 640x480 mp4 (each shown for ``hold`` frames); return per-frame labels.

    The 128x128 scenes are stretched to 4:3 like a real 640x480 camera frame, so the runtime's
    resize back to 128x128 sees the aspect a camera gives it.
    """
    import cv2

    frames = [
        cv2.resize(cv2.cvtColor(scene, cv2.COLOR_RGB2BGR), FRAME_SIZE, interpolation=cv2.INTER_LINEAR)
        for scene in scenes_rgb
    ]
    return make_frames_video(path, frames, labels, hold=hold, fps=fps)


def make_frames_video(
    path: Path, frames: list[np.ndarray], labels: np.ndarray, *, hold: int = 6, fps: float = 30.0
) -> np.ndarray:
    """Write 640x480 BGR frames as an mp4 (each shown for ``hold`` frames); return per-frame labels."""
    import cv2

    tmp = temp_path_beside(path.with_suffix(".mp4"))
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, FRAME_SIZE)
    if not writer.isOpened():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for frame in frames:
            for _ in range(hold):
                writer.write(frame)
    finally:
        writer.release()
    tmp.replace(path)
    return np.repeat(np.asarray(labels, dtype=np.int64), hold)


def make_photo_video(
    path: Path, photos: list[Path], labels: np.ndarray, *, hold: int = 6, fps: float = 30.0
) -> np.ndarray:
    """Write real photos as a 640x480 mp4, each whole and centred on mid-grey as a camera pointed at
    it would frame it (each shown for ``hold`` frames); return per-frame labels.

    Unreadable photos are left out, and so are their labels.
    """
    import cv2

    frames, shown = [], []
    for photo, label in zip(photos, labels):
        image = read_image(photo)[0]
        if image is None:
            continue
        h, w = image.shape[:2]
        scale = min(FRAME_SIZE[0] / w, FRAME_SIZE[1] / h)
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_LINEAR)
        frame = np.full((FRAME_SIZE[1], FRAME_SIZE[0], 3), 127, np.uint8)
        top, left = (FRAME_SIZE[1] - image.shape[0]) // 2, (FRAME_SIZE[0] - image.shape[1]) // 2
        frame[top : top + image.shape[0], left : left + image.shape[1]] = image
        frames.append(frame)
        shown.append(label)
    return make_frames_video(path, frames, np.asarray(shown, dtype=np.int64), hold=hold, fps=fps)


def capture_ceiling(video: Path, spec: InputSpec) -> dict[str, float]:
    """Decode every frame and resize it to the model input, nothing else; frames per second."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames, decode_s, resize_s = 0, 0.0, 0.0
    try:
        while True:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            t1 = time.perf_counter()
            if not ok:
                break
            to_model_image(frame, spec)
            t2 = time.perf_counter()
            decode_s, resize_s, frames = decode_s + (t1 - t0), resize_s + (t2 - t1), frames + 1
    finally:
        cap.release()
    total = decode_s + resize_s
    return {
        "frames": frames,
        "fps": frames / total if total else 0.0,
        "decode_ms": 1e3 * decode_s / max(1, frames),
        "resize_ms": 1e3 * resize_s / max(1, frames),
    }


def live_loop(
    model_file: Path,
    video: Path,
    frame_labels: np.ndarray | None,
    *,
    threads: int = 1,
    labels: tuple[str, ...] | None = None,
    timeout: float = 600,
    viewer: bool = False,
    options: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run ``python -m edge_runtime`` headless on the video in a fresh process; its summary plus accuracy.

    ``options`` are passed on (``--second-look off``).

    With ``viewer``, the live view is served (``--serve``) and one client reads its MJPEG stream for
    the whole run, so the cost of a watcher shows in the FPS.
    """
    with tempfile.TemporaryDirectory(prefix="edge-e2e-") as tmp:
        summary_path, jsonl_path = Path(tmp, "summary.json"), Path(tmp, "frames.jsonl")
        command = [
            sys.executable,
            "-m",
            "edge_runtime",
            "--model",
            str(model_file),
            "--source",
            str(video),
            "--headless",
            "--threads",
            str(threads),
            "--summary-json",
            str(summary_path),
            "--quiet",
            *options,
        ]
        if frame_labels is not None:
            command += ["--jsonl", str(jsonl_path)]
        watched: dict[str, int] = {}
        if viewer:
            port = _free_port()
            command += ["--serve", f"127.0.0.1:{port}"]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            reader = threading.Thread(target=_watch, args=(port, process, watched), daemon=True)
            reader.start()
            _, stderr = process.communicate(timeout=timeout)
            reader.join(5)
            result = subprocess.CompletedProcess(command, process.returncode, "", stderr)
        else:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
        summary = json.loads(summary_path.read_text())
        stages = summary["stages"]
        out: dict[str, Any] = {
            "fps": summary["fps"],
            "frames": summary["frames"],
            "threads": threads,
            "stage_ms": {name: stats["mean_ms"] for name, stats in stages.items()},
        }
        busy = sum(stats["mean_ms"] for name, stats in stages.items() if name != "capture")
        out["runtime_frame_ms"] = busy  # the main thread's own work per frame (capture runs alongside)
        out["runtime_overhead_fraction"] = (busy - stages["inference"]["mean_ms"]) / busy if busy else 0.0
        if viewer:
            out["viewer_jpegs"] = watched.get("jpegs", 0)
        out["looked_again"], out["zoom_answered"] = summary.get("looked_again", 0), summary.get("zoom_answered", 0)
        if frame_labels is not None and labels is not None and jsonl_path.exists():
            records = [json.loads(line) for line in jsonl_path.read_text().splitlines()]
            out.update(frame_scores(records, frame_labels, labels))
            # The main thread's work per frame (capture runs alongside): the median over the run.
            out["frame_ms_p50"] = float(
                np.median([sum(v for k, v in r["ms"].items() if k != "capture") for r in records])
            )
        return out


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _watch(port: int, process: subprocess.Popen, watched: dict[str, int]) -> None:
    """One viewer of the live view's stream until the process ends: counts the JPEGs it received."""
    import socket

    while process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: bench\r\n\r\n")
                while process.poll() is None:
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        return
                    watched["jpegs"] = watched.get("jpegs", 0) + chunk.count(b"Content-Type: image/jpeg")
        except OSError:
            time.sleep(0.05)  # not listening yet


def frame_scores(records: list[dict[str, Any]], frame_labels: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    """Frame accuracy from the runtime's JSONL lines: a garment frame counts when its answer (the
    ``label`` field: a class, ``unknown`` or ``uncertain``) is its class; empty frames (label -1)
    count apart, as the share given a class instead of ``unknown``."""
    truth = frame_labels[: len(records)]
    garment = [(r, labels[t]) for r, t in zip(records, truth) if t >= 0]
    empty = [r for r, t in zip(records, truth) if t < 0]
    out: dict[str, Any] = {
        "frame_accuracy": float(np.mean([r["label"] == t for r, t in garment])) if garment else 0.0,
        "frame_top1_accuracy": float(np.mean([r["top"][0][0] == t for r, t in garment])) if garment else 0.0,
    }
    if empty:
        out["empty_frames"] = len(empty)
        out["empty_labelled"] = float(np.mean([not r.get("unknown", False) for r in empty]))
    return out


def keras_predict_loop(keras_model: Any, video: Path, spec: InputSpec, frames: int = 60) -> dict[str, float]:
    """The tutorials' loop: read a frame, resize to 128x128, ``model.predict``, arg-max; per-frame time."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    times: list[float] = []
    try:
        ok, frame = cap.read()
        if ok:  # the first predict builds the graph; the tutorials pay it once too, so it is left out
            keras_model.predict(to_model_image(frame, spec)[None].astype(np.float32), verbose=0)
        while len(times) < frames:
            ok, frame = cap.read()
            if not ok:
                break
            t0 = time.perf_counter()
            probabilities = keras_model.predict(to_model_image(frame, spec)[None].astype(np.float32), verbose=0)
            int(np.argmax(probabilities[0] if isinstance(probabilities, list) else probabilities))
            times.append(time.perf_counter() - t0)
    finally:
        cap.release()
    per_frame = float(np.mean(times)) * 1e3 if times else 0.0
    return {"frames": len(times), "frame_ms": per_frame, "fps": 1e3 / per_frame if per_frame else 0.0}
