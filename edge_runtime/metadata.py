"""Embedded metadata in TFLite and ONNX files, read without TensorFlow (or even an interpreter).

TFLite: a ``Metadata`` entry named ``edge_classify`` in the model flatbuffer, pointing at a buffer
that holds the JSON (the same mechanism TFLite's own ``min_runtime_version`` uses; interpreters
ignore entries they do not know). ONNX: ``metadata_props["edge_classify"]``.

The readers here are small, bounds-checked parsers of the two container formats. They never
trust an offset or length from the file, so a truncated or hostile file raises
:class:`ModelFileError`/:class:`MetadataError` and nothing else.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterator

import numpy as np

from .contract import METADATA_KEY, ModelMetadata
from .errors import MetadataError, ModelFileError

TFLITE_IDENTIFIER = b"TFL3"
_MAX_MODEL_BYTES = 2 * 1024**3


def sniff_format(data: bytes) -> str | None:
    """``"tflite"``, ``"onnx"`` or None, from the file's content (not its name)."""
    if len(data) >= 8 and data[4:8] == TFLITE_IDENTIFIER:
        return "tflite"
    try:
        fields = _proto_fields(data, limit=64)
    except ModelFileError:
        return None
    numbers = {number for number, _, _ in fields}
    return "onnx" if 7 in numbers and numbers <= _ONNX_MODEL_FIELDS else None


def file_kind(path: Path) -> str:
    """The model type by extension; the content must agree (checked by :func:`load_bytes`)."""
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return "tflite"
    if suffix == ".onnx":
        return "onnx"
    raise ModelFileError(
        f"{path}: unknown model type {suffix or '(no extension)'}; expected a .tflite or .onnx "
        f"file from `python -m convert`"
    )


def load_bytes(path: str | Path) -> tuple[str, bytes]:
    """Read a model file and check that its content matches its extension.

    Raises:
        ModelFileError: missing, unreadable, empty, not a model, or of the other format.
    """
    from edge_common.files import FileTooLarge, NotRegularFile, read_regular

    path = Path(path)
    kind = file_kind(path)
    try:
        data = read_regular(path, _MAX_MODEL_BYTES)
    except FileNotFoundError:
        raise ModelFileError(
            f"{path}: no such model file; check the path (converted files live in runs/<MODEL>/deploy/)"
        ) from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a folder; pass a .tflite or .onnx file") from None
    except NotRegularFile:
        raise ModelFileError(f"{path}: is not a regular file (a FIFO, device or socket); pass a .{kind} file") from None
    except FileTooLarge:
        raise ModelFileError(
            f"{path}: is larger than any model this runtime loads ({_MAX_MODEL_BYTES:,} bytes); pass a model file"
        ) from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise ModelFileError(f"{path}: file is empty; re-run `python -m convert` or copy the file again")
    actual = sniff_format(data)
    if actual is None:
        raise ModelFileError(
            f"{path}: not a valid {kind.upper()} model (corrupt or truncated); re-run `python -m "
            f"convert` or copy the file again"
        )
    if actual != kind:
        raise ModelFileError(f"{path}: is a {actual.upper()} model with a .{kind} name; rename it to .{actual}")
    return kind, data


def read_metadata(kind: str, data: bytes, path: str | Path = "model") -> ModelMetadata:
    """Parse the embedded edge-classify metadata.

    Raises:
        MetadataError: when the entry is missing or malformed.
    """
    try:
        entries = read_tflite_entries(data) if kind == "tflite" else read_onnx_props(data)
    except ModelFileError as exc:  # the parsers know the bytes, not the file: name it
        text = str(exc)
        raise type(exc)(text if text.startswith(str(path)) else f"{path}: {text}") from None
    raw = entries.get(METADATA_KEY)
    if raw is None:
        raise MetadataError(
            f"{path}: has no edge-classify metadata (labels and input contract); convert it with "
            "`python -m convert`, or pass labels and an input spec to Classifier.open"
        )
    try:
        return ModelMetadata.from_json(raw)
    except MetadataError as exc:
        raise MetadataError(f"{path}: {exc}") from None


# --- TFLite flatbuffer -------------------------------------------------------------------------


def read_tflite_entries(data: bytes) -> dict[str, bytes]:
    """All ``Metadata`` entries of a TFLite flatbuffer: name -> buffer bytes."""
    buf = _Flat(data)
    root = buf.u32(0)
    metadata = buf.vector_of_tables(root, 6)  # Model.metadata
    buffers = buf.vector_of_tables(root, 4)  # Model.buffers
    for table in buffers:  # every weight buffer inside the file: a truncated copy fails here, named
        buf.buffer_span(table)
    entries: dict[str, bytes] = {}
    for table in metadata:
        name = buf.string(table, 0)
        index = buf.scalar(table, 1, "<I", 0)
        if name is None:
            continue
        if index >= len(buffers):
            raise ModelFileError(
                f"metadata entry {name!r} points at buffer {index} of {len(buffers)}; the file is corrupt"
            )
        entries[name] = buf.buffer_data(buffers[index])
    return entries


def embed_tflite_entries(data: bytes, entries: dict[str, bytes]) -> bytes:
    """Return a copy of a TFLite model with metadata entries added or replaced.

    Uses the flatbuffer schema that ships with ai-edge-litert (writing needs no TensorFlow).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    model.metadata = [m for m in (model.metadata or []) if (m.name or b"").decode() not in entries]
    model.buffers = model.buffers or []
    for name, payload in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(payload, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def strip_tflite_entry(data: bytes, name: str) -> bytes:
    """A copy without one metadata entry (the tests make files without metadata with it)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    model.metadata = [m for m in (model.metadata or []) if (m.name or b"").decode() != name]
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


