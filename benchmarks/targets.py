"""What the benchmark measures: a run folder per registry model (trained when missing), the camera
model's weights at other input sizes, or, in device mode, deploy folders copied to the device."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_common.errors import EdgeError
from edge_common.files import sha256_file
from edge_runtime import formats as formats_mod
from edge_runtime.contract import InputSpec
from edge_runtime.metadata import load_bytes, read_metadata

from .config import ALL_FORMATS, BenchConfig

log = logging.getLogger("edge_classify.bench")


@dataclass
class ModelTarget:
    """One model to measure: where its files are and what it is tested on."""

    name: str
    deploy_dir: Path
    input_spec: InputSpec
    labels: tuple[str, ...]
    dataset: str | None  # what it was trained on; None when unknown (device mode without registry entry)
    keras_file: Path | None = None
    run: Any = None  # train.runfolder.RunFolder: the test set exactly as training recorded it
    files: dict[str, Path] = field(default_factory=dict)


def run_targets(config: BenchConfig, skipped: list[str]) -> list[ModelTarget]:
    """Registry models from runs/: trained if missing (full mode), converted if out of date."""
    from convert.converter import ConvertConfig, convert
    from train import models
    from train.runfolder import MODEL_FILE, RunFolder, run_dir_for

    names = config.models or tuple(models.REGISTRY)
    deployable = tuple(f for f in config.formats if formats_mod.get(f).deployable)
    targets = []
    for name in names:
        models.get(name)
        run_dir = run_dir_for(name, config.runs_dir)
        if not (run_dir / MODEL_FILE).is_file():
            if not config.train_missing or config.quick:
                skipped.append(f"{name} (no trained model in {run_dir}; run `python -m train {name}`)")
                continue
            log.info("%s: no trained model; training it now (this is the slow part; shipped models skip it)", name)
            from train import trainer
            from train.config import TrainConfig

            trainer.run(TrainConfig(model=name, output_dir=str(run_dir.parent), data_dir=config.data_dir))
        # Quick runs accept deploy files that are current for this model.keras whatever settings made
        # them, so a quick benchmark never replaces fully verified files with quickly checked ones.
        shipped = models.get(name).formats or deployable  # a model is measured in the formats it ships
        report_ = convert(
            ConvertConfig(
                model=name,
                runs_dir=config.runs_dir,
                formats=tuple(f for f in deployable if f in shipped),
                data_dir=config.data_dir,
                eval_limit=config.eval_limit,
                opencv_check=0 if config.quick else 500,
                gates=not config.quick,
                accept_existing=config.quick,
            )
        )
        run = RunFolder.open(run_dir)
        target = ModelTarget(name, report_.deploy_dir, run.input_spec, run.labels, run.dataset, run.model_file, run)
        for result in report_.results:
            if result.status == "ok" and result.format in deployable:
                target.files[result.format] = report_.deploy_dir / result.file
            elif result.status != "ok":
                skipped.append(
                    f"{name}/{result.format} "
                    f"({'failed its conversion gate' if result.status == 'rejected' else result.gate})"
                )
        targets.append(target)
        for size in () if config.quick else models.get(name).bench_sizes:
            targets.append(size_variant(run, size, config))
    return targets


VARIANT_FORMATS = ("tflite_float32", "tflite_int8")


def size_variant(run: Any, size: int, config: BenchConfig) -> ModelTarget:
    """The same weights at another input size (fully convolutional, global pooling), exported at
    benchmark time to float32 and int8 TFLite, so the Pareto plot shows what input size buys."""
    from convert.converter import ConvertConfig, convert
    from train import paths, runfolder
    from train.runfolder import RunFolder

    reports = Path(config.reports_dir).expanduser() if config.reports_dir else paths.default_reports_dir()
    folder = reports / "variants" / f"{run.model}_{size}"
    source_sha = sha256_file(run.model_file)
    recorded = runfolder.read_metrics(folder)
    if recorded.get("source_keras_sha256") != source_sha or not (folder / runfolder.MODEL_FILE).is_file():
        export_variant(run, size, folder, source_sha)
    report_ = convert(
        ConvertConfig(model=str(folder), formats=VARIANT_FORMATS, data_dir=config.data_dir, opencv_check=0, gates=True)
    )
    variant = RunFolder.open(folder)
    target = ModelTarget(
        variant.model,
        report_.deploy_dir,
        variant.input_spec,
        variant.labels,
        variant.dataset,
        variant.model_file,
        variant,
    )
    target.files = {r.format: report_.deploy_dir / r.file for r in report_.results if r.status == "ok"}
    return target


def export_variant(run: Any, size: int, folder: Path, source_sha: str) -> None:
    import keras

    from train import models, runfolder

    trained = keras.saving.load_model(run.model_file, safe_mode=True, compile=False)
    spec = replace(run.input_spec, height=size, width=size)
    registry = models.get(run.model)
    variant = models.build_model(
        registry,
        len(run.labels),
        input_spec=spec,
        backbone=run.config.get("backbone"),
        dropout=run.config.get("dropout") or 0.0,
    )
    for layer in variant.layers:
        layer.set_weights(trained.get_layer(layer.name).get_weights())
    runfolder.write_run(
        folder,
        variant,
        run.labels,
        {**run.config, "model": f"{run.model}_{size}", "input_size": size},
        {
            "model": f"{run.model}_{size}",
            "dataset": run.dataset,
            "input": spec.to_dict(),
            "source_keras_sha256": source_sha,
            "note": f"{run.model}'s weights at {size}x{size}",
        },
    )


def device_targets(config: BenchConfig) -> list[ModelTarget]:
    """Deploy folders copied to a device: one folder, or a folder of them."""
    if not config.deploy_dir:
        raise EdgeError("device mode needs --deploy-dir DIR")
    root = Path(config.deploy_dir).expanduser()
    if not root.is_dir():
        raise EdgeError(f"--deploy-dir {root} is not a folder; copy runs/<MODEL>/deploy/ to the device and pass it")
    folders = [root] if model_files(root) else sorted(p for p in root.iterdir() if p.is_dir() and model_files(p))
    if not folders:
        raise EdgeError(f"{root} holds no .tflite or .onnx files; copy runs/<MODEL>/deploy/ here")
    targets = []
    for folder in folders:
        target: ModelTarget | None = None
        for path in model_files(folder):
            # The file's own metadata says what it is; a damaged file stops the run with its error.
            kind, data = load_bytes(path)
            metadata = read_metadata(kind, data, path)
            fmt = formats_mod.BY_NAME.get(metadata.format)
            if fmt is None or fmt.name not in config.formats:
                continue
            if target is None:
                spec = replace(metadata.input, dtype="float32", quantization=None)
                target = ModelTarget(metadata.model, folder, spec, metadata.labels, registry_dataset(metadata.model))
            target.files[fmt.name] = path
        if target is not None and target.files and (not config.models or target.name in config.models):
            # Rows in the formats table's order (float32 before int8), as in full mode, not file-name order.
            target.files = dict(sorted(target.files.items(), key=lambda item: ALL_FORMATS.index(item[0])))
            targets.append(target)
    if not targets:
        raise EdgeError(f"{root}: no converted model files of the requested formats; copy runs/<MODEL>/deploy/ here")
    return targets


def model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".tflite", ".onnx") and p.is_file())


def registry_dataset(name: str) -> str | None:
    from train import models

    return models.REGISTRY[name].dataset if name in models.REGISTRY else None
