"""The benchmark: every model x every format x thread count, plus the camera pipeline end to end.

The parent process never imports TensorFlow: each deployable file is measured by
``benchmarks.worker`` in its own fresh process, the Keras reference by ``benchmarks.keras_worker``.
Results are saved after each model (``reports/.benchmark-partial.json``), so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.cli import option
from edge_common.errors import DatasetError, EdgeError
from edge_common.files import atomic_write_text, dump_json, read_json, sha256_file
from edge_runtime import formats as formats_mod
from edge_runtime import system
from edge_runtime.contract import InputSpec
from edge_runtime.metadata import load_bytes, read_metadata

from . import pipeline, report

log = logging.getLogger("edge_classify.bench")
PARTIAL_NAME = ".benchmark-partial.json"


def _default_threads() -> tuple[int, ...]:
    return tuple(sorted({1, os.cpu_count() or 1}))


_ALL_FORMATS = tuple(fmt.name for fmt in formats_mod.FORMATS)


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run; every field is a ``python -m benchmarks`` option."""

    models: tuple[str, ...] = option((), "models to measure (default: every registry model; device mode: every "
                                         "deploy folder)", metavar="MODEL")
    formats: tuple[str, ...] = option(_ALL_FORMATS, "default: all: " + ", ".join(_ALL_FORMATS),
                                      choices=_ALL_FORMATS, metavar="FORMAT")
    threads: tuple[int, ...] = option(help="thread counts to sweep (default: 1 and all cores)",
                                      default_factory=_default_threads)
    quick: bool = option(False, "500 test images, short timings, tiny video (what the test suite runs)")
    deploy_dir: str | None = option(help="device mode: measure the converted files in this folder (or its "
                                         "subfolders) with the base install only; Keras rows are skipped")
    runs_dir: str | None = option(help="run folders (default: runs/ in the checkout, or $EDGE_RUNS_DIR)")
    reports_dir: str | None = option(help="where reports go (default: reports/ in the checkout)")
    data_dir: str | None = option(help="Fashion-MNIST folder (default: search; see README)")
    e2e: bool = option(True, "skip the end-to-end camera pipeline")
    fresh: bool = option(False, "ignore results saved by an interrupted run")
    train_missing: bool = option(True, "skip models that are not trained instead of training them",
                                 flag="--no-train")

    def validate(self) -> None:
        if any(t < 1 for t in self.threads):
            raise EdgeError("--threads values must be at least 1")

    @property
    def mode(self) -> str:
        return "device" if self.deploy_dir else ("quick" if self.quick else "full")

    @property
    def eval_limit(self) -> int | None:
        return 500 if self.quick else None

    @property
    def min_seconds(self) -> float:
        return 0.2 if self.quick else 1.0

    @property
    def min_runs(self) -> int:
        return 50 if self.quick else 500


@dataclass
class ModelTarget:
    """One model to measure: where its files are and what it is tested on."""

    name: str
    deploy_dir: Path
    input_spec: InputSpec
    labels: tuple[str, ...]
    dataset: str | None  # what it was trained on; None when unknown (device mode without registry entry)
    keras_file: Path | None = None
    run: Any = None  # train.runfolder.RunFolder: the test set exactly as training recorded it
    files: dict[str, Path] = field(default_factory=dict)


