"""`python -m convert [MODEL | RUN_FOLDER | FILE.keras ...]`: deployable, verified, self-describing files."""

from __future__ import annotations

import argparse
import sys

from edge_common.cli import ArgumentParser, add_options, config_from_args, run_command
from train.models import SHIPPED

from .config import ConvertConfig


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m convert",
        description="Convert a trained Keras model to TFLite (float32, float16, dynamic-range, int8) and ONNX "
        "(float32, int8), check every file against the Keras model on the full test set, embed labels "
        "and the input contract in each file. Files failing their gate are kept as *.rejected and the "
        "command exits 1. Formats that cannot be checked with what was given are skipped, and the "
        "command says why.",
    )
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help=f"registry name, run folder or .keras file (default: {' '.join(SHIPPED)})",
    )
    add_options(parser, ConvertConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), _work, argv, "finished files are in place, unfinished ones were discarded")


def _work(args: argparse.Namespace) -> int:
    from train.tfenv import quiet_tensorflow

    quiet_tensorflow()
    from .converter import convert
    from .report import format_table

    status = 0
    for name in args.models or SHIPPED:
        report = convert(config_from_args(ConvertConfig, args, model=name))
        print(format_table(report), flush=True)
        if not report.ok:
            failed = ", ".join(
                f"{r.format} ({r.measured}" + ("" if r.default_session_problem else f"; needs {r.gate}") + ")"
                for r in report.results
                if r.status == "rejected"
            )
            print(
                f"error: {report.model}: {failed} failed the parity gate; kept as *.rejected in "
                f"{report.deploy_dir} (--max-accuracy-drop allows a larger drop; --no-gates keeps every "
                "file)",
                file=sys.stderr,
            )
            status = 1
    return status
