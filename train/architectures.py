"""The Keras architectures the registry builds (``train.models`` names them): the tutorials' MLPs and
CNN, ``edge_cnn`` and ``camera_cnn``, plus counting their multiply-accumulates.

Normalization is the first layer of every graph (``Rescaling(1/255)``), so deployable files take raw
0..255 pixels. Augmentation never lives in a graph: Keras random layers are traced into exports and
break TFLite conversion. Keras is imported inside the builders: listing models must not start
TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from edge_runtime.contract import InputSpec

if TYPE_CHECKING:
    import keras


def _inputs(spec: InputSpec, any_size: bool = False) -> tuple[Any, Any]:
    import keras
    from keras import layers

    shape = (None, None, spec.channels) if any_size else (spec.height, spec.width, spec.channels)
    inputs = keras.Input(shape=shape, name="image")
    low, high = spec.pixel_range
    return inputs, layers.Rescaling(1.0 / (high - low), offset=-low / (high - low), name="normalize")(inputs)


def _filters(n: int, width: float) -> int:
    return max(2, int(round(n * width)))


def mlp(*units: int) -> Callable[..., "keras.Model"]:
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


def seed_cnn(conv_activation: str | None) -> Callable[..., "keras.Model"]:
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


def edge_cnn(spec: InputSpec, num_classes: int, width: float, any_size: bool = False) -> "keras.Model":
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


def camera_cnn(spec: InputSpec, num_classes: int, width: float, any_size: bool = False) -> "keras.Model":
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
