"""`python -m benchmarks.paired FILE FILE [...]`: which model file is faster here, measured so that the
machine's drift hits every file alike.

``python -m benchmarks`` times each file once, for a second, in its own process, minutes apart. On a
shared machine the speed drifts by 10-30% over minutes, so two files 20% apart can swap places
between runs. Here all files are loaded into one process and timed in alternating rounds (a short
warm-up, then a timed block each, the order reversed every other round), and each pair is judged
round by round: "A was faster in 19 of 20 rounds, median ratio 0.80". The benchmark runs this for
the pairs in ``PAIRS``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.cli import ArgumentParser, add_options, check_ranges, config_from_args, option, run_command
from edge_common.errors import EdgeError
from edge_runtime.accelerators import MAX_THREADS

# The benchmark's paired comparisons: (model, model it must beat, formats), at 1 thread. edge_cnn is
# built to beat the tutorials' CNN on accuracy and on batch-1 latency in float32 and int8.
PAIRS = (("edge_cnn", "seed_cnn", ("tflite_float32", "tflite_int8")),)
ENGINES = ("auto", "litert", "onnxruntime", "openvino")


def entries(files: list[str | Path], engines: tuple[str, ...] = ("auto",)) -> list[tuple[str, str]]:
    """(file, backend) for each file and each engine in ``engines`` that runs its type."""
    runs = {".tflite": ("auto", "litert"), ".onnx": ("auto", "onnxruntime", "openvino")}
    return [
        (str(path), engine)
        for path in files
        for engine in engines
        if engine in runs.get(Path(path).suffix.lower(), ("auto",))
    ]


@dataclass
class PairedConfig:
    """Options of ``python -m benchmarks.paired``."""

    files: tuple[str, ...] = option((), cli=False)
    engines: tuple[str, ...] = option(
        ("auto",),
        "run each file on each of these engines that runs its type (auto: "
        "the runtime's choice; litert for .tflite; onnxruntime, openvino for .onnx)",
        choices=ENGINES,
        metavar="ENGINE",
    )
    threads: int = option(1, "interpreter threads per file", bounds=(1, MAX_THREADS))
    rounds: int = option(20, "alternating rounds; each pair is judged in every round", bounds=(1, 1000))
    block_seconds: float = option(0.5, "timed seconds per file in each round", bounds=(0.01, 60))
    json: bool = option(False, "print the result as one JSON line instead of a table")

    def validate(self) -> None:
        if len(self.files) < 2 and len(entries(list(self.files), self.engines)) < 2:
            raise EdgeError("give at least two model files to compare (.tflite or .onnx), or one with two --engines")
        check_ranges(self)
        for name in self.files:
            if not Path(name).is_file():
                raise EdgeError(f"{name}: no such model file; give .tflite or .onnx files from runs/<MODEL>/deploy/")


def compare(
    files: list[str | Path],
    threads: int = 1,
    rounds: int = 20,
    block_seconds: float = 0.5,
    warmup: int = 200,
    engines: tuple[str, ...] = ("auto",),
) -> dict[str, Any]:
    """Alternating-round batch-1 latency of ``files`` on ``engines`` (p50 per round, in microseconds),
    and per pair how often the first was faster and the median of the per-round ratios."""
    from edge_runtime.classifier import Classifier
    from edge_runtime.preprocess import to_input_tensor

    from .worker import batch1_seconds

    runs = entries(files, engines)
    if len(runs) < 2:
        raise EdgeError("fewer than two file x engine combinations to compare; give more files or --engines")
    classifiers = [Classifier.open(path, backend, threads) for path, backend in runs]
    engines_run = [classifier.engine for classifier in classifiers]
    # A file on one engine is named by its path; the same file on several, by path and engine.
    files = [
        path if len(runs) == len({p for p, _ in runs}) else f"{path} on {engine}"
        for (path, _), engine in zip(runs, engines_run)
    ]
    # A mid-grey frame: latency does not depend on the pixels for these models.
    inputs = [to_input_tensor(np.full((1, *c.input_spec.shape[1:]), 128, np.uint8), c.input_spec) for c in classifiers]
    p50 = np.zeros((rounds, len(files)))
    for r in range(rounds):
        order = range(len(files)) if r % 2 == 0 else reversed(range(len(files)))
        for i in order:
            classifier, tensor = classifiers[i], inputs[i]
            for _ in range(warmup):
                classifier.infer(tensor)
            p50[r, i] = np.percentile(batch1_seconds(classifier, tensor, block_seconds, 10), 50) * 1e6
    for classifier in classifiers:
        classifier.close()
    result: dict[str, Any] = {
        "threads": threads,
        "rounds": rounds,
        "block_seconds": block_seconds,
        "files": [],
        "pairs": [],
    }
    for i, path in enumerate(files):
        result["files"].append(
            {
                "file": str(path),
                "engine": engines_run[i],
                "p50_us_median": round(float(np.median(p50[:, i])), 2),
                "p50_us_min": round(float(p50[:, i].min()), 2),
                "p50_us_max": round(float(p50[:, i].max()), 2),
            }
        )
    for i in range(len(files)):
        for j in range(i + 1, len(files)):
            ratio = p50[:, i] / p50[:, j]
            result["pairs"].append(
                {
                    "a": str(files[i]),
                    "b": str(files[j]),
                    "a_faster_rounds": int((ratio < 1).sum()),
                    "ratio_median": round(float(np.median(ratio)), 3),
                }
            )
    return result


def verdict(pair: dict[str, Any], rounds: int, a: str | None = None, b: str | None = None) -> str:
    """One line: who was faster, in how many rounds, by what median ratio."""
    a, b = a or pair["a"], b or pair["b"]
    wins, ratio = pair["a_faster_rounds"], pair["ratio_median"]
    if wins * 4 >= rounds * 3:
        head = f"{a} is faster than {b}"
    elif wins * 4 <= rounds:
        head = f"{a} is slower than {b}"
    else:
        head = f"{a} and {b} are too close to call"
    return f"{head}: faster in {wins} of {rounds} rounds, median time ratio {ratio:.2f}"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m benchmarks.paired",
        description="Compare the batch-1 latency of model files in alternating rounds in one process, so that a "
        "shared machine's drift hits every file alike, and say per pair which is faster and how often.",
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help=".tflite or .onnx files (two or more)")
    add_options(parser, PairedConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), _work, argv, "nothing was written")


def _work(args: argparse.Namespace) -> int:
    config = config_from_args(PairedConfig, args, files=tuple(args.files))
    config.validate()
    result = compare(list(config.files), config.threads, config.rounds, config.block_seconds, engines=config.engines)
    if config.json:
        print(json.dumps(result))
        return 0
    print(
        f"batch-1 p50 per round, {config.rounds} alternating rounds of {config.block_seconds:g} s, "
        f"{config.threads} thread(s):"
    )
    for entry in result["files"]:
        shown = entry["file"] if " on " in entry["file"] else f"{entry['file']} ({entry['engine']})"
        print(
            f"  {shown}: median {entry['p50_us_median']:.1f} us "
            f"(rounds {entry['p50_us_min']:.1f}-{entry['p50_us_max']:.1f})"
        )
    for pair in result["pairs"]:
        print(verdict(pair, config.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
