"""Interpreters, imported lazily, with a clean fallback chain, on the accelerator asked for.

TFLite: ``ai_edge_litert`` (maintained), then ``tflite_runtime`` (last release 2.14, numpy < 2,
still what 32-bit Pi OS has), then TensorFlow's own interpreter when that is what is installed;
on the CPU (XNNPACK), an Edge TPU, or any external delegate. ONNX: ``onnxruntime`` on its CPU,
CUDA, TensorRT or OpenVINO provider, or ``openvino`` itself. Which accelerator is chosen, and why,
lives in :mod:`.accelerators`; each backend reports what actually ran in :attr:`Backend.engine`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import accelerators as accel
from .accelerators import DelegateSpec
from .errors import BackendUnavailableError, ModelFileError

log = logging.getLogger("edge_classify.runtime")


TFLITE_BACKENDS = ("litert", "tflite_runtime", "tensorflow")
ONNX_BACKENDS = ("onnxruntime", "openvino")
BACKENDS = ("auto",) + TFLITE_BACKENDS + ONNX_BACKENDS
_SHOWN = {"litert": "LiteRT", "tflite_runtime": "tflite_runtime", "tensorflow": "TensorFlow Lite"}
TFLITE_MODULES = {
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
    engine: str = ""  # what ran it, read back from the engine: "onnxruntime 1.32 CPUExecutionProvider, 2 threads"
    accelerator: str = "cpu"  # the accelerator that ran it: cpu, tensorrt, cuda, openvino, edgetpu or delegate
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
    def __init__(
        self,
        data: bytes,
        threads: int | None,
        module_name: str,
        package: str,
        name: str,
        delegate: DelegateSpec | None = None,
        accelerator: str = "cpu",
    ) -> None:
        module = importlib.import_module(module_name)
        self.name = name
        self.version = _version(package)
        delegates = [_load_delegate(module, delegate, accelerator)] if delegate is not None else None
        try:
            self._interpreter = module.Interpreter(
                model_content=data, num_threads=threads, experimental_delegates=delegates
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{name} cannot load this TFLite model ({' '.join(str(exc).split())[:160]})") from None
        self.accelerator = accelerator if delegate is not None else "cpu"
        if delegate is None:  # XNNPACK is the interpreter's own CPU delegate for float and int8 graphs
            self.engine = f"{_SHOWN[name]} {self.version} XNNPACK, {threads_text(threads)}"
        elif accelerator == "edgetpu":
            self.engine = f"{_SHOWN[name]} {self.version} Edge TPU ({delegate.options.get('device', 'first found')})"
        else:
            self.engine = f"{_SHOWN[name]} {self.version} delegate {Path(delegate.path).name}"
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        scores, unknown = pick_outputs(len(inputs), [_tflite_info(o) for o in outputs])
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
    def __init__(
        self, data: bytes, threads: int | None, accelerator: str = "cpu", device: str | None = None, model_sha: str = ""
    ) -> None:
        try:
            ort = importlib.import_module("onnxruntime")
        except ImportError:
            raise BackendUnavailableError(
                "onnxruntime is not installed; `pip install onnxruntime` (or use a .tflite file)"
            ) from None
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
        accel.require_providers(accelerator, list(ort.get_available_providers()))
        chain = accel.onnx_provider_chain(
            accelerator,
            model_sha=model_sha or accel.file_hash(data),
            int8=_is_qdq(data),
            device=device,
            trt_version=_trt_version(),
            gpu_name=_gpu_name(),
        )
        if accelerator == "tensorrt":
            folder = chain[0][1]["trt_engine_cache_path"]
            Path(folder).mkdir(parents=True, exist_ok=True)
            if not any(Path(folder).glob("*.engine")):
                log.warning(
                    "building the TensorRT engine for this file (the first time only; it can take minutes "
                    "on a Jetson); cached in %s",
                    folder,
                )
        try:
            self._session = ort.InferenceSession(data, sess_options=options, providers=chain)
        except Exception as exc:  # ORT raises its own exception types for every load failure
            why = " ".join(str(exc).split())[:160]
            raise ModelFileError(f"onnxruntime cannot load this ONNX model ({why})") from None
        used = list(self._session.get_providers())
        accel.check_ran_on(accelerator, chain, used)
        self.accelerator = accelerator
        precision = ""
        if used[0] == accel.TRT:
            trt_options = chain[0][1]
            precision = (
                " int8"
                if trt_options["trt_int8_enable"] == "True"
                else (" fp16" if trt_options["trt_fp16_enable"] == "True" else " fp32")
            )
        placement = f", {threads_text(threads)}" if used[0] == accel.CPU_EP else ""
        self.engine = f"onnxruntime {self.version} {used[0]}{precision}{placement}"
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        infos = [TensorInfo(tuple(dim(d) for d in o.shape), _onnx_dtype(o.type)) for o in outputs]
        scores, unknown = pick_outputs(len(inputs), infos)
        self._in_name = inputs[0].name
        self._out_names = [outputs[scores].name] + ([outputs[unknown].name] if unknown is not None else [])
        self.input = TensorInfo(tuple(dim(d) for d in inputs[0].shape), _onnx_dtype(inputs[0].type))
        self.output = infos[scores]
        self.unknown = infos[unknown] if unknown is not None else None

    def run_all(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        results = self._session.run(self._out_names, {self._in_name: tensor})
        return results[0], (results[1] if len(results) > 1 else None)

    def close(self) -> None:
        self._session = None


def pick_outputs(inputs: int, outputs: list[TensorInfo]) -> tuple[int, int | None]:
    """Which output holds the class scores and which (if any) the one-value out-of-class score."""
    if inputs == 1 and len(outputs) == 1:
        return 0, None
    if inputs == 1 and len(outputs) == 2:
        single = [i for i, o in enumerate(outputs) if o.shape and o.shape[-1] == 1]
        if len(single) == 1:
            return 1 - single[0], single[0]
    raise ModelFileError(
        f"model has {inputs} input(s) and {len(outputs)} output(s); a classifier has one input, "
        "its class scores and at most one out-of-class score (one value per image)"
    )


def threads_text(count: int | None) -> str:
    return "default threads" if not count else f"{count} thread{'s' if count != 1 else ''}"


def available(name: str) -> bool:
    """Whether a backend can be imported here (without importing it when it cannot)."""
    package = name if name in ONNX_BACKENDS else TFLITE_MODULES[name][1]
    return importlib.util.find_spec(package) is not None


def _load_delegate(module: Any, spec: DelegateSpec, accelerator: str) -> Any:
    """LiteRT's ``load_delegate``, its failures in one line (a missing library, one that is not a delegate)."""
    import ctypes

    load = getattr(module, "load_delegate", None)
    if load is None:
        raise BackendUnavailableError("this TFLite interpreter cannot load delegates; `pip install ai-edge-litert`")
    flag = "--accelerator edgetpu" if accelerator == "edgetpu" else "--delegate"
    hint = accel.INSTALL["edgetpu"] if accelerator == "edgetpu" else "check the path"
    try:
        library = ctypes.CDLL(spec.path)
    except OSError as exc:
        raise BackendUnavailableError(
            f"{flag}: {spec.path} could not be loaded ({' '.join(str(exc).split())[:160]}); {hint}"
        ) from None
    # Checked before LiteRT sees it: its loader fails on such a library with a traceback at exit.
    missing = [
        name
        for name in ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate")
        if not hasattr(library, name)
    ]
    if missing:
        raise BackendUnavailableError(
            f"{flag}: {spec.path} is not a LiteRT external delegate (it has no "
            f"{missing[0]}); pass the delegate library itself"
        )
    try:
        return load(spec.path, spec.options)
    except (ValueError, OSError, RuntimeError) as exc:
        why = " ".join(str(exc).split())[:160]
        if accelerator == "edgetpu":
            raise BackendUnavailableError(
                f"--accelerator edgetpu: {spec.path} could not be loaded ({why}); {accel.INSTALL['edgetpu']}"
            ) from None
        raise BackendUnavailableError(
            f"--delegate {spec.path}: LiteRT could not load it as a delegate ({why}); "
            "check the path and that the library is a LiteRT delegate built for this "
            "machine"
        ) from None


def _is_qdq(data: bytes) -> bool:
    """Whether an ONNX graph is quantized with QuantizeLinear/DequantizeLinear pairs (TensorRT's INT8)."""
    return b"QuantizeLinear" in data


def _trt_version() -> str:
    try:
        from importlib.metadata import version

        return version("tensorrt")
    except Exception:  # no TensorRT wheel: Jetson's comes with JetPack, outside pip
        path = accel.ctypes.util.find_library("nvinfer")
        return path.rsplit(".so.", 1)[-1] if path and ".so." in path else ""


def _gpu_name() -> str:
    gpus = accel.nvidia_gpus()
    return gpus[0] if gpus else ""


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
    return TensorInfo(
        tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]).name, float(scale), int(zero_point)
    )


def dim(value: Any) -> int:
    return value if isinstance(value, int) else -1


def _onnx_dtype(type_name: str) -> str:
    names = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}
    return names.get(type_name, type_name)
