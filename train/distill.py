"""Distillation from a teacher that sees what the student cannot: the clean garment behind a scene.

Every camera scene is rendered from one 28x28 Fashion-MNIST garment. A Fashion-MNIST model (the
teacher, by default the trained ``edge_cnn``) reads that clean garment far more reliably than
any model can read the cluttered, tinted, blurred 128x128 scene. Its class probabilities say
which labels a garment could plausibly carry (this shirt looks like a T-shirt), so the student
is trained towards ``(1 - weight) * one_hot + weight * teacher_probabilities`` instead of the bare
label: "learning using privileged information" (Lopez-Paz et al., 2016). The teacher runs once
per garment before training, so the recipe costs no training time.

The teacher's own probabilities are used as they are (temperature 1): ``edge_cnn`` is trained
with label smoothing, so they are already soft.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_common.errors import DatasetError

from . import models, paths, runfolder

log = logging.getLogger("edge_classify.train")


def resolve_teacher(teacher: str, runs_root: Path) -> Path:
    """The teacher's model file from ``--teacher``: a .keras file, a run folder, or a model name.

    A model name means its run in this run's output folder, else in the default runs folder
    (``$EDGE_RUNS_DIR`` or the checkout's ``runs/``, where the pretrained ``edge_cnn`` is committed).

    Raises:
        DatasetError: nothing trained is found there (one line, with the fix).
    """
    given = Path(teacher).expanduser()
    if given.suffix == ".keras" or given.is_dir():
        path = given / runfolder.MODEL_FILE if given.is_dir() else given
        if not path.is_file():
            raise DatasetError(f"teacher {path} not found; pass a trained model.keras or run folder to --teacher")
        return path
    models.get(teacher)  # an unknown name fails here, suggesting the closest one
    candidates = [runs_root / teacher / runfolder.MODEL_FILE, paths.default_runs_dir() / teacher / runfolder.MODEL_FILE]
    for path in candidates:
        if path.is_file():
            return path
    raise DatasetError(
        f"teacher {teacher!r} has no trained model in {candidates[0].parent}; train it first "
        f"(python -m train {teacher}) or pass --distill 0"
    )


def soft_targets(
    teacher_path: Path, garments: np.ndarray, labels: np.ndarray, weight: float, classes: int
) -> np.ndarray:
    """``(1 - weight) * one_hot(labels) + weight * teacher(garments)`` as float32 (N, classes).

    Args:
        garments: (N, 28, 28) uint8 clean Fashion-MNIST images, the teacher's input contract.

    Raises:
        DatasetError: the teacher does not take 28x28 grey garments or has another class count.
    """
    import keras

    teacher = keras.saving.load_model(teacher_path, safe_mode=True, compile=False)
    shape = tuple(teacher.input_shape[1:])
    if shape != garments.shape[1:] + (1,) or teacher.output_shape[-1] != classes:
        raise DatasetError(
            f"teacher {teacher_path} takes {shape} and predicts {teacher.output_shape[-1]} classes; "
            f"it must read {garments.shape[1]}x{garments.shape[2]}x1 garments into {classes} classes "
            "(a Fashion-MNIST model such as edge_cnn)"
        )
    probabilities = teacher.predict(garments[..., None].astype(np.float32), batch_size=1000, verbose=0)
    agree = float(np.mean(np.argmax(probabilities, axis=1) == labels))
    log.info(
        "distilling from %s (weight %.2f): it labels %.1f%% of the train split's garments correctly",
        teacher_path,
        weight,
        100 * agree,
    )
    one_hot = np.eye(classes, dtype=np.float32)[labels]
    return ((1.0 - weight) * one_hot + weight * probabilities).astype(np.float32)
