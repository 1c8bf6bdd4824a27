""" "None of these": an out-of-class score computed inside the model file from its own features.

A classifier's softmax always names a class, and its top score is a poor judge of whether the
thing in view is one of them (on the shipped camera model, max softmax at 95% in-class
acceptance still accepted about half of 185 ImageNet photos of other things). The features do
much better: a frame unlike every training photo is far from all of them. The features are the
pooled outputs of the last three stages (:data:`FEATURES_LAYERS`: the 1280 pooled head features
and the 320- and 192-channel blocks before it), each scaled to unit length and joined, so each
stage has an equal say. Kept as prototypes, each class's training features clustered by
spherical k-means, the score is

    unknown = 1 - max over prototypes of cosine(features, prototype)        (0: identical, 2: opposite)

which needs only standard layers (pooling, L2 normalization, concatenation, a dense layer without
bias, a max), so TFLite and ONNX, float and int8, carry it as a second output.

On the camera-trained clothes_lite0, with the threshold calibrated as below, the pooled head
features alone (32 prototypes a class) accepted 8.6% of 185 ImageNet photos of other things; the
three stages (64 a class) accept 2.7%, with as many camera frames of garments accepted (93.7%
against 93.6%, far ones 96.8% against 91.8%) and 2.4 points fewer plain photos (90.6%). At a
threshold keeping 95% of the plain held-out photos they accept 7.0% of the others against 10.8%.
The last block alone accepted half of the empty procedural rooms; the head features keep those out.

The threshold is calibrated on held-out in-class images (the validation photos, plain and as a
camera frames them) to keep :data:`KEEP` of them, and travels in the file's contract.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_runtime.contract import InputSpec
from edge_runtime.unknown import KEEP, PROTOTYPES_PER_CLASS, SCORE, SCORE_RANGE, calibrate, scores, spherical_kmeans

if TYPE_CHECKING:
    import keras

    from .data import TrainData

log = logging.getLogger("edge_classify.train")

# The stages whose pooled, unit-length outputs are joined into the features; the first must exist,
# the others are used where the backbone has them (every EfficientNet-Lite does).
FEATURES_LAYERS = ("pool", "block15_project_bn", "block14_add")
OUTPUT_NAME = "unknown"


@dataclass(frozen=True)
class UnknownHead:
    """Prototypes (unit rows) and the calibrated threshold of one model."""

    prototypes: np.ndarray  # (P, D) float32, unit length
    threshold: float
    calibrated_on: str
    in_class_accepted: float  # on the calibration images (about KEEP)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": SCORE,
            "threshold": self.threshold,
            "range": list(SCORE_RANGE),
            "keep": KEEP,
            "prototypes": int(len(self.prototypes)),
            "calibrated_on": self.calibrated_on,
            "in_class_accepted": self.in_class_accepted,
        }


def prototypes(
    features: np.ndarray, labels: np.ndarray, classes: int, *, per_class: int = PROTOTYPES_PER_CLASS, seed: int = 0
) -> np.ndarray:
    """Each class's features clustered into ``per_class`` prototypes, stacked class by class."""
    parts = [
        spherical_kmeans(features[labels == k], per_class, seed=seed + k) for k in range(classes) if np.any(labels == k)
    ]
    return np.concatenate(parts).astype(np.float32)


def feature_tensor(model: "keras.Model") -> Any:
    """The unit-length joined features of :data:`FEATURES_LAYERS`, as a tensor of ``model``'s graph."""
    from keras import layers

    names = [name for name in FEATURES_LAYERS if any(layer.name == name for layer in model.layers)]
    if FEATURES_LAYERS[0] not in names:
        raise ValueError(f"{model.name} has no {FEATURES_LAYERS[0]!r} layer; the out-of-class head needs a backbone")
    parts = []
    for name in names:
        tensor = model.get_layer(name).output
        if len(tensor.shape) == 4:
            tensor = layers.GlobalAveragePooling2D(name=f"unknown_pool_{name}")(tensor)
        parts.append(layers.UnitNormalization(axis=-1, name=f"unknown_unit_{name}")(tensor))
    joined = layers.Concatenate(name="unknown_join")(parts) if len(parts) > 1 else parts[0]
    return layers.UnitNormalization(axis=-1, name="unknown_normalize")(joined)


