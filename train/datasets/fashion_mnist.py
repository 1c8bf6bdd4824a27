"""The real Fashion-MNIST, read from local IDX files (never downloaded at run time).

Search order for the folder: an explicit ``data_dir``, ``$FASHION_MNIST_DIR``, Debian's
``dataset-fashion-mnist`` package, then Keras' cache (``~/.keras/datasets/fashion-mnist``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_common.errors import DatasetError

if TYPE_CHECKING:
    from edge_runtime.contract import InputSpec

from .idx import read_idx

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
ENV_VAR = "FASHION_MNIST_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = "install it with `apt-get install dataset-fashion-mnist` (or `make setup`), or pass --data-dir"
_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
IMAGE_SHAPE = (28, 28)


@dataclass(frozen=True)
class Split:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def candidate_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched, in order."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    dirs.append(DEBIAN_DIR)
    dirs.append(Path.home() / ".keras" / "datasets" / "fashion-mnist")
    return dirs


def locate(data_dir: str | Path | None = None) -> Path:
    """The first folder that holds all four files (gzipped or raw).

    Raises:
        DatasetError: naming the folders searched and how to install the dataset.
    """
    dirs = candidate_dirs(data_dir)
    for folder in dirs:
        if all(_file(folder, stem) is not None for stem in _FILES.values()):
            return folder
    if data_dir is not None:
        missing = [stem for stem in _FILES.values() if _file(dirs[0], stem) is None]
        raise DatasetError(f"Fashion-MNIST not found in {dirs[0]} (missing {', '.join(missing)}); {INSTALL_HINT}")
    raise DatasetError(f"Fashion-MNIST not found (looked in {', '.join(map(str, dirs))}); {INSTALL_HINT}")


def load_split(split: str, data_dir: str | Path | None = None) -> Split:
    """Load ``"train"`` (60,000 images) or ``"test"`` (10,000 images)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = locate(data_dir)
    image_path = _file(folder, _FILES[(split, "images")])
    label_path = _file(folder, _FILES[(split, "labels")])
    assert image_path is not None and label_path is not None  # locate() found all four files there
    images = read_idx(image_path, ndim=3, item_shape=IMAGE_SHAPE)
    labels = read_idx(label_path, ndim=1)
    check_pair(images, labels, image_path, label_path)
    return Split(images=images, labels=labels)


def load(data_dir: str | Path | None = None) -> tuple[Split, Split]:
    """Both splits: ``(train, test)``."""
    return load_split("train", data_dir), load_split("test", data_dir)


def check_pair(
    images: np.ndarray,
    labels: np.ndarray,
    image_path: Path | str,
    label_path: Path | str,
    num_classes: int = len(CLASS_NAMES),
) -> None:
    """Images and labels must agree in count, be uint8, and labels must be class indices."""
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DatasetError(f"{image_path} / {label_path}: expected uint8 data, got {images.dtype} / {labels.dtype}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels; the "
            f"files do not belong together"
        )
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise DatasetError(f"{label_path}: label {int(labels[bad])} at index {bad} is outside 0..{num_classes - 1}")


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified train/validation indices.

    Each class contributes ``round(fraction * count)`` examples to validation, chosen by a
    seeded permutation, so class balance is the same in both parts.

    Returns:
        ``(train_idx, val_idx)``, each sorted.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    val_parts = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        take = int(round(fraction * len(members)))
        val_parts.append(rng.permutation(members)[:take])
    val_idx = np.sort(np.concatenate(val_parts)) if val_parts else np.array([], dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx


def _file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        path = folder / name
        if path.is_file():
            return path
    return None


def main(argv: list[str] | None = None) -> int:
    """`python -m train.datasets.fashion_mnist [--data-dir DIR]`: print where the dataset is."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m train.datasets.fashion_mnist", description="Locate the local Fashion-MNIST files."
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        print(locate(args.data_dir))
    except DatasetError as exc:
        print(f"error: {exc}")
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def to_model_input(images: np.ndarray, spec: "InputSpec") -> np.ndarray:
    """Garments (N, 28, 28) -> the model's NHWC input, through the runtime's preprocessing."""
    if images.shape[1:3] == (spec.height, spec.width) and spec.channels == 1:
        return images[..., None]  # already what to_model_image would return; skip 60k calls
    from edge_runtime.preprocess import to_model_image

    return (
        np.stack([to_model_image(image, spec) for image in images])
        if len(images)
        else np.empty((0, spec.height, spec.width, spec.channels), np.uint8)
    )
