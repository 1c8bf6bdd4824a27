"""`python -m edge_runtime doctor`: what this device can run, in a dozen lines.

With ``--accelerator X`` it also says whether X is usable here (exit 2 with what to install if not);
with ``--model FILE``, which engine and accelerator would run that file with these options.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_common.cli import ArgumentParser, add_options, config_from_args, option, run_command

from . import accelerators as accel
from . import system
from .accelerators import EngineOptions
from .backends import available


@dataclass
class DoctorOptions:
    """The options of ``python -m edge_runtime doctor`` beside the engine's."""

    model: str | None = option(help="also open this file with the engine options and say what runs it", metavar="FILE")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m edge_runtime doctor",
        description="Print Python, CPU, installed backends, accelerators, OpenCV build, cameras and display.",
    )
    add_options(parser, DoctorOptions)
    add_options(parser, EngineOptions)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(
        build_parser(),
        lambda args: _report(config_from_args(DoctorOptions, args), config_from_args(EngineOptions, args)),
        argv,
    )


def _report(options: DoctorOptions | None = None, engine: EngineOptions | None = None) -> int:
    options, engine = options or DoctorOptions(), engine or EngineOptions()
    engine.check()
    env = system.environment()
    cpu = env["cpu"]
    flags = ", ".join(f"{name}={'yes' if on else 'no'}" for name, on in cpu["flags"].items())
    print(f"python      {env['python']} on {env['platform']}")
    print(f"cpu         {cpu['model']} ({cpu['machine']}, {cpu['cores']} cores); {flags}")
    print(f"int8        {system.int8_note(cpu)}")
    versions = env["versions"]
    for name in ("litert", "tflite_runtime", "tensorflow", "onnxruntime", "openvino"):
        package = {"litert": "ai_edge_litert"}.get(name, name)
        state = versions.get(package) or ("installed" if available(name) else None)
        print(f"backend     {name:15s} {state or 'not installed'}")
    providers = env["onnxruntime_providers"]
    if providers is not None:  # the first that a session is given and the device has wins
        print(f"onnx        execution providers: {', '.join(providers) or 'none (a broken install?)'}")
    found = accel.hardware()
    for line in accelerator_lines(found):
        print(f"accelerator {line}")
    for line in found.hints():
        print(f"hint        {line}")
    try:
        build = system.opencv_build()
        print(
            f"opencv      {build['version']}; GUI {build['gui']}; GStreamer {build['gstreamer']}; "
            f"V4L2 {build['v4l2']}; FFmpeg {build['ffmpeg']}"
        )
    except ImportError:
        print("opencv      not installed (pip install opencv-python-headless)")
    cams = system.cameras()
    print(
        f"cameras     {', '.join(cams) if cams else 'none under /dev/video*'}"
        f"{'; Picamera2 installed (use --source picamera2)' if env['picamera2'] else ''}"
    )
    print(f"display     {system.display() or 'none (the live loop runs headless)'}")
    if engine.accelerator != "auto" or engine.delegate:
        _check_usable(engine, found)
    if options.model:
        from .classifier import Classifier

        with Classifier.open(options.model, **engine.kwargs()) as classifier:
            print(f"model       {options.model}: runs on {classifier.engine}")
    return 0


def accelerator_lines(found: accel.Hardware) -> list[str]:
    """What the device has, one line per kind: GPUs, Edge TPUs, OpenVINO's devices."""
    return [
        f"NVIDIA GPU   {', '.join(found.nvidia) or 'none found (nvidia-smi, /dev/nvidia*, a Jetson)'}",
        f"Edge TPU     {', '.join(found.coral) or 'none found (USB 1a6e:089a or 18d1:9302, /dev/apex_*)'}; "
        f"{accel.EDGETPU_LIBRARY} {'at ' + found.libedgetpu if found.libedgetpu else 'not installed'}",
        "OpenVINO     "
        + (
            "devices " + ", ".join(found.openvino_devices)
            if found.openvino_devices is not None
            else "not installed (pip install 'edge-classify[openvino]')"
        ),
    ]


def _check_usable(engine: EngineOptions, found: accel.Hardware) -> None:
    """An explicit --accelerator that cannot run here: exit 2 with what to install."""
    from .errors import BackendUnavailableError

    choice = engine.accelerator
    if choice in ("tensorrt", "cuda"):
        accel.require_providers(choice, found.onnx_providers or [])
        if not found.nvidia:
            raise BackendUnavailableError(
                f"--accelerator {choice}: ONNX Runtime has the provider but no NVIDIA GPU "
                "was found (nvidia-smi, /dev/nvidia*)"
            )
    elif choice == "openvino" and found.openvino_devices is None and accel.OV_EP not in (found.onnx_providers or []):
        raise BackendUnavailableError(f"--accelerator openvino: OpenVINO is not installed; {accel.INSTALL['openvino']}")
    elif choice == "edgetpu" and not (found.coral and found.libedgetpu):
        missing = "no Coral was found" if not found.coral else f"{accel.EDGETPU_LIBRARY} is not installed"
        raise BackendUnavailableError(f"--accelerator edgetpu: {missing}; {accel.INSTALL['edgetpu']}")
    print(f"usable      --accelerator {choice}{' --delegate ' + engine.delegate if engine.delegate else ''}: yes")
