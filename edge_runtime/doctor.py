"""`python -m edge_runtime doctor`: what this device can run, in a dozen lines."""

from __future__ import annotations

from edge_common.cli import ArgumentParser, run_reporting_errors

from . import system
from .backends import available


def build_parser() -> ArgumentParser:
    return ArgumentParser(prog="python -m edge_runtime doctor",
                          description="Print Python, CPU, installed backends, OpenCV build, cameras and display.")


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return run_reporting_errors(_report, "nothing was written")


def _report() -> int:
    env = system.environment()
    cpu = env["cpu"]
    flags = ", ".join(f"{name}={'yes' if on else 'no'}" for name, on in cpu["flags"].items())
    print(f"python      {env['python']} on {env['platform']}")
    print(f"cpu         {cpu['model']} ({cpu['machine']}, {cpu['cores']} cores); {flags}")
    print(f"int8        {system.int8_note(cpu)}")
    versions = env["versions"]
    for name in ("litert", "tflite_runtime", "tensorflow", "onnxruntime"):
        package = {"litert": "ai_edge_litert"}.get(name, name)
        state = versions.get(package) or ("installed" if available(name) else None)
        print(f"backend     {name:15s} {state or 'not installed'}")
    providers = env["onnxruntime_providers"]
    if providers is not None:  # the first that a session is given and the device has wins
        print(f"onnx        execution providers: {', '.join(providers) or 'none (a broken install?)'}")
    try:
        build = system.opencv_build()
        print(f"opencv      {build['version']}; GUI {build['gui']}; GStreamer {build['gstreamer']}; "
              f"V4L2 {build['v4l2']}; FFmpeg {build['ffmpeg']}")
    except ImportError:
        print("opencv      not installed (pip install opencv-python-headless)")
    cams = system.cameras()
    print(f"cameras     {', '.join(cams) if cams else 'none under /dev/video*'}"
          f"{'; Picamera2 installed (use --source picamera2)' if env['picamera2'] else ''}")
    print(f"display     {system.display() or 'none (the live loop runs headless)'}")
    return 0
