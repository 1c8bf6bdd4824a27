"""edge_runtime: run converted classifiers on a device, with numpy, OpenCV and LiteRT/ONNX Runtime only.

    from edge_runtime import Classifier
    with Classifier.open("model_int8.tflite") as classifier:
        prediction = classifier.predict(frame_bgr)
        print(prediction.label, prediction.score)

This package never imports TensorFlow, Keras or the toolkit's training packages.
"""

from .classifier import Classifier, Prediction
from .contract import InputSpec, ModelMetadata, Quantization
from .errors import (
    BackendUnavailableError,
    EdgeError,
    FrameError,
    MetadataError,
    ModelFileError,
    OutputError,
    SourceError,
)
from .preprocess import preprocess, to_input_tensor, to_model_image

__all__ = [
    "Classifier",
    "Prediction",
    "InputSpec",
    "ModelMetadata",
    "Quantization",
    "EdgeError",
    "ModelFileError",
    "MetadataError",
    "BackendUnavailableError",
    "FrameError",
    "SourceError",
    "OutputError",
    "preprocess",
    "to_input_tensor",
    "to_model_image",
]
