"""Typed training configuration; the resolved config is saved beside every run as config.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from edge_runtime.errors import EdgeError

from . import augment, models

SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
STRATEGIES = ("default", "mirrored", "multiworker")


class ConfigError(EdgeError):
    """An option value that cannot work."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``None`` means "the registry's default for this model"."""

    model: str
    epochs: int | None = None
    batch_size: int | None = None  # per replica; the global batch is this times the replica count
    learning_rate: float | None = None  # for one replica; scaled linearly with replicas
    schedule: str | None = None
    warmup_epochs: float | None = None  # cosine schedule: linear warm-up epochs
    optimizer: str | None = None
    augment: str | None = None
    max_shift: int | None = None
    low_res_epochs: int | None = None  # camera models: first N epochs at half resolution
    scene_reuse: int | None = None  # camera scenes: epochs each rendered scene set serves, reshuffled
    label_smoothing: float | None = None
    teacher: str | None = None  # camera scenes: a Fashion-MNIST model that reads each scene's clean garment
    distill: float | None = None  # weight of the teacher's probabilities in the targets; 0 = labels only
    patience: int | None = None
    val_fraction: float | None = None
    seed: int = 0
    data_dir: str | None = None
    folder: str | None = None  # a folder dataset root (camera models): ROOT/<class>/*.jpg
    output_dir: str | None = None  # default: runs/ in the checkout ($EDGE_RUNS_DIR overrides)
    strategy: str = "default"
    width: float = 1.0  # filter multiplier; below 1 only for quick tests
    input_size: int | None = None  # square input override (tests); the registry size otherwise
    train_limit: int | None = None  # first N training images only (quick tests)
    test_limit: int | None = None
    scenes_per_epoch: int | None = None
    plots: bool = True
    fresh: bool = False  # ignore an unfinished run's checkpoint and start over

    def resolved(self) -> "TrainConfig":
        """Fill every ``None`` from the registry and validate the result."""
        spec = models.get(self.model)
        defaults = asdict(spec.defaults)
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        explicit_low_res = values.get("low_res_epochs") is not None
        for key, default in defaults.items():
            if values.get(key) is None:
                values[key] = default
        if not explicit_low_res:  # a shorter run keeps its last epoch at full size
            values["low_res_epochs"] = min(values["low_res_epochs"], max(0, values["epochs"] - 1))
        if self.folder is not None and self.distill is None:  # folder images have no clean garment behind them
            values["distill"] = 0.0
        config = TrainConfig(**values)
        config.validate()
        return config

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(self.epochs is None or self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}")
        need(self.batch_size is None or self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}")
        need(self.learning_rate is None or self.learning_rate > 0, f"--learning-rate must be positive, got {self.learning_rate}")
        need(self.schedule is None or self.schedule in SCHEDULES,
             f"--schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}{models.suggest(str(self.schedule), SCHEDULES)}")
        need(self.optimizer is None or self.optimizer in OPTIMIZERS,
             f"--optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}{models.suggest(str(self.optimizer), OPTIMIZERS)}")
        need(self.augment is None or self.augment in augment.AUGMENTATIONS,
             f"--augment {self.augment!r} is not one of {', '.join(augment.AUGMENTATIONS)}")
        need(self.strategy in STRATEGIES,
             f"--strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}{models.suggest(self.strategy, STRATEGIES)}")
        need(self.val_fraction is None or 0.0 < self.val_fraction < 0.9, f"--val-fraction must be in (0, 0.9), got {self.val_fraction}")
        need(self.label_smoothing is None or 0.0 <= self.label_smoothing < 1.0, "--label-smoothing must be in [0, 1)")
        # Above 0.5 a confidently wrong teacher would outvote the label.
        need(self.distill is None or 0.0 <= self.distill <= 0.5, f"--distill must be in [0, 0.5], got {self.distill}")
        if self.distill:
            need(self.folder is None and models.get(self.model).dataset == "camera_scenes",
                 "--distill needs camera scenes: the teacher reads the clean Fashion-MNIST garment behind each scene; "
                 "use --distill 0")
            need(bool(self.teacher), "--distill needs a --teacher (a model name, run folder or .keras file)")
        need(self.max_shift is None or 0 <= self.max_shift <= 8, "--max-shift must be in 0..8")
        need(self.low_res_epochs is None or self.epochs is None or 0 <= self.low_res_epochs < self.epochs,
             f"--low-res-epochs must be below --epochs ({self.epochs}) so the last epochs run at full size")
        if self.low_res_epochs:
            need(models.get(self.model).any_size, f"{self.model} has a fixed input size; --low-res-epochs needs a "
                                                  "fully convolutional model such as camera_cnn")
        need(self.scene_reuse is None or 1 <= self.scene_reuse <= 8, "--scene-reuse must be in 1..8")
        need(self.warmup_epochs is None or self.warmup_epochs >= 0, "--warmup-epochs must not be negative")
        need(0.0 < self.width <= 4.0, f"--width must be in (0, 4], got {self.width}")
        need(self.input_size is None or 8 <= self.input_size <= 1024, "--input-size must be in 8..1024")
        need(self.train_limit is None or self.train_limit >= 10, "--train-limit must be at least 10")
        need(self.test_limit is None or self.test_limit >= 1, "--test-limit must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
