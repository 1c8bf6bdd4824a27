"""``edge-classify teach``: teach a classifier your own things on the device, without TensorFlow.

    edge-classify teach --examples photos/ --output mine.tflite
    edge-classify teach --source 0 --class mug --class cat --output mine.tflite
    edge-classify teach --add mine.tflite --examples more/ --output mine2.tflite
    edge-classify teach --add mine2.tflite --remove mug --output mine3.tflite

Exit codes: 0 written; 2 for a predictable mistake (one ``error:`` line; nothing is written and an
existing file is untouched); 130/143 after Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_common.cli import ArgumentParser, add_options, config_from_args, option, run_command

from ..accelerators import EngineOptions
from .head import HEADS
from .taught import RECOMMENDED_SHOTS

if TYPE_CHECKING:
    from .head import Head
    from .taught import Base

log = logging.getLogger("edge_classify.runtime")


@dataclass
class TeachOptions:
    """The options of ``edge-classify teach``."""

    output: str = option(
        help="the taught model file to write (.tflite or .onnx, as the extractor)", required=True, metavar="FILE"
    )
    extractor: str | None = option(
        help="a feature extractor from `python -m convert.features` (default: "
        "imagenet_lite0/features/features_int8.tflite in the runs folder: "
        "$EDGE_RUNS_DIR, else the checkout's runs/)",
        metavar="FILE",
    )
    examples: str | None = option(help="teach from photos: DIR/<class>/* (one folder per class)", metavar="DIR")
    source: str | None = option(
        help="teach from a camera or video instead: capture --shots frames of each --class", metavar="SOURCE"
    )
    classes: tuple[str, ...] = option(
        (), "the classes to capture from --source, in order", flag="--class", metavar="NAME"
    )
    shots: int = option(20, "frames captured per class from --source", bounds=(1, 1000))
    interval: float = option(0.25, "seconds between captured frames (video time for files)", bounds=(0, 60))
    countdown: float = option(
        3.0, "seconds to get ready before each class is captured (video time for files)", bounds=(0, 60)
    )
    add: str | None = option(help="a taught file to add the new classes to (its classes are kept)", metavar="FILE")
    remove: tuple[str, ...] = option((), "classes of --add FILE to drop", metavar="NAME")
    replace: bool = option(False, "teach a class that --add FILE already has anew (else refused)")
    head: str = option("logistic", "the head trained in numpy", choices=HEADS)
    flip: bool = option(True, "also learn each photo mirrored left to right")
    overwrite: bool = option(False, "replace --output when it exists")
    quiet: bool = option(False, "no progress lines")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="edge-classify teach",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 written, 2 bad input (nothing written), 130 Ctrl-C, 143 SIGTERM",
    )
    add_options(parser, TeachOptions)
    add_options(parser, EngineOptions)
    return parser


def main(argv: list[str]) -> int:
    return run_command(
        build_parser(),
        lambda args: _teach(config_from_args(TeachOptions, args), config_from_args(EngineOptions, args)),
        argv,
    )


def _teach(options: TeachOptions, engine: EngineOptions | None = None) -> int:
    from edge_common.errors import printable

    started = time.perf_counter()
    done = teach_file(options, engine)
    shots, labels = done["shots"], done["labels"]
    few = [name for name in labels if shots.get(name, 0) < RECOMMENDED_SHOTS]
    if few:
        log.warning(
            "%s taught from fewer than %d examples; %d or more a class are advised (see docs/runtime.md)",
            ", ".join(f"{name!r} ({shots.get(name, 0)})" for name in few),
            RECOMMENDED_SHOTS,
            RECOMMENDED_SHOTS,
        )
    shown = ", ".join(f"{printable(n)} {shots.get(n, 0)}" for n in labels)
    print(
        f"taught {len(labels)} classes ({shown} "
        f"examples) on {done['extractor']} with a {done['head']} head in "
        f"{time.perf_counter() - started:.1f} s; none of these above {done['threshold']:.4f} (keeps "
        f"{done['in_class_accepted']:.0%} of the examples, each left out in turn); wrote {done['output']} "
        f"({done['bytes']:,} bytes)",
        flush=True,
    )
    return 0


def teach_file(options: TeachOptions, engine: EngineOptions | None = None) -> dict:
    """Teach one file as ``edge-classify teach`` does (checked, proved, written atomically); returns what
    was taught: labels, shots per class, the head, its threshold, the file and its size. The live
    page's Teach panel calls this too.

    Raises:
        EdgeError: bad options or examples; nothing is written.
    """
    from edge_common.files import atomic_write_bytes

    from ..errors import EdgeError
    from . import examples as examples_mod
    from .taught import open_extractor, open_taught, teach

    engine = engine or EngineOptions()
    engine.check()
    output = Path(options.output).expanduser()
    extractor_path = None if options.add else _extractor_path(options.extractor)
    _check_paths(options, output, extractor_path)
    if options.add:
        base = open_taught(options.add, **engine.kwargs())
        if options.extractor:
            other = open_extractor(options.extractor, **engine.kwargs())
            if other.extractor.extractor_id != base.extractor.extractor_id:
                raise EdgeError(
                    f"--add {options.add} was taught on extractor {base.extractor.extractor_id}, not "
                    f"{other.extractor.extractor_id} ({options.extractor}); leave out --extractor"
                )
    else:
        assert extractor_path is not None  # resolved above whenever there is no --add
        base = open_extractor(extractor_path, **engine.kwargs())
    kind = base.extractor.kind
    if output.suffix.lower() != f".{kind}":
        raise EdgeError(f"--output {output}: a .{kind} extractor makes .{kind} files; name it {output.stem}.{kind}")
    progress = None if options.quiet else examples_mod.progress_line
    if options.examples:
        new = examples_mod.from_folder(options.examples, base.extractor, flip=options.flip, progress=progress)
    elif options.source:
        new = examples_mod.from_source(
            options.source,
            options.classes,
            base.extractor,
            shots=options.shots,
            interval=options.interval,
            countdown=options.countdown,
            flip=options.flip,
        )
    else:
        new = examples_mod.Examples.empty(base.extractor.dim)
    data, metadata, head = teach(
        base, new, remove=options.remove, replace_classes=options.replace, method=options.head, name=output.stem
    )
    _prove(data, base, head, output, engine)
    atomic_write_bytes(output, data)
    return {
        "labels": list(metadata.labels),
        "shots": dict(metadata.extra["taught"]["shots"]),
        "extractor": base.extractor.metadata.model,
        "head": head.method,
        "threshold": float(head.threshold),
        "in_class_accepted": float(head.in_class_accepted),
        "output": str(output),
        "bytes": len(data),
    }


def _check_paths(options: TeachOptions, output: Path, extractor: str | None) -> None:
    """Refuse an output that is an input (the extractor actually used included, whether given or the
    default, links resolved), or an existing file without --overwrite."""
    from ..errors import EdgeError
    from .taught import check_class_names

    if not (options.examples or options.source or options.remove):
        raise EdgeError(
            "nothing to teach: pass --examples DIR, or --source SOURCE with --class NAME, or --add FILE "
            "with --remove NAME"
        )
    if options.examples and options.source:
        raise EdgeError("pass --examples or --source, not both")
    if options.source and not options.classes:
        raise EdgeError("--source needs the classes to capture: --class NAME [--class NAME ...]")
    if options.classes and not options.source:
        raise EdgeError("--class names what to capture from --source; with --examples, the folders name the classes")
    check_class_names(options.classes, "--class")
    if options.remove and not options.add:
        raise EdgeError("--remove drops classes of a taught file: pass it with --add FILE")
    if output.suffix.lower() not in (".tflite", ".onnx"):
        raise EdgeError(f"--output {output}: name a .tflite or .onnx file")
    resolved = output.resolve()
    for flag, value in (
        ("--add", options.add),
        ("--extractor", extractor),
        ("--examples", options.examples),
        ("--source", options.source),
    ):
        if value and _same_file(Path(value).expanduser(), output, resolved):
            raise EdgeError(f"--output {output} is the {flag} input; write to another file")
    if output.is_dir():
        raise EdgeError(f"--output {output} is a folder; name a .tflite or .onnx file")
    if output.exists() and not options.overwrite:
        raise EdgeError(f"--output {output} exists; pass --overwrite to replace it, or name another file")


def _same_file(path: Path, output: Path, resolved: Path) -> bool:
    """Whether ``path`` is ``output``: the same name once links are resolved, or a hard link to it."""
    import os

    if path.resolve() == resolved:
        return True
    try:
        return os.path.samefile(path, output)
    except OSError:  # one of them does not exist yet
        return False


def _extractor_path(given: str | None) -> str:
    from ..errors import EdgeError
    from ..features import default_extractor

    if given:
        return given
    candidate = default_extractor()
    if candidate.is_file():
        return str(candidate)
    raise EdgeError(
        f"no feature extractor at {candidate}: pass --extractor FILE ({candidate.name} from a checkout's "
        f"runs/{candidate.parent.relative_to(candidate.parents[2])}/, or `python -m convert.features`)"
    )


def _prove(data: bytes, base: "Base", head: "Head", output: Path, engine: EngineOptions) -> None:
    """Run the written bytes in the real interpreter on a few examples: the file must give the head's
    own probabilities and out-of-class scores for the extractor's features (else nothing is written)."""
    import os
    import tempfile

    from ..classifier import Classifier
    from ..errors import EdgeError
    from ..preprocess import to_input_tensor

    rng = np.random.default_rng(0)
    shape = base.extractor.input_spec.shape[1:]
    probes = rng.integers(0, 256, (3,) + tuple(shape), dtype=np.uint8)
    handle, name = tempfile.mkstemp(suffix=output.suffix, prefix=".teach-proof-")
    os.close(handle)
    try:
        Path(name).write_bytes(data)
        with Classifier.open(name, **engine.kwargs()) as classifier:
            for image in probes:
                features = base.extractor.features_of_image(image)
                probabilities, score = classifier.infer_all(to_input_tensor(image[None], classifier.input_spec))
                want_p, want_u = head.probabilities(features[None])[0], head.unknown_scores(features[None])[0]
                # Written as "not close" so that NaN (never "too far") fails the proof too.
                close = (
                    np.max(np.abs(probabilities - want_p)) <= 1e-3 and score is not None and abs(score - want_u) <= 1e-3
                )
                if not close:
                    raise EdgeError(
                        "the written model does not reproduce its head (a bug: please report it); nothing was written"
                    )
    finally:
        Path(name).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
