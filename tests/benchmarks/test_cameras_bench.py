"""The several-cameras benchmark end to end, short: real streams, real processes, /proc read back."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_cameras_benchmark_measures_one_and_four_cameras_the_budget_and_a_swap(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.cameras", "--seconds", "2", "--reports-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "cameras.json").read_text())
    assert list(report["four"]["camera_fps"]) == ["cam0", "cam1", "cam2", "cam3"]
    assert all(fps > 0 for fps in report["four"]["camera_fps"].values())
    assert len(report["four_processes"]["camera_fps"]) == 4 and report["four"]["rss_vs_one"] > 0.5
    assert set(report["max_fps"]) >= {"uncapped", "5", "2", "saving_5", "saving_2"}
    assert report["swap"]["models"] == 2 and report["swap"]["lost"] == 0
    assert "four cameras, one process" in result.stdout and "wrote" in result.stdout
