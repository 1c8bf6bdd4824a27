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
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.errors import DatasetError
from edge_common.files import atomic_write_text, dump_json, read_json, sha256_file
from edge_runtime import system

from . import end_to_end as e2e
from . import report
from . import targets as target_list
from .config import BenchConfig, Progress, run_json
from .targets import ModelTarget

log = logging.getLogger("edge_classify.bench")
PARTIAL_NAME = ".benchmark-partial.json"


def run(config: BenchConfig) -> dict[str, Any]:
    """Measure, write reports/benchmark.{json,csv,md} and pareto.png, return the report dict."""
    from train import paths

    config.validate()
    reports = Path(config.reports_dir).expanduser() if config.reports_dir else paths.default_reports_dir()
    reports.mkdir(parents=True, exist_ok=True)
    env = system.environment()
    skipped: list[str] = []
    targets = target_list.device_targets(config) if config.deploy_dir else target_list.run_targets(config, skipped)
    partial_path = reports / PARTIAL_NAME
    partial = {} if config.fresh else _load_partial(partial_path, config, env)
    keras_ok = config.mode != "device" and "keras" in config.formats and _has_tensorflow()
    if "keras" in config.formats and not keras_ok:
        skipped.append(
            "Keras rows and the model.predict baseline (TensorFlow is not installed here)"
            if config.mode == "device" or not _has_tensorflow()
            else "Keras rows"
        )

    steps = sum(_file_steps(t, config) + (1 if keras_ok and t.keras_file else 0) for t in targets)
    pairs = _pairs(targets)
    camera_target = e2e.e2e_camera(targets)
    progress = Progress(steps + len(pairs) + (5 if config.e2e and camera_target is not None else 0))
    rows: list[dict[str, Any]] = []
    test_sets: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for target in targets:
            key = _target_key(target, config)
            if key in partial:
                rows.extend(partial[key]["rows"])
                test_sets[target.name] = partial[key]["test_set"]
                progress.done += _file_steps(target, config) + (1 if keras_ok and target.keras_file else 0)
                log.info("%s: measured earlier in this run (resuming); reusing", target.name)
                continue
            model_rows, test_name = _measure_target(target, config, keras_ok, tmp, progress, skipped)
            rows.extend(model_rows)
            test_sets[target.name] = test_name
            partial[key] = {"rows": model_rows, "test_set": test_name}
            _save_partial(partial_path, partial, config, env)
        compared = [_paired(pair, config, progress) for pair in pairs]
        end_to_end = e2e.end_to_end(targets, config, keras_ok, tmp, progress, skipped) if config.e2e else {}
        conditions = e2e.camera_conditions(camera_target, config, progress, skipped) if config.e2e else {}
        several = e2e.several_cameras(camera_target, config, progress, skipped) if config.e2e else {}
    progress.close()
    _mark_pareto(rows, targets, test_sets)
    note = system.int8_note(env["cpu"])
    result = {
        "mode": config.mode,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": env,
        "settings": {
            "threads": list(config.threads),
            "min_seconds": config.min_seconds,
            "min_runs": config.min_runs,
            "eval_limit": config.eval_limit,
            "test_sets": "; ".join(f"{k}: {v}" for k, v in test_sets.items()) or "none",
        },
        "rows": rows,
        "paired": compared,
        "end_to_end": end_to_end,
        "camera_conditions": conditions,
        "several_cameras": several,
        "verdicts": report.verdicts(rows, note, bool(env["cpu"].get("int8_dot_product"))),
        "int8_note": note,
        "int8_vs_float32": _int8_ratios(rows),
        "skipped": skipped,
    }
    report.write_all(reports, result)
    partial_path.unlink(missing_ok=True)
    return result


# --- targets -----------------------------------------------------------------------------------


# --- measuring ---------------------------------------------------------------------------------


def _measure_target(
    target: ModelTarget, config: BenchConfig, keras_ok: bool, tmp: Path, progress: Progress, skipped: list[str]
) -> tuple[list[dict[str, Any]], str]:
    images_path, labels_path, test_name = _save_test_set(target, config, tmp, skipped)
    reference_path = None
    rows = []
    if keras_ok and target.keras_file is not None and images_path is not None and labels_path is not None:
        reference_path = tmp / f"{target.name}-keras-top1.npy"
        progress.step(f"{target.name} keras (model.predict)")
        keras_row = _keras_row(target, images_path, labels_path, reference_path, config)
        rows.append(keras_row)
        if "error" in keras_row:
            reference_path = None
    for name, path, backend in _file_engines(target):
        accuracy_row: dict[str, Any] | None = None
        for threads in config.threads:
            progress.step(f"{target.name} {name} {backend} threads={threads}")
            command = [
                sys.executable,
                "-m",
                "benchmarks.worker",
                str(path),
                "--threads",
                str(threads),
                "--backend",
                backend,
                "--min-seconds",
                str(config.min_seconds),
                "--min-runs",
                str(config.min_runs),
                "--batch",
                "8" if config.quick else "32",
            ]
            # Accuracy does not depend on the thread count: it is measured once per file.
            if images_path is not None and accuracy_row is None:
                command += ["--images", str(images_path), "--labels", str(labels_path)]
                if reference_path is not None and reference_path.exists():
                    command += ["--reference", str(reference_path)]
            measured = run_json(command)
            if accuracy_row is None and "accuracy" in measured:
                accuracy_row = measured
            elif accuracy_row is not None:
                measured.update(
                    {key: accuracy_row[key] for key in ("accuracy", "agreement", "images") if key in accuracy_row},
                    accuracy_measured_at_threads=accuracy_row["threads"],
                )
            rows.append(
                {
                    "model": target.name,
                    "format": name,
                    "threads": threads,
                    "size_bytes": path.stat().st_size,
                    "file": str(path),
                    "sha256": sha256_file(path),
                    **measured,
                }
            )
    return rows, test_name


