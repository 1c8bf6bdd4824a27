"""The library entry point for integrators: open a converted model, classify frames."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .backends import Backend
from .contract import InputSpec, ModelMetadata, OutputSpec, Quantization
from .engines import open_backend
from .errors import EdgeError, InferenceError, MetadataError, ModelFileError, NonFiniteScoresError
from .metadata import load_bytes, read_metadata
from .preprocess import dequantize, to_input_tensor, to_model_image
from .second_look import FIRST, SecondLook, choose

UNKNOWN = "unknown"  # what a frame showing none of the classes is called, everywhere
UNCERTAIN = "uncertain"  # a known class whose score is below the caller's --threshold


def frame_answer(top: Sequence[tuple[str, float]], unknown: bool, threshold: float = 0.0) -> str:
    """What one frame shows, in one word: ``unknown`` when the out-of-class score says none of the
    classes, ``uncertain`` when the best score is below ``threshold``, else the best label."""
    if unknown:
        return UNKNOWN
    return top[0][0] if top[0][1] >= threshold else UNCERTAIN


@dataclass(frozen=True)
class Prediction:
    """Top-k labels with scores for one frame, whether it shows none of them, and where the time went."""

    top: tuple[tuple[str, float], ...]
    probabilities: np.ndarray
    preprocess_ms: float
    inference_ms: float
    unknown: bool = False  # the file's out-of-class score is above its threshold (always False without one)
    unknown_score: float | None = None  # that score (None: the file has no out-of-class output)
    look: str = FIRST  # which look answered: "first" (the whole frame) or a zoom's name (second_look)

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def score(self) -> float:
        return self.top[0][1]

    def answer(self, threshold: float = 0.0) -> str:
        """The label to show: see :func:`frame_answer`."""
        return frame_answer(self.top, self.unknown, threshold)


class Classifier:
    """A loaded ``.tflite`` or ``.onnx`` classifier and its input contract.

    Use :meth:`open`; the constructor is for callers that already hold a backend. One classifier
    may be shared by several threads: preprocessing runs in parallel, and the interpreter (which
    holds one set of tensors) runs one call at a time under a lock. For parallel inference, open
    one classifier per thread. Every error is an :class:`EdgeError`; using it after :meth:`close`
    raises :class:`InferenceError`.
    """

    def __init__(self, backend: Backend, metadata: ModelMetadata, path: Path | None = None) -> None:
        self.backend = backend
        self.metadata = metadata
        self.path = path
        self.input_spec: InputSpec = metadata.input
        self.labels: tuple[str, ...] = metadata.labels
        self._output_quant = (
            Quantization(backend.output.scale, backend.output.zero_point)
            if backend.output.dtype in ("int8", "uint8") and backend.output.scale > 0
            else None
        )
        self._softmax = metadata.output.kind == "logits"
        unknown = backend.unknown
        self._unknown_quant = (
            Quantization(unknown.scale, unknown.zero_point)
            if unknown is not None and unknown.dtype in ("int8", "uint8") and unknown.scale > 0
            else None
        )
        self.unknown_spec = metadata.output.unknown  # None: the file cannot say "none of these"
        # Where to look again when unsure (edge_runtime.second_look); set it to None to never.
        self.second_look: SecondLook | None = metadata.second_look
        self._lock = threading.Lock()  # the interpreter's tensors are shared state
        self._closed = False
        self.sha256 = ""  # the file's SHA-256 (hex), which JSONL and /state.json name the model by

    @classmethod
    def open(
        cls,
        path: str | Path,
        backend: str = "auto",
        threads: int | None = None,
        *,
        accelerator: str = "auto",
        device: str | None = None,
        delegate: str | None = None,
        labels: Sequence[str] | None = None,
        input_spec: InputSpec | None = None,
        output_kind: str = "probabilities",
        second_look: str = "auto",
    ) -> "Classifier":
        """Load a model file produced by ``python -m convert``.

        Args:
            path: a ``.tflite`` or ``.onnx`` file.
            backend: ``auto`` (by file type and what is installed), ``litert``, ``tflite_runtime``,
                ``tensorflow``, ``onnxruntime`` or ``openvino``.
            threads: interpreter threads (None: the interpreter's default, or what ``tune`` measured).
            accelerator: ``auto``, ``cpu``, ``tensorrt``, ``cuda``, ``openvino`` or ``edgetpu``; see
                :mod:`edge_runtime.accelerators`. An explicit one that is not usable here raises.
            device: which device of the accelerator (a GPU index, ``GPU`` for OpenVINO, ``usb``).
            delegate: a LiteRT external delegate, ``PATH[:key=value,...]``.
            labels, input_spec, output_kind: the contract for a file without embedded metadata
                (``output_kind`` "logits" makes the runtime apply softmax); ignored when the file
                carries its own.
            second_look: ``auto`` (as the file's contract says), ``on`` or ``off``; see
                :mod:`edge_runtime.second_look`.

        Raises:
            ModelFileError: missing, corrupt, truncated or mislabelled file.
            MetadataError: no or malformed metadata (and no contract passed), or metadata that
                contradicts the model's tensors.
            BackendUnavailableError: nothing installed can run this file type, or the accelerator
                asked for is not usable here (the message says what to install).
        """
        path = Path(path)
        engine = {
            "backend": backend,
            "threads": threads,
            "accelerator": accelerator,
            "device": device,
            "delegate": delegate,
        }
        try:
            classifier = cls._open(path, engine, labels, input_spec, output_kind)
            classifier.second_look = choose(second_look, classifier.metadata.second_look)
            return classifier
        except ModelFileError as exc:  # MetadataError included: name the file in every message
            message = str(exc)
            if str(path) not in message:
                raise type(exc)(f"{path}: {message}") from None
            raise

    @classmethod
    def _open(
        cls,
        path: Path,
        engine_options: dict,
        labels: Sequence[str] | None,
        input_spec: InputSpec | None,
        output_kind: str = "probabilities",
    ) -> "Classifier":
        kind, data = load_bytes(path)
        try:
            metadata = read_metadata(kind, data, path)
        except MetadataError:
            if labels is None or input_spec is None:
                raise
            metadata = ModelMetadata(
                model=path.stem,
                format=kind,
                labels=tuple(labels),
                input=input_spec,
                output=OutputSpec(kind=output_kind),
                extra={"source": "contract passed by the caller"},
            )
        if metadata.is_extractor:
            raise MetadataError(
                f"{path}: is a feature extractor, not a classifier; teach a classifier from it with "
                f"`edge-classify teach --extractor {path} --examples DIR --output FILE`"
            )
        engine = open_backend(kind, data, **engine_options)
        try:
            metadata = _reconcile(metadata, engine, path)
        except MetadataError:
            engine.close()
            raise
        classifier = cls(engine, metadata, path)
        classifier.sha256 = hashlib.sha256(data).hexdigest()
        return classifier

    @property
    def identity(self) -> dict[str, str]:
        """The model that answered, as outputs name it: its name and the start of its file's hash."""
        return {"model": self.metadata.model, "model_sha256": self.sha256[:12]}

    # -- inference ---------------------------------------------------------------------------

    def input_tensor(self, frame: np.ndarray) -> np.ndarray:
        """The exact batch-1 tensor this model is fed for ``frame``."""
        return to_input_tensor(to_model_image(frame, self.input_spec)[None], self.input_spec)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run a prepared batch-1 tensor; returns float32 probabilities (one row)."""
        return self.infer_all(tensor)[0]

    def infer_all(self, tensor: np.ndarray) -> tuple[np.ndarray, float | None]:
        """Run a prepared batch-1 tensor; returns float32 probabilities (one row) and the out-of-class
        score where the file has that output (else None).

        Raises:
            NonFiniteScoresError: the model answered NaN or infinity (a broken file, not an answer).
        """
        with self._lock:
            if self._closed:
                raise InferenceError(f"{self.path or self.metadata.model}: the classifier is closed; open it again")
            try:
                raw, raw_unknown = self.backend.run_all(tensor)
            except EdgeError:
                raise
            except Exception as exc:  # the interpreters raise RuntimeError/ValueError of their own
                raise InferenceError(
                    f"{self.backend.name} failed on this input ({type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:200]})"
                ) from None
        probabilities = dequantize(np.asarray(raw).reshape(-1), self._output_quant)
        if not np.all(np.isfinite(probabilities)):
            raise NonFiniteScoresError(
                f"{self.path or self.metadata.model}: the model answered NaN or infinity; the "
                "file is broken (teach or convert it again)"
            )
        if self._softmax:
            shifted = np.exp(probabilities - probabilities.max())
            probabilities = shifted / shifted.sum()
        if raw_unknown is None:
            return probabilities, None
        unknown = float(dequantize(np.asarray(raw_unknown).reshape(-1), self._unknown_quant)[0])
        if not np.isfinite(unknown):
            raise NonFiniteScoresError(
                f"{self.path or self.metadata.model}: the model's out-of-class score is NaN or "
                "infinity; the file is broken (teach or convert it again)"
            )
        return probabilities, unknown

    def is_unknown(self, unknown_score: float | None) -> bool:
        """Whether a score from :meth:`infer_all` means none of the classes (False for files without one)."""
        return (
            unknown_score is not None and self.unknown_spec is not None and self.unknown_spec.is_unknown(unknown_score)
        )

    def look_again(
        self, frame: np.ndarray, probabilities: np.ndarray, unknown_score: float | None
    ) -> tuple[np.ndarray, float | None, str, bool]:
        """The first look's answer, or a better one from :attr:`second_look`'s zooms of ``frame`` when
        the first is unsure; returns (probabilities, out-of-class score, which look answered, whether
        it looked again)."""
        looks = self.second_look
        if looks is None or not looks.wanted(probabilities, self.is_unknown(unknown_score)):
            return probabilities, unknown_score, FIRST, False
        best, name = (probabilities, unknown_score), FIRST
        for zoom in looks.zooms:
            candidate = self.infer_all(self.input_tensor(zoom.region(frame)))
            if looks.better(candidate, best, self.unknown_spec.threshold if self.unknown_spec else None):
                best, name = candidate, zoom.name
        return best[0], best[1], name, True

    def predict(self, frame: np.ndarray, top_k: int = 3) -> Prediction:
        """Classify one frame (BGR/BGRA/gray uint8, any size), looking again where the first look is
        unsure and the file's contract (or ``second_look``) asks for it.

        Raises:
            FrameError: the frame cannot be used (empty, unsupported dtype or channels).
        """
        started = time.perf_counter()
        tensor = self.input_tensor(frame)
        prepared = time.perf_counter()
        probabilities, unknown_score, look, _ = self.look_again(frame, *self.infer_all(tensor))
        done = time.perf_counter()
        return Prediction(
            self.top(probabilities, top_k),
            probabilities,
            (prepared - started) * 1e3,
            (done - prepared) * 1e3,
            self.is_unknown(unknown_score),
            unknown_score,
            look,
        )

    def predict_batch(self, frames: Iterable[np.ndarray], top_k: int = 3) -> list[Prediction]:
        """Classify several frames; files are batch-1, so this runs them back to back."""
        return [self.predict(frame, top_k) for frame in frames]

    def top(self, probabilities: np.ndarray, k: int = 3) -> tuple[tuple[str, float], ...]:
        """The ``k`` most probable labels, best first; equal probabilities (common with int8 outputs)
        rank by class index, so the first is always ``argmax``, the answer conversion measured."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise EdgeError(f"top_k must be a whole number of at least 1, got {k!r}")
        k = min(int(k), len(self.labels))
        order = np.argsort(-probabilities, kind="stable")[:k]
        return tuple((self.labels[i], float(probabilities[i])) for i in order)

    # -- housekeeping ------------------------------------------------------------------------

    @property
    def engine(self) -> str:
        """What runs this model, read back from the engine: "OpenVINO 2026.4 CPU f32, 2 threads"."""
        return self.backend.engine or f"{self.backend.name} {self.backend.version}"

    def describe(self) -> str:
        spec = self.input_spec
        return (
            f"{self.metadata.model} ({self.metadata.format}) on {self.engine}: "
            f"input {spec.height}x{spec.width}x{spec.channels} {spec.color_order} {spec.dtype}, "
            f"{len(self.labels)} classes"
            + (f", second look at {len(self.second_look.zooms)} zooms when unsure" if self.second_look else "")
        )

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.backend.close()

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reconcile(metadata: ModelMetadata, engine: Backend, path: Path) -> ModelMetadata:
    """Check the metadata against the model's real tensors; fill the tensor dtype from the file."""
    spec = metadata.input
    shape = tuple(engine.input.shape)
    expected = spec.shape
    if len(shape) != 4 or any(actual not in (want, -1) for actual, want in zip(shape, expected)):
        raise MetadataError(
            f"{path}: metadata says input {list(expected)} but the model's input is {list(shape)}; "
            "the metadata does not belong to this model"
        )
    classes = engine.output.shape[-1] if engine.output.shape else -1
    if classes not in (-1, len(metadata.labels)):
        raise MetadataError(
            f"{path}: metadata has {len(metadata.labels)} labels but the model outputs {classes} classes"
        )
    dtype = engine.input.dtype
    if dtype not in ("float32", "float16", "int8", "uint8"):
        raise MetadataError(f"{path}: model input dtype {dtype} is not supported")
    quant = spec.quantization
    if dtype in ("int8", "uint8"):
        if engine.input.scale > 0:
            quant = Quantization(engine.input.scale, engine.input.zero_point)
        elif quant is None:
            raise MetadataError(f"{path}: the {dtype} input has no quantization parameters")
    else:
        quant = None
    output = replace(metadata.output, dtype=engine.output.dtype) if metadata.output else OutputSpec()
    if output.unknown is not None:
        if engine.unknown is None:
            raise MetadataError(
                f"{path}: metadata declares an out-of-class output but the model has none; "
                "the metadata does not belong to this model"
            )
        output = replace(output, unknown=replace(output.unknown, dtype=engine.unknown.dtype))
    return replace(metadata, input=spec.with_tensor(dtype, quant), output=output)
