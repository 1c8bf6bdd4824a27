"""`python -m train MODEL [MODEL ...] [options]`: train registry models into runs/<MODEL>/."""

from __future__ import annotations

from edge_runtime.cliutil import ArgumentParser, quiet_tensorflow, run_reporting_errors, setup_logging

from . import augment, models
from .config import OPTIMIZERS, SCHEDULES, STRATEGIES, TrainConfig


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m train",
        description="Train models from the registry. Each run writes runs/<MODEL>/ (model.keras, labels.txt, "
                    "config.json, metrics.json, history.csv, plots/). A killed run resumes when started again.",
        epilog="models: " + "; ".join(f"{name}: {spec.description}" for name, spec in models.REGISTRY.items()),
    )
    parser.add_argument("models", nargs="*", metavar="MODEL", help=f"registry name(s) (default: {models.DEFAULT_MODEL})")
    parser.add_argument("--list", action="store_true", help="list the registry and exit")
    group = parser.add_argument_group("recipe (default: the model's registry entry)")
    group.add_argument("--epochs", type=int)
    group.add_argument("--batch-size", type=int, help="per replica; the global batch is this times the replicas")
    group.add_argument("--learning-rate", type=float, help="for one replica; scaled linearly with replicas")
    group.add_argument("--schedule", choices=SCHEDULES)
    group.add_argument("--warmup-epochs", type=float)
    group.add_argument("--optimizer", choices=OPTIMIZERS)
    group.add_argument("--augment", choices=augment.AUGMENTATIONS)
    group.add_argument("--max-shift", type=int, help="shift_flip augmentation: largest shift in pixels")
    group.add_argument("--low-res-epochs", type=int,
                       help="camera models: train the first N epochs at half resolution (4x cheaper), then full size")
    group.add_argument("--scene-reuse", type=int,
                       help="camera scenes: epochs each rendered scene set serves, reshuffled each time")
    group.add_argument("--label-smoothing", type=float)
    group.add_argument("--teacher", help="camera scenes: a Fashion-MNIST model name, run folder or .keras file that "
                                         "reads the clean garment behind each scene (camera_cnn: edge_cnn)")
    group.add_argument("--distill", type=float, help="weight of the teacher's probabilities in the targets, 0..0.5; "
                                                     "0 trains on labels alone")
    group.add_argument("--patience", type=int, help="early stopping patience in epochs (validation loss)")
    group.add_argument("--val-fraction", type=float, help="stratified validation share of the training split")
    group.add_argument("--seed", type=int, default=0)
    data = parser.add_argument_group("data and output")
    data.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files (default: search; see README)")
    data.add_argument("--folder", help="train a camera model on a folder dataset ROOT/<class>/*.jpg instead")
    data.add_argument("--output-dir", help="where run folders go (default: runs/ in the checkout, or $EDGE_RUNS_DIR)")
    data.add_argument("--scenes-per-epoch", type=int, help="camera scenes rendered per epoch (default: one per garment)")
    data.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    data.add_argument("--fresh", action="store_true", help="discard an unfinished run's checkpoint and start over")
    scale = parser.add_argument_group("scale")
    scale.add_argument("--strategy", choices=STRATEGIES, default="default",
                       help="tf.distribute strategy; multiworker reads the workers from TF_CONFIG")
    scale.add_argument("--width", type=float, default=1.0, help="filter multiplier (quick tests use < 1)")
    scale.add_argument("--input-size", type=int, help="square input size override (quick tests)")
    scale.add_argument("--train-limit", type=int, help="use only the first N training images (quick tests)")
    scale.add_argument("--test-limit", type=int, help="evaluate on the first N test images only (quick tests)")
    return parser


def training_order(configs: list[TrainConfig]) -> list[TrainConfig]:
    """The runs in command order, except that a teacher named in the same command trains before
    the models distilled from it, so they learn from the new teacher rather than the old one."""
    names = {config.model for config in configs}
    return sorted(configs, key=lambda config: bool(config.distill) and config.teacher in names)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    if args.list:
        for name, spec in models.REGISTRY.items():
            print(f"{name:18s} {spec.input.height}x{spec.input.width}x{spec.input.channels}  {spec.description}")
        return 0
    names = args.models or [models.DEFAULT_MODEL]

    def work() -> int:
        configs = [TrainConfig(
            model=name, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
            schedule=args.schedule, warmup_epochs=args.warmup_epochs, optimizer=args.optimizer, augment=args.augment,
            max_shift=args.max_shift, low_res_epochs=args.low_res_epochs, scene_reuse=args.scene_reuse,
            label_smoothing=args.label_smoothing, teacher=args.teacher, distill=args.distill, patience=args.patience,
            val_fraction=args.val_fraction,
            seed=args.seed, data_dir=args.data_dir, folder=args.folder, output_dir=args.output_dir,
            strategy=args.strategy, width=args.width, input_size=args.input_size, train_limit=args.train_limit,
            test_limit=args.test_limit, scenes_per_epoch=args.scenes_per_epoch, plots=not args.no_plots,
            fresh=args.fresh,
        ).resolved() for name in names]
        quiet_tensorflow()
        from . import trainer

        for config in training_order(configs):
            trainer.run(config)
        return 0

    return run_reporting_errors(work, "the last completed epoch is kept; run the same command to resume")
