"""Typed training configuration: the one home of every training option.

Each field is an option of ``python -m train`` (its flag, help and choices are in the field's
metadata, see :mod:`edge_common.cli`). Recipe fields default to ``None``, meaning "the model's
registry recipe, else the field's ``base`` value". Fields marked ``resume`` change what a
checkpoint means. The resolved config is saved beside every run as config.json.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from edge_common.cli import check_ranges, option, option_fields, resume_keys
from edge_common.errors import EdgeError, suggest
from edge_runtime.contract import FITS

from . import augment, backbones, models
from .datasets import kinds

SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
STRATEGIES = ("default", "mirrored", "multiworker")

_RECIPE = "recipe (default: the model's registry entry)"
_DATA = "data and output"
_SCALE = "scale"
_TRANSFER = "transfer learning and the input contract"

log = logging.getLogger("edge_classify.train")


class ConfigError(EdgeError):
    """An option value that cannot work."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run. A recipe field left ``None`` takes the registry's value for the model."""

    model: str = option("", cli=False, resume=True)
    epochs: int | None = option(help="training epochs", base=15, group=_RECIPE, resume=True, bounds=(1, None))
    batch_size: int | None = option(
        help="per replica; the global batch is this times the replicas",
        base=128,
        group=_RECIPE,
        resume=True,
        bounds=(1, None),
    )
    learning_rate: float | None = option(
        help="peak rate for one replica; scaled linearly with replicas",
        base=3e-3,
        group=_RECIPE,
        resume=True,
        bounds=(0, None),
        open_low=True,
    )
    schedule: str | None = option(
        help="learning-rate schedule: warm-up then cosine decay, or constant",
        base="cosine",
        choices=SCHEDULES,
        group=_RECIPE,
        resume=True,
    )
    warmup_epochs: float | None = option(
        help="cosine schedule: linear warm-up epochs (keeps BatchNorm models stable at high rates)",
        base=1.0,
        group=_RECIPE,
        resume=True,
        bounds=(0, None),
    )
    optimizer: str | None = option(help="optimizer", base="adam", choices=OPTIMIZERS, group=_RECIPE, resume=True)
    weight_decay: float | None = option(
        help="decoupled weight decay of the kernels (Adam becomes AdamW); batch "
        "norm scales, offsets and biases are not decayed; 0: none",
        base=0.0,
        group=_RECIPE,
        resume=True,
        bounds=(0, 1),
        open_high=True,
    )
    augment: str | None = option(
        help="augmentation in the input pipeline",
        base="shift_flip",
        choices=augment.AUGMENTATIONS,
        group=_RECIPE,
        resume=True,
    )
    max_shift: int | None = option(
        help="shift_flip and framing augmentation: largest shift in pixels",
        base=2,
        group=_RECIPE,
        resume=True,
        bounds=(0, 8),
    )
    max_rotation: float | None = option(
        help="framing augmentation: largest tilt in degrees", base=10.0, group=_RECIPE, resume=True, bounds=(0, 45)
    )
    framing_share: float | None = option(
        help="framing augmentation: the share of images moved and tilted (the rest keep the dataset's centring)",
        base=1 / 3,
        group=_RECIPE,
        resume=True,
        bounds=(0, 1),
        open_low=True,
    )
    low_res_epochs: int | None = option(
        help="fully convolutional models: train the first N epochs at half resolution (4x cheaper), then full size",
        base=0,
        group=_RECIPE,
        resume=True,
        bounds=(0, None),
    )
    scene_reuse: int | None = option(
        help="camera scenes: epochs each rendered scene set serves, reshuffled each time",
        base=1,
        group=_RECIPE,
        resume=True,
        bounds=(1, 8),
    )
    label_smoothing: float | None = option(
        help="label smoothing of the training targets",
        base=0.0,
        group=_RECIPE,
        resume=True,
        bounds=(0, 1),
        open_high=True,
    )
    teacher: str | None = option(
        help="camera scenes: a Fashion-MNIST model name, run folder or .keras file that "
        "reads the clean garment behind each scene (camera_cnn: edge_cnn)",
        group=_RECIPE,
        resume=True,
    )
    distill: float | None = option(
        help="weight of the teacher's probabilities in the targets, 0..0.5; 0 trains on labels alone",
        base=0.0,
        group=_RECIPE,
        resume=True,
        bounds=(0, 0.5),
    )
    patience: int | None = option(
        help="early stopping patience in epochs (validation loss)", base=10, group=_RECIPE, bounds=(1, None)
    )
    val_fraction: float | None = option(
        help="stratified validation share of the training split",
        base=0.1,
        group=_RECIPE,
        resume=True,
        bounds=(0, 0.9),
        open_low=True,
        open_high=True,
    )
    seed: int = option(
        0, "random seed of data order, augmentation and scenes", group=_RECIPE, resume=True, bounds=(0, None)
    )
    backbone: str | None = option(
        help="transfer learning: start from this ImageNet-pretrained backbone with a new "
        "head for the folder dataset's classes",
        choices=tuple(backbones.BACKBONES),
        group=_TRANSFER,
        resume=True,
    )
    head_epochs: int | None = option(
        help="backbone runs: the first N epochs train the new head alone on the frozen "
        "backbone (phase 1), the rest fine-tune (phase 2)",
        base=3,
        group=_TRANSFER,
        resume=True,
        bounds=(0, None),
    )
    fine_tune_rate: float | None = option(
        help="backbone runs: peak rate of phase 2 (--learning-rate is phase 1's)",
        base=3e-4,
        group=_TRANSFER,
        resume=True,
        bounds=(0, None),
        open_low=True,
    )
    fine_tune_from: int | None = option(
        help="backbone runs: phase 2 trains the blocks from this one on (0: all; batch norm always stays frozen)",
        base=0,
        group=_TRANSFER,
        resume=True,
        bounds=(0, 16),
    )
    dropout: float | None = option(
        help="backbone runs: dropout before the new head",
        base=0.2,
        group=_TRANSFER,
        resume=True,
        bounds=(0, 1),
        open_high=True,
    )
    fit: str | None = option(
        help="how a frame becomes the input, in training, conversion and on the device: "
        "squash it, crop its centre (--crop of the shorter side) or letterbox it "
        "(default: the registry entry's)",
        choices=FITS,
        group=_TRANSFER,
        resume=True,
    )
    crop: float | None = option(
        help="--fit crop: the centre region's share of the shorter side (0.875: the usual ImageNet centre crop)",
        group=_TRANSFER,
        resume=True,
        bounds=(0.25, 1),
    )
    data_dir: str | None = option(
        help="folder with the Fashion-MNIST IDX files (default: search; see README)", group=_DATA
    )
    folder: str | None = option(
        help="train a camera model on a folder dataset ROOT/<class>/*.jpg instead", group=_DATA, resume=True
    )
    output_dir: str | None = option(
        help="where run folders go (default: runs/ in the checkout, or $EDGE_RUNS_DIR)", group=_DATA
    )
    scenes_per_epoch: int | None = option(
        help="camera scenes rendered per epoch (default: one per garment)", group=_DATA, resume=True, bounds=(1, None)
    )
    plots: bool = option(True, "skip the PNG plots", group=_DATA)
    name: str | None = option(
        help="the run folder's name under the output folder (default: the model's name; a "
        "--folder run other than the registry's: MODEL-FOLDERNAME)",
        group=_DATA,
    )
    fresh: bool = option(
        False,
        "start over: discard an unfinished run's checkpoint, or retrain a finished run and "
        "replace its files (without it a finished run is left as it is)",
        group=_DATA,
    )
    strategy: str = option(
        "default",
        "tf.distribute strategy; multiworker reads the workers from TF_CONFIG",
        choices=STRATEGIES,
        group=_SCALE,
        resume=True,
    )
    width: float = option(
        1.0, "filter multiplier (quick tests use < 1)", group=_SCALE, resume=True, bounds=(0, 4), open_low=True
    )
    input_size: int | None = option(
        help="square input size override (quick tests)", group=_SCALE, resume=True, bounds=(8, 1024)
    )
    train_limit: int | None = option(
        help="use only the first N training images (quick tests)", group=_SCALE, resume=True, bounds=(10, None)
    )
    test_limit: int | None = option(
        help="evaluate on the first N test images only (quick tests)", group=_SCALE, bounds=(1, None)
    )

    @property
    def spec(self) -> models.ModelSpec:
        """The registry entry this run trains (the one lookup every part of training asks)."""
        return models.get(self.model)

    @property
    def dataset_kind(self) -> kinds.DatasetKind:
        """What this run trains on: its ``--folder`` when it has one, else its registry entry's dataset."""
        return kinds.of_run(self.spec.dataset, self.folder)

    def resolved(self) -> "ResolvedTrainConfig":
        """Fill every ``None`` recipe field from the registry (else its base value) and validate."""
        spec = self.spec
        known = {field.name for field in fields(self)}
        unknown = sorted(set(spec.recipe) - known)
        if unknown:  # a registry typo must not silently train with the base value
            raise ConfigError(f"registry entry {spec.name!r} sets unknown option(s) {', '.join(unknown)}")
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        for field, meta in option_fields(TrainConfig):
            if values[field.name] is None:
                values[field.name] = spec.recipe.get(field.name, meta.base)
        if self.low_res_epochs is None:  # a shorter run keeps its last epoch at full size
            values["low_res_epochs"] = min(values["low_res_epochs"], max(0, values["epochs"] - 1))
        if self.head_epochs is None:  # a shorter backbone run still ends with fine-tuning
            wanted = values["head_epochs"]
            values["head_epochs"] = min(wanted, max(0, values["epochs"] - 1))
            if values["backbone"] and values["head_epochs"] < wanted:
                log.warning(
                    "%s: --epochs %d leaves room for %d head-only epoch(s) of the recipe's %d before "
                    "fine-tuning; pass --head-epochs to choose",
                    spec.name,
                    values["epochs"],
                    values["head_epochs"],
                    wanted,
                )
        # what a folder run does instead of the camera-scene recipe, so config.json says what ran
        if self.folder is not None:
            if self.distill is None:  # folder images have no clean garment behind them
                values["distill"] = 0.0
            if self.teacher is None and not values["distill"]:
                values["teacher"] = None
            if values["augment"] == "scenes":  # scenes need garments behind them: the tutorials' recipe runs
                values["augment"] = "tutorial"
        config = TrainConfig(**values)
        config.validate()
        return cast("ResolvedTrainConfig", config)

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        check_ranges(self, ConfigError)  # each field's bounds; above 0.5 distill would let a wrong teacher outvote
        for field, meta in option_fields(TrainConfig):  # argparse checks choices; library callers get the same
            value = getattr(self, field.name)
            if meta.choices and value is not None and value not in meta.choices:
                flag = "--" + field.name.replace("_", "-")
                raise ConfigError(
                    f"{flag} {value!r} is not one of {', '.join(meta.choices)}{suggest(str(value), meta.choices)}"
                )
        if self.distill:
            need(
                self.folder is None and kinds.get(self.spec.dataset).distillable,
                "--distill needs camera scenes: the teacher reads the clean Fashion-MNIST garment behind each scene; "
                "use --distill 0",
            )
            need(bool(self.teacher), "--distill needs a --teacher (a model name, run folder or .keras file)")
        need(
            self.low_res_epochs is None or self.epochs is None or 0 <= self.low_res_epochs < self.epochs,
            f"--low-res-epochs must be below --epochs ({self.epochs}) so the last epochs run at full size",
        )
        if self.low_res_epochs:
            need(
                self.spec.any_size,
                f"{self.model} has a fixed input size; --low-res-epochs needs a "
                "fully convolutional model such as camera_cnn",
            )
        spec = self.spec
        if self.backbone and kinds.get(spec.dataset).trained:
            need(
                self.folder is not None,
                f"--backbone {self.backbone} trains on a folder dataset; pass --folder ROOT "
                "(ROOT/<class>/*.jpg, or ROOT/train/ and ROOT/test/)",
            )
            need(
                self.head_epochs is None or self.epochs is None or 0 <= self.head_epochs < self.epochs,
                f"--head-epochs must be below --epochs ({self.epochs}) so the backbone is fine-tuned",
            )
            need(not self.low_res_epochs, "--low-res-epochs is for models trained from scratch, not --backbone runs")
        elif not self.backbone:
            need(
                spec.builder is not None,
                f"{self.model} is built on a pretrained backbone; pass --backbone ({', '.join(backbones.BACKBONES)})",
            )
        need(
            self.name is None or (re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name) is not None),
            f"--name {self.name!r} must be a plain folder name (letters, digits, '.', '_', '-')",
        )
        need(
            self.augment not in ("photo", "camera") or self.folder is not None,
            f"--augment {self.augment} crops from real photos; it needs --folder ROOT",
        )

    def run_name(self) -> str:
        """The run folder's name: a folder run gets its own, so it never replaces the registry model's run."""
        spec = self.spec
        if self.name:
            return self.name
        if self.folder and self.folder != spec.recipe.get("folder"):
            return f"{spec.name}-{Path(self.folder).expanduser().resolve().name}"
        return spec.name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resume_view(self) -> dict[str, Any]:
        """The options a checkpoint was made with: a resume with other values would mix two runs."""
        return {key: getattr(self, key) for key in RESUME_KEYS}


RESUME_KEYS = resume_keys(TrainConfig)


if TYPE_CHECKING:
    from .resolved import ResolvedTrainConfig
else:
    ResolvedTrainConfig = TrainConfig  # the same class at run time: the narrower types are the type checker's
