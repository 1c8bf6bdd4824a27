"""The second look: zoomed regions of unsure frames, in the contract, the library and the live loop."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge_runtime.classifier import Classifier
from edge_runtime.contract import ModelMetadata
from edge_runtime.errors import MetadataError
from edge_runtime.second_look import DEFAULT, FIRST, SecondLook, Zoom, choose
from tests.helpers import ROOT

SHIPPED = ROOT / "runs" / "clothes_lite0" / "deploy" / "model_int8.tflite"
PHOTOS = ROOT / "data" / "clothing-small" / "test"


def test_a_zoom_is_the_frames_aspect_around_its_centre_and_stays_inside():
    frame = np.arange(480 * 640, dtype=np.int32).reshape(480, 640)
    centre = Zoom(0.5).region(frame)
    assert centre.shape == (240, 320) and centre[0, 0] == frame[120, 160]
    corner = Zoom(0.5, 0.0, 1.0).region(frame)  # pushed back inside: the bottom-left quarter
    assert corner.shape == (240, 320) and corner[0, 0] == frame[240, 0]
    assert Zoom(0.7).name == "zoom 70% centre" and Zoom(0.5, 0.3, 0.5).name == "zoom 50% at 0.30,0.50"


def test_the_contract_carries_the_second_look_and_refuses_a_malformed_one():
    looks = SecondLook((Zoom(0.6), Zoom(0.4, 0.3, 0.5)), unsure=0.6)
    assert SecondLook.from_dict(json.loads(json.dumps(looks.to_dict()))) == looks
    for bad in (
        [],
        {"zooms": [], "unsure": 0.5},
        {"zooms": [[1.5, 0.5, 0.5]], "unsure": 0.5},
        {"zooms": [[0.5, 0.5]], "unsure": 0.5},
        {"zooms": [["0.5", 0.5, 0.5]], "unsure": 0.5},
        {"zooms": [[0.5, 0.5, 0.5]], "unsure": True},
        {"zooms": [[0.5, 0.5, 0.5]] * 9, "unsure": 0.5},
    ):
        with pytest.raises(MetadataError, match="second_look"):
            SecondLook.from_dict(bad)
    with Classifier.open(SHIPPED, threads=1) as classifier:
        data = classifier.metadata.to_dict()
    assert data["second_look"] == DEFAULT.to_dict()  # convert writes it for the camera model
    data["second_look"] = {"zooms": "everywhere", "unsure": 0.7}
    with pytest.raises(MetadataError, match="second_look.zooms"):
        ModelMetadata.from_dict(data)


def test_auto_follows_the_file_on_forces_it_off_never():
    own = SecondLook((Zoom(0.6),), 0.5)
    assert choose("auto", own) is own and choose("auto", None) is None
    assert choose("on", None) == DEFAULT and choose("on", own) is own
    assert choose("off", own) is None


def _far_frames(count: int = 40) -> tuple[list[np.ndarray], list[str]]:
    """Held-out photos at 40% of a 640x480 frame's height on procedural rooms (the far condition)."""
    from train.datasets import camera_frames, folder

    data = folder.open_folder(PHOTOS)
    data.files = data.interleaved(count)
    photos, labels = data.load_photos("BGR", max_side=480)
    frames = [frame for _, frame, _ in camera_frames.iter_condition_frames(photos, labels, names=["far"])]
    return frames, [data.class_names[int(k)] for k in labels]


def test_the_library_looks_again_only_at_unsure_frames_and_answers_better_far_away():
    frames, truth = _far_frames()
    with Classifier.open(SHIPPED, threads=2, second_look="off") as plain:
        first = [plain.predict(frame) for frame in frames]
    with Classifier.open(SHIPPED, threads=2) as classifier:
        assert classifier.second_look == DEFAULT and "second look" in classifier.describe()
        second = [classifier.predict(frame) for frame in frames]
        for frame, before, after in zip(frames, first, second):
            sure = not before.unknown and before.score >= DEFAULT.unsure
            if sure:  # a sure frame costs nothing and keeps its answer
                assert after.look == FIRST and after.label == before.label
            probabilities, score = classifier.infer_all(classifier.input_tensor(frame))
            assert classifier.look_again(frame, probabilities, score)[3] == (not sure)
    looked = [p for p in second if p.look != FIRST]
    assert looked and all(p.look.startswith("zoom ") for p in looked)

    def right(predictions: list) -> float:
        return float(np.mean([p.label == t and not p.unknown for p, t in zip(predictions, truth)]))

    assert right(second) > right(first), (right(first), right(second))


def test_jsonl_says_which_look_answered_and_off_turns_it_off(tmp_path):
    frames, _ = _far_frames(12)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), frame)
    looks = {}
    for mode in ("auto", "off"):
        jsonl = tmp_path / f"{mode}.jsonl"
        summary = tmp_path / f"{mode}.json"
        result = subprocess.run(
            [sys.executable, "-m", "edge_runtime", "--model", str(SHIPPED), "--source", str(folder)]
            + ["--jsonl", str(jsonl), "--summary-json", str(summary), "--second-look", mode, "--threads", "1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in jsonl.read_text().splitlines()]
        assert len(records) == len(frames)
        looks[mode] = [r["look"] for r in records]
        stats = json.loads(summary.read_text())
        assert stats["zoom_answered"] == sum(look != FIRST for look in looks[mode])
    assert any(look != FIRST for look in looks["auto"])
    assert set(looks["off"]) == {FIRST}
