"""``edge-classify teach``: real photos through the shipped int8 extractor, a numpy head appended to
the real TFLite and ONNX files, opened by the runtime like any model; classes added and removed;
capture from a real video; every bad input refused in one line with nothing written; no TensorFlow."""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest

from edge_runtime import Classifier
from edge_runtime.features import FeatureExtractor
from edge_runtime.teach.head import fit
from edge_runtime.teach.taught import open_taught
from tests.helpers import ROOT, run_cli

pytestmark = pytest.mark.dataset
EXTRACTOR = ROOT / "runs/imagenet_lite0/features/features_int8.tflite"
ONNX_EXTRACTOR = ROOT / "runs/imagenet_lite0/features/features_float32.onnx"
PHOTOS = ROOT / "data/clothing-small"


def _examples(root, classes, count, split="train", start=0):
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True)
        for path in sorted((PHOTOS / split / name).iterdir())[start : start + count]:
            (folder / path.name).symlink_to(path)
    return root


def _accuracy(model, classes, count=10):
    with Classifier.open(model) as classifier:
        right = total = 0
        for k, name in enumerate(classes):
            for path in sorted((PHOTOS / "test" / name).iterdir())[:count]:
                prediction = classifier.predict(cv2.imread(str(path)))
                right += int(np.argmax(prediction.probabilities) == k)
                total += 1
    return right / total


def teach(*args):
    return run_cli("-m", "edge_runtime", "teach", "--quiet", *map(str, args))


def test_taught_files_classify_held_out_photos_and_match_their_numpy_head(tmp_path):
    classes = ["hat", "pants", "shoes"]
    examples = _examples(tmp_path / "ex", classes, 10)
    for extractor, name in ((EXTRACTOR, "mine.tflite"), (ONNX_EXTRACTOR, "mine.onnx")):
        result = teach("--extractor", extractor, "--examples", examples, "--output", tmp_path / name)
        assert result.returncode == 0, result.stderr
        assert "taught 3 classes" in result.stdout
        with Classifier.open(tmp_path / name) as classifier:
            assert classifier.labels == tuple(classes)
            assert classifier.unknown_spec is not None and 0 < classifier.unknown_spec.threshold < 2
            assert classifier.metadata.extra["taught"]["shots"] == {"hat": 10, "pants": 10, "shoes": 10}
        # Held-out photos of three distinct garments: well above chance (1/3) from 10 photos each.
        assert _accuracy(tmp_path / name, classes) >= 0.8
    # The file computes exactly the head numpy fits on the extractor's features.
    base = open_taught(tmp_path / "mine.tflite")
    with FeatureExtractor.open(EXTRACTOR) as extractor, Classifier.open(tmp_path / "mine.tflite") as classifier:
        feats, labels, groups = [], [], []
        for k, name in enumerate(classes):
            for i, path in enumerate(sorted((examples / name).iterdir())):
                frame = cv2.imread(str(path))
                for view in (frame, frame[:, ::-1]):
                    feats.append(extractor.features_of_frame(np.ascontiguousarray(view)))
                    labels.append(k)
                    groups.append(100 * k + i)
        head = fit(np.stack(feats), np.array(labels), 3, groups=np.array(groups))
        assert abs(head.threshold - classifier.unknown_spec.threshold) < 1e-4
        photo = cv2.imread(str(sorted((PHOTOS / "test" / "hat").iterdir())[0]))
        prediction = classifier.predict(photo)
        features = extractor.features_of_frame(photo)[None]
        assert np.allclose(prediction.probabilities, head.probabilities(features)[0], atol=1e-4)
        assert abs(prediction.unknown_score - head.unknown_scores(features)[0]) < 1e-4
    assert base.taught.names == classes and len(base.taught.features) == 60  # 30 photos and their mirrors
    shown = run_cli("-m", "edge_runtime", "inspect", str(EXTRACTOR))
    assert shown.returncode == 0 and "1280 values per image: a feature extractor" in shown.stdout
    refused = run_cli("-m", "edge_runtime", "--model", str(EXTRACTOR), "--source", str(PHOTOS / "test" / "hat"))
    assert refused.returncode == 2 and "is a feature extractor, not a classifier" in refused.stderr


def test_add_keeps_old_classes_remove_drops_one_and_the_extractor_comes_back_exactly(tmp_path):
    first = _examples(tmp_path / "a", ["hat", "pants"], 8)
    more = _examples(tmp_path / "b", ["shoes"], 8)
    assert teach("--examples", first, "--output", tmp_path / "one.tflite").returncode == 0
    added = teach("--add", tmp_path / "one.tflite", "--examples", more, "--output", tmp_path / "two.tflite")
    assert added.returncode == 0, added.stderr
    assert _accuracy(tmp_path / "two.tflite", ["hat", "pants", "shoes"]) >= 0.8
    removed = teach("--add", tmp_path / "two.tflite", "--remove", "pants", "--output", tmp_path / "three.tflite")
    assert removed.returncode == 0, removed.stderr
    with Classifier.open(tmp_path / "three.tflite") as classifier:
        assert classifier.labels == ("hat", "shoes")
        assert classifier.metadata.extra["taught"]["shots"] == {"hat": 8, "shoes": 8}
    assert _accuracy(tmp_path / "three.tflite", ["hat", "shoes"]) >= 0.9
    # The extractor inside a taught file gives the shipped extractor's features, bit for bit.
    photo = cv2.imread(str(sorted((PHOTOS / "test" / "shoes").iterdir())[0]))
    with FeatureExtractor.open(EXTRACTOR) as shipped:
        want = shipped.features_of_frame(photo)
    assert np.array_equal(open_taught(tmp_path / "three.tflite").extractor.features_of_frame(photo), want)


