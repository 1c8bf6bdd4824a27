"""A training run: build, fit epoch by epoch with crash-safe checkpoints, evaluate, write the run folder.

Run folder (fixed names)::

    runs/<MODEL>/model.keras     best epoch by validation loss (architecture + weights)
    runs/<MODEL>/labels.txt      one class name per line, in output order
    runs/<MODEL>/config.json     the resolved TrainConfig
    runs/<MODEL>/metrics.json    test accuracy, per class, confusion matrix, robustness, size, time
    runs/<MODEL>/history.csv     one row per epoch
    runs/<MODEL>/plots/          the tutorials' pictures, and better
    runs/<MODEL>/checkpoint/     only while a run is unfinished: what a restart resumes from

Every file is written to a temporary name and renamed, so a kill at any moment leaves either
the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.errors import EdgeError, OutputError
from edge_common.files import atomic_save, atomic_write_text, sha256_file
from edge_runtime.contract import InputSpec

from . import augment, distill, models, paths, runfolder, unknown
from . import data as data_mod
from .config import RESUME_KEYS, ConfigError, TrainConfig
from .datasets import camera_frames, camera_scenes

log = logging.getLogger("edge_classify.train")
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    resumed_from: int = 0
    finished_before: bool = False  # a finished run found and left as it was (no --fresh)


@dataclass
class _State:
    """What checkpoint/state.json holds: enough to continue exactly where a run stopped."""

    epoch: int = 0  # completed epochs
    last: str | None = None
    best: str | None = None
    best_val_loss: float = float("inf")
    best_epoch: int = 0
    wait: int = 0
    stopped_early: bool = False
    elapsed_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Session:
    """One run in progress: what it trains, on what, and where it writes."""

    config: TrainConfig
    spec: models.ModelSpec
    input_spec: InputSpec
    write_dir: Path
    ckpt_dir: Path
    data: data_mod.TrainData
    state: _State
    strategy: Any
    worker_index: int
    num_workers: int
    global_batch: int
    steps: int
    teacher: Path | None
    model: Any = None

    @property
    def name(self) -> str:
        return self.spec.name


def run(config: TrainConfig) -> RunResult:
    """Train one model as configured and write its run folder.

    Raises:
        EdgeError subclasses for bad options, missing data or unwritable output.
    """
    config = config.resolved()
    finished = _finished_run(config)
    if finished is not None:
        return finished
    if models.get(config.model).dataset == "imagenet":  # published weights: ported, not trained
        from . import pretrained

        run_dir = pretrained.write_run(config)
        return RunResult(run_dir=run_dir, metrics=runfolder.read_metrics(run_dir))
    session = _prepare(config)
    resumed_from = session.state.epoch
    _build_model(session)
    _train_epochs(session)
    metrics = _finish(session)
    return RunResult(run_dir=session.write_dir, metrics=metrics, resumed_from=resumed_from)


def run_dir_of(config: TrainConfig) -> Path:
    """Where this run's folder is: the output folder (default runs/) / the run's name."""
    return runfolder.run_dir_for(config.run_name(), config.output_dir)


def _finished_run(config: TrainConfig) -> RunResult | None:
    """A finished run is left as it is unless --fresh: retraining would replace a model (a shipped one,
    perhaps) that took minutes to hours to train."""
    run_dir = run_dir_of(config)
    if config.fresh or not runfolder.is_finished(run_dir):
        return None
    _same_run_or_refuse(config, run_dir)
    # Unreadable metrics do not make a finished model less finished: it is still left as it is.
    metrics = runfolder.read_metrics(run_dir)
    accuracy = metrics.get("test_accuracy")
    print(f"{config.run_name()}: {run_dir} is a finished run"
          f"{f' (test accuracy {accuracy:.4f})' if isinstance(accuracy, float) else ''}; left as it is "
          f"(pass --fresh to retrain it and replace its files, or --name for a new run folder)", flush=True)
    return RunResult(run_dir=run_dir, metrics=metrics, finished_before=True)


def _same_run_or_refuse(config: TrainConfig, run_dir: Path) -> None:
    """A finished run is only reused by the same run: the same dataset path and the same classes.

    Raises:
        ConfigError: the folder holds a run of other data (a dataset folder of the same name elsewhere).
    """
    recorded = runfolder.read_config(run_dir)
    differences = []
    then, now = recorded.get("folder"), config.folder  # Fashion-MNIST is the same data wherever its files are
    if "folder" in recorded and not _same_path(then, now):
        differences.append(f"--folder was {then or 'not set'}, now {now or 'not set'}")
    if config.folder and not differences:
        from .datasets import folder as folder_data

        root = paths.resolve_folder(config.folder)
        try:
            names = folder_data.open_folder(root, "train" if folder_data.has_splits(root) else None).class_names
        except EdgeError:
            names = None  # the dataset's own error comes when it is read for training
        labels = runfolder.read_recorded_labels(run_dir)
        if names is not None and labels is not None and tuple(labels) != tuple(names):
            differences.append(f"its classes were {', '.join(labels)}, now {', '.join(names)}")
    if differences:
        raise ConfigError(f"{run_dir} is a finished run of other data ({'; '.join(differences)}); pass --fresh to "
                          "replace it, or --name NAME for a new run folder")


def _same_path(then: Any, now: Any) -> bool:
    if not then or not now:
        return not then and not now
    return paths.resolve_folder(str(then)).resolve() == paths.resolve_folder(str(now)).resolve()


def _prepare(config: TrainConfig) -> _Session:
    """Check the output, resolve the teacher, set up the strategy, load the data and the checkpoint state."""
    spec = models.get(config.model)
    input_spec = _input_spec(spec, config)
    run_dir = run_dir_of(config)
    out_root = run_dir.parent
    _check_output(run_dir)
    # validate() has made sure a distilling run names a teacher; resolve it before any heavy work.
    teacher = distill.resolve_teacher(config.teacher, out_root) if config.distill else None

    strategy, worker_index, num_workers = _make_strategy(config.strategy)
    write_dir = run_dir if worker_index == 0 else run_dir / f".worker-{worker_index}"
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    data = data_mod.load(config, input_spec, batch_size=global_batch // num_workers, teacher=teacher)

    ckpt_dir = write_dir / runfolder.CHECKPOINT_DIR
    state = _State() if config.fresh else _load_state(ckpt_dir, config)
    if config.fresh and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    if state.epoch >= config.epochs or state.stopped_early:
        log.info("%s: training already finished at epoch %d; writing the run folder", spec.name, state.epoch)
    elif state.epoch:
        log.info("%s: resuming from epoch %d of %d (checkpoint in %s)", spec.name, state.epoch, config.epochs, ckpt_dir)
    state.config = config.resume_view()
    return _Session(config, spec, input_spec, write_dir, ckpt_dir, data, state, strategy, worker_index, num_workers,
                    global_batch, max(1, data.train_count // global_batch), teacher)


def _build_model(session: _Session) -> None:
    """The model to train: the checkpoint's when resuming, else a fresh compiled one."""
    import keras

    from . import schedules  # noqa: F401  (registers the schedule class before checkpoints load)

    config, data = session.config, session.data
    keras.utils.set_random_seed(config.seed)
    with session.strategy.scope():
        if session.state.last:
            model = keras.saving.load_model(session.ckpt_dir / session.state.last, safe_mode=True)
        else:
            model = models.build_model(session.spec, len(data.class_names), width=config.width,
                                       input_spec=session.input_spec, any_size=config.low_res_epochs > 0,
                                       backbone=config.backbone, dropout=config.dropout, imagenet=True)
            if config.backbone:  # phase 1: the new head alone, on the frozen ImageNet backbone
                from .backbones.efficientnet_lite import set_phase

                set_phase(model, None)
            _compile(model, _optimizer(config, session.steps, session.strategy.num_replicas_in_sync), config)
    session.model = model
    fixed = model if not config.low_res_epochs else models.build_model(  # any-size models have no fixed shapes
        session.spec, len(data.class_names), width=config.width, input_spec=session.input_spec)
    macs = models.count_macs(fixed)
    _log_start(session.name, model, macs, data, config, session.global_batch, session.strategy.num_replicas_in_sync)


