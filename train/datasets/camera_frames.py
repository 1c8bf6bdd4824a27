"""Camera frames built from real photos: a garment near or far in a room, or no garment at all.

A camera does not see the dataset's photos: it sees a garment somewhere in a 640x480 frame, often
small, under its own blur, noise and light, and most of the time no garment at all. This module
places a photo on a background the way a hand-held camera would frame it, under named
conditions (:data:`CONDITIONS`); :mod:`.camera_augment` draws the same placements and faults at
random for training. Frames are BGR uint8 like a camera's; evaluation passes them
through the runtime's own preprocessing (:func:`edge_runtime.preprocess.to_model_image`).

Backgrounds: the repository carries no photos of rooms, so the project's measurements and
training use procedural scenes (walls, gradients, textures, clutter; :func:`procedural_background`)
and, for training, blurred crops of other training photos. A folder of your own photos can be
passed instead (``--backgrounds DIR``) for an evaluation closer to your room.

Determinism: frame ``i`` of a condition depends only on ``(seed, condition, i)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from edge_common.errors import DatasetError
from edge_runtime.contract import InputSpec
from edge_runtime.preprocess import to_model_image
from edge_runtime.unknown import is_unknown

FRAME_SIZE = (480, 640)  # (height, width) of a VGA webcam frame
CONDITION_SEED = 20261203  # fixed: the camera conditions every report refers to
# Tungsten light (about 2800 K) on a camera white-balanced for daylight: gains on B, G, R.
_TUNGSTEN = np.array([0.62, 0.86, 1.12], np.float32)


@dataclass(frozen=True)
class Condition:
    """One way a camera sees a garment (or, with ``garment=False``, sees none)."""

    name: str
    description: str
    height: float = 1.0  # the photo's height as a share of the frame's height
    aim: float = 0.0  # hand-aim: the photo's centre within this share of the frame's size of its centre
    centre_x: tuple[float, ...] = (0.5,)  # where the photo's centre sits across the frame (one is drawn)
    fault: str | None = None  # a webcam fault applied to the whole frame (see _FAULTS)
    garment: bool = True


CONDITIONS: tuple[Condition, ...] = (
    Condition("near", "the photo fills the frame's height, centred"),
    Condition("mid", "60% of the frame's height, aimed by hand (centre within 10%)", 0.6, 0.1),
    Condition("far", "40% of the frame's height, aimed by hand (centre within 10%)", 0.4, 0.1),
    Condition("off_centre", "full height, its centre at 30% or 70% of the width", centre_x=(0.3, 0.7)),
    Condition("motion_blur", "full height, a 9-pixel horizontal motion blur", fault="motion_blur"),
    Condition("noise", "full height, sensor noise of sigma 12", fault="noise"),
    Condition("jpeg", "full height, JPEG quality 30", fault="jpeg"),
    Condition("dim", "full height, light at 35% with sensor noise", fault="dim"),
    Condition("tungsten", "full height, a tungsten colour cast", fault="tungsten"),
    Condition("background", "no garment: the background alone", garment=False),
)
GARMENT_CONDITIONS = tuple(c.name for c in CONDITIONS if c.garment)


def condition(name: str) -> Condition:
    for item in CONDITIONS:
        if item.name == name:
            return item
    raise KeyError(name)


# -- placing a photo ------------------------------------------------------------------------------


def compose(photo: np.ndarray, background: np.ndarray, *, height: float, centre: tuple[float, float]) -> np.ndarray:
    """``photo`` pasted onto ``background`` (same channel order), its height ``height`` of the frame's
    and its centre at ``centre`` (x, y as shares of the frame); parts outside the frame are cut."""
    import cv2

    frame = background.copy()
    frame_h, frame_w = frame.shape[:2]
    photo_h = max(2, int(round(height * frame_h)))
    photo_w = max(2, int(round(photo.shape[1] * photo_h / photo.shape[0])))
    shrink = photo_h < photo.shape[0]
    scaled = cv2.resize(photo, (photo_w, photo_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    left = int(round(centre[0] * frame_w - photo_w / 2))
    top = int(round(centre[1] * frame_h - photo_h / 2))
    x0, y0 = max(0, left), max(0, top)
    x1, y1 = min(frame_w, left + photo_w), min(frame_h, top + photo_h)
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = scaled[y0 - top : y1 - top, x0 - left : x1 - left]
    return frame


def cover(image: np.ndarray, size: tuple[int, int], rng: np.random.Generator | None = None) -> np.ndarray:
    """``image`` scaled to cover ``size`` (height, width) and cropped to it (a random crop with ``rng``)."""
    import cv2

    height, width = size
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    new_w, new_h = max(width, int(np.ceil(w * scale))), max(height, int(np.ceil(h * scale)))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    dy = int(rng.integers(0, new_h - height + 1)) if rng is not None else (new_h - height) // 2
    dx = int(rng.integers(0, new_w - width + 1)) if rng is not None else (new_w - width) // 2
    return np.ascontiguousarray(resized[dy : dy + height, dx : dx + width])


def procedural_background(rng: np.random.Generator, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A room-like scene without a garment: a wall, a gradient, a texture or clutter, lit unevenly."""
    from .camera_scenes import background_scene

    height, width = size
    scene = background_scene(rng, max(height, width))
    top, left = (max(height, width) - height) // 2, (max(height, width) - width) // 2
    return np.ascontiguousarray(scene[top : top + height, left : left + width])


