"""The ``camera`` augmentation: training photos framed as a hand-held webcam frames them.

Half of each batch (``CameraAugment.share``) is a camera frame: the photo placed near or far on a
background, then webcam faults; the rest are the plain ``photo`` augmentation's crops, so accuracy
on plain photos holds. The placements and faults are those of :mod:`.camera_frames`, drawn at random.

Backgrounds: procedural rooms, another photo out of focus, a blurred mosaic, or clutter: other
training photos (real scenes of floors, beds and hangers) at random scales and unblurred, behind and
around the garment, each smaller than it so the garment stays the thing the label names. The
repository has no photos of rooms; clutter is what teaches a far garment among real objects.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from edge_runtime.contract import InputSpec
from edge_runtime.preprocess import to_model_image

from .camera_frames import add_noise, compose, cover, gains, jpeg, motion_blur, procedural_background


@dataclass(frozen=True)
class CameraAugment:
    """Ranges of the ``camera`` augmentation: placements and faults a hand-held webcam produces."""

    share: float = 0.5  # the share of a batch framed like this; the rest are plain photo crops
    height: tuple[float, float] = (0.3, 1.0)  # the photo's height as a share of the frame's, log-uniform
    aim: float = 0.12  # hand-aim jitter of the centre, as a share of the frame
    off_centre: float = 0.3  # probability the photo's centre sits anywhere across the frame instead
    photo_background: float = 0.5  # probability the background is another photo, blurred; else procedural
    clutter: float = 0.5  # probability other photos are pasted around the garment, unblurred
    clutter_count: tuple[int, int] = (2, 7)  # how many, at most
    clutter_height: tuple[float, float] = (0.3, 0.8)  # each one's height as a share of the garment's
    clutter_crop: tuple[float, float] = (0.3, 0.7)  # a crop of this share of its photo: a part, not a garment
    frame_size: tuple[int, int] = (168, 224)  # rendered this small: the model sees 128x128 of it anyway


UNCLUTTERED = CameraAugment(clutter=0.0)  # the out-of-class prototypes' frames: a garment, not a room of them


def camera_frame(
    photo: np.ndarray,
    background: np.ndarray,
    rng: np.random.Generator,
    config: CameraAugment = CameraAugment(),
    clutter: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """One random camera frame of ``photo`` on ``background`` (both the same channel order, background
    frame-sized), among ``clutter`` (other photos, see :func:`add_clutter`): placed, then blurred,
    noisy, compressed, exposed and white-balanced at random."""
    height = float(np.exp(rng.uniform(np.log(config.height[0]), np.log(config.height[1]))))
    if rng.random() < config.off_centre:
        cx = rng.uniform(0.25, 0.75)
    else:
        cx = 0.5 + rng.uniform(-config.aim, config.aim)
    cy = 0.5 + rng.uniform(-config.aim, config.aim)
    if clutter:
        background = add_clutter(background, clutter, height, rng, config)
    frame = compose(photo if rng.random() < 0.5 else photo[:, ::-1], background, height=height, centre=(cx, cy))
    return webcam_faults(frame, rng)


def add_clutter(
    background: np.ndarray,
    others: Sequence[np.ndarray],
    garment_height: float,
    rng: np.random.Generator,
    config: CameraAugment = CameraAugment(),
) -> np.ndarray:
    """Parts of ``others`` (random crops: folds, floors, beds, never a whole garment that could be named)
    pasted anywhere on ``background``, unblurred, each a random share of the garment's height."""
    frame = background
    for other in others:
        h, w = other.shape[:2]
        share = rng.uniform(*config.clutter_crop, 2)
        ch, cw = max(2, int(h * share[0])), max(2, int(w * share[1]))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        piece = other[top : top + ch, left : left + cw]
        height = garment_height * rng.uniform(*config.clutter_height)
        frame = compose(piece, frame, height=height, centre=(float(rng.uniform(0, 1)), float(rng.uniform(0, 1))))
    return frame


def webcam_faults(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each fault with its own probability: motion or focus blur, exposure, white balance, noise, JPEG."""
    import cv2

    if rng.random() < 0.3:
        if rng.random() < 0.5:
            frame = motion_blur(frame, int(rng.integers(3, 8)), float(rng.uniform(0, 180)))
        else:
            frame = cv2.GaussianBlur(frame, (0, 0), float(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.5:
        exposure = np.float32(np.exp(rng.uniform(np.log(0.3), np.log(1.4))))
        balance = rng.uniform(0.75, 1.2, 3).astype(np.float32)
        frame = gains(frame, exposure * balance / balance.mean())
    if rng.random() < 0.4:
        frame = add_noise(frame, float(rng.uniform(2.0, 14.0)), rng)
    if rng.random() < 0.3:
        frame = jpeg(frame, int(rng.integers(25, 90)))
    return frame


def blurred_crop(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Another photo as a background: a random crop covering the frame, zoomed in up to 2x; half the
    time out of focus, half the time sharp (a real scene behind the garment)."""
    import cv2

    zoom = float(rng.uniform(1.0, 2.0))
    zoomed = cover(photo, (int(size[0] * zoom), int(size[1] * zoom)), rng)
    top = int(rng.integers(0, zoomed.shape[0] - size[0] + 1))
    left = int(rng.integers(0, zoomed.shape[1] - size[1] + 1))
    background = np.ascontiguousarray(zoomed[top : top + size[0], left : left + size[1]])
    if rng.random() < 0.5:
        return background
    return cv2.GaussianBlur(background, (0, 0), float(rng.uniform(1.5, 5.0)))


def mosaic(others: Sequence[np.ndarray], size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Four photos in a 2x2 grid covering the frame, slightly out of focus: clutter with real texture."""
    import cv2

    height, width = size
    half_h, half_w = height // 2, width // 2
    tiles = [cover(photo, (half_h, half_w), rng) for photo in others[:4]]
    grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:4])])
    grid = cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(grid, (0, 0), float(rng.uniform(0.5, 2.0)))


def camera_batch(
    photos: Sequence[np.ndarray],
    chosen: np.ndarray,
    spec: InputSpec,
    rng: np.random.Generator,
    config: CameraAugment = CameraAugment(),
) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs for ``photos[chosen]`` framed by a camera; returns (images, which rows were framed).

    Photos are in the model's colour order already, so the frame is fitted without a colour change.
    """
    from ..augment import photo_batch  # lazily: augment is the registry of augmentations

    size = (spec.height, spec.width)
    passthrough = replace(spec, color_order="BGR") if spec.channels == 3 else spec
    framed = rng.random(len(chosen)) < config.share
    out = photo_batch([photos[i] for i in chosen], size, rng)
    for row in np.flatnonzero(framed):
        pick = rng.random()
        if pick < config.photo_background / 2:
            other = photos[int(rng.integers(0, len(photos)))]
            background = blurred_crop(other, config.frame_size, rng)
        elif pick < config.photo_background:  # a room full of things: four other photos, barely blurred
            background = mosaic([photos[int(i)] for i in rng.integers(0, len(photos), 4)], config.frame_size, rng)
        else:
            background = procedural_background(rng, config.frame_size)
        clutter: list[np.ndarray] = []
        if rng.random() < config.clutter:
            count = int(rng.integers(config.clutter_count[0], config.clutter_count[1] + 1))
            clutter = [photos[int(i)] for i in rng.integers(0, len(photos), count)]
        frame = camera_frame(photos[chosen[row]], background, rng, config, clutter)
        out[row] = to_model_image(frame, passthrough)
    return out, framed
