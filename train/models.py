"""The model registry: one entry per model name, the single source of truth for every model.

Each :class:`ModelSpec` says the model's input contract, the dataset it trains on, how to build
it and the training options its recipe changes (TrainConfig fields). ``train``, ``convert``,
``benchmarks`` and the tests all read :data:`REGISTRY`. Normalization is the first layer of every
graph (``Rescaling(1/255)``), so deployable files take raw 0..255 pixels. Augmentation never lives
in a graph: Keras random layers are traced into exports and break TFLite conversion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from edge_common.errors import EdgeError, suggest
from edge_runtime.contract import InputSpec

if TYPE_CHECKING:  # keras is imported lazily: listing models must not start TensorFlow
    import keras

FASHION_INPUT = InputSpec(height=28, width=28, channels=1, color_order="GRAY")
CAMERA_INPUT = InputSpec(height=128, width=128, channels=3, color_order="RGB")
# Real photos are framed loosely: the model sees the centre 87.5% of a frame's shorter side, in
# training, conversion and on the device, as ImageNet models are evaluated.
PHOTO_INPUT = InputSpec(height=128, width=128, channels=3, color_order="RGB", fit="crop", crop=0.875)
IMAGENET_INPUT = InputSpec(height=224, width=224, channels=3, color_order="RGB", fit="crop", crop=0.875)


class UnknownModelError(EdgeError):
    """A model name that is not in the registry."""


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry."""

    name: str
    description: str
    input: InputSpec
    dataset: str  # "fashion_mnist", "camera_scenes", "folder" or "imagenet" (ported, never trained here)
    builder: Callable[..., "keras.Model"] | None  # None: built on the recipe's pretrained backbone
    # Training options that differ from TrainConfig's base values (keys are TrainConfig fields).
    recipe: Mapping[str, Any] = field(default_factory=dict)
    any_size: bool = False  # fully convolutional: can train at a lower resolution first
    bench_sizes: tuple[int, ...] = ()  # the benchmark also measures the same weights at these input sizes
    formats: tuple[str, ...] | None = None  # the deploy files it ships (None: every deployable format)
    convert: Mapping[str, Any] = field(default_factory=dict)  # ConvertConfig options its conversion changes

    def build(self, num_classes: int = 10, *, width: float = 1.0, input_spec: InputSpec | None = None,
              any_size: bool = False) -> "keras.Model":
        """Build a fresh, uncompiled Keras model.

        Args:
            num_classes: size of the softmax output.
            width: filter multiplier (tests use tiny widths).
            input_spec: override the input size (tests use 32x32 camera models).
            any_size: accept any height and width (only fully convolutional models; used to train
                at a lower resolution first). Exported files still have the contract's fixed size.
        """
        spec = input_spec or self.input
        if self.builder is None:
            raise ValueError(f"{self.name} is built on a pretrained backbone; use build_model()")
        if any_size and not self.any_size:
            raise ValueError(f"{self.name} needs its fixed {spec.height}x{spec.width} input")
        model = self.builder(spec, num_classes, width, any_size)
        model.name = self.name  # type: ignore[misc]
        return model


def _inputs(spec: InputSpec, any_size: bool = False) -> tuple[Any, Any]:
    import keras
    from keras import layers

    shape = (None, None, spec.channels) if any_size else (spec.height, spec.width, spec.channels)
    inputs = keras.Input(shape=shape, name="image")
    low, high = spec.pixel_range
    return inputs, layers.Rescaling(1.0 / (high - low), offset=-low / (high - low), name="normalize")(inputs)


def _filters(n: int, width: float) -> int:
    return max(2, int(round(n * width)))


def _mlp(*units: int) -> Callable[..., "keras.Model"]:
    def build(spec: InputSpec, num_classes: int, width: float, any_size: bool = False) -> "keras.Model":
        import keras
        from keras import layers

        inputs, x = _inputs(spec)
        x = layers.Flatten(name="flatten")(x)
        for i, n in enumerate(units):
            x = layers.Dense(_filters(n, width), activation="relu", name=f"dense{i + 1}")(x)
        outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
        return keras.Model(inputs, outputs)

    return build


