"""``python -m benchmarks.teach``: few-shot accuracy over seeded draws, and the real command timed."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli

pytestmark = pytest.mark.dataset


def test_the_teach_benchmark_reports_every_shot_count_head_and_the_timed_run(tmp_path):
    result = run_cli(
        "-m",
        "benchmarks.teach",
        "--limit",
        "4",
        "--shots",
        "1",
        "2",
        "0",
        "--draws",
        "3",
        "--teach-photos",
        "2",
        "--reports-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "teach.json").read_text())
    assert report["classes"] == 10 and report["train_photos"] == 40 and report["test_photos"] == 40
    assert set(report["results"]) == {f"{s}/{h}" for s in ("1", "2", "all") for h in ("logistic", "means")}
    for key, row in report["results"].items():
        assert row["draws"] == (1 if key.startswith("all") else 3)
        assert 0.1 < row["accuracy"]["mean"] <= 1 and row["accuracy"]["std"] >= 0  # 10 classes: chance is 0.1
        assert 0 <= row["in_class_accepted"]["mean"] <= 1
    # Different draws give different photos: the spread over 3 draws of 1 shot is not zero.
    assert report["results"]["1/logistic"]["accuracy"]["std"] > 0
    assert report["teach_run"]["photos"] == 20 and report["teach_run"]["seconds"] > 0
    assert "taught 10 classes" in report["teach_run"]["said"]
    assert "| 2 | logistic |" in (tmp_path / "teach.md").read_text()
