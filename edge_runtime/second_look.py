"""A second look where the first is unsure: the frame's central regions, each at the model's input size.

A garment far from the camera is a small part of a 128x128 view of the whole frame. When a frame's
answer is unsure (its best score below ``unsure``) or "none of these", the runtime classifies a few
zoomed regions of the full-resolution frame (:class:`Zoom`: a share of the frame, same aspect, at a
centre) and answers from the best look by one rule:

- files with an out-of-class score: the zoom with the lowest score answers, if that score is also
  at most ``accept`` times the file's threshold (clearly one of the classes, not just under the
  line); otherwise the first look stands. A zoom of an empty room that happens to look a little
  like a garment changes nothing;
- files without one: the look with the highest best score.

Sure frames cost nothing extra. The settings were measured, not guessed, on clothes_lite0 int8
with 170 held-out photos on real photographs (``python -m benchmarks.camera --backgrounds DIR``;
docs/benchmarks.md has the table): the centre at 70% and 50% of the frame lift far garments most;
70% zooms left and right of the centre lift off-centre ones; ``accept`` 0.9 gives up about two points
of far garments for a quarter fewer empty rooms given a label. The settings travel in the file's
contract (``second_look``), written by ``python -m convert`` for models trained for a camera;
``--second-look on|off`` overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import MetadataError

FIRST = "first"  # the name of the whole-frame look in JSONL, /state.json and Prediction.look


@dataclass(frozen=True)
class Zoom:
    """A region of the frame: ``scale`` of its height and width, centred at (``x``, ``y``) (shares of
    the frame), moved inside the frame where it would cross an edge."""

    scale: float
    x: float = 0.5
    y: float = 0.5

    @property
    def name(self) -> str:
        where = "centre" if (self.x, self.y) == (0.5, 0.5) else f"at {self.x:.2f},{self.y:.2f}"
        return f"zoom {round(100 * self.scale)}% {where}"

    def region(self, frame: np.ndarray) -> np.ndarray:
        """The zoomed part of ``frame`` (a view, no copy)."""
        height, width = frame.shape[:2]
        h, w = max(1, round(height * self.scale)), max(1, round(width * self.scale))
        top = min(max(0, round(self.y * height - h / 2)), height - h)
        left = min(max(0, round(self.x * width - w / 2)), width - w)
        return frame[top : top + h, left : left + w]


@dataclass(frozen=True)
class SecondLook:
    """When to look again and where; see the module docstring for the rule."""

    zooms: tuple[Zoom, ...] = (Zoom(0.7), Zoom(0.5), Zoom(0.7, 0.35), Zoom(0.7, 0.65))
    unsure: float = 0.7  # a best score below this looks again (as does "none of these")
    accept: float = 0.9  # a zoom answers only with an out-of-class score at most this times the threshold

    def wanted(self, probabilities: np.ndarray, unknown: bool) -> bool:
        return unknown or float(np.max(probabilities)) < self.unsure

    def better(
        self, candidate: tuple[np.ndarray, float | None], best: tuple[np.ndarray, float | None], threshold: float | None
    ) -> bool:
        """Whether a zoom beats the best look so far (see the module docstring)."""
        if candidate[1] is not None and best[1] is not None and threshold is not None:
            return candidate[1] < best[1] and candidate[1] <= self.accept * threshold
        return float(np.max(candidate[0])) > float(np.max(best[0]))

    def to_dict(self) -> dict[str, Any]:
        return {"zooms": [[z.scale, z.x, z.y] for z in self.zooms], "unsure": self.unsure, "accept": self.accept}

    @classmethod
    def from_dict(cls, data: Any) -> "SecondLook":
        """Parse the contract's ``second_look``; a malformed one is a MetadataError, never a guess."""
        if not isinstance(data, dict):
            raise MetadataError("metadata field second_look must be an object")
        zooms, unsure = data.get("zooms"), data.get("unsure")
        if not isinstance(zooms, list) or not 1 <= len(zooms) <= 8:
            raise MetadataError("metadata field second_look.zooms must list 1 to 8 zooms")
        parsed = []
        for zoom in zooms:
            if (
                not isinstance(zoom, list)
                or len(zoom) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in zoom)
                or not (0.1 <= zoom[0] < 1 and 0 <= zoom[1] <= 1 and 0 <= zoom[2] <= 1)
            ):
                raise MetadataError(
                    f"metadata field second_look.zooms has {zoom!r}; each is [scale 0.1-1, x 0-1, y 0-1]"
                )
            parsed.append(Zoom(float(zoom[0]), float(zoom[1]), float(zoom[2])))
        accept = data.get("accept", 1.0)
        for name, value in (("unsure", unsure), ("accept", accept)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise MetadataError(f"metadata field second_look.{name} must be a number from 0 to 1")
        return cls(tuple(parsed), float(unsure), float(accept))  # type: ignore[arg-type]  # checked above


#: What ``--second-look on`` uses for a file whose contract has no settings of its own.
DEFAULT = SecondLook()
MODES = ("auto", "on", "off")


def choose(mode: str, from_contract: SecondLook | None) -> SecondLook | None:
    """The second look a run uses: ``auto`` follows the file's contract, ``on`` forces it, ``off`` never."""
    if mode not in MODES:
        raise ValueError(f"second look {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "off":
        return None
    return from_contract or (DEFAULT if mode == "on" else None)