def _seed_cnn(conv_activation: str | None) -> Callable[..., "keras.Model"]:
    """The tutorials' CNN: Conv32 -> pool -> Conv64 -> pool -> Dense512 -> softmax."""

    def build(spec: InputSpec, num_classes: int, width: float, any_size: bool = False) -> "keras.Model":
        import keras
        from keras import layers

        inputs, x = _inputs(spec)
        x = layers.Conv2D(_filters(32, width), 3, activation=conv_activation, name="conv1")(x)
        x = layers.MaxPooling2D(2, name="pool1")(x)
        x = layers.Conv2D(_filters(64, width), 3, activation=conv_activation, name="conv2")(x)
        x = layers.MaxPooling2D(2, name="pool2")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(_filters(512, width), activation="relu", name="dense")(x)
        outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
        return keras.Model(inputs, outputs)

    return build


# Keras' default 0.99 needs ~500 steps before the inference statistics are usable; 0.9 settles in
# ~50, which short runs (and the first epochs of long ones) need, at no cost to the final model.
# synchronized=True makes multi-worker replicas share batch statistics, so every worker ends with
# the same moving averages; on one device it changes nothing.
_BN_MOMENTUM = 0.9


def _conv_bn(x: Any, filters: int, kernel: int, strides: int, name: str) -> Any:
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=_BN_MOMENTUM, synchronized=True, name=f"{name}_bn")(x)
    # ReLU6 keeps activations in a fixed range, which is kind to int8 calibration.
    return layers.ReLU(6.0, name=f"{name}_relu")(x)


def _separable(x: Any, filters: int, strides: int, name: str) -> Any:
    """MobileNet block: depthwise 3x3 + BN + ReLU6, pointwise 1x1 + BN + ReLU6 (BN folds away)."""
    from keras import layers

    x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=_BN_MOMENTUM, synchronized=True, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    return _conv_bn(x, filters, 1, 1, f"{name}_pw")


def _edge_cnn(spec: InputSpec, num_classes: int, width: float, any_size: bool = False) -> "keras.Model":
    """28x28 model built for accuracy per microsecond on CPUs and for int8, and for garments that are
    not centred.

    A stride-2 stem halves the resolution before any wide layer (the 28x28 stage is where a
    plain CNN spends most of its time). Full 3x3 convolutions do the work at 14x14 and on the way
    down to 7x7: on CPUs they run and train several times more multiply-accumulates per second
    than depthwise ones, in float32 and in int8. A depthwise-separable block widens the 7x7 map
    cheaply; a second one halves it to 4x4 on its way to the widest map, where 320 channels cost a
    third of what 192 cost at 7x7. That 4x4 stage took int8 latency from a tie with seed_cnn to
    about 20% below it at the same accuracy, and the receptive field stays 27x27 pixels, nearly
    the whole image. The head averages that map (global pooling) instead of flattening it: a
    flattened map ties each weight to a position, and the model then broke on a garment shifted by
    (5, 3) pixels (34% correct).
    """
    import keras
    from keras import layers

    inputs, x = _inputs(spec)
    x = _conv_bn(x, _filters(24, width), 3, 2, "stem")
    x = _conv_bn(x, _filters(32, width), 3, 1, "conv1")
    x = _conv_bn(x, _filters(96, width), 3, 2, "conv2")
    x = _separable(x, _filters(144, width), 1, "block1")
    x = _separable(x, _filters(320, width), 2, "block2")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs)


