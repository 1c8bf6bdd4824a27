"""Folder datasets with real JPEG/PNG files written by the test (and broken ones)."""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest

from edge_common.errors import DatasetError
from edge_runtime.contract import InputSpec
from train.datasets import folder

SPEC = InputSpec(height=32, width=32, channels=3, color_order="RGB")


def _write(path, colour, size=(40, 50)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((*size, 3), np.uint8)
    image[:] = colour  # BGR
    assert cv2.imwrite(str(path), image)


def test_loads_classes_resizes_and_converts_to_rgb(tmp_path):
    for i in range(3):
        _write(tmp_path / "cats" / f"c{i}.jpg", (255, 0, 0))  # blue in BGR
        _write(tmp_path / "dogs" / f"d{i}.png", (0, 0, 255))  # red in BGR
    data = folder.open_folder(tmp_path)
    assert data.class_names == ("cats", "dogs") and len(data) == 6
    assert data.counts() == {"cats": 3, "dogs": 3}
    images, labels = data.load(SPEC)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    cats, dogs = images[labels == 0], images[labels == 1]
    assert cats[..., 2].mean() > 200 and cats[..., 0].mean() < 30  # blue is the last channel in RGB
    assert dogs[..., 0].mean() > 200


def test_corrupt_and_empty_files_are_skipped_with_a_warning_and_counted(tmp_path, caplog):
    for i in range(2):
        _write(tmp_path / "a" / f"{i}.jpg", (10, 20, 30))
        _write(tmp_path / "b" / f"{i}.jpg", (30, 20, 10))
    good = (tmp_path / "a" / "0.jpg").read_bytes()
    (tmp_path / "a" / "broken.jpg").write_bytes(good[: len(good) // 3] + os.urandom(50))
    (tmp_path / "b" / "empty.png").write_bytes(b"")
    (tmp_path / "b" / "notes.jpg").write_text("this is not an image")
    data = folder.open_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="edge_classify.data"):
        images, labels = data.load(SPEC)
    assert data.skipped.get("empty") == 1 and data.skipped.get("not an image", 0) >= 1
    assert len(images) == len(labels) >= 4
    assert sum("skipping" in r.message for r in caplog.records) == sum(data.skipped.values())
    assert "skipped" in data.summary()


def test_a_broken_file_is_named_once_however_often_it_is_read(tmp_path, caplog):
    import struct
    import zlib

    for i in range(2):
        _write(tmp_path / "a" / f"{i}.jpg", (10, 20, 30))
        _write(tmp_path / "b" / f"{i}.jpg", (30, 20, 10))
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)  # a header claiming 60000x60000 pixels
    (tmp_path / "b" / "huge.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )
    with caplog.at_level(logging.WARNING, logger="edge_classify.data"):
        for _ in range(2):  # convert reads a test set more than once
            data = folder.open_folder(tmp_path)
            images, _ = data.load(SPEC)
            assert len(images) == 4 and data.skipped == {"too many pixels": 1}  # the shared pixel guard
    assert [r.message.split(":")[0] for r in caplog.records] == [f"skipping {tmp_path / 'b' / 'huge.png'}"]


def test_split_layout_and_streaming(tmp_path):
    for split in ("train", "val", "test"):
        for cls in ("x", "y"):
            for i in range(5):
                _write(tmp_path / split / cls / f"{i}.bmp", (i * 40, 0, 0))
    assert folder.has_splits(tmp_path)
    train = folder.open_folder(tmp_path, "train")
    batches = list(train.iter_batches(SPEC, batch_size=3, shuffle=True, seed=1))
    assert [len(b[0]) for b in batches] == [3, 3, 3, 1]
    again = list(train.iter_batches(SPEC, batch_size=3, shuffle=True, seed=1))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(batches, again))
    test = folder.open_folder(tmp_path, "test", class_names=train.class_names)
    assert test.class_names == ("x", "y")


def test_no_classes_empty_class_and_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        folder.open_folder(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no class folders"):
        folder.open_folder(tmp_path)
    (tmp_path / "cats").mkdir()
    _write(tmp_path / "dogs" / "1.jpg", (0, 0, 0))
    with pytest.raises(DatasetError, match="class 'cats' has no images"):
        folder.open_folder(tmp_path)


def test_symlink_loop_is_not_a_class_and_not_a_crash(tmp_path):
    _write(tmp_path / "a" / "1.jpg", (0, 0, 0))
    _write(tmp_path / "b" / "1.jpg", (9, 9, 9))
    (tmp_path / "a" / "loop.jpg").symlink_to(tmp_path / "a" / "loop.jpg")
    (tmp_path / "self").symlink_to(tmp_path / "self")
    data = folder.open_folder(tmp_path)
    assert data.class_names == ("a", "b") and len(data) == 2
