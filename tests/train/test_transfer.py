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
    result = trainer.run(TrainConfig(model="clothes_lite0", epochs=3, head_epochs=1, input_size=64, train_limit=400,
                                     test_limit=100, output_dir=str(runs), plots=False))
    # Every format, not only the four the shipped model keeps.
    convert(ConvertConfig(model="clothes_lite0", runs_dir=str(runs), calibration_samples=40, opencv_check=20,
                          gates=False, formats=tuple(fmt.name for fmt in formats.DEPLOYABLE)))
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
    assert not np.array_equal(model.get_layer("block15_project_conv").get_weights()[0],
                              imagenet["block15_project_conv"][0])
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
            assert classifier.labels == ("dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes",
                                         "shorts", "skirt", "t-shirt")
    assert report["test_set"] == "folder data/clothing-small/test (341 images)"  # all of them: --eval-limit is unset


@pytest.mark.parametrize("args, message", [
    (["--backbone", "lite1"], "invalid choice: 'lite1'"),
    (["--input-size", "16"], "below the 32 pixels"),
    (["--head-epochs", "5", "--epochs", "5"], "--head-epochs must be below --epochs"),
])
def test_bad_transfer_options_are_one_line_errors(args, message, tmp_path):
    result = run_cli("-m", "train", "clothes_lite0", "--output-dir", str(tmp_path), *args, timeout=300)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_folder_with_one_class_is_refused(tmp_path):
    shutil.copytree(PHOTOS / "test" / "hat", tmp_path / "photos" / "hat")
    result = run_cli("-m", "train", "clothes_lite0", "--folder", str(tmp_path / "photos"), "--output-dir",
                     str(tmp_path / "runs"), timeout=300)
    assert result.returncode == 2 and "only one class" in result.stderr and result.stderr.count("\n") == 1