def _camera_cnn(spec: InputSpec, num_classes: int, width: float, any_size: bool = False) -> "keras.Model":
    """128x128 RGB model for live cameras: early striding, full convolutions where they pay, global pooling.

    The first 2x2 average pooling costs almost nothing and loses almost nothing (a 640x480 frame
    has already been shrunk ~4x to 128x128), and every later layer then runs on a quarter of the
    pixels. Full 3x3 convolutions do the work at 32x32, 16x16 and 8x8: on CPUs they train several
    times more work per second than depthwise ones, and the camera scenes need the capacity.
    Depthwise-separable blocks finish the three deeper stages. The 8x8 and 4x4 stages hold most of
    the parameters yet cost little time (small maps, large matrix products): they give the last
    layers a receptive field wider than the largest garment, and lifted accuracy on the camera
    scenes from 83.6% to 85.5% for 9% more training time. Global average pooling makes the
    prediction independent of where the object is.
    """
    import keras
    from keras import layers

    inputs, x = _inputs(spec, any_size)
    x = layers.AveragePooling2D(2, name="shrink")(x)
    x = _conv_bn(x, _filters(24, width), 3, 2, "stem")
    x = _conv_bn(x, _filters(32, width), 3, 1, "conv1")
    x = _conv_bn(x, _filters(64, width), 3, 2, "conv2")
    x = _separable(x, _filters(64, width), 1, "block1")
    x = _conv_bn(x, _filters(128, width), 3, 2, "conv3")
    x = _separable(x, _filters(128, width), 1, "block2")
    x = _conv_bn(x, _filters(128, width), 3, 1, "conv4")
    x = _conv_bn(x, _filters(256, width), 3, 2, "conv5")
    x = _separable(x, _filters(256, width), 1, "block3")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs)


# The tutorials' optimizer and batch (Adam 1e-3, batch 32) with the rate decayed to zero: at a
# constant rate the last epochs only jitter (mlp128 on the 54k training images sat at 86.6-86.7%
# from epoch 3 on), a cosine decay settles them (87.8% after 5 epochs).
_MLP_RECIPE = dict(epochs=10, batch_size=32, learning_rate=1e-3, schedule="cosine", warmup_epochs=0.0,
                   augment="none")

# Megabyte-sized models ship float32 and int8 only: float16 weights compute in float32 on CPUs anyway,
# and dynamic-range files are neither small int8 nor exact float.
_FULL_SIZE_FORMATS = ("tflite_float32", "tflite_int8", "onnx_float32", "onnx_int8")

