"""The IDX reader on small files the tests write themselves."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from edge_common.errors import DatasetError
from train.datasets.fashion_mnist import check_pair, stratified_split
from train.datasets.idx import read_idx, write_idx


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_round_trip_raw_and_gzip(tmp_path, name, rng):
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / name, images)
    back = read_idx(tmp_path / name, ndim=3, item_shape=(28, 28))
    assert back.dtype == np.uint8 and back.shape == (7, 28, 28)
    np.testing.assert_array_equal(back, images)


def test_truncated_file_names_file_and_problem(tmp_path, rng):
    path = tmp_path / "t-images-idx3-ubyte"
    write_idx(path, rng.integers(0, 256, (5, 28, 28), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(DatasetError, match=r"t-images-idx3-ubyte: truncated: header promises 5 items"):
        read_idx(path, ndim=3)


@pytest.mark.parametrize("cut", [0, 1, 3, 4, 7, 15, 16, 100])
def test_truncated_at_many_offsets_never_a_numpy_error(tmp_path, cut, rng):
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, rng.integers(0, 256, (3, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(DatasetError, match="x-idx3-ubyte"):
        read_idx(path, ndim=3)


def test_wrong_magic(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 10)
    with pytest.raises(DatasetError, match="bad IDX magic number 12340801"):
        read_idx(path)


def test_trailing_garbage_is_corrupt(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.arange(5, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(DatasetError, match="4 unexpected bytes"):
        read_idx(path, ndim=1)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02")[:-6])
    with pytest.raises(DatasetError, match="corrupt or truncated gzip"):
        read_idx(path)


def test_dimension_and_item_shape_checks(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.arange(5, dtype=np.uint8))
    with pytest.raises(DatasetError, match="has 1 dimension"):
        read_idx(path, ndim=3)
    images = tmp_path / "images-idx3-ubyte"
    write_idx(images, np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(DatasetError, match=r"items are \(32, 32\), expected \(28, 28\)"):
        read_idx(images, ndim=3, item_shape=(28, 28))


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        read_idx(tmp_path / "nope-idx1-ubyte")


def test_count_mismatch_and_label_range():
    images = np.zeros((4, 28, 28), np.uint8)
    with pytest.raises(DatasetError, match="has 4 images but .* has 3 labels"):
        check_pair(images, np.zeros(3, np.uint8), "img", "lab")
    with pytest.raises(DatasetError, match="label 12 at index 2 is outside 0..9"):
        check_pair(images, np.array([0, 1, 12, 3], np.uint8), "img", "lab")


def test_stratified_split_is_deterministic_and_balanced():
    labels = np.repeat(np.arange(10), 100).astype(np.uint8)
    train_a, val_a = stratified_split(labels, 0.1, seed=3)
    train_b, val_b = stratified_split(labels, 0.1, seed=3)
    np.testing.assert_array_equal(val_a, val_b)
    assert len(val_a) == 100 and len(train_a) == 900
    assert np.bincount(labels[val_a]).tolist() == [10] * 10
    assert not set(train_a) & set(val_a)
    _, val_c = stratified_split(labels, 0.1, seed=4)
    assert set(val_c) != set(val_a)
