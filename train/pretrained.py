"""Registry models that are not trained here: an ImageNet backbone shipped as it was published.

``python -m train imagenet_lite0`` writes the same run folder a training run does (model.keras,
labels.txt, config.json, metrics.json), so convert, the benchmark and the runtime treat it like any
other model. "Training" is porting the weights from the installed weights package.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from edge_common.errors import EdgeError
from edge_common.files import sha256_file

from . import architectures, backbones, runfolder
from .config import ResolvedTrainConfig

log = logging.getLogger("edge_classify.train")
IMAGENET_CLASSES = Path(backbones.__file__).parent / "imagenet_classes.txt"


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names in output order (the two repeated names made distinct)."""
    return tuple(IMAGENET_CLASSES.read_text().splitlines())


def write_run(config: ResolvedTrainConfig) -> Path:
    """Port the backbone's ImageNet classifier into ``runs/<MODEL>/`` and return the folder."""
    from .backbones.efficientnet_lite import build, load_imagenet_weights

    spec = config.spec
    if not config.backbone:
        raise EdgeError(f"{config.model} ports a published backbone; its registry entry names none")
    backbone = backbones.get(config.backbone)
    run_dir = runfolder.run_dir_for(config.run_name(), config.output_dir)
    started = time.perf_counter()
    model = build(backbone, spec.input.height, width=spec.input.width, classes=1000, name=spec.name)
    weights = backbone.weights_path()
    load_imagenet_weights(model, backbone, weights)
    labels = imagenet_labels()
    metrics: dict[str, Any] = {
        "model": spec.name,
        "dataset": spec.dataset,
        "input": spec.input.to_dict(),
        "class_names": list(labels),
        "parameters": int(model.count_params()),
        "macs_per_image": architectures.count_macs(model),
        "weights_sha256": runfolder.weights_digest(model),
        "source": {"package": backbone.package, "file": weights.name, "sha256": sha256_file(weights)},
        "test_set": "none in the repository (ImageNet photos are not redistributable); see README",
    }
    runfolder.write_run(run_dir, model, labels, config.to_dict(), metrics)
    print(
        f"{spec.name}: ported {backbone.package} ({metrics['parameters']:,} params, "
        f"{metrics['macs_per_image']:,} MACs) in {time.perf_counter() - started:.1f} s; wrote {run_dir}",
        flush=True,
    )
    return run_dir
