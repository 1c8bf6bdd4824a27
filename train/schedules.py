"""Learning-rate schedules that Keras does not ship, serializable so checkpoints resume."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="edge_classify")
class PhasedCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then a cosine decay per phase; later phases restart at ``restart`` x peak.

    Used for half-resolution warm-up training: the full-resolution phase needs a real learning
    rate to adapt to the larger scale, which one cosine over all epochs would have decayed away.
    """

    def __init__(self, peak: float, warmup_steps: int, phase_ends: list[int], restart: float = 0.3) -> None:
        super().__init__()
        self.peak, self.warmup_steps, self.phase_ends, self.restart = (
            float(peak),
            int(warmup_steps),
            [int(end) for end in phase_ends],
            float(restart),
        )

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        rate = self.peak * (0.1 + 0.9 * step / max(1, self.warmup_steps))
        start = float(self.warmup_steps)
        pieces = []
        for index, end in enumerate(self.phase_ends):
            phase_peak = self.peak if index == 0 else self.peak * self.restart
            length = max(1.0, end - start)
            progress = ops.minimum(ops.maximum(step - start, 0.0) / length, 1.0)
            pieces.append((start, phase_peak * 0.5 * (1.0 + ops.cos(math.pi * progress))))
            start = float(end)
        for phase_start, value in pieces:  # later phases override earlier ones from their start on
            rate = ops.where(step >= phase_start, value, rate)
        return rate

    def get_config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "phase_ends": self.phase_ends,
            "restart": self.restart,
        }
