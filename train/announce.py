"""What a training run says when it starts: the model, its size and cost, the data and the recipe."""

from __future__ import annotations

import logging
from typing import Any

from . import data as data_mod
from .config import ResolvedTrainConfig

log = logging.getLogger("edge_classify.train")


def log_start(
    name: str,
    model: Any,
    macs: int,
    data: data_mod.TrainData,
    config: ResolvedTrainConfig,
    global_batch: int,
    replicas: int,
) -> None:
    log.info(
        "%s: %s params, %s MACs/image; %d training images/epoch, %d validation, test: %s; "
        "batch %d (%d replica(s)), lr %.2g, %s, %d epochs%s",
        name,
        f"{model.count_params():,}",
        f"{macs:,}",
        data.train_count,
        len(data.val[1]),
        data.test_name,
        global_batch,
        replicas,
        config.learning_rate * replicas,
        config.schedule,
        config.epochs,
        f" (the first {config.low_res_epochs} at half resolution)" if config.low_res_epochs else "",
    )
