"""Where a teach run's examples come from: a folder of photos per class, or a camera held up to things."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import EdgeError, SourceError
from ..features import FeatureExtractor
from ..images import DEFAULT_MAX_PIXELS, images_in, read_image
from .taught import Examples

__all__ = ["Examples", "from_folder", "from_source", "progress_line"]
log = logging.getLogger("edge_classify.runtime")


def progress_line(done: int, total: int) -> None:
    """``features 120/200`` on stderr: rewritten in place on a terminal, else a line at every quarter."""
    if sys.stderr.isatty():
        print(f"\rfeatures {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
    elif done == total or done % max(1, total // 4) == 0:
        print(f"features {done}/{total}", file=sys.stderr, flush=True)


def _views(frame: np.ndarray, flip: bool) -> list[np.ndarray]:
    if not flip:
        return [frame]
    return [frame, np.ascontiguousarray(frame[:, ::-1])]


def from_folder(
    folder: str | Path,
    extractor: FeatureExtractor,
    *,
    flip: bool = True,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Examples:
    """``folder/<class>/*`` images as examples, classes in name order.

    Raises:
        EdgeError: no such folder, no class folders, or a class with no decodable image.
    """
    root = Path(folder).expanduser()
    if root.is_file():
        raise EdgeError(
            f"--examples {folder}: is a file; pass a folder with one folder of photos per class (DIR/<class>/*.jpg)"
        )
    if not root.is_dir():
        raise EdgeError(f"--examples {folder}: no such folder; pass DIR with one folder of photos per class")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise EdgeError(f"--examples {folder}: no class folders; put each class's photos in DIR/<class>/")
    files = {c.name: images_in(c) for c in classes}
    total = sum(len(v) for v in files.values())
    examples = Examples.empty(extractor.dim)
    done = skipped = 0
    for name, paths in files.items():
        rows: list[np.ndarray] = []
        groups: list[int] = []
        for index, path in enumerate(paths):
            frame, why, _ = read_image(path, max_pixels)
            done += 1
            if progress is not None:
                progress(done, total)
            if frame is None:
                skipped += 1
                log.warning("skipping %s: %s", path, why)
                continue
            for view in _views(frame, flip):
                rows.append(extractor.features_of_frame(view))
                groups.append(index)
        if not rows:
            raise EdgeError(
                f"--examples {folder}: class {name!r} has no decodable image ({len(paths)} files); add "
                "photos (.jpg, .png, ...) or remove the folder"
            )
        examples.add_class(name, rows, groups, len(set(groups)))
    if skipped:
        log.warning("skipped %d of %d photos that could not be used (named above)", skipped, total)
    return examples


def from_source(
    source: str,
    classes: Sequence[str],
    extractor: FeatureExtractor,
    *,
    shots: int,
    interval: float,
    countdown: float,
    flip: bool = True,
) -> Examples:
    """Capture ``shots`` frames of each class in turn from a camera or video.

    For each class the terminal says what to show, counts down ``countdown`` seconds, then takes a
    frame every ``interval`` seconds. A video file is timed by its own clock (frame count / FPS),
    so a recorded session teaches the same as it did live.

    Raises:
        EdgeError: repeated class names, or the source ending before every class has its frames.
    """
    from ..sources import open_source

    if len(set(classes)) != len(classes):
        raise EdgeError("--class names must differ")
    capture = open_source(source)
    if capture.paths:
        capture.close()
        raise EdgeError(f"--source {source}: is a set of images; teach from photos with --examples DIR/<class>/")
    video_fps = capture.nominal_fps if not capture.is_live else None
    clock = _Clock(video_fps)
    examples = Examples.empty(extractor.dim)
    try:
        for name in classes:
            print(f"show {name!r}: capturing {shots} frames in {countdown:g} s", file=sys.stderr, flush=True)
            ready = clock.now() + countdown
            said = int(np.ceil(countdown))
            rows: list[np.ndarray] = []
            groups: list[int] = []
            next_shot, taken = ready, 0
            while taken < shots:
                ok, frame = capture.read()
                if not ok:
                    raise SourceError(
                        f"--source {source} ended after {taken} of {shots} frames of {name!r}; use a "
                        "longer video or fewer --shots"
                    )
                clock.tick()
                left = int(np.ceil(ready - clock.now()))
                if 0 < left < said:  # the countdown, a line a second (source time)
                    said = left
                    print(f"  {left}...", file=sys.stderr, flush=True)
                if frame is None or clock.now() < next_shot:
                    continue
                for view in _views(frame, flip):
                    rows.append(extractor.features_of_frame(view))
                    groups.append(taken)
                taken += 1
                next_shot = clock.now() + interval
            examples.add_class(name, rows, groups, shots)
            print(f"{name!r}: {shots} frames", file=sys.stderr, flush=True)
    finally:
        capture.close()
    return examples


class _Clock:
    """Seconds since capture began: the wall clock for live sources, the video's own for files."""

    def __init__(self, video_fps: float | None) -> None:
        self.fps = video_fps
        self.frames = 0
        self.start = time.monotonic()

    def tick(self) -> None:
        self.frames += 1

    def now(self) -> float:
        if self.fps:
            return self.frames / self.fps
        return time.monotonic() - self.start
