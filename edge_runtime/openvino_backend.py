"""OpenVINO as a third engine: the project's ``.onnx`` files, int8 QDQ included, on an Intel CPU, iGPU
or NPU, with what it really runs read back from the compiled graph."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from . import accelerators as accel
from .backends import Backend, TensorInfo, dim, pick_outputs, threads_text
from .errors import BackendUnavailableError, ModelFileError


class OpenVinoBackend(Backend):
    """An ONNX file in OpenVINO's own runtime (CPU, an Intel GPU or NPU), int8 QDQ graphs included."""

    def __init__(self, data: bytes, threads: int | None, device: str | None = None) -> None:
        try:
            ov = importlib.import_module("openvino")
        except ImportError:
            raise BackendUnavailableError(f"OpenVINO is not installed; {accel.INSTALL['openvino']}") from None
        self.name = "openvino"
        self.version = str(ov.__version__).split("-")[0]
        core = ov.Core()
        target = (device or "CPU").upper()
        known = list(core.available_devices)
        if target.split(":")[0] not in ("AUTO", "MULTI", "HETERO") and target.split(".")[0] not in {
            d.split(".")[0] for d in known
        }:
            raise BackendUnavailableError(
                f"--device {target}: OpenVINO has no such device here (it has {', '.join(known) or 'none'})"
            )
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if target == "CPU":
            # The file's own precision: OpenVINO would compute a float32 file in bfloat16 on CPUs with
            # AVX-512 BF16 or AMX, and answer differently from the file everywhere else.
            config["INFERENCE_PRECISION_HINT"] = "f32"
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
        else:  # GPU and NPU compile for seconds; their blobs are kept
            config["CACHE_DIR"] = str(accel.cache_root() / "openvino")
        try:
            compiled = core.compile_model(core.read_model(data), target, config)
        except RuntimeError as exc:
            why = " ".join(str(exc).split())[:160]
            raise ModelFileError(f"openvino cannot load this ONNX model ({why})") from None
        self.accelerator = "openvino" if target != "CPU" else "cpu"
        devices = ",".join(compiled.get_property("EXECUTION_DEVICES"))
        precision = _openvino_precision(compiled)
        placement = f", {threads_text(threads)}" if threads and target == "CPU" else ""
        self.engine = f"OpenVINO {self.version} {devices}{' ' + precision if precision else ''}{placement}"
        self._request = compiled.create_infer_request()
        outputs = list(compiled.outputs)
        infos = [
            TensorInfo(
                tuple(dim(d) for d in o.get_partial_shape().to_shape()) if o.get_partial_shape().is_static else (-1,),
                np.dtype(o.get_element_type().to_dtype()).name,
            )
            for o in outputs
        ]
        inputs = list(compiled.inputs)
        scores, unknown = pick_outputs(len(inputs), infos)
        self._ports = [outputs[scores]] + ([outputs[unknown]] if unknown is not None else [])
        port = inputs[0]
        shape = (
            tuple(dim(d) for d in port.get_partial_shape().to_shape())
            if port.get_partial_shape().is_static
            else (-1, -1, -1, -1)
        )
        self.input = TensorInfo(shape, np.dtype(port.get_element_type().to_dtype()).name)
        self.output = infos[scores]
        self.unknown = infos[unknown] if unknown is not None else None

    def run_all(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        results = self._request.infer({0: tensor})
        # Copies: the request's output buffers are overwritten by the next frame.
        scores = np.array(results[self._ports[0]], copy=True)
        return scores, (np.array(results[self._ports[1]], copy=True) if len(self._ports) > 1 else None)

    def close(self) -> None:
        self._request = None


def _openvino_precision(compiled: Any) -> str:
    """The precision OpenVINO really runs the convolutions and matrix products in, read from the
    compiled graph: "int8" only when it runs them so (it computes a QDQ graph with uint8 weights in
    float32, for one), "int8 on 12 of 52 layers" when partly, else the float precision it uses."""
    counts = {"int8": 0, "other": 0}
    try:
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and info["layerType"].astype(str) in ("Convolution", "FullyConnected", "MatMul"):
                quantized = info["runtimePrecision"].astype(str) in ("u8", "i8")
                counts["int8" if quantized else "other"] += 1
        if counts["int8"] and counts["other"]:
            return f"int8 on {counts['int8']} of {counts['int8'] + counts['other']} layers"
        if counts["int8"]:
            return "int8"
        return str(compiled.get_property("INFERENCE_PRECISION_HINT")).replace("<Type: '", "").rstrip("'>")
    except (RuntimeError, KeyError, AttributeError):  # AUTO and some devices report neither
        return ""
