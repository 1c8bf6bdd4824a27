"""The feature extractor ``edge-classify teach`` builds on: an ImageNet backbone without its classifier.

``python -m convert.features`` takes the ported ImageNet classifier's run (``imagenet_lite0``),
cuts it at its pooled features (1280 values per image), exports it with the converter's own
exporters as int8 TFLite and float32 ONNX, and proves each file against Keras on the repository's
held-out real photos: the cosine similarity of every photo's features. A file whose mean cosine
is below :data:`MIN_COSINE` (or whose worst photo is below :data:`MIN_WORST_COSINE`) is kept as
``.rejected`` and the command exits 1. Writes ``runs/imagenet_lite0/features/``:
``features_int8.tflite``, ``features_float32.onnx`` and ``features_report.json``.

ONNX ships float32: ONNX Runtime's static int8 (QDQ) kept a mean cosine of only 0.959 on this
backbone's features (7-bit weights, uint8 activations, as x86 without VNNI needs; 0.913 with 8-bit
weights), against 0.982 for TFLite's int8.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.cli import ArgumentParser, add_options, config_from_args, option, run_command
from edge_common.files import atomic_write_bytes, atomic_write_text, dump_json, sha256_bytes
from edge_runtime.contract import METADATA_KEY, InputSpec, ModelMetadata, OutputSpec

log = logging.getLogger("edge_classify.convert")

SOURCE_MODEL = "imagenet_lite0"
FEATURES_LAYER = "pool"  # the backbone's global average pool, before dropout and the classifier
NAME = "lite0_features"
FOLDER = "features"  # inside the source run's folder
FORMATS = ("tflite_int8", "onnx_float32")
MIN_COSINE = 0.98  # mean over the check photos
MIN_WORST_COSINE = 0.85  # the single worst photo


@dataclass(frozen=True)
class FeaturesConfig:
    """Options of ``python -m convert.features``."""

    calibration_samples: int = option(300, "training photos int8 is calibrated on", bounds=(1, 10_000))
    runs_dir: str | None = option(help="run folders (default: runs/ in the checkout, or $EDGE_RUNS_DIR)")
    verbose: bool = option(False, "debug logging")


def file_name(fmt: str) -> str:
    """``features_int8.tflite`` for ``tflite_int8``, and so on."""
    kind, precision = fmt.split("_", 1)
    return f"features_{precision}.{kind}"


def build(config: FeaturesConfig) -> dict[str, Any]:
    """Export and prove every format; returns the report (also written beside the files)."""
    import keras

    from train import evalsets
    from train.runfolder import RunFolder

    from . import exporters
    from .config import created_by

    run = RunFolder.for_model(SOURCE_MODEL, config.runs_dir)
    classifier = keras.saving.load_model(run.model_file, safe_mode=True, compile=False)
    model = keras.Model(classifier.input, classifier.get_layer(FEATURES_LAYER).output, name=NAME)
    spec = run.input_spec
    out_dir = run.path / FOLDER
    out_dir.mkdir(parents=True, exist_ok=True)
    calibration = run.calibration_set(config.calibration_samples)
    check = evalsets.photo_check_set(spec)
    reference = np.asarray(model.predict(check.astype(np.float32), batch_size=32, verbose=0))
    keras_sha = sha256_bytes(run.model_file.read_bytes())
    report: dict[str, Any] = {
        "model": NAME,
        "source": f"{SOURCE_MODEL} ({FEATURES_LAYER} layer)",
        "keras_sha256": keras_sha,
        "features": int(reference.shape[1]),
        "check": f"{len(check)} held-out real photos ({evalsets.PHOTOS}/test)",
        "gate": f"mean cosine >= {MIN_COSINE}, worst >= {MIN_WORST_COSINE}",
        "files": {},
    }
    ok = True
    with tempfile.TemporaryDirectory(prefix="edge-features-") as tmp:
        context = exporters.ExportContext(model, spec, Path(tmp), calibration, run_onnx_settings())
        for fmt in FORMATS:
            started = time.perf_counter()
            raw = exporters.exporter(fmt)(context)
            if fmt.startswith("onnx"):
                raw = _rename_onnx_output(raw, "features")
            probe = Path(tmp) / file_name(fmt)
            probe.write_bytes(raw)
            features, tensor_spec, output_spec, backend = _run(probe, spec, check)
            cosine = _cosine(features, reference)
            result: dict[str, Any] = {
                "file": file_name(fmt),
                "mean_cosine": float(cosine.mean()),
                "worst_cosine": float(cosine.min()),
                "p01_cosine": float(np.quantile(cosine, 0.01)),
                "backend": backend,
            }
            passed = result["mean_cosine"] >= MIN_COSINE and result["worst_cosine"] >= MIN_WORST_COSINE
            metadata = ModelMetadata(
                model=NAME,
                format=fmt,
                labels=(),
                input=tensor_spec,
                output=output_spec,
                accuracy={"mean_cosine": round(result["mean_cosine"], 6), "test_images": float(len(check))},
                extra={
                    "created_by": created_by(),
                    "precision": fmt.split("_", 1)[1],
                    "features": int(reference.shape[1]),
                    "extractor_id": extractor_id(keras_sha),
                    "source": report["source"],
                    "keras_sha256": keras_sha,
                    "test_set": report["check"],
                    "calibration_images": len(calibration),
                    "calibration_source": f"{evalsets.PHOTOS}/train (real photos)",
                },
            )
            final = exporters.embedder(fmt.split("_")[0])(raw, {METADATA_KEY: metadata.to_json()})
            target = out_dir / (file_name(fmt) if passed else file_name(fmt) + ".rejected")
            atomic_write_bytes(target, final)
            result.update(
                status="ok" if passed else "rejected",
                size_bytes=len(final),
                sha256=sha256_bytes(final),
                seconds=round(time.perf_counter() - started, 1),
            )
            report["files"][fmt] = result
            ok = ok and passed
            log.info(
                "%s: %-12s %s mean cosine %.5f worst %.5f (%.1fs)",
                NAME,
                fmt,
                result["status"],
                result["mean_cosine"],
                result["worst_cosine"],
                result["seconds"],
            )
    report["ok"] = ok
    atomic_write_text(out_dir / "features_report.json", dump_json(report))
    return report


def extractor_id(keras_sha: str) -> str:
    """What identifies an extractor's feature space across its formats: the source weights and the layer."""
    return f"{SOURCE_MODEL}:{FEATURES_LAYER}:{keras_sha[:16]}"


