"""Teaching from the live page, timed: what a capture costs the loop, and pressing teach to the first answer.

Two live 640x480 MJPEG cameras at 30 FPS (:mod:`benchmarks.ipcamera`, held-out garment photos) read
by ``python -m edge_runtime --serve --teach-dir``; through the page's JSON API:

- the main loop's own work per frame of camera ``a`` (its JSONL ``ms``, capture wait left out) in
  four 3-second windows while a capture runs (N/2 frames of one class, from camera ``a`` then ``b``
  in turn), against four windows in between;
- those 2 classes x N examples taught: the seconds from the ``teach`` request to the first JSONL
  line answered by the taught file, and the teach itself.

``python -m benchmarks.teach_panel [--shots N]`` writes ``reports/teach_panel.json``.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.cli import ArgumentParser, run_command

TOKEN = "bench-token"


def measure(model: Path, shots: int = 20) -> dict[str, Any]:
    from edge_runtime.system import cpu_info

    from .cameras import _garment_video
    from .ipcamera import IPCamera

    with tempfile.TemporaryDirectory(prefix="edge-teach-panel-") as tmp_name:
        tmp = Path(tmp_name)
        video = _garment_video(tmp / "garments.mp4")
        cameras = {"a": IPCamera(video, fps=30), "b": IPCamera(video, fps=30)}
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_runtime", "--headless", "--quiet", "--model", str(model),
             "--source", f"a={cameras['a'].url}", "--source", f"b={cameras['b'].url}",
             "--serve", f"127.0.0.1:{port}", "--serve-token", TOKEN, "--teach-dir", str(tmp / "examples"),
             "--jsonl", "-"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        records: list[tuple[float, dict[str, Any]]] = []

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith("{"):
                    records.append((time.time(), json.loads(line)))

        threading.Thread(target=read, daemon=True).start()

        def post(action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/teach/{action}",
                data=json.dumps(body or {}).encode(),
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())

        try:
            time.sleep(6.0)  # the model loads and the streams connect
            idle, busy = [], []
            for k in range(4):
                start = time.time()
                time.sleep(3.0)
                idle.append((start, time.time()))
                start = time.time()
                post("capture", {"class": "first" if k % 2 == 0 else "second", "count": shots // 2, "seconds": 3,
                                 "camera": "a" if k % 2 == 0 else "b"})  # fmt: skip
                time.sleep(3.0)
                busy.append((start, time.time()))
                time.sleep(0.5)
            time.sleep(1.0)  # the last examples are saved
            pressed = time.time()
            post("teach")
            while not any(r["model"] == "taught" for _, r in records[-10:]) and time.time() - pressed < 60:
                time.sleep(0.01)
            first = next((t for t, r in records if r["model"] == "taught"), None)
            taught = post("status")["taught"]
        finally:
            process.terminate()
            process.wait(30)
            for camera in cameras.values():
                camera.close()

    def work(windows: list[tuple[float, float]]) -> dict[str, float]:
        ms = [sum(v for k, v in r["ms"].items() if k != "capture") for t, r in records
              if r["camera"] == "a" and any(a <= t < b for a, b in windows)]  # fmt: skip
        return {"frames": len(ms), "mean_ms": float(np.mean(ms)), "p50_ms": float(np.median(ms))}

    out: dict[str, Any] = {"cpu": cpu_info(), "model": str(model), "idle": work(idle), "capturing": work(busy)}
    out["capture_cost_mean"] = out["capturing"]["mean_ms"] / out["idle"]["mean_ms"] - 1
    out["capture_cost_p50"] = out["capturing"]["p50_ms"] / out["idle"]["p50_ms"] - 1
    out["taught"] = taught
    out["teach_to_first_answer_s"] = None if first is None else first - pressed
    return out


def summary_lines(report: dict[str, Any]) -> list[str]:
    idle, busy = report["idle"], report["capturing"]
    taught = report["taught"] or {}
    return [
        f"loop work per frame: {idle['mean_ms']:.3f} ms mean, {idle['p50_ms']:.3f} p50 idle; {busy['mean_ms']:.3f} "
        f"and {busy['p50_ms']:.3f} while capturing ({100 * report['capture_cost_mean']:+.1f}% mean, "
        f"{100 * report['capture_cost_p50']:+.1f}% p50)",
        f"teach: {', '.join(f'{k} {v}' for k, v in (taught.get('shots') or {}).items())} examples taught in "
        f"{taught.get('seconds', float('nan')):.2f} s; pressing teach to the first answer from the taught file: "
        f"{report['teach_to_first_answer_s']:.2f} s",
    ]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.teach_panel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="the running model (default: clothes_lite0's int8 TFLite in the runs folder)")
    parser.add_argument("--shots", type=int, default=20, help="examples captured per class (default: 20)")
    parser.add_argument("--reports-dir", help="where teach_panel.json goes (default: reports/ in the checkout)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), _work, argv, "nothing was written")


def _work(args: argparse.Namespace) -> int:
    from edge_common.errors import EdgeError

    from .cameras import model_file, write_report

    model = model_file(args.model)
    if not 5 <= args.shots <= 50:
        raise EdgeError(f"--shots {args.shots}: expected 5 to 50")
    report = measure(model, args.shots)
    write_report(report, "teach_panel.json", args.reports_dir, summary_lines(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
