"""Camera-scene training sets, rendered ahead in a child process while the current set trains.

Each set serves ``reuse`` consecutive epochs (reshuffled each time), so on a 2-core machine
rendering takes a fraction of the CPU instead of competing with every epoch. Scene i of set s
depends only on (seed, s, i), so the result is the same however and wherever it is rendered.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.errors import DatasetError
from edge_runtime.contract import InputSpec
from edge_runtime.preprocess import to_model_image

from .datasets import camera_scenes

_PARTIAL = ".partial"  # a scene set still being written; renamed to its final name when complete


def half_size(spec: InputSpec) -> InputSpec:
    """``spec`` at half its height and width: the input of the low-resolution epochs."""
    return replace(spec, height=spec.height // 2, width=spec.width // 2)


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


class EpochScenes:
    """Training scenes for every epoch, rendered ahead in a separate process.

    Rendering in the training process would fight TensorFlow for the GIL; a child process renders
    the next scene set into a memory-mapped file while the current one trains. Each set serves
    ``reuse`` consecutive epochs of one resolution phase (reshuffled each time), so on a
    2-core machine rendering takes a fraction of the CPU instead of competing with every epoch.
    Scene i of set s depends only on (seed, s, i), so the result is the same however and wherever
    it is rendered.
    """

    def __init__(
        self,
        garments: np.ndarray,
        train_idx: np.ndarray,
        count: int,
        seed: int,
        spec: InputSpec,
        low_res_epochs: int = 0,
        reuse: int = 1,
        epochs: int | None = None,
    ) -> None:
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
                    raise DatasetError(
                        f"rendering camera scenes for epoch {epoch} failed: "
                        f"{process.stderr.read().decode(errors='replace').strip()[-300:]}"
                    )
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
            self._train_idx, size=self._count, replace=self._count > len(self._train_idx)
        )

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
            [
                sys.executable,
                "-m",
                "train.scene_sets",
                str(garments),
                str(folder / f"chosen-{index}.npy"),
                str(self._seed),
                str(index),
                json.dumps(self._spec_for(index).to_dict()),
                str(self._path(index)),
                str(self._scene_size(index)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )


def _render_set(
    garments: np.ndarray,
    chosen: np.ndarray,
    seed: int,
    scene_set: int,
    spec: InputSpec,
    path: str,
    scene_size: int = camera_scenes.SCENE_SIZE,
) -> None:
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
    """Child-process entry: ``python -m train.scene_sets GARMENTS CHOSEN SEED SET SPEC_JSON OUT SCENE_SIZE``."""
    import json

    garments, chosen, seed, scene_set, spec_json, out, scene_size = argv
    _render_set(
        np.load(garments, mmap_mode="r"),
        np.load(chosen),
        int(seed),
        int(scene_set),
        InputSpec.from_dict(json.loads(spec_json)),
        out,
        int(scene_size),
    )
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_render_main(sys.argv[1:]))