class _Flat:
    """Bounds-checked reads from a flatbuffer."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)

    def _need(self, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise ModelFileError("the TFLite flatbuffer is truncated or corrupt (an offset points outside the file)")

    def u32(self, offset: int) -> int:
        self._need(offset, 4)
        return struct.unpack_from("<I", self.data, offset)[0]

    def _field(self, table: int, field_index: int) -> int | None:
        """Absolute position of a table field, or None when absent."""
        self._need(table, 4)
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        self._need(vtable, 4)
        vtable_size = struct.unpack_from("<H", self.data, vtable)[0]
        slot = 4 + 2 * field_index
        if slot + 2 > vtable_size:
            return None
        self._need(vtable, slot + 2)
        rel = struct.unpack_from("<H", self.data, vtable + slot)[0]
        return table + rel if rel else None

    def scalar(self, table: int, field_index: int, fmt: str, default: int) -> int:
        pos = self._field(table, field_index)
        if pos is None:
            return default
        self._need(pos, struct.calcsize(fmt))
        return struct.unpack_from(fmt, self.data, pos)[0]

    def _indirect(self, pos: int) -> int:
        return pos + self.u32(pos)

    def _vector(self, pos: int) -> tuple[int, int]:
        start = self._indirect(pos)
        length = self.u32(start)
        return start + 4, length

    def vector_of_tables(self, table: int, field_index: int) -> list[int]:
        pos = self._field(table, field_index)
        if pos is None:
            return []
        start, length = self._vector(pos)
        self._need(start, 4 * length)
        return [self._indirect(start + 4 * i) for i in range(length)]

    def string(self, table: int, field_index: int) -> str | None:
        pos = self._field(table, field_index)
        if pos is None:
            return None
        start, length = self._vector(pos)
        self._need(start, length)
        try:
            return bytes(self.data[start : start + length]).decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError("a TFLite metadata name is not valid UTF-8; the file is corrupt") from None

    def buffer_span(self, table: int) -> tuple[int, int]:
        """Where a Buffer's bytes are, checked to lie inside the file: ``(start, length)``."""
        pos = self._field(table, 0)  # Buffer.data
        if pos is not None:
            start, length = self._vector(pos)
            self._need(start, length)
            return start, length
        # Large models keep buffers after the flatbuffer: Buffer.offset / Buffer.size (uint64).
        offset = self.scalar(table, 1, "<Q", 0)
        size = self.scalar(table, 2, "<Q", 0)
        if offset > 1:
            self._need(offset, size)
            return offset, size
        return 0, 0

    def buffer_data(self, table: int) -> bytes:
        start, length = self.buffer_span(table)
        return bytes(self.data[start : start + length])


# --- ONNX protobuf -----------------------------------------------------------------------------

# ModelProto field numbers (onnx.proto): anything else at the top level means "not ONNX".
_ONNX_MODEL_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25}


def read_onnx_props(data: bytes) -> dict[str, str]:
    """``ModelProto.metadata_props`` as a dict, parsed straight from the protobuf wire format."""
    props: dict[str, str] = {}
    for number, wire, value in _proto_fields(data):
        if number != 14 or wire != 2:
            continue
        key = text = None
        if not isinstance(value, memoryview):
            continue
        for sub_number, sub_wire, sub_value in _proto_fields(value):
            if sub_wire == 2 and sub_number in (1, 2):
                try:
                    decoded = bytes(sub_value).decode("utf-8")
                except UnicodeDecodeError:
                    raise ModelFileError("an ONNX metadata entry is not valid UTF-8; the file is corrupt") from None
                if sub_number == 1:
                    key = decoded
                else:
                    text = decoded
        if key is not None:
            props[key] = text or ""
    return props


def _proto_fields(data: bytes | memoryview, limit: int | None = None) -> list[tuple[int, int, memoryview | int]]:
    """Top-level (field number, wire type, value) triples of a protobuf message."""
    fields: list[tuple[int, int, memoryview | int]] = []
    for number, wire, value, _ in proto_fields(data):
        if limit is not None and len(fields) >= limit:
            break
        fields.append((number, wire, value))
    return fields


def proto_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, memoryview | int, memoryview]]:
    """Top-level fields of a protobuf message, one by one: (field number, wire type, value, the field's
    own bytes, key included), so a message can be rewritten field by field (see ``teach/graph_onnx``).
    Length-delimited values and the fields' bytes are views, never copies (reading a model's metadata
    must not copy its graph); fixed-width values are 0 (never needed here)."""
    view = memoryview(data)
    pos = 0
    value: memoryview | int
    while pos < len(view):
        start = pos
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ModelFileError("not a protobuf message (field number 0)")
        if wire == 0:
            value, pos = _varint(view, pos)
        elif wire == 1:
            _check(view, pos, 8)
            value, pos = 0, pos + 8
        elif wire == 2:
            length, pos = _varint(view, pos)
            _check(view, pos, length)
            value, pos = view[pos : pos + length], pos + length
        elif wire == 5:
            _check(view, pos, 4)
            value, pos = 0, pos + 4
        else:
            raise ModelFileError(f"not a protobuf message (wire type {wire})")
        yield number, wire, value, view[start:pos]


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(view):
            raise ModelFileError("the ONNX protobuf is truncated")
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ModelFileError("the ONNX protobuf has an invalid varint")


def _check(view: memoryview, pos: int, length: int) -> None:
    if pos + length > len(view):
        raise ModelFileError("the ONNX protobuf is truncated")
