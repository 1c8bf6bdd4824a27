"""Training runs: every registry entry trains (tiny), run folders are complete, kills resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import EdgeError
from tests.helpers import ROOT, run_cli
from train import models
from train.config import ConfigError, TrainConfig
from train.datasets import camera_scenes

pytestmark = pytest.mark.dataset
RUN_FILES = ("model.keras", "labels.txt", "config.json", "metrics.json", "history.csv")
PLOTS = ("samples.png", "curves.png", "confusion.png", "predictions.png", "model.png", "model_summary.txt")


def _tiny(name: str) -> tuple[int, int, int]:
    """(epochs, training images, test images) the session's zoo trained ``name`` with."""
    from tests.conftest import TINY, TINY_OTHERS

    return TINY.get(name, TINY_OTHERS)


def _metrics(zoo: Path, name: str) -> dict:
    return json.loads((zoo / name / "metrics.json").read_text())


def test_every_model_writes_a_complete_run_folder(zoo):
    out = zoo
    names = [name for name, spec in models.REGISTRY.items() if spec.builder is not None]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    for name in names:
        epochs, _, tested = _tiny(name)
        run = out / name
        for file_name in RUN_FILES:
            assert (run / file_name).is_file(), f"{name}: {file_name}"
        assert not (run / "checkpoint").exists(), "a finished run leaves no checkpoint behind"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["model"] == name and metrics["epochs_run"] == epochs
        assert 0.0 <= metrics["test_accuracy"] <= 1.0
        assert np.asarray(metrics["confusion_matrix"]).sum() == tested
        assert len(metrics["per_class_accuracy"]) == 10
        assert set(metrics["robustness"]) == {
            "rotate_+10",
            "rotate_-10",
            "shift_5_3",
            "rotate_+10_shift_5_3",
            "rotate_-10_shift_5_3",
        }
        assert metrics["parameters"] > 0 and metrics["macs_per_image"] > 0 and metrics["training_time_s"] > 0
        history = (run / "history.csv").read_text().splitlines()
        assert history[0].startswith("epoch,loss,accuracy,val_loss,val_accuracy") and len(history) == epochs + 1
        assert (run / "labels.txt").read_text().splitlines()[9] == "Ankle boot"
        config = json.loads((run / "config.json").read_text())
        assert config["model"] == name and config["epochs"] == epochs and config["batch_size"] > 0


def test_plots_are_written_as_png(zoo):
    out = zoo
    for name in ("edge_cnn", "camera_cnn"):
        for plot in PLOTS:
            path = out / name / "plots" / plot
            assert path.is_file() and path.stat().st_size > 500, path
            if plot.endswith(".png"):
                assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tiny_edge_cnn_learns(zoo):
    metrics = _metrics(zoo, "edge_cnn")
    # A quarter-width model, 3 epochs on 3000 real images, a fifth of them shifted and tilted: 62%
    # here, where chance is 10%.
    assert metrics["test_accuracy"] > 0.35, "3 epochs on 3000 real images must beat chance by far"


def test_model_keras_reloads_safely_with_the_same_predictions(zoo, fashion_dir):
    import keras

    out = zoo
    tested = _tiny("edge_cnn")[2]
    model = keras.saving.load_model(out / "edge_cnn" / "model.keras", safe_mode=True)
    metrics = json.loads((out / "edge_cnn" / "metrics.json").read_text())
    from train.datasets import fashion_mnist

    test = fashion_mnist.load_split("test", fashion_dir)
    predicted = np.argmax(model.predict(test.images[:tested, ..., None].astype(np.float32), verbose=0), axis=1)
    assert np.mean(predicted == test.labels[:tested]) == pytest.approx(metrics["test_accuracy"], abs=1e-9)


