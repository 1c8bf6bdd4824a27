"""`python -m convert MODEL [MODEL ...]`: deployable, verified, self-describing files in runs/<MODEL>/deploy/."""

from __future__ import annotations

import sys

from edge_runtime import formats
from edge_runtime.cliutil import ArgumentParser, quiet_tensorflow, run_reporting_errors, setup_logging

DEFAULT_MODELS = ("edge_cnn", "camera_cnn")


def build_parser() -> ArgumentParser:
    names = [fmt.name for fmt in formats.DEPLOYABLE]
    parser = ArgumentParser(
        prog="python -m convert",
        description="Convert runs/<MODEL>/model.keras to TFLite (float32, float16, dynamic-range, int8) and ONNX "
                    "(float32, int8), check every file against the Keras model on the full test set, embed labels "
                    "and the input contract in each file. Files failing their gate are kept as *.rejected and the "
                    "command exits 1.")
    parser.add_argument("models", nargs="*", metavar="MODEL", help=f"run name(s) (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--runs-dir", help="folder holding run folders (default: runs/ in the checkout, or $EDGE_RUNS_DIR)")
    parser.add_argument("--formats", nargs="+", choices=names, default=names, metavar="FORMAT",
                        help="formats to write (default: all): " + ", ".join(names))
    parser.add_argument("--calibration-samples", type=int, default=300, help="training images for int8 calibration")
    parser.add_argument("--agreement-min", type=float, default=0.999,
                        help="float32/float16 gate: top-1 agreement with Keras (default 0.999)")
    parser.add_argument("--max-accuracy-drop", type=float, default=0.005,
                        help="dynamic/int8 gate: accuracy loss against Keras as a fraction (default 0.005 = 0.5 points)")
    parser.add_argument("--no-gates", action="store_true", help="report gate failures but keep every file")
    parser.add_argument("--onnx-activations", choices=("uint8", "int8"), default="uint8",
                        help="ONNX int8 activation type: uint8 for x86 (default), int8 for ARM")
    parser.add_argument("--onnx-reduce-range", action=__import__("argparse").BooleanOptionalAction, default=True,
                        help="7-bit ONNX weights, for x86 CPUs without VNNI (default on; turn off for ARM/VNNI)")
    parser.add_argument("--eval-limit", type=int, help="check on the first N test images only (quick runs)")
    parser.add_argument("--opencv-check", type=int, default=500, help="images to check in OpenCV DNN per ONNX file (0: skip)")
    parser.add_argument("--data-dir", help="Fashion-MNIST folder (default: search; see README)")
    parser.add_argument("--force", action="store_true", help="convert even when deploy files are up to date")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.calibration_samples < 1 or (args.eval_limit is not None and args.eval_limit < 1):
        print("error: --calibration-samples and --eval-limit must be at least 1", file=sys.stderr)
        return 2
    quiet_tensorflow()
    from .converter import ConvertConfig, GateError, convert, format_table
    from .exporters import OnnxQuantSettings

    def work() -> int:
        status = 0
        for name in args.models or DEFAULT_MODELS:
            config = ConvertConfig(
                model=name, runs_dir=args.runs_dir, formats=tuple(args.formats),
                calibration_samples=args.calibration_samples, agreement_min=args.agreement_min,
                max_accuracy_drop=args.max_accuracy_drop, gates=not args.no_gates,
                onnx=OnnxQuantSettings(activation_type=args.onnx_activations, reduce_range=args.onnx_reduce_range),
                eval_limit=args.eval_limit, opencv_check=args.opencv_check, data_dir=args.data_dir, force=args.force)
            report = convert(config)
            print(format_table(report), flush=True)
            if not report.ok:
                failed = ", ".join(r.format for r in report.results if r.status != "ok")
                print(f"error: {name}: {failed} failed the parity gate; kept as *.rejected in {report.deploy_dir}",
                      file=sys.stderr)
                status = GateError.exit_code
        return status

    return run_reporting_errors(work, "finished files are in place, unfinished ones were discarded")
