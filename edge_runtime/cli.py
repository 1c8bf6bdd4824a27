"""`python -m edge_runtime`: the live classifier, plus `doctor` and `inspect`.

    python -m edge_runtime --model FILE --source SOURCE [options]
    python -m edge_runtime doctor
    python -m edge_runtime inspect FILE
    python -m edge_runtime teach --examples DIR --output FILE   (see edge_runtime/teach)
    python -m edge_runtime tune --model FILE                    (see edge_runtime/tune.py)

Exit codes: 0 when the source ended, ``--max-frames`` was reached or q/Esc was pressed; 2 for a
predictable mistake (one ``error:`` line); 130 after Ctrl-C and 143 after SIGTERM, once the
outputs are complete (the shell's 128 + signal rule, as train and convert); 141 when the reader of
stdout went away (``| head``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from edge_common.cli import ArgumentParser, add_options, config_from_args, option, run_command

from .accelerators import EngineOptions


@dataclass
class RunOptions:
    """What to run and how: the flags of ``python -m edge_runtime`` that are not the loop's or the capture's."""

    model: str = option(help="a .tflite or .onnx file made by `python -m convert`", required=True)
    source: str = option("0", "what to read frames from (default: camera 0)")
    loop: bool = option(False, "repeat image sources and video files until stopped")
    second_look: str = option(
        "auto",
        "look again at zoomed regions of unsure frames: auto (as the model file's contract says), on, off",
        choices=("auto", "on", "off"),
    )
    verbose: bool = option(False, "debug logging")


def build_parser() -> ArgumentParser:
    from .events import EventOptions
    from .live import LiveConfig
    from .serve import ServeOptions
    from .sources import CaptureOptions

    parser = ArgumentParser(
        prog="python -m edge_runtime",
        description="Classify frames from a camera, video, images or stream with a converted .tflite/.onnx model. "
        "Other commands: `python -m edge_runtime doctor` (what this device has), "
        "`python -m edge_runtime inspect FILE` (a model's embedded metadata), "
        "`python -m edge_runtime teach ...` (teach a classifier your own things), "
        "`python -m edge_runtime tune --model FILE` (the fastest engine for a file on this device).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sources: 0 (camera index) | picamera2 | video.mp4 | image.jpg | folder/ | 'glob/*.jpg' | "
        "rtsp://host/stream | 'nvarguscamerasrc ! ... ! appsink' (GStreamer)\n"
        "exit codes: 0 done, 2 bad input or a failed source/output, 130 Ctrl-C, 143 SIGTERM",
    )
    add_options(parser, RunOptions, skip=("verbose",))
    add_options(parser, EngineOptions)
    add_options(parser, CaptureOptions)
    add_options(parser, LiveConfig)
    add_options(parser, ServeOptions)
    add_options(parser, EventOptions)
    add_options(parser, RunOptions, only=("verbose",))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "doctor":
        from .doctor import main as doctor_main

        return doctor_main(argv[1:])
    if argv and argv[0] == "inspect":
        return inspect_main(argv[1:])
    if argv and argv[0] == "teach":
        from .teach.command import main as teach_main

        return teach_main(argv[1:])
    if argv and argv[0] == "tune":
        from .tune import main as tune_main

        return tune_main(argv[1:])
    return run_command(build_parser(), _classify, argv, "outputs written so far were closed and kept")


def _classify(args: argparse.Namespace) -> int:
    from .classifier import Classifier
    from .events import EventOptions
    from .events import check_options as check_events
    from .live import LiveConfig, run
    from .serve import ServeOptions
    from .sources import CaptureOptions, open_source

    options = config_from_args(RunOptions, args)
    engine = config_from_args(EngineOptions, args)
    config = config_from_args(LiveConfig, args)
    capture = config_from_args(CaptureOptions, args)
    serve = config_from_args(ServeOptions, args)
    event_options = config_from_args(EventOptions, args)
    engine.check()
    config.validate()
    check_events(event_options)
    classifier = Classifier.open(options.model, second_look=options.second_look, **engine.kwargs())
    print(classifier.describe(), file=sys.stderr)
    source = open_source(options.source, capture, loop=options.loop)
    if options.loop and not (source.paths or source.loop):
        from .errors import EdgeError

        source.close()
        raise EdgeError(f"--loop repeats image sources and video files; {source.name} is live and runs until stopped")
    stats = run(
        classifier,
        source,
        config,
        reopen=lambda: open_source(options.source, capture),
        serve=serve,
        event_options=event_options,
    )
    print(stats.summary(), file=sys.stderr)
    return 128 + stats.signal if stats.signal else 0


@dataclass
class InspectOptions:
    """The options of ``python -m edge_runtime inspect`` beside the file."""

    json: bool = option(False, "print the raw metadata JSON")


def build_inspect_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m edge_runtime inspect",
        description="Print a model file's embedded metadata (labels, input contract, accuracy).",
    )
    parser.add_argument("model", help="a .tflite or .onnx file")
    add_options(parser, InspectOptions)
    return parser


def inspect_main(argv: list[str]) -> int:
    return run_command(
        build_inspect_parser(), lambda args: _inspect(args.model, config_from_args(InspectOptions, args)), argv
    )


def _inspect(model: str, options: InspectOptions) -> int:
    from edge_common.errors import printable

    from .metadata import load_bytes, read_metadata

    kind, data = load_bytes(model)
    metadata = read_metadata(kind, data, model)
    if options.json:
        print(json.dumps(metadata.to_dict(), indent=2))  # JSON escapes control characters itself
        return 0
    spec = metadata.input
    quant = (
        f", quantization scale {spec.quantization.scale:g} zero point {spec.quantization.zero_point}"
        if spec.quantization
        else ""
    )
    print(f"model:   {printable(metadata.model)} ({metadata.format}, {len(data):,} bytes)")
    print(
        f"input:   {spec.height}x{spec.width}x{spec.channels} {spec.color_order} {spec.layout} {spec.dtype}, "
        f"pixels {spec.pixel_range[0]:g}..{spec.pixel_range[1]:g}, resize {spec.resize}, fit {spec.fit}"
        f"{f' {spec.crop:g}' if spec.fit == 'crop' else ''}{quant}"
    )
    print(f"output:  {metadata.output.kind} ({metadata.output.dtype})")
    unknown = metadata.output.unknown
    if metadata.is_extractor:
        print(
            f"features: {metadata.extra.get('features', '?')} values per image: a feature extractor for "
            "`edge-classify teach`, not a classifier"
        )
    else:
        print(
            f"unknown: {unknown.score} above {unknown.threshold:.4f} is none of these (calibrated to keep "
            f"{unknown.keep:.0%} of held-out in-class photos)"
            if unknown
            else "unknown: none (this file cannot say none of these)"
        )
        print(f"labels:  {', '.join(printable(label) for label in metadata.labels)}")
        looks = metadata.second_look
        print(
            f"second look: below {looks.unsure:.0%} or none of these, at {', '.join(zoom.name for zoom in looks.zooms)}"
            if looks
            else "second look: not in the contract (--second-look on turns it on)"
        )
    width = max([len(key) + 2 for key in metadata.accuracy] + [9])
    for key, value in metadata.accuracy.items():
        # Counts as whole numbers; fractions (accuracy, agreement) all with four decimals, so 1 reads 1.0000.
        shown = f"{int(value):,}" if key.endswith(("images", "count")) else f"{value:.4f}"
        print(f"{printable(key) + ':':{width}s}{shown}")
    return 0
