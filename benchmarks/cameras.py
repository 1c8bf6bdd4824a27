"""Several cameras on one device: FPS per camera, memory, the frame budget's CPU saving, and a swap.

Each camera is a real MJPEG stream at 30 FPS of 640x480 frames (:mod:`benchmarks.ipcamera`), read
by ``python -m edge_runtime`` in a process of its own, measured from outside (``/proc``):

- ``one``, ``four``: one camera, and four cameras in one process (one model shared, served in turn):
  each camera's FPS, the process's CPU seconds per second and its peak resident memory;
- ``four_processes``: the other design, one process (one model) per camera, side by side;
- ``max_fps``: one camera uncapped, at ``--max-fps 5`` and ``--max-fps 2``: CPU seconds per second;
- ``swap``: a model swapped in by SIGHUP while a video file plays: frames lost (none expected).

``python -m benchmarks.cameras [--seconds S]`` writes ``reports/cameras.json``; ``make benchmark``
runs it too. Times depend on the machine; the report records which.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_common.cli import ArgumentParser, run_command

DEFAULT_FILE = "clothes_lite0/deploy/model_int8.tflite"  # in the runs folder


def _proc(pid: int) -> tuple[float, float]:
    """(CPU seconds so far, peak resident MB) of a running process."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = next(
        int(line.split()[1]) / 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmHWM")
    )
    return cpu, peak


def _run(model: Path, sources: list[str], seconds: float, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One ``python -m edge_runtime`` process on ``sources`` for ``seconds`` after its first frame."""
    with tempfile.TemporaryDirectory(prefix="edge-cameras-") as tmp:
        summary = Path(tmp) / "summary.json"
        args = [a for k, s in enumerate(sources) for a in ("--source", f"cam{k}={s}")]
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_runtime", "--headless", "--quiet", "--model", str(model), *args,
             "--summary-json", str(summary), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(4.0)  # the model loads and the streams connect
        cpu0, _ = _proc(process.pid)
        start = time.monotonic()
        time.sleep(seconds)
        cpu1, peak = _proc(process.pid)
        wall = time.monotonic() - start
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        stats = json.loads(summary.read_text())
    cameras = {c["name"]: c["frames"] / stats["wall_s"] for c in stats["cameras"]}
    return {"camera_fps": cameras, "cpu_per_s": (cpu1 - cpu0) / wall, "peak_rss_mb": peak, "frames": stats["frames"]}


def measure(model: Path, seconds: float = 8.0) -> dict[str, Any]:
    from edge_runtime.system import cpu_info

    from .ipcamera import IPCamera

    with tempfile.TemporaryDirectory(prefix="edge-cameras-") as tmp:
        video = _garment_video(Path(tmp) / "garments.mp4")
        cameras = [IPCamera(video, fps=30) for _ in range(4)]
        try:
            urls = [camera.url for camera in cameras]
            out: dict[str, Any] = {"cpu": cpu_info(), "model": str(model), "seconds": seconds}
            out["one"] = _run(model, urls[:1], seconds)
            out["four"] = _run(model, urls, seconds)
            out["four"]["rss_vs_one"] = out["four"]["peak_rss_mb"] / out["one"]["peak_rss_mb"]
            out["four_processes"] = _separate(model, urls, seconds)
            out["max_fps"] = _budget(model, urls[0], seconds, out["one"]["cpu_per_s"])
            heavier = model.with_name("model_float32.tflite")
            if heavier.is_file() and heavier != model:  # a model that costs more per frame saves more
                out["max_fps_float32"] = _budget(heavier, urls[0], seconds)
        finally:
            for camera in cameras:
                camera.close()
        out["swap"] = _swap(model, video, Path(tmp))
    return out


def _budget(model: Path, url: str, seconds: float, uncapped: float | None = None) -> dict[str, Any]:
    """CPU seconds per second of one camera uncapped, at --max-fps 5 and at --max-fps 2."""
    out: dict[str, Any] = {"file": model.name}
    out["uncapped"] = uncapped if uncapped is not None else _run(model, [url], seconds)["cpu_per_s"]
    for cap in ("5", "2"):
        out[cap] = _run(model, [url], seconds, ("--max-fps", cap))["cpu_per_s"]
        out[f"saving_{cap}"] = out["uncapped"] / max(out[cap], 1e-9)
    return out


def _separate(model: Path, urls: list[str], seconds: float) -> dict[str, Any]:
    """Four processes side by side, one camera and one model each."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        runs = list(pool.map(lambda url: _run(model, [url], seconds), urls))
    return {
        "camera_fps": [next(iter(r["camera_fps"].values())) for r in runs],
        "cpu_per_s": sum(r["cpu_per_s"] for r in runs),
        "peak_rss_mb": sum(r["peak_rss_mb"] for r in runs),
    }


def _swap(model: Path, video: Path, tmp: Path) -> dict[str, Any]:
    """A model swapped in by SIGHUP while a video file plays at 30 frames a second."""
    import shutil

    copy = tmp / "model.tflite"
    shutil.copyfile(model, copy)
    jsonl = tmp / "swap.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", "--headless", "--quiet", "--model", str(copy), "--source", str(video),
         "--max-fps", "30", "--jsonl", str(jsonl)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(4.0)
    other = model.with_name("model_float32.tflite")
    shutil.copyfile(other if other.is_file() else model, copy)
    process.send_signal(signal.SIGHUP)
    process.wait(120)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    frames = [r["frame"] for r in records]
    return {
        "frames": len(records),
        "lost": len(set(range(max(frames) + 1)) - set(frames)) if frames else 0,
        "models": len({r["model_sha256"] for r in records}),
    }


def _garment_video(path: Path) -> Path:
    """30 s of held-out garment photos, 640x480 at 30 FPS (the streams loop it)."""
    import cv2
    import numpy as np

    from train.paths import resolve_folder

    root = resolve_folder("data/clothing-small") / "test"
    shots = [sorted((root / kind).glob("*.jpg"))[0] for kind in ("shoes", "pants", "t-shirt", "dress", "hat")]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (640, 480))
    for shot in shots:
        image = cv2.imread(str(shot))
        if image is None:
            raise FileNotFoundError(shot)
        scale = min(480 / image.shape[0], 640 / image.shape[1])
        image = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)))
        frame = np.full((480, 640, 3), 127, np.uint8)
        top, left = (480 - image.shape[0]) // 2, (640 - image.shape[1]) // 2
        frame[top : top + image.shape[0], left : left + image.shape[1]] = image
        for _ in range(60):
            writer.write(frame)
    writer.release()
    return path