def run_onnx_settings() -> Any:
    """The source model's ONNX quantization settings (8-bit weights, as its own int8 file)."""
    from .config import ConvertConfig

    return ConvertConfig(model=SOURCE_MODEL).for_model(SOURCE_MODEL).onnx


def _run(path: Path, spec: InputSpec, images: np.ndarray) -> tuple[np.ndarray, InputSpec, OutputSpec, str]:
    """Features of every image through the real interpreter, and the file's tensor contract."""
    from edge_runtime.features import FeatureExtractor

    with FeatureExtractor.open(path, input_spec=spec) as extractor:
        features = np.stack([extractor.features_of_image(image) for image in images])
        return features, extractor.input_spec, extractor.output_spec, extractor.backend_name


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from edge_runtime.unknown import unit

    return np.sum(unit(a) * unit(b), axis=1)


def _rename_onnx_output(raw: bytes, name: str) -> bytes:
    """The exporters name a single output ``probabilities``; an extractor's output is its features."""
    import onnx

    proto = onnx.load_from_string(raw)
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [name if output == old else output for output in node.output]
    proto.graph.output[0].name = name
    return proto.SerializeToString()


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m convert.features", description=__doc__.split("\n\n")[0])
    add_options(parser, FeaturesConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), _work, argv, "finished files are in place, unfinished ones were discarded")


def _work(args: argparse.Namespace) -> int:
    from train.tfenv import quiet_tensorflow

    quiet_tensorflow()
    report = build(config_from_args(FeaturesConfig, args))
    for fmt, result in report["files"].items():
        print(
            f"{fmt:12s} {result['status']:8s} mean cosine {result['mean_cosine']:.5f}, worst "
            f"{result['worst_cosine']:.5f}, {result['size_bytes']:,} bytes: {result['file']}"
        )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
