"""Bad input at scale: model files, frames, datasets; each case bounded in time, in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_common.errors import DatasetError
from edge_runtime.contract import METADATA_KEY, ModelMetadata
from edge_runtime.errors import FrameError
from edge_runtime.metadata import embed_tflite_entries, read_tflite_entries, strip_tflite_entry
from edge_runtime.sources import BaseSource
from tests.helpers import ROOT, run_cli

pytestmark = pytest.mark.dataset

# Opens every file listed on stdin in the runtime and prints one JSON line per file. A crash of the
# interpreter (segfault) would kill this process, which the parent notices.
PROBE = """
import json, sys
from edge_runtime import Classifier
from edge_runtime.errors import EdgeError
import numpy as np
for path in sys.stdin.read().split():
    try:
        with Classifier.open(path) as c:
            c.predict(np.zeros((48, 64, 3), np.uint8))
        outcome = "opened"
    except EdgeError as exc:
        text = str(exc)
        outcome = "error" if "\\n" not in text and text else "bad-message"
    except Exception as exc:  # anything else is a bug
        outcome = "unexpected " + type(exc).__name__ + ": " + str(exc)[:200]
    print(json.dumps({"path": path, "outcome": outcome}), flush=True)
"""


def probe(paths: list[Path], timeout: float = 120) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        input="\n".join(map(str, paths)),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    assert result.returncode == 0, f"the runtime process died (exit {result.returncode}): {result.stderr[-1500:]}"
    outcomes = {}
    for line in result.stdout.splitlines():
        if not line.startswith('{"path"'):
            continue  # interpreter chatter
        record = json.loads(line)
        outcomes[record["path"]] = record["outcome"]
    assert len(outcomes) == len(paths)
    return outcomes


def _cases(tiny_runs: Path, folder: Path, rng: np.random.Generator) -> dict[str, list[Path]]:
    deploy = tiny_runs / "camera_cnn" / "deploy"
    cases: dict[str, list[Path]] = {
        "empty": [],
        "truncated": [],
        "random bytes": [],
        "bit flips": [],
        "other format renamed": [],
        "metadata removed or corrupted": [],
    }
    for name in ("model_float32.tflite", "model_int8.tflite", "model_float32.onnx", "model_int8.onnx"):
        data = (deploy / name).read_bytes()
        suffix = Path(name).suffix
        empty = folder / f"empty-{name}"
        empty.write_bytes(b"")
        cases["empty"].append(empty)
        for cut in sorted(set(np.linspace(1, len(data) - 1, 40).astype(int)) | {4, 8, 16, 64}):
            path = folder / f"cut{cut}-{name}"
            path.write_bytes(data[:cut])
            cases["truncated"].append(path)
        for seed in range(10):
            path = folder / f"random{seed}-{name}"
            path.write_bytes(np.random.default_rng(seed).integers(0, 256, 2000 + 500 * seed, dtype=np.uint8).tobytes())
            cases["random bytes"].append(path)
        for seed in range(15):
            flipped = bytearray(data)
            for position in np.random.default_rng(100 + seed).integers(0, len(data), 8):
                flipped[position] ^= 0xFF
            path = folder / f"flip{seed}-{name}"
            path.write_bytes(bytes(flipped))
            cases["bit flips"].append(path)
        other = folder / f"renamed-{Path(name).stem}{'.onnx' if suffix == '.tflite' else '.tflite'}"
        other.write_bytes(data)
        cases["other format renamed"].append(other)
    source = (deploy / "model_int8.tflite").read_bytes()
    meta = ModelMetadata.from_json(read_tflite_entries(source)[METADATA_KEY]).to_dict()
    variants = {
        "stripped": None,
        "bad-json": b"{not json",
        "wrong-label-count": json.dumps({**meta, "labels": meta["labels"][:3]}).encode(),
        "wrong-shape": json.dumps({**meta, "input": {**meta["input"], "height": 99}}).encode(),
        "wrong-channels": json.dumps({**meta, "input": {**meta["input"], "channels": 4}}).encode(),
        "no-labels": json.dumps({k: v for k, v in meta.items() if k != "labels"}).encode(),
        "wrong-schema": json.dumps({**meta, "schema": "other/9"}).encode(),
        "huge-number": json.dumps({**meta, "input": {**meta["input"], "width": 10**30}}).encode(),
        "nan-scale": json.dumps(meta).replace('"scale": 1.0', '"scale": NaN').encode(),
        "not-utf8": b"\xff\xfe\x00garbage",
    }
    for label, payload in variants.items():
        path = folder / f"meta-{label}.tflite"
        path.write_bytes(
            strip_tflite_entry(source, METADATA_KEY)
            if payload is None
            else embed_tflite_entries(source, {METADATA_KEY: payload})
        )
        cases["metadata removed or corrupted"].append(path)
    return cases


def test_bad_model_files_give_one_line_errors_never_crashes(tiny_runs, tmp_path, ledger, rng):
    cases = _cases(tiny_runs, tmp_path, rng)
    paths = [p for group in cases.values() for p in group]
    outcomes = probe(paths)
    for category, group in cases.items():
        for path in group:
            with ledger.case(f"model files: {category}"):
                outcome = outcomes[str(path)]
                # A damaged file either fails with a clean one-line error or (a flipped weight byte)
                # still loads as a valid model; it never crashes the process or raises anything else.
                assert outcome in ("error", "opened"), (path.name, outcome)
                if category in ("empty", "random bytes", "other format renamed", "metadata removed or corrupted"):
                    assert outcome == "error", path.name


def test_every_cli_rejects_a_bad_model_with_exit_code_2(tiny_runs, tmp_path, ledger):
    bad = tmp_path / "model.tflite"
    bad.write_bytes((tiny_runs / "edge_cnn" / "deploy" / "model_int8.tflite").read_bytes()[:300])
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.zeros((20, 20, 3), np.uint8))
    commands = [
        ["-m", "edge_runtime", "--model", str(bad), "--source", str(image), "--headless"],
        ["-m", "edge_runtime", "inspect", str(bad)],
        [
            "-m",
            "benchmarks",
            "--deploy-dir",
            str(tmp_path),
            "--quick",
            "--no-e2e",
            "--reports-dir",
            str(tmp_path / "r"),
        ],
    ]
    for command in commands:
        with ledger.case("model files: command-line tools"):
            result = run_cli(*command, timeout=120)
            assert result.returncode == 2, (command, result.stderr[-500:])
            assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error:"), result.stderr


FRAMES = {
    "zero-size": np.zeros((0, 0, 3), np.uint8),
    "zero-width": np.zeros((10, 0), np.uint8),
    "1x1": np.zeros((1, 1, 3), np.uint8),
    "huge 4000x6000": np.zeros((4000, 6000, 3), np.uint8),
    "gray": np.zeros((240, 320), np.uint8),
    "gray with channel axis": np.zeros((240, 320, 1), np.uint8),
    "BGRA": np.zeros((240, 320, 4), np.uint8),
    "16-bit": np.full((240, 320, 3), 60000, np.uint16),
    "float 0..1": np.random.default_rng(0).random((240, 320, 3)).astype(np.float32),
    "float64": np.zeros((240, 320, 3), np.float64),
    "2 channels": np.zeros((240, 320, 2), np.uint8),
    "5 channels": np.zeros((240, 320, 5), np.uint8),
    "4-D": np.zeros((1, 240, 320, 3), np.uint8),
    "non-contiguous": np.zeros((480, 640, 3), np.uint8)[::2, ::-3],
    "Fortran order": np.asfortranarray(np.zeros((240, 320, 3), np.uint8)),
    "read-only": np.zeros((240, 320, 3), np.uint8),
    "bool": np.zeros((240, 320, 3), bool),
    "int32": np.zeros((240, 320, 3), np.int32),
}
FRAMES["read-only"].flags.writeable = False


class ListSource(BaseSource):
    is_live = False
    name = "hostile frames"

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = list(frames)

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def close(self) -> None:
        pass


def test_hostile_frames_are_handled_or_rejected_and_the_loop_keeps_going(tiny_runs, tmp_path, ledger):
    from edge_runtime import Classifier
    from edge_runtime.live import LiveConfig, run

    handled = rejected = 0
    with Classifier.open(tiny_runs / "camera_cnn" / "deploy" / "model_int8.tflite") as classifier:
        for name, frame in FRAMES.items():
            with ledger.case("frames: odd sizes, dtypes, layouts (predict)"):
                try:
                    prediction = classifier.predict(frame)
                    assert prediction.label in classifier.labels, name
                    handled += 1
                except FrameError as exc:
                    assert str(exc) and "\n" not in str(exc), name
                    rejected += 1
        with ledger.case("frames: the same three times through the live loop (one run)"):
            stats = run(
                classifier,
                ListSource(list(FRAMES.values()) * 3),
                LiveConfig(headless=True, bars=True, output=str(tmp_path / "o.avi")),
            )
            assert stats.frames == 3 * handled and stats.rejected == 3 * rejected and stats.ended_by == "end of source"
    assert handled + rejected == len(FRAMES) and handled >= 9
    ledger.note(
        f"frames handled: {handled}; rejected with a clear error: {rejected} "
        "(float, bool, int32, 2/5 channels, 4-D, zero-size)"
    )


def test_truncated_idx_at_many_offsets_and_bad_headers(tmp_path, fashion_dir, ledger):
    import gzip

    from train.datasets.idx import read_idx

    raw = gzip.decompress((fashion_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    images = gzip.decompress((fashion_dir / "t10k-images-idx3-ubyte.gz").read_bytes())[: 16 + 784 * 50]
    category = "datasets: truncated or malformed IDX"
    for source, name in ((raw, "labels"), (images, "images")):
        for cut in sorted(set(np.linspace(0, len(source) - 1, 60).astype(int))):
            path = tmp_path / f"{name}-{cut}-idx-ubyte"
            path.write_bytes(source[:cut])
            with ledger.case(category), pytest.raises(DatasetError, match=path.name):
                read_idx(path)
            zipped = tmp_path / f"{name}-{cut}-idx-ubyte.gz"
            zipped.write_bytes(gzip.compress(source)[: max(2, cut // 8)])
            with ledger.case(category), pytest.raises(DatasetError, match=zipped.name):
                read_idx(zipped)
    for header in (
        b"\x00\x00\x08\x09",
        b"\x00\x00\x07\x01",
        b"\x01\x00\x08\x01",
        b"\x00\x00\x08\x00",
        b"\x00\x00\x08\x01\xff\xff\xff\xff",
    ):
        path = tmp_path / "header-idx-ubyte"
        path.write_bytes(header + b"\x00" * 8)
        with ledger.case(category), pytest.raises(DatasetError):
            read_idx(path)


def test_label_values_out_of_range_and_count_mismatches(tmp_path, ledger):
    from train.datasets import fashion_mnist
    from train.datasets.idx import write_idx

    folder = tmp_path / "fm"
    folder.mkdir()
    images = np.zeros((20, 28, 28), np.uint8)
    for _split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.full(20, 3, np.uint8))
    category = "datasets: label range and count mismatches"
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([1] * 19 + [10], np.uint8))
    with ledger.case(category), pytest.raises(DatasetError, match="label 10 at index 19 is outside 0..9"):
        fashion_mnist.load_split("test", folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(19, np.uint8))
    with ledger.case(category), pytest.raises(DatasetError, match="20 images but .* 19 labels"):
        fashion_mnist.load_split("train", folder)
    with ledger.case(category):
        result = run_cli(
            "-m",
            "train",
            "edge_cnn",
            "--data-dir",
            str(folder),
            "--epochs",
            "1",
            "--output-dir",
            str(tmp_path / "runs"),
        )
        assert result.returncode == 2 and "19 labels" in result.stderr


def test_folder_dataset_with_every_kind_of_bad_file(tmp_path, ledger):
    from edge_runtime.contract import InputSpec
    from train.datasets import folder

    root = tmp_path / "data"
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / cls / f"ok{i}.jpg"), np.full((30, 30, 3), 40 * i, np.uint8))
    good = (root / "cats" / "ok0.jpg").read_bytes()
    bad = {
        "truncated.jpg": good[: len(good) // 2],
        "garbage.jpg": os.urandom(400),
        "empty.png": b"",
        "text.bmp": b"hello world",
        "header-only.png": b"\x89PNG\r\n\x1a\n",
    }
    for name, payload in bad.items():
        (root / "cats" / name).write_bytes(payload)
    (root / "dogs" / "loop.jpg").symlink_to(root / "dogs" / "loop.jpg")
    (root / "dogs" / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    os.mkfifo(root / "dogs" / "pipe.jpg")  # reading a FIFO would hang; it must be passed over
    (root / "dogs" / "folder.jpg").mkdir()
    (root / "self").symlink_to(root / "self")
    unreadable = root / "dogs" / "locked.jpg"
    unreadable.write_bytes(good)
    unreadable.chmod(0)
    with ledger.case("datasets: one folder with corrupt, empty, non-image, looping, FIFO and unreadable files"):
        dataset = folder.open_folder(root)
        images, labels = dataset.load(InputSpec(height=16, width=16, channels=3, color_order="RGB"))
        assert dataset.class_names == ("cats", "dogs")
        assert len(images) >= 6 and sum(dataset.skipped.values()) >= 4
    ledger.note(
        f"the hostile folder held {len(bad) + 6} bad entries beside 6 good images; "
        f"{sum(dataset.skipped.values())} were skipped by name"
    )
    if os.geteuid() == 0:
        ledger.note("running as root: permission bits do not stop root from reading, so the 'unreadable' file loads")


def test_safety_no_pickle_eval_exec_or_shell_and_safe_keras_loading(ledger):
    import re

    sources = [
        p
        for folder in ("train", "convert", "edge_runtime", "benchmarks", "edge_common")
        for p in (ROOT / folder).rglob("*.py")
    ]
    forbidden = re.compile(
        r"\b(pickle|cPickle|dill|marshal)\b|\beval\(|\bexec\("
        r"|shell\s*=\s*True|allow_pickle\s*=\s*True"
    )
    # The one exception: the PyTorch weights reader, whose unpickler admits three known globals and
    # refuses every other (tests/train/test_backbones.py proves a tampered file runs nothing).
    restricted = ROOT / "train" / "backbones" / "torch_weights.py"
    assert "def find_class" in restricted.read_text() and "refusing to load it" in restricted.read_text()
    offenders = []
    for p in sources:
        with ledger.case("safety: source files checked for pickle/eval/exec/shell=True and unsafe Keras loading"):
            found = [
                f"{p.relative_to(ROOT)}:{n}"
                for n, line in enumerate(p.read_text().splitlines(), 1)
                if p != restricted and forbidden.search(line) and not line.lstrip().startswith("#")
            ]
            found += [
                f"{p.relative_to(ROOT)}: {line.strip()}"
                for line in p.read_text().splitlines()
                if "load_model(" in line and "safe_mode=True" not in line
            ]
            offenders += found
            assert not found, found
    loads = [(p, line) for p in sources for line in p.read_text().splitlines() if "load_model(" in line]
    assert loads and not offenders, offenders
