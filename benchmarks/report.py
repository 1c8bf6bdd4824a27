"""Benchmark report: the table, the Pareto front, the verdicts, and the files under reports/."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

from edge_common.files import atomic_write_bytes, atomic_write_text, dump_json

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
    lines += camera_markdown(report.get("camera_conditions") or {})
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
    if camera_plot(folder / "camera_conditions.png", report.get("camera_conditions") or {}):
        written.append(folder / "camera_conditions.png")
    return written


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


def camera_plot(path: Path, camera: dict[str, Any]) -> bool:
    """Accuracy per camera condition for each file, and the share of empty frames given a label."""
    if not camera.get("files"):
        return False
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = camera["files"]
    names = [n for n in next(iter(files.values()))["conditions"] if n not in ("mean",)]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(files)
    for i, (file, row) in enumerate(files.items()):
        values = [
            100 * (row["conditions"][n]["labelled"] if n == "background" else row["conditions"][n]["accuracy"])
            for n in names
        ]
        ax.bar([k + i * width for k in range(len(names))], values, width, label=file)
    ax.set_xticks([k + width * (len(files) - 1) / 2 for k in range(len(names))])
    ax.set_xticklabels([n.replace("_", " ") if n != "background" else "empty:\nlabelled" for n in names], fontsize=8)
    ax.set_ylabel("% of frames")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(f"{camera['model']}: accuracy per camera condition (empty: share wrongly given a label)", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return True


def pareto_plot(path: Path, rows: list[dict[str, Any]]) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False  # device mode without the plot extra
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    points = [r for r in rows if r.get("threads") == 1 and r.get("latency_ms_p50") and r.get("accuracy") is not None]
    if not points:
        return False
    # One panel per test set: accuracies on camera scenes and on Fashion-MNIST are not comparable.
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in points:
        groups.setdefault(str(row.get("test_set") or "test set"), []).append(row)
    fig, axes = plt.subplots(1, len(groups), figsize=(7.5 * len(groups), 5.5), squeeze=False)
    models = list(dict.fromkeys(r["model"] for r in points))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    markers = {"float32": "o", "float16": "s", "dynamic": "D", "int8": "v"}
    for ax, (test_set, members) in zip(axes[0], groups.items()):
        for row in members:
            precision = row["format"].split("_")[-1]
            onnx = row["format"].startswith("onnx")
            ax.scatter(
                row["latency_ms_p50"] * 1e3,
                100 * row["accuracy"],
                marker=markers.get(precision, "o"),
                s=48,
                zorder=3,
                color="white" if onnx else colours[row["model"]],
                edgecolors=colours[row["model"]],
                linewidths=1.5,
            )
        xs = [r["latency_ms_p50"] * 1e3 for r in members]
        ys = [100 * r["accuracy"] for r in members]
        x_low, x_high = _log_limits(min(xs), max(xs))
        y_low, y_high = min(ys), max(ys)
        if y_high - y_low < 1.0:  # a few hundredths of a point should not look like a cliff
            y_low, y_high = (y_low + y_high) / 2 - 0.5, (y_low + y_high) / 2 + 0.5
        pad = 0.12 * (y_high - y_low)
        ax.set_xscale("log")
        ax.set_xlim(x_low, x_high)
        ax.set_ylim(y_low - pad, y_high + pad)

        limits = (x_low, x_high, y_high - 0.5 * pad)
        for model in dict.fromkeys(r["model"] for r in members):
            mine = [r for r in members if r["model"] == model]
            best = max(mine, key=lambda r: (r["accuracy"], -r["latency_ms_p50"]))
            _label(ax, model, best["latency_ms_p50"] * 1e3, 100 * best["accuracy"], limits, 8, colours[model])
        front = sorted((r for r in members if r.get("pareto")), key=lambda r: r["latency_ms_p50"])
        if front:
            ax.step(
                [r["latency_ms_p50"] * 1e3 for r in front],
                [100 * r["accuracy"] for r in front],
                where="post",
                color="black",
                linewidth=0.8,
                zorder=2,
            )
            for row in front:
                _label(
                    ax,
                    row["format"],
                    row["latency_ms_p50"] * 1e3,
                    100 * row["accuracy"],
                    limits,
                    6,
                    "black",
                    below=True,
                )
        ax.xaxis.set_major_locator(FixedLocator(_one_two_five(x_low, x_high)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _microseconds(value)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", which="both", labelsize=7)
        ax.set_xlabel("p50 latency per image, batch 1, 1 thread (log scale)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(test_set)
        ax.grid(alpha=0.3, which="both")

    handles = [Line2D([], [], marker=m, linestyle="", color="grey", label=p) for p, m in markers.items()]
    handles += [
        Line2D([], [], marker="o", linestyle="", color="grey", label="TFLite (filled)"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="white", color="grey", label="ONNX (hollow)"),
        Line2D([], [], color="black", linewidth=0.8, label="Pareto front"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle("Accuracy against latency: which file is worth its milliseconds")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return True


def _label(
    ax: Any,
    text: str,
    x: float,
    y: float,
    limits: tuple[float, float, float],
    size: int,
    colour: Any,
    below: bool = False,
) -> None:
    """A point's name, pointing inwards so it stays inside the axes wherever the point is."""
    x_low, x_high, near_top = limits
    right = math.log(x / x_low) > 0.6 * math.log(x_high / x_low)
    top = y > near_top  # a name above a point at the top would leave the axes: it goes below, formats lower still
    dy = (-20 if top else -10) if below else (-10 if top else 6)
    ax.annotate(
        text,
        (x, y),
        fontsize=size,
        color=colour,
        textcoords="offset points",
        xytext=(-6 if right else 6, dy),
        ha="right" if right else "left",
    )


def _log_limits(low: float, high: float) -> tuple[float, float]:
    """Axis limits a quarter of the data's (log) span beyond it on each side, at least x1.5 each way."""
    span = max(math.log(high / low), math.log(2.0))
    margin = max(0.25 * span, math.log(1.5))
    return low / math.exp(margin), high * math.exp(margin)


def _one_two_five(low: float, high: float) -> list[float]:
    """Tick values 1, 2, 5 x 10^k within [low, high]: readable at any span, never crowded."""
    ticks = []
    for exponent in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0**exponent
            if low <= value <= high:
                ticks.append(value)
    return ticks


def _microseconds(value: float) -> str:
    return f"{value / 1000:g} ms" if value >= 1000 else f"{value:g} us"


def _kb(size: Any) -> str:
    return "-" if not size else (f"{size / 1024:.0f} KB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MB")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
