"""The input contract and metadata that travel inside every deployable model file.

One source of truth: the training registry describes each model's input with an
:class:`InputSpec`, the converter embeds :class:`ModelMetadata` (as JSON) in every TFLite and ONNX
file, and the runtime reads it back to preprocess frames. Parsing is strict: anything malformed
raises :class:`MetadataError` with a message that names the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from . import unknown
from .errors import MetadataError
from .second_look import SecondLook

SCHEMA = "edge-classify/1"
#: Key under which the JSON is stored (TFLite metadata entry name and ONNX metadata_props key).
METADATA_KEY = "edge_classify"
COLOR_ORDERS = ("GRAY", "RGB", "BGR")
RESIZE_MODES = ("area", "linear", "nearest")
# How a frame of another shape becomes the input: stretched to it, its centre cropped to the input's
# aspect (``crop`` of the shorter side), or padded to that aspect with grey. The model is trained and
# evaluated with the same fit, and the file says which.
FITS = ("squash", "crop", "letterbox")
TENSOR_DTYPES = ("float32", "float16", "uint8", "int8")
# Bounds that keep a hostile file from asking for absurd allocations.
_MAX_SIDE = 4096
_MAX_LABELS = 100_000
_MAX_JSON_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class InputSpec:
    """What a model expects to be fed, independent of the file format.

    Pixels are raw 0..255 values: every model normalizes inside its own graph, so the runtime
    never has to know a mean or a standard deviation.
    """

    height: int
    width: int
    channels: int
    color_order: str  # "GRAY" for 1 channel, "RGB" or "BGR" for 3
    layout: str = "NHWC"
    pixel_range: tuple[float, float] = (0.0, 255.0)
    resize: str = "area"  # box-filter halving, then bilinear: no aliasing when a 640x480 frame shrinks to 128x128
    dtype: str = "float32"
    fit: str = "squash"  # squash | crop | letterbox (see FITS)
    crop: float = 1.0  # fit "crop": the centre region's share of the frame's shorter side
    quantization: Quantization | None = None

    def __post_init__(self) -> None:
        _validate_input(self)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Batch-1 NHWC shape."""
        return (1, self.height, self.width, self.channels)

    def with_tensor(self, dtype: str, quantization: Quantization | None) -> "InputSpec":
        """The same contract for a file whose input tensor has another dtype (int8 files)."""
        return replace(self, dtype=dtype, quantization=quantization)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pixel_range"] = list(self.pixel_range)
        data["quantization"] = self.quantization.to_dict() if self.quantization else None
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "InputSpec":
        obj = _mapping(data, "input")
        try:
            pixel_range = obj.get("pixel_range", [0.0, 255.0])
            if not isinstance(pixel_range, (list, tuple)) or len(pixel_range) != 2:
                raise MetadataError("metadata field input.pixel_range must be a list of two numbers")
            return cls(
                height=_int(obj, "height", "input"),
                width=_int(obj, "width", "input"),
                channels=_int(obj, "channels", "input"),
                color_order=_str(obj, "color_order", "input").upper(),
                layout=str(obj.get("layout", "NHWC")),
                pixel_range=(_num(pixel_range[0], "input.pixel_range"), _num(pixel_range[1], "input.pixel_range")),
                resize=str(obj.get("resize", "area")),
                dtype=str(obj.get("dtype", "float32")),
                quantization=_quant(obj.get("quantization"), "input.quantization"),
                fit=str(obj.get("fit", "squash")),
                crop=_num(obj.get("crop", 1.0), "input.crop"),
            )
        except TypeError as exc:  # unhashable or odd JSON types in a field
            raise MetadataError(f"metadata field input is malformed ({exc})") from None


#: Out-of-class scores a file may carry, and the range each takes (owned by edge_runtime.unknown).
UNKNOWN_SCORES = unknown.SCORES


