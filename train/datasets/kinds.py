"""The kinds of dataset a model can be trained on, and what each one allows: one table instead of
string comparisons spread over the tooling (as ``edge_runtime.formats`` is for file formats)."""

from __future__ import annotations

from dataclasses import dataclass

from edge_common.errors import DatasetError, suggest


@dataclass(frozen=True)
class DatasetKind:
    name: str
    description: str
    trained: bool  # False: published weights, ported as they are (no training data here)
    labelled_test_set: bool  # the repository can measure accuracy (else: agreement on unlabelled photos)
    distillable: bool  # a teacher can read the clean garment behind each image (--distill)
    real_photos: bool  # whole photos: camera conditions and the photo video can be built from them


KINDS: tuple[DatasetKind, ...] = (
    DatasetKind(
        "fashion_mnist",
        "Fashion-MNIST 28x28 garments (Debian's dataset-fashion-mnist)",
        trained=True,
        labelled_test_set=True,
        distillable=False,
        real_photos=False,
    ),
    DatasetKind(
        "camera_scenes",
        "Fashion-MNIST garments rendered into camera scenes",
        trained=True,
        labelled_test_set=True,
        distillable=True,
        real_photos=False,
    ),
    DatasetKind(
        "folder",
        "a folder of photos, ROOT/<class>/*.jpg (or ROOT/train/ and ROOT/test/)",
        trained=True,
        labelled_test_set=True,
        distillable=False,
        real_photos=True,
    ),
    DatasetKind(
        "imagenet",
        "ImageNet: published weights, ported, never trained here",
        trained=False,
        labelled_test_set=False,
        distillable=False,
        real_photos=False,
    ),
)
BY_NAME = {kind.name: kind for kind in KINDS}


def get(name: str) -> DatasetKind:
    """The kind called ``name``.

    Raises:
        DatasetError: no such kind (naming the closest).
    """
    try:
        return BY_NAME[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset kind {name!r}{suggest(name, BY_NAME)}; choose from {', '.join(BY_NAME)}"
        ) from None


def of_run(registry_dataset: str, folder: str | None) -> DatasetKind:
    """What a run trains on: its ``--folder`` when it has one, else its registry entry's dataset."""
    return BY_NAME["folder"] if folder else get(registry_dataset)
