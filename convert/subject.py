"""What is converted: a registry model's run, any run folder, or a bare ``.keras`` file; its labels,
its input contract (checked against the model itself) and its out-of-class output's contract."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_runtime.contract import InputSpec, UnknownSpec
from edge_runtime.errors import ModelFileError
from edge_runtime.second_look import DEFAULT as DEFAULT_SECOND_LOOK
from edge_runtime.second_look import SecondLook
from train import models, runfolder
from train.runfolder import RunFolder, read_labels
from train.unknown import has_unknown_output

from .config import ConvertConfig

log = logging.getLogger("edge_classify.convert")


@dataclass
class Subject:
    """What is converted: a model file, its contract and labels, and where its images come from."""

    name: str
    model_file: Path
    deploy_dir: Path
    labels: tuple[str, ...] | None  # None: read after the model is loaded (bare files)
    input_spec: InputSpec | None  # None: from the model's input shape (bare files)
    run: RunFolder | None = None
    registry: str | None = None  # the registry entry it was trained as (its conversion options)

    def unknown_spec(self, model: Any) -> UnknownSpec | None:
        """The out-of-class output's contract as training calibrated it, its ``keep`` included (None:
        the model has no such output).

        Raises:
            ModelFileError: the model has the output but nothing says its threshold.
        """
        if not has_unknown_output(model):
            return None
        recorded = self.run.unknown if self.run is not None else None
        if not recorded or not isinstance(recorded.get("threshold"), (int, float)):
            raise ModelFileError(
                f"{self.model_file}: the model has an out-of-class output but no calibrated "
                "threshold; convert it from its run folder (metrics.json holds the threshold)"
            )
        keep = recorded.get("keep")
        spec = UnknownSpec(threshold=float(recorded["threshold"]))
        return replace(spec, keep=float(keep)) if isinstance(keep, (int, float)) else spec

    def second_look(self, unknown: UnknownSpec | None) -> SecondLook | None:
        """The runtime's second look for models trained for a camera with an out-of-class output, where
        it was measured to pay (edge_runtime.second_look); None for every other model."""
        trained = self.run.config if self.run is not None else {}
        return DEFAULT_SECOND_LOOK if unknown is not None and trained.get("augment") == "camera" else None


def subject_of(config: ConvertConfig) -> Subject:
    given = Path(config.model).expanduser()
    if given.suffix == ".keras":
        if not given.is_file():
            raise ModelFileError(f"{given}: no such file; pass a trained .keras file, a run folder or a model name")
        labels_file = Path(config.labels).expanduser() if config.labels else given.parent / runfolder.LABELS_FILE
        if not labels_file.is_file():
            raise ModelFileError(f"{given}: no labels; put labels.txt (one class per line) beside it or pass --labels")
        # model.keras is a run folder's and converts into deploy/; any other bare file gets its own
        # NAME_deploy/, so two files in one folder never overwrite each other's.
        if given.stem == "model":
            name, deploy = given.parent.resolve().name, given.parent / runfolder.DEPLOY_DIR
        else:
            name, deploy = given.stem, given.parent / f"{given.stem}_deploy"
        return Subject(name, given, deploy, read_labels(labels_file), None)
    if config.model not in models.REGISTRY and given.is_dir():
        run = RunFolder.open(given)
    else:
        run = RunFolder.for_model(config.model, config.runs_dir)
    # The files carry the run's own name (a --name or folder run is not the registry entry it started from).
    return Subject(
        run.path.resolve().name, run.model_file, run.deploy_dir, run.labels, run.input_spec, run, registry=run.model
    )


def contract_of(subject: Subject, model: Any, config: ConvertConfig) -> tuple[tuple[str, ...], InputSpec]:
    """Labels and input contract, checked against the model itself."""
    shape = tuple(model.input_shape[1:])
    if subject.input_spec is None:  # a bare file: the contract is the model's own input
        if len(shape) != 3 or None in shape or shape[2] not in (1, 3):
            raise ModelFileError(f"{subject.model_file}: input shape {shape} is not HxWx1 or HxWx3 with a fixed size")
        input_spec = InputSpec(
            height=shape[0],
            width=shape[1],
            channels=shape[2],
            color_order="GRAY" if shape[2] == 1 else (config.color_order or "RGB"),
        )
    else:
        input_spec = subject.input_spec
        expected = (input_spec.height, input_spec.width, input_spec.channels)
        if shape != expected:
            raise ModelFileError(
                f"{subject.model_file}: model input {shape} does not match the input contract "
                f"{expected} recorded for {subject.name!r}; it was not trained as that run"
            )
    shapes = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    if len(shapes) > 1 and not has_unknown_output(model):
        raise ModelFileError(
            f"{subject.model_file}: the model has {len(shapes)} outputs {shapes}; convert takes a "
            "classifier with one output of shape (batch, classes)"
        )
    if len(shapes[0]) != 2 or shapes[0][-1] is None:
        raise ModelFileError(
            f"{subject.model_file}: the output shape {shapes[0]} is not (batch, classes) (a "
            "per-pixel or sequence output?); convert takes image classifiers"
        )
    classes = int(shapes[0][-1])
    labels = subject.labels or ()
    if len(labels) != classes:
        raise ModelFileError(
            f"{subject.name}: {len(labels)} labels but the model outputs {classes} classes; "
            "the labels file does not belong to this model"
        )
    return labels, input_spec
