"""Camera-like RGB scenes built from the real Fashion-MNIST garments.

There is no RGB garment photo set on these machines, yet the camera model must work on camera
frames. Each scene places one garment in a 128x128 frame the way a webcam would see it: random
size (40-100% of the frame), aspect (a 4:3 frame squashed to a square), position and tilt;
plain, gradient, textured or cluttered backgrounds of varied colour; both polarities (light
garment on dark, dark on light); uneven lighting, contrast, colour tint, blur, sensor noise and
JPEG artefacts.

Conditions: :func:`render_batch` can record what it drew for each scene (garment size, polarity,
background, tilt, blur, noise, JPEG quality, contrast), and :func:`accuracy_by_condition` turns
those records into accuracy per condition, so a report shows which camera conditions a model
fails on and that the test scenes really carry each variation.

Determinism: scene ``i`` of a split depends only on ``(seed, split, epoch, i)``, so the fixed
test scenes are identical on every machine and run, and training scenes can be generated in any
order or in parallel. Training scenes use only training garments and test scenes only test
garments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.contract import InputSpec
from edge_runtime.preprocess import to_model_image

SCENE_SIZE = 128
TEST_SEED = 20240917  # fixed: the camera test scenes every report and gate refers to
_SPLIT_IDS = {"train": 1, "val": 2, "test": 3}


@dataclass(frozen=True)
class SceneConfig:
    """Ranges of the variations; the defaults are what the shipped camera model is tested on."""

    size: int = SCENE_SIZE
    scale: tuple[float, float] = (0.4, 1.0)  # garment height as a fraction of the frame
    aspect: tuple[float, float] = (0.7, 1.15)  # width/height change; 0.75 is a 4:3 frame squashed square
    max_tilt_deg: float = 12.0
    dark_on_light: float = 0.5  # probability of a dark garment on a light background
    blur_prob: float = 0.5
    min_blur_sigma: float = 0.4
    max_blur_sigma: float = 1.6
    max_noise_sigma: float = 14.0
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (25, 90)
    contrast: tuple[float, float] = (0.65, 1.3)


class SceneRenderer:
    """Renders scenes for one :class:`SceneConfig`; holds the precomputed sensor-noise bank."""

    def __init__(self, config: SceneConfig = SceneConfig()) -> None:
        self.config = config
        # Drawing fresh Gaussian noise per scene costs more than the rest of the scene; crops of a
        # fixed bank at random offsets and signs are as good for training and deterministic.
        bank_rng = np.random.default_rng(0)
        self._noise = bank_rng.standard_normal((2 * config.size, 2 * config.size, 3), dtype=np.float32)

    def render(
        self, garment: np.ndarray, rng: np.random.Generator, conditions: dict[str, Any] | None = None
    ) -> np.ndarray:
        """One camera-like BGR uint8 frame (size x size x 3) containing one 28x28 garment.

        ``conditions``, when given, receives what was drawn for the scene (see :data:`CONDITIONS`);
        recording draws nothing extra, so the frame is the same either way.
        """
        return _render(garment, rng, self.config, self._noise, conditions)


def _render(
    garment: np.ndarray,
    rng: np.random.Generator,
    config: SceneConfig,
    noise_bank: np.ndarray,
    conditions: dict[str, Any] | None = None,
) -> np.ndarray:
    import cv2

    size = config.size
    light_garment = rng.random() >= config.dark_on_light
    background, background_kind = _background(rng, size, dark=light_garment)

    # Garment geometry: scale, aspect, tilt and position (it may touch the frame's edge).
    height = rng.uniform(*config.scale) * size
    width = height * rng.uniform(*config.aspect)
    tilt = rng.uniform(-config.max_tilt_deg, config.max_tilt_deg)
    cx = rng.uniform(width / 2 - 0.08 * size, size - width / 2 + 0.08 * size) if width < size else size / 2
    cy = rng.uniform(height / 2 - 0.08 * size, size - height / 2 + 0.08 * size) if height < size else size / 2
    matrix = np.asarray(cv2.getRotationMatrix2D((14.0, 14.0), tilt, 1.0), np.float64)
    matrix[0] *= width / 28.0
    matrix[1] *= height / 28.0
    matrix[:, 2] += (cx - 14.0 * width / 28.0, cy - 14.0 * height / 28.0)
    matte = cv2.warpAffine(
        garment.astype(np.float32) / 255.0,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )

    # Appearance: a coloured garment whose shading keeps the original texture.
    alpha = np.minimum(matte * np.float32(rng.uniform(1.6, 3.0)), 1.0)
    hue = rng.uniform(0.0, 1.0, 3).astype(np.float32)
    if light_garment:
        base = 150.0 + 105.0 * hue
        shade = 0.45 + 0.55 * matte
    else:
        base = 10.0 + 90.0 * hue
        shade = 1.25 - 0.55 * matte
    foreground = cv2.merge([shade * np.float32(b) for b in base])
    frame = cv2.blendLinear(foreground, background, alpha, 1.0 - alpha)

    # Lighting: a smooth illumination field (vignette or side light), contrast and colour tint,
    # folded into one per-channel gain and offset.
    illumination = _illumination(rng, size)
    contrast = np.float32(rng.uniform(*config.contrast))
    tint = rng.uniform(0.8, 1.2, 3).astype(np.float32)
    offset = np.float32(128.0 * (1.0 - contrast) + rng.uniform(-30.0, 30.0))
    frame = frame * cv2.merge([illumination * (contrast * t) for t in tint]) + offset * tint

    blur_sigma = 0.0
    if rng.random() < config.blur_prob:
        blur_sigma = rng.uniform(config.min_blur_sigma, config.max_blur_sigma)
        frame = cv2.GaussianBlur(frame, (0, 0), blur_sigma)
    noise_sigma = np.float32(rng.uniform(0.0, config.max_noise_sigma))
    if noise_sigma > 0.5:
        oy, ox = (int(v) for v in rng.integers(0, size, 2))
        frame += noise_bank[oy : oy + size, ox : ox + size] * (noise_sigma if rng.random() < 0.5 else -noise_sigma)
    image = np.clip(frame, 0, 255).astype(np.uint8)
    quality = None
    if rng.random() < config.jpeg_prob:
        quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            image = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    if conditions is not None:
        conditions.update(
            garment_size=height / size,
            polarity="light on dark" if light_garment else "dark on light",
            background=background_kind,
            tilt=abs(tilt),
            contrast=float(contrast),
            blur=float(blur_sigma),
            noise=float(noise_sigma) if noise_sigma > 0.5 else 0.0,
            jpeg=quality,
        )
    return image


def scene_rng(seed: int, split: str, epoch: int, index: int) -> np.random.Generator:
    """The generator for one scene; independent of batch order and worker count."""
    return np.random.default_rng([seed, _SPLIT_IDS[split], epoch, index])


def render_batch(
    garments: np.ndarray,
    indices: np.ndarray,
    *,
    seed: int,
    split: str,
    epoch: int,
    spec: InputSpec,
    renderer: SceneRenderer | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> np.ndarray:
    """Render the scenes for ``indices`` and pass each through the runtime's preprocessing.

    Args:
        garments: (N, 28, 28) uint8 Fashion-MNIST images of one split.
        indices: which garments (and scene numbers) to render.
        spec: the model input; frames go through :func:`edge_runtime.preprocess.to_model_image`
            exactly as live camera frames do.
        conditions: when given, one record per scene is appended to it (see :data:`CONDITIONS`).

    Returns:
        (len(indices), H, W, C) uint8 model images.
    """
    renderer = renderer or SceneRenderer()
    out = np.empty((len(indices), spec.height, spec.width, spec.channels), dtype=np.uint8)
    for row, index in enumerate(indices):
        record: dict[str, Any] | None = {} if conditions is not None else None
        frame = renderer.render(garments[index], scene_rng(seed, split, epoch, int(index)), record)
        out[row] = to_model_image(frame, spec)
        if conditions is not None and record is not None:
            conditions.append(record)
    return out


def test_scenes(
    garments: np.ndarray,
    labels: np.ndarray,
    spec: InputSpec,
    *,
    count: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The fixed camera test set: one scene per test garment (the first ``count`` of them)."""
    count = len(garments) if count is None else min(count, len(garments))
    images = render_batch(
        garments, np.arange(count), seed=TEST_SEED, split="test", epoch=0, spec=spec, conditions=conditions
    )
    return images, labels[:count]


