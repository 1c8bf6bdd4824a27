"""A finished run is reused only by the same run; datasets that would train or test on nothing are
refused, naming the class; a recipe shortened by --epochs says what it changed."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from edge_common.errors import DatasetError
from tests.train.test_folder import SPEC
from train import trainer
from train.config import ConfigError, TrainConfig
from train.datasets import folder


def _classes(root, names, rng, per_class=3):
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    return root


def _finished_run(runs, name, folder_path, labels):
    run = runs / name
    run.mkdir(parents=True)
    (run / "model.keras").write_bytes(b"a finished model")
    (run / "metrics.json").write_text(json.dumps({"test_accuracy": 0.75}))
    (run / "config.json").write_text(json.dumps({"model": "edge_cnn", "folder": str(folder_path)}))
    (run / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
    return run


def test_a_finished_run_is_kept_only_for_the_same_folder_and_classes(tmp_path, rng):
    first = _classes(tmp_path / "one" / "pets", ["cat", "dog"], rng)
    other = _classes(tmp_path / "two" / "pets", ["cat", "dog"], rng)
    renamed = _classes(tmp_path / "three" / "pets", ["cat", "fox"], rng)
    runs = tmp_path / "runs"
    _finished_run(runs, "edge_cnn-pets", first, ["cat", "dog"])
    same = trainer.run(TrainConfig(model="edge_cnn", folder=str(first), output_dir=str(runs)))
    assert same.finished_before and same.metrics["test_accuracy"] == 0.75
    with pytest.raises(
        ConfigError,
        match=r"finished run of other data \(--folder was .*one/pets, now .*two/pets\).*"
        r"--fresh.*--name",
    ):
        trainer.run(TrainConfig(model="edge_cnn", folder=str(other), output_dir=str(runs)))
    (runs / "edge_cnn-pets" / "config.json").write_text(json.dumps({"model": "edge_cnn", "folder": str(renamed)}))
    with pytest.raises(ConfigError, match="its classes were cat, dog, now cat, fox"):
        trainer.run(TrainConfig(model="edge_cnn", folder=str(renamed), output_dir=str(runs)))
    assert (runs / "edge_cnn-pets" / "model.keras").read_bytes() == b"a finished model"


def test_a_class_with_no_decodable_image_or_only_in_test_is_refused(tmp_path, rng, ledger):
    category = "datasets: a class with no decodable image, a class only the test split has"
    root = _classes(tmp_path / "data", ["cat", "dog"], rng)
    (root / "owl").mkdir()
    (root / "owl" / "0.jpg").write_bytes(b"not an image")
    (root / "owl" / "1.png").write_bytes(b"")
    with ledger.case(category), pytest.raises(DatasetError, match="class 'owl' could be decoded"):
        folder.open_folder(root).load(SPEC)
    with ledger.case(category), pytest.raises(DatasetError, match="class 'owl' could be decoded"):
        folder.open_folder(root).load_photos("RGB", 64)
    split = tmp_path / "split"
    _classes(split / "train", ["cat", "dog"], rng)
    _classes(split / "test", ["cat", "dog", "owl"], rng)
    with ledger.case(category), pytest.raises(DatasetError, match="owl are not among the training classes"):
        folder.open_folder(split, "test", class_names=("cat", "dog"))


def test_a_short_backbone_run_says_it_shortened_the_head_phase(caplog):
    with caplog.at_level(logging.WARNING, logger="edge_classify.train"):
        config = TrainConfig(model="clothes_lite0", epochs=1).resolved()
    assert config.head_epochs == 0
    assert any("--epochs 1 leaves room for 0 head-only epoch(s) of the recipe's 3" in r.message for r in caplog.records)


def test_the_training_log_counts_what_is_used_after_decoding(tmp_path, rng, caplog):
    from train import data

    root = _classes(tmp_path / "shapes", ["round", "square"], rng, per_class=10)
    (root / "round" / "broken.png").write_bytes(b"not an image")
    config = TrainConfig(model="camera_cnn", folder=str(root), input_size=32).resolved()
    with caplog.at_level(logging.INFO, logger="edge_classify"):
        loaded = data.load(config, SPEC, batch_size=8)
    line = next(r.message for r in caplog.records if "images in 2 classes" in r.message)
    train, val, test = loaded.train_count, len(loaded.val[1]), len(loaded.test[1])
    assert f"{train + val + test} images in 2 classes: {train} train, {val} validate, {test} test" in line
    assert train + val + test == 20 and "skipped 1 not an image" in line
