"""Every stage has a command: `python -m <package> --help`, the installed scripts, doctor, inspect."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_cli


@pytest.mark.parametrize(
    "package, words",
    [("train", "MODEL"), ("convert", "MODEL"), ("edge_runtime", "--source"), ("benchmarks", "--deploy-dir")],
)
def test_python_m_help(package, words):
    result = run_cli("-m", package, "--help", timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout and words in result.stdout


@pytest.mark.parametrize("script", ["edge-train", "edge-convert", "edge-classify", "edge-benchmark"])
def test_installed_console_scripts(script):
    path = Path(sys.executable).parent / script
    assert path.exists() or shutil.which(script), f"{script} is not installed (pip install -e .)"
    import subprocess

    result = subprocess.run(
        [str(path if path.exists() else shutil.which(script)), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "usage:" in result.stdout


def test_main_functions_take_argv():
    from edge_runtime.cli import main as runtime_main
    from train.cli import main as train_main

    assert train_main(["--list"]) == 0
    assert runtime_main(["doctor"]) == 0


def test_doctor_reports_backends_and_cpu():
    result = run_cli("-m", "edge_runtime", "doctor", timeout=120)
    assert result.returncode == 0
    for word in ("python", "cpu", "int8", "backend     litert", "onnxruntime", "opencv", "cameras", "display"):
        assert word in result.stdout, word
    import onnxruntime

    providers = next(line for line in result.stdout.splitlines() if "execution providers:" in line)
    assert all(name in providers for name in onnxruntime.get_available_providers())
    assert "CPUExecutionProvider" in providers


def test_console_script_errors_name_the_command_the_user_typed(tmp_path):
    import subprocess

    from edge_common.cli import invoked_as

    script = Path(sys.executable).parent / "edge-classify"
    result = subprocess.run(
        [str(script), "--model", "m.tflite", "--bogus"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and result.stderr.startswith("edge-classify: error: unrecognized arguments: --bogus")
    result = subprocess.run([str(script), "inspect"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("edge-classify inspect: error:")
    assert invoked_as("python -m edge_runtime doctor") == "python -m edge_runtime doctor"  # pytest is a .py/-m run


@pytest.mark.dataset
def test_inspect_prints_the_embedded_contract(tiny_runs):
    result = run_cli("-m", "edge_runtime", "inspect", str(tiny_runs / "camera_cnn" / "deploy" / "model_int8.tflite"))
    assert result.returncode == 0
    assert "input:   32x32x3 RGB NHWC int8" in result.stdout and "Ankle boot" in result.stdout
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    for key in ("accuracy", "agreement", "keras_accuracy"):  # a space after every colon, four decimals each
        assert lines[key].startswith(" ") and len(lines[key].strip().split(".")[1]) == 4, (key, lines[key])
    assert lines["test_images"].strip().replace(",", "").isdigit()


@pytest.mark.dataset
def test_inspect_names_a_truncated_file(tiny_runs, tmp_path):
    data = (tiny_runs / "edge_cnn" / "deploy" / "model_int8.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[:3000])
    result = run_cli("-m", "edge_runtime", "inspect", str(cut))
    assert result.returncode == 2 and result.stderr.startswith(f"error: {cut}: ") and "truncated" in result.stderr


def test_train_list_shows_the_registry():
    result = run_cli("-m", "train", "--list", timeout=120)
    assert result.returncode == 0 and "edge_cnn" in result.stdout and "128x128x3" in result.stdout


def test_the_command_reference_is_current():
    """docs/commands.md is every command's --help, generated from the config dataclasses."""
    import runpy

    render = runpy.run_path(str(ROOT / "scripts" / "reference.py"))["render"]

    committed = (ROOT / "docs" / "commands.md").read_text()
    assert committed == render(), "docs/commands.md is stale: run `python scripts/reference.py`"
