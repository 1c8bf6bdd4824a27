"""`python -m benchmarks.arm`: its options, the steps of one check in order, and the report."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_common.cli import ArgumentParser, add_options, config_from_args, option, run_command
from edge_common.errors import EdgeError
from edge_common.files import atomic_write_text, dump_json

from .arm32 import arm32_note
from .guest import (
    CPUS,
    ROOT,
    _cpu_root,
    _guest_info,
    _guest_install,
    _guest_python,
    _guest_root,
    _in_parallel,
    _qemu,
    _qemu_version,
    _wheels,
)
from .jobs import (
    OPENVINO_INT8_TOLERANCE,
    TOLERANCE,
    _compare,
    _compare_taught,
    _deploy_files,
    _findings,
    _guest_benchmark,
    _inputs,
    _run_jobs,
    _teach,
    _teach_examples,
    run_jobs,
)

log = logging.getLogger("edge_classify.arm")


@dataclass
class ArmConfig:
    """Options of ``python -m benchmarks.arm``."""

    cpus: str = option(
        "cortex-a72,cortex-a76",
        "emulated CPU models, comma-separated (Pi 4: cortex-a72, Pi 5: cortex-a76; also cortex-a53, neoverse-n1)",
    )
    models: str = option("clothes_lite0,edge_cnn", "shipped models (runs/<MODEL>/deploy/) whose files are compared")
    frames: int = option(6, "frames in the test video (one held-out photo per frame)", bounds=(1, 1000))
    photos: int = option(6, "held-out photos in the test folder", bounds=(1, 1000))
    benchmark: bool = option(True, "skip the device-mode benchmark in the guest", flag="--no-benchmark")
    teach_photos: int = option(4, "training photos a class (3 classes) taught on x86 and in the guest", bounds=(1, 100))
    cache_dir: str | None = option(help="guest root, wheels and inputs (default: .cache/arm in the checkout)")
    reports_dir: str | None = option(help="where arm.json goes (default: reports/ in the checkout)")
    runs_dir: str | None = option(help="where the shipped runs are (default: runs/ in the checkout)")

    def cpu_list(self) -> list[str]:
        names = [name.strip() for name in self.cpus.split(",") if name.strip()]
        unknown = [name for name in names if name not in CPUS]
        if not names or unknown:
            raise EdgeError(
                f"--cpus: unknown CPU model(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(CPUS)}"
            )
        return names


class _Steps:
    """Wall time of each step, for the report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, work: Any) -> Any:
        started = time.perf_counter()
        log.info("%s ...", name)
        try:
            return work()
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 1)
            log.info("%s: %.1f s", name, self.seconds[name])


