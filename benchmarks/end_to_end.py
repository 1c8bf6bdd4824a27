"""The camera pipeline end to end: the camera model through the live loop on a video, against the
capture ceiling and the tutorials' ``model.predict`` loop, and the camera model under camera conditions."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.errors import DatasetError, EdgeError

from . import pipeline
from .config import BenchConfig, Progress, run_json
from .targets import ModelTarget

log = logging.getLogger("edge_classify.bench")
E2E_MODELS = ("clothes_lite0", "camera_cnn")  # the camera models, in order of preference


def e2e_camera(targets: list[ModelTarget]) -> ModelTarget | None:
    """The camera model the end-to-end pipeline runs, if this run has one."""
    return next((t for name in E2E_MODELS for t in targets if t.name == name), None)


def end_to_end(
    targets: list[ModelTarget], config: BenchConfig, keras_ok: bool, tmp: Path, progress: Progress, skipped: list[str]
) -> dict[str, Any]:
    camera = e2e_camera(targets)
    if camera is None:
        skipped.append(f"end-to-end camera pipeline (none of {', '.join(E2E_MODELS)} is in this run)")
        return {}
    video = tmp / "camera_640x480.mp4"
    hold = 3 if config.quick else 6
    try:
        if camera.dataset is not None and not _real_photos(camera.dataset):
            from train import evalsets

            scenes = evalsets.test_set(
                "camera_scenes",
                replace(camera.input_spec, height=128, width=128),
                data_dir=config.data_dir,
                limit=40 if config.quick else 150,
            )
            frame_labels = pipeline.make_scene_video(video, scenes.images, scenes.labels, hold=hold)
            source = f"{len(scenes.labels)} fixed camera test scenes"
        else:
            frame_labels, source = camera_video(camera, video, 40 if config.quick else 150, hold, config.backgrounds)
    except DatasetError as exc:
        skipped.append(f"end-to-end camera pipeline ({exc})")
        return {}
    out: dict[str, Any] = {
        "model": camera.name,
        "video": {"frames": int(len(frame_labels)), "size": list(pipeline.FRAME_SIZE), "source": source},
        "runtime": {},
    }
    progress.step("camera pipeline: capture ceiling")
    out["capture_ceiling"] = pipeline.capture_ceiling(video, camera.input_spec)
    progress.step("camera pipeline: live loop")
    for name in ("tflite_float32", "tflite_int8", "onnx_float32"):
        if name in camera.files:
            out["runtime"][name] = pipeline.live_loop(
                camera.files[name], video, frame_labels, threads=1, labels=camera.labels
            )
    alone = out["runtime"].get("tflite_int8", {})
    if alone.get("looked_again"):  # the second look's cost: the same run with the first look only
        first = pipeline.live_loop(
            camera.files["tflite_int8"], video, frame_labels, labels=camera.labels, options=("--second-look", "off")
        )
        if "frame_ms_p50" in first:
            out["second_look"] = {
                "file": "tflite_int8",
                "frame_ms_p50_on": alone["frame_ms_p50"],
                "frame_ms_p50_off": first["frame_ms_p50"],
                "cost": alone["frame_ms_p50"] / first["frame_ms_p50"] - 1,
                "frame_accuracy_on": alone["frame_accuracy"],
                "frame_accuracy_off": first["frame_accuracy"],
                "looked_again": alone["looked_again"] / max(1, alone["frames"]),
            }
    if "tflite_int8" in camera.files:  # the live view's cost: the same run with one viewer of its stream
        watched = pipeline.live_loop(camera.files["tflite_int8"], video, None, threads=1, viewer=True)
        alone = out["runtime"]["tflite_int8"]
        if "fps" in watched and alone.get("fps"):
            out["live_view"] = {
                "file": "tflite_int8",
                "fps_no_viewer": alone["fps"],
                "fps_one_viewer": watched["fps"],
                "fps_cost": 1 - watched["fps"] / alone["fps"],
                "overhead_no_viewer": alone["runtime_overhead_fraction"],
                "overhead_one_viewer": watched["runtime_overhead_fraction"],
                "jpegs_received": watched.get("viewer_jpegs", 0),
            }
    progress.step("camera pipeline: model.predict per frame")
    if keras_ok and camera.keras_file is not None:
        measured = run_json(
            [
                sys.executable,
                "-m",
                "benchmarks.keras_worker",
                str(camera.keras_file),
                "--images",
                str(tmp / f"{camera.name}-images.npy"),
                "--labels",
                str(tmp / f"{camera.name}-labels.npy"),
                "--predictions",
                str(tmp / "e2e-keras.npy"),
                "--calls",
                "1",
                "--video",
                str(video),
                "--video-frames",
                "10" if config.quick else "60",
                "--input-spec",
                json.dumps(camera.input_spec.to_dict()),
            ],
            timeout=900,
        )
        if "video" in measured:
            out["keras_predict"] = measured["video"]
            out["speedup_vs_keras_predict"] = {
                name: measured["video"]["frame_ms"] / (run["stage_ms"]["preprocess"] + run["stage_ms"]["inference"])
                for name, run in out["runtime"].items()
                if "stage_ms" in run
            }
    for run in out["runtime"].values():
        if "fps" in run and out["capture_ceiling"]["fps"]:
            run["fraction_of_capture_ceiling"] = run["fps"] / out["capture_ceiling"]["fps"]
    return out


# Which file of the camera model each camera-conditions row measures: float and int8 side by side.
CAMERA_FORMATS = ("tflite_int8", "tflite_float32")


def camera_conditions(
    target: ModelTarget | None, config: BenchConfig, progress: Progress, skipped: list[str]
) -> dict[str, Any]:
    """The camera model's files under every camera condition, with "none of these" (benchmarks.camera):
    on procedural backgrounds, and on the user's photos where ``--backgrounds`` names a folder."""
    from . import camera

    if target is None:
        return {}  # the end-to-end section already says there is no camera model in this run
    progress.step("camera conditions")
    if target.run is None or target.dataset is None or not _real_photos(target.dataset):
        skipped.append(f"camera conditions ({target.name} is not trained on photos)")
        return {}
    files = [target.files[name] for name in CAMERA_FORMATS if name in target.files]
    out: dict[str, Any] = {}
    # 170 photos (half the held-out set, every class in turn) keep make benchmark within its time.
    for key, backgrounds in (("procedural", None), ("real", config.backgrounds)):
        if key == "procedural" or backgrounds:
            try:
                out[key] = camera.measure(target.run, files, limit=20 if config.quick else 170, backgrounds=backgrounds)
            except EdgeError as exc:
                skipped.append(f"camera conditions on {key} backgrounds ({exc})")
    return out


