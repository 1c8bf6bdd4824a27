"""Paired latency: files timed in alternating rounds in one process, each pair judged round by round."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks.paired import PAIRS, verdict
from tests.helpers import ROOT, run_cli

SHIPPED = ROOT / "runs" / "edge_cnn" / "deploy"


def test_two_real_files_are_timed_in_every_round_and_judged_per_pair():
    files = [SHIPPED / "model_int8.tflite", SHIPPED / "model_float32.tflite", SHIPPED / "model_int8.onnx"]
    result = run_cli(
        "-m", "benchmarks.paired", *map(str, files), "--rounds", "4", "--block-seconds", "0.05", "--json", timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.splitlines()[-1])
    assert measured["rounds"] == 4 and measured["threads"] == 1
    assert [entry["file"] for entry in measured["files"]] == list(map(str, files))
    for entry in measured["files"]:
        assert 0 < entry["p50_us_min"] <= entry["p50_us_median"] <= entry["p50_us_max"]
    assert [(pair["a"], pair["b"]) for pair in measured["pairs"]] == [
        (str(files[0]), str(files[1])),
        (str(files[0]), str(files[2])),
        (str(files[1]), str(files[2])),
    ]
    for pair in measured["pairs"]:
        assert 0 <= pair["a_faster_rounds"] <= 4 and pair["ratio_median"] > 0
    table = run_cli(
        "-m", "benchmarks.paired", *map(str, files[:2]), "--rounds", "2", "--block-seconds", "0.05", timeout=300
    )
    assert table.returncode == 0 and "of 2 rounds, median time ratio" in table.stdout


def test_the_verdict_says_faster_only_when_most_rounds_agree():
    pair = {"a": "a.tflite", "b": "b.tflite", "ratio_median": 0.8}
    assert verdict({**pair, "a_faster_rounds": 19}, 20).startswith(
        "a.tflite is faster than b.tflite: faster in 19 of 20"
    )
    assert "too close to call" in verdict({**pair, "a_faster_rounds": 11}, 20)
    assert verdict({**pair, "a_faster_rounds": 2}, 20, "edge", "seed").startswith("edge is slower than seed")


@pytest.mark.parametrize(
    "args, message",
    [
        ([str(SHIPPED / "model_int8.tflite")], "at least two model files"),
        ([str(SHIPPED / "model_int8.tflite"), str(ROOT / "README.md")], "unknown model type"),
        ([str(SHIPPED / "model_int8.tflite"), "missing.tflite"], "no such model file"),
        ([str(SHIPPED / "model_int8.tflite")] * 2 + ["--rounds", "0"], "--rounds must be 1..1000, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run_cli("-m", "benchmarks.paired", *args, timeout=120)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_the_benchmark_compares_edge_cnn_with_seed_cnn_in_rounds(tiny_runs, zoo, tmp_path):
    """The session's tiny seed_cnn, converted here, beside its tiny edge_cnn: the benchmark adds a
    paired comparison per format in PAIRS that both models have."""
    from convert.converter import ConvertConfig, convert

    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs / "edge_cnn", runs / "edge_cnn")
    shutil.copytree(zoo / "seed_cnn", runs / "seed_cnn", ignore=shutil.ignore_patterns("deploy"))
    convert(
        ConvertConfig(
            model="seed_cnn",
            runs_dir=str(runs),
            formats=("tflite_float32", "tflite_int8"),
            eval_limit=200,
            calibration_samples=50,
            gates=False,
        )
    )
    result = run_cli(
        "-m",
        "benchmarks",
        "--quick",
        "--no-e2e",
        "--runs-dir",
        str(runs),
        "--reports-dir",
        str(tmp_path / "reports"),
        "--models",
        "edge_cnn",
        "seed_cnn",
        "--formats",
        "tflite_float32",
        "tflite_int8",
        "onnx_int8",
        "--threads",
        "1",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "reports" / "benchmark.json").read_text())
    expected = [
        fmt for model, baseline, formats in PAIRS if (model, baseline) == ("edge_cnn", "seed_cnn") for fmt in formats
    ]
    assert expected and [entry["format"] for entry in report["paired"]] == expected  # onnx_int8: seed_cnn has none
    for entry in report["paired"]:
        assert entry["model"] == "edge_cnn" and entry["baseline"] == "seed_cnn" and entry["rounds"] == 6
        assert entry["verdict"].startswith(f"edge_cnn {entry['format']} ") and "of 6 rounds" in entry["verdict"]
        assert entry["files"][0]["file"].endswith(f"edge_cnn/deploy/model_{entry['format'].split('_')[1]}.tflite")
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    assert "## Paired latency" in markdown and markdown.count("median of the rounds' p50") == len(expected)
