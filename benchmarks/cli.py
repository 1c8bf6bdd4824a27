"""`python -m benchmarks`: which file should I put on my device? Float against int8, latency against accuracy."""

from __future__ import annotations

import argparse

from edge_common.cli import ArgumentParser, add_options, config_from_args, run_command

from .config import BenchConfig


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m benchmarks",
        description="Measure every model x format x thread count: size, accuracy, agreement with Keras, batch-1 "
        "latency (p50/p95/p99), throughput, load time and peak memory (each file in a fresh process), "
        "and the camera pipeline end to end against the capture ceiling and the tutorials' model.predict "
        "loop. Writes reports/benchmark.{json,csv,md} and reports/pareto.png.",
    )
    add_options(parser, BenchConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), _work, argv, "measured models are saved; run the same command to resume")


def _work(args: argparse.Namespace) -> int:
    from .report import markdown
    from .runner import run

    print(markdown(run(config_from_args(BenchConfig, args))))
    return 0