def camera_video(
    target: ModelTarget, video: Path, count: int, hold: int, backgrounds: str | None = None
) -> tuple[np.ndarray, str]:
    """A 640x480 video of held-out photos as a camera sees them (near, mid, far, off-centre, faults, one
    condition after another) with an empty scene after every third garment; labels -1 mark empty frames.
    The scenes are procedural, or the photos of ``backgrounds`` (``--backgrounds DIR``)."""
    from train import evalsets
    from train.datasets import camera_frames

    if target.run is None or not target.run.folder:
        raise DatasetError(f"{target.name}: its photo folder is not here")
    data = evalsets.held_out_photos(target.run.folder, target.labels, seed=int(target.run.config.get("seed") or 0))
    data.files = data.interleaved(count)
    photos, labels = data.load_photos("BGR", max_side=480)
    scenes = camera_frames.Backgrounds.from_folder(backgrounds) if backgrounds else camera_frames.Backgrounds()
    frames, frame_labels = camera_frames.video_frames(photos, labels, backgrounds=scenes)
    return pipeline.make_frames_video(video, frames, frame_labels, hold=hold), (
        f"{len(photos)} held-out photos under the {len(camera_frames.GARMENT_CONDITIONS)} camera conditions in turn, "
        f"and {int(np.sum(frame_labels < 0))} empty scenes, on {scenes.source}"
    )


def held_out_photos(target: ModelTarget, count: int) -> tuple[list[Path], np.ndarray]:
    """Up to ``count`` held-out photos of a folder-trained model, every class in turn."""
    from train import paths
    from train.datasets import folder

    root = paths.resolve_folder(target.run.folder) if target.run is not None and target.run.folder else None
    if root is None or not root.is_dir():
        raise DatasetError(f"{target.name}: its photo folder is not here")
    data = folder.open_folder(root, "test" if (root / "test").is_dir() else None, class_names=target.labels)
    chosen = data.interleaved(count)
    return [path for path, _ in chosen], np.asarray([label for _, label in chosen], dtype=np.int64)


def _real_photos(dataset: str) -> bool:
    """Whether a model's dataset holds whole photos (else its video is camera test scenes)."""
    from train.datasets import kinds  # the tooling, from the checkout, only when a camera model is measured

    return kinds.get(dataset).real_photos


def several_cameras(
    target: ModelTarget | None, config: BenchConfig, progress: Progress, skipped: list[str]
) -> dict[str, Any]:
    """Four cameras in one process against one, the frame budget's saving, a swap (benchmarks.cameras)."""
    from . import cameras

    if target is None or "tflite_int8" not in target.files:
        return {}
    progress.step("several cameras")
    if config.quick:
        skipped.append("several cameras (full runs only: python -m benchmarks.cameras)")
        return {}
    try:
        return cameras.measure(target.files["tflite_int8"], seconds=8.0)
    except (OSError, ValueError, KeyError) as exc:
        skipped.append(f"several cameras ({type(exc).__name__}: {exc})")
        return {}
