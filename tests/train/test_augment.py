"""The augmentations on real Fashion-MNIST garments, and the pictures a run leaves behind."""

from __future__ import annotations

import numpy as np

from train import augment


def _centre_of_mass(image: np.ndarray) -> np.ndarray:
    weights = image[..., 0].astype(np.float64)
    rows, cols = np.indices(weights.shape)
    return np.array([(rows * weights).sum(), (cols * weights).sum()]) / weights.sum()


def test_framing_moves_garments_within_its_limits():
    # A centred square: flips, tilts and zooms about the centre leave its centre where it is, so the
    # centre's move is the shift alone.
    images = np.zeros((400, 28, 28, 1), np.uint8)
    images[:, 11:17, 11:17] = 255
    out = augment.framing(images, np.random.default_rng(0), max_shift=6, max_rotation=12.0)
    assert out.shape == images.shape and out.dtype == np.uint8
    moved = np.array([np.abs(_centre_of_mass(a) - _centre_of_mass(b)).max() for a, b in zip(out, images)])
    # Two thirds keep the dataset's centring (a pixel at most), a third are moved by up to 6 pixels.
    assert 0.2 < np.mean(moved > 1.05) < 0.45 and moved.max() <= 6.05 and moved.max() > 5.0
    assert np.array_equal(
        augment.framing(images[:8], np.random.default_rng(1)), augment.framing(images[:8], np.random.default_rng(1))
    )  # seeded: resumable


def test_tutorial_augmentation_fills_borders_with_the_nearest_pixel_not_a_mirror_image():
    image = np.zeros((1, 28, 28, 1), np.uint8)
    image[0, 12:15, 1:4] = 255  # an object near the left edge; column 0 is background
    bright = [
        int(
            (
                augment.tutorial_affine(
                    image, np.random.default_rng(seed), rotation=0.0, shear=0.0, zoom=0.0, flip=False
                )
                > 128
            ).sum()
        )
        for seed in range(30)
    ]
    # A reflecting fill would mirror the object into uncovered columns: about twice the bright pixels.
    assert max(bright) <= 12


def test_model_summary_keeps_the_parameter_column():
    from train import models, plots

    text = plots.model_summary(models.get("edge_cnn").build())
    header = next(line for line in text.splitlines() if "Layer (type)" in line)
    assert "Param #" in header and "Output Shape" in header
    assert "Total params: 103,474" in text
    conv = next(line for line in text.splitlines() if line.startswith("conv1_conv"))
    assert conv.split()[-1] == "6,912"  # 3x3x24x32, no bias


def test_predictions_plot_has_as_many_rows_as_it_fills(tmp_path):
    from PIL import Image

    from train import plots

    rng = np.random.default_rng(0)
    names = tuple("abcdefghij")
    heights = {}
    for count in (4, 15):
        images = rng.integers(0, 255, (count, 28, 28, 1), dtype=np.uint8)
        probs = rng.dirichlet(np.ones(10), count)
        plots.predictions(tmp_path / f"{count}.png", images, rng.integers(0, 10, count), probs, names)
        heights[count] = Image.open(tmp_path / f"{count}.png").size[1]
    assert heights[4] < heights[15] / 2  # 2 rows instead of 5


def test_samples_of_a_class_sorted_folder_show_several_classes():
    from train import data as data_mod

    labels = np.repeat(np.arange(10), 30)  # folder datasets list their files class by class
    shown = data_mod._shown(len(labels), seed=0)
    assert len(shown) == 25 and len(set(labels[shown].tolist())) >= 6
