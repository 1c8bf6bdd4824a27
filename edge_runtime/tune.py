"""``edge-classify tune --model FILE``: find the fastest engine, accelerator and thread count for one
file on this device, measured, and remember it for ``--accelerator auto``.

Every usable candidate (ONNX Runtime and OpenVINO on the CPU at each thread count, a GPU through
TensorRT or CUDA, OpenVINO's other devices, LiteRT on the CPU or an Edge TPU) runs the file on its
check images. A candidate is kept only when it agrees with the file's reference answers (the
reference engine, ONNX Runtime or LiteRT on the CPU: on every check image the same top-1, or a class
the reference scores within ``TIE`` of it, a near-tie). The kept ones are timed in interleaved rounds, so a busy
moment of the machine falls on all of them alike, and the fastest median is recorded in
``tune.json`` in the cache folder (see :func:`edge_runtime.accelerators.cache_root`), keyed by the
file's SHA-256, with this device and the engines' versions: a record made elsewhere, or before an
upgrade, is not used.

Exit codes: 0 recorded; 2 for a predictable mistake (one ``error:`` line); 130 after Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.cli import ArgumentParser, add_options, config_from_args, option, run_command

from . import accelerators as accel

log = logging.getLogger("edge_classify.runtime")
TIE = 0.02  # best two probabilities closer than this: either answer is right, engines may differ
# int8 files: engines round differently; 0.05 is 13 output steps (imagenet_lite0's int8 ONNX on
# OpenVINO and ONNX Runtime: one photo of 40 apart by 0.047, OpenVINO's answer being the float file's).
TIE_QUANTIZED = 0.05
RECORDS = "tune.json"
_PACKAGES = {
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "litert": "ai-edge-litert",
    "tflite_runtime": "tflite-runtime",
    "tensorflow": "tensorflow-cpu",
}


@dataclass
class TuneOptions:
    """The options of ``edge-classify tune``."""

    model: str = option(help="the .tflite or .onnx file to tune", required=True, metavar="FILE")
    images: str | None = option(
        help="check images: a folder of photos like those the camera sees (default: 32 generated scenes)", metavar="DIR"
    )
    count: int = option(32, "check images used", bounds=(4, 1000))
    rounds: int = option(10, "timing rounds (each candidate runs 10 frames a round, in turn)", bounds=(1, 1000))
    quiet: bool = option(False, "no table, only the chosen line")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="edge-classify tune",
        description=__doc__.split("\n\n")[0],
        epilog="exit codes: 0 recorded, 2 bad input, 130 Ctrl-C",
    )
    add_options(parser, TuneOptions)
    return parser


def main(argv: list[str]) -> int:
    return run_command(
        build_parser(), lambda args: _tune(config_from_args(TuneOptions, args)), argv, "nothing was recorded"
    )


# -- the record ----------------------------------------------------------------------------------


def records_path() -> Path:
    return accel.cache_root() / RECORDS


def versions() -> dict[str, str]:
    found = {}
    for name, dist in _PACKAGES.items():
        try:
            found[name] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def lookup(model_sha: str) -> dict[str, Any] | None:
    """Tune's record for a file, when it was made on this device with the engines installed now."""
    from edge_common.files import read_json

    records = read_json(records_path()) or {}
    record = records.get(model_sha)
    if not isinstance(record, dict) or not {"backend", "accelerator"} <= set(record):
        return None
    if record.get("machine") != accel.machine_id():
        return None
    installed = versions()
    if record.get("version") != installed.get(record["backend"]):
        log.info(
            "tune's record for this file is for %s %s, not %s: rerun `edge-classify tune`",
            record["backend"],
            record.get("version"),
            installed.get(record["backend"]),
        )
        return None
    return record


def save(record: dict[str, Any]) -> Path:
    from edge_common.files import atomic_write_text, dump_json, read_json

    path = records_path()
    records = read_json(path) or {}
    records[record["sha256"]] = record
    atomic_write_text(path, dump_json(records))
    return path


# -- candidates ----------------------------------------------------------------------------------