def _compile(model: Any, optimizer: Any, config: TrainConfig) -> None:
    import keras

    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])


def _start_fine_tuning(session: _Session) -> None:
    """Phase 2 of a backbone run: unfreeze the blocks from ``fine_tune_from`` on (batch norm stays
    frozen) and recompile with the fine-tuning rate, decayed by a cosine over the remaining epochs."""
    import keras

    from .backbones.efficientnet_lite import set_phase

    config = session.config
    with session.strategy.scope():
        set_phase(session.model, config.fine_tune_from)
        steps = max(1, (config.epochs - config.head_epochs) * session.steps)
        warmup = min(session.steps // 2, steps - 1)  # half an epoch: the new head's gradients settle first
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.fine_tune_rate / 10 if warmup else config.fine_tune_rate,
            decay_steps=steps - warmup, warmup_target=config.fine_tune_rate if warmup else None, warmup_steps=warmup)
        _compile(session.model, _make_optimizer("adam", rate, config.weight_decay), config)
    trainable = sum(int(np.prod(w.shape)) for w in session.model.trainable_weights)
    log.info("%s: phase 2 from epoch %d: fine-tuning %s weights from block %d at %.2g", session.name,
             config.head_epochs + 1, f"{trainable:,}", config.fine_tune_from, config.fine_tune_rate)


