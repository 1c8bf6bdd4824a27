"""How a trained model is measured: predictions, per-class metrics, robustness, camera conditions,
and the metrics.json of a run, as a device would run it (batch norm re-estimated first)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge_runtime.contract import InputSpec

from . import architectures, augment, runfolder, unknown
from . import data as data_mod
from .checkpoints import State
from .config import ResolvedTrainConfig
from .datasets import camera_frames, camera_scenes

log = logging.getLogger("edge_classify.train")


def recalibrate_batch_norm(model: Any, data: data_mod.TrainData, epoch: int, batches: int = 25) -> None:
    """Replace BatchNorm moving averages with exact averages over training batches ("precise BN").

    Moving averages start at variance 1 and lag the weights they describe; after short runs they
    can be far off (inference then differs from training). Averaging fresh batch statistics of the
    final weights fixes that at the cost of a few forward passes.
    """
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    saved = [layer.momentum for layer in norms]
    steps = max(1, min(batches, data.steps_per_epoch))
    try:
        for k in range(1, steps + 1):
            for layer in norms:
                layer.momentum = 1.0 - 1.0 / k  # running mean of batch statistics
            images, _ = data.make_batch(epoch, k - 1)  # the last epoch's batches: camera scenes already rendered
            model(images.astype(np.float32), training=True)
    finally:
        for layer, momentum in zip(norms, saved):
            layer.momentum = momentum


def predict_probabilities(model: Any, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Softmax outputs for uint8 NHWC images (the graph normalizes)."""
    return predict_all(model, images, batch_size)[0]


def predict_all(model: Any, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax outputs and, for a model with the out-of-class output, its scores."""
    if len(images) == 0:
        classes = model.output_shape[0][-1] if unknown.has_unknown_output(model) else model.output_shape[-1]
        return np.zeros((0, classes), np.float32), (
            np.zeros(0, np.float32) if unknown.has_unknown_output(model) else None
        )
    return unknown.split_outputs(model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0))


def classification_metrics(labels: np.ndarray, predicted: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, per-class accuracy and the confusion matrix (rows: true class, columns: predicted)."""
    n = len(class_names)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    per_class = {
        name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
        for i, name in enumerate(class_names)
    }
    return {
        "test_accuracy": float(np.mean(labels == predicted)) if len(labels) else 0.0,
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def robustness(model: Any, images: np.ndarray, labels: np.ndarray, input_spec: InputSpec) -> dict[str, float]:
    """The tutorials' lesson as numbers: accuracy after rotating +-10 degrees and shifting (5, 3) pixels.

    Shifts are in 28x28 pixels and scaled to the model's input size, so a camera model is moved
    by the same fraction of its frame.
    """
    factor = input_spec.width / 28.0
    shift = (5.0 * factor, 3.0 * factor)
    colour = input_spec.channels == 3
    cases = {
        "rotate_+10": (10.0, (0.0, 0.0)),
        "rotate_-10": (-10.0, (0.0, 0.0)),
        "shift_5_3": (0.0, shift),
        "rotate_+10_shift_5_3": (10.0, shift),
        "rotate_-10_shift_5_3": (-10.0, shift),
    }
    results = {}
    for name, (angle, offset) in cases.items():
        warped = augment.rotate_shift(images, angle, offset, replicate_border=colour)
        results[name] = float(np.mean(np.argmax(predict_probabilities(model, warped), axis=1) == labels))
    return results


def camera_metrics(
    model: Any,
    data: data_mod.TrainData,
    input_spec: InputSpec,
    head: unknown.UnknownHead | None,
    scores: np.ndarray | None,
) -> dict[str, Any]:
    """``unknown`` (the out-of-class head and the share of test images it accepts, given their
    ``scores``) and ``camera_conditions`` (the held-out photos as a camera sees them), where they apply."""
    out: dict[str, Any] = {}
    if head is not None and scores is not None:
        out["unknown"] = {**head.to_dict(), "test_accepted": float(np.mean(scores <= head.threshold))}
    if data.test_photos is not None:
        out["camera_conditions"] = camera_frames.measure(
            lambda images: predict_all(model, images),
            camera_frames.as_bgr(data.test_photos, input_spec.color_order),
            data.test[1],
            input_spec,
            threshold=head.threshold if head else None,
        )
        log.info("camera conditions: %s", camera_frames.summary(out["camera_conditions"]))
    return out


def evaluate(
    model: Any,
    data: data_mod.TrainData,
    config: ResolvedTrainConfig,
    state: State,
    input_spec: InputSpec,
    head: unknown.UnknownHead | None = None,
) -> dict[str, Any]:
    x_test, y_test = data.test
    probabilities, scores = predict_all(model, x_test)
    predicted = np.argmax(probabilities, axis=1)
    kind = config.dataset_kind
    metrics: dict[str, Any] = {"model": config.model, "dataset": kind.name, "test_set": data.test_name}
    metrics.update(classification_metrics(y_test, predicted, data.class_names))
    val_predicted = np.argmax(predict_probabilities(model, data.val[0]), axis=1)
    # Two validation accuracies, named apart: the saved model's (batch norm re-estimated on the last
    # epoch's batches, as deployed) and history.csv's at the best epoch (training's running averages).
    metrics["val_accuracy_saved_model"] = float(np.mean(val_predicted == data.val[1]))
    if state.best_epoch:
        metrics["val_accuracy_history"] = float(state.history[state.best_epoch - 1]["val_accuracy"])
    metrics["robustness"] = robustness(model, x_test, y_test, input_spec)
    if data.test_conditions:
        metrics["scene_conditions"] = camera_scenes.accuracy_by_condition(data.test_conditions, predicted == y_test)
    metrics.update(camera_metrics(model, data, input_spec, head, scores))
    metrics.update(
        parameters=int(model.count_params()),
        macs_per_image=architectures.count_macs(model),
        training_time_s=round(state.elapsed_s, 1),
        epochs_run=state.epoch,
        best_epoch=state.best_epoch,
        stopped_early=state.stopped_early,
        class_names=list(data.class_names),
        input=input_spec.to_dict(),
        weights_sha256=runfolder.weights_digest(model),
    )
    metrics["_probabilities"] = probabilities  # for plots; dropped before writing
    return metrics
