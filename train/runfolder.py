"""The one reader and writer of a run folder, and the owner of its file names.

A finished run folder holds::

    model.keras     the trained model (written last: its presence, with no checkpoint/, marks a finished run)
    labels.txt      one class name per line, in output order
    config.json     the resolved TrainConfig
    metrics.json    what was measured (test accuracy, input contract, out-of-class head, ...)
    history.csv     one row per epoch (trained runs)
    plots/          PNG figures (trained runs)
    checkpoint/     only while a run is unfinished: what a restart resumes from
    deploy/         converted files (``python -m convert``)

``convert`` and ``benchmarks`` take the model file, its input contract, its labels and its test
set from here, never from the registry, so a registry change can never stamp a new contract onto
old weights.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.errors import EdgeError, OutputError
from edge_common.files import atomic_save, atomic_write_text, dump_json, read_json
from edge_runtime.contract import InputSpec
from edge_runtime.errors import MetadataError, ModelFileError

from . import evalsets, models, paths
from .datasets import kinds

log = logging.getLogger("edge_classify.train")

MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
PLOTS_DIR = "plots"
CHECKPOINT_DIR = "checkpoint"
DEPLOY_DIR = "deploy"
CONVERT_REPORT_FILE = "convert_report.json"  # in deploy/: what conversion measured, file by file
DEPLOY_INFO_FILE = "deploy.json"  # in deploy/: the contract and the files, for whoever copies the folder


@dataclass(frozen=True)
class RunFolder:
    """A finished training run: ``model.keras``, ``labels.txt``, ``config.json`` and ``metrics.json``."""

    path: Path
    model: str  # the registry name it was trained as
    input_spec: InputSpec
    labels: tuple[str, ...]
    dataset: str  # "fashion_mnist", "camera_scenes" or "folder"
    config: dict[str, Any] = field(default_factory=dict)
    unknown: dict[str, Any] | None = None  # metrics.json's out-of-class head: its threshold and calibration

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def deploy_dir(self) -> Path:
        return self.path / DEPLOY_DIR

    @property
    def folder(self) -> str | None:
        return self.config.get("folder")

    @classmethod
    def for_model(cls, name: str, runs_dir: str | Path | None = None) -> "RunFolder":
        """The run of registry model ``name`` in ``runs_dir`` (default: runs/ or ``$EDGE_RUNS_DIR``)."""
        models.get(name)  # an unknown name fails here, naming the closest one
        return cls.open(run_dir_for(name, runs_dir))

    @classmethod
    def open(cls, path: str | Path) -> "RunFolder":
        """Read a run folder.

        Raises:
            ModelFileError: no trained model or labels there, or labels that do not fit.
        """
        path = Path(path).expanduser()
        if not (path / MODEL_FILE).is_file():
            raise ModelFileError(f"no trained model at {path / MODEL_FILE}; run `python -m train {path.name}` first")
        config = read_config(path)
        metrics = read_metrics(path)
        name = str(config.get("model") or path.name)
        labels = read_labels(path / LABELS_FILE)
        return cls(
            path=path,
            model=name,
            input_spec=_recorded_input(metrics, config, name, path),
            labels=labels,
            dataset=_recorded_dataset(metrics, config, name),
            config=config,
            unknown=metrics.get("unknown") if isinstance(metrics.get("unknown"), dict) else None,
        )

    def test_set(self, *, data_dir: str | None = None, limit: int | None = None) -> evalsets.EvalSet:
        """The images and labels this run was tested on (all of them unless ``limit``)."""
        return evalsets.test_set(
            self.dataset,
            self.input_spec,
            folder_root=self.folder,
            class_names=self.labels,
            data_dir=data_dir or self.config.get("data_dir"),
            limit=limit,
            seed=int(self.config.get("seed") or 0),
        )

    def calibration_set(self, count: int, *, data_dir: str | None = None) -> np.ndarray:
        """``count`` training images of this run's dataset, for int8 calibration."""
        return evalsets.calibration_set(
            self.dataset,
            self.input_spec,
            count,
            folder_root=self.folder,
            data_dir=data_dir or self.config.get("data_dir"),
            run_seed=int(self.config.get("seed") or 0),
        )


def run_dir_for(model: str, runs_dir: str | Path | None = None) -> Path:
    return (Path(runs_dir).expanduser() if runs_dir else paths.default_runs_dir()) / model


def is_finished(path: Path) -> bool:
    """A finished run: its model and metrics are written and no checkpoint is left."""
    return (path / MODEL_FILE).is_file() and (path / METRICS_FILE).is_file() and not (path / CHECKPOINT_DIR).exists()


def read_config(path: Path) -> dict[str, Any]:
    """config.json, or {} when it is missing or unreadable."""
    return read_json(path / CONFIG_FILE) or {}


def read_metrics(path: Path) -> dict[str, Any]:
    """metrics.json, or {} when it is missing or unreadable."""
    return read_json(path / METRICS_FILE) or {}


