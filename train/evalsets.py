"""The images a finished run is judged and calibrated on, for convert and benchmarks.

Test images: the full Fashion-MNIST test split for 28x28 models, the fixed camera test scenes for
camera models, or the folder's test split for folder-trained models. Calibration images always
come from the training split, never from the test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.contract import InputSpec

from .datasets import camera_scenes, fashion_mnist, folder


@dataclass(frozen=True)
class EvalSet:
    images: np.ndarray  # uint8 NHWC in the model's colour order
    labels: np.ndarray
    name: str


def test_set(dataset: str, spec: InputSpec, *, run_config: dict[str, Any] | None = None,
             data_dir: str | None = None, limit: int | None = None) -> EvalSet:
    """The test images of a model trained on ``dataset`` (``run_config`` may name a folder)."""
    folder_root = (run_config or {}).get("folder")
    if folder_root:
        split = "test" if (folder.has_splits(folder_root) and _has(folder_root, "test")) else None
        names = tuple((run_config or {}).get("class_names") or ()) or None
        data = folder.open_folder(folder_root, split, class_names=names)
        images, labels = data.load(spec)
        return EvalSet(images[:limit], labels[:limit], f"folder {data.root} ({len(labels[:limit])} images)")
    test = fashion_mnist.load_split("test", data_dir)
    if dataset == "camera_scenes":
        images, labels = camera_scenes.test_scenes(test.images, test.labels.astype(np.int64), spec, count=limit)
        return EvalSet(images, labels, f"fixed camera test scenes ({len(labels)})")
    images = test.images[:limit]
    if spec.height == 28 and spec.width == 28 and spec.channels == 1:
        model_images = images[..., None]
    else:
        from edge_runtime.preprocess import to_model_image

        model_images = np.stack([to_model_image(image, spec) for image in images])
    return EvalSet(model_images, test.labels[:limit].astype(np.int64), f"Fashion-MNIST test split ({len(images)})")


def calibration_set(dataset: str, spec: InputSpec, count: int, *, seed: int = 0,
                    run_config: dict[str, Any] | None = None, data_dir: str | None = None) -> np.ndarray:
    """``count`` training images (never test images) for int8 calibration."""
    folder_root = (run_config or {}).get("folder")
    if folder_root:
        data = folder.open_folder(folder_root, "train" if folder.has_splits(folder_root) else None)
        images = np.concatenate([batch for batch, _ in data.iter_batches(spec, batch_size=64, shuffle=True, seed=seed)])
        return images[:count]
    train = fashion_mnist.load_split("train", data_dir)
    picks = np.random.default_rng(seed).choice(len(train.images), size=min(count, len(train.images)), replace=False)
    if dataset == "camera_scenes":
        return camera_scenes.render_batch(train.images, picks, seed=seed, split="train", epoch=10_000, spec=spec)
    images = train.images[picks]
    if spec.height == 28 and spec.width == 28 and spec.channels == 1:
        return images[..., None]
    from edge_runtime.preprocess import to_model_image

    return np.stack([to_model_image(image, spec) for image in images])


def _has(root: str, split: str) -> bool:
    from pathlib import Path

    return (Path(root) / split).is_dir()