def run(config: ArmConfig) -> dict[str, Any]:
    """Build or reuse the guest, run everything on x86 and in the guest, compare, write reports/arm.json."""

    cpus = config.cpu_list()
    cache = Path(config.cache_dir).expanduser() if config.cache_dir else ROOT / ".cache" / "arm"
    reports = Path(config.reports_dir).expanduser() if config.reports_dir else ROOT / "reports"
    runs = Path(config.runs_dir).expanduser() if config.runs_dir else ROOT / "runs"
    files = _deploy_files(runs, [name.strip() for name in config.models.split(",") if name.strip()])
    qemu = _qemu()
    cache.mkdir(parents=True, exist_ok=True)
    steps = _Steps()
    started = time.perf_counter()
    guest_root = steps.run("guest root (Debian bookworm arm64)", lambda: _guest_root(cache))
    wheels = steps.run("aarch64 wheels", lambda: _wheels(cache))
    site = steps.run("base install inside the guest (pip)", lambda: _guest_install(cache, guest_root, qemu, wheels))
    inputs = steps.run("inputs (video and photos)", lambda: _inputs(cache, config.frames, config.photos))
    # Every file on its default engine, and each .onnx file on OpenVINO too (the guest installs it).
    engines = {path: ["auto"] + (["openvino"] if path.suffix == ".onnx" else []) for path in files}
    jobs = [
        {
            "file": str(path),
            "source": str(source),
            "backend": backend,
            "name": f"{path.parent.parent.name}/{path.name}{'@' + backend if backend != 'auto' else ''}/{kind}",
        }
        for path in files
        for backend in engines[path]
        for kind, source in inputs.items()
    ]
    x86 = steps.run(
        "x86 runs", lambda: _run_jobs([sys.executable], jobs, cache / "out" / "x86", {"PYTHONPATH": str(ROOT)})
    )
    env = {"PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}  # the installed wheel first, the checkout for this driver
    pythons = {cpu: _guest_python(cache, _cpu_root(guest_root, cpu), qemu, cpu) for cpu in cpus}
    guests = steps.run(
        f"guest runs ({', '.join(cpus)}, side by side)",
        lambda: _in_parallel(
            {
                cpu: lambda cpu=cpu: _run_jobs(
                    [str(pythons[cpu])], jobs, cache / "out" / cpu, env, cache / "out" / "x86"
                )
                for cpu in cpus
            }
        ),
    )
    info = _guest_info(pythons[cpus[-1]], site)
    taught = steps.run(
        f"teach on x86 and in the guest ({cpus[-1]})",
        lambda: _teach_both(cache, pythons[cpus[-1]], env, inputs["photos"], config.teach_photos),
    )
    bench = None
    if config.benchmark:
        edge = next((path.parent for path in files if path.parent.parent.name == "edge_cnn"), files[0].parent)
        bench = steps.run(
            f"device-mode benchmark in the guest ({cpus[-1]})",
            lambda: _guest_benchmark(pythons[cpus[-1]], site, edge, cache / "benchmark"),
        )
    entries = [_compare(job, x86[job["name"]], guests[cpu][job["name"]], cpu) for cpu in cpus for job in jobs]
    report = {
        "ok": all(entry["ok"] for entry in entries) and (bench is None or bench["ok"]) and taught["ok"],
        **info,
        "emulation": f"qemu-user {_qemu_version(qemu)} (-cpu {', '.join(cpus)}); times are emulation times, "
        "never comparable with hardware",
        "host": {"machine": platform.machine(), "python": platform.python_version()},
        "tolerance": {
            "top1": "every frame identical",
            "max_prob_diff": TOLERANCE,
            "openvino_int8_max_prob_diff": OPENVINO_INT8_TOLERANCE,
        },
        "end_to_end_top1_identical": all(not entry["mismatches"] for entry in entries),
        "findings": _findings(entries),
        "files": entries,
        "benchmark": bench,
        "teach": taught,
        "not_covered": NOT_COVERED,
        "arm32": arm32_note(cache),
        "steps_s": {**steps.seconds, "total": round(time.perf_counter() - started, 1)},
    }
    reports.mkdir(parents=True, exist_ok=True)
    atomic_write_text(reports / "arm.json", dump_json(report))
    return report


def _teach_both(cache: Path, guest: Path, env: dict[str, str], photos: Path, count: int) -> dict[str, Any]:
    """The same teach run on x86 and in the guest; each side's file then classifies the test photos on
    its own side, and the answers must be the same."""
    examples = _teach_examples(cache, count)
    out = cache / "out"
    here = _teach([sys.executable], {"PYTHONPATH": str(ROOT)}, examples, out / "x86-teach")
    there = _teach([str(guest)], env, examples, out / "guest-teach")
    name = "taught/photos"
    ran_here = _run_jobs(
        [sys.executable],
        [{"file": here["file"], "source": str(photos), "name": name}],
        out / "x86-taught",
        {"PYTHONPATH": str(ROOT)},
    )
    ran_there = _run_jobs(
        [str(guest)],
        [{"file": there["file"], "source": str(photos), "name": name}],
        out / "guest-taught",
        env,
        out / "x86-taught",
    )
    return {
        "examples": count * 3,
        **_compare_taught(ran_here[name], ran_there[name]),
        "x86_s": here["wall_s"],
        "guest_s": there["wall_s"],
        "guest_said": there["said"],
        "note": "guest_s is emulation time (qemu-user), never comparable with hardware",
    }


NOT_COVERED = (
    "real boards (Raspberry Pi 4/5, Jetson): only their CPU instruction sets are emulated; cameras, "
    "Picamera2, V4L2 and GStreamer capture; Jetson's CUDA/TensorRT execution providers; any timing"
)


# --- the host's tools --------------------------------------------------------------------------


# --- the guest ---------------------------------------------------------------------------------


# --- inputs, runs and the comparison -----------------------------------------------------------


# --- command line ------------------------------------------------------------------------------


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m benchmarks.arm",
        description="Run the device half (the base install, python -m edge_runtime, python -m benchmarks "
        "--deploy-dir) in an emulated Debian bookworm arm64 (qemu-user), compare every frame with "
        "the x86 run of the same files, and write reports/arm.json.",
    )
    add_options(parser, ArmConfig)
    parser.add_argument("--run-jobs", metavar="JOBS.json", help=argparse.SUPPRESS)  # internal: the driver
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), _work, argv, "the cached guest is kept; run the same command again")


def _work(args: argparse.Namespace) -> int:
    if args.run_jobs:  # the driver, on either side
        return run_jobs(Path(args.run_jobs))
    report = run(config_from_args(ArmConfig, args))
    for entry in report["files"]:
        state = (
            "DIFFERS"
            if not entry["ok"]
            else "cannot run, see findings"
            if entry.get("unavailable")
            else "ok, see findings"
            if entry["mismatches"]
            else "ok"
        )
        print(
            f"{entry['cpu']:11s} {entry['file'] + ('@' + entry['backend'] if entry['backend'] != 'auto' else ''):51s} "
            f"{entry['source']:6s} frames {entry['frames']:3d}  "
            f"top-1 {entry['top1_agreement']:.3f}  max|dp| {entry['max_prob_diff']:.6f}  "
            f"{state}"
        )
    for finding in report["findings"]:
        print(f"finding: {finding}")
    taught = report["teach"]
    print(
        f"teach in the guest: {'ok' if taught['ok'] else 'DIFFERS'}: {taught['same_answer']} of "
        f"{taught['photos']} photos answered the same; {taught['examples']} examples taught in "
        f"{taught['guest_s']} s (emulation) against {taught['x86_s']} s on x86"
    )
    bench = report.get("benchmark")
    if bench:
        print(
            f"benchmark --deploy-dir in the guest: {'ok' if bench['ok'] else 'FAILED: ' + bench.get('error', '')}"
            f" ({bench['wall_s']} s; emulation times)"
        )
    print(
        f"{'ok' if report['ok'] else 'DIFFERENCES FOUND'}: {report['machine']} Python {report['python']}; "
        f"{report['steps_s']['total']} s; wrote reports/arm.json"
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