def read_recorded_labels(path: Path) -> tuple[str, ...] | None:
    """labels.txt of a run folder, or None when there is none."""
    return read_labels(path / LABELS_FILE) if (path / LABELS_FILE).is_file() else None


def write_run(
    path: Path, model: Any, labels: tuple[str, ...] | list[str], config: dict[str, Any], metrics: dict[str, Any]
) -> None:
    """Write a run folder's files, each atomically; the model goes last, so a run killed while writing
    is never mistaken for a finished one.

    Raises:
        OutputError: the folder cannot be written.
    """
    path.mkdir(parents=True, exist_ok=True)
    write_labels(path, labels)
    atomic_write_text(path / CONFIG_FILE, dump_json(config))
    atomic_write_text(path / METRICS_FILE, dump_json(metrics))
    atomic_save(path / MODEL_FILE, model.save)


def weights_digest(model: Any) -> str:
    """SHA-256 of a Keras model's weights (the same weights give the same digest wherever they were saved)."""
    import hashlib

    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight, dtype=np.float32).tobytes())
    return digest.hexdigest()


def write_labels(folder: Path, labels: tuple[str, ...] | list[str]) -> None:
    """``labels.txt`` in ``folder`` (a run's, or its deploy folder's): one class per line, the one writer."""
    atomic_write_text(folder / LABELS_FILE, "\n".join(labels) + "\n")


def read_labels(path: Path) -> tuple[str, ...]:
    """Class names, one per line, in output order.

    Raises:
        ModelFileError: the file is missing or empty.
    """
    try:
        labels = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except (OSError, UnicodeDecodeError):
        raise ModelFileError(f"{path} is missing or unreadable; it holds the class names, one per line") from None
    if not labels:
        raise ModelFileError(f"{path} holds no class names; write one per line, in the model's output order")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:  # two outputs answering to one name: the runtime cannot tell them apart
        log.warning(
            "%s names %s more than once; each output should have its own name", path, ", ".join(map(repr, repeated))
        )
    return labels


def _recorded_input(metrics: dict[str, Any], config: dict[str, Any], name: str, path: Path) -> InputSpec:
    if "input" in metrics:
        try:
            return InputSpec.from_dict(metrics["input"])
        except MetadataError as exc:
            raise ModelFileError(
                f"{path / 'metrics.json'}: the recorded input contract is broken ({exc}); retrain the run"
            ) from None
    # A run folder written before metrics.json recorded the contract: the registry's, at the trained size.
    spec = models.get(name).input
    size = config.get("input_size")
    return replace(spec, height=size, width=size) if size else spec


def _recorded_dataset(metrics: dict[str, Any], config: dict[str, Any], name: str) -> str:
    if metrics.get("dataset"):
        return str(metrics["dataset"])
    # Older runs did not record it: a folder run says so in its config, others trained on their registry dataset.
    return kinds.of_run(models.get(name).dataset, config.get("folder")).name


def same_run_or_refuse(run_dir: Path, folder: str | None) -> None:
    """A finished run is only reused by the same run (``folder``: the new run's --folder): the same
    dataset path and the same classes.

    Raises:
        ConfigError: the folder holds a run of other data (a dataset folder of the same name elsewhere).
    """
    recorded = read_config(run_dir)
    differences = []
    then, now = recorded.get("folder"), folder  # Fashion-MNIST is the same data wherever its files are
    if "folder" in recorded and not same_path(then, now):
        differences.append(f"--folder was {then or 'not set'}, now {now or 'not set'}")
    if folder and not differences:
        from .datasets import folder as folder_data

        root = paths.resolve_folder(folder)
        try:
            names = folder_data.open_folder(root, "train" if folder_data.has_splits(root) else None).class_names
        except EdgeError:
            names = None  # the dataset's own error comes when it is read for training
        labels = read_recorded_labels(run_dir)
        if names is not None and labels is not None and tuple(labels) != tuple(names):
            differences.append(f"its classes were {', '.join(labels)}, now {', '.join(names)}")
    if differences:
        from .config import ConfigError

        raise ConfigError(
            f"{run_dir} is a finished run of other data ({'; '.join(differences)}); pass --fresh to "
            "replace it, or --name NAME for a new run folder"
        )


def same_path(then: Any, now: Any) -> bool:
    if not then or not now:
        return not then and not now
    return paths.resolve_folder(str(then)).resolve() == paths.resolve_folder(str(now)).resolve()


def check_output(run_dir: Path) -> None:
    for parent in (run_dir.parent, run_dir):
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"output path {parent} is a file; pass --output-dir with a folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {run_dir} ({exc.strerror or exc}); pass a writable --output-dir") from None
    if not os.access(run_dir, os.W_OK):
        raise OutputError(f"{run_dir} is not writable; pass a writable --output-dir")