@dataclass(frozen=True)
class UnknownSpec:
    """The optional second output: one out-of-class score per image; above ``threshold`` the frame
    shows none of the classes ("unknown")."""

    threshold: float
    score: str = unknown.SCORE
    keep: float = unknown.KEEP  # the share of held-out in-class images the threshold was calibrated to accept
    dtype: str = "float32"
    quantization: Quantization | None = None

    def is_unknown(self, score: Any) -> Any:
        """Whether a score (or an array of them) means none of the classes."""
        return unknown.is_unknown(score, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "threshold": self.threshold,
            "keep": self.keep,
            "dtype": self.dtype,
            "quantization": self.quantization.to_dict() if self.quantization else None,
        }

    @classmethod
    def from_dict(cls, data: Any) -> "UnknownSpec":
        obj = _mapping(data, "output.unknown")
        score = obj.get("score")
        if score not in UNKNOWN_SCORES:
            raise MetadataError(
                f"metadata field output.unknown.score is {score!r}; expected one of {', '.join(UNKNOWN_SCORES)}"
            )
        if "threshold" not in obj:
            raise MetadataError(
                "metadata declares an out-of-class output (output.unknown) without a threshold; "
                "re-export the model with `python -m convert`"
            )
        threshold = _num(obj.get("threshold"), "output.unknown.threshold")
        low, high = UNKNOWN_SCORES[score]
        if not low <= threshold <= high:
            raise MetadataError(
                f"metadata field output.unknown.threshold {threshold} is outside the {score} range "
                f"{low}..{high}; re-export the model with `python -m convert`"
            )
        keep = _num(obj.get("keep", unknown.KEEP), "output.unknown.keep")
        dtype = str(obj.get("dtype", "float32"))
        if dtype not in TENSOR_DTYPES:
            raise MetadataError(f"metadata field output.unknown.dtype is {dtype!r}")
        return cls(
            threshold=threshold,
            score=score,
            keep=keep,
            dtype=dtype,
            quantization=_quant(obj.get("quantization"), "output.unknown.quantization"),
        )


#: What a file's (first) output holds: class scores after softmax, raw class scores (the runtime applies
#: softmax), or an image's feature vector (a feature extractor that ``edge-classify teach`` builds on).
OUTPUT_KINDS = ("probabilities", "logits", "features")


@dataclass(frozen=True)
class OutputSpec:
    """What the model's outputs hold: the class scores, and optionally an out-of-class score."""

    kind: str = "probabilities"  # softmax is inside every classifier's graph
    dtype: str = "float32"
    quantization: Quantization | None = None
    unknown: UnknownSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "dtype": self.dtype,
            "quantization": self.quantization.to_dict() if self.quantization else None,
        }
        if self.unknown is not None:
            data["unknown"] = self.unknown.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "OutputSpec":
        obj = _mapping(data, "output")
        kind = str(obj.get("kind", "probabilities"))
        if kind not in OUTPUT_KINDS:
            raise MetadataError(f"metadata field output.kind is {kind!r}; expected one of {', '.join(OUTPUT_KINDS)}")
        dtype = str(obj.get("dtype", "float32"))
        if dtype not in TENSOR_DTYPES:
            raise MetadataError(f"metadata field output.dtype is {dtype!r}; expected one of {', '.join(TENSOR_DTYPES)}")
        unknown = UnknownSpec.from_dict(obj["unknown"]) if obj.get("unknown") is not None else None
        return cls(
            kind=kind, dtype=dtype, quantization=_quant(obj.get("quantization"), "output.quantization"), unknown=unknown
        )


