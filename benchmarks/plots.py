"""The benchmark's figures: latency against accuracy (``pareto.png``) and accuracy under the camera
conditions (``camera_conditions.png``), drawn with matplotlib when it is installed."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from edge_common.files import atomic_write_bytes


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
