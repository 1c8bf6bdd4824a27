"""Camera frames from real photos: placement, conditions, determinism, and the camera augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from edge_common.errors import DatasetError
from tests.helpers import ROOT, run_cli
from train.datasets import camera_augment as ca
from train.datasets import camera_frames as cf
from train.models import PHOTO_INPUT

PHOTOS = ROOT / "data" / "clothing-small"


@pytest.fixture(scope="module")
def photos():
    from train.datasets import folder

    data = folder.open_folder(PHOTOS / "test")
    data.files = data.interleaved(6)
    return data.load_photos("BGR", max_side=480)


def test_a_photo_is_placed_at_its_share_of_the_frame_height():
    photo = np.full((200, 150, 3), 255, np.uint8)
    background = np.zeros((480, 640, 3), np.uint8)
    for height in (1.0, 0.6, 0.4):
        frame = cf.compose(photo, background, height=height, centre=(0.5, 0.5))
        rows = np.flatnonzero(frame[:, 320, 0] > 0)
        cols = np.flatnonzero(frame[240, :, 0] > 0)
        assert abs(len(rows) - height * 480) <= 1 and abs(len(cols) - height * 480 * 150 / 200) <= 2
        assert abs((rows[0] + rows[-1]) / 2 - 240) <= 1 and abs((cols[0] + cols[-1]) / 2 - 320) <= 1
    # Off the edge: what falls outside the frame is cut, nothing wraps around.
    frame = cf.compose(photo, background, height=1.0, centre=(0.0, 0.5))
    assert frame[:, :100].any() and not frame[:, 200:].any()


def test_conditions_are_deterministic_and_what_their_names_say(photos):
    images, labels = photos
    names = [c.name for c in cf.CONDITIONS]
    assert {"near", "mid", "far", "off_centre", "motion_blur", "noise", "jpeg", "dim", "tungsten", "background"} <= set(
        names
    )
    first = list(cf.iter_condition_frames(images[:2], labels[:2]))
    again = list(cf.iter_condition_frames(images[:2], labels[:2]))
    assert len(first) == 2 * len(names)
    for (n1, f1, l1), (n2, f2, l2) in zip(first, again):
        assert n1 == n2 and l1 == l2 and np.array_equal(f1, f2) and f1.shape == (480, 640, 3)
    by_name = {name: frame for name, frame, label in first[::2][: len(names)]}
    assert [label for name, _, label in first if name == "background"] == [-1, -1]
    assert by_name["dim"].mean() < 0.5 * by_name["near"].mean()  # light at 35%
    tungsten = by_name["tungsten"].reshape(-1, 3).mean(0)
    assert tungsten[2] > tungsten[0]  # BGR: red above blue
    inputs = cf.condition_inputs(images, labels, PHOTO_INPUT, names=["far"])
    assert inputs["far"][0].shape == (len(labels), 128, 128, 3) and list(inputs["far"][1]) == list(labels)


def test_the_camera_augmentation_frames_part_of_each_batch(photos):
    images, _ = photos
    rgb = cf.as_bgr(images, "RGB")
    batch, framed = ca.camera_batch(
        rgb, np.arange(len(rgb)), PHOTO_INPUT, np.random.default_rng(1), ca.CameraAugment(share=1.0)
    )
    assert batch.shape == (len(rgb), 128, 128, 3) and batch.dtype == np.uint8 and framed.all()
    again, _ = ca.camera_batch(
        rgb, np.arange(len(rgb)), PHOTO_INPUT, np.random.default_rng(1), ca.CameraAugment(share=1.0)
    )
    assert np.array_equal(batch, again)  # a resumed run replays the same batches
    plain, framed = ca.camera_batch(
        rgb, np.arange(len(rgb)), PHOTO_INPUT, np.random.default_rng(1), ca.CameraAugment(share=0.0)
    )
    assert not framed.any()


def test_condition_report_counts_unknown_and_empty_frames():
    predicted = {"near": np.array([0, 1, 2, 2]), "background": np.array([0, 0])}
    truth = {"near": np.array([0, 1, 2, 3]), "background": np.array([-1, -1])}
    unknown = {"near": np.array([False, True, False, False]), "background": np.array([True, False])}
    report = cf.condition_report(predicted, truth, unknown)
    assert report["near"]["accuracy"] == 0.75 and report["near"]["accepted_correct"] == 0.5
    assert report["background"]["unknown"] == 0.5 and report["mean"]["accuracy"] == 0.75


def test_a_background_folder_without_images_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="no decodable image"):
        cf.Backgrounds.from_folder(tmp_path / "empty")
    result = run_cli("-m", "benchmarks.camera", "--backgrounds", str(tmp_path / "empty"), timeout=300)
    assert result.returncode == 2 and "no decodable image" in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
