"""The shipped camera models, as a device runs them: real photos in, the right names out."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge_runtime.classifier import Classifier
from tests.helpers import ROOT

RUNS = ROOT / "runs"
PHOTOS = ROOT / "data" / "clothing-small" / "test"


def _held_out():
    for label, folder in enumerate(sorted(p for p in PHOTOS.iterdir() if p.is_dir())):
        for path in sorted(folder.glob("*.jpg")):
            yield path, folder.name


@pytest.mark.parametrize("file", ["model_int8.tflite", "model_float32.tflite", "model_int8.onnx"])
def test_clothes_model_names_held_out_photos(file):
    with Classifier.open(RUNS / "clothes_lite0" / "deploy" / file, threads=2) as classifier:
        assert classifier.input_spec.fit == "crop" and classifier.input_spec.height == 128
        truth, named = zip(*[(name, classifier.predict(cv2.imread(str(path))).label) for path, name in _held_out()])
        accuracy = float(np.mean(np.array(truth) == np.array(named)))
        recorded = classifier.metadata.accuracy["accuracy"]
    assert len(truth) == 341 and accuracy >= 0.9
    assert accuracy == pytest.approx(recorded, abs=1e-6)  # the file's own claim, reproduced by the runtime
    report = json.loads((RUNS / "clothes_lite0" / "deploy" / "convert_report.json").read_text())
    assert report["test_set"] == "folder data/clothing-small/test (341 images)"


def test_imagenet_model_calls_a_tshirt_a_jersey():
    path = RUNS / "imagenet_lite0" / "deploy" / "model_int8.tflite"
    with Classifier.open(path, threads=2) as classifier:
        assert len(classifier.labels) == 1000 and classifier.labels[610] == "jersey"
        assert classifier.input_spec.height == 224 and classifier.input_spec.fit == "crop"
        tshirts = sorted((PHOTOS / "t-shirt").glob("*.jpg"))[:12]
        hits = sum("jersey" in [name for name, _ in classifier.predict(cv2.imread(str(p)), top_k=5).top]
                   for p in tshirts)
    assert hits >= 10
