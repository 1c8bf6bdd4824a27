"""Augmentation in the input pipeline (never inside a model graph) and the robustness warps.

All functions are pure numpy/OpenCV on uint8 NHWC batches and take an explicit generator, so a
resumed run replays exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import numpy as np

AUGMENTATIONS = ("none", "shift_flip", "tutorial", "scenes")


def shift_flip(images: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Random horizontal flip and a translation of up to ``max_shift`` pixels (zero fill)."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    dy = rng.integers(0, 2 * max_shift + 1, n)
    dx = rng.integers(0, 2 * max_shift + 1, n)
    flip = rng.random(n) < 0.5
    out = np.empty_like(images)
    for i in range(n):
        crop = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop[:, ::-1] if flip[i] else crop
    return out


def tutorial_affine(images: np.ndarray, rng: np.random.Generator, *, rotation: float = 40.0, shift: float = 0.2,
                    shear: float = 0.2, zoom: float = 0.2, flip: bool = True) -> np.ndarray:
    """The tutorials' ImageDataGenerator recipe: rotation 40, shifts 0.2, shear 0.2, zoom 0.2, flip."""
    import cv2

    n, h, w, c = images.shape
    out = np.empty_like(images)
    for i in range(n):
        angle = np.deg2rad(rng.uniform(-rotation, rotation))
        scale = rng.uniform(1.0 - zoom, 1.0 + zoom)
        sh = rng.uniform(-shear, shear)
        tx, ty = rng.uniform(-shift, shift) * w, rng.uniform(-shift, shift) * h
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        linear = np.array([[cos, -sin + sh * cos], [sin, cos + sh * sin]], dtype=np.float64)
        if flip and rng.random() < 0.5:
            linear[:, 0] *= -1
        centre = np.array([w / 2.0, h / 2.0])
        matrix = np.hstack([linear, (centre - linear @ centre + (tx, ty))[:, None]])
        warped = cv2.warpAffine(images[i], matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        out[i] = warped.reshape(h, w, c)
    return out


def rotate_shift(images: np.ndarray, angle_deg: float, shift_xy: tuple[float, float], *,
                 replicate_border: bool = False) -> np.ndarray:
    """The tutorials' robustness test: ``getRotationMatrix2D`` + ``warpAffine`` on every image.

    Fashion-MNIST fills with black like the tutorials; camera scenes replicate their border so
    the warp does not add a black frame no camera would produce.
    """
    import cv2

    border = cv2.BORDER_REPLICATE if replicate_border else cv2.BORDER_CONSTANT
    n, h, w, c = images.shape
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle_deg, 1.0)
    matrix[:, 2] += shift_xy
    out = np.empty_like(images)
    for i in range(n):
        out[i] = cv2.warpAffine(images[i], matrix, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=border, borderValue=0).reshape(h, w, c)
    return out
