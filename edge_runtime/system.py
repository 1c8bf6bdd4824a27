"""What this machine is: CPU and its vector instructions, OS, Python, backends, OpenCV build, cameras.

Used by ``python -m edge_runtime doctor`` and recorded in every benchmark report.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import platform
import sys
from importlib import metadata as importlib_metadata
from typing import Any

from . import accelerators

_PACKAGES = {
    "numpy": "numpy",
    "opencv": "opencv-python-headless",
    "ai_edge_litert": "ai-edge-litert",
    "tflite_runtime": "tflite-runtime",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "tensorflow": "tensorflow-cpu",
    "keras": "keras",
    "tf2onnx": "tf2onnx",
    "onnx": "onnx",
}


def cpu_info() -> dict[str, Any]:
    """CPU model, cores, and the instructions int8 speed depends on."""
    model, flags = platform.processor() or "", set[str]()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    x86 = {
        "avx2": "avx2" in flags,
        "fma": "fma" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "avx_vnni": "avx_vnni" in flags,
    }
    arm = {"neon": bool(flags & {"neon", "asimd"}), "dotprod": "asimddp" in flags, "i8mm": "i8mm" in flags}
    machine = platform.machine()
    is_arm = machine.lower().startswith(("arm", "aarch64"))
    info: dict[str, Any] = {"model": model or machine, "machine": machine, "cores": os.cpu_count() or 1}
    info["flags"] = arm if is_arm else x86
    info["int8_dot_product"] = arm["dotprod"] if is_arm else (x86["avx512_vnni"] or x86["avx_vnni"])
    return info


def int8_note(cpu: dict[str, Any]) -> str:
    """Why int8 may or may not beat float on this CPU, in one sentence."""
    if cpu.get("int8_dot_product"):
        return "this CPU has int8 dot-product instructions (VNNI / ARM dotprod), so int8 kernels can beat float"
    if cpu.get("machine", "").lower().startswith(("arm", "aarch64")):
        return (
            "this ARM CPU has no dot-product instructions (e.g. Cortex-A72 on a Pi 4), so int8 gains come mostly "
            "from memory traffic, not arithmetic"
        )
    return (
        "this x86 CPU has AVX2 but no VNNI: int8 multiply-adds need extra widening steps, so int8 is often no "
        "faster than float32 here; on a Pi 5 (dotprod) or a VNNI CPU the picture changes"
    )


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name, dist in _PACKAGES.items():
        try:
            found[name] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            alt = {"opencv": ("opencv-python", "opencv-contrib-python"), "tensorflow": ("tensorflow",)}.get(name, ())
            found[name] = next((_version_or_none(a) for a in alt if _version_or_none(a)), None)
    return found


def _version_or_none(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def opencv_build() -> dict[str, Any]:
    import cv2

    info = cv2.getBuildInformation()

    def line(prefix: str) -> str:
        for row in info.splitlines():
            if row.strip().startswith(prefix):
                return row.split(":", 1)[1].strip()
        return "?"

    return {
        "version": cv2.__version__,
        "gui": line("GUI:"),
        "gstreamer": line("GStreamer:"),
        "v4l2": line("v4l/v4l2:"),
        "ffmpeg": line("FFMPEG:"),
    }


def cameras() -> list[str]:
    return sorted(glob.glob("/dev/video*"))


def display() -> str | None:
    return os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")


def _accelerators() -> dict[str, Any]:
    from dataclasses import asdict

    found = accelerators.hardware()
    return {**asdict(found), "hints": found.hints()}


def environment() -> dict[str, Any]:
    """Everything a benchmark report needs to be read on another day and machine."""
    return {
        "cpu": cpu_info(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions(),
        "onnxruntime_providers": accelerators.onnx_providers(),
        "accelerators": _accelerators(),
        "picamera2": importlib.util.find_spec("picamera2") is not None,
    }
