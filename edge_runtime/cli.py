"""`python -m edge_runtime`: the live classifier, plus `doctor` and `inspect`.

    python -m edge_runtime --model FILE --source SOURCE [options]
    python -m edge_runtime doctor
    python -m edge_runtime inspect FILE
"""

from __future__ import annotations

import argparse
import json
import sys

from .backends import BACKENDS
from edge_common.cli import ArgumentParser, add_options, config_from_args, run_reporting_errors, setup_logging
from edge_common.files import atomic_write_text, dump_json

from .errors import EdgeError


def build_parser() -> ArgumentParser:
    from .live import LiveConfig
    from .sources import CaptureOptions

    parser = ArgumentParser(
        prog="python -m edge_runtime",
        description="Classify frames from a camera, video, images or stream with a converted .tflite/.onnx model. "
                    "Other commands: `python -m edge_runtime doctor` (what this device has), "
                    "`python -m edge_runtime inspect FILE` (a model's embedded metadata).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sources: 0 (camera index) | picamera2 | video.mp4 | image.jpg | folder/ | 'glob/*.jpg' | "
               "rtsp://host/stream | 'nvarguscamerasrc ! ... ! appsink' (GStreamer)",
    )
    parser.add_argument("--model", required=True, help="a .tflite or .onnx file made by `python -m convert`")
    parser.add_argument("--source", default="0", help="what to read frames from (default: camera 0)")
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="interpreter (default: by file type)")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: the interpreter's)")
    add_options(parser, CaptureOptions)
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--headless", dest="headless", action="store_true", default=None,
                      help="never open a window (default: headless when there is no display)")
    view.add_argument("--window", dest="headless", action="store_false", help="insist on a window (needs the gui extra)")
    add_options(parser, LiveConfig)
    parser.add_argument("--loop", action="store_true", help="repeat image sources forever")
    parser.add_argument("--summary-json", help="also write the end-of-run summary here as JSON")
    parser.add_argument("--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "doctor":
        from .doctor import main as doctor_main

        return doctor_main(argv[1:])
    if argv and argv[0] == "inspect":
        return inspect_main(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_reporting_errors(lambda: _classify(args), "outputs written so far were closed and kept")


def _classify(args: argparse.Namespace) -> int:
    from .classifier import Classifier
    from .live import LiveConfig, run
    from .sources import CaptureOptions, open_source

    config = config_from_args(LiveConfig, args, headless=args.headless)
    config.validate()
    for name in ("threads", "width", "height"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise EdgeError(f"--{name} must be at least 1")
    classifier = Classifier.open(args.model, backend=args.backend, threads=args.threads)
    print(classifier.describe(), file=sys.stderr)
    options = config_from_args(CaptureOptions, args)
    source = open_source(args.source, options, loop_images=args.loop)
    stats = run(classifier, source, config, reopen=lambda: open_source(args.source, options))
    print(stats.summary(), file=sys.stderr)
    if args.summary_json:
        atomic_write_text(args.summary_json, dump_json(stats.to_dict()))
    return 0


def inspect_main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="python -m edge_runtime inspect",
                            description="Print a model file's embedded metadata (labels, input contract, accuracy).")
    parser.add_argument("model", help="a .tflite or .onnx file")
    parser.add_argument("--json", action="store_true", help="print the raw metadata JSON")
    args = parser.parse_args(argv)
    return run_reporting_errors(lambda: _inspect(args), "nothing was written")


def _inspect(args: argparse.Namespace) -> int:
    from .metadata import load_bytes, read_metadata

    kind, data = load_bytes(args.model)
    metadata = read_metadata(kind, data, args.model)
    if args.json:
        print(json.dumps(metadata.to_dict(), indent=2))
        return 0
    spec = metadata.input
    quant = f", quantization scale {spec.quantization.scale:g} zero point {spec.quantization.zero_point}" \
        if spec.quantization else ""
    print(f"model:   {metadata.model} ({metadata.format}, {len(data):,} bytes)")
    print(f"input:   {spec.height}x{spec.width}x{spec.channels} {spec.color_order} {spec.layout} {spec.dtype}, "
          f"pixels {spec.pixel_range[0]:g}..{spec.pixel_range[1]:g}, resize {spec.resize}, fit {spec.fit}"
          f"{f' {spec.crop:g}' if spec.fit == 'crop' else ''}{quant}")
    print(f"output:  {metadata.output.kind} ({metadata.output.dtype})")
    unknown = metadata.output.unknown
    print(f"unknown: {unknown.score} above {unknown.threshold:.4f} is none of these (calibrated to keep "
          f"{unknown.keep:.0%} of held-out in-class photos)" if unknown else
          "unknown: none (this file cannot say none of these)")
    print(f"labels:  {', '.join(metadata.labels)}")
    width = max([len(key) + 2 for key in metadata.accuracy] + [9])
    for key, value in metadata.accuracy.items():
        # Counts as whole numbers; fractions (accuracy, agreement) all with four decimals, so 1 reads 1.0000.
        shown = f"{int(value):,}" if key.endswith(("images", "count")) else f"{value:.4f}"
        print(f"{key + ':':{width}s}{shown}")
    return 0
