"""Training data for a run: splits, per-epoch batches, and the fixed validation and test sets.

Batches for epoch ``e`` depend only on ``(seed, e)``: the order, the augmentation and (for the
camera model) the freshly rendered scenes. A run resumed after a kill therefore sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_runtime.contract import InputSpec
from edge_runtime.errors import DatasetError
from edge_runtime.preprocess import to_model_image

from . import augment
from .datasets import camera_scenes, fashion_mnist, folder

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


def half_size(spec: InputSpec) -> InputSpec:
    """``spec`` at half its height and width: the input of the low-resolution epochs."""
    return replace(spec, height=spec.height // 2, width=spec.width // 2)


def half_image(images: np.ndarray) -> np.ndarray:
    """NHWC uint8 images at half size by 2x2 averaging: what the camera model's first pooling sees.

    Not ``to_model_image``: these are already in the model's colour order, which it would treat
    as BGR, and one vectorized mean beats thousands of per-frame resizes.
    """
    n, h, w, c = images.shape
    blocks = images[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
    return np.round(blocks.mean(axis=(2, 4), dtype=np.float32)).astype(np.uint8)


def scene_position(epoch: int, low_res_epochs: int, reuse: int) -> tuple[int, int]:
    """(scene set, how many times that set was used before) for ``epoch``.

    Each set serves ``reuse`` consecutive epochs; sets never straddle the switch to full size.
    """
    reuse = max(1, reuse)
    if epoch < low_res_epochs:
        return epoch // reuse, epoch % reuse
    into = epoch - low_res_epochs
    return -(-low_res_epochs // reuse) + into // reuse, into % reuse


def visit_order(seed: int, count: int, scene_set: int, use: int) -> np.ndarray:
    """The order in which one use of a scene set visits its ``count`` scenes.

    The first use reads the set in order (its garments were drawn in random order); every reuse
    reshuffles rather than mirrors: Fashion-MNIST footwear all points left, and epochs of mirrored
    scenes cost validation accuracy on the (unmirrored) camera scenes.
    """
    if use == 0:
        return np.arange(count)
    return np.random.default_rng([seed, scene_set, use, 11]).permutation(count)


def load(dataset: str, input_spec: InputSpec, *, batch_size: int, seed: int, val_fraction: float,
         augmentation: str, max_shift: int = 2, data_dir: str | None = None, folder_root: str | None = None,
         train_limit: int | None = None, test_limit: int | None = None,
         scenes_per_epoch: int | None = None, low_res_epochs: int = 0, scene_reuse: int = 1,
         epochs: int | None = None, teacher: Path | None = None, distill: float = 0.0) -> TrainData:
    """Load and split the dataset a model trains on.

    Args:
        dataset: ``"fashion_mnist"`` or ``"camera_scenes"``; a ``folder_root`` overrides either.
        input_spec: the model's input (images are produced at this size and colour order).
        train_limit / test_limit: use only the first N images (quick tests).
        scenes_per_epoch: camera scenes rendered per epoch (default: one per training garment).
        scene_reuse: camera scenes: each rendered set serves this many epochs (reshuffled each
            time), so rendering costs a fraction of the training time.
        epochs: camera scenes: how many epochs the run trains, so no set is rendered past the last
            one (default: render ahead without end).
        teacher / distill: camera scenes: train towards ``(1 - distill) * label + distill *``
            the teacher's probabilities on the clean garment behind each scene (see distill.py).
    """
    if augmentation not in augment.AUGMENTATIONS:
        raise DatasetError(f"unknown augmentation {augmentation!r}; choose from {', '.join(augment.AUGMENTATIONS)}")
    if folder_root is not None:
        return _folder_data(folder_root, input_spec, batch_size, seed, val_fraction, augmentation, train_limit, test_limit)
    if dataset == "fashion_mnist":
        return _fashion_data(input_spec, batch_size, seed, val_fraction, augmentation, max_shift, data_dir, train_limit,
                             test_limit)
    if dataset == "camera_scenes":
        return _scene_data(input_spec, batch_size, seed, val_fraction, data_dir, train_limit, test_limit, scenes_per_epoch,
                           low_res_epochs, scene_reuse, epochs, teacher, distill)
    raise DatasetError(f"unknown dataset {dataset!r}")


def _fashion_data(spec: InputSpec, batch_size: int, seed: int, val_fraction: float, augmentation: str,
                  max_shift: int, data_dir: str | None, train_limit: int | None, test_limit: int | None) -> TrainData:
    train, test = fashion_mnist.load(data_dir)
    train_idx, val_idx = fashion_mnist.stratified_split(train.labels, val_fraction, seed)
    if train_limit:
        train_idx = train_idx[:train_limit]
        val_idx = val_idx[: max(1, train_limit // 5)]
    x_train = _to_spec(train.images[train_idx], spec)
    y_train = train.labels[train_idx].astype(np.int64)
    x_test = _to_spec(test.images[:test_limit], spec)
    y_test = test.labels[:test_limit].astype(np.int64)
    return TrainData(
        class_names=fashion_mnist.CLASS_NAMES, input_spec=spec, train_count=len(x_train), batch_size=batch_size,
        make_batch=_array_batches(x_train, y_train, batch_size, seed, augmentation, max_shift),
        val=(_to_spec(train.images[val_idx], spec), train.labels[val_idx].astype(np.int64)),
        test=(x_test, y_test), samples=(x_train[:25], y_train[:25]),
        test_name=f"Fashion-MNIST test split ({len(y_test)} images)",
    )


def _scene_data(spec: InputSpec, batch_size: int, seed: int, val_fraction: float, data_dir: str | None,
                train_limit: int | None, test_limit: int | None, scenes_per_epoch: int | None,
                low_res_epochs: int = 0, scene_reuse: int = 1, epochs: int | None = None,
                teacher: Path | None = None, distill: float = 0.0) -> TrainData:
    train, test = fashion_mnist.load(data_dir)
    train_idx, val_idx = fashion_mnist.stratified_split(train.labels, val_fraction, seed)
    if train_limit:
        train_idx = train_idx[:train_limit]
        val_idx = val_idx[: max(1, train_limit // 5)]
    renderer = camera_scenes.SceneRenderer()
    garments, labels = train.images, train.labels.astype(np.int64)
    count = scenes_per_epoch or len(train_idx)
    targets = labels  # per garment: its class, or its soft target when distilling
    if teacher is not None and distill > 0:
        from . import distill as distill_mod

        targets = distill_mod.soft_targets(teacher, garments, labels, distill, len(fashion_mnist.CLASS_NAMES))
    scenes = EpochScenes(garments, train_idx, count, seed, spec, low_res_epochs, scene_reuse, epochs)

    def make_batch(epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen, images = scenes.get(epoch)
        rows = np.sort(scenes.rows(epoch)[index * batch_size:(index + 1) * batch_size])  # sorted: memmap reads in order
        return np.asarray(images[rows]), targets[chosen[rows]]

    val_images = camera_scenes.render_batch(garments, val_idx, seed=seed, split="val", epoch=0, spec=spec,
                                            renderer=renderer)
    test_conditions: list[dict[str, Any]] = []
    x_test, y_test = camera_scenes.test_scenes(test.images, test.labels.astype(np.int64), spec, count=test_limit,
                                               conditions=test_conditions)
    sample_idx = scenes.choice(0)[:25]
    samples = camera_scenes.render_batch(garments, sample_idx, seed=seed, split="train", epoch=0, spec=spec,
                                         renderer=renderer)
    return TrainData(
        class_names=fashion_mnist.CLASS_NAMES, input_spec=spec, train_count=count, batch_size=batch_size,
        make_batch=make_batch, val=(val_images, labels[val_idx]), test=(x_test, y_test),
        samples=(samples, labels[sample_idx]), close=scenes.close, low_res_epochs=low_res_epochs,
        test_conditions=test_conditions,
        test_name=f"fixed camera test scenes ({len(y_test)} scenes from Fashion-MNIST test garments)",
    )


class EpochScenes:
    """Training scenes for every epoch, rendered ahead in a separate process.

    Rendering in the training process would fight TensorFlow for the GIL; a child process renders
    the next scene set into a memory-mapped file while the current one trains. Each set serves
    ``reuse`` consecutive epochs of one resolution phase (reshuffled each time), so on a
    2-core machine rendering takes a fraction of the CPU instead of competing with every epoch.
    Scene i of set s depends only on (seed, s, i), so the result is the same however and wherever
    it is rendered.
    """

    def __init__(self, garments: np.ndarray, train_idx: np.ndarray, count: int, seed: int, spec: InputSpec,
                 low_res_epochs: int = 0, reuse: int = 1, epochs: int | None = None) -> None:
        import tempfile
        import threading

        self._garments, self._train_idx, self._count, self._seed = garments, train_idx, count, seed
        self._spec, self._low_res_epochs, self._reuse = spec, low_res_epochs, max(1, reuse)
        self._low_res_sets = scene_position(low_res_epochs, low_res_epochs, self._reuse)[0]  # the first full-size set
        # The last set the run uses: rendering one more would only take CPU from the final epochs.
        self._last_set = None if epochs is None else scene_position(epochs - 1, low_res_epochs, self._reuse)[0]
        self._folder = tempfile.TemporaryDirectory(prefix="edge-scenes-")
        self._pending: dict[int, Any] = {}  # scene set -> rendering child process
        self._current: tuple[int, np.ndarray] | None = None
        self._lock = threading.Lock()  # tf.data calls make_batch from two threads
        self._submit(0)  # start now: the first set renders while the rest of the set-up runs

    def scene_set(self, epoch: int) -> int:
        """Which rendered set ``epoch`` trains on."""
        return self._position(epoch)[0]

    def rows(self, epoch: int) -> np.ndarray:
        """The order in which ``epoch`` visits its set's scenes: a fresh shuffle on every reuse."""
        return visit_order(self._seed, self._count, *self._position(epoch))

    def choice(self, epoch: int) -> np.ndarray:
        """Which training garments epoch ``epoch`` shows, in order."""
        return self._choice(self.scene_set(epoch))

    def get(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        index = self.scene_set(epoch)
        with self._lock:
            if self._current is None or self._current[0] != index:
                self._submit(index)
                process = self._pending.pop(index)
                if process.wait() != 0:
                    raise DatasetError(f"rendering camera scenes for epoch {epoch} failed: "
                                       f"{process.stderr.read().decode(errors='replace').strip()[-300:]}")
                spec = self._spec_for(index)
                shape = (self._count, spec.height, spec.width, spec.channels)
                self._current = (index, np.memmap(self._path(index), dtype=np.uint8, mode="r", shape=shape))
                for stale in [s for s in self._pending if s < index]:
                    self._pending.pop(stale).kill()
                if self._last_set is None or index < self._last_set:
                    self._submit(index + 1)
                # Keep this set, the next one (finished or still being written) and the inputs.
                following = self._path(index + 1).name
                keep = {self._path(index).name, following, following + _PARTIAL, "garments.npy"}
                for old in Path(self._folder.name).glob("*"):
                    if old.name not in keep and not old.name.startswith("chosen-"):
                        old.unlink(missing_ok=True)
            return self._choice(index), self._current[1]

    def close(self) -> None:
        for process in self._pending.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self._pending.clear()
        self._current = None
        self._folder.cleanup()

    def _choice(self, index: int) -> np.ndarray:
        return np.random.default_rng([self._seed, index, 7]).choice(
            self._train_idx, size=self._count, replace=self._count > len(self._train_idx))

    def _position(self, epoch: int) -> tuple[int, int]:
        return scene_position(epoch, self._low_res_epochs, self._reuse)

    def _low_res_set(self, index: int) -> bool:
        return index < self._low_res_sets

    def _path(self, index: int) -> Path:
        return Path(self._folder.name) / f"set-{index}.u8"

    def _spec_for(self, index: int) -> InputSpec:
        return half_size(self._spec) if self._low_res_set(index) else self._spec

    def _scene_size(self, index: int) -> int:
        # Half-resolution sets are rendered at half size too: 4x cheaper, same scene recipe.
        return camera_scenes.SCENE_SIZE // 2 if self._low_res_set(index) else camera_scenes.SCENE_SIZE

    def _submit(self, index: int) -> None:
        import json
        import subprocess
        import sys

        if index in self._pending:
            return
        folder = Path(self._folder.name)
        garments = folder / "garments.npy"
        if not garments.exists():
            np.save(garments, self._garments)
        np.save(folder / f"chosen-{index}.npy", self._choice(index))
        # A plain child process: never fork a process running TensorFlow's threads, and avoid
        # multiprocessing's spawn, which re-imports the caller's __main__.
        self._pending[index] = subprocess.Popen(
            [sys.executable, "-m", "train.data", str(garments), str(folder / f"chosen-{index}.npy"), str(self._seed),
             str(index), json.dumps(self._spec_for(index).to_dict()), str(self._path(index)),
             str(self._scene_size(index))],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


_PARTIAL = ".partial"  # a scene set still being written; renamed to its final name when complete


def _render_set(garments: np.ndarray, chosen: np.ndarray, seed: int, scene_set: int, spec: InputSpec, path: str,
                scene_size: int = camera_scenes.SCENE_SIZE) -> None:
    shape = (len(chosen), spec.height, spec.width, spec.channels)
    tmp = path + _PARTIAL
    out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)
    renderer = camera_scenes.SceneRenderer(camera_scenes.SceneConfig(size=scene_size))
    for row, garment in enumerate(chosen):
        # Scene numbers are positions in the set, so repeated garments still get distinct scenes.
        frame = renderer.render(garments[garment], camera_scenes.scene_rng(seed, "train", scene_set, row))
        out[row] = to_model_image(frame, spec)
    out.flush()
    del out
    os.replace(tmp, path)


def _render_main(argv: list[str]) -> int:
    """Child-process entry: ``python -m train.data GARMENTS CHOSEN SEED SET SPEC_JSON OUT SCENE_SIZE``."""
    import json

    garments, chosen, seed, scene_set, spec_json, out, scene_size = argv
    _render_set(np.load(garments, mmap_mode="r"), np.load(chosen), int(seed), int(scene_set),
                  InputSpec.from_dict(json.loads(spec_json)), out, int(scene_size))
    return 0


def _folder_data(root: str, spec: InputSpec, batch_size: int, seed: int, val_fraction: float, augmentation: str,
                 train_limit: int | None, test_limit: int | None) -> TrainData:
    if folder.has_splits(root):
        train_set = folder.open_folder(root, "train")
        names = _enough_classes(root, train_set.class_names)
        x_train, y_train = train_set.load(spec)
        x_val, y_val = _optional_split(root, "val", names, spec)
        x_test, y_test = _optional_split(root, "test", names, spec)
        if x_val is None:
            x_train, y_train, x_val, y_val = _carve(x_train, y_train, val_fraction, seed)
        if x_test is None:
            log.warning("%s has no test/ split; reporting validation accuracy as test accuracy", root)
            x_test, y_test = x_val, y_val
    else:
        train_set = folder.open_folder(root)
        names = _enough_classes(root, train_set.class_names)
        images, labels = train_set.load(spec)
        x_train, y_train, x_test, y_test = _carve(images, labels, 0.2, seed + 1)
        x_train, y_train, x_val, y_val = _carve(x_train, y_train, val_fraction, seed)
    log.info("%s", train_set.summary())
    if train_limit:
        x_train, y_train = x_train[:train_limit], y_train[:train_limit]
    if test_limit:
        x_test, y_test = x_test[:test_limit], y_test[:test_limit]
    augmentation = "tutorial" if augmentation == "scenes" else augmentation
    return TrainData(
        class_names=names, input_spec=spec, train_count=len(x_train), batch_size=batch_size,
        make_batch=_array_batches(x_train, y_train, batch_size, seed, augmentation),
        val=(x_val, y_val), test=(x_test, y_test), samples=(x_train[:25], y_train[:25]),
        test_name=f"folder dataset {root} ({len(y_test)} test images)",
    )


def _array_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, augmentation: str,
                   max_shift: int = 2) -> BatchFn:
    def make_batch(epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.random.default_rng([seed, epoch]).permutation(len(images))
        chosen = order[index * batch_size:(index + 1) * batch_size]
        batch = images[chosen]
        rng = np.random.default_rng([seed, epoch, index, 1])
        if augmentation == "shift_flip":
            batch = augment.shift_flip(batch, rng, max_shift)
        elif augmentation == "tutorial":
            batch = augment.tutorial_affine(batch, rng)
        return batch, labels[chosen]

    return make_batch


def _to_spec(images: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Fashion-MNIST (N, 28, 28) -> the model's NHWC input, through the runtime's preprocessing."""
    if images.shape[1:3] == (spec.height, spec.width) and spec.channels == 1:
        return images[..., None]  # already what to_model_image would return; skip 60k calls
    from edge_runtime.preprocess import to_model_image

    return np.stack([to_model_image(image, spec) for image in images]) if len(images) else \
        np.empty((0, spec.height, spec.width, spec.channels), np.uint8)


def _optional_split(root: str, split: str, names: tuple[str, ...], spec: InputSpec):
    from pathlib import Path

    if not (Path(root) / split).is_dir():
        return None, None
    return folder.open_folder(root, split, class_names=names).load(spec)


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


if __name__ == "__main__":
    import sys

    raise SystemExit(_render_main(sys.argv[1:]))
