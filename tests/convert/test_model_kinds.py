"""Models a user brings that are not the toolkit's own: without softmax, with two outputs, with a
per-pixel output, several bare files in one folder, a renamed run, repeated labels, and
calibration images that are the test images."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest

from convert.converter import ConvertConfig, convert
from edge_runtime.classifier import Classifier
from edge_runtime.errors import ModelFileError

pytestmark = pytest.mark.dataset


def _save(model, path, labels=("a", "b", "c")):
    model.save(path)
    (path.parent / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
    return path


def _tiny(softmax: bool):
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(3, activation="softmax" if softmax else None)(x)
    model = keras.Model(inputs, outputs)
    # Weights large enough that logits go far outside 0..1.
    model.layers[-1].set_weights(
        [np.random.default_rng(0).normal(0, 0.5, (64, 3)).astype(np.float32), np.zeros(3, np.float32)]
    )
    return model


def _images(folder, rng, per_class=4):
    for label in "abc":
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            cv2.imwrite(str(folder / label / f"{i}.png"), rng.integers(0, 255, (8, 8), dtype=np.uint8))
    return folder


def test_bare_files_in_one_folder_each_get_a_deploy_folder_and_logits_are_detected(tmp_path, rng, caplog):
    logits = _save(_tiny(softmax=False), tmp_path / "a.keras")
    probabilities = _save(_tiny(softmax=True), tmp_path / "b.keras")
    config = dict(formats=("tflite_float32",), opencv_check=0, gates=False)
    with caplog.at_level(logging.WARNING, logger="edge_classify"):
        convert(ConvertConfig(model=str(logits), **config))
    assert any("recorded as logits" in r.message for r in caplog.records)
    convert(ConvertConfig(model=str(probabilities), **config))
    a, b = tmp_path / "a_deploy" / "model_float32.tflite", tmp_path / "b_deploy" / "model_float32.tflite"
    assert a.is_file() and b.is_file() and not (tmp_path / "deploy").exists()
    frame = rng.integers(0, 255, (8, 8), dtype=np.uint8)
    with Classifier.open(a) as classifier:
        assert classifier.metadata.output.kind == "logits" and classifier.metadata.model == "a"
        prediction = classifier.predict(frame)
        assert abs(float(prediction.probabilities.sum()) - 1.0) < 1e-5 and prediction.probabilities.min() >= 0
        import keras

        expected = keras.models.load_model(logits).predict(frame[None, :, :, None].astype(np.float32), verbose=0)
        assert prediction.label == "abc"[int(np.argmax(expected))]
    with Classifier.open(b) as classifier:
        assert classifier.metadata.output.kind == "probabilities"


def test_models_that_are_not_one_output_classifiers_are_refused(tmp_path, ledger):
    import keras

    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    two = keras.Model(
        inputs, [keras.layers.Dense(3, activation="softmax")(flat), keras.layers.Dense(2, activation="softmax")(flat)]
    )
    per_pixel = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(inputs))
    for name, model, message in (("two", two, "has 2 outputs"), ("pixels", per_pixel, r"is not \(batch, classes\)")):
        folder = tmp_path / name
        folder.mkdir()
        path = _save(model, folder / "model.keras")
        with ledger.case("models: two outputs, or a per-pixel output, brought to convert"):
            with pytest.raises(ModelFileError, match=message):
                convert(ConvertConfig(model=str(path), formats=("tflite_float32",), opencv_check=0))
            assert not list(folder.glob("deploy/model_*"))


def test_repeated_labels_and_calibration_on_the_test_images_are_warned(tmp_path, rng, caplog):
    folder = tmp_path / "m"
    folder.mkdir()
    path = _save(_tiny(softmax=True), folder / "model.keras", labels=("a", "b", "a"))
    images = _images(tmp_path / "images", rng)
    (folder / "labels.txt").write_text("a\nb\nc\n")
    with caplog.at_level(logging.WARNING, logger="edge_classify"):
        convert(
            ConvertConfig(
                model=str(path),
                formats=("tflite_float32",),
                opencv_check=0,
                gates=False,
                test=str(images),
                calibration=str(images),
            )
        )
    assert any("12 of the 12 calibration images are also test images" in r.message for r in caplog.records)
    (folder / "labels.txt").write_text("a\nb\na\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge_classify"):
        convert(ConvertConfig(model=str(path), formats=("tflite_float32",), opencv_check=0, gates=False, force=True))
    assert any("names 'a' more than once" in r.message for r in caplog.records)


def test_a_renamed_run_carries_its_own_name(tiny_runs, tmp_path):
    run = tmp_path / "my_edge_run"
    shutil.copytree(tiny_runs / "edge_cnn", run, ignore=shutil.ignore_patterns("deploy", "plots"))
    convert(ConvertConfig(model=str(run), formats=("tflite_float32",), opencv_check=0, eval_limit=100))
    with Classifier.open(run / "deploy" / "model_float32.tflite") as classifier:
        assert classifier.metadata.model == "my_edge_run"
