"""`make demo`: no camera at hand? A 640x480 video of held-out real photos through the live loop.

The default model is the real-photo camera model (``clothes_lite0``); its video shows the
repository's held-out photos as a camera would, one class after another, each under the next camera
condition (near, mid, far, off-centre, blur, noise, JPEG, dim, tungsten), with an empty scene after
every third garment (the overlay then reads "none of these"). ``camera_cnn`` gets a video of its camera
test scenes instead. Writes ``reports/demo_input.mp4`` (never training images), ``reports/demo.mp4`` (the
annotated output), ``reports/demo.jsonl`` (one line per frame) and ``reports/demo_contact_sheet.png``
(a grid of annotated frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_common.cli import ArgumentParser, add_options, config_from_args, option, run_reporting_errors, setup_logging
from edge_common.files import atomic_write_bytes
from edge_runtime import formats

DEFAULT_MODEL = "clothes_lite0"  # the real-photo camera model


def contact_sheet(video: Path, columns: int = 4, rows: int = 3, width: int = 320) -> np.ndarray:
    """Evenly spaced frames of a video, tiled."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
    picks = np.linspace(0, total - 1, columns * rows).astype(int)
    tiles = []
    for index in picks:
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        if not ok:
            frame = np.zeros((240, 320, 3), np.uint8)
        tiles.append(cv2.resize(frame, (width, width * frame.shape[0] // frame.shape[1])))
    cap.release()
    grid = [np.hstack(tiles[r * columns : (r + 1) * columns]) for r in range(rows)]
    return np.vstack(grid)


@dataclass
class DemoConfig:
    """The options of ``python -m benchmarks.demo``."""

    model: str | None = option(help=f"a .tflite/.onnx file (default: runs/{DEFAULT_MODEL}/deploy/model_int8.tflite)")
    count: int = option(24, "held-out photos (or camera test scenes) in the video", bounds=(1, 1000))
    hold: int = option(15, "frames each photo or scene is shown", bounds=(1, 1000))
    reports_dir: str | None = option(help="where the demo's files go (default: reports/ in the checkout)")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.demo", description=__doc__.splitlines()[0])
    add_options(parser, DemoConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    parsed = build_parser().parse_args(argv)
    setup_logging()
    return run_reporting_errors(
        lambda: _demo(config_from_args(DemoConfig, parsed)), "files written so far were closed and kept"
    )


def _demo(args: DemoConfig) -> int:
    import cv2

    from edge_runtime.classifier import Classifier
    from edge_runtime.live import LiveConfig, run
    from edge_runtime.sources import open_source
    from train import evalsets, models, paths, runfolder

    from .pipeline import make_frames_video, make_scene_video

    reports = Path(args.reports_dir) if args.reports_dir else paths.default_reports_dir()
    default = paths.default_runs_dir() / DEFAULT_MODEL / runfolder.DEPLOY_DIR / formats.get("tflite_int8").file_name
    model = Path(args.model) if args.model else default

    reports.mkdir(parents=True, exist_ok=True)
    classifier = Classifier.open(model)
    video = reports / "demo_input.mp4"
    if classifier.metadata.model == "camera_cnn":
        scenes = evalsets.test_set("camera_scenes", models.get("camera_cnn").input, limit=args.count)
        make_scene_video(video, scenes.images, scenes.labels, hold=args.hold)
    else:  # as a camera sees them: near, mid and far, off-centre, blurred or dim, and empty scenes
        from train.datasets import camera_frames, folder

        held_out = folder.open_folder(paths.resolve_folder(evalsets.PHOTOS) / "test")
        held_out.files = held_out.interleaved(args.count)
        photos, labels = held_out.load_photos("BGR", max_side=480)
        frames, frame_labels = camera_frames.video_frames(photos, labels)
        make_frames_video(video, frames, frame_labels, hold=args.hold)
    stats = run(
        classifier,
        open_source(str(video)),
        LiveConfig(
            headless=True, output=str(reports / "demo.mp4"), jsonl=str(reports / "demo.jsonl"), bars=True, smooth=3
        ),
    )
    ok, png = cv2.imencode(".png", contact_sheet(reports / "demo.mp4"))
    atomic_write_bytes(reports / "demo_contact_sheet.png", png.tobytes())
    print(stats.summary())
    for name in ("demo_input.mp4", "demo.mp4", "demo.jsonl", "demo_contact_sheet.png"):
        print(f"wrote {reports / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