def _bins(low: float, high: float, parts: int) -> list[float]:
    return [float(v) for v in np.linspace(low, high, parts + 1)]


def condition_bins(config: SceneConfig = SceneConfig()) -> dict[str, list[float] | None]:
    """Each recorded condition and its bin edges (``None``: a category). Edges follow the config's ranges."""
    return {
        "garment_size": _bins(*config.scale, 3),  # height as a fraction of the frame
        "polarity": None,
        "background": None,
        "tilt": _bins(0.0, config.max_tilt_deg, 2),  # degrees either way
        "contrast": _bins(*config.contrast, 3),
        "blur": _bins(config.min_blur_sigma, config.max_blur_sigma, 2),  # Gaussian sigma in pixels; 0: not blurred
        "noise": _bins(0.0, config.max_noise_sigma, 3),  # sensor noise sigma in grey levels
        "jpeg": _bins(config.jpeg_quality[0], config.jpeg_quality[1] + 1, 2),  # quality; None: not compressed
    }


CONDITIONS = tuple(condition_bins())


def _bucket(value: Any, edges: list[float] | None, name: str) -> str:
    if edges is None:
        return str(value)
    if value is None or (name == "blur" and value == 0.0):
        return "none"
    inner = int(np.searchsorted(edges[1:-1], value, side="right"))
    low, high = edges[inner], edges[inner + 1]
    if name == "jpeg":  # integer qualities: name the inclusive range
        return f"{int(np.ceil(low))}-{int(np.ceil(high)) - 1}"
    if name == "garment_size":
        return f"{low:.0%}-{high:.0%}"
    return f"{low:.3g}-{high:.3g}"


