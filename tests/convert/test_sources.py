"""What `python -m convert` accepts: a registry name, a run folder, or a bare .keras file."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from edge_runtime import formats
from edge_runtime.classifier import Classifier
from tests.helpers import run_cli

pytestmark = pytest.mark.dataset


def test_every_deployable_format_has_its_exporter():
    from convert import exporters

    for fmt in formats.DEPLOYABLE:
        assert callable(exporters.exporter(fmt.name)), fmt.name
        assert callable(exporters.embedder(fmt.kind))
    with pytest.raises(ValueError, match="no exporter for format .nothing."):
        exporters.exporter("nothing")


def test_run_folder_is_read_as_training_recorded_it(tiny_runs):
    from train import models
    from train.runfolder import RunFolder

    run = RunFolder.open(tiny_runs / "camera_cnn")
    # Trained at 32x32: the recorded contract wins over the registry's 128x128.
    assert (run.input_spec.height, run.input_spec.width) == (32, 32) != (models.get("camera_cnn").input.height,) * 2
    assert run.dataset == "camera_scenes" and run.labels[9] == "Ankle boot" and run.model == "camera_cnn"
    assert run.test_set(limit=20).images.shape == (20, 32, 32, 3)
    assert json.loads((tiny_runs / "camera_cnn" / "metrics.json").read_text())["dataset"] == "camera_scenes"


def _fashion_folder(root, fashion_dir, split, count):
    from train.datasets import fashion_mnist

    data = fashion_mnist.load_split(split, fashion_dir)
    for label in range(10):
        folder = root / f"c{label}"
        folder.mkdir(parents=True)
        for k, index in enumerate(np.flatnonzero(data.labels == label)[:count]):
            cv2.imwrite(str(folder / f"{k}.png"), data.images[index])
    return root


def test_bare_keras_file_writes_only_what_it_can_check(tiny_runs, tmp_path, fashion_dir):
    model_dir = tmp_path / "mine"
    model_dir.mkdir()
    shutil.copy(tiny_runs / "edge_cnn" / "model.keras", model_dir / "model.keras")
    (model_dir / "labels.txt").write_text("".join(f"c{i}\n" for i in range(10)))
    result = run_cli("-m", "convert", str(model_dir / "model.keras"), "--opencv-check", "0")
    assert result.returncode == 0, result.stderr
    deploy = model_dir / "deploy"
    assert sorted(p.name for p in deploy.glob("model_*")) == [
        "model_float16.tflite",
        "model_float32.onnx",
        "model_float32.tflite",
    ]
    assert "skipped" in result.stdout and "--calibration DIR" in result.stdout and "--test DIR" in result.stdout
    with Classifier.open(deploy / "model_float32.tflite") as classifier:
        assert classifier.labels[3] == "c3" and classifier.input_spec.height == 28
        assert classifier.input_spec.color_order == "GRAY"
        assert "random-pixel" in classifier.metadata.extra["test_set"]

    # With labelled test images and calibration images, every format is built and gated.
    test_dir = _fashion_folder(tmp_path / "test", fashion_dir, "test", 20)
    calibration_dir = _fashion_folder(tmp_path / "calibration", fashion_dir, "train", 10)
    result = run_cli(
        "-m",
        "convert",
        str(model_dir / "model.keras"),
        "--test",
        str(test_dir),
        "--calibration",
        str(calibration_dir),
        "--opencv-check",
        "0",
        "--no-gates",
    )
    assert result.returncode == 0, result.stderr
    assert len(list(deploy.glob("model_*"))) == 6
    report = json.loads((deploy / "convert_report.json").read_text())
    assert report["keras_accuracy"] > 0.5 and "200 images" in report["test_set"]
    assert all(r["status"] == "ok" and r["accuracy"] is not None for r in report["results"])


def test_bare_keras_file_without_labels_is_a_clear_error(tiny_runs, tmp_path):
    shutil.copy(tiny_runs / "edge_cnn" / "model.keras", tmp_path / "model.keras")
    result = run_cli("-m", "convert", str(tmp_path / "model.keras"))
    assert result.returncode == 2 and "labels.txt" in result.stderr and "--labels" in result.stderr
    assert result.stderr.count("\n") == 1
