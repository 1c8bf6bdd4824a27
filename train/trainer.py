"""A training run, orchestrated: prepare the data and the strategy, build or resume the model, fit
epoch by epoch with crash-safe checkpoints (:mod:`.checkpoints`), evaluate the best epoch as a device
would run it (:mod:`.evaluation`) and write the run folder (:mod:`.runfolder`, which names its files).
Where it trains and how it steps is :mod:`.distribution`.

Every file is written to a temporary name and renamed, so a kill at any moment leaves either
the old file or the new one, never half of one.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.errors import EdgeError
from edge_common.files import sha256_file
from edge_runtime.contract import InputSpec

from . import announce, architectures, checkpoints, distill, distribution, evaluation, models, paths, runfolder, unknown
from . import data as data_mod
from .config import ConfigError, ResolvedTrainConfig, TrainConfig
from .datasets import camera_scenes, kinds

log = logging.getLogger("edge_classify.train")


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    resumed_from: int = 0
    finished_before: bool = False  # a finished run found and left as it was (no --fresh)


@dataclass
class _Session:
    """One run in progress: what it trains, on what, and where it writes."""

    config: ResolvedTrainConfig
    spec: models.ModelSpec
    input_spec: InputSpec
    write_dir: Path
    ckpt_dir: Path
    data: data_mod.TrainData
    state: checkpoints.State
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
    resolved = config.resolved()
    finished = _finished_run(resolved)
    if finished is not None:
        return finished
    if not kinds.get(resolved.spec.dataset).trained:  # published weights: ported, not trained
        from . import pretrained

        run_dir = pretrained.write_run(resolved)
        return RunResult(run_dir=run_dir, metrics=runfolder.read_metrics(run_dir))
    session = _prepare(resolved)
    resumed_from = session.state.epoch
    _build_model(session)
    _train_epochs(session)
    metrics = _finish(session)
    return RunResult(run_dir=session.write_dir, metrics=metrics, resumed_from=resumed_from)


def run_dir_of(config: ResolvedTrainConfig) -> Path:
    """Where this run's folder is: the output folder (default runs/) / the run's name."""
    return runfolder.run_dir_for(config.run_name(), config.output_dir)


def _finished_run(config: ResolvedTrainConfig) -> RunResult | None:
    """A finished run is left as it is unless --fresh: retraining would replace a model (a shipped one,
    perhaps) that took minutes to hours to train."""
    run_dir = run_dir_of(config)
    if config.fresh or not runfolder.is_finished(run_dir):
        return None
    runfolder.same_run_or_refuse(run_dir, config.folder)
    # Unreadable metrics do not make a finished model less finished: it is still left as it is.
    metrics = runfolder.read_metrics(run_dir)
    accuracy = metrics.get("test_accuracy")
    print(
        f"{config.run_name()}: {run_dir} is a finished run"
        f"{f' (test accuracy {accuracy:.4f})' if isinstance(accuracy, float) else ''}; left as it is "
        f"(pass --fresh to retrain it and replace its files, or --name for a new run folder)",
        flush=True,
    )
    return RunResult(run_dir=run_dir, metrics=metrics, finished_before=True)


def _prepare(config: ResolvedTrainConfig) -> _Session:
    """Check the output, resolve the teacher, set up the strategy, load the data and the checkpoint state."""
    spec = config.spec
    input_spec = _input_spec(spec, config)
    run_dir = run_dir_of(config)
    out_root = run_dir.parent
    runfolder.check_output(run_dir)
    # validate() has made sure a distilling run names a teacher; resolve it before any heavy work.
    teacher = distill.resolve_teacher(config.teacher, out_root) if config.distill and config.teacher else None

    strategy, worker_index, num_workers = distribution.make_strategy(config.strategy)
    write_dir = run_dir if worker_index == 0 else run_dir / f".worker-{worker_index}"
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    data = data_mod.load(config, input_spec, batch_size=global_batch // num_workers, teacher=teacher)

    ckpt_dir = write_dir / runfolder.CHECKPOINT_DIR
    state = checkpoints.State() if config.fresh else checkpoints.load_state(ckpt_dir, config)
    if config.fresh and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    if state.epoch >= config.epochs or state.stopped_early:
        log.info("%s: training already finished at epoch %d; writing the run folder", spec.name, state.epoch)
    elif state.epoch:
        log.info("%s: resuming from epoch %d of %d (checkpoint in %s)", spec.name, state.epoch, config.epochs, ckpt_dir)
    state.config = config.resume_view()
    return _Session(
        config,
        spec,
        input_spec,
        write_dir,
        ckpt_dir,
        data,
        state,
        strategy,
        worker_index,
        num_workers,
        global_batch,
        max(1, data.train_count // global_batch),
        teacher,
    )


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
            model = models.build_model(
                session.spec,
                len(data.class_names),
                width=config.width,
                input_spec=session.input_spec,
                any_size=config.low_res_epochs > 0,
                backbone=config.backbone,
                dropout=config.dropout,
                imagenet=True,
            )
            if config.backbone:  # phase 1: the new head alone, on the frozen ImageNet backbone
                from .backbones.efficientnet_lite import set_phase

                set_phase(model, None)
            _compile(
                model,
                distribution.build_optimizer(config, session.steps, session.strategy.num_replicas_in_sync),
                config,
            )
    session.model = model
    fixed = (
        model
        if not config.low_res_epochs
        else models.build_model(  # any-size models have no fixed shapes
            session.spec, len(data.class_names), width=config.width, input_spec=session.input_spec
        )
    )
    macs = architectures.count_macs(fixed)
    announce.log_start(
        session.name, model, macs, data, config, session.global_batch, session.strategy.num_replicas_in_sync
    )


def _compile(model: Any, optimizer: Any, config: ResolvedTrainConfig) -> None:
    import keras

    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    # Adam's slots made now: left to the first traced step, they make Keras trace that step twice
    # (11-12 s against 6 s for the transfer test's fit; weights bit-identical either way).
    model.optimizer.build(model.trainable_variables)


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
            decay_steps=steps - warmup,
            warmup_target=config.fine_tune_rate if warmup else None,
            warmup_steps=warmup,
        )
        _compile(session.model, distribution.make_optimizer("adam", rate, config.weight_decay), config)
    trainable = sum(int(np.prod(w.shape)) for w in session.model.trainable_weights)
    log.info(
        "%s: phase 2 from epoch %d: fine-tuning %s weights from block %d at %.2g",
        session.name,
        config.head_epochs + 1,
        f"{trainable:,}",
        config.fine_tune_from,
        config.fine_tune_rate,
    )


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
        row.update(
            epoch=state.epoch + 1, learning_rate=distribution.current_lr(session.model), seconds=round(seconds, 2)
        )
        improved = checkpoints.record_epoch(state, row, seconds, config)
        checkpoints.save_checkpoint(
            session.model, session.ckpt_dir, state, improved or state.epoch <= config.low_res_epochs
        )
        checkpoints.write_history(session.write_dir / runfolder.HISTORY_FILE, state.history)
        print(
            f"{session.name} epoch {state.epoch}/{config.epochs}  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
            f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}  lr {row['learning_rate']:.2e}  "
            f"{seconds:.1f}s{'  *best' if improved else ''}",
            flush=True,
        )
        if state.stopped_early:
            log.info("%s: early stop: validation loss has not improved for %d epochs", session.name, config.patience)


def _fit_one_epoch(session: _Session, epoch: int, verbose: int) -> dict[str, float]:
    data = session.data
    dataset = distribution.epoch_dataset(data, epoch, session.steps, session.worker_index, session.num_workers)
    if session.num_workers > 1:
        # Keras 3's fit() cannot drive MultiWorkerMirroredStrategy (keras-team/keras#20585), so
        # multi-worker runs use an explicit strategy.run loop over the same data and optimizer.
        return distribution.fit_epoch_distributed(
            session.model,
            session.strategy,
            dataset,
            session.steps,
            session.global_batch,
            session.config.label_smoothing,
            data.val_for_epoch(epoch),
            verbose,
        )
    result = session.model.fit(
        dataset,
        epochs=1,
        verbose=verbose,
        validation_data=distribution.one_hot_pair(data.val_for_epoch(epoch), data),
        # 64, not 256: faster per image on 2 cores, validation loss equal to 5 digits.
        validation_batch_size=64,
        shuffle=False,
    )
    return {key: float(values[-1]) for key, values in result.history.items()}


def _finish(session: _Session) -> dict[str, Any]:
    """Evaluate the best epoch as a device would run it, write the run folder, drop the checkpoint."""
    import keras

    config, state, data = session.config, session.state, session.data
    # Outside any distribution strategy, with the registry's fixed input size.
    if state.best is None:
        raise EdgeError(f"{session.name}: no epoch finished, so there is no model to save; train again")
    best = keras.saving.load_model(session.ckpt_dir / state.best, safe_mode=True, compile=False)
    final = models.build_model(
        session.spec,
        len(data.class_names),
        width=config.width,
        input_spec=session.input_spec,
        backbone=config.backbone,
        dropout=config.dropout,
    )
    for layer in final.layers:  # by name: frozen and trainable layers list their weights alike
        layer.set_weights(best.get_layer(layer.name).get_weights())
    if not config.backbone:  # a backbone's batch norm keeps its ImageNet statistics (it never trained)
        # Batches of the last full-resolution epoch (already rendered for camera models).
        evaluation.recalibrate_batch_norm(final, data, epoch=max(config.low_res_epochs, state.epoch - 1))
    head = None
    if config.backbone:  # "none of these": a second output from the features (see unknown.py)
        head = unknown.fit_head(final, data, session.input_spec, config.seed, session.steps)
        final = unknown.with_unknown_output(final, head.prototypes)
    data.close()
    metrics = evaluation.evaluate(final, data, config, state, session.input_spec, head)
    if session.teacher is not None:  # the soft targets depend on the teacher's exact weights
        metrics["teacher"] = {"file": paths.display_path(session.teacher), "sha256": sha256_file(session.teacher)}
    _write_run(session.write_dir, final, data, config, metrics, state)
    shutil.rmtree(session.ckpt_dir, ignore_errors=True)
    print(
        f"{session.name}: test accuracy {metrics['test_accuracy']:.4f} on {data.test_name}; "
        f"{metrics['parameters']:,} params, {metrics['macs_per_image']:,} MACs; "
        f"trained {metrics['training_time_s'] / 60:.1f} min; weights {metrics['weights_sha256'][:12]}; "
        f"wrote {session.write_dir}",
        flush=True,
    )
    if "scene_conditions" in metrics:
        log.info("%s: hardest camera conditions: %s", session.name, camera_scenes.hardest(metrics["scene_conditions"]))
    return metrics


def _input_spec(spec: models.ModelSpec, config: ResolvedTrainConfig) -> InputSpec:
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
            raise ConfigError(
                f"--input-size {size} is below the {minimum} pixels backbone {config.backbone!r} "
                f"accepts; use {minimum} or more"
            )
    return replace(spec.input, **changes) if changes else spec.input


def _write_run(
    run_dir: Path,
    model: Any,
    data: data_mod.TrainData,
    config: ResolvedTrainConfig,
    metrics: dict[str, Any],
    state: checkpoints.State,
) -> None:
    probabilities = metrics.pop("_probabilities")
    if config.plots:
        from . import plots

        plots.write_all(run_dir / runfolder.PLOTS_DIR, model, data, state.history, metrics, probabilities)
    runfolder.write_run(run_dir, model, data.class_names, config.to_dict(), metrics)


__all__ = ["run", "RunResult", "EdgeError"]