def accuracy_by_condition(
    conditions: list[dict[str, Any]], correct: np.ndarray, config: SceneConfig = SceneConfig()
) -> dict[str, dict[str, dict[str, float | int]]]:
    """Accuracy of the scenes in each bin of each condition.

    Args:
        conditions: one record per scene, as :func:`render_batch` writes them.
        correct: one boolean per scene: the model's top-1 class was right.

    Returns:
        ``{condition: {bin: {"scenes": n, "accuracy": a}}}``, bins in a stable order.
    """
    if len(conditions) != len(correct):
        raise ValueError(f"{len(conditions)} condition records for {len(correct)} predictions")
    correct = np.asarray(correct, dtype=bool)
    report: dict[str, dict[str, dict[str, float | int]]] = {}
    for name, edges in condition_bins(config).items():
        buckets = np.array([_bucket(record[name], edges, name) for record in conditions])
        report[name] = {
            str(bucket): {
                "scenes": int(np.sum(buckets == bucket)),
                "accuracy": round(float(np.mean(correct[buckets == bucket])), 4),
            }
            for bucket in sorted(set(buckets.tolist()), key=_bucket_order)
        }
    return report


def hardest(report: dict[str, dict[str, dict[str, float | int]]], count: int = 3) -> str:
    """The ``count`` bins with the lowest accuracy, as ``condition bin: accuracy`` for a log line."""
    bins = sorted(
        (cell["accuracy"], name, bucket) for name, buckets in report.items() for bucket, cell in buckets.items()
    )
    return ", ".join(f"{name} {bucket}: {accuracy:.1%}" for accuracy, name, bucket in bins[:count])


