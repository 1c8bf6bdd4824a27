"""Frame -> model input: the single preprocessing path of the toolkit.

Training, conversion (calibration and accuracy checks), the benchmark and the live runtime all
call :func:`to_model_image`, so a model sees the same pixels on a device as it did in training.
Normalization is *not* done here: every model carries it inside its graph and takes raw 0..255.
"""

from __future__ import annotations

import numpy as np

from .contract import InputSpec, Quantization
from .errors import FrameError

_INT_RANGES = {"uint8": (0, 255), "int8": (-128, 127)}


def to_model_image(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize and colour-convert one frame to the model's geometry and colour order.

    Args:
        frame: an OpenCV image: HxW gray, HxWx1, HxWx3 BGR or HxWx4 BGRA; uint8 (uint16 is
            scaled down to 8 bits). Any size, any memory layout.
        spec: the model's input contract.

    Returns:
        A contiguous uint8 array of shape (height, width, channels) in ``spec.color_order``.

    Raises:
        FrameError: for empty frames, unsupported dtypes or channel counts.
    """
    import cv2

    image = _fit(_as_uint8(frame), spec)
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) != (spec.height, spec.width):
        interpolation = _interpolation(spec.resize, src_h, src_w, spec)
        if interpolation == cv2.INTER_AREA:
            image = _area_prefilter(image, spec.width, spec.height)
            interpolation = cv2.INTER_LINEAR
        if image.shape[:2] != (spec.height, spec.width):
            image = cv2.resize(image, (spec.width, spec.height), interpolation=interpolation)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if spec.channels == 1:
        if channels == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        return np.ascontiguousarray(image.reshape(spec.height, spec.width, 1))
    if channels == 1:
        code = cv2.COLOR_GRAY2RGB if spec.color_order == "RGB" else cv2.COLOR_GRAY2BGR
    elif channels == 4:
        code = cv2.COLOR_BGRA2RGB if spec.color_order == "RGB" else cv2.COLOR_BGRA2BGR
    else:  # BGR frames: only RGB models need a conversion
        code = cv2.COLOR_BGR2RGB if spec.color_order == "RGB" else -1
    if code != -1:
        image = cv2.cvtColor(image.reshape(spec.height, spec.width) if channels == 1 else image, code)
    return np.ascontiguousarray(image)


LETTERBOX_GREY = 127  # the pad value: mid-grey, which ImageNet-style normalization maps to about zero


def _fit(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The frame region (``crop``) or padded frame (``letterbox``) that is resized to the input.

    ``squash`` returns the frame as it is; the resize then stretches it to the input's shape.
    """
    if spec.fit == "squash":
        return image
    h, w = image.shape[:2]
    aspect = spec.width / spec.height
    if spec.fit == "crop":
        # The largest centred region of the input's aspect, then ``crop`` of it (0.875: the usual
        # centre crop of ImageNet models).
        region_w = min(w, h * aspect) * spec.crop
        region_h = region_w / aspect
        crop_w, crop_h = max(1, round(region_w)), max(1, round(region_h))
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        return image[top : top + crop_h, left : left + crop_w]
    import cv2

    if w / h > aspect:  # wider than the input: pad above and below
        pad = round(w / aspect) - h
        borders = (pad // 2, pad - pad // 2, 0, 0)
    else:
        pad = round(h * aspect) - w
        borders = (0, 0, pad // 2, pad - pad // 2)
    if max(borders) <= 0:
        return image
    value = (LETTERBOX_GREY,) * (1 if image.ndim == 2 else image.shape[2])
    return cv2.copyMakeBorder(image, *borders, cv2.BORDER_CONSTANT, value=value)


def to_input_tensor(images: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Turn a uint8 NHWC batch from :func:`to_model_image` into the model file's input dtype.

    Float files get float32 0..255; integer files get the quantized values their input tensor
    expects (``q = round(x / scale) + zero_point``, saturated).
    """
    if images.ndim == 3:
        images = images[None]
    if spec.dtype in ("float32", "float16"):
        return images.astype(spec.dtype)
    return quantize(images, spec.quantization, spec.dtype)


def preprocess(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One frame to a batch-1 input tensor, exactly as the model file wants it."""
    return to_input_tensor(to_model_image(frame, spec)[None], spec)


def quantize(values: np.ndarray, quant: Quantization | None, dtype: str) -> np.ndarray:
    """Affine-quantize real values to an integer tensor dtype."""
    if quant is None:
        raise FrameError(
            f"the model's {dtype} input has no quantization parameters; re-export it with `python -m convert`"
        )
    low, high = _INT_RANGES[dtype]
    # uint8 pixels into an int8 tensor with scale 1 and zero point -128 (what convert writes for
    # raw-pixel models) is a pure offset; doing it in integers keeps the per-frame cost tiny.
    if values.dtype == np.uint8 and dtype == "int8" and quant.scale == 1.0 and quant.zero_point == -128:
        return (values ^ np.uint8(0x80)).view(np.int8)
    scaled = np.round(values.astype(np.float32) / np.float32(quant.scale)) + quant.zero_point
    return np.clip(scaled, low, high).astype(dtype)


def dequantize(values: np.ndarray, quant: Quantization | None) -> np.ndarray:
    """Integer tensor back to real float32 values; floats pass through as float32."""
    if quant is None or values.dtype.kind == "f":
        return values.astype(np.float32, copy=False)
    return (values.astype(np.float32) - np.float32(quant.zero_point)) * np.float32(quant.scale)


def _as_uint8(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"a frame must be a numpy array, got {type(frame).__name__}")
    if frame.ndim not in (2, 3) or frame.size == 0 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise FrameError(f"frame of shape {frame.shape} is empty or not an image; pass an HxW or HxWxC array")
    if frame.ndim == 3 and frame.shape[2] not in (1, 3, 4):
        raise FrameError(f"frame has {frame.shape[2]} channels; pass gray (1), BGR (3) or BGRA (4)")
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise FrameError(
            f"frame dtype {frame.dtype} is not supported; pass uint8 BGR (scale 0..1 floats by 255 and cast to uint8)"
        )
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    # OpenCV rejects negative strides and some views; a copy only happens for such inputs.
    return np.ascontiguousarray(frame)


def _area_prefilter(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Halve with 2x2 box averaging while both axes are at least 1.5x the target.

    OpenCV's area resize is fast only for a uniform 2x factor (~0.1 ms for 640x480) and several
    times slower otherwise (~1.5 ms for 640x480 -> 128x128 in one step). After the halvings the
    remaining factor is at most 1.5 on the smaller side, which bilinear interpolation handles without
    visible aliasing (640x480 -> 320x240 -> 160x120 -> 128x128).
    """
    import cv2

    h, w = image.shape[:2]
    while w % 2 == 0 and h % 2 == 0 and min(w / width, h / height) >= 1.5:
        w, h = w // 2, h // 2
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return image


def _interpolation(mode: str, src_h: int, src_w: int, spec: InputSpec) -> int:
    import cv2

    if mode == "nearest":
        return cv2.INTER_NEAREST
    if mode == "linear" or (src_h < spec.height and src_w < spec.width):
        # INTER_AREA degrades to nearest-neighbour when enlarging; linear is what it should be.
        return cv2.INTER_LINEAR
    return cv2.INTER_AREA
