"""Image-folder datasets: ``root/<class_name>/*.jpg`` (optionally under ``train/``, ``val/``, ``test/``).

The tutorials' cats/dogs and CIFAR subsets use this layout. Images are decoded with OpenCV and
resized/colour-converted by the runtime's own preprocessing, so a model trained here sees on the
device exactly what it saw in training. Large folders stream in batches.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from edge_common.errors import DatasetError
from edge_runtime import images  # the runtime reads the same image files, the same way
from edge_runtime.contract import InputSpec
from edge_runtime.images import IMAGE_SUFFIXES
from edge_runtime.preprocess import to_model_image

SPLITS = ("train", "val", "test")
# A folder without a test/ split: this share of its images (stratified, seeded with the run's seed + 1)
# is held out as the test set, in training and in every later evaluation (convert, benchmarks).
HELD_OUT = 0.2
log = logging.getLogger("edge_classify.data")
_warned: set[str] = set()  # a broken file is named once per process, however often a dataset is read


@dataclass
class FolderDataset:
    """The files of one folder dataset split and their class indices."""

    root: Path
    class_names: tuple[str, ...]
    files: list[tuple[Path, int]]
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    def counts(self) -> dict[str, int]:
        """Number of listed files per class name."""
        per_class = np.bincount([label for _, label in self.files], minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, per_class)}

    def iter_batches(
        self, spec: InputSpec, batch_size: int = 64, *, shuffle: bool = False, seed: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Decode and yield ``(images uint8 NHWC, labels int64)`` batches; memory stays one batch.

        Files that cannot be decoded are skipped with one warning line each and counted in
        ``skipped``.
        """
        order = np.arange(len(self.files))
        if shuffle:
            np.random.default_rng(seed).shuffle(order)
        images: list[np.ndarray] = []
        labels: list[int] = []
        for index in order:
            path, label = self.files[index]
            image = self._decode(path, spec)
            if image is None:
                continue
            images.append(image)
            labels.append(label)
            if len(images) == batch_size:
                yield np.stack(images), np.asarray(labels, dtype=np.int64)
                images, labels = [], []
        if images:
            yield np.stack(images), np.asarray(labels, dtype=np.int64)

    def load(self, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
        """All images in memory (fine for the tutorials' few-thousand-image folders)."""
        batches = list(self.iter_batches(spec, batch_size=256))
        if not batches:
            raise DatasetError(f"{self.root}: none of the {len(self.files)} files could be decoded as images")
        labels = np.concatenate([b[1] for b in batches])
        self._check_every_class(labels)
        return np.concatenate([b[0] for b in batches]), labels

    def load_photos(self, color_order: str, max_side: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Every decodable photo whole, in ``color_order``, its shorter side at most ``max_side``
        (area averaging), for augmentations that crop from the full photo. Memory is about
        ``len(self) * max_side**2 * 4 / 3 * 3`` bytes."""
        import cv2

        photos: list[np.ndarray] = []
        labels: list[int] = []
        for path, label in self.files:
            image = self._decode(path, None)
            if image is None:
                continue
            h, w = image.shape[:2]
            if min(h, w) > max_side:
                scale = max_side / min(h, w)
                image = cv2.resize(
                    image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
                )
            photos.append(np.ascontiguousarray(image[:, :, ::-1]) if color_order == "RGB" else image)
            labels.append(label)
        if not photos:
            raise DatasetError(f"{self.root}: none of the {len(self.files)} files could be decoded as images")
        self._check_every_class(np.asarray(labels, dtype=np.int64))
        return photos, np.asarray(labels, dtype=np.int64)

    def _check_every_class(self, decoded: np.ndarray) -> None:
        """A class whose listed files all failed to decode would train (or test) on nothing and
        report a meaningless accuracy: refuse it, naming the class."""
        listed = np.bincount([label for _, label in self.files], minlength=len(self.class_names))
        have = np.bincount(decoded, minlength=len(self.class_names))
        empty = [self.class_names[k] for k in range(len(self.class_names)) if listed[k] and not have[k]]
        if empty:
            raise DatasetError(
                f"{self.root}: none of the images of class {', '.join(map(repr, empty))} could be "
                "decoded; replace them with readable images or remove the class folder"
            )

    def interleaved(self, count: int | None = None) -> list[tuple[Path, int]]:
        """Up to ``count`` files, one class after another (a video or demo then shows every class)."""
        by_class = [[entry for entry in self.files if entry[1] == k] for k in range(len(self.class_names))]
        rounds = max(map(len, by_class), default=0)
        return [files[i] for i in range(rounds) for files in by_class if i < len(files)][:count]

    def summary(self) -> str:
        skipped = sum(self.skipped.values())
        detail = (
            f" (skipped {skipped}: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) + ")"
            if skipped
            else ""
        )
        return f"{self.root}: {len(self.files)} files in {len(self.class_names)} classes{detail}"

    def _decode(self, path: Path, spec: InputSpec | None) -> np.ndarray | None:
        """The image through the runtime's preprocessing for ``spec``; with None, the decoded BGR frame."""
        image, why, kind = read_image(path)
        if image is None:
            self._skip(path, why, kind)
            return None
        return image if spec is None else to_model_image(image, spec)

    def _skip(self, path: Path, why: str, kind: str) -> None:
        if str(path) not in _warned:
            _warned.add(str(path))
            log.warning("skipping %s: %s", path, why)
        self.skipped[kind] = self.skipped.get(kind, 0) + 1
        return None


def read_image(path: Path) -> tuple[np.ndarray | None, str, str]:
    """Decode one image file as BGR, as the runtime does (the same pixel guard, EXIF orientation
    applied); on failure (None, why, kind of failure) and nothing raised."""
    return images.read_image(path)


def split_files(dataset: FolderDataset, fraction: float, seed: int) -> tuple[FolderDataset, FolderDataset]:
    """Split a dataset's files, stratified by class, into (rest, held out), before any is decoded,
    so the split is the same whichever files later turn out to be unreadable."""
    from dataclasses import replace as copy_with

    from .fashion_mnist import stratified_split

    labels = np.asarray([label for _, label in dataset.files])
    rest, held = stratified_split(labels, fraction, seed)
    if len(held) == 0 or len(rest) == 0:
        raise DatasetError(f"too few images ({len(labels)}) to hold out {fraction:.0%}; add images")
    return (
        copy_with(dataset, files=[dataset.files[i] for i in sorted(rest)], skipped={}),
        copy_with(dataset, files=[dataset.files[i] for i in sorted(held)], skipped={}),
    )


def held_out_split(
    root: str | Path, seed: int, class_names: Sequence[str] | None = None, *, split: str | None = None
) -> tuple[FolderDataset, FolderDataset]:
    """A folder without a test split: its (training, test) files, the test files being those
    training held out for ``seed`` (``split="train"`` for a ``train/`` folder with no ``test/``)."""
    return split_files(open_folder(root, split, class_names=class_names), HELD_OUT, seed + 1)


def has_splits(root: str | Path) -> bool:
    """True when ``root`` uses the ``train/ val/ test/`` layout."""
    return (Path(root) / "train").is_dir()


def open_folder(
    root: str | Path, split: str | None = None, *, class_names: Sequence[str] | None = None
) -> FolderDataset:
    """List a folder dataset without decoding anything.

    Args:
        root: the dataset folder.
        split: ``"train"``, ``"val"`` or ``"test"`` for the split layout; None for a flat one.
        class_names: force this class order (to match a trained model); default: sorted folders.

    Raises:
        DatasetError: missing root, no class folders, an empty class, or a class that is missing
            from this split.
    """
    base = Path(root).expanduser()
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        base = base / split
    if not base.is_dir():
        raise DatasetError(f"{base}: no such folder; a folder dataset looks like ROOT/<class>/*.jpg")
    found = sorted(entry.name for entry in _scandir(base) if _is_dir(entry) and not entry.name.startswith("."))
    if split is None:
        found = [name for name in found if name not in SPLITS] or found
    if not found:
        raise DatasetError(f"{base}: no class folders; a folder dataset looks like ROOT/<class>/*.jpg")
    names = tuple(class_names) if class_names is not None else tuple(found)
    missing = [name for name in names if name not in found]
    if missing:
        raise DatasetError(f"{base}: class folder(s) {', '.join(missing)} missing")
    extra = [name for name in found if name not in names]
    if extra:  # a class only one split has would be dropped from it without a word
        raise DatasetError(
            f"{base}: class folder(s) {', '.join(extra)} are not among the training classes "
            f"({', '.join(names)}); give every split the same class folders"
        )
    dataset = FolderDataset(root=base, class_names=names, files=[])
    for label, name in enumerate(names):
        try:
            files = images.images_in(base / name)  # subfolders too: the one rule of every command
        except OSError as exc:
            raise DatasetError(f"{base / name}: cannot list folder ({exc.strerror or exc})") from None
        if not files:
            raise DatasetError(f"{base / name}: class {name!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
        dataset.files.extend((path, label) for path in files)
    return dataset


def _scandir(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # symlink loops and dangling links are not classes
        return False
