"""A camera model's files in front of a camera: accuracy per camera condition, and "none of these".

Every held-out photo is placed into 640x480 frames under each named condition of
:mod:`train.datasets.camera_frames` (near, mid, far, off-centre, blur, noise, JPEG, dim light,
tungsten, and the background alone), passed through the runtime's own preprocessing, and
classified by each deployable file in the real interpreter. Reported per file:

- accuracy per condition (the top label), and the share of frames said to be unknown;
- ``background``: the share of frames without a garment that still get a label;
- ``in_class_accepted``: held-out photos (plain) not said to be unknown;
- ``others_accepted``: with ``--others DIR``, the share of those photos of other things given a label.

``python -m benchmarks.camera [FILE ...]`` runs it on its own (default: ``clothes_lite0``'s int8 and
float32 TFLite files) and writes ``reports/camera.json``; ``make benchmark`` includes it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_common.cli import ArgumentParser, add_options, check_ranges, config_from_args, option, run_command
from edge_common.errors import EdgeError
from edge_runtime import formats

DEFAULT_MODEL = "clothes_lite0"
DEFAULT_FORMATS = ("tflite_int8", "tflite_float32")


@dataclass(frozen=True)
class CameraConfig:
    """Options of ``python -m benchmarks.camera``."""

    files: tuple[str, ...] = option(
        (), "deployable files to measure (default: clothes_lite0's int8 and float32 TFLite files)", cli=False
    )
    backgrounds: str | None = option(
        help="a folder of your own photos (rooms, desks) to place the garments on (default: procedural scenes)",
        metavar="DIR",
    )
    others: str | None = option(
        help="a folder of photos of other things (no garment): the share given a label is reported", metavar="DIR"
    )
    limit: int | None = option(help="use the first N held-out photos only (quick runs)", bounds=(1, None))
    runs_dir: str | None = option(help="run folders (default: runs/ in the checkout, or $EDGE_RUNS_DIR)")
    reports_dir: str | None = option(help="where camera.json goes (default: reports/ in the checkout)")

    def validate(self) -> None:
        check_ranges(self)


def frames_for(
    run: Any, *, limit: int | None = None, backgrounds: str | None = None
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray, str]:
    """Model inputs per condition for a folder-trained run's held-out photos, the plain photos' inputs,
    and what the backgrounds were."""
    from edge_runtime.preprocess import to_model_image
    from train import evalsets
    from train.datasets import camera_frames

    data = evalsets.held_out_photos(run.folder, run.labels, seed=int(run.config.get("seed") or 0))
    if limit:
        data.files = data.interleaved(limit)  # every class in turn
    photos, labels = data.load_photos("BGR", max_side=480)
    scenes = camera_frames.Backgrounds.from_folder(backgrounds) if backgrounds else camera_frames.Backgrounds()
    inputs = camera_frames.condition_inputs(photos, labels, run.input_spec, backgrounds=scenes)
    plain = np.stack([to_model_image(photo, run.input_spec) for photo in photos])  # decoded once, above
    return inputs, plain, scenes.source


def others_inputs(folder: str, spec: Any) -> np.ndarray:
    """Photos of other things as model inputs (any depth of folders)."""
    from edge_runtime.preprocess import to_model_image
    from train.datasets import camera_frames

    photos = camera_frames.Backgrounds.from_folder(folder).photos
    return np.stack([to_model_image(photo, spec) for photo in photos])


def classify(path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
    """Top-1 index and unknown verdict of every model input through one file, and the file's contract."""
    from edge_runtime.classifier import Classifier
    from edge_runtime.preprocess import to_input_tensor

    with Classifier.open(path, threads=1) as classifier:
        predicted = np.empty(len(images), np.int64)
        unknown = np.zeros(len(images), bool)
        for i, image in enumerate(images):
            probabilities, score = classifier.infer_all(to_input_tensor(image[None], classifier.input_spec))
            predicted[i], unknown[i] = int(np.argmax(probabilities)), classifier.is_unknown(score)
        return predicted, unknown, classifier.metadata


