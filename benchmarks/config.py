"""What one benchmark run is asked to do: ``BenchConfig``, whose fields are ``python -m benchmarks``'s
options, and the progress line and worker plumbing every part of the run shares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from edge_common.cli import check_ranges, option
from edge_runtime import formats as formats_mod
from edge_runtime.accelerators import MAX_THREADS


def default_threads() -> tuple[int, ...]:
    return tuple(sorted({1, os.cpu_count() or 1}))


ALL_FORMATS = tuple(fmt.name for fmt in formats_mod.FORMATS)


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run; every field is a ``python -m benchmarks`` option."""

    models: tuple[str, ...] = option(
        (), "models to measure (default: every registry model; device mode: every deploy folder)", metavar="MODEL"
    )
    formats: tuple[str, ...] = option(
        ALL_FORMATS, "default: all: " + ", ".join(ALL_FORMATS), choices=ALL_FORMATS, metavar="FORMAT"
    )
    threads: tuple[int, ...] = option(
        help="thread counts to sweep (default: 1 and all cores)",
        default_factory=default_threads,
        bounds=(1, MAX_THREADS),
    )
    quick: bool = option(False, "500 test images, short timings, tiny video (what the test suite runs)")
    deploy_dir: str | None = option(
        help="device mode: measure the converted files in this folder (or its "
        "subfolders) with the base install only; Keras rows are skipped"
    )
    runs_dir: str | None = option(help="run folders (default: runs/ in the checkout, or $EDGE_RUNS_DIR)")
    reports_dir: str | None = option(help="where reports go (default: reports/ in the checkout)")
    data_dir: str | None = option(help="Fashion-MNIST folder (default: search; see README)")
    e2e: bool = option(True, "skip the end-to-end camera pipeline")
    backgrounds: str | None = option(
        help="a folder of your own photos (rooms, shelves, desks): the camera conditions and the camera "
        "video are also measured with garments placed on them",
        metavar="DIR",
    )
    fresh: bool = option(False, "ignore results saved by an interrupted run")
    train_missing: bool = option(True, "skip models that are not trained instead of training them", flag="--no-train")

    def validate(self) -> None:
        check_ranges(self)

    @property
    def mode(self) -> str:
        return "device" if self.deploy_dir else ("quick" if self.quick else "full")

    @property
    def eval_limit(self) -> int | None:
        return 500 if self.quick else None

    @property
    def min_seconds(self) -> float:
        return 0.2 if self.quick else 1.0

    @property
    def min_runs(self) -> int:
        return 50 if self.quick else 500


class Progress:
    """One line per step with a bar; a carriage-return bar on terminals, plain lines otherwise."""

    def __init__(self, total: int) -> None:
        self.total, self.done = max(1, total), 0
        self.tty = sys.stderr.isatty()

    def step(self, text: str) -> None:
        self.done += 1
        filled = int(24 * self.done / self.total)
        line = f"[{'#' * filled}{'.' * (24 - filled)}] {self.done}/{self.total} {text}"
        print(("\r\x1b[2K" if self.tty else "") + line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the bar at 100%: a step that turned out to have nothing to do (a skipped part) still counts."""
        if self.done < self.total:
            self.done = self.total - 1
            self.step("done")
        if self.tty:
            print(file=sys.stderr)


def run_json(command: list[str], timeout: float = 600) -> dict[str, Any]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {result.returncode}: {tail[:200]}"}
    return json.loads(lines[-1])
