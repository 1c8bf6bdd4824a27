"""`python -m train MODEL [MODEL ...] [options]`: train registry models into runs/<MODEL>/."""

from __future__ import annotations

from edge_common.cli import ArgumentParser, add_options, config_from_args, run_reporting_errors, setup_logging

from . import models
from .config import ConfigError, TrainConfig


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m train",
        description="Train models from the registry. Each run writes runs/<MODEL>/ (model.keras, labels.txt, "
        "config.json, metrics.json, history.csv, plots/). A killed run resumes when started again; "
        "a finished one is left as it is unless --fresh.",
        epilog="models: " + "; ".join(f"{name}: {spec.description}" for name, spec in models.REGISTRY.items()),
    )
    parser.add_argument(
        "models", nargs="*", metavar="MODEL", help=f"registry name(s) (default: {models.DEFAULT_MODEL})"
    )
    parser.add_argument("--list", action="store_true", help="list the registry and exit")
    add_options(parser, TrainConfig)
    return parser


def training_order(configs: list[TrainConfig]) -> list[TrainConfig]:
    """The runs in command order, except that a teacher named in the same command trains before
    the models distilled from it, so they learn from the new teacher rather than the old one."""
    names = {config.model for config in configs}
    return sorted(configs, key=lambda config: bool(config.distill) and config.teacher in names)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.list:

        def listing() -> int:
            for name, spec in models.REGISTRY.items():
                print(f"{name:18s} {spec.input.height}x{spec.input.width}x{spec.input.channels}  {spec.description}")
            return 0

        return run_reporting_errors(listing, "nothing was written")

    def work() -> int:
        names = args.models or [models.DEFAULT_MODEL]
        if args.name and len(names) > 1:
            raise ConfigError(f"--name names one run folder; train {', '.join(names)} one at a time")
        configs = [config_from_args(TrainConfig, args, model=name).resolved() for name in names]
        from .tfenv import ONEDNN_MIN_SIDE, quiet_tensorflow

        # One process, one kernel choice: oneDNN only when every run trains at camera sizes.
        quiet_tensorflow(onednn=all(min(_input_side(c)) >= ONEDNN_MIN_SIDE for c in configs))
        from . import trainer

        for config in training_order(configs):
            trainer.run(config)
        return 0

    return run_reporting_errors(work, "the last completed epoch is kept; run the same command to resume")


def _input_side(config: "TrainConfig") -> tuple[int, int]:
    """The (height, width) a run trains at: ``--input-size`` where given, else its registry entry's."""
    if config.input_size:
        return config.input_size, config.input_size
    return config.spec.input.height, config.spec.input.width
