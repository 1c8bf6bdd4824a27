"""A taught head appended to an extractor's ONNX graph, and taken off again, without the onnx package.

The file is edited on the protobuf wire: the graph's fields are kept byte for byte, the head's
nodes and initializers (all named ``teach/...``) are appended, and the graph's output is
replaced. The head is the same as in TFLite (see :mod:`.graph_tflite`)::

    features -> LpNormalization -> Gemm(W, b) -> Softmax -> probabilities
                                -> Gemm(P) -> ReduceMax -> Gemm(-1, +1) -> unknown
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError
from ..metadata import proto_fields as _fields
from .head import Head

PREFIX = "teach/"
# Field numbers of onnx.proto.
_MODEL_OPSET, _MODEL_GRAPH, _MODEL_PROPS = 8, 7, 14
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_OUTPUT = 1, 5, 12
_FLOAT, _INT64 = 1, 7  # TensorProto data types


def append_head(data: bytes, head: Head) -> tuple[bytes, dict[str, int | str]]:
    """The extractor ``data`` with ``head`` on its features; returns the bytes and what
    :func:`strip_head` needs (the extractor's output name and width)."""
    graph = _graph(data)
    outputs = [value for number, _, value, _ in _fields(graph) if number == _GRAPH_OUTPUT]
    if len(outputs) != 1:
        raise ModelFileError(f"a feature extractor has one output; this file has {len(outputs)}")
    features = _string_field(outputs[0], 1)
    dim = int(head.weights.shape[1])
    opset = _opset(data)
    nodes = [
        _node("LpNormalization", [features], ["teach/unit"], axis=1, p=2),
        _node("Gemm", ["teach/unit", "teach/W", "teach/b"], ["teach/logits"], transB=1),
        _node("Softmax", ["teach/logits"], ["probabilities"], axis=1),
        _node("Gemm", ["teach/unit", "teach/prototypes"], ["teach/similarity"], transB=1),
        (
            _node("ReduceMax", ["teach/similarity"], ["teach/best"], axes=[1], keepdims=1)
            if opset < 18
            else _node("ReduceMax", ["teach/similarity", "teach/axes"], ["teach/best"], keepdims=1)
        ),
        _node("Gemm", ["teach/best", "teach/minus_one", "teach/one"], ["unknown"], transB=1),
    ]
    initializers = [
        _tensor("teach/W", head.weights),
        _tensor("teach/b", head.bias),
        _tensor("teach/prototypes", head.prototypes),
        _tensor("teach/minus_one", np.array([[-1.0]], np.float32)),
        _tensor("teach/one", np.array([1.0], np.float32)),
    ]
    if opset >= 18:
        initializers.append(_tensor("teach/axes", np.array([1], np.int64)))
    kept = b"".join(raw for number, _, _, raw in _fields(graph) if number != _GRAPH_OUTPUT)
    new_graph = (
        kept
        + b"".join(_field(_GRAPH_NODE, node) for node in nodes)
        + b"".join(_field(_GRAPH_INITIALIZER, tensor) for tensor in initializers)
        + _field(_GRAPH_OUTPUT, _value_info("probabilities", [1, len(head.bias)]))
        + _field(_GRAPH_OUTPUT, _value_info("unknown", [1, 1]))
    )
    return _with_graph(data, new_graph), {"output": features, "features": dim}


def strip_head(data: bytes, base: dict[str, int | str]) -> bytes:
    """The extractor a taught file was made from (its metadata is left for the caller)."""
    try:
        features, dim = str(base["output"]), int(base["features"])
    except (KeyError, TypeError, ValueError):
        raise ModelFileError("its contract does not say where the extractor ends (extra.taught.base)") from None
    graph = _graph(data)
    kept = []
    for number, _, value, raw in _fields(graph):
        if number == _GRAPH_OUTPUT:
            continue
        if number == _GRAPH_NODE and _string_field(value, 3).startswith(PREFIX):
            continue
        if number == _GRAPH_INITIALIZER and _string_field(value, 8).startswith(PREFIX):
            continue
        kept.append(raw)
    return _with_graph(data, b"".join(kept) + _field(_GRAPH_OUTPUT, _value_info(features, [1, dim])))


def read_prototypes(data: bytes) -> np.ndarray:
    """The prototype matrix of a taught file's head."""
    for number, _, value, _ in _fields(_graph(data)):
        if (
            number == _GRAPH_INITIALIZER
            and isinstance(value, memoryview)
            and _string_field(value, 8) == "teach/prototypes"
        ):
            dims = [v for n, w, v, _ in _fields(value) if n == 1 and w == 0]
            raw = next((bytes(v) for n, w, v, _ in _fields(value) if n == 9 and w == 2), b"")
            if len(dims) == 2 and len(raw) == 4 * int(dims[0]) * int(dims[1]):
                return np.frombuffer(raw, "<f4").reshape(int(dims[0]), int(dims[1])).copy()
    raise ModelFileError("its head has no prototypes; it was not written by edge-classify teach")


def set_props(data: bytes, entries: dict[str, str]) -> bytes:
    """A copy with ``metadata_props`` entries added or replaced."""
    kept = [
        raw
        for number, wire, value, raw in _fields(data)
        if not (number == _MODEL_PROPS and wire == 2 and _string_field(value, 1) in entries)
    ]
    props = [_field(_MODEL_PROPS, _string(1, key) + _string(2, value)) for key, value in entries.items()]
    return b"".join(kept) + b"".join(props)


# --- the wire format ---------------------------------------------------------------------------


def _graph(data: bytes) -> memoryview:
    graphs = [value for number, wire, value, _ in _fields(data) if number == _MODEL_GRAPH and wire == 2]
    if len(graphs) != 1 or not isinstance(graphs[0], memoryview):
        raise ModelFileError("an ONNX model has one graph; this file has none or several")
    return graphs[0]


def _with_graph(data: bytes, graph: bytes) -> bytes:
    return b"".join(
        _field(_MODEL_GRAPH, graph) if number == _MODEL_GRAPH else raw for number, _, _, raw in _fields(data)
    )


def _opset(data: bytes) -> int:
    for number, _, value, _ in _fields(data):
        if number == _MODEL_OPSET and isinstance(value, memoryview) and not _string_field(value, 1):
            return int(next((v for n, w, v, _ in _fields(value) if n == 2 and w == 0), 1))
    return 1


def _string_field(message: memoryview | int, number: int) -> str:
    if not isinstance(message, memoryview):
        return ""
    for n, w, value, _ in _fields(message):
        if n == number and w == 2 and isinstance(value, memoryview):
            return bytes(value).decode("utf-8", "replace")
    return ""


def _key(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s as ten bytes, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _encode_varint(len(payload)) + payload


def _string(number: int, text: str) -> bytes:
    return _field(number, text.encode())


def _int(number: int, value: int) -> bytes:
    return _key(number, 0) + _encode_varint(value)


def _node(op: str, inputs: list[str], outputs: list[str], **attributes: int | list[int]) -> bytes:
    body = b"".join(_string(1, name) for name in inputs) + b"".join(_string(2, name) for name in outputs)
    body += _string(3, f"{PREFIX}{outputs[0].removeprefix(PREFIX)}") + _string(4, op)
    for name, value in attributes.items():
        if isinstance(value, list):  # INTS
            attribute = _string(1, name) + b"".join(_int(8, v) for v in value) + _int(20, 7)
        else:  # INT
            attribute = _string(1, name) + _int(3, value) + _int(20, 2)
        body += _field(5, attribute)
    return body


def _tensor(name: str, values: np.ndarray) -> bytes:
    dtype = _INT64 if values.dtype == np.int64 else _FLOAT
    raw = np.ascontiguousarray(values, "<i8" if dtype == _INT64 else "<f4").tobytes()
    return b"".join(_int(1, d) for d in values.shape) + _int(2, dtype) + _string(8, name) + _field(9, raw)


def _value_info(name: str, shape: list[int]) -> bytes:
    dims = b"".join(_field(1, _int(1, d)) for d in shape)
    tensor_type = _int(1, _FLOAT) + _field(2, dims)
    return _string(1, name) + _field(2, _field(1, tensor_type))
