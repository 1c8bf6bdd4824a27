"""Training data for a run: splits, per-epoch batches, and the fixed validation and test sets.

Batches for epoch ``e`` depend only on ``(seed, e)``: the order, the augmentation and (for the
camera model) the freshly rendered scenes. A run resumed after a kill therefore sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edge_common.errors import DatasetError
from edge_runtime.contract import InputSpec

from . import augment, paths
from .datasets import camera_augment, camera_scenes, fashion_mnist, folder
from .scene_sets import EpochScenes, half_size

if TYPE_CHECKING:
    from .config import ResolvedTrainConfig

log = logging.getLogger("edge_classify.train")
# (epoch, batch index) -> (images, labels): class indices (B,), or soft targets (B, classes) when distilling
BatchFn = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class TrainData:
    """Everything a training run reads; images are uint8 NHWC in the model's colour order."""

    class_names: tuple[str, ...]
    input_spec: InputSpec
    train_count: int
    batch_size: int
    make_batch: BatchFn
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    samples: tuple[np.ndarray, np.ndarray]  # 25 training images for the tutorials' grid
    test_name: str  # what the test set is, for reports
    close: Callable[[], None] = lambda: None  # releases background renderers
    low_res_epochs: int = 0  # epochs whose batches are at half size
    test_conditions: list[dict[str, Any]] | None = None  # camera scenes: what each test scene drew
    # Real-photo runs: the validation and test photos whole (model colour order), for camera frames.
    val_photos: list[np.ndarray] | None = None
    test_photos: list[np.ndarray] | None = None
    # The batches the out-of-class prototypes are drawn from (None: make_batch's): camera frames
    # without clutter, so a room full of things is not a prototype of any class.
    prototype_batch: BatchFn | None = None

    def spec_for_epoch(self, epoch: int) -> InputSpec:
        """The size batches of ``epoch`` have: half size during the low-resolution epochs."""
        return spec_at_epoch(self.input_spec, epoch, self.low_res_epochs)

    def val_for_epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Validation images at the size ``epoch`` trains at.

        A model that has only seen half-size scenes scores near chance on full-size ones (every
        garment looks twice as large), so low-resolution epochs are validated at half size: the
        number then means something, and costs a quarter as much.
        """
        return self.val if epoch >= self.low_res_epochs else (self._half_val_images, self.val[1])

    @cached_property
    def _half_val_images(self) -> np.ndarray:
        return half_image(self.val[0])

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.train_count // self.batch_size)


def spec_at_epoch(spec: InputSpec, epoch: int, low_res_epochs: int) -> InputSpec:
    """The input size of ``epoch``: half size during the first ``low_res_epochs`` epochs."""
    return half_size(spec) if epoch < low_res_epochs else spec


def half_image(images: np.ndarray) -> np.ndarray:
    """NHWC uint8 images at half size by 2x2 averaging: what the camera model's first pooling sees.

    Not ``to_model_image``: these are already in the model's colour order, which it would treat
    as BGR, and one vectorized mean beats thousands of per-frame resizes.
    """
    n, h, w, c = images.shape
    blocks = images[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
    return np.round(blocks.mean(axis=(2, 4), dtype=np.float32)).astype(np.uint8)


def load(
    config: "ResolvedTrainConfig", input_spec: InputSpec, *, batch_size: int, teacher: Path | None = None
) -> TrainData:
    """Load and split the data a run trains on: its folder dataset, else its model's registry dataset.

    Args:
        config: the resolved run configuration (dataset options, limits, seed, epochs).
        input_spec: the model's input (images are produced at this size and colour order).
        batch_size: images per batch for this worker.
        teacher: camera scenes: train towards ``(1 - distill) * label + distill *`` the teacher's
            probabilities on the clean garment behind each scene (see distill.py).
    """
    kind = config.dataset_kind
    loaders = {
        "fashion_mnist": lambda: _fashion_data(config, input_spec, batch_size),
        "camera_scenes": lambda: _scene_data(config, input_spec, batch_size, teacher),
        "folder": lambda: _folder_data(config, input_spec, batch_size),
    }
    if kind.name not in loaders:
        raise DatasetError(f"{config.model} trains on {kind.description}, which is not trained here")
    return loaders[kind.name]()


def _fashion_split(config: "ResolvedTrainConfig") -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """Fashion-MNIST train and test, and the stratified train/validation indices (limited for quick runs)."""
    train, test = fashion_mnist.load(config.data_dir)
    train_idx, val_idx = fashion_mnist.stratified_split(train.labels, config.val_fraction, config.seed)
    if config.train_limit:
        train_idx = train_idx[: config.train_limit]
        val_idx = val_idx[: max(1, config.train_limit // 5)]
    return train, test, train_idx, val_idx


def _fashion_data(config: "ResolvedTrainConfig", spec: InputSpec, batch_size: int) -> TrainData:
    train, test, train_idx, val_idx = _fashion_split(config)
    x_train = fashion_mnist.to_model_input(train.images[train_idx], spec)
    y_train = train.labels[train_idx].astype(np.int64)
    x_test = fashion_mnist.to_model_input(test.images[: config.test_limit], spec)
    y_test = test.labels[: config.test_limit].astype(np.int64)
    return TrainData(
        class_names=fashion_mnist.CLASS_NAMES,
        input_spec=spec,
        train_count=len(x_train),
        batch_size=batch_size,
        make_batch=_array_batches(
            x_train,
            y_train,
            batch_size,
            config.seed,
            config.augment,
            config.max_shift,
            config.max_rotation,
            config.framing_share,
        ),
        val=(fashion_mnist.to_model_input(train.images[val_idx], spec), train.labels[val_idx].astype(np.int64)),
        test=(x_test, y_test),
        samples=(x_train[:25], y_train[:25]),
        test_name=f"Fashion-MNIST test split ({len(y_test)} images)",
    )


def _scene_data(config: "ResolvedTrainConfig", spec: InputSpec, batch_size: int, teacher: Path | None) -> TrainData:
    train, test, train_idx, val_idx = _fashion_split(config)
    seed = config.seed
    renderer = camera_scenes.SceneRenderer()
    garments, labels = train.images, train.labels.astype(np.int64)
    count = config.scenes_per_epoch or len(train_idx)
    targets = labels  # per garment: its class, or its soft target when distilling
    if teacher is not None and config.distill > 0:
        from . import distill as distill_mod

        targets = distill_mod.soft_targets(teacher, garments, labels, config.distill, len(fashion_mnist.CLASS_NAMES))
    scenes = EpochScenes(
        garments, train_idx, count, seed, spec, config.low_res_epochs, config.scene_reuse, config.epochs
    )

    def make_batch(epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen, images = scenes.get(epoch)
        rows = np.sort(
            scenes.rows(epoch)[index * batch_size : (index + 1) * batch_size]
        )  # sorted: memmap reads in order
        return np.asarray(images[rows]), targets[chosen[rows]]

    val_images = camera_scenes.render_batch(
        garments, val_idx, seed=seed, split="val", epoch=0, spec=spec, renderer=renderer
    )
    test_conditions: list[dict[str, Any]] = []
    x_test, y_test = camera_scenes.test_scenes(
        test.images, test.labels.astype(np.int64), spec, count=config.test_limit, conditions=test_conditions
    )
    sample_idx = scenes.choice(0)[:25]
    samples = camera_scenes.render_batch(
        garments, sample_idx, seed=seed, split="train", epoch=0, spec=spec, renderer=renderer
    )
    return TrainData(
        class_names=fashion_mnist.CLASS_NAMES,
        input_spec=spec,
        train_count=count,
        batch_size=batch_size,
        make_batch=make_batch,
        val=(val_images, labels[val_idx]),
        test=(x_test, y_test),
        samples=(samples, labels[sample_idx]),
        close=scenes.close,
        low_res_epochs=config.low_res_epochs,
        test_conditions=test_conditions,
        test_name=f"fixed camera test scenes ({len(y_test)} scenes from Fashion-MNIST test garments)",
    )


def _folder_root(config: "ResolvedTrainConfig") -> Path:
    if not config.folder:
        raise DatasetError(f"{config.model} trains on a folder dataset; pass --folder ROOT")
    return paths.resolve_folder(config.folder)


def _folder_data(config: "ResolvedTrainConfig", spec: InputSpec, batch_size: int) -> TrainData:
    if config.augment in ("photo", "camera"):
        return _photo_data(config, spec, batch_size)
    root, seed, val_fraction = str(_folder_root(config)), config.seed, config.val_fraction
    splits = folder.has_splits(root)
    train_set = folder.open_folder(root, "train" if splits else None)
    names = _enough_classes(root, train_set.class_names)
    if splits and (Path(root) / "test").is_dir():
        test_set = folder.open_folder(root, "test", class_names=names)
    else:  # no test split: hold out the same files convert and the benchmark will test on
        train_set, test_set = folder.held_out_split(root, seed, names, split="train" if splits else None)
    x_test, y_test = test_set.load(spec)
    x_train, y_train = train_set.load(spec)
    val_set = folder.open_folder(root, "val", class_names=names) if splits and (Path(root) / "val").is_dir() else None
    if val_set is not None:
        x_val, y_val = val_set.load(spec)
    else:
        x_train, y_train, x_val, y_val = _carve(x_train, y_train, val_fraction, seed)
    _log_counts(
        root,
        names,
        len(y_train),
        len(y_val),
        len(y_test),
        train_set,
        test_set,
        *([val_set] if val_set is not None else []),
    )
    if config.train_limit:
        x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    if config.test_limit:
        x_test, y_test = x_test[: config.test_limit], y_test[: config.test_limit]
    shown = _shown(len(y_train), seed)
    return TrainData(
        class_names=names,
        input_spec=spec,
        train_count=len(x_train),
        batch_size=batch_size,
        make_batch=_array_batches(
            x_train,
            y_train,
            batch_size,
            seed,
            config.augment,
            config.max_shift,
            config.max_rotation,
            config.framing_share,
        ),
        val=(x_val, y_val),
        test=(x_test, y_test),
        samples=(x_train[shown], y_train[shown]),
        test_name=f"folder dataset {root} ({len(y_test)} test images)",
    )


def _photo_data(config: "ResolvedTrainConfig", spec: InputSpec, batch_size: int) -> TrainData:
    """Real photos for transfer learning: every training batch is cropped from the whole photos.

    Validation and test photos go through the runtime's preprocessing (the model file's fit), so
    their numbers are what a device will see.
    """
    root = _folder_root(config)
    splits = folder.has_splits(root)
    train_set = folder.open_folder(root, "train" if splits else None)
    names = _enough_classes(str(root), train_set.class_names)
    test_set = folder.open_folder(root, "test", class_names=names) if splits and (root / "test").is_dir() else None
    if test_set is None:  # no held-out split: hold out 20% of the photos, never trained on
        train_set, test_set = folder.held_out_split(root, config.seed, names, split="train" if splits else None)
    val_set = folder.open_folder(root, "val", class_names=names) if splits and (root / "val").is_dir() else None
    if val_set is None:
        train_set, val_set = folder.split_files(train_set, config.val_fraction, config.seed)
    # Quick runs: a seeded sample of every class, not the first classes in folder order.
    if config.train_limit:
        train_set.files = _sample(train_set.files, config.train_limit, config.seed)
    if config.test_limit:
        test_set.files = _sample(test_set.files, config.test_limit, config.seed)
    # Crops take at most the whole photo; keeping it a little larger than the input leaves detail to crop into.
    photos, y_train = train_set.load_photos(spec.color_order, max_side=max(spec.height, spec.width) * 3 // 2)
    x_val, y_val = val_set.load(spec)
    x_test, y_test = test_set.load(spec)
    # Whole photos for the camera conditions (frames are built from them at 640x480).
    val_photos, val_kept = val_set.load_photos(spec.color_order, max_side=480)
    test_photos, test_kept = test_set.load_photos(spec.color_order, max_side=480)
    if len(val_kept) != len(y_val) or len(test_kept) != len(y_test):
        raise DatasetError(f"{root}: photos decoded differently on a second read; check the files are not changing")
    _log_counts(str(root), names, len(photos), len(y_val), len(y_test), train_set, val_set, test_set)
    seed, size, camera = config.seed, (spec.height, spec.width), config.augment == "camera"

    def make_batch(epoch: int, index: int, clutter: bool = True) -> tuple[np.ndarray, np.ndarray]:
        order = np.random.default_rng([seed, epoch]).permutation(len(photos))
        chosen = order[index * batch_size : (index + 1) * batch_size]
        rng = np.random.default_rng([seed, epoch, index, 1])
        if camera:  # half of each batch framed by a camera: near or far, on a background, with webcam faults
            frames = camera_augment.CameraAugment() if clutter else camera_augment.UNCLUTTERED
            return camera_augment.camera_batch(photos, chosen, spec, rng, frames)[0], y_train[chosen]
        return augment.photo_batch([photos[i] for i in chosen], size, rng), y_train[chosen]

    sample_rng, shown = np.random.default_rng([seed, 25]), _shown(len(photos), seed)
    return TrainData(
        class_names=names,
        input_spec=spec,
        train_count=len(photos),
        batch_size=batch_size,
        make_batch=make_batch,
        val=(x_val, y_val),
        test=(x_test, y_test),
        samples=(
            camera_augment.camera_batch(photos, shown, spec, sample_rng)[0]
            if camera
            else augment.photo_batch([photos[i] for i in shown], size, sample_rng),
            y_train[shown],
        ),
        test_name=f"folder dataset {config.folder} ({len(y_test)} held-out photos)",
        val_photos=val_photos,
        test_photos=test_photos,
        prototype_batch=(lambda epoch, index: make_batch(epoch, index, clutter=False)) if camera else None,
    )


def _shown(count: int, seed: int) -> np.ndarray:
    """The 25 training images samples.png shows, in a seeded random order: folder datasets list their
    images class by class and the first 25 would all be one class."""
    return np.random.default_rng([seed, 25]).permutation(count)[:25]


def _sample(files: list, count: int, seed: int) -> list:
    keep = np.random.default_rng([seed, 3]).permutation(len(files))[:count]
    return [files[i] for i in sorted(keep)]


def _array_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    augmentation: str,
    max_shift: int = 2,
    max_rotation: float = 10.0,
    framing_share: float = 1 / 3,
) -> BatchFn:
    def make_batch(epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.random.default_rng([seed, epoch]).permutation(len(images))
        chosen = order[index * batch_size : (index + 1) * batch_size]
        batch = images[chosen]
        rng = np.random.default_rng([seed, epoch, index, 1])
        if augmentation == "shift_flip":
            batch = augment.shift_flip(batch, rng, max_shift)
        elif augmentation == "framing":
            batch = augment.framing(batch, rng, max_shift, max_rotation, share=framing_share)
        elif augmentation == "tutorial":
            batch = augment.tutorial_affine(batch, rng)
        return batch, labels[chosen]

    return make_batch


def _log_counts(
    root: str, names: tuple[str, ...], train: int, val: int, test: int, *sets: folder.FolderDataset
) -> None:
    """What the run will use, counted after decoding: the numbers add up to the files that were read."""
    skipped: dict[str, int] = {}
    for dataset in sets:
        for kind, count in dataset.skipped.items():
            skipped[kind] = skipped.get(kind, 0) + count
    detail = "; skipped " + ", ".join(f"{count} {kind}" for kind, count in sorted(skipped.items())) if skipped else ""
    log.info(
        "%s: %d images in %d classes: %d train, %d validate, %d test%s",
        root,
        train + val + test,
        len(names),
        train,
        val,
        test,
        detail,
    )


def _enough_classes(root: str, names: tuple[str, ...]) -> tuple[str, ...]:
    # Checked before loading and splitting so the message names the real problem.
    if len(names) < 2:
        raise DatasetError(f"{root}: only one class ({names[0]}); a classifier needs at least two class folders")
    return names


def _carve(images: np.ndarray, labels: np.ndarray, fraction: float, seed: int):
    rest, held = fashion_mnist.stratified_split(labels, fraction, seed)
    if len(held) == 0 or len(rest) == 0:
        raise DatasetError(f"too few images ({len(labels)}) to hold out {fraction:.0%} for validation; add images")
    return images[rest], labels[rest], images[held], labels[held]
