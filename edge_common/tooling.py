"""Console-script launchers for the tooling: ``edge-train``, ``edge-convert``, ``edge-benchmark``.

The wheel holds only ``edge_runtime`` and ``edge_common``, so installing it on a device puts no
generic ``train``, ``convert`` or ``benchmarks`` module into site-packages. The tooling runs from
a checkout: ``make setup`` adds the checkout to the virtual environment's path, and these
launchers import it from there, or say in one line how to get it.
"""

from __future__ import annotations

import importlib
import sys

_HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx", "matplotlib")


def _launch(package: str, command: str) -> int:
    try:
        module = importlib.import_module(f"{package}.cli")
    except ModuleNotFoundError as exc:
        if exc.name in _HEAVY:
            print(
                f"error: {command} needs the training extras ({exc.name} is missing): "
                "pip install -e '.[train,convert]' in the checkout, or run make setup",
                file=sys.stderr,
            )
            return 2
        if exc.name not in (package, f"{package}.cli"):
            raise
        module = None
    if module is None or not getattr(sys.modules[package], "EDGE_CLASSIFY_TOOLING", False):
        # Absent, or another project's module of the same generic name.
        print(
            f"error: {command} is part of the edge-classify tooling, which runs from a checkout of the repository: "
            "run make setup there and use its .venv (a device install has edge-classify only)",
            file=sys.stderr,
        )
        return 2
    return module.main()


def train() -> int:
    return _launch("train", "edge-train")


def convert() -> int:
    return _launch("convert", "edge-convert")


def benchmark() -> int:
    return _launch("benchmarks", "edge-benchmark")
