"""Checkpoints of a run in progress: what a restart resumes from, written so a kill never corrupts them.

``checkpoint/state.json`` says which epoch files are the last and the best and what the run was
made with; ``history.csv`` gets one row per epoch.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_common.files import atomic_save, atomic_write_text

from .config import RESUME_KEYS, ConfigError, ResolvedTrainConfig

log = logging.getLogger("edge_classify.train")


HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


@dataclass
class State:
    """What checkpoint/state.json holds: enough to continue exactly where a run stopped."""

    epoch: int = 0  # completed epochs
    last: str | None = None
    best: str | None = None
    best_val_loss: float = float("inf")
    best_epoch: int = 0
    wait: int = 0
    stopped_early: bool = False
    elapsed_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def load_state(ckpt_dir: Path, config: ResolvedTrainConfig) -> State:
    path = ckpt_dir / "state.json"
    if not path.exists():
        return State()
    try:
        raw = json.loads(path.read_text())
        state = State(**raw)
    except (ValueError, TypeError, OSError):
        log.warning("%s is unreadable; starting the run over", path)
        return State()
    if state.config != config.resume_view():
        changed = sorted(k for k in RESUME_KEYS if state.config.get(k) != getattr(config, k))
        raise ConfigError(
            f"an unfinished run in {ckpt_dir.parent} used other options ({', '.join(changed)}); "
            "rerun with the same options to resume, or pass --fresh to start over"
        )
    if not all(name and (ckpt_dir / name).is_file() for name in (state.last, state.best)):
        log.warning("%s points at missing checkpoint files; starting the run over", path)
        return State()
    return state


def save_checkpoint(model: Any, ckpt_dir: Path, state: State, improved: bool) -> None:
    """Write this epoch's model, then switch state.json to it, then drop files nothing points at.

    File names carry the epoch so that state.json can be replaced atomically: whatever instant
    a kill lands on, state.json names files that are complete.
    """
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{state.epoch:04d}.keras"
    atomic_save(ckpt_dir / name, model.save)
    state.last = name
    if improved:
        state.best = name
    atomic_write_text(ckpt_dir / "state.json", json.dumps(state.__dict__, indent=1))
    for stale in ckpt_dir.glob("epoch-*.keras"):
        if stale.name not in (state.last, state.best):
            stale.unlink(missing_ok=True)


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (int(v) if k == "epoch" else round(v, 6)) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def record_epoch(state: State, row: dict[str, float], seconds: float, config: ResolvedTrainConfig) -> bool:
    """Add one epoch to the state; True when it is the best so far. Early stopping counts here."""
    epoch = state.epoch
    state.history.append({k: row.get(k, float("nan")) for k in HISTORY_FIELDS})
    state.elapsed_s += seconds
    state.epoch = epoch + 1
    if epoch < config.low_res_epochs:  # validated at half size: not comparable with the final model
        return False
    if row["val_loss"] < state.best_val_loss:
        state.best_val_loss, state.best_epoch, state.wait = row["val_loss"], state.epoch, 0
        return True
    state.wait += 1
    state.stopped_early = state.wait >= config.patience
    return False
