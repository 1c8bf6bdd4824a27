"""Property-based fuzzing of the parsers a hostile file reaches first: metadata JSON, TFLite
flatbuffer, ONNX protobuf and IDX. Any exception other than the toolkit's own is a bug. Runs are
derandomized (the same examples every time, bounded in count) so CI time is predictable."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_common.errors import DatasetError
from edge_runtime.contract import ModelMetadata
from edge_runtime.errors import MetadataError, ModelFileError
from edge_runtime.metadata import read_onnx_props, read_tflite_entries, sniff_format

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
VALID = {
    "schema": "edge-classify/1",
    "model": "m",
    "format": "tflite_int8",
    "labels": ["a", "b"],
    "input": {
        "height": 28,
        "width": 28,
        "channels": 1,
        "color_order": "GRAY",
        "dtype": "int8",
        "quantization": {"scale": 1.0, "zero_point": -128},
    },
    "output": {"kind": "probabilities", "dtype": "int8", "quantization": {"scale": 0.00390625, "zero_point": -128}},
    "accuracy": {"accuracy": 0.9},
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
# Fixed hostile cases (wrong types nested in lists, nesting deep enough to exhaust the JSON
# parser's recursion); any input a fuzz run finds crashing a parser is added here.
REGRESSIONS = [
    b'{"schema": "edge-classify/1", "model": "m", "format": "f", "labels": ["a"], "input": {"height": 1, "width": 1, '
    b'"channels": 1, "color_order": "GRAY", "pixel_range": [0, "x"]}}',
    b'{"schema": "edge-classify/1", "model": "m", "format": "f", "labels": ["a"], "input": {"height": 1, "width": 1, '
    b'"channels": 1, "color_order": ["GRAY"]}}',
    b"[" * 100_000,
]


METADATA = "fuzzing: metadata JSON parser (hypothesis: random structures, fields, bytes; regressions)"


def _parse(raw: bytes | str) -> None:
    try:
        ModelMetadata.from_json(raw)
    except MetadataError as exc:
        assert str(exc) and "\n" not in str(exc)


def _parse_case(ledger, raw: bytes | str) -> None:
    with ledger.case(METADATA):
        _parse(raw)


@pytest.mark.parametrize("raw", REGRESSIONS)
def test_metadata_regressions(raw, ledger):
    _parse_case(ledger, raw)


@FUZZ
@given(document=st.dictionaries(st.sampled_from(list(VALID) + ["extra", "x"]), json_values, max_size=9))
def test_metadata_with_random_structure(ledger, document):
    _parse_case(ledger, json.dumps(document))


@FUZZ
@given(key=st.sampled_from(list(VALID)), value=json_values)
def test_metadata_with_one_field_replaced(ledger, key, value):
    document = dict(VALID)
    document[key] = value
    _parse_case(ledger, json.dumps(document))


@FUZZ
@given(key=st.sampled_from(list(VALID["input"])), value=json_values)
def test_metadata_with_one_input_field_replaced(ledger, key, value):
    document = json.loads(json.dumps(VALID))
    document["input"][key] = value
    _parse_case(ledger, json.dumps(document))


@FUZZ
@given(raw=st.binary(max_size=400))
def test_metadata_from_random_bytes(ledger, raw):
    _parse_case(ledger, raw)


def _mutations(data: bytes):
    return st.tuples(
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=12), st.integers(0, len(data))
    )


@pytest.fixture(scope="module")
def model_bytes(tiny_runs):
    deploy = tiny_runs / "edge_cnn" / "deploy"
    return (deploy / "model_int8.tflite").read_bytes(), (deploy / "model_int8.onnx").read_bytes()


def _mutate(data: bytes, edits, cut) -> bytes:
    mutated = bytearray(data[:cut] if cut else data)
    for position, value in edits:
        if position < len(mutated):
            mutated[position] = value
    return bytes(mutated)


@pytest.mark.dataset
def test_tflite_and_onnx_readers_on_mutated_files(model_bytes, ledger):
    tflite, onnx = model_bytes

    @FUZZ
    @given(_mutations(tflite), _mutations(onnx))
    def run(tflite_case, onnx_case):
        for data, case, reader in ((tflite, tflite_case, read_tflite_entries), (onnx, onnx_case, read_onnx_props)):
            mutated = _mutate(data, *case)
            with ledger.case("fuzzing: TFLite/ONNX container readers on mutated files (hypothesis)"):
                try:
                    sniff_format(mutated)
                    entries = reader(mutated)
                    if "edge_classify" in entries:
                        _parse(entries["edge_classify"])
                except ModelFileError as exc:
                    assert str(exc)

    run()


@FUZZ
@given(raw=st.binary(max_size=600))
def test_container_readers_on_random_bytes(ledger, raw):
    for reader in (read_tflite_entries, read_onnx_props):
        with ledger.case("fuzzing: TFLite/ONNX container readers on random bytes (hypothesis)"):
            try:
                reader(raw)
            except ModelFileError as exc:
                assert str(exc) and "\n" not in str(exc)


def test_idx_reader_fuzz(tmp_path_factory, ledger):
    from train.datasets.idx import read_idx, write_idx

    folder = tmp_path_factory.mktemp("idx")
    base = folder / "base-idx3-ubyte"
    write_idx(base, np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28))
    data = base.read_bytes()

    @FUZZ
    @given(_mutations(data), st.booleans())
    def run(case, zipped):
        mutated = _mutate(data, *case)
        path = folder / ("case-idx3-ubyte.gz" if zipped else "case-idx3-ubyte")
        path.write_bytes(gzip.compress(mutated) if zipped else mutated)
        with ledger.case("fuzzing: IDX reader on mutated files (hypothesis)"):
            try:
                array = read_idx(path)
                assert array.size * array.itemsize <= len(mutated)
            except DatasetError as exc:
                assert path.name in str(exc)

    run()