def candidates(kind: str, compiled_for_edgetpu: bool = False) -> list[dict[str, Any]]:
    """Every engine x accelerator x thread count that may run a file of ``kind`` here."""
    from .backends import available

    cores = os.cpu_count() or 1
    counts = sorted({1, 2, 4, cores} & set(range(1, cores + 1)))
    found: list[dict[str, Any]] = []
    if kind == "onnx":
        for backend in ("onnxruntime", "openvino"):
            if available(backend):
                found += [{"backend": backend, "accelerator": "cpu", "threads": n} for n in counts]
        providers = accel.onnx_providers() or []
        if accel.nvidia_gpus():
            found += [
                {"backend": "onnxruntime", "accelerator": name, "threads": None}
                for name, provider in (("tensorrt", accel.TRT), ("cuda", accel.CUDA))
                if provider in providers
            ]
        for device in accel.openvino_devices() or []:
            if not device.startswith("CPU"):
                found.append({"backend": "openvino", "accelerator": "openvino", "threads": None, "device": device})
    else:
        if not compiled_for_edgetpu:
            found += [{"backend": "auto", "accelerator": "cpu", "threads": n} for n in counts]
        if accel.coral_devices() and accel.find_libedgetpu():
            found.append({"backend": "auto", "accelerator": "edgetpu", "threads": None})
    return found


def check_frames(folder: str | None, count: int) -> list[np.ndarray]:
    """The check images: photos from ``folder``, else generated scenes (gradients and shapes)."""
    from .errors import EdgeError

    if folder:
        from .images import images_in, read_image

        root = Path(folder).expanduser()
        if not root.is_dir():
            raise EdgeError(f"--images {folder}: no such folder; pass a folder of photos")
        frames = [frame for frame in (read_image(path)[0] for path in images_in(root)[:count]) if frame is not None]
        if not frames:
            raise EdgeError(f"--images {folder}: no readable photo in it or its subfolders")
        return frames
    import cv2

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(count):
        y, x = np.mgrid[0:480, 0:640]
        base = np.stack(
            [(x * rng.uniform(0.1, 0.4) + y * rng.uniform(0.1, 0.4) + rng.uniform(0, 255)) % 256 for _ in range(3)],
            axis=-1,
        ).astype(np.uint8)
        for _ in range(6):
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            center = (int(rng.integers(0, 640)), int(rng.integers(0, 480)))
            if rng.random() < 0.5:
                cv2.circle(base, center, int(rng.integers(20, 160)), color, -1)
            else:
                cv2.rectangle(
                    base,
                    center,
                    (center[0] + int(rng.integers(30, 300)), center[1] + int(rng.integers(30, 300))),
                    color,
                    -1,
                )
        frames.append(base)
    return frames


def agreement(reference: np.ndarray, probabilities: np.ndarray, tie: float = TIE) -> tuple[int, int]:
    """(agreeing, images): a candidate agrees on an image when it gives the reference's top-1, or a
    class the reference scores within ``tie`` of its top-1 (a near-tie, where either answer is right)."""
    rows = np.arange(len(reference))
    chosen = reference[rows, np.argmax(probabilities, axis=1)]
    agreeing = (np.argmax(probabilities, axis=1) == np.argmax(reference, axis=1)) | (
        chosen >= reference.max(axis=1) - tie
    )
    return int(np.sum(agreeing)), len(reference)


def tie_for(metadata_format: str) -> float:
    """How close two classes may be for either to count as the answer: a quantized file's rounding
    moves scores by a few output steps (1/256 each), so its near-ties are wider than float's."""
    return TIE_QUANTIZED if metadata_format.endswith(("int8", "dynamic")) else TIE


