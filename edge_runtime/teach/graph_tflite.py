"""A taught head appended to an extractor's TFLite flatbuffer, and taken off again, without TensorFlow.

Uses the flatbuffer schema's object API that ships with ai-edge-litert. The head is float32
(a few thousand multiply-adds beside the backbone's hundreds of millions), after a DEQUANTIZE
when the extractor's features are int8::

    features -> [DEQUANTIZE] -> L2_NORMALIZATION -> FULLY_CONNECTED(W, b) -> SOFTMAX   -> probabilities
                                                 -> FULLY_CONNECTED(P) -> REDUCE_MAX
                                                 -> FULLY_CONNECTED(-1, +1)         -> unknown (1 - best cosine)

Every tensor, buffer and operator of the head is appended after the extractor's, and the counts
before are kept in the contract (``extra.taught.base``), so :func:`strip_head` restores the
extractor exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ModelFileError
from .head import Head

IDENTIFIER = b"TFL3"


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise ModelFileError(
            "writing a taught .tflite file needs ai-edge-litert (`pip install ai-edge-litert`); or write an .onnx file"
        ) from None
    return schema


def _load(data: bytes) -> Any:
    schema = _schema()
    try:
        return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # the generated reader raises struct/index errors on damaged files
        raise ModelFileError(f"not a readable TFLite flatbuffer ({type(exc).__name__})") from None


def _pack(model: Any, size_hint: int) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def append_head(data: bytes, head: Head) -> tuple[bytes, dict[str, int]]:
    """The extractor ``data`` with ``head`` on its features; returns the bytes and the extractor's
    counts (operators, tensors, buffers, output tensor) that :func:`strip_head` needs."""
    schema = _schema()
    model = _load(data)
    graph = model.subgraphs[0]
    if len(graph.outputs) != 1:
        raise ModelFileError(f"a feature extractor has one output; this file has {len(graph.outputs)}")
    base = {
        "operators": len(graph.operators),
        "tensors": len(graph.tensors),
        "buffers": len(model.buffers),
        "output": int(graph.outputs[0]),
    }
    ops = _Appender(schema, model, graph)
    features = base["output"]
    if graph.tensors[features].type != schema.TensorType.FLOAT32:
        features = ops.op("DEQUANTIZE", [features], ops.tensor("teach/features", [1, head.weights.shape[1]]))
    unit = ops.op(
        "L2_NORMALIZATION",
        [features],
        ops.tensor("teach/unit", [1, head.weights.shape[1]]),
        options=("L2NormOptions", {}),
    )
    logits = ops.fully_connected(unit, head.weights, head.bias, "teach/logits")
    probabilities = ops.op(
        "SOFTMAX", [logits], ops.tensor("probabilities", [1, len(head.bias)]), options=("SoftmaxOptions", {"beta": 1.0})
    )
    similarity = ops.fully_connected(unit, head.prototypes, None, "teach/similarity")
    axis = ops.constant("teach/axis", np.array([1], np.int32))
    best = ops.op(
        "REDUCE_MAX",
        [similarity, axis],
        ops.tensor("teach/best", [1, 1]),
        options=("ReducerOptions", {"keepDims": True}),
    )
    unknown = ops.fully_connected(best, np.array([[-1.0]], np.float32), np.array([1.0], np.float32), "unknown")
    graph.outputs = np.array([probabilities, unknown], np.int32)
    for signature in model.signatureDefs or []:
        signature.outputs = [
            _tensor_map(schema, "probabilities", probabilities),
            _tensor_map(schema, "unknown", unknown),
        ]
    return _pack(model, len(data) + head.weights.nbytes + head.prototypes.nbytes), base


def strip_head(data: bytes, base: dict[str, int]) -> bytes:
    """The extractor a taught file was made from (its metadata entries are left for the caller)."""
    schema = _schema()
    model = _load(data)
    graph = model.subgraphs[0]
    try:
        keep = {key: int(base[key]) for key in ("operators", "tensors", "buffers", "output")}
    except (KeyError, TypeError, ValueError):
        raise ModelFileError("its contract does not say where the extractor ends (extra.taught.base)") from None
    if not (
        0 < keep["operators"] <= len(graph.operators)
        and 0 < keep["tensors"] <= len(graph.tensors)
        and 0 < keep["buffers"] <= len(model.buffers)
        and 0 <= keep["output"] < keep["tensors"]
    ):
        raise ModelFileError("its contract's extractor counts do not fit the file; it was changed after teaching")
    graph.operators = graph.operators[: keep["operators"]]
    graph.tensors = graph.tensors[: keep["tensors"]]
    metadata_buffers = {entry.buffer for entry in model.metadata or []}
    if any(index >= keep["buffers"] for index in metadata_buffers):
        model.metadata = [entry for entry in model.metadata if entry.buffer < keep["buffers"]]
    model.buffers = model.buffers[: keep["buffers"]]
    graph.outputs = np.array([keep["output"]], np.int32)
    for signature in model.signatureDefs or []:
        signature.outputs = [_tensor_map(schema, "output_0", keep["output"])]
    return _pack(model, len(data))


def read_prototypes(data: bytes, base: dict[str, int]) -> np.ndarray:
    """The prototype matrix of a taught file's head (the second FULLY_CONNECTED's weights)."""
    model = _load(data)
    graph = model.subgraphs[0]
    for tensor in graph.tensors[int(base.get("tensors", 0)) :]:
        if (tensor.name or b"").decode() == "teach/similarity/weights":
            raw = model.buffers[tensor.buffer].data
            if raw is None:
                break
            return np.frombuffer(np.asarray(raw, np.uint8).tobytes(), np.float32).reshape(tuple(tensor.shape)).copy()
    raise ModelFileError("its head has no prototypes; it was not written by edge-classify teach")


def _tensor_map(schema: Any, name: str, index: int) -> Any:
    entry = schema.TensorMapT()
    entry.name, entry.tensorIndex = name.encode(), int(index)
    return entry


class _Appender:
    """Adds float32 tensors, constant buffers and builtin operators to one subgraph."""

    def __init__(self, schema: Any, model: Any, graph: Any) -> None:
        self.schema, self.model, self.graph = schema, model, graph
        model.operatorCodes = model.operatorCodes or []

    def tensor(self, name: str, shape: list[int], dtype: str = "FLOAT32", buffer: int = 0) -> int:
        tensor = self.schema.TensorT()
        tensor.name, tensor.shape = name.encode(), np.array(shape, np.int32)
        tensor.type, tensor.buffer = getattr(self.schema.TensorType, dtype), buffer
        self.graph.tensors.append(tensor)
        return len(self.graph.tensors) - 1

    def constant(self, name: str, values: np.ndarray) -> int:
        buffer = self.schema.BufferT()
        buffer.data = np.frombuffer(np.ascontiguousarray(values).tobytes(), np.uint8)
        self.model.buffers.append(buffer)
        dtype = {"float32": "FLOAT32", "int32": "INT32"}[values.dtype.name]
        return self.tensor(name, list(values.shape), dtype, len(self.model.buffers) - 1)

    def op(self, code: str, inputs: list[int], output: int, options: tuple[str, dict[str, Any]] | None = None) -> int:
        operator = self.schema.OperatorT()
        operator.opcodeIndex = self._opcode(getattr(self.schema.BuiltinOperator, code))
        operator.inputs, operator.outputs = np.array(inputs, np.int32), np.array([output], np.int32)
        if options is not None:
            kind, values = options
            built = getattr(self.schema, f"{kind}T")()
            for key, value in values.items():
                setattr(built, key, value)
            operator.builtinOptionsType = getattr(self.schema.BuiltinOptions, kind)
            operator.builtinOptions = built
        self.graph.operators.append(operator)
        return output

    def fully_connected(self, source: int, weights: np.ndarray, bias: np.ndarray | None, name: str) -> int:
        inputs = [source, self.constant(f"{name}/weights", np.asarray(weights, np.float32))]
        inputs.append(self.constant(f"{name}/bias", np.asarray(bias, np.float32)) if bias is not None else -1)
        return self.op(
            "FULLY_CONNECTED",
            inputs,
            self.tensor(name, [1, int(weights.shape[0])]),
            options=("FullyConnectedOptions", {}),
        )

    def _opcode(self, builtin: int) -> int:
        for index, code in enumerate(self.model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
                return index
        code = self.schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
        self.model.operatorCodes.append(code)
        return len(self.model.operatorCodes) - 1
