"""A feature extractor file in the real interpreter: an image in, its feature vector out.

The files come from ``python -m convert.features`` (an ImageNet backbone without its classifier,
``output.kind: features`` in the contract). ``edge-classify teach`` computes the features of the
examples it is shown with one, and appends a classifier head to the same file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .backends import Backend
from .contract import InputSpec, ModelMetadata, OutputSpec, Quantization
from .engines import open_backend
from .errors import MetadataError, ModelFileError
from .metadata import load_bytes, read_metadata
from .preprocess import dequantize, to_input_tensor, to_model_image

# The shipped extractor, inside the runs folder (`python -m convert.features` writes it there).
DEFAULT_EXTRACTOR = Path("imagenet_lite0") / "features" / "features_int8.tflite"


def default_extractor() -> Path:
    """Where the shipped extractor is: in ``$EDGE_RUNS_DIR``, else the checkout's ``runs/`` (the
    rule the runs folder follows everywhere; never the current folder)."""
    from edge_common.paths import default_runs_dir

    return default_runs_dir() / DEFAULT_EXTRACTOR


class FeatureExtractor:
    """A loaded extractor. Use :meth:`open`; ``features*`` return float32 vectors, dequantized."""

    def __init__(self, backend: Backend, metadata: ModelMetadata, path: Path, data: bytes) -> None:
        self.backend = backend
        self.metadata = metadata
        self.path = path
        self.kind = metadata.format.split("_", 1)[0]  # "tflite" or "onnx"
        self.data = data  # the file's bytes: a taught model is this graph plus a head
        out = backend.output
        self._quant = (
            Quantization(out.scale, out.zero_point) if out.dtype in ("int8", "uint8") and out.scale > 0 else None
        )
        self.input_spec: InputSpec = metadata.input
        self.output_spec = replace(metadata.output, dtype=out.dtype, quantization=self._quant)

    @classmethod
    def open(
        cls,
        path: str | Path,
        backend: str = "auto",
        threads: int | None = None,
        *,
        input_spec: InputSpec | None = None,
        accelerator: str = "auto",
        device: str | None = None,
        delegate: str | None = None,
    ) -> "FeatureExtractor":
        """Load an extractor file (``input_spec``: the contract of a file not yet carrying one;
        ``accelerator``, ``device``, ``delegate``: as for :meth:`Classifier.open`).

        Raises:
            ModelFileError: missing, corrupt or not an extractor (a classifier, say).
            MetadataError: malformed metadata.
        """
        path = Path(path)
        kind, data = load_bytes(path)
        return cls.from_bytes(
            kind,
            data,
            path,
            backend,
            threads,
            input_spec=input_spec,
            accelerator=accelerator,
            device=device,
            delegate=delegate,
        )

    @classmethod
    def from_bytes(
        cls,
        kind: str,
        data: bytes,
        path: Path,
        backend: str = "auto",
        threads: int | None = None,
        *,
        input_spec: InputSpec | None = None,
        accelerator: str = "auto",
        device: str | None = None,
        delegate: str | None = None,
    ) -> "FeatureExtractor":
        """An extractor from a file's bytes (``path`` names it in messages)."""
        try:
            metadata = read_metadata(kind, data, path)
        except MetadataError:
            if input_spec is None:
                raise
            metadata = ModelMetadata(
                model=path.stem,
                format=f"{kind}_unknown",
                labels=(),
                input=input_spec,
                output=OutputSpec(kind="features"),
            )
        if not metadata.is_extractor:
            raise ModelFileError(
                f"{path}: is a classifier ({metadata.model}), not a feature extractor; pass "
                "features_int8.tflite or features_float32.onnx from `python -m convert.features`"
            )
        engine = open_backend(kind, data, backend, threads, accelerator=accelerator, device=device, delegate=delegate)
        if engine.unknown is not None or len(engine.output.shape) != 2:
            engine.close()
            raise ModelFileError(
                f"{path}: a feature extractor has one output of shape (1, features), this one has {engine.output.shape}"
            )
        dtype = engine.input.dtype
        quant = Quantization(engine.input.scale, engine.input.zero_point) if dtype in ("int8", "uint8") else None
        metadata = replace(metadata, input=metadata.input.with_tensor(dtype, quant))
        return cls(engine, metadata, path, data)

    @property
    def dim(self) -> int:
        return int(self.backend.output.shape[-1])

    @property
    def backend_name(self) -> str:
        return self.backend.engine or f"{self.backend.name} {self.backend.version}"

    @property
    def extractor_id(self) -> str:
        """What identifies this extractor's feature space (the same for its TFLite and ONNX files)."""
        return str(self.metadata.extra.get("extractor_id") or self.metadata.model)

    def features(self, tensor: np.ndarray) -> np.ndarray:
        """The feature vector of a prepared batch-1 tensor."""
        return dequantize(np.asarray(self.backend.run(tensor)).reshape(-1), self._quant).astype(np.float32)

    def features_of_image(self, image: np.ndarray) -> np.ndarray:
        """Features of an image already at the model's input size and colour order (uint8 HxWxC)."""
        return self.features(to_input_tensor(image[None], self.input_spec))

    def features_of_frame(self, frame: np.ndarray) -> np.ndarray:
        """Features of a BGR frame of any size, prepared by the contract (resize, crop) as the runtime does."""
        return self.features_of_image(to_model_image(frame, self.input_spec))

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "FeatureExtractor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