class Progress:
    """One line per step with a bar; a carriage-return bar on terminals, plain lines otherwise."""

    def __init__(self, total: int) -> None:
        self.total, self.done = max(1, total), 0
        self.tty = sys.stderr.isatty()

    def step(self, text: str) -> None:
        self.done += 1
        filled = int(24 * self.done / self.total)
        line = f"[{'#' * filled}{'.' * (24 - filled)}] {self.done}/{self.total} {text}"
        print(("\r\x1b[2K" if self.tty else "") + line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the bar at 100%: a step that turned out to have nothing to do (a skipped part) still counts."""
        if self.done < self.total:
            self.done = self.total - 1
            self.step("done")
        if self.tty:
            print(file=sys.stderr)


def run(config: BenchConfig) -> dict[str, Any]:
    """Measure, write reports/benchmark.{json,csv,md} and pareto.png, return the report dict."""
    from train import paths

    config.validate()
    reports = Path(config.reports_dir).expanduser() if config.reports_dir else paths.default_reports_dir()
    reports.mkdir(parents=True, exist_ok=True)
    env = system.environment()
    skipped: list[str] = []
    targets = _device_targets(config) if config.deploy_dir else _run_targets(config, skipped)
    partial_path = reports / PARTIAL_NAME
    partial = {} if config.fresh else _load_partial(partial_path, config, env)
    keras_ok = config.mode != "device" and "keras" in config.formats and _has_tensorflow()
    if "keras" in config.formats and not keras_ok:
        skipped.append("Keras rows and the model.predict baseline (TensorFlow is not installed here)"
                       if config.mode == "device" or not _has_tensorflow() else "Keras rows")

    steps = sum(len(t.files) * len(config.threads) + (1 if keras_ok and t.keras_file else 0) for t in targets)
    pairs = _pairs(targets)
    camera_target = _e2e_camera(targets)
    progress = Progress(steps + len(pairs) + (4 if config.e2e and camera_target is not None else 0))
    rows: list[dict[str, Any]] = []
    test_sets: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for target in targets:
            key = _target_key(target, config)
            if key in partial:
                rows.extend(partial[key]["rows"])
                test_sets[target.name] = partial[key]["test_set"]
                progress.done += len(target.files) * len(config.threads) + (1 if keras_ok and target.keras_file else 0)
                log.info("%s: measured earlier in this run (resuming); reusing", target.name)
                continue
            model_rows, test_name = _measure_target(target, config, keras_ok, tmp, progress, skipped)
            rows.extend(model_rows)
            test_sets[target.name] = test_name
            partial[key] = {"rows": model_rows, "test_set": test_name}
            _save_partial(partial_path, partial, config, env)
        compared = [_paired(pair, config, progress) for pair in pairs]
        end_to_end = _end_to_end(targets, config, keras_ok, tmp, progress, skipped) if config.e2e else {}
        conditions = _camera_conditions(camera_target, config, progress, skipped) if config.e2e else {}
    progress.close()
    _mark_pareto(rows, targets, test_sets)
    note = system.int8_note(env["cpu"])
    result = {
        "mode": config.mode,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": env,
        "settings": {"threads": list(config.threads), "min_seconds": config.min_seconds, "min_runs": config.min_runs,
                     "eval_limit": config.eval_limit,
                     "test_sets": "; ".join(f"{k}: {v}" for k, v in test_sets.items()) or "none"},
        "rows": rows,
        "paired": compared,
        "end_to_end": end_to_end,
        "camera_conditions": conditions,
        "verdicts": report.verdicts(rows, note, bool(env["cpu"].get("int8_dot_product"))),
        "int8_note": note,
        "int8_vs_float32": _int8_ratios(rows),
        "skipped": skipped,
    }
    report.write_all(reports, result)
    partial_path.unlink(missing_ok=True)
    return result


# --- targets -----------------------------------------------------------------------------------

def _run_targets(config: BenchConfig, skipped: list[str]) -> list[ModelTarget]:
    """Registry models from runs/: trained if missing (full mode), converted if out of date."""
    from convert.converter import ConvertConfig, convert
    from train import models
    from train.runfolder import MODEL_FILE, RunFolder, run_dir_for

    names = config.models or tuple(models.REGISTRY)
    deployable = tuple(f for f in config.formats if formats_mod.get(f).deployable)
    targets = []
    for name in names:
        models.get(name)
        run_dir = run_dir_for(name, config.runs_dir)
        if not (run_dir / MODEL_FILE).is_file():
            if not config.train_missing or config.quick:
                skipped.append(f"{name} (no trained model in {run_dir}; run `python -m train {name}`)")
                continue
            log.info("%s: no trained model; training it now (this is the slow part; shipped models skip it)", name)
            from train import trainer
            from train.config import TrainConfig

            trainer.run(TrainConfig(model=name, output_dir=str(run_dir.parent), data_dir=config.data_dir))
        # Quick runs accept deploy files that are current for this model.keras whatever settings made
        # them, so a quick benchmark never replaces fully verified files with quickly checked ones.
        shipped = models.get(name).formats or deployable  # a model is measured in the formats it ships
        report_ = convert(ConvertConfig(model=name, runs_dir=config.runs_dir,
                                        formats=tuple(f for f in deployable if f in shipped),
                                        data_dir=config.data_dir, eval_limit=config.eval_limit,
                                        opencv_check=0 if config.quick else 500, gates=not config.quick,
                                        accept_existing=config.quick))
        run = RunFolder.open(run_dir)
        target = ModelTarget(name, report_.deploy_dir, run.input_spec, run.labels, run.dataset, run.model_file, run)
        for result in report_.results:
            if result.status == "ok" and result.format in deployable:
                target.files[result.format] = report_.deploy_dir / result.file
            elif result.status != "ok":
                skipped.append(f"{name}/{result.format} "
                               f"({'failed its conversion gate' if result.status == 'rejected' else result.gate})")
        targets.append(target)
        for size in () if config.quick else models.get(name).bench_sizes:
            targets.append(_size_variant(run, size, config))
    return targets


VARIANT_FORMATS = ("tflite_float32", "tflite_int8")


def _size_variant(run: Any, size: int, config: BenchConfig) -> ModelTarget:
    """The same weights at another input size (fully convolutional, global pooling), exported at
    benchmark time to float32 and int8 TFLite, so the Pareto plot shows what input size buys."""
    from convert.converter import ConvertConfig, convert
    from train import paths, runfolder
    from train.runfolder import RunFolder

    reports = Path(config.reports_dir).expanduser() if config.reports_dir else paths.default_reports_dir()
    folder = reports / "variants" / f"{run.model}_{size}"
    source_sha = sha256_file(run.model_file)
    recorded = runfolder.read_metrics(folder)
    if recorded.get("source_keras_sha256") != source_sha or not (folder / runfolder.MODEL_FILE).is_file():
        _export_variant(run, size, folder, source_sha)
    report_ = convert(ConvertConfig(model=str(folder), formats=VARIANT_FORMATS, data_dir=config.data_dir,
                                    opencv_check=0, gates=True))
    variant = RunFolder.open(folder)
    target = ModelTarget(variant.model, report_.deploy_dir, variant.input_spec, variant.labels, variant.dataset,
                         variant.model_file, variant)
    target.files = {r.format: report_.deploy_dir / r.file for r in report_.results if r.status == "ok"}
    return target


def _export_variant(run: Any, size: int, folder: Path, source_sha: str) -> None:
    import keras

    from train import models, runfolder

    trained = keras.saving.load_model(run.model_file, safe_mode=True, compile=False)
    spec = replace(run.input_spec, height=size, width=size)
    registry = models.get(run.model)
    variant = models.build_model(registry, len(run.labels), input_spec=spec, backbone=run.config.get("backbone"),
                                 dropout=run.config.get("dropout") or 0.0)
    for layer in variant.layers:
        layer.set_weights(trained.get_layer(layer.name).get_weights())
    runfolder.write_run(folder, variant, run.labels, {**run.config, "model": f"{run.model}_{size}", "input_size": size},
                        {"model": f"{run.model}_{size}", "dataset": run.dataset, "input": spec.to_dict(),
                         "source_keras_sha256": source_sha, "note": f"{run.model}'s weights at {size}x{size}"})


def _device_targets(config: BenchConfig) -> list[ModelTarget]:
    """Deploy folders copied to a device: one folder, or a folder of them."""
    root = Path(config.deploy_dir).expanduser()
    if not root.is_dir():
        raise EdgeError(f"--deploy-dir {root} is not a folder; copy runs/<MODEL>/deploy/ to the device and pass it")
    folders = [root] if _model_files(root) else sorted(p for p in root.iterdir() if p.is_dir() and _model_files(p))
    if not folders:
        raise EdgeError(f"{root} holds no .tflite or .onnx files; copy runs/<MODEL>/deploy/ here")
    targets = []
    for folder in folders:
        target: ModelTarget | None = None
        for path in _model_files(folder):
            # The file's own metadata says what it is; a damaged file stops the run with its error.
            kind, data = load_bytes(path)
            metadata = read_metadata(kind, data, path)
            fmt = formats_mod.BY_NAME.get(metadata.format)
            if fmt is None or fmt.name not in config.formats:
                continue
            if target is None:
                spec = replace(metadata.input, dtype="float32", quantization=None)
                target = ModelTarget(metadata.model, folder, spec, metadata.labels, _registry_dataset(metadata.model))
            target.files[fmt.name] = path
        if target is not None and target.files and (not config.models or target.name in config.models):
            # Rows in the formats table's order (float32 before int8), as in full mode, not file-name order.
            target.files = dict(sorted(target.files.items(), key=lambda item: _ALL_FORMATS.index(item[0])))
            targets.append(target)
    if not targets:
        raise EdgeError(f"{root}: no converted model files of the requested formats; copy runs/<MODEL>/deploy/ here")
    return targets


def _model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".tflite", ".onnx") and p.is_file())


def _registry_dataset(name: str) -> str | None:
    from train import models

    return models.REGISTRY[name].dataset if name in models.REGISTRY else None


# --- measuring ---------------------------------------------------------------------------------

def _measure_target(target: ModelTarget, config: BenchConfig, keras_ok: bool, tmp: Path, progress: Progress,
                    skipped: list[str]) -> tuple[list[dict[str, Any]], str]:
    images_path, labels_path, test_name = _save_test_set(target, config, tmp, skipped)
    reference_path = None
    rows = []
    if keras_ok and target.keras_file is not None and images_path is not None:
        reference_path = tmp / f"{target.name}-keras-top1.npy"
        progress.step(f"{target.name} keras (model.predict)")
        keras_row = _keras_row(target, images_path, labels_path, reference_path, config)
        rows.append(keras_row)
        if "error" in keras_row:
            reference_path = None
    for name, path in target.files.items():
        accuracy_row: dict[str, Any] | None = None
        for threads in config.threads:
            progress.step(f"{target.name} {name} threads={threads}")
            command = [sys.executable, "-m", "benchmarks.worker", str(path), "--threads", str(threads),
                       "--min-seconds", str(config.min_seconds), "--min-runs", str(config.min_runs),
                       "--batch", "8" if config.quick else "32"]
            # Accuracy does not depend on the thread count: it is measured once per file.
            if images_path is not None and accuracy_row is None:
                command += ["--images", str(images_path), "--labels", str(labels_path)]
                if reference_path is not None and reference_path.exists():
                    command += ["--reference", str(reference_path)]
            measured = _run_json(command)
            if accuracy_row is None and "accuracy" in measured:
                accuracy_row = measured
            elif accuracy_row is not None:
                measured.update({key: accuracy_row[key] for key in ("accuracy", "agreement", "images")
                                 if key in accuracy_row}, accuracy_measured_at_threads=accuracy_row["threads"])
            rows.append({"model": target.name, "format": name, "threads": threads, "size_bytes": path.stat().st_size,
                         "file": str(path), "sha256": sha256_file(path), **measured})
    return rows, test_name


def _pairs(targets: list[ModelTarget]) -> list[tuple[ModelTarget, ModelTarget, str]]:
    """The comparisons of ``paired.PAIRS`` whose files are both here: (model, baseline, format)."""
    from .paired import PAIRS

    by_name = {target.name: target for target in targets}
    return [(by_name[model], by_name[baseline], fmt) for model, baseline, fmt_list in PAIRS
            if model in by_name and baseline in by_name for fmt in fmt_list
            if fmt in by_name[model].files and fmt in by_name[baseline].files]


def _paired(pair: tuple[ModelTarget, ModelTarget, str], config: BenchConfig, progress: Progress) -> dict[str, Any]:
    """Both files timed in alternating rounds in one process at 1 thread (see benchmarks.paired): the
    per-file rows are minutes apart, and a shared machine drifts by more than the difference."""
    from .paired import verdict

    model, baseline, fmt = pair
    progress.step(f"paired: {model.name} against {baseline.name}, {fmt}")
    rounds, block = (6, 0.2) if config.quick else (20, 0.5)
    measured = _run_json([sys.executable, "-m", "benchmarks.paired", str(model.files[fmt]), str(baseline.files[fmt]),
                          "--threads", "1", "--rounds", str(rounds), "--block-seconds", str(block), "--json"])
    entry = {"model": model.name, "baseline": baseline.name, "format": fmt, **measured}
    if "pairs" in measured:
        entry["verdict"] = verdict(measured["pairs"][0], rounds, f"{model.name} {fmt}", f"{baseline.name} {fmt}")
    return entry


def _save_test_set(target: ModelTarget, config: BenchConfig, tmp: Path,
                   skipped: list[str]) -> tuple[Path | None, Path | None, str]:
    from train import evalsets

    if target.dataset is None:
        skipped.append(f"{target.name} accuracy (not a registry model, no test set known)")
        return None, None, "none"
    try:
        if target.run is not None:
            test = target.run.test_set(data_dir=config.data_dir, limit=config.eval_limit)
        else:  # device mode: the registry model's standard test set
            test = evalsets.test_set(target.dataset, target.input_spec, data_dir=config.data_dir,
                                     limit=config.eval_limit)
    except DatasetError as exc:
        skipped.append(f"{target.name} accuracy ({exc})")
        return None, None, "none"
    images_path, labels_path = tmp / f"{target.name}-images.npy", tmp / f"{target.name}-labels.npy"
    np.save(images_path, np.ascontiguousarray(test.images))
    np.save(labels_path, test.labels)
    return images_path, labels_path, test.name


def _keras_row(target: ModelTarget, images: Path, labels: Path, reference: Path, config: BenchConfig) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.keras_worker", str(target.keras_file), "--images", str(images),
               "--labels", str(labels), "--predictions", str(reference), "--calls", "5" if config.quick else "30"]
    measured = _run_json(command, timeout=900)
    return {"model": target.name, "format": "keras", "threads": None, "size_bytes": target.keras_file.stat().st_size,
            "file": str(target.keras_file), **measured}


# The camera model the end-to-end pipeline runs: the real-photo model when it is measured, else the
# from-scratch one on its synthetic scenes.
E2E_MODELS = ("clothes_lite0", "camera_cnn")


def _e2e_camera(targets: list[ModelTarget]) -> ModelTarget | None:
    """The camera model the end-to-end pipeline runs, if this run has one."""
    return next((t for name in E2E_MODELS for t in targets if t.name == name), None)


def _end_to_end(targets: list[ModelTarget], config: BenchConfig, keras_ok: bool, tmp: Path, progress: Progress,
                skipped: list[str]) -> dict[str, Any]:
    camera = _e2e_camera(targets)
    if camera is None:
        skipped.append(f"end-to-end camera pipeline (none of {', '.join(E2E_MODELS)} is in this run)")
        return {}
    video = tmp / "camera_640x480.mp4"
    hold = 3 if config.quick else 6
    try:
        if camera.dataset == "camera_scenes":
            from train import evalsets

            scenes = evalsets.test_set("camera_scenes", replace(camera.input_spec, height=128, width=128),
                                       data_dir=config.data_dir, limit=40 if config.quick else 150)
            frame_labels = pipeline.make_scene_video(video, scenes.images, scenes.labels, hold=hold)
            source = f"{len(scenes.labels)} fixed camera test scenes"
        else:
            frame_labels, source = _camera_video(camera, video, 40 if config.quick else 150, hold)
    except DatasetError as exc:
        skipped.append(f"end-to-end camera pipeline ({exc})")
        return {}
    out: dict[str, Any] = {"model": camera.name,
                           "video": {"frames": int(len(frame_labels)), "size": list(pipeline.FRAME_SIZE),
                                     "source": source},
                           "runtime": {}}
    progress.step("camera pipeline: capture ceiling")
    out["capture_ceiling"] = pipeline.capture_ceiling(video, camera.input_spec)
    progress.step("camera pipeline: live loop")
    for name in ("tflite_float32", "tflite_int8", "onnx_float32"):
        if name in camera.files:
            out["runtime"][name] = pipeline.live_loop(camera.files[name], video, frame_labels, threads=1,
                                                      labels=camera.labels)
    progress.step("camera pipeline: model.predict per frame")
    if keras_ok and camera.keras_file is not None:
        measured = _run_json([sys.executable, "-m", "benchmarks.keras_worker", str(camera.keras_file),
                              "--images", str(tmp / f"{camera.name}-images.npy"),
                              "--labels", str(tmp / f"{camera.name}-labels.npy"),
                              "--predictions", str(tmp / "e2e-keras.npy"), "--calls", "1", "--video", str(video),
                              "--video-frames", "10" if config.quick else "60",
                              "--input-spec", json.dumps(camera.input_spec.to_dict())], timeout=900)
        if "video" in measured:
            out["keras_predict"] = measured["video"]
            out["speedup_vs_keras_predict"] = {
                name: measured["video"]["frame_ms"] / (run["stage_ms"]["preprocess"] + run["stage_ms"]["inference"])
                for name, run in out["runtime"].items() if "stage_ms" in run}
    for run in out["runtime"].values():
        if "fps" in run and out["capture_ceiling"]["fps"]:
            run["fraction_of_capture_ceiling"] = run["fps"] / out["capture_ceiling"]["fps"]
    return out


# Which file of the camera model each camera-conditions row measures: float and int8 side by side.
CAMERA_FORMATS = ("tflite_int8", "tflite_float32")


def _camera_conditions(target: ModelTarget | None, config: BenchConfig, progress: Progress,
                       skipped: list[str]) -> dict[str, Any]:
    """The camera model's files under every camera condition, with "none of these" (benchmarks.camera)."""
    from . import camera

    if target is None:
        return {}  # the end-to-end section already says there is no camera model in this run
    progress.step("camera conditions")
    if target.run is None or target.dataset != "folder":
        skipped.append(f"camera conditions ({target.name} is not trained on photos)")
        return {}
    files = [target.files[name] for name in CAMERA_FORMATS if name in target.files]
    try:
        # 170 photos (half the held-out set, every class in turn) keep make benchmark within its time.
        return camera.measure(target.run, files, limit=20 if config.quick else 170)
    except EdgeError as exc:
        skipped.append(f"camera conditions ({exc})")
        return {}


def _camera_video(target: ModelTarget, video: Path, count: int, hold: int) -> tuple[np.ndarray, str]:
    """A 640x480 video of held-out photos as a camera sees them (near, mid, far, off-centre, faults, one
    condition after another) with an empty scene after every third garment; labels -1 mark empty frames."""
    from train import evalsets
    from train.datasets import camera_frames

    if target.run is None or not target.run.folder:
        raise DatasetError(f"{target.name}: its photo folder is not here")
    data = evalsets.held_out_photos(target.run.folder, target.labels, seed=int(target.run.config.get("seed") or 0))
    data.files = data.interleaved(count)
    photos, labels = data.load_photos("BGR", max_side=480)
    frames, frame_labels = camera_frames.video_frames(photos, labels)
    return pipeline.make_frames_video(video, frames, frame_labels, hold=hold), (
        f"{len(photos)} held-out photos under the {len(camera_frames.GARMENT_CONDITIONS)} camera conditions in turn, "
        f"and {int(np.sum(frame_labels < 0))} empty scenes")


def _held_out_photos(target: ModelTarget, count: int) -> tuple[list[Path], np.ndarray]:
    """Up to ``count`` held-out photos of a folder-trained model, every class in turn."""
    from train import paths
    from train.datasets import folder

    root = paths.resolve_folder(target.run.folder) if target.run is not None and target.run.folder else None
    if root is None or not root.is_dir():
        raise DatasetError(f"{target.name}: its photo folder is not here")
    data = folder.open_folder(root, "test" if (root / "test").is_dir() else None, class_names=target.labels)
    chosen = data.interleaved(count)
    return [path for path, _ in chosen], np.asarray([label for _, label in chosen], dtype=np.int64)


def _mark_pareto(rows: list[dict[str, Any]], targets: list[ModelTarget], test_sets: dict[str, str]) -> None:
    """Pareto flags at 1 thread, within each test set (camera scenes and Fashion-MNIST differ)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    datasets = {t.name: (t.dataset or t.name) for t in targets}
    for row in rows:
        row["pareto"] = False
        if row.get("threads") in (1, None) and row.get("latency_ms_p50") and row.get("accuracy") is not None:
            groups.setdefault(datasets.get(row["model"], row["model"]), []).append(row)
        row["test_set"] = test_sets.get(row["model"], datasets.get(row["model"], row["model"]))
    for members in groups.values():
        for row, on_front in zip(members, report.pareto_front([(r["latency_ms_p50"], r["accuracy"]) for r in members])):
            row["pareto"] = on_front


def _int8_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    ratios = {}
    for row in rows:
        if row["format"] == "tflite_int8" and row.get("threads") == 1 and row.get("latency_ms_p50"):
            base = next((r for r in rows if r["model"] == row["model"] and r["format"] == "tflite_float32"
                         and r.get("threads") == 1 and r.get("latency_ms_p50")), None)
            if base:
                ratios[row["model"]] = row["latency_ms_p50"] / base["latency_ms_p50"]
    return ratios


# --- plumbing ----------------------------------------------------------------------------------

def _run_json(command: list[str], timeout: float = 600) -> dict[str, Any]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {result.returncode}: {tail[:200]}"}
    return json.loads(lines[-1])


def _has_tensorflow() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None


def _target_key(target: ModelTarget, config: BenchConfig) -> str:
    digest = hashlib.sha256()
    for name, path in sorted(target.files.items()):
        digest.update(name.encode() + sha256_file(path).encode())
    if target.keras_file is not None:
        digest.update(sha256_file(target.keras_file).encode())
    return f"{target.name}:{digest.hexdigest()[:16]}"


def _load_partial(path: Path, config: BenchConfig, env: dict[str, Any]) -> dict[str, Any]:
    data = read_json(path)
    if not data or data.get("fingerprint") != _fingerprint(config, env):
        return {}
    return data.get("models", {})


def _save_partial(path: Path, models: dict[str, Any], config: BenchConfig, env: dict[str, Any]) -> None:
    atomic_write_text(path, dump_json({"fingerprint": _fingerprint(config, env), "models": models}))


def _fingerprint(config: BenchConfig, env: dict[str, Any]) -> str:
    settings = {k: v for k, v in asdict(config).items() if k not in ("fresh", "models", "reports_dir")}
    return hashlib.sha256(json.dumps([settings, env["cpu"], env["versions"]], sort_keys=True).encode()).hexdigest()[:16]


