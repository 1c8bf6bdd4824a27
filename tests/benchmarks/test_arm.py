"""The ARM check's own logic (the emulated run itself is `make check-arm`, too slow for the suite)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import arm
from benchmarks.arm import guest, jobs
from edge_common.errors import EdgeError


def test_cpuinfo_records_are_what_cpuinfo_libraries_parse(tmp_path):
    (tmp_path / "proc").mkdir()
    guest._write_cpuinfo(tmp_path, "cortex-a72", cores=4)
    records = [block for block in (tmp_path / "proc" / "cpuinfo").read_text().split("\n\n") if block.strip()]
    assert len(records) == 4
    for n, record in enumerate(records):
        fields = dict(line.split(":", 1) for line in record.splitlines())
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        assert fields["processor"] == str(n) and fields["CPU implementer"] == "0x41" and fields["CPU part"] == "0xd08"
        assert "asimd" in fields["Features"].split() and "asimddp" not in fields["Features"].split()  # Pi 4
    guest._write_cpuinfo(tmp_path, "cortex-a76")
    assert "asimddp" in (tmp_path / "proc" / "cpuinfo").read_text()  # Pi 5 has the dot product


def test_unknown_cpu_models_are_refused():
    assert arm.ArmConfig(cpus="cortex-a72, cortex-a76").cpu_list() == ["cortex-a72", "cortex-a76"]
    with pytest.raises(EdgeError, match="unknown CPU model.*cortex-a99.*choose from"):
        arm.ArmConfig(cpus="cortex-a99").cpu_list()


def _jsonl(path, rows):
    path.write_text("".join(json.dumps({"frame": i, "top": top}) + "\n" for i, top in enumerate(rows)))
    return str(path)


@pytest.mark.parametrize(
    "guest_rows, ok, agreement, diff",
    [
        ([[["a", 0.9], ["b", 0.1]], [["b", 0.6], ["a", 0.4]]], True, 1.0, 0.0),
        ([[["a", 0.90005], ["b", 0.09995]], [["b", 0.6], ["a", 0.4]]], True, 1.0, 0.00005),  # within float32's 1e-4
        # A top-1 flip where identical tensors agree and the decoded input differs: explained, reported, passing.
        ([[["a", 0.9], ["b", 0.1]], [["a", 0.51], ["b", 0.49]]], True, 0.5, 0.11),
        ([[["a", 0.9], ["b", 0.1]]], False, 1.0, 0.0),  # a frame missing is a finding
    ],
)
def test_comparison_counts_frames_top1_and_the_largest_probability_difference(
    tmp_path, guest_rows, ok, agreement, diff
):
    def side(name, rows, kernel_probs, pixels):
        np.save(tmp_path / f"{name}.t.npy", np.full((len(rows), 4, 4, 3), pixels, np.uint8))
        np.save(tmp_path / f"{name}.p.npy", np.asarray(kernel_probs, np.float32))
        return {
            "jsonl": _jsonl(tmp_path / f"{name}.jsonl", rows),
            "tensors": str(tmp_path / f"{name}.t.npy"),
            "probabilities": str(tmp_path / f"{name}.p.npy"),
            "exit_code": 0,
            "wall_s": 0.1,
        }

    kernels = [[0.9, 0.1], [0.4, 0.6]]
    host = side("x86", [[["a", 0.9], ["b", 0.1]], [["b", 0.6], ["a", 0.4]]], kernels, 100)
    guest = side("arm", guest_rows, kernels, 101)
    job = {"file": "/x/model_float32.tflite", "name": "m/model_float32.tflite/video"}
    entry = jobs._compare(job, host, guest, "cortex-a72")
    assert entry["ok"] is ok and entry["frames"] == len(guest_rows) and entry["source"] == "video"
    assert entry["top1_agreement"] == pytest.approx(agreement) and entry["max_prob_diff"] == pytest.approx(diff)
    assert entry["input_max_diff"] == (1.0 if len(guest_rows) == 2 else float("inf"))
    assert entry["identical_input"] == {"top1_agreement": 1.0, "max_prob_diff": 0.0}
    assert bool(entry["mismatches"]) is (agreement < 1) and entry["explained_by_input"] is (agreement < 1)
    findings = jobs._findings([entry])
    assert len(findings) == len(entry["mismatches"])
    assert all(
        "frame 1: x86 b 0.600 (next a 0.400), guest a 0.510" in f and "differs by up to 1 levels" in f for f in findings
    )


def test_a_flip_the_input_does_not_explain_fails(tmp_path):
    rows_x86, rows_arm = [[["a", 0.6], ["b", 0.4]]], [[["b", 0.6], ["a", 0.4]]]
    sides = []
    for name, rows, probs in (("x86", rows_x86, [[0.6, 0.4]]), ("arm", rows_arm, [[0.4, 0.6]])):
        np.save(tmp_path / f"{name}.p.npy", np.asarray(probs, np.float32))
        np.save(tmp_path / f"{name}.t.npy", np.zeros((1, 4, 4, 3), np.uint8))  # identical inputs
        sides.append(
            {
                "jsonl": _jsonl(tmp_path / f"{name}.jsonl", rows),
                "tensors": str(tmp_path / f"{name}.t.npy"),
                "probabilities": str(tmp_path / f"{name}.p.npy"),
                "exit_code": 0,
                "wall_s": 0.1,
            }
        )
    entry = jobs._compare({"file": "m/model_int8.tflite", "name": "m/i/video"}, *sides, "cortex-a72")
    assert entry["ok"] is False and entry["explained_by_input"] is False
    assert jobs._findings([entry])[0].endswith("UNEXPLAINED")


def test_on_identical_inputs_the_kernels_must_agree_within_the_tolerance(tmp_path):
    rows = [[["a", 0.9], ["b", 0.1]]]
    np.save(tmp_path / "t.npy", np.zeros((1, 4, 4, 3), np.uint8))
    sides = []
    for name, probs in (("x86", [[0.9, 0.1]]), ("arm", [[0.8995, 0.1005]])):  # 5e-4 apart: above float32's 1e-4
        np.save(tmp_path / f"{name}.p.npy", np.asarray(probs, np.float32))
        sides.append(
            {
                "jsonl": _jsonl(tmp_path / f"{name}.jsonl", rows),
                "tensors": str(tmp_path / "t.npy"),
                "probabilities": str(tmp_path / f"{name}.p.npy"),
                "exit_code": 0,
                "wall_s": 0.1,
            }
        )
    float_entry = jobs._compare({"file": "m/model_float32.onnx", "name": "m/f/photos"}, *sides, "cortex-a76")
    int8_entry = jobs._compare({"file": "m/model_int8.onnx", "name": "m/i/photos"}, *sides, "cortex-a76")
    assert float_entry["ok"] is False and int8_entry["ok"] is True  # int8 allows one 1/256 output step


def test_the_check_finds_the_checkout_and_builds_its_inputs_and_teach_examples(tmp_path):
    # The package lives in benchmarks/arm/: its ROOT is the checkout, where the shipped runs are.
    assert (guest.ROOT / "pyproject.toml").is_file() and (guest.ROOT / "runs").is_dir()
    inputs = jobs._inputs(tmp_path, frames=2, photos=2)
    assert inputs["video"].stat().st_size > 0 and len(list(inputs["photos"].iterdir())) == 2
    examples = jobs._teach_examples(tmp_path, 2)
    assert sorted(p.name for p in examples.iterdir()) == sorted(jobs.TEACH_CLASSES)
    assert all(len(list((examples / name).iterdir())) == 2 for name in jobs.TEACH_CLASSES)


def test_taught_files_must_answer_the_same_on_both_sides(tmp_path):
    def side(name, labels):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"label": label, "top": [[label, 0.9]]}) + "\n" for label in labels))
        return {"jsonl": str(path), "exit_code": 0}

    same = jobs._compare_taught(side("a", ["hat", "shoes"]), side("b", ["hat", "shoes"]))
    assert same["ok"] and same["same_answer"] == 2 and same["max_prob_diff"] == 0
    differs = jobs._compare_taught(side("c", ["hat", "shoes"]), side("d", ["hat", "pants"]))
    assert not differs["ok"] and differs["same_answer"] == 1