# -- webcam faults --------------------------------------------------------------------------------


def motion_blur(frame: np.ndarray, length: int = 9, angle: float = 0.0) -> np.ndarray:
    import cv2

    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    if angle:
        rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
        kernel = np.asarray(cv2.warpAffine(kernel, rotation, (length, length)), np.float32)
        kernel /= max(float(kernel.sum()), 1e-6)
    return cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REPLICATE)


def add_noise(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = frame.astype(np.float32) + rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
    return np.asarray(decoded) if decoded is not None else frame


def gains(frame: np.ndarray, per_channel: np.ndarray) -> np.ndarray:
    """Exposure and white balance: each channel multiplied by its gain (channel order of ``frame``)."""
    scaled = frame.astype(np.float32) * per_channel.astype(np.float32)[None, None, :]
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _fault(frame: np.ndarray, fault: str | None, rng: np.random.Generator) -> np.ndarray:
    if fault is None:
        return frame
    if fault == "motion_blur":
        return motion_blur(frame, 9)
    if fault == "noise":
        return add_noise(frame, 12.0, rng)
    if fault == "jpeg":
        return jpeg(frame, 30)
    if fault == "dim":
        return add_noise(gains(frame, np.full(3, 0.35, np.float32)), 6.0, rng)
    if fault == "tungsten":
        return gains(frame, _TUNGSTEN)
    raise ValueError(f"unknown fault {fault!r}")


# -- the named conditions -------------------------------------------------------------------------


def frame_rng(seed: int, name: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, CONDITIONS.index(condition(name)), index])


def condition_frame(
    photo: np.ndarray | None, background: np.ndarray, cond: Condition, rng: np.random.Generator
) -> np.ndarray:
    """One frame of ``cond``: ``photo`` (BGR) placed on ``background`` (BGR, frame-sized), then its fault."""
    frame = background
    if cond.garment and photo is not None:
        cx = float(cond.centre_x[int(rng.integers(0, len(cond.centre_x)))])
        jitter = rng.uniform(-cond.aim, cond.aim, 2) if cond.aim else np.zeros(2)
        frame = compose(photo, background, height=cond.height, centre=(cx + jitter[0], 0.5 + jitter[1]))
    return _fault(frame, cond.fault, rng)