def _file_engines(target: ModelTarget) -> list[tuple[str, Path, str]]:
    """(format, file, backend) for every engine that runs each file here: ONNX files run on ONNX
    Runtime and, where it is installed, on OpenVINO (each row says which engine ran it)."""
    from edge_runtime.backends import available

    out = []
    for name, path in target.files.items():
        engines = (
            ["onnxruntime"] + (["openvino"] if available("openvino") else [])
            if Path(path).suffix == ".onnx"
            else ["auto"]
        )
        out += [(name, path, backend) for backend in engines]
    return out


def _file_steps(target: ModelTarget, config: BenchConfig) -> int:
    return len(_file_engines(target)) * len(config.threads)


def _pairs(targets: list[ModelTarget]) -> list[tuple[ModelTarget, ModelTarget, str]]:
    """The comparisons of ``paired.PAIRS`` whose files are both here: (model, baseline, format)."""
    from .paired import PAIRS

    by_name = {target.name: target for target in targets}
    return [
        (by_name[model], by_name[baseline], fmt)
        for model, baseline, fmt_list in PAIRS
        if model in by_name and baseline in by_name
        for fmt in fmt_list
        if fmt in by_name[model].files and fmt in by_name[baseline].files
    ]


def _paired(pair: tuple[ModelTarget, ModelTarget, str], config: BenchConfig, progress: Progress) -> dict[str, Any]:
    """Both files timed in alternating rounds in one process at 1 thread (see benchmarks.paired): the
    per-file rows are minutes apart, and a shared machine drifts by more than the difference."""
    from .paired import verdict

    model, baseline, fmt = pair
    progress.step(f"paired: {model.name} against {baseline.name}, {fmt}")
    rounds, block = (6, 0.2) if config.quick else (20, 0.5)
    measured = run_json(
        [
            sys.executable,
            "-m",
            "benchmarks.paired",
            str(model.files[fmt]),
            str(baseline.files[fmt]),
            "--threads",
            "1",
            "--rounds",
            str(rounds),
            "--block-seconds",
            str(block),
            "--json",
        ]
    )
    entry = {"model": model.name, "baseline": baseline.name, "format": fmt, **measured}
    if "pairs" in measured:
        entry["verdict"] = verdict(measured["pairs"][0], rounds, f"{model.name} {fmt}", f"{baseline.name} {fmt}")
    return entry


def _save_test_set(
    target: ModelTarget, config: BenchConfig, tmp: Path, skipped: list[str]
) -> tuple[Path | None, Path | None, str]:
    from train import evalsets

    if target.dataset is None:
        skipped.append(f"{target.name} accuracy (not a registry model, no test set known)")
        return None, None, "none"
    try:
        if target.run is not None:
            test = target.run.test_set(data_dir=config.data_dir, limit=config.eval_limit)
        else:  # device mode: the registry model's standard test set
            test = evalsets.test_set(
                target.dataset, target.input_spec, data_dir=config.data_dir, limit=config.eval_limit
            )
    except DatasetError as exc:
        skipped.append(f"{target.name} accuracy ({exc})")
        return None, None, "none"
    images_path, labels_path = tmp / f"{target.name}-images.npy", tmp / f"{target.name}-labels.npy"
    np.save(images_path, np.ascontiguousarray(test.images))
    np.save(labels_path, test.labels)
    return images_path, labels_path, test.name


def _keras_row(target: ModelTarget, images: Path, labels: Path, reference: Path, config: BenchConfig) -> dict[str, Any]:
    assert target.keras_file is not None  # the caller measures Keras only where the run has its model
    command = [
        sys.executable,
        "-m",
        "benchmarks.keras_worker",
        str(target.keras_file),
        "--images",
        str(images),
        "--labels",
        str(labels),
        "--predictions",
        str(reference),
        "--calls",
        "5" if config.quick else "30",
    ]
    measured = run_json(command, timeout=900)
    return {
        "model": target.name,
        "format": "keras",
        "threads": None,
        "size_bytes": target.keras_file.stat().st_size,
        "file": str(target.keras_file),
        **measured,
    }


# The camera model the end-to-end pipeline runs: the real-photo model when it is measured, else the
# from-scratch one on its synthetic scenes.


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
            base = next(
                (
                    r
                    for r in rows
                    if r["model"] == row["model"]
                    and r["format"] == "tflite_float32"
                    and r.get("threads") == 1
                    and r.get("latency_ms_p50")
                ),
                None,
            )
            if base:
                ratios[row["model"]] = row["latency_ms_p50"] / base["latency_ms_p50"]
    return ratios


# --- plumbing ----------------------------------------------------------------------------------


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
