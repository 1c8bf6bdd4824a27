"""The pictures the tutorials show a person, written as PNG files into a run's plots/ folder.

- ``samples.png``: a 5x5 grid of training images with their class names
- ``curves.png``: loss and accuracy per epoch, training against validation
- ``confusion.png``: the test confusion matrix
- ``predictions.png``: test images with predicted class, probability and true class (blue when
  right, red when wrong), each beside its probability bars
- ``model.png`` and ``model_summary.txt``: the layers, shapes and parameter counts
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.files import atomic_write_bytes, atomic_write_text


def write_all(
    folder: Path,
    model: Any,
    data: Any,
    history: list[dict[str, float]],
    metrics: dict[str, Any],
    probabilities: np.ndarray,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    names = tuple(data.class_names)
    samples(folder / "samples.png", data.samples[0], data.samples[1], names)
    curves(folder / "curves.png", history)
    confusion(folder / "confusion.png", np.asarray(metrics["confusion_matrix"]), names)
    predictions(folder / "predictions.png", data.test[0], data.test[1], probabilities, names)
    summary = model_summary(model)
    atomic_write_text(folder / "model_summary.txt", summary)
    text_figure(folder / "model.png", summary)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _show(ax: Any, image: np.ndarray) -> None:
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])


def samples(path: Path, images: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(5, 5, figsize=(8, 8.6))
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images[:25], labels[:25]):
        ax.axis("on")
        _show(ax, image)
        ax.set_xlabel(names[int(label)], fontsize=9)
    fig.suptitle("Training images")
    _save(fig, path)


def curves(path: Path, history: list[dict[str, float]]) -> None:
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((loss_ax, "loss", "Loss"), (acc_ax, "accuracy", "Accuracy")):
        ax.plot(epochs, [row[key] for row in history], "o-", label="training")
        ax.plot(epochs, [row["val_" + key] for row in history], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Training curves (a widening gap between the lines is overfitting)")
    _save(fig, path)


def confusion(path: Path, matrix: np.ndarray, names: tuple[str, ...]) -> None:
    import matplotlib.pyplot as plt

    n = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.7 * n))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if matrix[i, j] > threshold else "black",
            )
    ax.set_title("Confusion matrix (test)")
    _save(fig, path)


def predictions(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    names: tuple[str, ...],
    rows: int = 5,
    cols: int = 3,
) -> None:
    import matplotlib.pyplot as plt

    count = min(rows * cols, len(images))
    rows = max(1, -(-count // cols))  # a tiny test set gets as many rows as it fills, not empty ones
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(4.2 * cols, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k in range(count):
        image_ax, bar_ax = axes.flat[2 * k], axes.flat[2 * k + 1]
        image_ax.axis("on")
        bar_ax.axis("on")
        predicted = int(np.argmax(probabilities[k]))
        colour = "blue" if predicted == int(labels[k]) else "red"
        _show(image_ax, images[k])
        image_ax.set_xlabel(
            f"{names[predicted]} {100 * probabilities[k, predicted]:.0f}% ({names[int(labels[k])]})",
            color=colour,
            fontsize=8,
        )
        bars = bar_ax.bar(range(len(names)), probabilities[k], color="#777777")
        bars[predicted].set_color("red")
        bars[int(labels[k])].set_color("blue")
        bar_ax.set_ylim(0, 1)
        bar_ax.set_xticks(range(len(names)))
        bar_ax.tick_params(labelsize=6)
        bar_ax.set_yticks([])
    fig.suptitle("Predictions (blue: right, red: wrong; bars: probability per class index)")
    _save(fig, path)


def model_summary(model: Any) -> str:
    """Layer, output shape and parameter count per layer, and the totals (what ``model.summary()``
    shows, as plain text whose columns never depend on a terminal's width)."""
    rows = [("Layer (type)", "Output Shape", "Param #")]
    for layer in model.layers:
        shape = getattr(layer, "output", None)
        shape = tuple(shape.shape) if shape is not None else ()
        rows.append((f"{layer.name} ({type(layer).__name__})", str(shape), f"{layer.count_params():,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    rule = "-" * (sum(widths) + 6)

    def line(row: tuple[str, str, str]) -> str:
        return f"{row[0]:<{widths[0]}}   {row[1]:<{widths[1]}}   {row[2]:>{widths[2]}}"

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = int(model.count_params())
    return (
        "\n".join(
            [
                f'Model: "{model.name}"',
                rule,
                line(rows[0]),
                rule,
                *map(line, rows[1:]),
                rule,
                f"Total params: {total:,}",
                f"Trainable params: {trainable:,}",
                f"Non-trainable params: {total - trainable:,}",
            ]
        )
        + "\n"
    )


def text_figure(path: Path, text: str) -> None:
    import matplotlib.pyplot as plt

    clean = "\n".join(line.rstrip() for line in text.splitlines())
    height = 0.18 * (len(clean.splitlines()) + 2)
    fig = plt.figure(figsize=(11, max(2.0, height)))
    fig.text(0.01, 0.99, clean, family="monospace", fontsize=8, va="top")
    _save(fig, path)
