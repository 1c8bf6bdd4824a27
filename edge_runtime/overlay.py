"""Drawing the prediction on a frame: label and score, FPS, optional top-k bars."""

from __future__ import annotations

import numpy as np

_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX, without importing cv2 at module load
_BOX = (32, 32, 32)  # the filled background behind every text (BGR)


def displayable(frame: np.ndarray) -> np.ndarray:
    """A writable 8-bit BGR version of a frame the classifier accepted (gray, BGRA, 16-bit...)."""
    import cv2

    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame if frame.flags.writeable and frame.flags.c_contiguous else np.ascontiguousarray(frame).copy()


def draw(
    frame: np.ndarray,
    top: tuple[tuple[str, float], ...],
    fps: float | None,
    *,
    answer: str | None = None,
    bars: bool = False,
) -> np.ndarray:
    """Annotate a frame and return it (in place when it already is writable 8-bit BGR).

    ``answer`` is the frame's answer as :func:`edge_runtime.classifier.frame_answer` worked it out
    (the caller's, computed once; default: the best label): ``unknown`` reads "none of these" and
    ``uncertain`` reads "uncertain", each with the best guess in brackets.
    """
    import cv2

    from .classifier import UNCERTAIN, UNKNOWN

    frame = displayable(frame)
    height, width = frame.shape[:2]
    scale = max(0.4, min(width, height) / 640.0)
    thickness = max(1, int(round(2 * scale)))
    label, score = top[0]
    answer = answer or label
    if answer == UNKNOWN:
        text, colour = f"none of these ({label}? {100 * score:.0f}%)", (200, 200, 200)
    elif answer == UNCERTAIN:
        text, colour = f"uncertain ({label} {100 * score:.0f}%)", (0, 200, 255)
    else:
        text, colour = f"{label} {100 * score:.0f}%", (40, 220, 40)
    _text(frame, text, (int(10 * scale), int(32 * scale)), 0.9 * scale, colour, thickness)
    if fps is not None:
        _text(frame, f"{fps:.1f} FPS", (int(10 * scale), int(62 * scale)), 0.6 * scale, (255, 255, 255), thickness)
    if bars:
        bar_w = int(160 * scale)
        row_h = int(22 * scale)
        x0 = width - bar_w - int(10 * scale)
        for i, (name, value) in enumerate(top):
            y = int(12 * scale) + i * row_h
            cv2.rectangle(frame, (x0, y), (x0 + bar_w, y + row_h - 4), (60, 60, 60), -1)
            cv2.rectangle(
                frame, (x0, y), (x0 + int(bar_w * max(0.0, min(1.0, value))), y + row_h - 4), (200, 120, 0), -1
            )
            _text(
                frame,
                f"{name[:14]} {100 * value:.0f}%",
                (x0 + 3, y + row_h - 9),
                0.45 * scale,
                (255, 255, 255),
                max(1, thickness - 1),
            )
    return frame


def _text(
    frame: np.ndarray, text: str, origin: tuple[int, int], size: float, colour: tuple[int, int, int], thickness: int
) -> None:
    """Text on a filled dark box, readable on any scene, bright ones included."""
    import cv2

    (w, h), baseline = cv2.getTextSize(text, _FONT, size, thickness)
    pad = max(2, int(round(4 * size)))
    x, y = origin
    top_left = (max(0, x - pad), max(0, y - h - pad))
    bottom_right = (min(frame.shape[1] - 1, x + w + pad), min(frame.shape[0] - 1, y + baseline + pad))
    cv2.rectangle(frame, top_left, bottom_right, _BOX, -1)
    cv2.putText(frame, text, origin, _FONT, size, colour, thickness, cv2.LINE_AA)