def test_capture_from_a_video_teaches_each_class_in_turn(tmp_path):
    video = tmp_path / "session.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (640, 480))
    for name in ("hat", "shoes"):  # 4 s of each, as a person would hold one up after the other
        for path in sorted((PHOTOS / "train" / name).iterdir())[:40]:
            frame = np.full((480, 640, 3), 255, np.uint8)
            photo = cv2.imread(str(path))
            scale = 400 / max(photo.shape[:2])
            photo = cv2.resize(photo, (int(photo.shape[1] * scale), int(photo.shape[0] * scale)))
            y, x = (480 - photo.shape[0]) // 2, (640 - photo.shape[1]) // 2
            frame[y : y + photo.shape[0], x : x + photo.shape[1]] = photo
            writer.write(frame)
    writer.release()
    result = run_cli(
        "-m",
        "edge_runtime",
        "teach",
        "--source",
        str(video),
        "--class",
        "hat",
        "shoes",
        "--shots",
        "6",
        "--countdown",
        "2.5",
        "--interval",
        "0.2",
        "--output",
        str(tmp_path / "cam.tflite"),
    )
    assert result.returncode == 0, result.stderr
    assert "show 'hat'" in result.stderr and "show 'shoes'" in result.stderr
    assert result.stderr.count("  2...") == 2 and result.stderr.count("  1...") == 2  # the countdowns
    with Classifier.open(tmp_path / "cam.tflite") as classifier:
        assert classifier.metadata.extra["taught"]["shots"] == {"hat": 6, "shoes": 6}
    assert _accuracy(tmp_path / "cam.tflite", ["hat", "shoes"]) >= 0.8
    short = run_cli(
        "-m",
        "edge_runtime",
        "teach",
        "--source",
        str(video),
        "--class",
        "a",
        "b",
        "c",
        "--shots",
        "30",
        "--output",
        str(tmp_path / "x.tflite"),
    )
    assert short.returncode == 2 and "ended after" in short.stderr and not (tmp_path / "x.tflite").exists()


def test_bad_input_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    good = _examples(tmp_path / "good", ["hat", "shoes"], 3)
    assert teach("--examples", good, "--output", tmp_path / "mine.tflite").returncode == 0
    before = (tmp_path / "mine.tflite").read_bytes()
    empty = tmp_path / "empty"
    (empty / "hat").mkdir(parents=True)
    (empty / "shoes").mkdir()
    (empty / "hat" / "a.jpg").write_bytes(b"not a jpeg")
    (empty / "shoes" / "b.jpg").symlink_to(sorted((PHOTOS / "train" / "shoes").iterdir())[0])
    one = _examples(tmp_path / "one", ["hat"], 3)
    cases = [
        (("--examples", empty, "--output", tmp_path / "x.tflite"), "class 'hat' has no decodable image"),
        (("--examples", one, "--output", tmp_path / "x.tflite"), "at least two classes"),
        (
            (
                "--add",
                ROOT / "runs/clothes_lite0/deploy/model_int8.tflite",
                "--examples",
                one,
                "--output",
                tmp_path / "x.tflite",
            ),
            "is not a taught model",
        ),
        (("--add", tmp_path / "mine.tflite", "--examples", one, "--output", tmp_path / "x.tflite"), "already taught"),
        (
            ("--add", tmp_path / "mine.tflite", "--examples", one, "--output", tmp_path / "mine.tflite"),
            "is the --add input",
        ),
        (("--examples", good, "--output", tmp_path / "mine.tflite"), "exists; pass --overwrite"),
        (("--add", tmp_path / "mine.tflite", "--remove", "cat", "--output", tmp_path / "x.tflite"), "no such class"),
        (("--examples", good, "--output", tmp_path / "x.onnx"), "makes .tflite files"),
        (
            (
                "--extractor",
                ROOT / "runs/clothes_lite0/deploy/model_int8.tflite",
                "--examples",
                good,
                "--output",
                tmp_path / "x.tflite",
            ),
            "not a feature extractor",
        ),
        (("--output", tmp_path / "x.tflite"), "nothing to teach"),
        (("--examples", tmp_path / "nowhere", "--output", tmp_path / "x.tflite"), "no such folder"),
    ]
    for args, message in cases:
        result = teach(*args)
        assert result.returncode == 2, (args, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert (tmp_path / "mine.tflite").read_bytes() == before
    assert not (tmp_path / "x.tflite").exists() and not (tmp_path / "x.onnx").exists()
    # Another extractor's file cannot be added to (a different feature space).
    other = json.loads(json.dumps(open_taught(tmp_path / "mine.tflite").extractor.metadata.extra))
    assert other["extractor_id"].startswith("imagenet_lite0:pool:")
    replaced = teach(
        "--add", tmp_path / "mine.tflite", "--examples", one, "--replace", "--output", tmp_path / "r.tflite"
    )
    assert replaced.returncode == 0, replaced.stderr


def test_teaching_and_running_a_taught_file_never_import_tensorflow(tmp_path):
    examples = _examples(tmp_path / "ex", ["hat", "shoes"], 2)
    code = (
        "import sys\n"
        "from edge_runtime.teach.command import main\n"
        f"assert main(['--quiet', '--examples', {str(examples)!r}, '--output', {str(tmp_path / 'm.tflite')!r}]) == 0\n"
        "from edge_runtime import Classifier\n"
        f"Classifier.open({str(tmp_path / 'm.tflite')!r}).predict(__import__('numpy').zeros((48, 64, 3), 'uint8'))\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'train', 'convert', 'onnx')]\n"
        "assert not bad, bad\n"
    )
    result = run_cli("-c", code)
    assert result.returncode == 0, result.stderr
    assert sys.executable
