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
) -> tuple[list[np.ndarray], np.ndarray, Any]:
    """A folder-trained run's held-out photos (BGR, as a camera hands them over), their labels, and the
    backgrounds the camera frames are built on (procedural, or the photos of ``backgrounds``)."""
    from train import evalsets
    from train.datasets import camera_frames

    data = evalsets.held_out_photos(run.folder, run.labels, seed=int(run.config.get("seed") or 0))
    if limit:
        data.files = data.interleaved(limit)  # every class in turn
    photos, labels = data.load_photos("BGR", max_side=480)
    scenes = camera_frames.Backgrounds.from_folder(backgrounds) if backgrounds else camera_frames.Backgrounds()
    return photos, labels, scenes


def other_photos(folder: str) -> list[np.ndarray]:
    """Photos of other things (any depth of folders), BGR."""
    from train.datasets import camera_frames

    return list(camera_frames.Backgrounds.from_folder(folder).photos)


class _Answers:
    """Each frame's answer as the first look gave it and as the runtime gives it (second look included)."""

    def __init__(self) -> None:
        self.first: list[tuple[int, bool]] = []
        self.final: list[tuple[int, bool]] = []
        self.looked = 0

    def add(self, classifier: Any, frame: np.ndarray) -> None:
        probabilities, score = classifier.infer_all(classifier.input_tensor(frame))
        self.first.append((int(np.argmax(probabilities)), classifier.is_unknown(score)))
        probabilities, score, _, looked = classifier.look_again(frame, probabilities, score)
        self.final.append((int(np.argmax(probabilities)), classifier.is_unknown(score)))
        self.looked += looked

    def arrays(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.first if which == "first" else self.final
        return np.asarray([r[0] for r in rows], np.int64), np.asarray([r[1] for r in rows], bool)


def measure_file(
    path: Path, photos: list[np.ndarray], labels: np.ndarray, scenes: Any, others: list[np.ndarray] | None = None
) -> dict[str, Any]:
    """One file's camera report through the runtime's defaults (see the module docstring); ``first``
    holds the same figures from the first look alone."""
    from edge_runtime.classifier import Classifier
    from train.datasets import camera_frames

    answers: dict[str, _Answers] = {}
    truth: dict[str, list[int]] = {}
    with Classifier.open(path, threads=1) as classifier:
        for name, frame, label in camera_frames.iter_condition_frames(photos, labels, backgrounds=scenes):
            answers.setdefault(name, _Answers()).add(classifier, frame)
            truth.setdefault(name, []).append(label)
        plain = _Answers()
        for photo in photos:
            plain.add(classifier, photo)
        other = _Answers()
        for photo in others or []:
            other.add(classifier, photo)
        metadata, looks = classifier.metadata, classifier.second_look
    reports = {}
    for which in ("first", "final"):
        predicted, unknown = {}, {}
        for name, answer in answers.items():
            predicted[name], unknown[name] = answer.arrays(which)
        report = camera_frames.condition_report(predicted, {n: np.asarray(t) for n, t in truth.items()}, unknown)
        report["background"]["labelled"] = 1.0 - report["background"]["unknown"]
        reports[which] = report
    for name, answer in answers.items():
        reports["final"][name]["looked_again"] = answer.looked / max(1, len(answer.final))
    result: dict[str, Any] = {
        "file": str(path),
        "conditions": reports["final"],
        "first_look": reports["first"],
        "second_look": looks.to_dict() if looks else None,
        "has_unknown_output": metadata.output.unknown is not None,
    }
    plain_predicted, plain_unknown = plain.arrays("final")
    result["in_class_accepted"] = float(1.0 - np.mean(plain_unknown))
    result["plain_accuracy"] = float(np.mean(plain_predicted == labels))
    if others:
        result["others_accepted"] = float(1.0 - np.mean(other.arrays("final")[1]))
        result["others"] = len(others)
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
    photos, labels, scenes = frames_for(run, limit=limit, backgrounds=backgrounds)
    other = other_photos(others) if others else None
    return {
        "model": run.model,
        "backgrounds": scenes.source,
        "photos": len(photos),
        **({"others_folder": others} if others else {}),
        "files": {_key(path, files): measure_file(path, photos, labels, scenes, other) for path in files},
    }


def _key(path: Path, files: Sequence[Path]) -> str:
    """A file's row name: its name, or its whole path when two files share a name."""
    return path.name if sum(other.name == path.name for other in files) == 1 else str(path)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Per file: a row per condition (top-1, answered right and not declined, declined, looked again,
    and the first look's figures), then the out-of-class shares."""
    from train.datasets import camera_frames

    lines: list[str] = []
    for name, row in report["files"].items():
        conditions, first = row["conditions"], row.get("first_look") or row["conditions"]
        looks = "second look on" if row.get("second_look") else "no second look"
        lines += [
            f"{name} ({looks})",
            f"  {'condition':12s} {'top-1':>6s} {'right':>6s} {'declined':>8s} {'looked':>6s}   first look: "
            f"{'top-1':>6s} {'right':>6s} {'declined':>8s}",
        ]
        for cond in (*camera_frames.GARMENT_CONDITIONS, "mean"):
            c, f = conditions[cond], first[cond]
            if cond == "mean":
                lines.append(
                    f"  {'mean':12s} {100 * c['accuracy']:5.1f}% {100 * c['accepted_correct']:5.1f}% "
                    f"{'':8s} {'':6s}               {100 * f['accuracy']:5.1f}% {100 * f['accepted_correct']:5.1f}%"
                )
                continue
            lines.append(
                f"  {cond:12s} {100 * c['accuracy']:5.1f}% {100 * c['accepted_correct']:5.1f}% "
                f"{100 * c['unknown']:7.1f}% {100 * c.get('looked_again', 0.0):5.1f}%               "
                f"{100 * f['accuracy']:5.1f}% {100 * f['accepted_correct']:5.1f}% {100 * f['unknown']:7.1f}%"
            )
        line = (
            f"  empty frames labelled {100 * conditions['background']['labelled']:.1f}% (first look "
            f"{100 * first['background']['labelled']:.1f}%); plain held-out photos: top-1 "
            f"{100 * row.get('plain_accuracy', float('nan')):.1f}%, accepted {100 * row['in_class_accepted']:.1f}%"
        )
        if "others_accepted" in row:
            line += f"; other things given a label {100 * row['others_accepted']:.1f}% of {row['others']}"
        lines.append(line)
    lines.append(
        "top-1: the label; right: the label right and not declined (what a user reads); declined: said "
        "none of these; looked: frames given a second look; empty: frames without a garment given a label"
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
