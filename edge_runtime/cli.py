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
from .cliutil import ArgumentParser, setup_logging
from .errors import EdgeError, one_line


def build_parser() -> ArgumentParser:
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
    parser.add_argument("--width", type=int, help="capture width for cameras and streams (e.g. 640)")
    parser.add_argument("--height", type=int, help="capture height (e.g. 480)")
    parser.add_argument("--fps", type=float, help="requested capture rate for cameras")
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--headless", dest="headless", action="store_true", default=None,
                      help="never open a window (default: headless when there is no display)")
    view.add_argument("--window", dest="headless", action="store_false", help="insist on a window (needs the gui extra)")
    parser.add_argument("--output", help="write the annotated video here (.mp4 or .avi)")
    parser.add_argument("--output-fps", type=float, help="frame rate of --output (default: the source's, else 30)")
    parser.add_argument("--jsonl", help="write one JSON line per frame here (index, time, top-k, ms per stage)")
    parser.add_argument("--rotate-minutes", type=float, help="start a new --output/--jsonl segment this often")
    parser.add_argument("--threshold", type=float, default=0.0, help="show 'uncertain' below this score (0..1)")
    parser.add_argument("--smooth", type=int, default=1, help="average probabilities over the last N frames")
    parser.add_argument("--top-k", type=int, default=3, help="how many classes to report per frame")
    parser.add_argument("--bars", action="store_true", help="draw top-k probability bars")
    parser.add_argument("--no-overlay", action="store_true", help="do not draw on frames")
    parser.add_argument("--max-frames", type=int, help="stop after N frames")
    parser.add_argument("--loop", action="store_true", help="repeat image sources forever")
    parser.add_argument("--reconnect-timeout", type=float, default=30.0,
                        help="seconds a lost camera/stream may take to come back before giving up (default 30)")
    parser.add_argument("--summary-json", help="also write the end-of-run summary here as JSON")
    parser.add_argument("--verbose", action="store_true")
    return parser


def _validate(args: argparse.Namespace) -> str | None:
    if not 0.0 <= args.threshold <= 1.0:
        return "--threshold must be between 0 and 1"
    for name in ("smooth", "top_k", "threads", "max_frames", "width", "height"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return f"--{name.replace('_', '-')} must be at least 1"
    if args.rotate_minutes is not None and args.rotate_minutes <= 0:
        return "--rotate-minutes must be positive"
    if args.reconnect_timeout <= 0:
        return "--reconnect-timeout must be positive"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "doctor":
        from .doctor import main as doctor_main

        return doctor_main(argv[1:])
    if argv and argv[0] == "inspect":
        return inspect_main(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    problem = _validate(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from .classifier import Classifier
    from .live import LiveConfig, run
    from .sources import CaptureOptions, open_source

    try:
        classifier = Classifier.open(args.model, backend=args.backend, threads=args.threads)
        print(classifier.describe(), file=sys.stderr)
        options = CaptureOptions(width=args.width, height=args.height, fps=args.fps)
        source = open_source(args.source, options, loop_images=args.loop)
        config = LiveConfig(headless=args.headless, output=args.output, output_fps=args.output_fps, jsonl=args.jsonl,
                            rotate_minutes=args.rotate_minutes, threshold=args.threshold, smooth=args.smooth,
                            top_k=args.top_k, bars=args.bars, overlay=not args.no_overlay, max_frames=args.max_frames,
                            reconnect_timeout=args.reconnect_timeout)
        stats = run(classifier, source, config, reopen=lambda: open_source(args.source, options))
    except EdgeError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    print(stats.summary(), file=sys.stderr)
    if args.summary_json:
        from .cliutil import atomic_write_text, dump_json

        try:
            atomic_write_text(args.summary_json, dump_json(stats.to_dict()))
        except EdgeError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            return exc.exit_code
    return 0


def inspect_main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="python -m edge_runtime inspect",
                            description="Print a model file's embedded metadata (labels, input contract, accuracy).")
    parser.add_argument("model", help="a .tflite or .onnx file")
    parser.add_argument("--json", action="store_true", help="print the raw metadata JSON")
    args = parser.parse_args(argv)
    from .metadata import load_bytes, read_metadata

    try:
        kind, data = load_bytes(args.model)
        metadata = read_metadata(kind, data, args.model)
    except EdgeError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(metadata.to_dict(), indent=2))
        return 0
    spec = metadata.input
    quant = f", quantization scale {spec.quantization.scale:g} zero point {spec.quantization.zero_point}" \
        if spec.quantization else ""
    print(f"model:   {metadata.model} ({metadata.format}, {len(data):,} bytes)")
    print(f"input:   {spec.height}x{spec.width}x{spec.channels} {spec.color_order} {spec.layout} {spec.dtype}, "
          f"pixels {spec.pixel_range[0]:g}..{spec.pixel_range[1]:g}, resize {spec.resize}{quant}")
    print(f"output:  {metadata.output.kind} ({metadata.output.dtype})")
    print(f"labels:  {', '.join(metadata.labels)}")
    for key, value in metadata.accuracy.items():
        print(f"{key + ':':9s}{value:g}")
    return 0