def _tune(options: TuneOptions) -> int:
    from .classifier import Classifier
    from .errors import EdgeError
    from .metadata import load_bytes

    kind, data = load_bytes(options.model)
    sha = accel.file_hash(data)
    frames = check_frames(options.images, options.count)
    with Classifier.open(options.model, "onnxruntime" if kind == "onnx" else "auto", accelerator="cpu") as reference:
        tensors = [reference.input_tensor(frame) for frame in frames]
        expected = np.stack([reference.infer(t) for t in tensors])
        reference_line = reference.backend.engine
    rows: list[dict[str, Any]] = []
    kept: list[tuple[dict[str, Any], Classifier]] = []
    for candidate in candidates(kind, accel.is_edgetpu_file(data)):
        row = dict(candidate)
        try:
            classifier = Classifier.open(
                options.model,
                backend=candidate["backend"],
                accelerator=candidate["accelerator"],
                threads=candidate["threads"],
                device=candidate.get("device"),
            )
        except EdgeError as exc:
            rows.append({**row, "status": f"unusable: {exc}"})
            continue
        row["engine"] = classifier.backend.engine
        got = np.stack([classifier.infer(t) for t in tensors])
        agree, counted = agreement(expected, got, tie_for(classifier.metadata.format))
        row.update(agreement=f"{agree}/{counted}", max_abs_prob_diff=round(float(np.max(np.abs(got - expected))), 5))
        if agree < counted:
            row["status"] = "disagrees with the reference answers"
            classifier.close()
        else:
            kept.append((row, classifier))
        rows.append(row)
    if not kept:
        raise EdgeError(f"{options.model}: no engine here agrees with the file's reference answers; see the table")
    _time(kept, tensors[0], options.rounds)
    for _row, classifier in kept:
        classifier.close()
    best = min((row for row, _ in kept), key=lambda r: r["p50_ms"])
    record = {
        "sha256": sha,
        "file": str(Path(options.model).resolve()),
        "backend": _engine_package(best),
        "accelerator": best["accelerator"],
        "threads": best["threads"],
        "device": best.get("device"),
        "engine": best["engine"],
        "p50_ms": best["p50_ms"],
        "machine": accel.machine_id(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "reference": reference_line,
        "check_images": options.images or f"{len(frames)} generated scenes",
        "candidates": rows,
    }
    record["version"] = versions().get(record["backend"])
    where = save(record)
    if not options.quiet:
        _print_table(rows)
    print(
        f"fastest: {best['engine']} ({best['p50_ms']:.2f} ms p50); recorded for --accelerator auto in {where}",
        flush=True,
    )
    return 0


def _engine_package(row: dict[str, Any]) -> str:
    if row["backend"] != "auto":
        return str(row["backend"])
    return (
        "litert"
        if row["engine"].startswith("LiteRT")
        else "tflite_runtime"
        if row["engine"].startswith("tflite_runtime")
        else "tensorflow"
    )


def _time(kept: list[tuple[dict[str, Any], Any]], tensor: np.ndarray, rounds: int) -> None:
    """Median latency of each kept candidate, timed in turns (10 frames each a round) after a warm-up."""
    times: dict[int, list[float]] = {i: [] for i in range(len(kept))}
    for _, classifier in kept:
        for _ in range(5):
            classifier.infer(tensor)
    for _ in range(rounds):
        for index, (_, classifier) in enumerate(kept):
            for _ in range(10):
                started = time.perf_counter()
                classifier.infer(tensor)
                times[index].append((time.perf_counter() - started) * 1e3)
    for index, (row, _) in enumerate(kept):
        row["p50_ms"] = round(float(np.median(times[index])), 3)
        row["status"] = "ok"


def _print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'engine':58s} {'agree':>7s} {'p50 ms':>8s}  status")
    for row in sorted(rows, key=lambda r: r.get("p50_ms", float("inf"))):
        name = row.get("engine") or f"{row['backend']} {row['accelerator']}"
        p50 = f"{row['p50_ms']:.3f}" if "p50_ms" in row else "-"
        print(f"{name[:58]:58s} {row.get('agreement', '-'):>7s} {p50:>8s}  {row['status'][:90]}")
    sys.stdout.flush()


def describe(record: dict[str, Any] | None) -> str:
    """One line about a file's tune record (for doctor and the docs)."""
    if record is None:
        return "no tune record"
    return f"{record['engine']} ({record['p50_ms']} ms p50, tuned {record['when']})"