def _train_epochs(session: _Session) -> None:
    """Fit epoch by epoch until the last one or early stopping, checkpointing after each."""
    config, state = session.config, session.state
    verbose = 1 if sys.stdout.isatty() else 0
    while state.epoch < config.epochs and not state.stopped_early:
        if config.backbone and state.epoch == config.head_epochs:
            _start_fine_tuning(session)
        started = time.perf_counter()
        row = _fit_one_epoch(session, state.epoch, verbose)
        seconds = time.perf_counter() - started
        row.update(epoch=state.epoch + 1, learning_rate=_current_lr(session.model), seconds=round(seconds, 2))
        improved = _record_epoch(state, row, seconds, config)
        _save_checkpoint(session.model, session.ckpt_dir, state, improved or state.epoch <= config.low_res_epochs)
        _write_history(session.write_dir / runfolder.HISTORY_FILE, state.history)
        print(f"{session.name} epoch {state.epoch}/{config.epochs}  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
              f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}  lr {row['learning_rate']:.2e}  "
              f"{seconds:.1f}s{'  *best' if improved else ''}", flush=True)
        if state.stopped_early:
            log.info("%s: early stop: validation loss has not improved for %d epochs", session.name, config.patience)


def _fit_one_epoch(session: _Session, epoch: int, verbose: int) -> dict[str, float]:
    data = session.data
    dataset = _epoch_dataset(data, epoch, session.steps, session.worker_index, session.num_workers)
    if session.num_workers > 1:
        # Keras 3's fit() cannot drive MultiWorkerMirroredStrategy (keras-team/keras#20585), so
        # multi-worker runs use an explicit strategy.run loop over the same data and optimizer.
        return _fit_epoch_distributed(session.model, session.strategy, dataset, session.steps, session.global_batch,
                                      session.config.label_smoothing, data.val_for_epoch(epoch), verbose)
    result = session.model.fit(dataset, epochs=1, verbose=verbose,
                               validation_data=_one_hot_pair(data.val_for_epoch(epoch), data),
                               validation_batch_size=256, shuffle=False)
    return {key: float(values[-1]) for key, values in result.history.items()}


def _record_epoch(state: _State, row: dict[str, float], seconds: float, config: TrainConfig) -> bool:
    """Add one epoch to the state; True when it is the best so far. Early stopping counts here."""
    epoch = state.epoch
    state.history.append({k: row.get(k, float("nan")) for k in HISTORY_FIELDS})
    state.elapsed_s += seconds
    state.epoch = epoch + 1
    if epoch < config.low_res_epochs:  # validated at half size: not comparable with the final model
        return False
    if row["val_loss"] < state.best_val_loss:
        state.best_val_loss, state.best_epoch, state.wait = row["val_loss"], state.epoch, 0
        return True
    state.wait += 1
    state.stopped_early = state.wait >= config.patience
    return False


