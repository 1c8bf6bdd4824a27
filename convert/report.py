"""What a conversion measured, file by file: ``FileResult``, ``ConvertReport``, the table, and
``convert_report.json``/``deploy.json``, read back to skip a conversion that is up to date."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_common.files import atomic_write_text, dump_json
from edge_runtime import formats as formats_mod
from edge_runtime.contract import InputSpec
from train import runfolder

from .config import ConvertConfig, created_by


@dataclass
class FileResult:
    format: str
    file: str
    status: str  # ok | rejected | skipped
    size_bytes: int = 0
    accuracy: float | None = None  # None: no labelled test images
    accuracy_drop: float | None = None
    # One-sided exact McNemar test on the images only one of Keras and the file gets right: the chance
    # that a file as good as Keras loses at least this many of them. None: no labels.
    drop_p_value: float | None = None
    agreement: float = 0.0
    max_abs_prob_diff: float = 0.0
    # Files with the out-of-class output: how often the file's unknown verdict matched Keras', and
    # the largest score difference, on the check images.
    unknown_agreement: float | None = None
    max_abs_unknown_diff: float | None = None
    gate: str = ""  # the gate, or why the format was skipped
    backend: str = ""
    opencv_dnn_agreement: float | None = None
    opencv_dnn_note: str | None = None
    # int8 ONNX: the file in a default onnxruntime.InferenceSession (no options), as integrators embed it.
    default_session_agreement: float | None = None
    default_session_accuracy: float | None = None
    default_session_problem: str | None = None
    # int8 TFLite: what the Edge TPU compiler would make of it (convert/edgetpu.py), and its run if on PATH.
    edgetpu: dict | None = None
    sha256: str = ""
    seconds: float = 0.0

    @property
    def measured(self) -> str:
        """What the gate measured, in the gate's own terms ("accuracy drop 1.20 points")."""
        if self.default_session_problem:
            return f"in a default ONNX Runtime session: {self.default_session_problem}"
        if self.gate.startswith("accuracy drop") and self.accuracy_drop is not None:
            p_value = "" if self.drop_p_value is None else f" (McNemar p {self.drop_p_value:.3f})"
            return f"accuracy drop {100 * self.accuracy_drop:.2f} points{p_value}"
        return f"agreement {self.agreement:.1%}"

    @property
    def verdict(self) -> str:
        """The status column: a rejection says what was measured against what was allowed."""
        if self.status == "rejected":
            if self.default_session_problem:
                return f"REJECTED: {self.measured}"
            return f"REJECTED: {self.measured}, gate {self.gate}"
        return self.status


@dataclass
class ConvertReport:
    model: str
    deploy_dir: Path
    keras_accuracy: float | None
    test_set: str
    results: list[FileResult]
    skipped: bool = False  # up to date: nothing was converted

    @property
    def ok(self) -> bool:
        return all(r.status != "rejected" for r in self.results)


def write_reports(
    report: ConvertReport,
    config: ConvertConfig,
    labels: tuple[str, ...],
    input_spec: InputSpec,
    keras_sha: str,
    model_path: Path,
) -> None:
    deploy_dir = report.deploy_dir
    runfolder.write_labels(deploy_dir, labels)
    body = {
        "model": report.model,
        "created_by": created_by(),
        "keras_file": str(model_path.name),
        "keras_sha256": keras_sha,
        "keras_accuracy": report.keras_accuracy,
        "test_set": report.test_set,
        "settings": config.settings(),
        "results": [asdict(r) for r in report.results],
    }
    atomic_write_text(deploy_dir / runfolder.CONVERT_REPORT_FILE, dump_json(body))
    deploy = {
        "model": report.model,
        "labels": list(labels),
        "input": input_spec.to_dict(),
        "input_note": "raw 0..255 pixels, NHWC, batch 1; int8 files take int8 input (see each file's quantization)",
        "files": {
            r.format: {
                "file": r.file,
                "status": r.status,
                "size_bytes": r.size_bytes,
                "sha256": r.sha256,
                "accuracy": r.accuracy,
                "agreement_with_keras": r.agreement,
                "description": formats_mod.get(r.format).description,
            }
            for r in report.results
            if r.status != "skipped"
        },
        "keras_sha256": keras_sha,
    }
    atomic_write_text(deploy_dir / runfolder.DEPLOY_INFO_FILE, dump_json(deploy))


def up_to_date(previous: dict[str, Any] | None, keras_sha: str, config: ConvertConfig, deploy_dir: Path) -> bool:
    if not previous or previous.get("keras_sha256") != keras_sha:
        return False
    if not config.accept_existing and previous.get("settings") != json.loads(json.dumps(config.settings())):
        return False
    by_format = {r["format"]: r for r in previous.get("results", [])}
    for name in config.formats or ():
        entry = by_format.get(name)
        if not entry or entry.get("status") not in ("ok", "skipped"):
            return False
        if entry["status"] == "skipped":  # same settings, same images: still cannot be built
            continue
        path = deploy_dir / entry["file"]
        if not path.is_file() or path.stat().st_size != entry.get("size_bytes"):
            return False
    return True


def report_from_json(data: dict[str, Any], deploy_dir: Path, skipped: bool) -> ConvertReport:
    fields = FileResult.__dataclass_fields__
    results = [FileResult(**{k: v for k, v in r.items() if k in fields}) for r in data.get("results", [])]
    return ConvertReport(
        data["model"], deploy_dir, data.get("keras_accuracy"), data.get("test_set", ""), results, skipped=skipped
    )


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(report: ConvertReport) -> str:
    keras = "unknown (no labelled test images)" if report.keras_accuracy is None else f"{report.keras_accuracy:.4f}"
    lines = [
        f"{report.model}: Keras accuracy {keras} on {report.test_set}"
        + ("  (up to date, not reconverted)" if report.skipped else ""),
        f"{'format':16s} {'file':32s} {'size KB':>8s} {'accuracy':>9s} {'drop pts':>9s} {'agree':>8s} "
        f"{'max|dp|':>8s} {'OpenCV':>7s}  status",
    ]
    for r in report.results:
        if r.status == "skipped":
            lines.append(
                f"{r.format:16s} {'-':32s} {'':>8s} {'':>9s} {'':>9s} {'':>8s} {'':>8s} {'':>7s}  skipped ({r.gate})"
            )
            continue
        cv = (
            "-"
            if r.opencv_dnn_agreement is None and not r.opencv_dnn_note
            else ("error" if r.opencv_dnn_agreement is None else f"{r.opencv_dnn_agreement:.3f}")
        )
        drop = None if r.accuracy_drop is None else 100 * r.accuracy_drop
        lines.append(
            f"{r.format:16s} {r.file:32s} {r.size_bytes / 1024:8.1f} {_number(r.accuracy, '9.4f'):>9s} "
            f"{_number(drop, '9.2f'):>9s} {r.agreement:8.4f} {r.max_abs_prob_diff:8.4f} {cv:>7s}  "
            f"{r.verdict}"
        )
    return "\n".join(lines)
