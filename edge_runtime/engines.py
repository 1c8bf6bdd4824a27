"""Which backend and accelerator open a model file: the explicit choice, checked, or what ``auto``
takes (tune's record for the file on this device, else a usable GPU or Edge TPU, else the CPU; see
:mod:`.accelerators`), and the one-line hint when an accelerator is here but unusable."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from . import accelerators as accel
from .accelerators import MAX_THREADS
from .backends import (
    BACKENDS,
    ONNX_BACKENDS,
    TFLITE_BACKENDS,
    TFLITE_MODULES,
    Backend,
    OnnxBackend,
    TFLiteBackend,
    available,
)
from .errors import BackendUnavailableError, EdgeError
from .openvino_backend import OpenVinoBackend

log = logging.getLogger("edge_classify.runtime")


def open_backend(
    kind: str,
    data: bytes,
    backend: str = "auto",
    threads: int | None = None,
    *,
    accelerator: str = "auto",
    device: str | None = None,
    delegate: str | None = None,
) -> Backend:
    """Load model bytes of ``kind`` ("tflite"/"onnx") in the requested or first available backend,
    on the requested accelerator (see :mod:`.accelerators` for what ``auto`` chooses).

    Raises:
        BackendUnavailableError: nothing that can run this model type is installed, the requested
            backend does not run this type, or the requested accelerator is not usable here (the
            message says what to install).
    """
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if accelerator not in accel.ACCELERATORS:
        raise BackendUnavailableError(
            f"unknown accelerator {accelerator!r}; choose from {', '.join(accel.ACCELERATORS)}"
        )
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise EdgeError(f"threads must be 1..{MAX_THREADS} (4 per core here), got {threads}")
    if kind == "onnx":
        return _open_onnx(data, backend, threads, accelerator, device, delegate)
    return _open_tflite(data, backend, threads, accelerator, device, delegate)


def _open_onnx(
    data: bytes, backend: str, threads: int | None, accelerator: str, device: str | None, delegate: str | None
) -> Backend:
    if backend in TFLITE_BACKENDS:
        raise BackendUnavailableError(
            f"backend {backend} runs .tflite files; use onnxruntime, openvino or auto for .onnx"
        )
    if delegate:
        raise BackendUnavailableError(
            "--delegate is a LiteRT delegate for .tflite files; for .onnx choose "
            "--accelerator cuda, tensorrt or openvino"
        )
    if accelerator == "edgetpu":
        raise BackendUnavailableError(
            "--accelerator edgetpu runs .tflite files compiled for the Edge TPU; for "
            ".onnx choose cpu, cuda, tensorrt or openvino"
        )
    sha = accel.file_hash(data)
    if accelerator == "auto":
        backend, accelerator, threads = _auto_onnx(sha, backend, threads)
    if backend == "openvino" or accelerator == "openvino":
        if available("openvino"):
            return OpenVinoBackend(data, threads, device if accelerator == "openvino" else "CPU")
        if backend != "openvino" and accel.OV_EP in (accel.onnx_providers() or []):
            return OnnxBackend(data, threads, "openvino", device, sha)
        raise BackendUnavailableError(
            f"--{'backend' if backend == 'openvino' else 'accelerator'} openvino: OpenVINO "
            f"is not installed; {accel.INSTALL['openvino']}"
        )
    return OnnxBackend(data, threads, accelerator, device, sha)


def _auto_onnx(sha: str, backend: str, threads: int | None) -> tuple[str, str, int | None]:
    """What ``auto`` runs an ONNX file on: tune's record for it on this device, else an NVIDIA GPU
    through TensorRT or CUDA when ONNX Runtime has the provider, else the CPU."""
    from .tune import lookup

    record = lookup(sha)
    if (
        record is not None
        and backend in ("auto", record["backend"])
        and (record["backend"] != "openvino" or available("openvino"))
    ):
        return record["backend"], record["accelerator"], threads or record.get("threads")
    if backend == "openvino":
        return backend, "cpu", threads
    providers = accel.onnx_providers() or []
    if (accel.TRT in providers or accel.CUDA in providers) and accel.nvidia_gpus():
        return "onnxruntime", "tensorrt" if accel.TRT in providers else "cuda", threads
    _say_hints("onnx")
    return "onnxruntime", "cpu", threads


def _open_tflite(
    data: bytes, backend: str, threads: int | None, accelerator: str, device: str | None, delegate: str | None
) -> Backend:
    if backend in ONNX_BACKENDS:
        raise BackendUnavailableError(f"{backend} runs .onnx files; use litert, tflite_runtime or auto for .tflite")
    if accelerator in accel.ONNX_ACCELERATORS:
        raise BackendUnavailableError(
            f"--accelerator {accelerator} runs .onnx files; use the model's .onnx file "
            "(`python -m convert` writes both)"
        )
    compiled = accel.is_edgetpu_file(data)
    spec = accel.parse_delegate(delegate) if delegate else None
    if accelerator == "auto" and threads is None and spec is None:
        from .tune import lookup

        record = lookup(accel.file_hash(data))  # tune's thread count for this file on this device
        threads = record.get("threads") if record else None
    chosen = "delegate" if spec else "cpu"
    if accelerator == "edgetpu" or (
        accelerator == "auto" and spec is None and compiled and accel.coral_devices() and accel.find_libedgetpu()
    ):
        spec, chosen = accel.DelegateSpec(accel.EDGETPU_LIBRARY, {"device": device} if device else {}), "edgetpu"
    elif accelerator == "auto" and spec is None:
        _say_hints("tflite")
    if compiled and not (spec and "edgetpu" in Path(spec.path).name):
        raise BackendUnavailableError(
            "this file was compiled for the Edge TPU (it holds edgetpu-custom-op) and runs only on one: plug in a "
            f"Coral, {accel.INSTALL['edgetpu']}, and pass --accelerator edgetpu; or run the model_int8.tflite it was "
            "compiled from"
        )
    candidates = TFLITE_BACKENDS if backend == "auto" else (backend,)
    for name in candidates:
        if not available(name):
            continue
        module_name, package = TFLITE_MODULES[name]
        try:
            return TFLiteBackend(data, threads, module_name, package, name, spec, chosen)
        except (ImportError, AttributeError):  # e.g. tflite_runtime built for numpy 1 under numpy 2
            continue
    raise BackendUnavailableError(
        "no TFLite interpreter is installed; `pip install ai-edge-litert` (64-bit) or `pip install tflite-runtime` "
        "(32-bit Pi OS)"
        if backend == "auto"
        else f"TFLite backend {backend} is not installed or cannot load here"
    )


@functools.lru_cache(maxsize=None)
def _say_hints(kind: str) -> None:
    """Once a process and file type: an accelerator that is here but unusable, and what to install."""
    for line in accel.hardware(quick=True).hints(kind):
        log.warning("%s", line)