def test_bad_options_are_one_line_errors_with_exit_code_2(tmp_path):
    result = run_cli("-m", "train", "edge_cn")
    assert result.returncode == 2 and "did you mean 'edge_cnn'" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("-m", "train", "edge_cnn", "--epocs", "3")
    assert result.returncode == 2 and "--epochs" in result.stderr
    file_out = tmp_path / "afile"
    file_out.write_text("x")
    result = run_cli("-m", "train", "edge_cnn", "--output-dir", str(file_out), "--epochs", "1", "--train-limit", "100")
    assert result.returncode == 2 and "is a file" in result.stderr and result.stderr.count("\n") == 1
    result = run_cli(
        "-m", "train", "edge_cnn", "--data-dir", str(tmp_path), "--epochs", "1", "--output-dir", str(tmp_path / "runs")
    )
    assert result.returncode == 2 and "Fashion-MNIST not found" in result.stderr
    with pytest.raises(ConfigError, match="--epochs must be >= 1, got 0"):
        TrainConfig(model="edge_cnn", epochs=0).resolved()


def test_weight_decay_shrinks_kernels_and_spares_batch_norm_and_biases():
    import keras

    from train import distribution

    model = models.get("edge_cnn").build(width=0.25)
    config = TrainConfig(model="edge_cnn", weight_decay=0.05, schedule="constant", learning_rate=0.1).resolved()
    optimizer = distribution.build_optimizer(config, steps=10, replicas=1)
    value = keras.ops.convert_to_numpy
    before = {v.path: value(v) for v in model.trainable_variables}
    # Zero gradients: Adam's own step is zero, so every change is the decay's.
    optimizer.apply_gradients([(keras.ops.zeros_like(v), v) for v in model.trainable_variables])
    spared = decayed = 0
    for v in model.trainable_variables:
        old, new = before[v.path], value(v)
        if v.name in ("gamma", "beta", "bias"):
            assert np.array_equal(new, old), v.path
            spared += 1
        else:
            assert np.allclose(new, old * (1 - 0.1 * 0.05)) and not np.array_equal(new, old), v.path
            decayed += 1
    assert spared and decayed
    with pytest.raises(ConfigError, match=r"--weight-decay must be \[0, 1\)"):
        TrainConfig(model="edge_cnn", weight_decay=-0.1).resolved()


def test_camera_run_reports_accuracy_per_scene_condition(zoo):
    metrics = _metrics(zoo, "camera_cnn")
    scenes = _tiny("camera_cnn")[2]
    report = metrics["scene_conditions"]
    assert set(report) == set(camera_scenes.CONDITIONS)
    for name, buckets in report.items():
        assert sum(cell["scenes"] for cell in buckets.values()) == scenes, name
        # every condition splits the same scenes, so its bins average back to the test accuracy
        pooled = sum(cell["scenes"] * cell["accuracy"] for cell in buckets.values()) / scenes
        assert pooled == pytest.approx(metrics["test_accuracy"], abs=1e-3), name
    assert set(report["polarity"]) == {"light on dark", "dark on light"}
    assert set(report["background"]) == {"plain", "gradient", "texture", "clutter"}
    assert "none" in report["blur"] and "none" in report["jpeg"]
    assert "scene_conditions" not in _metrics(zoo, "edge_cnn"), "only camera scenes have conditions"


def test_progressive_resizing_run_picks_a_full_size_epoch_and_keeps_the_fixed_input(tiny_runs):
    metrics = json.loads((tiny_runs / "camera_cnn" / "metrics.json").read_text())
    config = json.loads((tiny_runs / "camera_cnn" / "config.json").read_text())
    assert config["low_res_epochs"] == 1 and metrics["epochs_run"] == 2
    assert metrics["best_epoch"] == 2, "epoch 1 trained and validated at half size"
    assert metrics["input"]["height"] == 32, "the exported model keeps the contract's fixed size"


def test_soft_targets_mix_the_label_with_the_teachers_probabilities(zoo, fashion_dir):
    import keras

    from train import distill
    from train.datasets import fashion_mnist

    teacher = zoo / "edge_cnn" / "model.keras"
    train = fashion_mnist.load_split("train", fashion_dir)
    garments, labels = train.images[:300], train.labels[:300].astype(np.int64)
    targets = distill.soft_targets(teacher, garments, labels, 0.3, 10)
    probabilities = keras.saving.load_model(teacher).predict(garments[..., None].astype(np.float32), verbose=0)
    np.testing.assert_allclose(targets, 0.7 * np.eye(10)[labels] + 0.3 * probabilities, atol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-5)
    assert (targets.argmax(axis=1) == labels).all(), "at weight <= 0.5 the label always leads"
    assert (targets.max(axis=1) < 1.0).all(), "every target carries some of the teacher's doubt"