def summary_lines(report: dict[str, Any]) -> list[str]:
    one, four, apart = report["one"], report["four"], report["four_processes"]
    caps = report["max_fps"]
    swap = report["swap"]
    return [
        f"one camera: {next(iter(one['camera_fps'].values())):.1f} FPS, {one['cpu_per_s']:.2f} CPU s/s, "
        f"peak {one['peak_rss_mb']:.0f} MB",
        "four cameras, one process: "
        + ", ".join(f"{name} {fps:.1f}" for name, fps in four["camera_fps"].items())
        + f" FPS; {four['cpu_per_s']:.2f} CPU s/s; peak {four['peak_rss_mb']:.0f} MB ({four['rss_vs_one']:.2f}x one)",
        "four processes, one camera each: "
        + ", ".join(f"{fps:.1f}" for fps in apart["camera_fps"])
        + f" FPS; {apart['cpu_per_s']:.2f} CPU s/s; {apart['peak_rss_mb']:.0f} MB together",
        *(
            f"--max-fps, {c['file']}: uncapped {c['uncapped']:.3f} CPU s/s, 5 FPS {c['5']:.3f} ({c['saving_5']:.1f}x "
            f"less), 2 FPS {c['2']:.3f} ({c['saving_2']:.1f}x less)"
            for c in (caps, report.get("max_fps_float32"))
            if c
        ),
        f"swap by SIGHUP while playing a file: {swap['frames']} frames, {swap['lost']} lost, {swap['models']} models",
    ]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.cameras", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help=f"the model file (default: {DEFAULT_FILE} in the runs folder)")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long each run is measured (default: 8)")
    parser.add_argument("--reports-dir", help="where cameras.json goes (default: reports/ in the checkout)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), _work, argv, "nothing was written")


def model_file(given: str | None) -> Path:
    """``--model``, else clothes_lite0's int8 TFLite file in the runs folder; refused when missing."""
    from edge_common.errors import EdgeError
    from edge_common.paths import default_runs_dir

    model = Path(given) if given else default_runs_dir() / DEFAULT_FILE
    if not model.is_file():
        raise EdgeError(f"--model {model}: no such file; run `make convert` or pass a model file")
    return model


def write_report(report: dict[str, Any], name: str, reports_dir: str | None, lines: list[str]) -> None:
    """``reports_dir/name`` (default: reports/ in the checkout), written atomically; then the summary lines."""
    from edge_common.files import atomic_write_text, dump_json
    from train import paths

    folder = Path(reports_dir).expanduser() if reports_dir else paths.default_reports_dir()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / name, dump_json(report))
    print("\n".join(lines))
    print(f"wrote {folder / name}")


def _work(args: argparse.Namespace) -> int:
    from edge_common.errors import EdgeError

    model = model_file(args.model)
    if not 1 <= args.seconds <= 600:
        raise EdgeError(f"--seconds {args.seconds:g}: expected 1 to 600")
    report = measure(model, args.seconds)
    write_report(report, "cameras.json", args.reports_dir, summary_lines(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
