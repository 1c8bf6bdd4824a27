"""The camera scene generator: deterministic, varied, and never mixing train and test garments."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.contract import InputSpec
from train import data as data_mod
from train import scene_sets
from train.config import TrainConfig
from train.datasets import camera_scenes, fashion_mnist

SPEC = InputSpec(height=128, width=128, channels=3, color_order="RGB")


def _garments(rng, n=12):
    garments = np.zeros((n, 28, 28), np.uint8)
    garments[:, 6:22, 8:20] = rng.integers(120, 255, (n, 16, 12), dtype=np.uint8)
    return garments


def test_same_seed_same_scenes_different_epoch_different_scenes(rng):
    garments = _garments(rng)
    a = camera_scenes.render_batch(garments, np.arange(6), seed=5, split="train", epoch=0, spec=SPEC)
    b = camera_scenes.render_batch(garments, np.arange(6), seed=5, split="train", epoch=0, spec=SPEC)
    c = camera_scenes.render_batch(garments, np.arange(6), seed=5, split="train", epoch=1, spec=SPEC)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (6, 128, 128, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 10


def test_scene_order_does_not_change_a_scene(rng):
    garments = _garments(rng)
    forward = camera_scenes.render_batch(garments, np.array([2, 5]), seed=1, split="test", epoch=0, spec=SPEC)
    backward = camera_scenes.render_batch(garments, np.array([5, 2]), seed=1, split="test", epoch=0, spec=SPEC)
    np.testing.assert_array_equal(forward[0], backward[1])


def test_scenes_carry_the_variation(rng):
    garments = _garments(rng, 64)
    scenes = camera_scenes.render_batch(garments, np.arange(64), seed=0, split="train", epoch=0, spec=SPEC)
    means = scenes.reshape(64, -1).mean(axis=1)
    assert means.min() < 70 and means.max() > 150  # dark and light scenes (both polarities)
    channel_means = scenes.reshape(64, -1, 3).mean(axis=1)
    assert np.ptp(channel_means[:, 0] - channel_means[:, 2]) > 40  # colour casts differ
    assert np.mean([s.std() for s in scenes]) > 15  # not flat frames


def test_recorded_conditions_leave_the_scene_unchanged_and_match_the_config(rng):
    garments = _garments(rng, 40)
    config = camera_scenes.SceneConfig(
        scale=(0.5, 0.6), dark_on_light=1.0, blur_prob=0.0, jpeg_prob=1.0, jpeg_quality=(40, 50), max_tilt_deg=5.0
    )
    renderer = camera_scenes.SceneRenderer(config)
    plain = camera_scenes.render_batch(
        garments, np.arange(40), seed=2, split="train", epoch=0, spec=SPEC, renderer=renderer
    )
    records: list = []
    recorded = camera_scenes.render_batch(
        garments, np.arange(40), seed=2, split="train", epoch=0, spec=SPEC, renderer=renderer, conditions=records
    )
    np.testing.assert_array_equal(plain, recorded)
    assert len(records) == 40
    assert all(
        0.5 <= r["garment_size"] <= 0.6
        and r["polarity"] == "dark on light"
        and r["blur"] == 0.0
        and 40 <= r["jpeg"] <= 50
        and r["tilt"] <= 5.0
        for r in records
    )
    assert {r["background"] for r in records} == {"plain", "gradient", "texture", "clutter"}


def test_accuracy_by_condition_bins_each_scene_once():
    records = [
        dict(
            garment_size=0.45,
            polarity="light on dark",
            background="plain",
            tilt=1.0,
            contrast=0.7,
            blur=0.0,
            noise=0.0,
            jpeg=None,
        ),
        dict(
            garment_size=0.95,
            polarity="dark on light",
            background="clutter",
            tilt=11.0,
            contrast=1.2,
            blur=1.5,
            noise=13.0,
            jpeg=30,
        ),
        dict(
            garment_size=0.99,
            polarity="dark on light",
            background="clutter",
            tilt=7.0,
            contrast=1.0,
            blur=0.5,
            noise=5.0,
            jpeg=90,
        ),
    ]
    report = camera_scenes.accuracy_by_condition(records, np.array([True, False, True]))
    assert report["garment_size"] == {
        "40%-60%": {"scenes": 1, "accuracy": 1.0},
        "80%-100%": {"scenes": 2, "accuracy": 0.5},
    }
    assert list(report["blur"]) == ["none", "0.4-1", "1-1.6"]
    assert list(report["jpeg"]) == ["none", "25-57", "58-90"]
    assert report["background"]["clutter"] == {"scenes": 2, "accuracy": 0.5}
    assert report["noise"]["0-4.67"]["scenes"] == 1 and report["tilt"]["6-12"]["scenes"] == 2
    assert camera_scenes.hardest(report, 1) == "blur 1-1.6: 0.0%"  # the lowest accuracy, ties by name
    with pytest.raises(ValueError, match="3 condition records for 2 predictions"):
        camera_scenes.accuracy_by_condition(records, np.array([True, False]))


def test_small_input_spec_goes_through_runtime_preprocessing(rng):
    small = InputSpec(height=32, width=32, channels=3, color_order="RGB")
    scenes = camera_scenes.render_batch(_garments(rng), np.arange(3), seed=0, split="val", epoch=0, spec=small)
    assert scenes.shape == (3, 32, 32, 3)


@pytest.mark.dataset
def test_train_and_test_garments_never_mix(fashion_dir):
    config = TrainConfig(model="camera_cnn", train_limit=200, test_limit=50).resolved()
    data = data_mod.load(config, InputSpec(height=32, width=32, channels=3, color_order="RGB"), batch_size=16)
    test = fashion_mnist.load_split("test", fashion_dir)
    train = fashion_mnist.load_split("train", fashion_dir)
    train_idx, val_idx = fashion_mnist.stratified_split(train.labels, 0.1, 0)
    # Test scenes are rendered from the test split's garments in order; training batches draw only
    # from the training part of the train split (validation garments are held out too).
    images, labels = data.make_batch(0, 0)
    np.testing.assert_array_equal(data.test[1], test.labels[:50])
    assert len(images) == 16
    order = np.random.default_rng([0, 0, 7]).choice(train_idx[:200], size=200, replace=False)
    assert set(order[:16]) <= set(train_idx[:200]) and not set(order) & set(val_idx)
    np.testing.assert_array_equal(labels, train.labels[order[:16]])


@pytest.mark.dataset
def test_scene_sets_serve_reuse_epochs_reshuffled_and_never_straddle_resolutions(fashion_dir):
    spec = InputSpec(height=32, width=32, channels=3, color_order="RGB")
    config = TrainConfig(model="camera_cnn", train_limit=100, test_limit=10, low_res_epochs=3, scene_reuse=2).resolved()
    data = data_mod.load(config, spec, batch_size=100)
    try:
        first, labels_first = data.make_batch(0, 0)
        second, labels_second = data.make_batch(1, 0)
        third, _ = data.make_batch(2, 0)  # a new set: the low-res phase has an odd epoch count
        full, labels_full = data.make_batch(3, 0)
        full_again, labels_full_again = data.make_batch(4, 0)
    finally:
        data.close()

    def by_content(images, labels):  # the same scenes in any order: sort rows by their bytes
        order = sorted(range(len(images)), key=lambda i: images[i].tobytes())
        return images[order], labels[order]

    # Epoch 1 shows epoch 0's scenes again (the whole set fits one batch here), each with its label.
    for a, b in zip(by_content(first, labels_first), by_content(second, labels_second)):
        np.testing.assert_array_equal(a, b)
    assert first.shape == third.shape == (100, 16, 16, 3) and not np.array_equal(
        by_content(third, labels_first)[0], by_content(first, labels_first)[0]
    )
    # The switch to full size starts a fresh set at full size, itself reused next epoch.
    assert full.shape == (100, 32, 32, 3)
    for a, b in zip(by_content(full, labels_full), by_content(full_again, labels_full_again)):
        np.testing.assert_array_equal(a, b)


def test_reused_sets_are_visited_in_a_new_order():
    np.testing.assert_array_equal(scene_sets.visit_order(0, 500, 3, 0), np.arange(500))
    again = scene_sets.visit_order(0, 500, 3, 1)
    assert sorted(again) == list(range(500)) and not np.array_equal(again, np.arange(500))
    assert not np.array_equal(again, scene_sets.visit_order(0, 500, 4, 1))  # each set has its own order
    # 3 half-size epochs with each set used twice: sets 0, 1 at half size; the full-size sets start at 2.
    assert [scene_sets.scene_position(e, 3, 2) for e in range(7)] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (2, 0),
        (2, 1),
        (3, 0),
        (3, 1),
    ]
    assert [scene_sets.scene_position(e, 0, 3)[0] for e in range(7)] == [0, 0, 0, 1, 1, 1, 2]


def test_low_res_epochs_validate_at_half_size():
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    half = data_mod.half_image(images)
    assert half.shape == (2, 2, 2, 3)
    assert half[0, 0, 0, 0] == round(np.mean(images[0, :2, :2, 0]))  # 2x2 average, as the model's pooling
    spec = InputSpec(height=4, width=4, channels=3, color_order="RGB")
    labels = np.array([3, 5])
    data = data_mod.TrainData(
        class_names=tuple("abcdef"),
        input_spec=spec,
        train_count=2,
        batch_size=2,
        make_batch=lambda e, i: (images, labels),
        val=(images, labels),
        test=(images, labels),
        samples=(images, labels),
        test_name="t",
        low_res_epochs=2,
    )
    np.testing.assert_array_equal(data.val_for_epoch(1)[0], half)
    assert data.val_for_epoch(1)[1] is labels and data.val_for_epoch(2)[0] is images
    assert data.val_for_epoch(0)[0] is data.val_for_epoch(1)[0]  # averaged once, not every epoch


def test_scene_folder_keeps_only_the_current_and_next_set(rng):
    from pathlib import Path

    spec = InputSpec(height=32, width=32, channels=3, color_order="RGB")
    scenes = scene_sets.EpochScenes(_garments(rng), np.arange(12), 12, 0, spec)
    try:
        folder = Path(scenes._folder.name)
        for epoch in range(3):
            chosen, images = scenes.get(epoch)
            assert images.shape == (12, 32, 32, 3) and set(chosen) <= set(range(12))
            sets = {p.name.split(".")[0] for p in folder.glob("set-*")}
            # The next set may still be rendering (a .partial file) but nothing older survives.
            assert sets <= {f"set-{epoch}", f"set-{epoch + 1}"} and f"set-{epoch}" in sets
    finally:
        scenes.close()
    assert not folder.exists()


def test_no_scene_set_is_rendered_past_the_last_epoch(rng):
    from pathlib import Path

    spec = InputSpec(height=32, width=32, channels=3, color_order="RGB")
    # 3 epochs, each set used twice: sets 0 and 1; set 2 would never be read.
    scenes = scene_sets.EpochScenes(_garments(rng), np.arange(12), 12, 0, spec, reuse=2, epochs=3)
    try:
        for epoch in range(3):
            scenes.get(epoch)
        assert scenes.scene_set(2) == 1 and not scenes._pending
        assert sorted(p.name for p in Path(scenes._folder.name).glob("set-*")) == ["set-1.u8"]
    finally:
        scenes.close()
