"""The real Fashion-MNIST from Debian's dataset-fashion-mnist package."""

from __future__ import annotations

import numpy as np
import pytest

from edge_common.errors import DatasetError
from train.datasets import fashion_mnist

pytestmark = pytest.mark.dataset


def test_real_dataset_shapes_balance_and_first_label(fashion_dir):
    train, test = fashion_mnist.load(fashion_dir)
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 28, 28) and test.images.dtype == np.uint8
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert int(train.labels[0]) == 9 and fashion_mnist.CLASS_NAMES[9] == "Ankle boot"
    assert fashion_mnist.CLASS_NAMES[0] == "T-shirt/top" and len(fashion_mnist.CLASS_NAMES) == 10
    assert 0 < train.images.mean() < 255


def test_search_order_env_var_then_debian(tmp_path, monkeypatch, fashion_dir):
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(tmp_path))
    dirs = fashion_mnist.candidate_dirs()
    assert dirs[0] == tmp_path and dirs[1] == fashion_mnist.DEBIAN_DIR
    assert dirs[2].parts[-3:] == (".keras", "datasets", "fashion-mnist")
    assert fashion_mnist.locate() == fashion_dir  # the empty env folder is passed over


def test_explicit_dir_without_files_is_a_clear_error(tmp_path):
    with pytest.raises(
        DatasetError,
        match=r"Fashion-MNIST not found in .* \(missing "
        r"train-images-idx3-ubyte.*apt-get install dataset-fashion-mnist",
    ):
        fashion_mnist.locate(tmp_path)


def test_mismatched_pair_in_a_dataset_folder(tmp_path, fashion_dir):
    import shutil

    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        shutil.copy(fashion_dir / name, tmp_path / name)
    shutil.copy(fashion_dir / "train-labels-idx1-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetError, match="has 10000 images but .* has 60000 labels"):
        fashion_mnist.load_split("test", tmp_path)


def test_locate_command(fashion_dir):
    from tests.helpers import run_cli

    result = run_cli("-m", "train.datasets.fashion_mnist")
    assert result.returncode == 0 and result.stdout.strip() == str(fashion_dir)
    missing = run_cli("-m", "train.datasets.fashion_mnist", "--data-dir", "/nonexistent")
    assert missing.returncode == 2 and "apt-get install dataset-fashion-mnist" in missing.stdout
