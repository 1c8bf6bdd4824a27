"""The benchmark: quick mode end to end on tiny models, the report schema, Pareto, device mode."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.report import pareto_front, verdicts
from tests.helpers import ROOT, run_cli

ROW_KEYS = {
    "model",
    "format",
    "threads",
    "size_bytes",
    "accuracy",
    "agreement",
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_p99",
    "throughput_ips",
    "load_ms",
    "peak_rss_mb",
}


def test_pareto_front_on_a_hand_made_table():
    #            latency, accuracy
    points = [
        (1.0, 0.90),  # fastest: on the front
        (2.0, 0.93),  # on the front
        (2.5, 0.92),  # dominated by (2.0, 0.93)
        (3.0, 0.93),  # dominated (same accuracy, slower)
        (4.0, 0.95),  # on the front
        (1.0, 0.89),
    ]  # dominated by (1.0, 0.90)
    assert pareto_front(points) == [True, True, False, False, True, False]


def test_verdict_picks_the_fastest_file_within_half_a_point_and_explains_slow_int8():
    rows = [
        {
            "model": "m",
            "format": "tflite_float32",
            "threads": 1,
            "latency_ms_p50": 0.20,
            "accuracy": 0.930,
            "size_bytes": 400_000,
        },
        {
            "model": "m",
            "format": "tflite_int8",
            "threads": 1,
            "latency_ms_p50": 0.25,
            "accuracy": 0.928,
            "size_bytes": 100_000,
        },
        {
            "model": "m",
            "format": "tflite_float16",
            "threads": 1,
            "latency_ms_p50": 0.19,
            "accuracy": 0.930,
            "size_bytes": 200_000,
        },
        {
            "model": "m",
            "format": "onnx_int8",
            "threads": 1,
            "latency_ms_p50": 0.10,
            "accuracy": 0.900,
            "size_bytes": 100_000,
        },
    ]
    text = verdicts(rows, "no VNNI here")["m"]
    assert text.startswith("use tflite_float16") and "int8 TFLite is 1.25x slower than float32 here: no VNNI" in text
    same = [dict(row, latency_ms_p50=0.202) if row["format"] == "tflite_int8" else row for row in rows]
    assert "int8 TFLite is no faster than float32 here (1.01x): no VNNI" in verdicts(same, "no VNNI")["m"]


def test_int8_verdict_never_contradicts_itself_and_keras_rows_show_no_thread_count():
    from benchmarks.report import markdown

    rows = [
        {
            "model": "mlp128",
            "format": "tflite_float32",
            "threads": 1,
            "latency_ms_p50": 0.010,
            "accuracy": 0.878,
            "size_bytes": 400_000,
        },
        {
            "model": "mlp128",
            "format": "tflite_int8",
            "threads": 1,
            "latency_ms_p50": 0.0115,
            "accuracy": 0.877,
            "size_bytes": 100_000,
        },
    ]
    vnni = "this CPU has int8 dot-product instructions (VNNI / ARM dotprod), so int8 kernels can beat float"
    text = verdicts(rows, vnni, True)["mlp128"]
    assert "1.15x slower than float32 here, although this CPU has int8 dot-product instructions" in text
    assert "can beat" not in text
    keras = {"model": "mlp128", "format": "keras", "threads": None, "accuracy": 0.878, "latency_ms_p50": 30.0}
    report = {
        "mode": "full",
        "environment": {
            "cpu": {"model": "x", "machine": "x86_64", "cores": 2, "flags": {}},
            "os": "Linux",
            "python": "3.11",
            "versions": {},
        },
        "settings": {"min_runs": 1, "min_seconds": 0.1, "test_sets": "t"},
        "rows": [keras, *rows],
        "verdicts": {},
        "int8_note": vnni,
    }
    keras_line = next(line for line in markdown(report).splitlines() if "| keras |" in line)
    assert "None" not in keras_line and "| keras | - |" in keras_line


def test_peak_memory_is_the_workers_own_not_its_parents():
    # A parent holding 400 MB starts a child: the child's peak must not include the parent's pages.
    parent = (
        "import subprocess, sys\n"
        "import numpy as np\n"
        "held = np.ones(400 * 2**20, np.uint8)\n"
        "code = 'from benchmarks.worker import peak_rss_mb; print(peak_rss_mb())'\n"
        "print(subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout)\n"
        "print(held[-1])\n"
    )
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, cwd=ROOT, check=True)
    child_peak = float(out.stdout.split()[0])
    assert 5 < child_peak < 150, child_peak


@pytest.mark.dataset
def test_quick_mode_end_to_end_writes_every_report(tiny_runs, tmp_path):
    result = run_cli(
        "-m",
        "benchmarks",
        "--quick",
        "--runs-dir",
        str(tiny_runs),
        "--reports-dir",
        str(tmp_path),
        "--models",
        "edge_cnn",
        "camera_cnn",
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["mode"] == "quick"
    env = report["environment"]
    assert (
        {"cpu", "os", "python", "versions"} <= set(env)
        and "avx2" in env["cpu"]["flags"]
        or "neon" in env["cpu"]["flags"]
    )
    rows = report["rows"]
    formats = {(r["model"], r["format"]) for r in rows}
    for model in ("edge_cnn", "camera_cnn"):
        for fmt in (
            "keras",
            "tflite_float32",
            "tflite_float16",
            "tflite_dynamic",
            "tflite_int8",
            "onnx_float32",
            "onnx_int8",
        ):
            assert (model, fmt) in formats
    for row in rows:
        assert ROW_KEYS <= set(row), row
        assert "error" not in row, row
        assert 0.0 <= row["accuracy"] <= 1.0 and row["latency_ms_p50"] > 0
        assert row["latency_ms_p50"] <= row["latency_ms_p95"] <= row["latency_ms_p99"]
    # Every row says what ran it; ONNX files run on ONNX Runtime and on OpenVINO, each its own row.
    for row in rows:
        if row["format"] != "keras":
            assert row["engine"].startswith(("LiteRT", "onnxruntime", "OpenVINO")), row
    for fmt in ("onnx_float32", "onnx_int8"):
        engines = {r["engine"].split()[0] for r in rows if r["model"] == "edge_cnn" and r["format"] == fmt}
        assert engines == {"onnxruntime", "OpenVINO"}, engines
    assert "| OpenVINO " in (tmp_path / "benchmark.md").read_text()
    threads = {r["threads"] for r in rows if r["format"] != "keras"}
    assert threads == {1, 2} or threads == {1}
    float_row = next(
        r for r in rows if r["model"] == "edge_cnn" and r["format"] == "tflite_float32" and r["threads"] == 1
    )
    assert float_row["agreement"] >= 0.99
    e2e = report["end_to_end"]
    assert e2e["capture_ceiling"]["fps"] > 0 and e2e["runtime"]["tflite_int8"]["fps"] > 0
    assert set(e2e["runtime"]["tflite_int8"]["stage_ms"]) >= {"capture", "preprocess", "inference", "overlay"}
    assert e2e["keras_predict"]["fps"] > 0 and e2e["speedup_vs_keras_predict"]["tflite_int8"] > 1
    assert set(report["verdicts"]) == {"edge_cnn", "camera_cnn"} and report["int8_note"]
    for name in ("benchmark.csv", "benchmark.md", "pareto.png"):
        assert (tmp_path / name).stat().st_size > 100
    header = (tmp_path / "benchmark.csv").read_text().splitlines()[0]
    assert header.startswith("model,format,threads,size_bytes,accuracy")
    assert "Which file should I put on my device?" in result.stdout
    assert not (tmp_path / ".benchmark-partial.json").exists()


@pytest.mark.dataset
def test_device_mode_runs_without_tensorflow_importable(tiny_runs, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    for name in ("tensorflow", "keras", "tf2onnx"):
        (blocker / f"{name}.py").write_text(f"raise ImportError('{name} is not installed on this device')\n")
    code = (
        "import sys, runpy\n"
        f"sys.path.insert(0, {str(blocker)!r})\n"
        "import importlib.util\n"
        "importlib.util.find_spec = (lambda f: (lambda name, *a: None if name.split('.')[0] in ('tensorflow', "
        "'keras') else f(name, *a)))(importlib.util.find_spec)\n"
        f"sys.argv = ['benchmarks', '--deploy-dir', {str(tiny_runs / 'edge_cnn' / 'deploy')!r}, '--quick', "
        f"'--threads', '1',"
        f" '--reports-dir', {str(tmp_path / 'reports')!r}]\n"
        "runpy.run_module('benchmarks', run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "reports" / "benchmark.json").read_text())
    assert report["mode"] == "device"
    assert {r["format"] for r in report["rows"]} == {
        "tflite_float32",
        "tflite_float16",
        "tflite_dynamic",
        "tflite_int8",
        "onnx_float32",
        "onnx_int8",
    }
    assert any("TensorFlow is not installed" in s for s in report["skipped"])
    assert all(r["accuracy"] is not None for r in report["rows"])
    # Rows in the formats table's order, as in full mode; the progress bar ends at its total.
    # (each ONNX file twice: on ONNX Runtime, then on OpenVINO).
    assert [(r["format"], r["engine"].split()[0]) for r in report["rows"]] == [
        ("tflite_float32", "LiteRT"),
        ("tflite_float16", "LiteRT"),
        ("tflite_dynamic", "LiteRT"),
        ("tflite_int8", "LiteRT"),
        ("onnx_float32", "onnxruntime"),
        ("onnx_float32", "OpenVINO"),
        ("onnx_int8", "onnxruntime"),
        ("onnx_int8", "OpenVINO"),
    ]
    bars = [line for line in result.stderr.splitlines() if line.startswith("[")]
    done, total = bars[-1].split("] ", 1)[1].split()[0].split("/")
    assert done == total == "8" and bars[-1].startswith("[" + "#" * 24 + "]")
