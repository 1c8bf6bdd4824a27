"""Shared fixtures: the real dataset (required in CI), tiny trained + converted runs, and the
reliability ledger.

Tiny runs are trained once per test session (a few hundred real Fashion-MNIST images, a few
filters) and shared by the convert, runtime and benchmark tests.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from tests.helpers import IN_CI


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-frames",
        type=int,
        default=20_000,
        help="frames for the live-loop soak test (the long version: --soak-frames 200000)",
    )
    parser.addoption(
        "--reliability-report",
        default=None,
        help="where the reliability ledger goes (default: reports/reliability.md in the checkout)",
    )


@pytest.fixture(scope="session", autouse=True)
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """tune's records and engine caches in the session's own folder (child processes inherit it), so a
    record the developer made with `edge-classify tune` cannot change which engine `auto` picks here."""
    import os

    folder = tmp_path_factory.mktemp("edge-classify-cache")
    previous = os.environ.get("EDGE_CLASSIFY_CACHE")
    os.environ["EDGE_CLASSIFY_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("EDGE_CLASSIFY_CACHE", None)
    else:
        os.environ["EDGE_CLASSIFY_CACHE"] = previous


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The real Fashion-MNIST folder. Missing data fails in CI (a skip would hide a broken set-up)."""
    from edge_common.errors import DatasetError
    from train.datasets import fashion_mnist

    try:
        return fashion_mnist.locate()
    except DatasetError as exc:
        if IN_CI:
            pytest.fail(f"CI needs the real Fashion-MNIST: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory, fashion_dir: Path) -> Path:
    """runs/ with a tiny edge_cnn (28x28x1) and a tiny camera_cnn (32x32x3), trained and converted."""
    from train.tfenv import quiet_tensorflow

    quiet_tensorflow()
    from convert.converter import ConvertConfig, convert
    from train import trainer
    from train.config import TrainConfig

    runs = tmp_path_factory.mktemp("runs")
    trainer.run(
        TrainConfig(model="edge_cnn", epochs=3, width=0.25, train_limit=3000, test_limit=1000, output_dir=str(runs))
    )
    # The first epoch at half size keeps progressive resizing (an option; the shipped recipe trains
    # at full size only) under test, through to files exported at the fixed input size.
    trainer.run(
        TrainConfig(
            model="camera_cnn",
            epochs=2,
            low_res_epochs=1,
            width=0.25,
            input_size=32,
            train_limit=1200,
            test_limit=300,
            output_dir=str(runs),
        )
    )
    # ONNX int8 as every model is quantized by default: 7-bit weights, right in a default ONNX Runtime
    # session on any x86 CPU, VNNI or not (train/models.py says why).
    for name in ("edge_cnn", "camera_cnn"):
        convert(
            ConvertConfig(
                model=name, runs_dir=str(runs), eval_limit=300, calibration_samples=100, opencv_check=100, gates=False
            )
        )
    return runs


# How the session's tiny models are trained: (epochs, training images, test images).
TINY = {"edge_cnn": (3, 3000, 1000), "camera_cnn": (2, 1200, 300)}
TINY_OTHERS = (2, 2000, 200)  # every other registry model with a builder


@pytest.fixture(scope="session")
def zoo(tiny_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every registry model with a builder, tiny, trained once per session: edge_cnn and camera_cnn
    are tiny_runs' own (linked, not retrained), the rest are trained here (see TINY_OTHERS)."""
    from train import models, trainer
    from train.config import TrainConfig

    out = tmp_path_factory.mktemp("zoo")
    for name, spec in models.REGISTRY.items():
        if spec.builder is None:
            continue
        if name in TINY:
            (out / name).symlink_to(tiny_runs / name, target_is_directory=True)
            continue
        epochs, train_limit, test_limit = TINY_OTHERS
        trainer.run(
            TrainConfig(
                model=name,
                epochs=epochs,
                width=0.25,
                train_limit=train_limit,
                test_limit=test_limit,
                output_dir=str(out),
                plots=False,
            )
        )
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# --- the reliability ledger -------------------------------------------------------------------
# Every hostile-input and fault case records what it tried and what held: a case counts as tried
# when it starts and as handled only when its checks pass, so a failing case shows in the ledger
# (tried > handled) as well as in the test result. A skipped or deselected test runs no case and
# records nothing. At the end of the session the ledger goes where the benchmark's reports go
# (reports/ in the checkout, train.paths.default_reports_dir), or to --reliability-report PATH.


class Ledger:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, int]] = defaultdict(lambda: {"tried": 0, "survived": 0})
        self.notes: list[str] = []

    @contextmanager
    def case(self, category: str) -> Iterator[None]:
        """One case: tried now, handled only if the block's checks pass (an exception propagates)."""
        self.rows[category]["tried"] += 1
        yield
        self.rows[category]["survived"] += 1

    def note(self, text: str) -> None:
        self.notes.append(text)

    def markdown(self) -> str:
        lines = [
            "# Reliability report",
            "",
            f"Written by the test suite on {time.strftime('%Y-%m-%d %H:%M:%S')}.",
            "",
            "| what was tried | cases | handled cleanly |",
            "|---|---:|---:|",
        ]
        for category, counts in sorted(self.rows.items()):
            lines.append(f"| {category} | {counts['tried']} | {counts['survived']} |")
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


LEDGER_KEY = pytest.StashKey[Ledger]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[LEDGER_KEY] = Ledger()


@pytest.fixture(scope="session")
def ledger(request: pytest.FixtureRequest) -> Ledger:
    return request.config.stash[LEDGER_KEY]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    ledger = session.config.stash.get(LEDGER_KEY, None)
    if ledger is None or not ledger.rows:
        return
    from edge_common.files import atomic_write_text
    from train.paths import default_reports_dir

    target = session.config.getoption("--reliability-report") or default_reports_dir() / "reliability.md"
    atomic_write_text(Path(target), ledger.markdown())
