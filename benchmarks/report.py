"""Benchmark report: the table, the Pareto front, the verdicts, and the files under reports/."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

from edge_common.files import atomic_write_text, dump_json

from .plots import camera_plot, pareto_plot

ROW_FIELDS = (
    "model",
    "format",
    "threads",
    "size_bytes",
    "accuracy",
    "agreement",
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_p99",
    "throughput_ips",
    "load_ms",
    "peak_rss_mb",
    "backend",
    "engine",
    "images",
)
ACCURACY_TOLERANCE = 0.005  # "keeps accuracy": within 0.5 points of float


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (latency, accuracy) points: True where no other point is at least as fast and as accurate
    and strictly better in one of the two."""
    flags = []
    for i, (lat_i, acc_i) in enumerate(points):
        dominated = any(
            lat_j <= lat_i and acc_j >= acc_i and (lat_j < lat_i or acc_j > acc_i)
            for j, (lat_j, acc_j) in enumerate(points)
            if j != i
        )
        flags.append(not dominated)
    return flags


def _engine_short(row: dict[str, Any]) -> str:
    """The engine without its thread count (the row has its own column): "OpenVINO 2026.4.1 CPU f32"."""
    engine = row.get("engine") or row.get("backend") or "-"
    return str(engine).split(",")[0]


def _slower(ratio: float) -> str:
    """Within timing noise say "no faster than", not "1.00x slower than"."""
    return f"{ratio:.2f}x slower than float32 here" if ratio >= 1.02 else f"no faster than float32 here ({ratio:.2f}x)"


