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
from typing import TYPE_CHECKING, Callable

from edge_common.cli import ArgumentParser, add_options, config_from_args, option, run_command

from .accelerators import EngineOptions

if TYPE_CHECKING:
    from .homeassistant import HomeAssistant


@dataclass
class RunOptions:
    """What to run and how: the flags of ``python -m edge_runtime`` that are not the loop's or the capture's."""

    model: str = option(help="a .tflite or .onnx file made by `python -m convert`", required=True)
    source: tuple[str, ...] = option(
        ("0",),
        "what to read frames from; give it again for several cameras, each optionally named "
        "(--source door=rtsp://... --source rack=0) (default: camera 0)",
        metavar="[NAME=]SOURCE",
    )
    loop: bool = option(False, "repeat image sources and video files until stopped")
    watch_model: bool = option(
        False, "swap in the model file when it changes on disk (SIGHUP does the same), checked first"
    )
    second_look: str = option(
        "auto",
        "look again at zoomed regions of unsure frames: auto (as the model file's contract says), on, off",
        choices=("auto", "on", "off"),
    )
    verbose: bool = option(False, "debug logging")


def build_parser() -> ArgumentParser:
    from .clips import ClipOptions
    from .events import EventOptions
    from .live import LiveConfig
    from .serve import ServeOptions
    from .sources import CaptureOptions
    from .teach_panel import TeachPanelOptions

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
    parser.add_argument(
        "--ha-discovery",
        nargs="?",
        const="homeassistant",
        default=None,
        metavar="PREFIX",
        help="with --mqtt: announce each camera to Home Assistant by MQTT discovery under PREFIX "
        "(default: homeassistant): a label sensor, an in-view binary sensor per class, availability",
    )
    parser.add_argument(
        "--ha-node", metavar="NAME", help="the node id in discovery topics and unique ids (default: from the host name)"
    )
    add_options(parser, ClipOptions)
    add_options(parser, TeachPanelOptions)
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


def parse_sources(values: tuple[str, ...]) -> list[tuple[str | None, str]]:
    """``[NAME=]SOURCE`` values as (name or None, source); a name is letters, digits, ``_`` and ``-``
    before the first ``=``, so URLs with ``=`` in their query keep working.

    Raises:
        EdgeError: two cameras with one name.
    """
    import re
    from pathlib import Path

    parsed: list[tuple[str | None, str]] = []
    for value in values:
        name, sep, target = value.partition("=")
        if sep and target and re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name) and not Path(value).exists():
            parsed.append((name, target))
        else:
            parsed.append((None, value))
    names = [name for name, _ in parsed if name]
    if len(set(names)) != len(names):
        from .errors import EdgeError

        raise EdgeError(f"--source names must differ; {', '.join(sorted(names))} has a repeat")
    return parsed


def _classify(args: argparse.Namespace) -> int:
    from .classifier import Classifier
    from .clips import ClipOptions, Clips
    from .errors import EdgeError
    from .events import EventOptions
    from .events import check_options as check_events
    from .live import LiveConfig, run
    from .serve import ServeOptions
    from .service import Service
    from .sources import CaptureOptions, open_source
    from .swap import FileWatcher, ModelSlot
    from .teach_panel import TeachPanel, TeachPanelOptions

    options = config_from_args(RunOptions, args)
    engine = config_from_args(EngineOptions, args)
    config = config_from_args(LiveConfig, args)
    capture = config_from_args(CaptureOptions, args)
    serve = config_from_args(ServeOptions, args)
    event_options = config_from_args(EventOptions, args)
    clip_options = config_from_args(ClipOptions, args)
    panel_options = config_from_args(TeachPanelOptions, args)
    engine.check()
    config.validate()
    check_events(event_options)
    if (panel_options.teach_output or panel_options.teach_add) and not panel_options.teach_dir:
        raise EdgeError("--teach-output and --teach-add belong to the Teach panel: pass --teach-dir DIR")
    if panel_options.teach_dir and not serve.serve:
        raise EdgeError("--teach-dir adds a Teach panel to the live page: pass --serve [HOST:]PORT too")
    if args.ha_discovery is not None and not event_options.mqtt:
        raise EdgeError("--ha-discovery publishes to the broker of --mqtt; pass --mqtt mqtt://HOST[:PORT]/TOPIC")
    wanted = parse_sources(options.source)

    def open_model(path: object) -> Classifier:
        return Classifier.open(str(path), second_look=options.second_look, **engine.kwargs())

    classifier = open_model(options.model)
    print(classifier.describe(), file=sys.stderr)
    slot = ModelSlot(classifier, open_model)
    try:  # checked before any camera opens: a wrong --teach-output is one line, at once
        teach = TeachPanel(panel_options, slot, engine.__dict__) if panel_options.teach_dir else None
    except BaseException:
        classifier.close()
        raise
    sources: list = []
    try:
        for name, target in wanted:
            source = open_source(target, capture, loop=options.loop)
            sources.append(source)
            if name:
                source.name = name
            elif len(wanted) > 1 and source.name in [s.name for s in sources[:-1]]:
                source.name = f"{source.name} #{len(sources)}"
        if options.loop and not any(source.paths or source.loop for source in sources):
            names = ", ".join(source.name for source in sources)
            raise EdgeError(f"--loop repeats image sources and video files; {names} runs until stopped")
    except BaseException:
        for source in sources:
            source.close()
        if teach is not None:
            teach.close()
        classifier.close()
        raise
    clips = Clips(clip_options) if clip_options.clips else None
    ha = _home_assistant(args, event_options, [s.name for s in sources], classifier) if args.ha_discovery else None
    service = Service.from_environment()
    watcher = FileWatcher(slot, classifier.path) if options.watch_model and classifier.path else None
    restore = _on_sighup(lambda: slot.request(why="SIGHUP"))
    try:
        stats = run(
            slot,
            sources,
            config,
            reopen=[_reopener(target, capture, source.name) for (_, target), source in zip(wanted, sources)],
            serve=serve,
            event_options=event_options,
            service=service,
            clips=clips,
            listeners=[ha.event] if ha else None,
            teach=teach,
        )
    finally:
        restore()
        if teach is not None:
            teach.close()
        if watcher is not None:
            watcher.stop()
        if ha is not None:
            ha.close()
        if service is not None:
            service.close()
    print(stats.summary(), file=sys.stderr)
    return 128 + stats.signal if stats.signal else 0


def _reopener(target: str, capture: object, name: str):  # noqa: ANN202 - a closure
    from .sources import open_source

    def reopen():  # noqa: ANN202
        source = open_source(target, capture)  # type: ignore[arg-type]
        source.name = name  # the camera keeps its name across reconnects
        return source

    return reopen


def _on_sighup(action: "Callable[[], None]") -> "Callable[[], None]":
    """SIGHUP asks for a model swap (where the platform has the signal); returns the undo."""
    import signal

    if not hasattr(signal, "SIGHUP"):
        return lambda: None
    previous = signal.signal(signal.SIGHUP, lambda _signum, _frame: action())

    def restore() -> None:
        signal.signal(signal.SIGHUP, previous)

    return restore


def _home_assistant(
    args: argparse.Namespace, events: object, cameras: list[str], classifier: object
) -> "HomeAssistant":
    from .homeassistant import HomeAssistant
    from .system import _version_or_none

    return HomeAssistant(
        events.mqtt,  # type: ignore[attr-defined]
        args.ha_discovery,
        cameras,
        classifier.labels,  # type: ignore[attr-defined]
        classifier.metadata.model,  # type: ignore[attr-defined]
        node=args.ha_node,
        version=_version_or_none("edge-classify") or "",
    )


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