def measure_file(
    path: Path, inputs: dict[str, tuple[np.ndarray, np.ndarray]], plain: np.ndarray, others: np.ndarray | None = None
) -> dict[str, Any]:
    """One file's camera report (see the module docstring)."""
    from train.datasets import camera_frames

    predicted, truth, unknown = {}, {}, {}
    metadata = None
    for name, (images, labels) in inputs.items():
        predicted[name], unknown[name], metadata = classify(path, images)
        truth[name] = labels
    conditions = camera_frames.condition_report(predicted, truth, unknown)
    conditions["background"]["labelled"] = 1.0 - conditions["background"]["unknown"]
    result: dict[str, Any] = {
        "file": str(path),
        "conditions": conditions,
        "has_unknown_output": metadata is not None and metadata.output.unknown is not None,
    }
    result["in_class_accepted"] = float(1.0 - np.mean(classify(path, plain)[1]))
    if others is not None:
        result["others_accepted"] = float(1.0 - np.mean(classify(path, others)[1]))
        result["others"] = int(len(others))
    return result


def measure(
    run: Any,
    files: Sequence[Path],
    *,
    limit: int | None = None,
    backgrounds: str | None = None,
    others: str | None = None,
) -> dict[str, Any]:
    """The camera report of ``files`` (deployable files of ``run``)."""
    inputs, plain, source = frames_for(run, limit=limit, backgrounds=backgrounds)
    other_images = others_inputs(others, run.input_spec) if others else None
    return {
        "model": run.model,
        "backgrounds": source,
        "photos": int(len(plain)),
        **({"others_folder": others} if others else {}),
        "files": {_key(path, files): measure_file(path, inputs, plain, other_images) for path in files},
    }


def _key(path: Path, files: Sequence[Path]) -> str:
    """A file's row name: its name, or its whole path when two files share a name."""
    return path.name if sum(other.name == path.name for other in files) == 1 else str(path)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A table: one row per file, one column per condition, then the out-of-class shares."""
    from train.datasets import camera_frames

    names = list(camera_frames.GARMENT_CONDITIONS)
    width = max([24] + [len(name) for name in report["files"]])
    head = f"{'file':{width}s} " + " ".join(f"{n[:8]:>8s}" for n in names)
    head += f" {'mean':>6s} {'empty':>6s} {'in-cls':>6s}"
    has_others = any("others_accepted" in r for r in report["files"].values())
    lines = [head + (f" {'others':>6s}" if has_others else "")]
    for name, row in report["files"].items():
        c = row["conditions"]
        line = f"{name:{width}s} " + " ".join(f"{100 * c[n]['accuracy']:7.1f}%" for n in names)
        line += f" {100 * c['mean']['accuracy']:5.1f}% {100 * c['background']['labelled']:5.1f}% "
        line += f"{100 * row['in_class_accepted']:5.1f}%"
        if has_others:
            line += f" {100 * row.get('others_accepted', float('nan')):5.1f}%"
        lines.append(line)
    lines.append(
        "conditions: top-1 accuracy; empty: frames without a garment given a label; in-cls: held-out "
        "photos accepted; others: photos of other things given a label"
    )
    return lines


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.camera", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="deployable files to measure (default: clothes_lite0's int8 and float32 TFLite files)",
    )
    add_options(parser, CameraConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), _work, argv, "nothing was written")


def _work(args: argparse.Namespace) -> int:
    from edge_common.files import atomic_write_text, dump_json
    from train import paths
    from train.runfolder import RunFolder

    config = config_from_args(CameraConfig, args, files=tuple(args.files))
    config.validate()
    run = RunFolder.for_model(DEFAULT_MODEL, config.runs_dir)
    files = [Path(f) for f in config.files] or [run.deploy_dir / formats.get(fmt).file_name for fmt in DEFAULT_FORMATS]
    for path in files:
        if not path.is_file():
            raise EdgeError(f"{path}: no such file; run `make convert` or pass deployable files")
    report = measure(run, files, limit=config.limit, backgrounds=config.backgrounds, others=config.others)
    reports = Path(config.reports_dir).expanduser() if config.reports_dir else paths.default_reports_dir()
    reports.mkdir(parents=True, exist_ok=True)
    atomic_write_text(reports / "camera.json", dump_json(report))
    print(f"{report['model']}: {report['photos']} held-out photos on {report['backgrounds']}")
    print("\n".join(summary_lines(report)))
    print(f"wrote {reports / 'camera.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