def test_camera_model_records_the_teacher_it_was_distilled_from(zoo):
    config = json.loads((zoo / "camera_cnn" / "config.json").read_text())
    assert config["teacher"] == "edge_cnn" and config["distill"] == models.get("camera_cnn").recipe["distill"] > 0
    teacher = _metrics(zoo, "camera_cnn")["teacher"]
    assert teacher["file"] == str((zoo / "edge_cnn" / "model.keras").resolve())
    assert len(teacher["sha256"]) == 64
    assert "teacher" not in _metrics(zoo, "edge_cnn")


def test_bad_distillation_options_are_clear_errors(zoo, tmp_path, monkeypatch, fashion_dir):
    from train import distill
    from train.datasets import fashion_mnist

    out = zoo
    with pytest.raises(ConfigError, match="needs camera scenes"):
        TrainConfig(model="edge_cnn", teacher="seed_cnn", distill=0.3).resolved()
    with pytest.raises(ConfigError, match="--distill must be 0..0.5"):
        TrainConfig(model="camera_cnn", distill=0.8).resolved()
    assert TrainConfig(model="camera_cnn", folder=str(tmp_path)).resolved().distill == 0.0
    assert distill.resolve_teacher("edge_cnn", out) == out / "edge_cnn" / "model.keras"
    assert distill.resolve_teacher(str(out / "edge_cnn"), tmp_path) == out / "edge_cnn" / "model.keras"
    with pytest.raises(EdgeError, match="did you mean 'edge_cnn'"):
        distill.resolve_teacher("edge_cn", out)
    monkeypatch.setenv("EDGE_RUNS_DIR", str(tmp_path))
    with pytest.raises(EdgeError, match="train it first"):
        distill.resolve_teacher("seed_cnn", tmp_path)
    train = fashion_mnist.load_split("train", fashion_dir)
    with pytest.raises(EdgeError, match="must read 28x28x1 garments"):
        distill.soft_targets(out / "camera_cnn" / "model.keras", train.images[:10], train.labels[:10], 0.5, 10)
    result = run_cli(
        "-m",
        "train",
        "camera_cnn",
        "--teacher",
        str(tmp_path / "missing.keras"),
        "--output-dir",
        str(tmp_path / "runs"),
    )
    assert result.returncode == 2 and "not found" in result.stderr and result.stderr.count("\n") == 1


def test_a_teacher_in_the_same_command_trains_before_its_student():
    from train.cli import training_order

    configs = [TrainConfig(model=name).resolved() for name in ("camera_cnn", "mlp128", "edge_cnn")]
    assert [config.model for config in training_order(configs)] == ["mlp128", "edge_cnn", "camera_cnn"]
    alone = [TrainConfig(model="camera_cnn").resolved(), TrainConfig(model="seed_cnn").resolved()]
    assert [config.model for config in training_order(alone)] == ["camera_cnn", "seed_cnn"]


