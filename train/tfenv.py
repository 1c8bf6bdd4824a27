"""TensorFlow's environment, set before it is first imported."""

from __future__ import annotations

import os

# oneDNN's kernels made one 128-px fine-tuning epoch 0.73x as long together with the trainer's
# other changes, and were deterministic run after run; at 64 px and below they are slower.
ONEDNN_MIN_SIDE = 96


def quiet_tensorflow(*, onednn: bool = False) -> None:
    """Silence TensorFlow's C++ start-up chatter and choose its kernels.

    ``onednn`` turns oneDNN on (training at :data:`ONEDNN_MIN_SIDE` px or more); it changes the
    numerics against the plain kernels, so a run's weights reproduce only with the same choice.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1" if onednn else "0")
