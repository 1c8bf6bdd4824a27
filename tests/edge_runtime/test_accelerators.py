"""Accelerators and engines, with the real parts that run here: the CPU build of ONNX Runtime (its
providers, its silent fallback, read back from the session), real OpenVINO on every shipped ONNX
file, real LiteRT with real libraries that are not delegates and a real Edge TPU-compiled file,
tune's record used by auto, doctor on a made-up device tree, and the engine line in every output."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime import Classifier
from edge_runtime import accelerators as accel
from edge_runtime.errors import BackendUnavailableError
from edge_runtime.images import images_in
from edge_runtime.tune import agreement, tie_for
from tests.helpers import ROOT, run_cli

DEPLOY = ROOT / "runs"
ONNX_FILES = sorted(DEPLOY.glob("*/deploy/*.onnx"))
INT8_ONNX = DEPLOY / "clothes_lite0/deploy/model_int8.onnx"
INT8_TFLITE = DEPLOY / "clothes_lite0/deploy/model_int8.tflite"
PHOTOS = ROOT / "data/clothing-small/test"
NOT_A_DELEGATE = next(
    (
        p
        for p in (
            "/usr/lib/x86_64-linux-gnu/libz.so.1",
            "/lib/x86_64-linux-gnu/libz.so.1",
            "/usr/lib/aarch64-linux-gnu/libz.so.1",
        )
        if os.path.exists(p)
    ),
    None,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Tune records and engine caches in a folder of the test's own (also for child processes)."""
    monkeypatch.setenv("EDGE_CLASSIFY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _one_line_error(result, *needles):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and lines[-1].startswith("error: "), result.stderr[-2000:]
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])


# -- ONNX Runtime (the CPU build) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "choice, provider", [("tensorrt", "TensorrtExecutionProvider"), ("cuda", "CUDAExecutionProvider")]
)
def test_an_explicit_gpu_accelerator_without_its_provider_is_exit_2_with_the_install_line(choice, provider, ledger):
    with ledger.case("accelerators: --accelerator tensorrt/cuda on the CPU build of ONNX Runtime"):
        result = run_cli(
            "-m",
            "edge_runtime",
            "--model",
            str(INT8_ONNX),
            "--source",
            str(PHOTOS / "dress"),
            "--headless",
            "--accelerator",
            choice,
            timeout=120,
        )
        _one_line_error(result, f"no {provider}", "onnxruntime-gpu")
        assert not result.stdout  # no frame was answered on the CPU instead