def _finish(session: _Session) -> dict[str, Any]:
    """Evaluate the best epoch as a device would run it, write the run folder, drop the checkpoint."""
    import keras

    config, state, data = session.config, session.state, session.data
    # Outside any distribution strategy, with the registry's fixed input size.
    best = keras.saving.load_model(session.ckpt_dir / state.best, safe_mode=True, compile=False)
    final = models.build_model(session.spec, len(data.class_names), width=config.width,
                               input_spec=session.input_spec, backbone=config.backbone, dropout=config.dropout)
    for layer in final.layers:  # by name: frozen and trainable layers list their weights alike
        layer.set_weights(best.get_layer(layer.name).get_weights())
    if not config.backbone:  # a backbone's batch norm keeps its ImageNet statistics (it never trained)
        # Batches of the last full-resolution epoch (already rendered for camera models).
        _recalibrate_batch_norm(final, data, epoch=max(config.low_res_epochs, state.epoch - 1))
    head = None
    if config.backbone:  # "none of these": a second output from the features (see unknown.py)
        head = unknown.fit_head(final, data, session.input_spec, config.seed, session.steps)
        final = unknown.with_unknown_output(final, head.prototypes)
    data.close()
    metrics = _evaluate(final, data, config, state, session.input_spec, head)
    if session.teacher is not None:  # the soft targets depend on the teacher's exact weights
        metrics["teacher"] = {"file": _display_path(session.teacher), "sha256": sha256_file(session.teacher)}
    _write_run(session.write_dir, final, data, config, metrics, state)
    shutil.rmtree(session.ckpt_dir, ignore_errors=True)
    print(f"{session.name}: test accuracy {metrics['test_accuracy']:.4f} on {data.test_name}; "
          f"{metrics['parameters']:,} params, {metrics['macs_per_image']:,} MACs; "
          f"trained {metrics['training_time_s'] / 60:.1f} min; weights {metrics['weights_sha256'][:12]}; "
          f"wrote {session.write_dir}", flush=True)
    if "scene_conditions" in metrics:
        log.info("%s: hardest camera conditions: %s", session.name, camera_scenes.hardest(metrics["scene_conditions"]))
    return metrics


def _input_spec(spec: models.ModelSpec, config: TrainConfig) -> InputSpec:
    """The registry's input contract with the run's size and fit, if it sets them."""
    changes: dict[str, Any] = {}
    if config.input_size is not None:
        changes.update(height=config.input_size, width=config.input_size)
    if config.fit is not None:
        changes["fit"] = config.fit
    if config.crop is not None:
        changes["crop"] = config.crop
    if config.backbone:
        from . import backbones

        minimum = backbones.get(config.backbone).min_size
        size = min(changes.get("height", spec.input.height), changes.get("width", spec.input.width))
        if size < minimum:
            raise ConfigError(f"--input-size {size} is below the {minimum} pixels backbone {config.backbone!r} "
                              f"accepts; use {minimum} or more")
    return replace(spec.input, **changes) if changes else spec.input


def _check_output(run_dir: Path) -> None:
    for parent in (run_dir.parent, run_dir):
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"output path {parent} is a file; pass --output-dir with a folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {run_dir} ({exc.strerror or exc}); pass a writable --output-dir") from None
    if not os.access(run_dir, os.W_OK):
        raise OutputError(f"{run_dir} is not writable; pass a writable --output-dir")