def _bucket_order(bucket: str) -> tuple[int, float, str]:
    """ "none" first, then numeric bins by their lower edge, then categories by name."""
    if bucket == "none":
        return (0, 0.0, bucket)
    head = bucket.split("-")[0].rstrip("%")
    try:
        return (1, float(head), bucket)
    except ValueError:
        return (2, 0.0, bucket)


_BACKGROUNDS = ("plain", "gradient", "texture", "clutter")


def _background(rng: np.random.Generator, size: int, *, dark: bool) -> tuple[np.ndarray, str]:
    """Plain, gradient, low-frequency texture or clutter; dark or light overall. Returns it and its kind."""
    import cv2

    low, high = (0.0, 110.0) if dark else (140.0, 255.0)
    kind = int(rng.integers(0, 4))
    colour = rng.uniform(low, high, 3).astype(np.float32)
    if kind == 0:  # plain wall
        background = np.broadcast_to(colour, (size, size, 3)).astype(np.float32)
    elif kind == 1:  # gradient between two colours
        other = rng.uniform(low, high, 3).astype(np.float32)
        ramp = _ramp(rng, size)
        background = cv2.merge([c0 + (c1 - c0) * ramp for c0, c1 in zip(colour, other)])
    elif kind == 2:  # fabric/wood-like texture: upsampled noise
        cells = int(rng.integers(3, 17))
        texture = rng.uniform(low, high, (cells, cells, 3)).astype(np.float32)
        background = np.asarray(cv2.resize(texture, (size, size), interpolation=cv2.INTER_LINEAR), np.float32)
    else:  # clutter: shapes and lines of other objects in the room
        background = np.ascontiguousarray(np.broadcast_to(colour, (size, size, 3)), dtype=np.float32)
        for _ in range(int(rng.integers(3, 12))):
            shade = tuple(float(v) for v in rng.uniform(0, 255, 3))
            x0, y0 = (int(v) for v in rng.integers(0, size, 2))
            extent = int(rng.integers(4, size // 3))
            shape = rng.integers(0, 3)
            if shape == 0:
                cv2.rectangle(background, (x0, y0), (x0 + extent, y0 + int(rng.integers(4, size // 3))), shade, -1)
            elif shape == 1:
                cv2.circle(background, (x0, y0), extent // 2, shade, -1)
            else:
                x1, y1 = (int(v) for v in rng.integers(0, size, 2))
                cv2.line(background, (x0, y0), (x1, y1), shade, int(rng.integers(1, 5)))
        # Clutter is kept within the background's brightness band so polarity still holds.
        background = low + (background - background.min()) * ((high - low) / max(float(np.ptp(background)), 1.0))
    return np.clip(background, 0, 255).astype(np.float32), _BACKGROUNDS[kind]


def background_scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """A scene with no garment (size x size, uint8): one of the backgrounds, unevenly lit, dark or light."""
    background, _ = _background(rng, size, dark=bool(rng.random() < 0.5))
    lit = background * _illumination(rng, size)[:, :, None]
    return np.clip(lit, 0, 255).astype(np.uint8)


def _ramp(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear 0..1 ramp across the frame in a random direction."""
    angle = rng.uniform(0, 2 * np.pi)
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    ramp = np.float32(np.cos(angle)) * axis[None, :] + np.float32(np.sin(angle)) * axis[:, None]
    return ramp * np.float32(0.5 / (abs(np.cos(angle)) + abs(np.sin(angle)))) + np.float32(0.5)


def _illumination(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth gain field: a vignette centred near the middle or light from one side."""
    gain = np.float32(rng.uniform(0.7, 1.25))
    if rng.random() < 0.5:
        axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        cx, cy = rng.uniform(-0.5, 0.5, 2).astype(np.float32)
        radius2 = (axis[None, :] - cx) ** 2 + (axis[:, None] - cy) ** 2
        return gain * (1.0 - np.float32(rng.uniform(0.0, 0.35)) * radius2)
    return gain * (1.0 + np.float32(rng.uniform(0.0, 0.35)) * (2.0 * _ramp(rng, size) - 1.0))
