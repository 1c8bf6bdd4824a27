"""Whether an int8 TFLite file suits the Edge TPU, and its compiled twin where ``edgetpu_compiler`` runs.

The Edge TPU runs fully int8 files whose operations are on Coral's published list ("TensorFlow models
on the Edge TPU", supported operations); ``edgetpu_compiler`` maps the graph onto it up to the first
operation that is not, and leaves the rest to the CPU. The check reads the file's own operators, so
the convert report says, before any compiler is at hand, whether the whole model would run on the
TPU. The compiler itself is an x86-64 Linux program from Coral's apt repository (package
``edgetpu-compiler``; see docs/accelerators.md); it is run when it is on PATH and writes
``model_int8_edgetpu.tflite`` beside the int8 file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

# Coral's supported operations, as TFLite builtin operator names.
SUPPORTED = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "L2_NORMALIZATION",
        "LOGISTIC",
        "LSTM",
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MEAN",
        "MINIMUM",
        "MUL",
        "PACK",
        "PAD",
        "PRELU",
        "QUANTIZE",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR",
        "RSQRT",
        "SLICE",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "SQUARED_DIFFERENCE",
        "TANH",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
    }
)
COMPILED_NAME = "model_int8_edgetpu.tflite"
COMPILER = "edgetpu_compiler"


def operators(data: bytes) -> tuple[list[str], list[str]]:
    """(operator names in graph order, tensor types of the inputs and outputs) of a TFLite file."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    types = {value: key for key, value in vars(schema.TensorType).items() if not key.startswith("_")}
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    graph = model.subgraphs[0]
    ops = [
        names.get(codes[op.opcodeIndex], f"CUSTOM:{model.operatorCodes[op.opcodeIndex].customCode}")
        for op in graph.operators
    ]
    edges = [types[graph.tensors[i].type] for i in list(graph.inputs) + list(graph.outputs)]
    return ops, edges


def check(data: bytes) -> dict[str, Any]:
    """What the Edge TPU compiler would make of this file: fully int8, every op supported, and if not,
    the first operation from which the rest runs on the CPU."""
    ops, edges = operators(data)
    unsupported = sorted({op for op in ops if op not in SUPPORTED})
    first = next((index for index, op in enumerate(ops) if op not in SUPPORTED), len(ops))
    full_int8 = all(kind in ("INT8", "UINT8") for kind in edges)
    return {
        "full_int8": full_int8,
        "operators": len(ops),
        "unsupported": unsupported,
        "on_tpu": first,
        "compatible": full_int8 and not unsupported,
        "summary": (
            "every operation is on the Edge TPU's list"
            if not unsupported
            else f"{first} of {len(ops)} operations map to the Edge TPU; from {ops[first]} on (unsupported: "
            f"{', '.join(unsupported)}) the CPU runs the rest"
        )
        + ("" if full_int8 else "; the file is not int8 at its inputs and outputs"),
    }


def compile_beside(int8_file: Path, timeout: float = 600) -> dict[str, Any]:
    """Run ``edgetpu_compiler`` on ``int8_file`` when it is on PATH; the compiled file goes beside it."""
    compiler = shutil.which(COMPILER)
    if compiler is None:
        return {
            "compiled": False,
            "note": f"{COMPILER} is not on PATH (x86-64 Linux: Coral's apt repository, "
            "package edgetpu-compiler; see docs/accelerators.md)",
        }
    try:
        run = subprocess.run(
            [compiler, "-s", "-o", str(int8_file.parent), str(int8_file)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"compiled": False, "note": f"{COMPILER} failed: {exc}"}
    made = int8_file.with_name(int8_file.stem + "_edgetpu.tflite")
    if run.returncode != 0 or not made.exists():
        tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"compiled": False, "note": f"{COMPILER} exit {run.returncode}: {tail[0][:200]}"}
    return {"compiled": True, "file": made.name, "log": run.stdout[-2000:]}