def _make_strategy(name: str) -> tuple[Any, int, int]:
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy(), 0, 1
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), 0, 1
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError("--strategy multiworker needs TF_CONFIG describing the workers (see README: "
                          "multi-worker training)")
    try:
        tf_config = json.loads(raw)
        workers = tf_config["cluster"]["worker"]
        index = int(tf_config["task"]["index"])
        task_type = tf_config["task"]["type"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError('TF_CONFIG is not valid: expected '
                          '{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": N}}') from None
    if task_type != "worker" or not 0 <= index < len(workers):
        raise ConfigError(f"TF_CONFIG task {task_type}/{index} is not one of the {len(workers)} workers")
    return tf.distribute.MultiWorkerMirroredStrategy(), index, len(workers)


def _optimizer(config: TrainConfig, steps: int, replicas: int) -> Any:
    import keras

    # Linear scaling rule: the global batch grows with the replicas, so does the rate.
    peak = config.learning_rate * replicas
    epochs = config.head_epochs if config.backbone else config.epochs  # a backbone run's phase 1
    if config.schedule == "cosine" and config.low_res_epochs:
        from .schedules import PhasedCosine

        rate: Any = PhasedCosine(peak, int(config.warmup_epochs * steps),
                                 [config.low_res_epochs * steps, config.epochs * steps])
    elif config.schedule == "cosine":
        total = max(1, epochs * steps)
        warmup = min(int(config.warmup_epochs * steps), total - 1)
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=peak / 10 if warmup else peak, decay_steps=total - warmup,
            warmup_target=peak if warmup else None, warmup_steps=warmup)
    else:
        rate = peak
    return _make_optimizer(config.optimizer, rate, config.weight_decay)


def _make_optimizer(kind: str, rate: Any, weight_decay: float | None) -> Any:
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


def _current_lr(model: Any) -> float:
    opt = model.optimizer
    rate = opt.learning_rate
    return float(np.asarray(rate))


def _epoch_dataset(data: data_mod.TrainData, epoch: int, steps: int, worker: int, workers: int) -> Any:
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


def _recalibrate_batch_norm(model: Any, data: data_mod.TrainData, epoch: int, batches: int = 25) -> None:
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


def _one_hot_pair(pair: tuple[np.ndarray, np.ndarray], data: data_mod.TrainData) -> tuple[np.ndarray, np.ndarray]:
    images, labels = pair
    return images.astype(np.float32), np.eye(len(data.class_names), dtype=np.float32)[labels]


def _fit_epoch_distributed(model: Any, strategy: Any, dataset: Any, steps: int, global_batch: int,
                           label_smoothing: float, val: tuple[np.ndarray, np.ndarray], verbose: int,
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
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None))

    progress = keras.utils.Progbar(steps, verbose=verbose)
    total_loss = total_correct = 0.0
    for step, (images, labels) in enumerate(strategy.experimental_distribute_dataset(dataset)):
        loss_sum, correct = train_step(images, labels)
        total_loss, total_correct = total_loss + float(loss_sum), total_correct + float(correct)
        progress.update(step + 1)
    seen = max(1, steps * global_batch)
    probabilities = np.concatenate([np.asarray(model(val[0][i:i + 256].astype(np.float32), training=False))
                                    for i in range(0, len(val[0]), 256)])
    one_hot = np.eye(probabilities.shape[1], dtype=np.float32)[val[1]]
    val_loss = float(np.mean(keras.losses.categorical_crossentropy(one_hot, probabilities,
                                                                   label_smoothing=label_smoothing)))
    return {"loss": total_loss / seen, "accuracy": total_correct / seen, "val_loss": val_loss,
            "val_accuracy": float(np.mean(np.argmax(probabilities, axis=1) == val[1]))}


def _load_state(ckpt_dir: Path, config: TrainConfig) -> _State:
    path = ckpt_dir / "state.json"
    if not path.exists():
        return _State()
    try:
        raw = json.loads(path.read_text())
        state = _State(**raw)
    except (ValueError, TypeError, OSError):
        log.warning("%s is unreadable; starting the run over", path)
        return _State()
    if state.config != config.resume_view():
        changed = sorted(k for k in RESUME_KEYS if state.config.get(k) != getattr(config, k))
        raise ConfigError(f"an unfinished run in {ckpt_dir.parent} used other options ({', '.join(changed)}); "
                          "rerun with the same options to resume, or pass --fresh to start over")
    if not all(name and (ckpt_dir / name).is_file() for name in (state.last, state.best)):
        log.warning("%s points at missing checkpoint files; starting the run over", path)
        return _State()
    return state


