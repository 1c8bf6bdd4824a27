"""What one conversion is asked to do: ``ConvertConfig``, whose fields are ``python -m convert``'s options."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from importlib import metadata as package_metadata
from typing import Any

from edge_common.cli import check_ranges, option
from edge_runtime import formats as formats_mod
from train import models

from .exporters import OnnxQuantSettings

FORMAT_NAMES = tuple(fmt.name for fmt in formats_mod.DEPLOYABLE)


def created_by() -> str:
    """``edge-classify <version>`` from the installed package metadata."""
    try:
        return f"edge-classify {package_metadata.version('edge-classify')}"
    except package_metadata.PackageNotFoundError:  # a checkout that was never installed
        return "edge-classify (not installed)"


@dataclass(frozen=True)
class ConvertConfig:
    """One conversion; every field but ``model`` and ``accept_existing`` is a ``python -m convert`` option."""

    model: str = option("", cli=False)  # registry name, run folder or .keras file
    runs_dir: str | None = option(help="folder holding run folders (default: runs/ in the checkout, or $EDGE_RUNS_DIR)")
    formats: tuple[str, ...] | None = option(
        help="formats to write (default: the registry entry's, else all): " + ", ".join(FORMAT_NAMES),
        choices=FORMAT_NAMES,
        metavar="FORMAT",
    )
    # A few hundred training images: enough for stable min/max ranges.
    calibration_samples: int = option(300, "training images for int8 calibration", bounds=(1, 100_000))
    agreement_min: float = option(0.999, "float32/float16 gate: top-1 agreement with Keras", bounds=(0, 1))
    max_accuracy_drop: float = option(
        0.005, "dynamic/int8 gate: accuracy loss against Keras as a fraction (0.005 = 0.5 points)", bounds=(0, 1)
    )
    unlabelled_agreement_min: float | None = option(
        help="dynamic/int8 gate when the real check photos have no "
        "labels (a model with no test set here): top-1 agreement "
        "with Keras (default: the registry entry's, else 0.9)",
        bounds=(0, 1),
    )
    gates: bool = option(True, "report gate failures but keep every file")
    onnx_activations: str = option(
        "uint8", "ONNX int8 activation type: uint8 for x86, int8 for ARM", choices=("uint8", "int8")
    )
    onnx_reduce_range: bool | None = option(
        help="7-bit ONNX weights: with 8 bits a default ONNX Runtime session on "
        "x86 without VNNI can saturate, and the conversion gate refuses "
        "such a file (default: the registry entry's, else on)",
        both=True,
    )
    onnx_weights: str | None = option(
        help="ONNX int8 weight type: int8 (with 7-bit --onnx-reduce-range, exact in "
        "any ONNX Runtime session) or uint8 (U8U8: exact too, but ONNX Runtime "
        "and OpenVINO run it several times slower) (default: the registry "
        "entry's, else int8)",
        choices=("uint8", "int8"),
    )
    eval_limit: int | None = option(help="check on the first N test images only (quick runs)", bounds=(1, None))
    opencv_check: int = option(500, "images to check in OpenCV DNN per ONNX file (0: skip)", bounds=(0, None))
    data_dir: str | None = option(help="Fashion-MNIST folder (default: search; see README)")
    force: bool = option(False, "convert even when deploy files are up to date")
    labels: str | None = option(
        help="a bare .keras file: its labels file, one class per line (default: labels.txt beside it)",
        group="a bare .keras file",
    )
    test: str | None = option(
        help="a folder dataset DIR/<class>/*.jpg to measure accuracy on (a bare .keras file has no recorded test set)",
        metavar="DIR",
        group="a bare .keras file",
    )
    calibration: str | None = option(
        help="a folder of training images DIR/<class>/*.jpg for int8 calibration",
        metavar="DIR",
        group="a bare .keras file",
    )
    color_order: str | None = option(
        help="a bare .keras file with 3 input channels: the colour order it was trained on (default: RGB)",
        choices=("RGB", "BGR"),
        group="a bare .keras file",
    )
    verbose: bool = option(False, "show the quantizers' own progress lines (hundreds of them for ONNX int8)")
    # reuse current files whatever settings made them (quick benchmarks)
    accept_existing: bool = option(False, cli=False)

    @property
    def onnx(self) -> OnnxQuantSettings:
        reduce_range = True if self.onnx_reduce_range is None else self.onnx_reduce_range
        return OnnxQuantSettings(
            activation_type=self.onnx_activations, reduce_range=reduce_range, weight_type=self.onnx_weights or "int8"
        )

    def validate(self) -> None:
        check_ranges(self)
        for name in self.formats or ():
            formats_mod.get(name)

    def for_model(self, model: str) -> "ConvertConfig":
        """Options left unset filled from ``model``'s registry entry: the formats it ships (else all)
        and the conversion options it changes."""
        spec = models.REGISTRY.get(model)
        changes: dict[str, Any] = {"formats": self.formats or (spec.formats if spec and spec.formats else FORMAT_NAMES)}
        for key, value in (spec.convert if spec else {}).items():
            if getattr(self, key) is None:
                changes[key] = value
        return replace(self, **changes)

    def settings(self) -> dict[str, Any]:
        """What makes two conversions of the same model.keras equal (for skipping)."""
        settings = {
            "calibration_samples": self.calibration_samples,
            "agreement_min": self.agreement_min,
            "max_accuracy_drop": self.max_accuracy_drop,
            "gates": self.gates,
            "onnx": asdict(self.onnx),
            "eval_limit": self.eval_limit,
            "opencv_check": self.opencv_check,
        }
        if self.unlabelled_agreement_min is not None:  # only matters without labels; older reports lack it
            settings["unlabelled_agreement_min"] = self.unlabelled_agreement_min
        for key in ("test", "calibration", "color_order"):  # a bare file's images and contract
            if getattr(self, key) is not None:
                settings[key] = getattr(self, key)
        return settings
