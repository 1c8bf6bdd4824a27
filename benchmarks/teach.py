"""How well ``edge-classify teach`` learns from a few photos, and how fast.

On the repository's clothing photos (10 classes): the features of every training photo (and its
mirror) and of the 341 held-out photos are computed once through the extractor file in the real
interpreter; then, for each number of shots a class (1, 5, 10, 20 and all) and each of ``--draws``
seeded draws of which photos, each head is fitted exactly as ``teach`` fits it and measured on the
held-out photos: accuracy, the share of them accepted (not "none of these"), and with ``--others
DIR`` the share of photos of other things accepted. Finally the real command teaches 200 photos (20
a class) from a folder, timed end to end. Writes ``reports/teach.json`` and ``reports/teach.md``.

    python -m benchmarks.teach [--others DIR] [--draws 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.cli import ArgumentParser, add_options, config_from_args, option, run_command
from edge_common.errors import EdgeError
from edge_runtime.accelerators import MAX_THREADS


@dataclass(frozen=True)
class TeachBenchConfig:
    """Options of ``python -m benchmarks.teach``."""

    extractor: str | None = option(
        help="the feature extractor file (default: the shipped one in the runs folder)", metavar="FILE"
    )
    shots: tuple[int, ...] = option(
        (1, 5, 10, 20, 0), "shots a class to measure (0: every training photo)", bounds=(0, None)
    )
    draws: int = option(5, "seeded draws of the photos for each number of shots", bounds=(1, 100))
    others: str | None = option(
        help="a folder of photos of other things: the share accepted is reported", metavar="DIR"
    )
    limit: int | None = option(
        help="use the first N training and held-out photos a class (quick runs)", bounds=(1, None)
    )
    teach_photos: int = option(20, "photos a class for the timed teach run (10 classes)", bounds=(1, 1000))
    threads: int = option(2, "interpreter threads", bounds=(1, MAX_THREADS))
    reports_dir: str | None = option(help="where teach.json and teach.md go (default: reports/ in the checkout)")


def _photos(root: Path, split: str, limit: int | None) -> tuple[list[Path], np.ndarray, list[str]]:
    classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    paths: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        found = sorted((root / split / name).iterdir())[:limit]
        paths += found
        labels += [k] * len(found)
    return paths, np.asarray(labels, np.int64), classes


def _features(extractor: Any, paths: list[Path], mirror: bool) -> np.ndarray:
    from edge_runtime.images import read_image

    rows = []
    for path in paths:
        frame, why, _ = read_image(path)
        if frame is None:
            raise EdgeError(f"{path}: {why}")
        rows.append(extractor.features_of_frame(np.ascontiguousarray(frame[:, ::-1]) if mirror else frame))
    return np.stack(rows)


def extractor_file(config: TeachBenchConfig) -> str:
    """The extractor measured: the one given, else the shipped one in the runs folder."""
    from edge_runtime.features import default_extractor

    return config.extractor or str(default_extractor())


def measure(config: TeachBenchConfig, root: Path) -> dict[str, Any]:
    from edge_runtime.features import FeatureExtractor
    from edge_runtime.teach.head import HEADS, fit

    train_paths, train_y, classes = _photos(root, "train", config.limit)
    test_paths, test_y, _ = _photos(root, "test", config.limit)
    started = time.perf_counter()
    with FeatureExtractor.open(extractor_file(config), threads=config.threads) as extractor:
        plain = _features(extractor, train_paths, False)
        mirrored = _features(extractor, train_paths, True)
        test = _features(extractor, test_paths, False)
        others = (
            _features(extractor, sorted(p for p in Path(config.others).rglob("*") if p.is_file()), False)
            if config.others
            else None
        )
        source = f"{extractor.metadata.model} ({extractor.metadata.format}, {extractor.backend_name})"
    feature_seconds = time.perf_counter() - started
    rows: dict[str, Any] = {}
    for shots in config.shots:
        for method in HEADS:
            runs = []
            for draw in range(config.draws if shots else 1):
                rng = np.random.default_rng(draw)
                chosen = np.concatenate(
                    [rng.permutation(np.flatnonzero(train_y == k))[: shots or None] for k in range(len(classes))]
                )
                features = np.concatenate([plain[chosen], mirrored[chosen]])
                head = fit(
                    features,
                    np.concatenate([train_y[chosen]] * 2),
                    len(classes),
                    method=method,
                    groups=np.concatenate([chosen, chosen]),
                )
                run = {
                    "accuracy": float(np.mean(np.argmax(head.probabilities(test), 1) == test_y)),
                    "in_class_accepted": float(np.mean(head.unknown_scores(test) <= head.threshold)),
                }
                if others is not None:
                    run["others_accepted"] = float(np.mean(head.unknown_scores(others) <= head.threshold))
                runs.append(run)
            rows[f"{shots or 'all'}/{method}"] = {
                "shots": shots or "all",
                "head": method,
                "draws": len(runs),
                **{
                    key: {"mean": float(np.mean([r[key] for r in runs])), "std": float(np.std([r[key] for r in runs]))}
                    for key in runs[0]
                },
            }
    return {
        "extractor": source,
        "classes": len(classes),
        "train_photos": len(train_paths),
        "test_photos": len(test_paths),
        "others": None if others is None else len(others),
        "feature_seconds": round(feature_seconds, 1),
        "results": rows,
        "teach_run": _timed_teach(config, train_paths, train_y, classes),
    }


def _timed_teach(config: TeachBenchConfig, paths: list[Path], labels: np.ndarray, classes: list[str]) -> dict:
    """The real command on ``teach_photos`` photos a class, timed end to end (process start included)."""
    with tempfile.TemporaryDirectory(prefix="edge-teach-bench-") as tmp:
        folder = Path(tmp) / "examples"
        count = 0
        for k, name in enumerate(classes):
            (folder / name).mkdir(parents=True)
            for path in [p for p, y in zip(paths, labels) if y == k][: config.teach_photos]:
                os.symlink(path.resolve(), folder / name / path.name)
                count += 1
        output = Path(tmp) / f"taught{Path(extractor_file(config)).suffix}"  # the extractor's kind
        command = [
            sys.executable,
            "-m",
            "edge_runtime",
            "teach",
            "--quiet",
            "--extractor",
            extractor_file(config),
            "--examples",
            str(folder),
            "--output",
            str(output),
            "--threads",
            str(config.threads),
        ]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise EdgeError(f"the timed teach run failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
        return {"photos": count, "seconds": round(seconds, 2), "threads": config.threads, "said": result.stdout.strip()}


def markdown(report: dict[str, Any], machine: str) -> str:
    lines = [
        f"# Teaching on the device ({report['classes']} classes, {report['test_photos']} held-out photos)",
        "",
        f"Extractor: {report['extractor']}. Machine: {machine}.",
        "",
        "| shots a class | head | accuracy | held-out accepted | others accepted |",
        "|---|---|---|---|---|",
    ]
    for row in report["results"].values():
        others = row.get("others_accepted")
        shown = f"{100 * others['mean']:.1f} ± {100 * others['std']:.1f}%" if others else "-"
        lines.append(
            f"| {row['shots']} | {row['head']} | {100 * row['accuracy']['mean']:.1f} ± "
            f"{100 * row['accuracy']['std']:.1f}% | {100 * row['in_class_accepted']['mean']:.1f}% | "
            f"{shown} |"
        )
    run = report["teach_run"]
    lines += [
        "",
        f"Mean ± standard deviation over {max(r['draws'] for r in report['results'].values())} seeded "
        "draws; each photo is also learnt mirrored.",
        "",
        f"`edge-classify teach` on {run['photos']} photos: {run['seconds']} s end to end "
        f"({run['threads']} threads, process start included).",
    ]
    return "\n".join(lines) + "\n"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.teach", description=__doc__.split("\n\n")[0])
    add_options(parser, TeachBenchConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), _work, argv, "nothing was written")


def _work(args: argparse.Namespace) -> int:
    from edge_common.files import atomic_write_text, dump_json
    from edge_runtime.system import cpu_info
    from train import paths

    config = config_from_args(TeachBenchConfig, args)
    root = paths.resolve_folder("data/clothing-small")
    report = measure(config, root)
    cpu = cpu_info()
    flags = ", ".join(name for name, on in cpu["flags"].items() if on) or "no SIMD flags"
    machine = f"{cpu['model']}, {cpu['cores']} cores ({flags})"
    report["machine"] = {"description": machine, **cpu}
    reports = Path(config.reports_dir).expanduser() if config.reports_dir else paths.default_reports_dir()
    reports.mkdir(parents=True, exist_ok=True)
    atomic_write_text(reports / "teach.json", dump_json(report))
    text = markdown(report, machine)
    atomic_write_text(reports / "teach.md", text)
    print(text, end="")
    print(f"wrote {reports / 'teach.json'} and teach.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
