"""``python -m train.refit_unknown MODEL|RUN_FOLDER``: fit a finished backbone run's out-of-class head again.

The classifier's weights are kept exactly (the test accuracy cannot change); the head is rebuilt
with the current recipe of :mod:`train.unknown` (its features, prototypes and calibration) from the
run's own training and validation data, as training's last step does. ``model.keras`` and
``metrics.json`` (``unknown``, ``camera_conditions``, ``weights_sha256``) are rewritten atomically;
convert the run again afterwards. For when the head's recipe changes after a long fine-tuning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.cli import ArgumentParser, run_reporting_errors, setup_logging


def refit(target: str, runs_dir: str | None = None) -> dict[str, Any]:
    import keras

    from edge_common.errors import EdgeError

    from . import data as data_mod
    from . import evaluation, models, runfolder, unknown
    from .config import TrainConfig
    from .runfolder import RunFolder

    given = Path(target).expanduser()
    run = (
        RunFolder.open(given)
        if target not in models.REGISTRY and given.is_dir()
        else RunFolder.for_model(target, runs_dir)
    )
    # The run's own resolved config (config.json): resolving it again changes nothing, and types it.
    config = TrainConfig(**{k: v for k, v in run.config.items() if k in TrainConfig.__dataclass_fields__}).resolved()
    if not config.backbone:
        raise EdgeError(f"{run.path}: was not trained with --backbone; only backbone runs have an out-of-class head")
    model = keras.saving.load_model(run.model_file, safe_mode=True, compile=False)
    classifier = (
        keras.Model(model.input, model.output[0], name=model.name) if unknown.has_unknown_output(model) else model
    )
    data = data_mod.load(config, run.input_spec, batch_size=config.batch_size)
    head = unknown.fit_head(classifier, data, run.input_spec, config.seed, data.steps_per_epoch)
    final = unknown.with_unknown_output(classifier, head.prototypes)
    metrics = dict(runfolder.read_metrics(run.path))
    x_test = data.test[0]
    probabilities, scores = evaluation.predict_all(final, x_test)
    if not np.array_equal(np.argmax(probabilities, 1), np.argmax(evaluation.predict_all(model, x_test)[0], 1)):
        raise EdgeError("the classifier's answers changed while its head was refitted (a bug); nothing was written")
    metrics.update(evaluation.camera_metrics(final, data, run.input_spec, head, scores))
    metrics.update(parameters=int(final.count_params()), weights_sha256=runfolder.weights_digest(final))
    data.close()
    runfolder.write_run(run.path, final, run.labels, run.config, metrics)
    return metrics


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m train.refit_unknown",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="a registry name or a run folder trained with --backbone")
    parser.add_argument("--runs-dir", help="folder holding run folders (default: runs/ in the checkout)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    from .tfenv import quiet_tensorflow

    quiet_tensorflow()

    def work() -> int:
        metrics = refit(args.model, args.runs_dir)
        head = metrics["unknown"]
        print(
            f"{metrics['model']}: out-of-class head refitted: {head['prototypes']} prototypes, threshold "
            f"{head['threshold']:.4f}, {head['test_accepted']:.1%} of the held-out photos accepted; convert it "
            "again (python -m convert --force)"
        )
        return 0

    return run_reporting_errors(work, "the run folder is unchanged")


if __name__ == "__main__":
    sys.exit(main())
