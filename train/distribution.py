"""Where a run trains and how it steps: the tf.distribute strategy, the optimizer and its schedule,
and the explicit epoch loop multi-worker runs need (Keras 3 `fit()` cannot drive
``MultiWorkerMirroredStrategy``)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np

from . import data as data_mod
from .config import ConfigError, ResolvedTrainConfig

log = logging.getLogger("edge_classify.train")


def make_strategy(name: str) -> tuple[Any, int, int]:
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy(), 0, 1
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), 0, 1
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError(
            "--strategy multiworker needs TF_CONFIG describing the workers (see README: multi-worker training)"
        )
    try:
        tf_config = json.loads(raw)
        workers = tf_config["cluster"]["worker"]
        index = int(tf_config["task"]["index"])
        task_type = tf_config["task"]["type"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            'TF_CONFIG is not valid: expected {"cluster": {"worker": [...]}, "task": {"type": "worker", "index": N}}'
        ) from None
    if task_type != "worker" or not 0 <= index < len(workers):
        raise ConfigError(f"TF_CONFIG task {task_type}/{index} is not one of the {len(workers)} workers")
    return tf.distribute.MultiWorkerMirroredStrategy(), index, len(workers)


def build_optimizer(config: ResolvedTrainConfig, steps: int, replicas: int) -> Any:
    import keras

    # Linear scaling rule: the global batch grows with the replicas, so does the rate.
    peak = config.learning_rate * replicas
    epochs = config.head_epochs if config.backbone else config.epochs  # a backbone run's phase 1
    if config.schedule == "cosine" and config.low_res_epochs:
        from .schedules import PhasedCosine

        rate: Any = PhasedCosine(
            peak, int(config.warmup_epochs * steps), [config.low_res_epochs * steps, config.epochs * steps]
        )
    elif config.schedule == "cosine":
        total = max(1, epochs * steps)
        warmup = min(int(config.warmup_epochs * steps), total - 1)
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=peak / 10 if warmup else peak,
            decay_steps=total - warmup,
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    else:
        rate = peak
    return make_optimizer(config.optimizer, rate, config.weight_decay)


def make_optimizer(kind: str, rate: Any, weight_decay: float | None) -> Any:
    import keras

    # Keras applies weight_decay decoupled from the gradient (variable -= rate * decay * variable): AdamW.
    decay = weight_decay or None
    if kind == "adam":
        optimizer = keras.optimizers.Adam(rate, weight_decay=decay)
    elif kind == "rmsprop":
        optimizer = keras.optimizers.RMSprop(rate, weight_decay=decay)
    else:
        optimizer = keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=decay)
    if decay:
        # As AdamW is usually run: batch norm's scale and offset and the biases set levels, not features.
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def current_lr(model: Any) -> float:
    opt = model.optimizer
    rate = opt.learning_rate
    return float(np.asarray(rate))


def epoch_dataset(data: data_mod.TrainData, epoch: int, steps: int, worker: int, workers: int) -> Any:
    """Batches of one epoch as tf.data: rendered in two threads, in a fixed order, sharded by worker."""
    import tensorflow as tf

    spec = data.spec_for_epoch(epoch)
    classes = len(data.class_names)

    def batch(index: Any) -> tuple[np.ndarray, np.ndarray]:
        images, labels = data.make_batch(epoch, int(index) * workers + worker)
        if labels.ndim == 2:  # soft targets (distillation)
            return images, labels.astype(np.float32)
        return images, np.eye(classes, dtype=np.float32)[labels]

    def tf_batch(index: Any) -> tuple[Any, Any]:
        images, targets = tf.numpy_function(batch, [index], (tf.uint8, tf.float32), stateful=False)
        images.set_shape((None, spec.height, spec.width, spec.channels))
        targets.set_shape((None, classes))
        return tf.cast(images, tf.float32), targets

    dataset = tf.data.Dataset.range(steps).map(tf_batch, num_parallel_calls=2, deterministic=True).prefetch(2)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def one_hot_pair(pair: tuple[np.ndarray, np.ndarray], data: data_mod.TrainData) -> tuple[np.ndarray, np.ndarray]:
    images, labels = pair
    return images.astype(np.float32), np.eye(len(data.class_names), dtype=np.float32)[labels]


def fit_epoch_distributed(
    model: Any,
    strategy: Any,
    dataset: Any,
    steps: int,
    global_batch: int,
    label_smoothing: float,
    val: tuple[np.ndarray, np.ndarray],
    verbose: int,
) -> dict[str, float]:
    """One epoch under ``strategy.run``: per-replica gradients, all-reduced by the optimizer."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction="none")
    optimizer = model.optimizer

    def replica_step(images: Any, labels: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            per_example = loss_fn(labels, probabilities)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, -1), tf.argmax(labels, -1)), tf.float32))
        return tf.reduce_sum(per_example), correct

    @tf.function
    def train_step(images: Any, labels: Any) -> tuple[Any, Any]:
        loss_sum, correct = strategy.run(replica_step, args=(images, labels))
        return (
            strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None),
        )

    progress = keras.utils.Progbar(steps, verbose=verbose)
    total_loss = total_correct = 0.0
    for step, (images, labels) in enumerate(strategy.experimental_distribute_dataset(dataset)):
        loss_sum, correct = train_step(images, labels)
        total_loss, total_correct = total_loss + float(loss_sum), total_correct + float(correct)
        progress.update(step + 1)
    seen = max(1, steps * global_batch)
    probabilities = np.concatenate(
        [np.asarray(model(val[0][i : i + 256].astype(np.float32), training=False)) for i in range(0, len(val[0]), 256)]
    )
    one_hot = np.eye(probabilities.shape[1], dtype=np.float32)[val[1]]
    val_loss = float(
        np.mean(keras.losses.categorical_crossentropy(one_hot, probabilities, label_smoothing=label_smoothing))
    )
    return {
        "loss": total_loss / seen,
        "accuracy": total_correct / seen,
        "val_loss": val_loss,
        "val_accuracy": float(np.mean(np.argmax(probabilities, axis=1) == val[1])),
    }
