"""The integrator's library: Classifier.open/predict on real converted files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge_runtime import Classifier, InputSpec
from edge_runtime.contract import METADATA_KEY, ModelMetadata
from edge_runtime.errors import BackendUnavailableError, MetadataError, ModelFileError
from edge_runtime.metadata import embed_tflite_entries, read_tflite_entries, strip_tflite_entry
from tests.helpers import ROOT

pytestmark = pytest.mark.dataset
FILES = ("model_float32.tflite", "model_int8.tflite", "model_float32.onnx", "model_int8.onnx")


@pytest.mark.parametrize("name", FILES)
def test_predict_any_frame_returns_sorted_top_k_and_timings(tiny_runs, name, rng):
    with Classifier.open(tiny_runs / "camera_cnn" / "deploy" / name, threads=1) as classifier:
        for frame in (
            rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
            rng.integers(0, 256, (100, 37), dtype=np.uint8),
            rng.integers(0, 256, (64, 64, 4), dtype=np.uint8),
        ):
            prediction = classifier.predict(frame, top_k=3)
            scores = [score for _, score in prediction.top]
            assert len(prediction.top) == 3 and scores == sorted(scores, reverse=True)
            assert prediction.label in classifier.labels and 0.0 <= prediction.score <= 1.0
            assert abs(float(prediction.probabilities.sum()) - 1.0) < 0.05
            assert prediction.inference_ms > 0 and prediction.preprocess_ms > 0
        assert len(classifier.predict_batch([frame, frame])) == 2
        assert classifier.backend.name == ("litert" if name.endswith(".tflite") else "onnxruntime")
        assert classifier.backend.version


def test_runtime_prediction_matches_keras_on_real_images(tiny_runs, fashion_dir):
    import keras

    from train.datasets import fashion_mnist

    model = keras.saving.load_model(tiny_runs / "edge_cnn" / "model.keras", safe_mode=True)
    test = fashion_mnist.load_split("test", fashion_dir)
    keras_top = np.argmax(model.predict(test.images[:100, ..., None].astype(np.float32), verbose=0), axis=1)
    with Classifier.open(tiny_runs / "edge_cnn" / "deploy" / "model_float32.tflite") as classifier:
        runtime_top = [classifier.labels.index(classifier.predict(image).label) for image in test.images[:100]]
    assert np.mean(np.asarray(runtime_top) == keras_top) >= 0.99


def test_file_without_metadata_is_refused_unless_the_contract_is_passed(tiny_runs, tmp_path):
    source = tiny_runs / "edge_cnn" / "deploy" / "model_float32.tflite"
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(strip_tflite_entry(source.read_bytes(), METADATA_KEY))
    with pytest.raises(MetadataError, match="has no edge-classify metadata"):
        Classifier.open(bare)
    spec = InputSpec(height=28, width=28, channels=1, color_order="GRAY")
    labels = [f"class{i}" for i in range(10)]
    with Classifier.open(bare, labels=labels, input_spec=spec) as classifier:
        assert classifier.predict(np.zeros((28, 28), np.uint8)).label.startswith("class")


def _with_metadata(source, tmp_path, mutate):
    data = source.read_bytes()
    meta = ModelMetadata.from_json(read_tflite_entries(data)[METADATA_KEY]).to_dict()
    mutate(meta)
    import json

    path = tmp_path / "changed.tflite"
    path.write_bytes(embed_tflite_entries(data, {METADATA_KEY: json.dumps(meta).encode()}))
    return path


def test_metadata_that_contradicts_the_model_is_refused(tiny_runs, tmp_path):
    source = tiny_runs / "edge_cnn" / "deploy" / "model_float32.tflite"
    wrong_labels = _with_metadata(source, tmp_path, lambda m: m.update(labels=m["labels"][:7]))
    with pytest.raises(MetadataError, match="has 7 labels but the model outputs 10 classes"):
        Classifier.open(wrong_labels)
    wrong_shape = _with_metadata(source, tmp_path, lambda m: m["input"].update(height=32, width=32))
    with pytest.raises(MetadataError, match=r"metadata says input \[1, 32, 32, 1\]"):
        Classifier.open(wrong_shape)


def test_backend_choice(tiny_runs):
    path = tiny_runs / "edge_cnn" / "deploy" / "model_float32.tflite"
    with Classifier.open(path, backend="tensorflow") as via_tf:  # the last fallback, when TF is installed
        assert via_tf.backend.name == "tensorflow"
    with pytest.raises(BackendUnavailableError, match="onnxruntime runs .onnx files"):
        Classifier.open(path, backend="onnxruntime")
    with pytest.raises(BackendUnavailableError, match="runs .tflite files"):
        Classifier.open(tiny_runs / "edge_cnn" / "deploy" / "model_int8.onnx", backend="litert")


def test_other_format_renamed_and_not_a_model(tiny_runs, tmp_path):
    renamed = tmp_path / "model.onnx"
    renamed.write_bytes((tiny_runs / "edge_cnn" / "deploy" / "model_int8.tflite").read_bytes())
    with pytest.raises(ModelFileError, match="is a TFLITE model with a .onnx name; rename it to .tflite"):
        Classifier.open(renamed)
    text = tmp_path / "notes.tflite"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a valid TFLITE model"):
        Classifier.open(text)
    with pytest.raises(ModelFileError, match="unknown model type .txt"):
        Classifier.open(tmp_path / "x.txt")


def test_importing_and_running_the_runtime_never_imports_tensorflow(tiny_runs):
    code = (
        "import sys, numpy as np\n"
        "import edge_runtime\n"
        "from edge_runtime import Classifier\n"
        "from edge_runtime import live, sources, doctor, cli\n"
        f"c = Classifier.open({str(tiny_runs / 'camera_cnn' / 'deploy' / 'model_int8.tflite')!r})\n"
        "c.predict(np.zeros((480, 640, 3), np.uint8))\n"
        f"c2 = Classifier.open({str(tiny_runs / 'camera_cnn' / 'deploy' / 'model_int8.onnx')!r})\n"
        "c2.predict(np.zeros((480, 640, 3), np.uint8))\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'train', "
        "'convert', 'benchmarks')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_edge_runtime_source_has_no_forbidden_imports():
    import re

    pattern = re.compile(r"^\s*(import|from)\s+(tensorflow|keras|tf_keras|tf2onnx|train|convert|benchmarks)\b", re.M)
    for path in (ROOT / "edge_runtime").rglob("*.py"):
        assert not pattern.search(path.read_text()), path


def test_int8_onnx_is_exact_on_x86_without_vnni_too():
    """Full-range int8 weights times large uint8 inputs: AVX2's 16-bit pairwise sums saturate unless the
    runtime asks ONNX Runtime for exact products (on ARM and VNNI CPUs the answer is exact anyway)."""
    from onnx import TensorProto, helper, numpy_helper

    from edge_runtime.engines import open_backend

    weights = np.full((64, 8), 127, np.int8)
    weights[:, 1::2] = -128
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws"], ["wd"]),
        helper.make_node("MatMul", ["xd", "wd"], ["y0"]),
        helper.make_node("QuantizeLinear", ["y0", "ys", "yz"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
    ]
    constants = [
        numpy_helper.from_array(np.array(1.0, np.float32), "xs"),
        numpy_helper.from_array(np.array(0, np.uint8), "xz"),
        numpy_helper.from_array(weights, "w"),
        numpy_helper.from_array(np.array(1.0, np.float32), "ws"),
        numpy_helper.from_array(np.array(20000.0, np.float32), "ys"),
        numpy_helper.from_array(np.array(128, np.uint8), "yz"),
    ]
    graph = helper.make_graph(
        nodes,
        "saturation",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    backend = open_backend("onnx", model.SerializeToString(), threads=1)
    x = np.full((1, 64), 255, np.float32)
    exact = x @ weights.astype(np.float32)  # +-2.07e6; saturated 16-bit sums give about half
    assert np.allclose(backend.run(x), exact, rtol=0, atol=20000)  # one output step