@dataclass
class Backgrounds:
    """Where backgrounds come from: procedural scenes, or a folder of photos (BGR)."""

    photos: Sequence[np.ndarray] = ()
    source: str = "procedural scenes"

    def draw(self, rng: np.random.Generator, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
        if self.photos:
            return cover(self.photos[int(rng.integers(0, len(self.photos)))], size, rng)
        return procedural_background(rng, size)

    @classmethod
    def from_folder(cls, root: str | Path, *, limit: int = 1000, max_side: int = 640) -> "Backgrounds":
        """Every decodable image under ``root`` (any depth), shorter side at most ``max_side``.

        Raises:
            DatasetError: the folder is missing or holds no decodable image.
        """
        import cv2

        from edge_runtime.images import IMAGE_SUFFIXES, images_in

        from .folder import read_image

        base = Path(root).expanduser()
        if not base.is_dir():
            raise DatasetError(f"--backgrounds {root}: no such folder; pass a folder of photos (any depth)")
        files = images_in(base)[:limit]
        photos = []
        for path in files:
            image = read_image(path)[0]
            if image is None:
                continue
            h, w = image.shape[:2]
            if min(h, w) > max_side:
                scale = max_side / min(h, w)
                image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            photos.append(image)
        if not photos:
            raise DatasetError(
                f"--backgrounds {root}: no decodable image among {len(files)} file(s) "
                f"({', '.join(IMAGE_SUFFIXES)}); pass a folder of photos"
            )
        return cls(photos, f"{len(photos)} photos from {base}")


def iter_condition_frames(
    photos: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    backgrounds: Backgrounds | None = None,
    names: Sequence[str] | None = None,
    seed: int = CONDITION_SEED,
    frame_size: tuple[int, int] = FRAME_SIZE,
) -> Iterator[tuple[str, np.ndarray, int]]:
    """Every photo under every condition in ``names`` (default: all), as (condition, BGR frame, label).

    ``background`` frames come one per photo (label -1: no garment), on the same backgrounds.
    """
    backgrounds = backgrounds or Backgrounds()
    for name in names or [c.name for c in CONDITIONS]:
        cond = condition(name)
        for index, (photo, label) in enumerate(zip(photos, labels)):
            rng = frame_rng(seed, name, index)
            background = backgrounds.draw(np.random.default_rng([seed, 99, index]), frame_size)
            yield name, condition_frame(photo, background, cond, rng), int(label) if cond.garment else -1


def video_frames(
    photos: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    empty_every: int = 3,
    backgrounds: Backgrounds | None = None,
    seed: int = CONDITION_SEED + 2,
) -> tuple[list[np.ndarray], np.ndarray]:
    """A camera's view for a video: photo ``i`` under garment condition ``i`` mod 9 (near, mid, far, ...),
    and an empty scene after every ``empty_every`` garments. Labels are -1 for empty frames."""
    backgrounds = backgrounds or Backgrounds()
    frames: list[np.ndarray] = []
    kept: list[int] = []
    for index, (photo, label) in enumerate(zip(photos, labels)):
        cond = condition(GARMENT_CONDITIONS[index % len(GARMENT_CONDITIONS)])
        rng = np.random.default_rng([seed, index])
        frames.append(condition_frame(photo, backgrounds.draw(rng), cond, rng))
        kept.append(int(label))
        if (index + 1) % empty_every == 0:
            frames.append(condition_frame(None, backgrounds.draw(rng), condition("background"), rng))
            kept.append(-1)
    return frames, np.asarray(kept, np.int64)


def condition_inputs(
    photos: Sequence[np.ndarray],
    labels: np.ndarray,
    spec: InputSpec,
    *,
    backgrounds: Backgrounds | None = None,
    names: Sequence[str] | None = None,
    seed: int = CONDITION_SEED,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Model inputs per condition (the runtime's preprocessing of each frame): name -> (images, labels)."""
    out: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    for name, frame, label in iter_condition_frames(photos, labels, backgrounds=backgrounds, names=names, seed=seed):
        images, kept = out.setdefault(name, ([], []))
        images.append(to_model_image(frame, spec))
        kept.append(label)
    return {name: (np.stack(images), np.asarray(kept, np.int64)) for name, (images, kept) in out.items()}


def condition_report(
    predicted: dict[str, np.ndarray], labels: dict[str, np.ndarray], unknown: dict[str, np.ndarray] | None = None
) -> dict[str, dict[str, float | int]]:
    """Per condition: accuracy of the label (garment frames), the share said unknown, and for
    ``background`` the share given a label (wrongly: there is no garment)."""
    report: dict[str, dict[str, float | int]] = {}
    for name, truth in labels.items():
        said_unknown = unknown[name] if unknown is not None else np.zeros(len(truth), bool)
        row: dict[str, float | int] = {"frames": int(len(truth))}
        if condition(name).garment:
            correct = predicted[name] == truth
            row["accuracy"] = float(np.mean(correct))
            row["accepted_correct"] = float(np.mean(correct & ~said_unknown))
        row["unknown"] = float(np.mean(said_unknown))
        report[name] = row
    garment = [report[n] for n in report if "accuracy" in report[n]]
    if garment:
        report["mean"] = {
            "accuracy": float(np.mean([row["accuracy"] for row in garment])),
            "accepted_correct": float(np.mean([row["accepted_correct"] for row in garment])),
            "unknown": float(np.mean([row["unknown"] for row in garment])),
            "conditions": len(garment),
        }
    return report


PredictFn = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray | None]"]


def as_bgr(photos: Sequence[np.ndarray], color_order: str) -> list[np.ndarray]:
    """Photos in a model's colour order as the BGR a camera hands over."""
    return [np.ascontiguousarray(p[:, :, ::-1]) for p in photos] if color_order == "RGB" else list(photos)


def measure(
    predict: PredictFn,
    photos_bgr: Sequence[np.ndarray],
    labels: np.ndarray,
    spec: InputSpec,
    *,
    threshold: float | None = None,
    backgrounds: Backgrounds | None = None,
    seed: int = CONDITION_SEED,
) -> dict[str, dict[str, float | int]]:
    """Accuracy under every condition, the share said unknown, and the share of empty frames given a label.

    ``predict`` maps model inputs to (probabilities, out-of-class scores or None); a frame is unknown
    when its score is above ``threshold``.
    """
    inputs = condition_inputs(photos_bgr, labels, spec, backgrounds=backgrounds, seed=seed)
    predicted: dict[str, np.ndarray] = {}
    truth: dict[str, np.ndarray] = {}
    unknown: dict[str, np.ndarray] = {}
    for name, (images, kept) in inputs.items():
        probabilities, scores = predict(images)
        predicted[name], truth[name] = np.argmax(probabilities, axis=1), kept
        unknown[name] = (
            np.asarray(is_unknown(scores, threshold))
            if scores is not None and threshold is not None
            else np.zeros(len(kept), bool)
        )
    report = condition_report(predicted, truth, unknown)
    report["background"]["labelled"] = 1.0 - report["background"]["unknown"]
    return report


def in_class_frames(
    photos_bgr: Sequence[np.ndarray], labels: np.ndarray, spec: InputSpec, *, seed: int = CONDITION_SEED + 1
) -> np.ndarray:
    """Model inputs of ``photos_bgr`` under every garment condition (for calibrating a threshold)."""
    inputs = condition_inputs(photos_bgr, labels, spec, names=GARMENT_CONDITIONS, seed=seed)
    return np.concatenate([images for images, _ in inputs.values()])


def summary(report: dict[str, dict[str, float | int]]) -> str:
    """One line: accuracy per condition, then the share of empty frames given a label."""
    parts = [f"{name} {row['accuracy']:.1%}" for name, row in report.items() if "accuracy" in row and name != "mean"]
    line = f"mean {report['mean']['accuracy']:.1%}: " + ", ".join(parts) if "mean" in report else ", ".join(parts)
    if "background" in report:
        line += f"; empty frames labelled {report['background'].get('labelled', 1.0):.1%}"
    return line
