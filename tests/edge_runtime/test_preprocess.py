"""One preprocessing path: what training feeds a model is what the runtime feeds it on a device."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_runtime.contract import InputSpec, Quantization
from edge_runtime.errors import FrameError
from edge_runtime.preprocess import preprocess, quantize, to_input_tensor, to_model_image

GRAY = InputSpec(height=28, width=28, channels=1, color_order="GRAY")
RGB = InputSpec(height=128, width=128, channels=3, color_order="RGB")


@pytest.mark.dataset
def test_fashion_training_tensor_equals_runtime_tensor(fashion_dir):
    from train import data as data_mod
    from train.config import TrainConfig
    from train.datasets import fashion_mnist

    config = TrainConfig(model="edge_cnn", augment="none", train_limit=50, test_limit=8).resolved()
    data = data_mod.load(config, GRAY, batch_size=4)
    test = fashion_mnist.load_split("test", fashion_dir)
    for i in range(8):
        runtime = preprocess(test.images[i], GRAY)  # a gray frame straight from the dataset
        np.testing.assert_array_equal(runtime[0], data.test[0][i].astype(np.float32))


def test_camera_scene_training_tensor_equals_runtime_tensor(rng):
    from train.datasets import camera_scenes

    garments = np.zeros((1, 28, 28), np.uint8)
    garments[0, 5:23, 7:21] = 200
    trained_on = camera_scenes.render_batch(garments, np.array([0]), seed=3, split="train", epoch=0, spec=RGB)
    frame_bgr = camera_scenes.SceneRenderer().render(garments[0], camera_scenes.scene_rng(3, "train", 0, 0))
    np.testing.assert_array_equal(preprocess(frame_bgr, RGB)[0], trained_on[0].astype(np.float32))


@pytest.mark.parametrize("fit, crop", [("squash", 1.0), ("crop", 0.875), ("crop", 1.0), ("letterbox", 1.0)])
def test_folder_training_tensor_equals_runtime_tensor_for_a_camera_sized_frame(tmp_path, rng, fit, crop):
    from train.datasets import folder

    spec = InputSpec(height=128, width=128, channels=3, color_order="RGB", fit=fit, crop=crop)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        cv2.imwrite(str(tmp_path / cls / "x.png"), frame)
    images, _ = folder.open_folder(tmp_path).load(spec)
    np.testing.assert_array_equal(preprocess(frame, spec)[0], images[0].astype(np.float32))


def test_each_fit_shows_the_model_the_part_of_the_frame_it_names():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :80] = 255  # a white band along the left edge
    frame[200:280, 280:360] = (0, 0, 255)  # a red square in the centre
    squash, crop, box = (
        to_model_image(frame, InputSpec(128, 128, 3, "RGB", fit=fit, crop=c))
        for fit, c in (("squash", 1.0), ("crop", 0.875), ("letterbox", 1.0))
    )
    assert squash[64, 0, 1] == 255 and crop[64, 0, 1] == 0  # the centre crop cuts the band off
    assert box[0, 64].tolist() == [127, 127, 127] and box[64, 0, 1] == 255  # grey bars above, band kept
    # The red square fills a larger share of the centre crop than of the whole frame.
    red = [int(((image[..., 0] > 128) & (image[..., 1] < 64)).sum()) for image in (squash, crop, box)]
    assert red[1] > red[0] > red[2] > 0
    spec = InputSpec(128, 128, 3, "RGB", fit="crop", crop=0.875)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert InputSpec.from_dict({k: v for k, v in RGB.to_dict().items() if k not in ("fit", "crop")}).fit == "squash"


def test_colour_order_and_channels(rng):
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[..., 2] = 255  # red in BGR
    rgb = to_model_image(frame, RGB)
    assert rgb.shape == (128, 128, 3) and rgb[..., 0].min() == 255 and rgb[..., 2].max() == 0
    gray = to_model_image(frame, GRAY)
    assert gray.shape == (28, 28, 1) and 70 <= gray.mean() <= 80  # 0.299 * 255
    bgra = np.dstack([frame, np.full((60, 80), 7, np.uint8)])
    np.testing.assert_array_equal(to_model_image(bgra, RGB), rgb)
    single = rng.integers(0, 256, (50, 50), dtype=np.uint8)
    np.testing.assert_array_equal(to_model_image(single, RGB)[..., 0], to_model_image(single[..., None], RGB)[..., 1])


def test_unusual_but_valid_frames(rng):
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    flipped = frame[::-1, ::-2]  # negative strides, non-contiguous
    assert to_model_image(flipped, RGB).shape == (128, 128, 3)
    sixteen = frame.astype(np.uint16) << 8
    np.testing.assert_array_equal(to_model_image(sixteen, RGB), to_model_image(frame, RGB))
    assert to_model_image(np.zeros((1, 1, 3), np.uint8), RGB).shape == (128, 128, 3)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 2), np.uint8), "2 channels"),
        (np.zeros((10, 10, 3), np.float32), "dtype float32 is not supported"),
        (np.zeros((2, 2, 2, 2), np.uint8), "not an image"),
        ("frame.jpg", "numpy array"),
    ],
)
def test_bad_frames_are_rejected_with_a_clear_error(bad, message):
    with pytest.raises(FrameError, match=message):
        to_model_image(bad, RGB)


def test_quantize_fast_path_matches_the_formula(rng):
    values = rng.integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    fast = quantize(values, Quantization(1.0, -128), "int8")
    slow = np.clip(np.round(values.astype(np.float64) / 1.0) - 128, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(fast, slow)
    general = quantize(values, Quantization(0.5, 3), "uint8")
    np.testing.assert_array_equal(general, np.clip(np.round(values / 0.5) + 3, 0, 255).astype(np.uint8))
    spec = InputSpec(
        height=5, width=5, channels=3, color_order="RGB", dtype="int8", quantization=Quantization(1.0, -128)
    )
    assert to_input_tensor(values, spec).dtype == np.int8