@dataclass(frozen=True)
class ModelMetadata:
    """Everything a device needs to use a model file, embedded in the file itself."""

    model: str
    format: str
    labels: tuple[str, ...]
    input: InputSpec
    output: OutputSpec = field(default_factory=OutputSpec)
    accuracy: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    second_look: SecondLook | None = None  # where the runtime looks again when unsure (None: it does not)

    def __post_init__(self) -> None:
        if not self.labels and not self.is_extractor:
            raise MetadataError("metadata has no labels; re-export the model with `python -m convert`")

    @property
    def is_extractor(self) -> bool:
        """A feature extractor: no classes; its output is an image's feature vector."""
        return self.output.kind == "features"

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "model": self.model,
            "format": self.format,
            "labels": list(self.labels),
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "accuracy": dict(self.accuracy),
            "extra": dict(self.extra),
            **({"second_look": self.second_look.to_dict()} if self.second_look else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> "ModelMetadata":
        obj = _mapping(data, "metadata")
        schema = obj.get("schema")
        if not isinstance(schema, str) or not schema.startswith("edge-classify/"):
            raise MetadataError(
                f"metadata schema is {schema!r}, not {SCHEMA!r}; the file was not made by `python -m convert`"
            )
        if schema != SCHEMA:
            raise MetadataError(
                f"metadata schema {schema!r} is newer than this runtime ({SCHEMA}); upgrade edge-classify"
            )
        labels = obj.get("labels")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise MetadataError("metadata field labels must be a list of strings")
        if len(labels) > _MAX_LABELS:
            raise MetadataError(f"metadata has {len(labels)} labels, more than the {_MAX_LABELS} allowed")
        accuracy = obj.get("accuracy", {})
        if not isinstance(accuracy, dict):
            raise MetadataError("metadata field accuracy must be an object")
        extra = obj.get("extra", {})
        if not isinstance(extra, dict):
            raise MetadataError("metadata field extra must be an object")
        return cls(
            model=_str(obj, "model", "metadata"),
            format=_str(obj, "format", "metadata"),
            labels=tuple(labels),
            input=InputSpec.from_dict(obj.get("input")),
            output=OutputSpec.from_dict(obj.get("output", {})),
            accuracy={str(k): _num(v, f"accuracy[{k!r}]") for k, v in accuracy.items()},
            extra=extra,
            schema=schema,
            second_look=SecondLook.from_dict(obj["second_look"]) if obj.get("second_look") is not None else None,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelMetadata":
        if len(text) > _MAX_JSON_BYTES:
            raise MetadataError(f"metadata is {len(text)} bytes, more than the {_MAX_JSON_BYTES} allowed")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise MetadataError(f"metadata is not valid JSON ({' '.join(str(exc).split())[:120]})") from None
        return cls.from_dict(data)


def _validate_input(spec: InputSpec) -> None:
    for name in ("height", "width", "channels"):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise MetadataError(f"metadata field input.{name} must be an integer, got {value!r}")
    if not (1 <= spec.height <= _MAX_SIDE and 1 <= spec.width <= _MAX_SIDE):
        raise MetadataError(f"metadata input size {spec.height}x{spec.width} is outside 1..{_MAX_SIDE}")
    if spec.channels not in (1, 3):
        raise MetadataError(f"metadata input.channels is {spec.channels}; only 1 (gray) and 3 (colour) are supported")
    if spec.color_order not in COLOR_ORDERS:
        raise MetadataError(
            f"metadata input.color_order is {spec.color_order!r}; expected one of {', '.join(COLOR_ORDERS)}"
        )
    if (spec.channels == 1) != (spec.color_order == "GRAY"):
        raise MetadataError(f"metadata input has {spec.channels} channel(s) but color_order {spec.color_order!r}")
    if spec.layout != "NHWC":
        raise MetadataError(f"metadata input.layout is {spec.layout!r}; only NHWC is supported")
    if spec.resize not in RESIZE_MODES:
        raise MetadataError(f"metadata input.resize is {spec.resize!r}; expected one of {', '.join(RESIZE_MODES)}")
    if spec.dtype not in TENSOR_DTYPES:
        raise MetadataError(f"metadata input.dtype is {spec.dtype!r}; expected one of {', '.join(TENSOR_DTYPES)}")
    if spec.dtype in ("uint8", "int8") and spec.quantization is None:
        raise MetadataError(f"metadata input.dtype is {spec.dtype} but input.quantization is missing")
    low, high = spec.pixel_range
    if not low < high:
        raise MetadataError(f"metadata input.pixel_range {list(spec.pixel_range)} must be increasing")
    if spec.fit not in FITS:
        raise MetadataError(f"metadata input.fit is {spec.fit!r}; expected one of {', '.join(FITS)}")
    if not (isinstance(spec.crop, (int, float)) and 0.25 <= spec.crop <= 1.0):
        raise MetadataError(f"metadata input.crop is {spec.crop!r}; expected a fraction in 0.25..1")


def _mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise MetadataError(f"metadata field {where} must be a JSON object, got {type(data).__name__}")
    return data


def _int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MetadataError(f"metadata field {where}.{key} must be an integer, got {value!r}"[:200])
    return value


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MetadataError(f"metadata field {where}.{key} must be a non-empty string, got {value!r}"[:200])
    return value


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MetadataError(f"metadata field {where} must be a finite number, got {value!r}"[:200])
    return float(value)


def _quant(data: Any, where: str) -> Quantization | None:
    if data is None:
        return None
    obj = _mapping(data, where)
    scale = _num(obj.get("scale"), f"{where}.scale")
    if scale <= 0:
        raise MetadataError(f"metadata field {where}.scale must be positive, got {scale}")
    zero_point = obj.get("zero_point")
    if not isinstance(zero_point, int) or isinstance(zero_point, bool) or not -(2**31) <= zero_point < 2**31:
        raise MetadataError(f"metadata field {where}.zero_point must be an integer, got {zero_point!r}"[:200])
    return Quantization(scale=scale, zero_point=zero_point)
