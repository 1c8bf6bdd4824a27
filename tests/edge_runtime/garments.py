"""Videos of real held-out garment photos for the multi-camera, clip, swap and service tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.helpers import ROOT

PHOTOS = ROOT / "data" / "clothing-small" / "test"
MODEL = ROOT / "runs" / "clothes_lite0" / "deploy" / "model_int8.tflite"
OTHER = ROOT / "runs" / "clothes_lite0" / "deploy" / "model_float32.tflite"  # another file of the same model


def frame_of(photo: Path) -> np.ndarray:
    """A held-out photo centred on a mid-grey 640x480 frame, the whole of it in view."""
    image = cv2.imread(str(photo))
    scale = min(480 / image.shape[0], 640 / image.shape[1])
    image = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 127, np.uint8)
    top, left = (480 - image.shape[0]) // 2, (640 - image.shape[1]) // 2
    canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
    return canvas


def photos(kind: str, count: int, skip: int = 0) -> list[Path]:
    return sorted((PHOTOS / kind).glob("*.jpg"))[skip : skip + count]


def write_video(path: Path, shots: list[tuple[Path, int]], fps: float = 10.0) -> Path:
    """An mp4 of each (photo, frames) in turn."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (640, 480))
    for photo, frames in shots:
        frame = frame_of(photo)
        for _ in range(frames):
            writer.write(frame)
    writer.release()
    return path
