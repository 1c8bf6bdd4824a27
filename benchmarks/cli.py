"""`python -m benchmarks`: which file should I put on my device? Float against int8, latency against accuracy."""

from __future__ import annotations

import os
import sys

from edge_runtime import formats
from edge_runtime.cliutil import ArgumentParser, run_reporting_errors, setup_logging


def build_parser() -> ArgumentParser:
    names = [fmt.name for fmt in formats.FORMATS]
    parser = ArgumentParser(
        prog="python -m benchmarks",
        description="Measure every model x format x thread count: size, accuracy, agreement with Keras, batch-1 "
                    "latency (p50/p95/p99), throughput, load time and peak memory (each file in a fresh process), "
                    "and the camera pipeline end to end against the capture ceiling and the tutorials' model.predict "
                    "loop. Writes reports/benchmark.{json,csv,md} and reports/pareto.png.")
    parser.add_argument("--models", nargs="+", metavar="MODEL", help="default: every registry model")
    parser.add_argument("--formats", nargs="+", choices=names, default=names, metavar="FORMAT",
                        help="default: all: " + ", ".join(names))
    parser.add_argument("--threads", nargs="+", type=int, help="thread counts to sweep (default: 1 and all cores)")
    parser.add_argument("--quick", action="store_true",
                        help="500 test images, short timings, tiny video (what the test suite runs)")
    parser.add_argument("--deploy-dir", help="device mode: measure the converted files in this folder (or its "
                                             "subfolders) with the base install only; Keras rows are skipped")
    parser.add_argument("--runs-dir", help="run folders (default: runs/ in the checkout, or $EDGE_RUNS_DIR)")
    parser.add_argument("--reports-dir", help="where reports go (default: reports/ in the checkout)")
    parser.add_argument("--data-dir", help="Fashion-MNIST folder (default: search; see README)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end camera pipeline")
    parser.add_argument("--no-train", action="store_true", help="skip models that are not trained instead of training them")
    parser.add_argument("--fresh", action="store_true", help="ignore results saved by an interrupted run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    threads = tuple(args.threads) if args.threads else tuple(sorted({1, os.cpu_count() or 1}))
    if any(t < 1 for t in threads):
        print("error: --threads values must be at least 1", file=sys.stderr)
        return 2
    from .runner import BenchConfig, run
    from .report import markdown

    config = BenchConfig(models=tuple(args.models or ()), formats=tuple(args.formats), threads=threads,
                         quick=args.quick, deploy_dir=args.deploy_dir, runs_dir=args.runs_dir,
                         reports_dir=args.reports_dir, data_dir=args.data_dir, e2e=not args.no_e2e, fresh=args.fresh,
                         train_missing=not args.no_train)
    def work() -> int:
        print(markdown(run(config)))
        return 0

    return run_reporting_errors(work, "measured models are saved; run the same command to resume")