def _save_checkpoint(model: Any, ckpt_dir: Path, state: _State, improved: bool) -> None:
    """Write this epoch's model, then switch state.json to it, then drop files nothing points at.

    File names carry the epoch so that state.json can be replaced atomically: whatever instant
    a kill lands on, state.json names files that are complete.
    """
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{state.epoch:04d}.keras"
    atomic_save(ckpt_dir / name, model.save)
    state.last = name
    if improved:
        state.best = name
    atomic_write_text(ckpt_dir / "state.json", json.dumps(state.__dict__, indent=1))
    for stale in ckpt_dir.glob("epoch-*.keras"):
        if stale.name not in (state.last, state.best):
            stale.unlink(missing_ok=True)


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (int(v) if k == "epoch" else round(v, 6)) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def predict_probabilities(model: Any, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Softmax outputs for uint8 NHWC images (the graph normalizes)."""
    return predict_all(model, images, batch_size)[0]


def predict_all(model: Any, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax outputs and, for a model with the out-of-class output, its scores."""
    if len(images) == 0:
        classes = model.output_shape[0][-1] if unknown.has_unknown_output(model) else model.output_shape[-1]
        return np.zeros((0, classes), np.float32), (np.zeros(0, np.float32) if unknown.has_unknown_output(model)
                                                    else None)
    return unknown.split_outputs(model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0))


def classification_metrics(labels: np.ndarray, predicted: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, per-class accuracy and the confusion matrix (rows: true class, columns: predicted)."""
    n = len(class_names)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    per_class = {name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                 for i, name in enumerate(class_names)}
    return {"test_accuracy": float(np.mean(labels == predicted)) if len(labels) else 0.0,
            "per_class_accuracy": per_class, "confusion_matrix": confusion.tolist()}


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


def _display_path(path: Path) -> str:
    """Relative to the checkout when inside it, so committed metrics name no machine's folders."""
    root = paths.project_root()
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if root and resolved.is_relative_to(root) else str(resolved)


def _evaluate(model: Any, data: data_mod.TrainData, config: TrainConfig, state: _State,
              input_spec: InputSpec, head: unknown.UnknownHead | None = None) -> dict[str, Any]:
    x_test, y_test = data.test
    probabilities, scores = predict_all(model, x_test)
    predicted = np.argmax(probabilities, axis=1)
    metrics: dict[str, Any] = {"model": config.model, "dataset": "folder" if config.folder else
                               models.get(config.model).dataset, "test_set": data.test_name}
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
    if head is not None:
        metrics["unknown"] = {**head.to_dict(), "test_accepted": float(np.mean(scores <= head.threshold))}
    if data.test_photos is not None:  # the held-out photos as a camera sees them
        metrics["camera_conditions"] = camera_frames.measure(
            lambda images: predict_all(model, images), camera_frames.as_bgr(data.test_photos, input_spec.color_order),
            y_test, input_spec, threshold=head.threshold if head else None)
        log.info("camera conditions: %s", camera_frames.summary(metrics["camera_conditions"]))
    metrics.update(
        parameters=int(model.count_params()),
        macs_per_image=models.count_macs(model),
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


def _write_run(run_dir: Path, model: Any, data: data_mod.TrainData, config: TrainConfig, metrics: dict[str, Any],
               state: _State) -> None:
    probabilities = metrics.pop("_probabilities")
    if config.plots:
        from . import plots

        plots.write_all(run_dir / runfolder.PLOTS_DIR, model, data, state.history, metrics, probabilities)
    runfolder.write_run(run_dir, model, data.class_names, config.to_dict(), metrics)


def _log_start(name: str, model: Any, macs: int, data: data_mod.TrainData, config: TrainConfig, global_batch: int,
               replicas: int) -> None:
    log.info("%s: %s params, %s MACs/image; %d training images/epoch, %d validation, test: %s; "
             "batch %d (%d replica(s)), lr %.2g, %s, %d epochs%s", name, f"{model.count_params():,}",
             f"{macs:,}", data.train_count, len(data.val[1]), data.test_name, global_batch,
             replicas, config.learning_rate * replicas, config.schedule, config.epochs,
             f" (the first {config.low_res_epochs} at half resolution)" if config.low_res_epochs else "")


__all__ = ["run", "RunResult", "EdgeError", "classification_metrics", "robustness", "predict_probabilities"]
