"""Interpreters, imported lazily, with a clean fallback chain.

TFLite: ``ai_edge_litert`` (maintained), then ``tflite_runtime`` (last release 2.14, numpy < 2,
still what 32-bit Pi OS has), then TensorFlow's own interpreter when that is what is installed.
ONNX: ``onnxruntime``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import BackendUnavailableError, EdgeError, ModelFileError

# More interpreter threads than 4 per core only contend; 100000 crashed TFLite and hung ONNX Runtime.
MAX_THREADS = 4 * (os.cpu_count() or 1)

TFLITE_BACKENDS = ("litert", "tflite_runtime", "tensorflow")
ONNX_BACKENDS = ("onnxruntime",)
BACKENDS = ("auto",) + TFLITE_BACKENDS + ONNX_BACKENDS
_TFLITE_MODULES = {
    "litert": ("ai_edge_litert.interpreter", "ai_edge_litert"),
    "tflite_runtime": ("tflite_runtime.interpreter", "tflite_runtime"),
    "tensorflow": ("tensorflow.lite.python.interpreter", "tensorflow"),
}


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0


class Backend:
    """One loaded model in one interpreter.

    A classifier has one input and the class scores as its output; a file made with an out-of-class
    head has a second output of one value per image (``unknown``), told apart by its shape.
    """

    name: str
    version: str
    input: TensorInfo
    output: TensorInfo
    unknown: TensorInfo | None = None

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """The class scores for a prepared batch-1 tensor."""
        return self.run_all(tensor)[0]

    def run_all(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:  # pragma: no cover - interface
        """The class scores and, where the file has one, the out-of-class score."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class TFLiteBackend(Backend):
    def __init__(self, data: bytes, threads: int | None, module_name: str, package: str, name: str) -> None:
        module = importlib.import_module(module_name)
        self.name = name
        self.version = _version(package)
        try:
            self._interpreter = module.Interpreter(model_content=data, num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{name} cannot load this TFLite model ({' '.join(str(exc).split())[:160]})") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        scores, unknown = _pick_outputs(len(inputs), [_tflite_info(o) for o in outputs])
        self._in = inputs[0]["index"]
        self._out = outputs[scores]["index"]
        self._unknown = outputs[unknown]["index"] if unknown is not None else None
        self.input = _tflite_info(inputs[0])
        self.output = _tflite_info(outputs[scores])
        self.unknown = _tflite_info(outputs[unknown]) if unknown is not None else None

    def run_all(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        self._interpreter.set_tensor(self._in, tensor)
        self._interpreter.invoke()
        # get_tensor copies: the next invoke must not change an answer already handed out.
        unknown = self._interpreter.get_tensor(self._unknown) if self._unknown is not None else None
        return self._interpreter.get_tensor(self._out), unknown

    def close(self) -> None:
        self._interpreter = None


class OnnxBackend(Backend):
    def __init__(self, data: bytes, threads: int | None) -> None:
        try:
            ort = importlib.import_module("onnxruntime")
        except ImportError:
            raise BackendUnavailableError("onnxruntime is not installed; `pip install onnxruntime` (or use a "
                                          ".tflite file)") from None
        self.name = "onnxruntime"
        self.version = ort.__version__
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # On x86 without VNNI the fast uint8 x int8 kernels add products in 16 bits and saturate with
        # full-range int8 weights (AVX2's VPMADDUBSW): an int8 file then answers differently from the
        # same file on ARM or a VNNI CPU (another top-1 on 2 of 6 photos for edge_cnn). This makes ONNX
        # Runtime widen such weights instead, exact everywhere; ignored on ARM and VNNI CPUs. It cost
        # about 25% of edge_cnn's int8 latency and 8-30% of clothes_lite0's on a 2-core AVX2 EPYC.
        options.add_session_config_entry("session.x64quantprecision", "1")
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for every load failure
            why = " ".join(str(exc).split())[:160]
            raise ModelFileError(f"onnxruntime cannot load this ONNX model ({why})") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        infos = [TensorInfo(tuple(_dim(d) for d in o.shape), _onnx_dtype(o.type)) for o in outputs]
        scores, unknown = _pick_outputs(len(inputs), infos)
        self._in_name = inputs[0].name
        self._out_names = [outputs[scores].name] + ([outputs[unknown].name] if unknown is not None else [])
        self.input = TensorInfo(tuple(_dim(d) for d in inputs[0].shape), _onnx_dtype(inputs[0].type))
        self.output = infos[scores]
        self.unknown = infos[unknown] if unknown is not None else None

    def run_all(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        results = self._session.run(self._out_names, {self._in_name: tensor})
        return results[0], (results[1] if len(results) > 1 else None)

    def close(self) -> None:
        self._session = None


def _pick_outputs(inputs: int, outputs: list[TensorInfo]) -> tuple[int, int | None]:
    """Which output holds the class scores and which (if any) the one-value out-of-class score."""
    if inputs == 1 and len(outputs) == 1:
        return 0, None
    if inputs == 1 and len(outputs) == 2:
        single = [i for i, o in enumerate(outputs) if o.shape and o.shape[-1] == 1]
        if len(single) == 1:
            return 1 - single[0], single[0]
    raise ModelFileError(f"model has {inputs} input(s) and {len(outputs)} output(s); a classifier has one input, "
                         "its class scores and at most one out-of-class score (one value per image)")


def available(name: str) -> bool:
    """Whether a backend can be imported here (without importing it when it cannot)."""
    package = "onnxruntime" if name == "onnxruntime" else _TFLITE_MODULES[name][1]
    return importlib.util.find_spec(package) is not None


def open_backend(kind: str, data: bytes, backend: str = "auto", threads: int | None = None) -> Backend:
    """Load model bytes of ``kind`` ("tflite"/"onnx") in the requested or first available backend.

    Raises:
        BackendUnavailableError: nothing that can run this model type is installed, or the
            requested backend does not run this type.
    """
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise EdgeError(f"threads must be 1..{MAX_THREADS} (4 per core here), got {threads}")
    if kind == "onnx":
        if backend not in ("auto", "onnxruntime"):
            raise BackendUnavailableError(f"backend {backend} runs .tflite files; use onnxruntime (or auto) for .onnx")
        return OnnxBackend(data, threads)
    if backend == "onnxruntime":
        raise BackendUnavailableError("onnxruntime runs .onnx files; use litert, tflite_runtime or auto for .tflite")
    candidates = TFLITE_BACKENDS if backend == "auto" else (backend,)
    for name in candidates:
        if not available(name):
            continue
        module_name, package = _TFLITE_MODULES[name]
        try:
            return TFLiteBackend(data, threads, module_name, package, name)
        except (ImportError, AttributeError):  # e.g. tflite_runtime built for numpy 1 under numpy 2
            continue
    raise BackendUnavailableError(
        "no TFLite interpreter is installed; `pip install ai-edge-litert` (64-bit) or `pip install tflite-runtime` "
        "(32-bit Pi OS)" if backend == "auto" else f"TFLite backend {backend} is not installed or cannot load here"
    )


def _version(package: str) -> str:
    try:
        from importlib.metadata import version

        dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime", "tensorflow": "tensorflow"}
        try:
            return version(dist.get(package, package))
        except Exception:
            return version("tensorflow-cpu") if package == "tensorflow" else "unknown"
    except Exception:
        return "unknown"


def _tflite_info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]).name, float(scale),
                      int(zero_point))


def _dim(value: Any) -> int:
    return value if isinstance(value, int) else -1


def _onnx_dtype(type_name: str) -> str:
    names = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}
    return names.get(type_name, type_name)
