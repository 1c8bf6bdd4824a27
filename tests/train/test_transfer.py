"""Transfer learning: a tiny fine-tune on real photos, round-tripped through every format."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge_runtime import formats
from edge_runtime.classifier import Classifier
from tests.helpers import ROOT, run_cli

PHOTOS = ROOT / "data" / "clothing-small"


@pytest.fixture(scope="session")
def tiny_clothes(tmp_path_factory):
    """clothes_lite0 at 64x64 on 400 real photos: one head epoch, two fine-tuning epochs; then converted."""
    from train.tfenv import quiet_tensorflow

    quiet_tensorflow()
    from convert.converter import ConvertConfig, convert
    from train import trainer
    from train.config import TrainConfig

    runs = tmp_path_factory.mktemp("transfer")
    result = trainer.run(
        TrainConfig(
            model="clothes_lite0",
            epochs=3,
            head_epochs=1,
            input_size=64,
            augment="photo",  # what this tests is fine-tuning and batch norm, not the camera framing
            train_limit=400,
            test_limit=100,
            output_dir=str(runs),
            plots=False,
        )
    )
    # Every format, not only the four the shipped model keeps.
    convert(
        ConvertConfig(
            model="clothes_lite0",
            runs_dir=str(runs),
            calibration_samples=40,
            opencv_check=20,
            gates=False,
            formats=tuple(fmt.name for fmt in formats.DEPLOYABLE),
        )
    )
    return runs, result


def test_fine_tuning_learns_real_photos_and_keeps_imagenet_batch_norm(tiny_clothes):
    import keras

    from train import backbones
    from train.backbones.efficientnet_lite import ported_weights

    runs, result = tiny_clothes
    metrics, run = result.metrics, runs / "clothes_lite0"
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 4 and metrics["dataset"] == "folder" and metrics["input"]["fit"] == "crop"
    assert metrics["test_accuracy"] > 0.3  # 10 classes: chance is 0.1; three short epochs on 400 photos at 64x64
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == "lite0" and config["folder"] == "data/clothing-small"  # relative: any checkout
    model = keras.saving.load_model(run / "model.keras", safe_mode=True, compile=False)
    imagenet = ported_weights(backbones.get("lite0"))
    # Batch norm never trained: its statistics are still ImageNet's; the convolutions did train.
    for layer in ("stem_bn", "block7_dw_bn", "head_bn"):
        for ours, theirs in zip(model.get_layer(layer).get_weights(), imagenet[layer]):
            np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(
        model.get_layer("block15_project_conv").get_weights()[0], imagenet["block15_project_conv"][0]
    )
    assert model.get_layer("probabilities").get_weights()[0].shape == (1280, 10)


def test_every_format_of_the_transfer_model_classifies_like_keras(tiny_clothes):
    runs, _ = tiny_clothes
    deploy = runs / "clothes_lite0" / "deploy"
    report = json.loads((deploy / "convert_report.json").read_text())
    assert [r["format"] for r in report["results"]] == [f.name for f in formats.DEPLOYABLE]
    for result in report["results"]:
        assert result["status"] == "ok" and result["accuracy"] is not None
        if formats.get(result["format"]).precision == "float32":
            assert result["agreement"] >= 0.98, result
        with Classifier.open(deploy / result["file"]) as classifier:
            spec = classifier.input_spec
            assert (spec.height, spec.fit, spec.crop) == (64, "crop", 0.875)
            assert classifier.labels == (
                "dress",
                "hat",
                "longsleeve",
                "outwear",
                "pants",
                "shirt",
                "shoes",
                "shorts",
                "skirt",
                "t-shirt",
            )
    assert report["test_set"] == "folder data/clothing-small/test (341 images)"  # all of them: --eval-limit is unset


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backbone", "lite1"], "invalid choice: 'lite1'"),
        (["--input-size", "16"], "below the 32 pixels"),
        (["--head-epochs", "5", "--epochs", "5"], "--head-epochs must be below --epochs"),
    ],
)
def test_bad_transfer_options_are_one_line_errors(args, message, tmp_path):
    result = run_cli("-m", "train", "clothes_lite0", "--output-dir", str(tmp_path), *args, timeout=300)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_folder_with_one_class_is_refused(tmp_path):
    shutil.copytree(PHOTOS / "test" / "hat", tmp_path / "photos" / "hat")
    result = run_cli(
        "-m",
        "train",
        "clothes_lite0",
        "--folder",
        str(tmp_path / "photos"),
        "--output-dir",
        str(tmp_path / "runs"),
        timeout=300,
    )
    assert result.returncode == 2 and "only one class" in result.stderr and result.stderr.count("\n") == 1


def test_the_transfer_model_says_none_of_these_from_its_features_in_every_format(tiny_clothes):
    import keras

    from edge_runtime.preprocess import to_input_tensor
    from train.datasets import camera_frames
    from train.unknown import split_outputs

    runs, result = tiny_clothes
    metrics, run = result.metrics, runs / "clothes_lite0"
    head = metrics["unknown"]
    assert head["score"] == "prototype_cosine" and 0.0 < head["threshold"] < 2.0
    assert 10 <= head["prototypes"] <= 640 and abs(head["in_class_accepted"] - 0.95) < 0.01
    conditions = metrics["camera_conditions"]
    assert set(camera_frames.GARMENT_CONDITIONS) <= set(conditions) and "labelled" in conditions["background"]
    assert all(conditions[name]["frames"] == 100 for name in camera_frames.GARMENT_CONDITIONS)
    model = keras.saving.load_model(run / "model.keras", safe_mode=True, compile=False)
    backgrounds = camera_frames.condition_inputs([None] * 8, np.zeros(8), model_spec(run), names=["background"])
    images = backgrounds["background"][0]
    _, keras_scores = split_outputs(model.predict(images.astype(np.float32), verbose=0))
    deploy = run / "deploy"
    for name in ("model_float32.tflite", "model_int8.tflite", "model_float32.onnx", "model_int8.onnx"):
        with Classifier.open(deploy / name) as classifier:
            assert classifier.unknown_spec is not None and classifier.unknown_spec.threshold == head["threshold"]
            for image, expected in zip(images, keras_scores):
                _, score = classifier.infer_all(to_input_tensor(image[None], classifier.input_spec))
                if "float32" in name:  # int8 files are held to their verdicts instead (unknown_agreement below)
                    assert abs(score - expected) < 1e-4, (name, score, expected)
                prediction = classifier.predict(cv2_bgr(image))  # a camera frame: BGR, fitted again
                assert prediction.unknown_score is not None
                assert prediction.unknown == (prediction.unknown_score > head["threshold"])
                assert prediction.answer() == ("unknown" if prediction.unknown else prediction.label)
    report = json.loads((deploy / "convert_report.json").read_text())
    for row in report["results"]:
        assert row["unknown_agreement"] is not None and row["unknown_agreement"] >= 0.9, row


def model_spec(run):
    from train.runfolder import RunFolder

    return RunFolder.open(run).input_spec


def cv2_bgr(image):
    return np.ascontiguousarray(image[:, :, ::-1])  # the model's RGB input back to a camera's BGR frame


def test_a_contract_with_a_bad_out_of_class_threshold_is_one_line_and_exit_2(tiny_clothes, tmp_path):
    from edge_runtime.contract import ModelMetadata
    from edge_runtime.errors import MetadataError
    from edge_runtime.metadata import embed_tflite_entries, load_bytes, read_metadata

    runs, _ = tiny_clothes
    source = runs / "clothes_lite0" / "deploy" / "model_int8.tflite"
    kind, data = load_bytes(source)
    good = read_metadata(kind, data, source).to_dict()
    for change, message in (
        (lambda u: u.pop("threshold"), "without a threshold"),
        (lambda u: u.update(threshold=3.5), "outside the prototype_cosine range"),
    ):
        broken = json.loads(json.dumps(good))
        change(broken["output"]["unknown"])
        with pytest.raises(MetadataError, match=message):
            ModelMetadata.from_dict(broken)
        path = tmp_path / "broken.tflite"
        path.write_bytes(embed_tflite_entries(data, {"edge_classify": json.dumps(broken).encode()}))
        result = run_cli("-m", "edge_runtime", "inspect", str(path), timeout=120)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert result.stderr.strip().count("\n") == 0, result.stderr


def test_refitting_the_out_of_class_head_keeps_the_classifier_and_rewrites_the_run(tiny_clothes, tmp_path):
    import shutil

    import keras

    from train import refit_unknown, unknown

    runs, result = tiny_clothes
    copy = tmp_path / "clothes_lite0"
    shutil.copytree(runs / "clothes_lite0", copy, ignore=shutil.ignore_patterns("deploy"))
    before = json.loads((copy / "metrics.json").read_text())
    metrics = refit_unknown.refit(str(copy))  # raises if any test answer of the classifier changed
    after = json.loads((copy / "metrics.json").read_text())
    assert after["test_accuracy"] == before["test_accuracy"] and after["unknown"] == metrics["unknown"]
    assert abs(after["unknown"]["in_class_accepted"] - 0.95) < 0.01
    model = keras.saving.load_model(copy / "model.keras", safe_mode=True, compile=False)
    assert unknown.has_unknown_output(model)
    # The head's features join the pooled outputs of the last three stages, each at unit length.
    assert {layer.name for layer in model.layers} >= {f"unknown_unit_{name}" for name in unknown.FEATURES_LAYERS}