# Depthwise weights need all 8 bits: with 7-bit ONNX weights clothes_lite0 lost 1.17 points on its
# held-out photos and edge_cnn 0.67 on Fashion-MNIST, with 8-bit neither lost any. The price: on x86
# without VNNI, ONNX Runtime's U8S8 kernel can saturate with full 8-bit weights (README, "ONNX int8").
_EIGHT_BIT_ONNX_WEIGHTS = {"onnx_reduce_range": False}

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("mlp128", "tutorial MLP: Flatten -> Dense(128) -> Dense(10)", FASHION_INPUT, "fashion_mnist",
                  _mlp(128), {**_MLP_RECIPE, "epochs": 5}),
        ModelSpec("mlp512", "tutorial MLP: Flatten -> Dense(512) -> Dense(10)", FASHION_INPUT, "fashion_mnist",
                  _mlp(512), _MLP_RECIPE),
        ModelSpec("mlp256_64", "tutorial MLP: Flatten -> Dense(256) -> Dense(64) -> Dense(10)", FASHION_INPUT,
                  "fashion_mnist", _mlp(256, 64), {**_MLP_RECIPE, "epochs": 30}),
        ModelSpec("seed_cnn", "tutorial CNN (843,658 params) with ReLU on its convolutions, Adam, batch 128, "
                  "trained on shifted and tilted garments", FASHION_INPUT, "fashion_mnist", _seed_cnn("relu"),
                  dict(epochs=15, batch_size=128, learning_rate=1e-3, schedule="constant", augment="framing",
                       max_shift=6, max_rotation=10.0)),
        # The tutorial's stopping rule: EarlyStopping(patience=10) on validation loss with ModelCheckpoint
        # keeping the best epoch; epochs is only a cap.
        ModelSpec("seed_cnn_tutorial", "tutorial CNN exactly as written: no conv activation, RMSprop 1e-4, batch 200, "
                  "early stopping", FASHION_INPUT, "fashion_mnist", _seed_cnn(None),
                  dict(epochs=100, patience=10, batch_size=200, learning_rate=1e-4, schedule="constant",
                       optimizer="rmsprop", augment="none", val_fraction=0.2)),
        ModelSpec("edge_cnn", "our 28x28 model: stride-2 stem, 3x3 convs, separable blocks, global pooling; trained on "
                  "shifted and tilted garments (default)",
                  FASHION_INPUT, "fashion_mnist", _edge_cnn,
                  dict(epochs=70, batch_size=128, learning_rate=3e-3, augment="framing", max_shift=6,
                       max_rotation=10.0, framing_share=0.2, label_smoothing=0.1, weight_decay=0.05),
                  # 8-bit ONNX weights, as Lite0's: 7-bit ones cost 0.10 points here (0.67 on the earlier
                  # 7x7 version, whose depthwise blocks suffered most).
                  convert=_EIGHT_BIT_ONNX_WEIGHTS),
        ModelSpec("clothes_lite0", "real-photo clothes (10 classes): EfficientNet-Lite0 from ImageNet, fine-tuned on "
                  "clothing-small (the default camera model)", PHOTO_INPUT, "folder", None,
                  dict(backbone="lite0", folder="data/clothing-small", augment="camera", epochs=20, head_epochs=3,
                       batch_size=32, learning_rate=2e-3, fine_tune_rate=3e-4, warmup_epochs=0.0,
                       label_smoothing=0.1, patience=15), bench_sizes=(160, 224), formats=_FULL_SIZE_FORMATS,
                  convert=_EIGHT_BIT_ONNX_WEIGHTS),
        ModelSpec("imagenet_lite0", "EfficientNet-Lite0 ImageNet classifier, 1000 classes, as published: point the "
                  "camera at anything (ported, not trained)", IMAGENET_INPUT, "imagenet", None,
                  dict(backbone="lite0", epochs=1, head_epochs=0), formats=_FULL_SIZE_FORMATS,
                  # Its check photos (clothes) have no ImageNet labels, and 1000 classes make many of them
                  # near-ties: int8 agreed with Keras on 83% (TFLite) and 86% (ONNX) of them while keeping
                  # top-1 within 1.0 and 0.0 points on 200 labelled ImageNet photos (see README).
                  convert={**_EIGHT_BIT_ONNX_WEIGHTS, "unlabelled_agreement_min": 0.8}),
        ModelSpec("camera_cnn", "128x128 RGB camera model from scratch on synthetic scenes (the baseline: it does "
                  "not recognise real photos; see clothes_lite0)",
                  CAMERA_INPUT, "camera_scenes", _camera_cnn,
                  dict(epochs=10, low_res_epochs=0, scene_reuse=2, batch_size=64, learning_rate=3e-3,
                                augment="scenes", patience=4, teacher="edge_cnn", distill=0.5),
                  any_size=True),
    )
}
DEFAULT_MODEL = "edge_cnn"  # python -m train with no model named
# The models whose runs and deploy files are committed: make train and make convert, and convert's default.
SHIPPED = ("edge_cnn", "camera_cnn", "clothes_lite0", "imagenet_lite0")


def get(name: str) -> ModelSpec:
    """Look a model up by name.

    Raises:
        UnknownModelError: naming the closest registered model.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}{suggest(name, REGISTRY)}; "
                                f"choose from {', '.join(REGISTRY)}") from None


def build_model(spec: ModelSpec, num_classes: int, *, width: float = 1.0, input_spec: InputSpec | None = None,
                any_size: bool = False, backbone: str | None = None, dropout: float = 0.2,
                imagenet: bool = False) -> "keras.Model":
    """A fresh model for a run: the registry's architecture, or with ``backbone`` that backbone with
    a new head (ImageNet weights loaded when ``imagenet``)."""
    if backbone is None:
        return spec.build(num_classes, width=width, input_spec=input_spec, any_size=any_size)
    from . import backbones
    from .backbones import efficientnet_lite

    shape = input_spec or spec.input
    model = efficientnet_lite.classifier(backbones.get(backbone), shape.height, shape.width, num_classes,
                                         dropout=dropout, imagenet=imagenet)
    model.name = spec.name  # type: ignore[misc]
    return model


def count_macs(model: "keras.Model") -> int:
    """Multiply-accumulates for one image through conv, depthwise and dense layers."""
    from keras import layers

    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw
        elif isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            c_in = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += h * w * c_out * kh * kw * c_in // layer.groups
        elif isinstance(layer, layers.Dense):
            total += int(layer.input.shape[-1]) * layer.units
    return int(total)
