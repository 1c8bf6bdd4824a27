"""The training config's type after ``resolved()``, for the type checker.

At run time :data:`train.config.ResolvedTrainConfig` is :class:`train.config.TrainConfig` itself;
this subclass only narrows the recipe fields' types, so code after ``resolved()`` needs no ``None``
checks. Nothing imports it at run time.
"""

from __future__ import annotations

from .config import TrainConfig


class ResolvedTrainConfig(TrainConfig):
    """A :class:`TrainConfig` after :meth:`TrainConfig.resolved`: every recipe field is set (the
    registry's value, else its base). The same class at run time; the narrower types are for
    the type checker, so code after ``resolved()`` needs no ``None`` checks."""

    epochs: int
    batch_size: int
    learning_rate: float
    schedule: str
    warmup_epochs: float
    optimizer: str
    weight_decay: float
    augment: str
    max_shift: int
    max_rotation: float
    framing_share: float
    low_res_epochs: int
    scene_reuse: int
    label_smoothing: float
    distill: float
    patience: int
    val_fraction: float
    head_epochs: int
    fine_tune_rate: float
    fine_tune_from: int
    dropout: float
    fit: str
    crop: float