def feature_model(model: "keras.Model") -> "keras.Model":
    """The model up to the out-of-class head's features."""
    import keras

    return keras.Model(model.input, feature_tensor(model))


def features_of(model: "keras.Model", images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    return np.asarray(feature_model(model).predict(images.astype(np.float32), batch_size=batch_size, verbose=0))


def with_unknown_output(model: "keras.Model", protos: np.ndarray) -> "keras.Model":
    """``model`` with a second output, ``unknown`` (batch, 1): the score above, from its pooled features.

    Standard layers only (no Lambda), so the file loads in safe mode and every exporter handles it.
    """
    import keras
    from keras import layers

    unit = feature_tensor(model)
    similarity = layers.Dense(len(protos), use_bias=False, name="unknown_prototypes")(unit)
    best = layers.GlobalMaxPooling1D(name="unknown_best")(
        layers.Reshape((len(protos), 1), name="unknown_reshape")(similarity)
    )
    score = layers.Dense(1, name=OUTPUT_NAME)(best)  # 1 - best similarity
    head = keras.Model(model.input, [model.output, score], name=model.name)
    head.get_layer("unknown_prototypes").set_weights([protos.T.astype(np.float32)])
    head.get_layer(OUTPUT_NAME).set_weights([np.full((1, 1), -1.0, np.float32), np.ones(1, np.float32)])
    return head


def fit_head(model: "keras.Model", data: "TrainData", spec: InputSpec, seed: int, steps: int) -> UnknownHead:
    """Prototypes from a fresh epoch of training batches (plain and camera-framed, without clutter), and the
    threshold that keeps 95% of the validation photos, plain and under every camera condition."""
    from .datasets import camera_frames

    batches = data.prototype_batch or data.make_batch
    images, labels = zip(*(batches(10_000, index) for index in range(steps)))
    train_features = features_of(model, np.concatenate(images))
    protos = prototypes(train_features, np.concatenate(labels), len(data.class_names), seed=seed)
    held_out = [data.val[0]]
    name = f"{len(data.val[1])} validation images"
    if data.val_photos is not None:
        bgr = camera_frames.as_bgr(data.val_photos, spec.color_order)
        held_out.append(camera_frames.in_class_frames(bgr, data.val[1], spec))
        name = (
            f"{len(data.val[1])} validation photos, plain and under the "
            f"{len(camera_frames.GARMENT_CONDITIONS)} camera conditions"
        )
    calibration = scores(features_of(model, np.concatenate(held_out)), protos)
    threshold = calibrate(calibration)
    head = UnknownHead(protos, threshold, name, float(np.mean(calibration <= threshold)))
    log.info(
        "unknown: %d prototypes, threshold %.4f (keeps %.1f%% of %s)",
        len(protos),
        threshold,
        100 * head.in_class_accepted,
        name,
    )
    return head


def has_unknown_output(model: "keras.Model") -> bool:
    """Whether ``model`` is a classifier with this module's out-of-class output (and no other second output)."""
    # `outputs`, not `output`: a Sequential model loaded from a file has a graph but was never
    # called, and Keras raises for its `output`.
    outputs = list(getattr(model, "outputs", None) or [])
    return (
        len(outputs) == 2
        and tuple(outputs[1].shape)[1:] == (1,)
        and any(layer.name == OUTPUT_NAME for layer in model.layers)
    )


def split_outputs(outputs: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities, unknown scores or None) from a Keras ``predict`` of either kind of model."""
    if isinstance(outputs, (list, tuple)):
        return np.asarray(outputs[0]), np.asarray(outputs[1]).reshape(-1)
    if isinstance(outputs, dict):
        return np.asarray(outputs["probabilities"]), np.asarray(outputs[OUTPUT_NAME]).reshape(-1)
    return np.asarray(outputs), None