def test_auto_runs_on_the_cpu_and_says_so_everywhere(tmp_path, cache):
    with Classifier.open(INT8_ONNX) as classifier:
        assert classifier.backend.accelerator == "cpu"
        assert classifier.engine.startswith("onnxruntime 1.") and "CPUExecutionProvider" in classifier.engine
    result = run_cli(
        "-m",
        "edge_runtime",
        "--model",
        str(INT8_ONNX),
        "--source",
        str(PHOTOS / "dress"),
        "--headless",
        "--threads",
        "2",
        "--summary-json",
        str(tmp_path / "s.json"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    line = "onnxruntime " + __import__("onnxruntime").__version__ + " CPUExecutionProvider, 2 threads"
    assert line in result.stderr.splitlines()[0]  # the start-up line
    assert json.loads((tmp_path / "s.json").read_text())["engine"] == line
    assert f"engine     {line}" in result.stderr  # the summary


def test_the_live_page_and_state_name_the_engine():
    from edge_runtime.serve import LiveView, ServeOptions

    view = LiveView(ServeOptions(serve="127.0.0.1:0"), "m", "camera 0", "OpenVINO 2026.4.1 CPU f32, 2 threads")
    try:
        view.publish(np.zeros((8, 8, 3), np.uint8), {"label": "dress"})
        for route, needle in (
            ("/state.json", '"engine": "OpenVINO 2026.4.1 CPU f32, 2 threads"'),
            ("/", "engine: OpenVINO 2026.4.1 CPU f32, 2 threads"),
        ):
            with socket.create_connection(("127.0.0.1", view.port), timeout=10) as sock:
                sock.sendall(f"GET {route} HTTP/1.0\r\n\r\n".encode())
                body = b"".join(iter(lambda s=sock: s.recv(65536), b"")).decode()
            assert needle in body, route
    finally:
        view.close()


def test_provider_chains_and_cache_keys_through_onnx_runtimes_api(tmp_path):
    import onnxruntime as ort

    sha = accel.file_hash(INT8_ONNX.read_bytes())
    chain = accel.onnx_provider_chain(
        "tensorrt", model_sha=sha, int8=True, root=tmp_path, trt_version="10.3.0", gpu_name="Orin (nvgpu)"
    )
    assert [name for name, _ in chain] == [accel.TRT, accel.CUDA, accel.CPU_EP]
    trt = chain[0][1]
    assert trt["trt_int8_enable"] == "True" and trt["trt_fp16_enable"] == "True"
    assert trt["trt_engine_cache_enable"] == "True" and trt["trt_timing_cache_enable"] == "True"
    folder = Path(trt["trt_engine_cache_path"])
    assert folder == tmp_path / "tensorrt" / f"{sha[:16]}-trt10.3.0-Orin__nvgpu_"
    assert trt["trt_timing_cache_path"] == str(folder)
    # Another file, TensorRT version or GPU gets another folder: an engine never loads elsewhere.
    others = {
        accel.tensorrt_cache_dir(tmp_path, "f" * 64, "10.3.0", "Orin (nvgpu)"),
        accel.tensorrt_cache_dir(tmp_path, sha, "10.4.0", "Orin (nvgpu)"),
        accel.tensorrt_cache_dir(tmp_path, sha, "10.3.0", "RTX 4090"),
    }
    assert folder not in others and len(others) == 3
    float_chain = accel.onnx_provider_chain("tensorrt", model_sha=sha, int8=False, device="1", root=tmp_path)
    assert float_chain[0][1]["trt_int8_enable"] == "False" and float_chain[0][1]["device_id"] == "1"
    assert accel.onnx_provider_chain("cuda", model_sha=sha, int8=False)[0] == (accel.CUDA, {"device_id": "0"})
    openvino = accel.onnx_provider_chain("openvino", model_sha=sha, int8=True, device="gpu", root=tmp_path)
    assert openvino[0] == (accel.OV_EP, {"device_type": "GPU", "cache_dir": str(tmp_path / "openvino")})
    # ONNX Runtime itself: the CPU build takes the TensorRT chain, falls back to the CPU without a
    # word, and the session says so; the runtime refuses that for an explicit choice.
    assert accel.TRT not in ort.get_available_providers()
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(str(INT8_ONNX), sess_options=options, providers=chain)
    assert session.get_providers() == [accel.CPU_EP]
    with pytest.raises(BackendUnavailableError, match="could not start TensorrtExecutionProvider"):
        accel.check_ran_on("tensorrt", chain, session.get_providers())
    accel.check_ran_on("cpu", [(accel.CPU_EP, {})], session.get_providers())
    with pytest.raises(BackendUnavailableError, match="no CUDAExecutionProvider"):
        accel.require_providers("cuda", ort.get_available_providers())


def test_a_made_up_device_with_a_gpu_and_a_coral_gets_the_install_lines(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidia0").write_bytes(b"")
    usb = tmp_path / "sys/bus/usb/devices/1-1.2"
    usb.mkdir(parents=True)
    (usb / "idVendor").write_text("18d1\n")
    (usb / "idProduct").write_text("9302\n")
    found = accel.hardware(str(tmp_path))
    assert found.nvidia == ["/dev/nvidia0"] and found.coral == ["USB 18d1:9302"]
    hints = found.hints()
    if found.libedgetpu is None:
        assert any("Coral Edge TPU is present (USB 18d1:9302)" in h and "libedgetpu" in h for h in hints)
    assert any(h.startswith("GPU present, no CUDA provider") and "onnxruntime-gpu" in h for h in hints)
    assert accel.hardware(str(tmp_path / "empty")).hints() == []


# -- OpenVINO --------------------------------------------------------------------------------------


def _photos(count: int = 40) -> list[np.ndarray]:
    paths = [p for name in sorted(os.listdir(PHOTOS)) for p in images_in(PHOTOS / name)[:4]][:count]
    return [cv2.imread(str(p)) for p in paths]


@pytest.mark.parametrize("path", ONNX_FILES, ids=lambda p: f"{p.parent.parent.name}-{p.name}")
def test_openvino_gives_onnx_runtimes_top1_on_every_shipped_onnx_file(path, ledger):
    frames = _photos()
    with Classifier.open(path, "onnxruntime") as reference, Classifier.open(path, "openvino") as openvino:
        assert openvino.engine.startswith("OpenVINO ") and " CPU " in openvino.engine + " "
        assert openvino.labels == reference.labels and openvino.unknown_spec == reference.unknown_spec
        tensors = [reference.input_tensor(frame) for frame in frames]
        want = np.stack([reference.infer(t) for t in tensors])
        got = np.stack([openvino.infer(t) for t in tensors])
        agree, counted = agreement(want, got, tie_for(reference.metadata.format))
        strict = int(np.sum(np.argmax(want, axis=1) == np.argmax(got, axis=1)))
        assert agree == counted == len(frames) and strict >= len(frames) - 1, (agree, strict)
        assert np.max(np.abs(got - want)) < 0.1
        if reference.unknown_spec is not None:  # the out-of-class output too
            for tensor in tensors[:5]:
                assert abs(reference.infer_all(tensor)[1] - openvino.infer_all(tensor)[1]) < 0.02


def test_openvino_is_also_the_accelerator_choice_and_unknown_devices_are_refused():
    with Classifier.open(INT8_ONNX, accelerator="openvino") as classifier:
        assert classifier.backend.name == "openvino"
    with pytest.raises(BackendUnavailableError, match="--device NPU: OpenVINO has no such device here"):
        Classifier.open(INT8_ONNX, accelerator="openvino", device="NPU")


# -- LiteRT ---------------------------------------------------------------------------------------


def test_delegates_that_are_missing_or_not_delegates_are_one_line(tmp_path, ledger):
    cases = [(f"{tmp_path}/libnothing.so:key=value", "could not be loaded")]
    if NOT_A_DELEGATE:
        cases.append((NOT_A_DELEGATE, "is not a LiteRT external delegate"))
    cases.append(("", "name the delegate library"))
    for delegate, words in cases:
        with ledger.case("accelerators: --delegate missing, not a delegate, or empty"):
            result = run_cli(
                "-m",
                "edge_runtime",
                "--model",
                str(INT8_TFLITE),
                "--source",
                str(PHOTOS / "dress"),
                "--headless",
                "--delegate",
                delegate,
                timeout=120,
            )
            _one_line_error(result, words)
            assert "Exception ignored" not in result.stderr
    with ledger.case("accelerators: --accelerator edgetpu without libedgetpu"):
        result = run_cli(
            "-m",
            "edge_runtime",
            "--model",
            str(INT8_TFLITE),
            "--source",
            str(PHOTOS / "dress"),
            "--headless",
            "--accelerator",
            "edgetpu",
            timeout=120,
        )
        _one_line_error(result, "--accelerator edgetpu", "libedgetpu")
    with ledger.case("accelerators: a GPU accelerator asked of a .tflite file"):
        _one_line_error(
            run_cli(
                "-m",
                "edge_runtime",
                "--model",
                str(INT8_TFLITE),
                "--source",
                str(PHOTOS / "dress"),
                "--headless",
                "--accelerator",
                "cuda",
                timeout=120,
            ),
            "runs .onnx files",
        )


def _edgetpu_compiled(source: Path) -> bytes:
    """What edgetpu_compiler makes of a file: the whole graph one ``edgetpu-custom-op`` (written
    with the flatbuffer schema the teach graphs use)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(source.read_bytes()), 0)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "edgetpu-custom-op"
    model.operatorCodes.append(code)
    graph = model.subgraphs[0]
    op = schema.OperatorT()
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs, op.outputs = list(graph.inputs), list(graph.outputs)
    op.customOptions = [0] * 16
    graph.operators = [op]
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_a_file_compiled_for_the_edge_tpu_without_one_is_one_line(tmp_path, ledger):
    compiled = tmp_path / "model_int8_edgetpu.tflite"
    compiled.write_bytes(_edgetpu_compiled(DEPLOY / "edge_cnn/deploy/model_int8.tflite"))
    assert accel.is_edgetpu_file(compiled.read_bytes())
    with pytest.raises(BackendUnavailableError, match="compiled for the Edge TPU"):
        Classifier.open(compiled)
    with ledger.case("accelerators: an Edge TPU-compiled file opened without a TPU"):
        result = run_cli(
            "-m", "edge_runtime", "--model", str(compiled), "--source", str(PHOTOS / "dress"), "--headless", timeout=120
        )
        _one_line_error(result, "compiled for the Edge TPU", "libedgetpu")


def test_the_convert_report_says_whether_the_int8_file_suits_the_edge_tpu():
    from convert import edgetpu

    whole = edgetpu.check((DEPLOY / "edge_cnn/deploy/model_int8.tflite").read_bytes())
    assert whole["compatible"] and whole["full_int8"] and whole["unsupported"] == []
    lite0 = edgetpu.check(INT8_TFLITE.read_bytes())
    assert not lite0["compatible"] and "SQUARE" in lite0["unsupported"] and 0 < lite0["on_tpu"] < lite0["operators"]
    report = json.loads((DEPLOY / "clothes_lite0/deploy/convert_report.json").read_text())
    row = next(r for r in report["results"] if r["format"] == "tflite_int8")
    assert row["edgetpu"]["unsupported"] == lite0["unsupported"] and "compiled" in row["edgetpu"]


# -- the default-session gate ---------------------------------------------------------------------


def test_shipped_int8_onnx_files_are_right_in_a_default_session_and_the_old_way_is_caught():
    from convert.checks import saturation_risk

    for model in ("edge_cnn", "clothes_lite0"):
        data = (DEPLOY / model / "deploy/model_int8.onnx").read_bytes()
        assert saturation_risk(data) is None, model
        report = json.loads((DEPLOY / model / "deploy/convert_report.json").read_text())
        row = next(r for r in report["results"] if r["format"] == "onnx_int8")
        assert row["default_session_problem"] is None
        # A default session answers as the conversion's own check did (the old way saturated and did not).
        assert row["default_session_accuracy"] == pytest.approx(row["accuracy"], abs=1e-6), model
        assert row["default_session_accuracy"] >= report["keras_accuracy"] - 0.01, model


def test_the_default_session_gate_rejects_a_file_quantized_the_old_way(tiny_runs, tmp_path):
    import shutil

    from convert.converter import ConvertConfig, convert

    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs / "edge_cnn", runs / "edge_cnn", symlinks=True)
    # Only the ONNX int8 file, on 200 check images: the quantization is what differs between the runs.
    quick = dict(
        model="edge_cnn",
        runs_dir=str(runs),
        formats=("onnx_int8",),
        eval_limit=200,
        calibration_samples=50,
        opencv_check=0,
        force=True,
    )
    report = convert(ConvertConfig(**quick, onnx_reduce_range=False, onnx_weights="int8"))
    row = report.results[0]
    assert row.status == "rejected" and "more than 7 bits" in row.default_session_problem
    assert (
        not (runs / "edge_cnn/deploy/model_int8.onnx").exists()
        or (runs / "edge_cnn/deploy/model_int8.onnx.rejected").exists()
    )
    report = convert(ConvertConfig(**quick))  # 7-bit, the default
    assert report.results[0].status == "ok" and report.results[0].default_session_problem is None


# -- tune and auto --------------------------------------------------------------------------------


def test_tune_records_the_fastest_agreeing_engine_and_auto_uses_it(cache, ledger):
    result = run_cli(
        "-m",
        "edge_runtime",
        "tune",
        "--model",
        str(INT8_ONNX),
        "--images",
        str(PHOTOS),
        "--count",
        "12",
        "--rounds",
        "3",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = json.loads((cache / "tune.json").read_text())
    record = records[accel.file_hash(INT8_ONNX.read_bytes())]
    engines = {row.get("engine", "").split(",")[0] for row in record["candidates"] if row["status"] == "ok"}
    assert any(e.startswith("onnxruntime") for e in engines) and any(e.startswith("OpenVINO") for e in engines)
    fastest = min((row for row in record["candidates"] if row["status"] == "ok"), key=lambda r: r["p50_ms"])
    assert record["engine"] == fastest["engine"] and f"fastest: {record['engine']}" in result.stdout
    assert record["version"] and record["machine"] == accel.machine_id()
    with Classifier.open(INT8_ONNX) as classifier:  # auto now runs what tune measured
        assert classifier.engine == record["engine"]
    with ledger.case("accelerators: a tune record from another device or engine version is not used"):
        record["machine"] = "another device"
        (cache / "tune.json").write_text(json.dumps(records))
        with Classifier.open(INT8_ONNX) as classifier:
            assert "CPUExecutionProvider" in classifier.engine


def test_doctor_lists_accelerators_and_checks_an_explicit_one():
    result = run_cli("-m", "edge_runtime", "doctor", "--model", str(INT8_ONNX), "--backend", "openvino")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("accelerator NVIDIA GPU") for line in lines)
    assert any(line.startswith("accelerator Edge TPU") for line in lines)
    assert any(line.startswith("accelerator OpenVINO     devices CPU") for line in lines)
    assert any(line.startswith("model") and "runs on OpenVINO" in line for line in lines)
    _one_line_error(run_cli("-m", "edge_runtime", "doctor", "--accelerator", "tensorrt"), "onnxruntime-gpu")


def test_teach_takes_the_engine_options(tmp_path):
    examples = tmp_path / "ex"
    for name in ("hat", "shoes"):
        (examples / name).mkdir(parents=True)
        for path in images_in(ROOT / "data/clothing-small/train" / name)[:5]:
            (examples / name / path.name).symlink_to(path)
    result = run_cli(
        "-m",
        "edge_runtime",
        "teach",
        "--quiet",
        "--extractor",
        str(DEPLOY / "imagenet_lite0/features/features_float32.onnx"),
        "--examples",
        str(examples),
        "--output",
        str(tmp_path / "mine.onnx"),
        "--backend",
        "openvino",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    _one_line_error(
        run_cli(
            "-m",
            "edge_runtime",
            "teach",
            "--extractor",
            str(DEPLOY / "imagenet_lite0/features/features_float32.onnx"),
            "--examples",
            str(examples),
            "--output",
            str(tmp_path / "x.onnx"),
            "--accelerator",
            "cuda",
        ),
        "no CUDAExecutionProvider",
    )


def test_the_runtime_never_imports_tensorflow_for_the_new_engines():
    code = (
        "import sys; from edge_runtime import Classifier; from edge_runtime import tune, doctor\n"
        f"c = Classifier.open({str(INT8_ONNX)!r}, 'openvino'); c.close()\n"
        "assert not any(m.split('.')[0] in ('tensorflow', 'keras', 'train', 'convert', 'benchmarks') "
        "for m in sys.modules), sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras')))"
    )
    result = run_cli("-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sys.executable