def test_camera_model_trains_on_a_folder_dataset(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    for cls, colour in (("cats", (0, 0, 200)), ("dogs", (200, 0, 0))):
        for i in range(20):
            image = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
            cv2.circle(image, (20, 20), 12, colour, -1)
            cv2.imwrite(
                str(tmp_path / "data" / cls / f"{i}.jpg")
                if (tmp_path / "data" / cls).is_dir()
                else str(_mkdir(tmp_path / "data" / cls) / f"{i}.jpg"),
                image,
            )
    result = run_cli(
        "-m",
        "train",
        "camera_cnn",
        "--folder",
        str(tmp_path / "data"),
        "--epochs",
        "2",
        "--width",
        "0.25",
        "--input-size",
        "32",
        "--batch-size",
        "8",
        "--no-plots",
        "--output-dir",
        str(tmp_path / "runs"),
    )
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "camera_cnn-data"  # its own name: the registry's camera_cnn run is never replaced
    assert not (tmp_path / "runs" / "camera_cnn").exists()
    assert (run / "labels.txt").read_text().split() == ["cats", "dogs"]
    # config.json records what ran: the tutorials' augmentation, no teacher (folder images have no garment behind)
    config = json.loads((run / "config.json").read_text())
    assert config["augment"] == "tutorial" and config["teacher"] is None and config["distill"] == 0.0
    # An unsplit folder: 20% of the files held out as the test set, the same ones convert tests on.
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.asarray(metrics["confusion_matrix"]).sum() == 8
    from train.runfolder import RunFolder

    held = RunFolder.open(run).test_set()
    assert len(held.labels) == 8 and "held out from training" in held.name


def test_a_finished_run_is_left_as_it_is_unless_fresh(zoo):
    out = zoo
    model = out / "mlp128" / "model.keras"
    before = (model.stat().st_mtime_ns, model.read_bytes())
    args = [
        "-m",
        "train",
        "mlp128",
        "--epochs",
        "2",
        "--width",
        "0.25",
        "--train-limit",
        "2000",
        "--test-limit",
        "200",
        "--no-plots",
        "--output-dir",
        str(out),
    ]
    result = run_cli(*args, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "is a finished run" in result.stdout and "--fresh" in result.stdout
    assert (model.stat().st_mtime_ns, model.read_bytes()) == before
    result = run_cli(*args, "--fresh", timeout=300)
    assert result.returncode == 0 and "test accuracy" in result.stdout and model.stat().st_mtime_ns != before[0]


def test_a_finished_run_with_unreadable_metrics_is_still_left_as_it_is(tmp_path, capsys):
    from train import trainer

    run = tmp_path / "mlp128"
    run.mkdir()
    (run / "model.keras").write_bytes(b"weights")
    (run / "metrics.json").write_text("{ cut off")
    config = TrainConfig(model="mlp128", output_dir=str(tmp_path)).resolved()
    assert trainer.run_dir_of(config) == run
    result = trainer._finished_run(config)
    assert result is not None and result.finished_before and result.metrics == {}
    assert "is a finished run; left as it is" in capsys.readouterr().out
    assert (run / "model.keras").read_bytes() == b"weights"


def test_run_folder_names():
    assert TrainConfig(model="camera_cnn", folder="/data/pets/").run_name() == "camera_cnn-pets"
    assert TrainConfig(model="clothes_lite0", folder="data/clothing-small").run_name() == "clothes_lite0"
    assert TrainConfig(model="edge_cnn", name="edge_v2").run_name() == "edge_v2"
    with pytest.raises(ConfigError, match="plain folder name"):
        TrainConfig(model="edge_cnn", name="../elsewhere").resolved()
    result = run_cli("-m", "train", "edge_cnn", "mlp128", "--name", "x")
    assert result.returncode == 2 and "one at a time" in result.stderr


def test_metrics_name_both_validation_accuracies(zoo):
    import csv

    out = zoo
    metrics = _metrics(zoo, "edge_cnn")
    rows = list(csv.DictReader((out / "edge_cnn" / "history.csv").open()))
    assert "val_accuracy" not in metrics
    assert metrics["val_accuracy_history"] == pytest.approx(
        float(rows[metrics["best_epoch"] - 1]["val_accuracy"]), abs=1e-6
    )
    assert 0.0 <= metrics["val_accuracy_saved_model"] <= 1.0


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_workers_on_localhost_end_with_the_same_weights(tmp_path):
    ports = [_free_port(), _free_port()]
    workers = [f"127.0.0.1:{port}" for port in ports]
    processes = []
    for index in range(2):
        env = dict(
            os.environ,
            TF_CPP_MIN_LOG_LEVEL="3",
            TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
        )
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "train",
                    "edge_cnn",
                    "--strategy",
                    "multiworker",
                    "--epochs",
                    "1",
                    "--width",
                    "0.25",
                    "--train-limit",
                    "1000",
                    "--test-limit",
                    "200",
                    "--no-plots",
                    "--output-dir",
                    str(tmp_path),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=400) for p in processes]
    for process, (_out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-2000:]
        assert "2 replica(s)" in err
    digests = [out.strip().splitlines()[-1].split("weights ")[1].split(";")[0] for out, _ in outputs]
    assert digests[0] == digests[1]
    chief = json.loads((tmp_path / "edge_cnn" / "metrics.json").read_text())
    assert chief["weights_sha256"].startswith(digests[0])


def test_multiworker_without_tf_config_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "train",
            "edge_cnn",
            "--strategy",
            "multiworker",
            "--epochs",
            "1",
            "--output-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "needs TF_CONFIG" in result.stderr