def verdicts(rows: list[dict[str, Any]], int8_note: str, int8_fast: bool = False) -> dict[str, str]:
    """Per model: the fastest deployable file (1 thread) within 0.5 points of its float32 file.

    ``int8_fast``: the CPU has int8 dot-product instructions (then ``int8_note`` says int8 can win,
    which a model where it did not must not repeat)."""
    out = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        candidates = [
            r
            for r in rows
            if r["model"] == model
            and r["format"] != "keras"
            and r.get("threads") == 1
            and r.get("latency_ms_p50") is not None
            and r.get("accuracy") is not None
        ]
        if not candidates:
            continue
        float_rows = [r for r in candidates if r["format"] == "tflite_float32"] or [
            r for r in candidates if r["format"].endswith("float32")
        ]
        reference = float_rows[0]["accuracy"] if float_rows else max(r["accuracy"] for r in candidates)
        keeping = [r for r in candidates if r["accuracy"] >= reference - ACCURACY_TOLERANCE]
        best = min(keeping, key=lambda r: r["latency_ms_p50"])
        text = (
            f"use {best['format']} on {best.get('engine') or best.get('backend')} ({_kb(best['size_bytes'])}, "
            f"{best['latency_ms_p50'] * 1e3:.0f} us p50 at 1 thread, "
            f"accuracy {100 * best['accuracy']:.2f}% vs float32 {100 * reference:.2f}%)"
        )
        by_format = {r["format"]: r for r in candidates if r["format"].startswith("tflite")}
        fp, q8 = by_format.get("tflite_float32"), by_format.get("tflite_int8")
        if fp and q8:
            ratio = q8["latency_ms_p50"] / fp["latency_ms_p50"]
            if ratio > 0.98 and int8_fast:
                # The CPU's int8 instructions did not make this model faster: say so, not why int8 could win.
                text += (
                    f"; int8 TFLite is {_slower(ratio)}, although this CPU has int8 dot-product "
                    "instructions: in a model this small, int8's fixed work (quantizing the input, "
                    "dequantizing the output) outweighs its faster arithmetic"
                )
            elif ratio > 0.98:
                text += f"; int8 TFLite is {_slower(ratio)}: {int8_note}"
            else:
                text += f"; int8 TFLite runs at {ratio:.2f}x the float32 latency"
        out[model] = text
    return out


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    cpu = env["cpu"]
    flags = ", ".join(k for k, v in cpu["flags"].items() if v) or "none"
    lines = [
        f"# Benchmark ({report['mode']} mode)",
        "",
        f"{cpu['model']} ({cpu['machine']}, {cpu['cores']} cores; {flags}), {env['os']}, Python {env['python']}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v),
        "",
        f"Latency: batch 1 through edge_runtime after warm-up, median (p50) with p95/p99 over >= "
        f"{report['settings']['min_runs']} runs and {report['settings']['min_seconds']} s, each file in its own "
        "process. Accuracy: top-1 on " + report["settings"]["test_sets"] + ". Agreement: same top-1 as Keras.",
        "",
        "| model | format | engine | thr | size | accuracy | agree | p50 ms | p95 ms | p99 ms | img/s | load ms "
        "| RSS MB | pareto |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for row in report["rows"]:
        lines.append(
            "| "
            + " | ".join(
                [
                    row["model"],
                    row["format"],
                    _engine_short(row),
                    "-" if row.get("threads") is None else str(row["threads"]),
                    _kb(row.get("size_bytes")),
                    _pct(row.get("accuracy")),
                    _num(row.get("agreement"), 4),
                    _num(row.get("latency_ms_p50"), 3),
                    _num(row.get("latency_ms_p95"), 3),
                    _num(row.get("latency_ms_p99"), 3),
                    _num(row.get("throughput_ips"), 0),
                    _num(row.get("load_ms"), 0),
                    _num(row.get("peak_rss_mb"), 0),
                    "*" if row.get("pareto") else "",
                ]
            )
            + " |"
        )
    lines += ["", "## Which file should I put on my device?", ""]
    lines += [f"- **{model}**: {text}" for model, text in report["verdicts"].items()]
    lines += ["", f"int8 on this CPU: {report['int8_note']}"]
    paired = report.get("paired") or []
    if paired:
        lines += ["", "## Paired latency (both files in one process, alternating rounds, 1 thread)", ""]
        for entry in paired:
            if "verdict" not in entry:
                lines.append(
                    f"- {entry['model']} against {entry['baseline']}, {entry['format']}: failed: "
                    f"{entry.get('error', 'no result')}"
                )
                continue
            a, b = entry["files"]
            lines.append(
                f"- {entry['verdict']} ({a['p50_us_median']:.1f} against {b['p50_us_median']:.1f} us, "
                f"median of the rounds' p50)"
            )
    e2e = report.get("end_to_end") or {}
    if e2e:
        lines += ["", f"## End to end: {e2e.get('model', 'camera_cnn')} on a 640x480 video (headless live loop)", ""]
        video = e2e.get("video", {})
        if video:
            lines.append(f"- video: {video['frames']} frames of {video['source']}")
        ceiling = e2e.get("capture_ceiling", {})
        if ceiling:
            lines.append(
                f"- capture ceiling (decode + resize only): {ceiling['fps']:.0f} FPS "
                f"(decode {ceiling['decode_ms']:.2f} ms, resize {ceiling['resize_ms']:.3f} ms per frame)"
            )
        for name, run in e2e.get("runtime", {}).items():
            if "error" in run:
                lines.append(f"- {name}: failed: {run['error']}")
                continue
            stages = ", ".join(f"{k} {v:.3f}" for k, v in run["stage_ms"].items())
            frac = f", {100 * run['fps'] / ceiling['fps']:.0f}% of the capture ceiling" if ceiling.get("fps") else ""
            acc = f", frame accuracy {100 * run['frame_accuracy']:.1f}%" if "frame_accuracy" in run else ""
            if "empty_labelled" in run:
                acc += f", empty frames given a label {100 * run['empty_labelled']:.1f}%"
            lines.append(
                f"- {name}: {run['fps']:.0f} FPS{frac}{acc}; ms per frame: {stages}; runtime overhead "
                f"(all but inference, of the main loop's own work) "
                f"{100 * run['runtime_overhead_fraction']:.0f}%"
            )
        keras = e2e.get("keras_predict")
        if keras:
            lines.append(
                f"- tutorials' loop (Keras model.predict per frame): {keras['fps']:.1f} FPS "
                f"({keras['frame_ms']:.1f} ms per frame)"
            )
        for name, ratio in e2e.get("speedup_vs_keras_predict", {}).items():
            lines.append(f"- {name} per-frame work is {ratio:.0f}x faster than model.predict on the same frames")
        view = e2e.get("live_view")
        if view:
            lines.append(
                f"- live view (--serve), {view['file']}: {view['fps_no_viewer']:.0f} FPS with no viewer, "
                f"{view['fps_one_viewer']:.0f} with one reading the stream ({100 * view['fps_cost']:+.0f}% "
                f"cost; {view['jpegs_received']} JPEGs received); runtime overhead "
                f"{100 * view['overhead_no_viewer']:.0f}% and {100 * view['overhead_one_viewer']:.0f}% (two "
                "separate runs: the machine's drift is in the difference)"
            )
        looks = e2e.get("second_look")
        if looks:
            lines.append(
                f"- second look, {looks['file']}: {100 * looks['looked_again']:.0f}% of frames looked again; "
                f"median main-loop work per frame {looks['frame_ms_p50_on']:.2f} ms against "
                f"{looks['frame_ms_p50_off']:.2f} ms with --second-look off ({100 * looks['cost']:+.0f}%); "
                f"frame accuracy {100 * looks['frame_accuracy_on']:.1f}% against "
                f"{100 * looks['frame_accuracy_off']:.1f}%"
            )
    for camera in camera_sections(report):
        lines += camera_markdown(camera)
    several = report.get("several_cameras") or {}
    if several:
        from .cameras import summary_lines as cameras_lines

        lines += ["", "## Several cameras on this device (640x480 MJPEG streams at 30 FPS)", ""]
        lines += [f"- {line}" for line in cameras_lines(several)]
    if report.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


def write_all(folder: Path, report: dict[str, Any]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    atomic_write_text(folder / "benchmark.json", dump_json(report))
    written.append(folder / "benchmark.json")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ROW_FIELDS + ("pareto",), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(report["rows"])
    atomic_write_text(folder / "benchmark.csv", buffer.getvalue())
    written.append(folder / "benchmark.csv")
    atomic_write_text(folder / "benchmark.md", markdown(report))
    written.append(folder / "benchmark.md")
    if pareto_plot(folder / "pareto.png", report["rows"]):
        written.append(folder / "pareto.png")
    for key, camera in (report.get("camera_conditions") or {}).items():
        name = "camera_conditions.png" if key == "procedural" else f"camera_conditions_{key}.png"
        if isinstance(camera, dict) and camera_plot(folder / name, camera):
            written.append(folder / name)
    return written


def camera_sections(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The camera-conditions reports of a run: procedural backgrounds, then the user's photos."""
    sections = report.get("camera_conditions") or {}
    return [sections[key] for key in ("procedural", "real") if isinstance(sections.get(key), dict)]


def camera_markdown(camera: dict[str, Any]) -> list[str]:
    """The camera-conditions section: a row per file, a column per condition (benchmarks.camera)."""
    if not camera.get("files"):
        return []
    from .camera import summary_lines

    return [
        "",
        f"## {camera['model']} in front of a camera: {camera['photos']} held-out photos in 640x480 frames on "
        f"{camera['backgrounds']}",
        "",
        "```",
        *summary_lines(camera),
        "```",
    ]


def _kb(size: Any) -> str:
    return "-" if not size else (f"{size / 1024:.0f} KB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MB")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
