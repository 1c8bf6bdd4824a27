"""The images a finished run is judged and calibrated on, for convert and benchmarks.

Test images: the full Fashion-MNIST test split for 28x28 models, the fixed camera test scenes for
camera models, or the folder's test split for folder-trained models. Calibration images always
come from the training split, never from the test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_common.errors import DatasetError
from edge_runtime.contract import InputSpec

from . import paths
from .datasets import camera_scenes, fashion_mnist, folder, kinds

# Real photos the repository carries (CC0): calibration and the check of models with no test set here.
PHOTOS = "data/clothing-small"


@dataclass(frozen=True)
class EvalSet:
    images: np.ndarray  # uint8 NHWC in the model's colour order
    labels: np.ndarray
    name: str


def test_set(
    dataset: str,
    spec: InputSpec,
    *,
    folder_root: str | None = None,
    class_names: Sequence[str] | None = None,
    data_dir: str | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> EvalSet:
    """The test images of a model trained on ``dataset`` (a name in :data:`kinds.KINDS` with a labelled
    test set); for a folder without a test split, the images that training with ``seed`` held out."""
    if not kinds.get(dataset).labelled_test_set:
        raise DatasetError(
            f"no labelled test images of {kinds.get(dataset).description} are in the repository "
            "(their licences are unknown); accuracy is measured on your own photos, see docs/data.md"
        )
    if dataset == "folder":
        held = held_out_photos(folder_root, class_names, seed=seed)
        note = "" if held.root.name == "test" else f" held out from training, {folder.HELD_OUT:.0%}"
        return _loaded(held, spec, limit, note)
    test = fashion_mnist.load_split("test", data_dir)
    if dataset == "camera_scenes":
        images, labels = camera_scenes.test_scenes(test.images, test.labels.astype(np.int64), spec, count=limit)
        return EvalSet(images, labels, f"fixed camera test scenes ({len(labels)})")
    images = test.images[:limit]
    return EvalSet(
        fashion_mnist.to_model_input(images, spec),
        test.labels[:limit].astype(np.int64),
        f"Fashion-MNIST test split ({len(images)})",
    )


def held_out_photos(
    folder_root: str | None, class_names: Sequence[str] | None = None, *, seed: int = 0
) -> folder.FolderDataset:
    """The files a folder-trained run is tested on: its ``test/`` split, else the share training held out."""
    root = paths.resolve_folder(_folder_of(folder_root))
    if folder.has_splits(root) and (root / "test").is_dir():
        return folder.open_folder(root, "test", class_names=class_names)
    return folder.held_out_split(root, seed, class_names, split="train" if folder.has_splits(root) else None)[1]


def _folder_of(folder_root: str | None) -> str:
    if folder_root is None:
        raise DatasetError("a folder run without its folder recorded (config.json's folder); pass --folder")
    return folder_root


def folder_test_set(
    root: str | Path,
    spec: InputSpec,
    class_names: Sequence[str] | None = None,
    *,
    split: str | None = None,
    limit: int | None = None,
) -> EvalSet:
    """Every image of a folder dataset (or one split of it), labelled in ``class_names`` order."""
    return _loaded(folder.open_folder(root, split, class_names=class_names), spec, limit)


def _loaded(data: folder.FolderDataset, spec: InputSpec, limit: int | None, note: str = "") -> EvalSet:
    images, labels = data.load(spec)
    return EvalSet(images[:limit], labels[:limit], f"folder {data.root} ({len(labels[:limit])} images{note})")


def calibration_set(
    dataset: str,
    spec: InputSpec,
    count: int,
    *,
    seed: int = 0,
    folder_root: str | None = None,
    data_dir: str | None = None,
    run_seed: int = 0,
) -> np.ndarray:
    """``count`` training images (never test images) for int8 calibration."""
    if dataset == "imagenet":  # real photos of everyday things: what such a model meets on a camera
        root = paths.resolve_folder(PHOTOS)
        return folder_calibration_set(root / "train", spec, count, seed=seed)
    if dataset == "folder":
        root = paths.resolve_folder(_folder_of(folder_root))
        if folder.has_splits(root) and (root / "test").is_dir():
            return folder_calibration_set(root, spec, count, seed=seed, split="train")
        # No test split: calibrate on the files training kept, never on the held-out test files.
        kept = folder.held_out_split(root, run_seed, split="train" if folder.has_splits(root) else None)[0]
        return _calibration_images(kept, spec, count, seed)
    train = fashion_mnist.load_split("train", data_dir)
    picks = np.random.default_rng(seed).choice(len(train.images), size=min(count, len(train.images)), replace=False)
    if dataset == "camera_scenes":
        return camera_scenes.render_batch(train.images, picks, seed=seed, split="train", epoch=10_000, spec=spec)
    return fashion_mnist.to_model_input(train.images[picks], spec)


def photo_check_set(spec: InputSpec, limit: int | None = None) -> np.ndarray:
    """The repository's held-out real photos, unlabelled: what a model without a test set here is
    compared with Keras on."""
    root = paths.resolve_folder(PHOTOS) / "test"
    return folder_test_set(root, spec, limit=limit).images


def folder_calibration_set(
    root: str | Path, spec: InputSpec, count: int, *, seed: int = 0, split: str | None = None
) -> np.ndarray:
    """``count`` images of a folder dataset in a seeded random order (only as many as are decoded)."""
    return _calibration_images(folder.open_folder(root, split), spec, count, seed)


def _calibration_images(data: folder.FolderDataset, spec: InputSpec, count: int, seed: int) -> np.ndarray:
    images = []
    for batch, _ in data.iter_batches(spec, batch_size=64, shuffle=True, seed=seed):
        images.append(batch)
        if sum(len(b) for b in images) >= count:
            break
    return np.concatenate(images)[:count]
