"""Teaching, as a library: examples -> features -> a numpy head -> one model file the runtime opens.

A taught file is its extractor's graph with the head appended (:mod:`.graph_tflite`,
:mod:`.graph_onnx`), and the usual contract: labels, the input contract, an out-of-class output
with its calibrated threshold, plus ``extra.taught``: the extractor's own contract and identity,
where the extractor ends in the graph, and how many examples taught each class. The head's
prototypes inside the graph are its memory: teaching more classes into a file (``add``) or
dropping one (``remove``) retrains from them, so the old classes stay without their photos.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..contract import METADATA_KEY, ModelMetadata, OutputSpec, UnknownSpec
from ..errors import EdgeError, MetadataError, ModelFileError
from ..features import FeatureExtractor
from ..metadata import embed_tflite_entries, load_bytes, read_metadata
from ..unknown import KEEP, SCORE
from . import graph_onnx, graph_tflite
from .head import HEADS, Head, fit

Progress = Callable[[int, int], None]
MAX_CLASSES = 1000  # ImageNet's count; a head this wide is already larger than its extractor
RECOMMENDED_SHOTS = 5  # below this a class is learned from too little (docs/runtime.md, the teach benchmark)


def check_class_names(names: Sequence[str], where: str) -> None:
    """Refuse class names a taught file cannot carry: empty, control characters, a path, a repeat, or
    more than ``MAX_CLASSES``. (Labels are shown on pages and terminals and name example folders.)

    Raises:
        EdgeError: naming the first bad name and ``where`` it came from.
    """
    if len(names) > MAX_CLASSES:
        raise EdgeError(f"{where}: {len(names)} classes; a taught file holds at most {MAX_CLASSES}")
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise EdgeError(f"{where}: a class name is empty; name every class")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
            raise EdgeError(f"{where}: class name {name!r} holds control characters; use letters, digits and spaces")
        if "/" in name or "\\" in name or name in (".", ".."):
            raise EdgeError(f"{where}: class name {name!r} is a path; name the class without / or \\")
        if len(name) > 100:
            raise EdgeError(f"{where}: class name {name[:20]!r}... is over 100 characters; use a shorter name")
        if name in seen:
            raise EdgeError(f"{where}: class {name!r} appears twice; class names must differ")
        seen.add(name)


@dataclass
class Examples:
    """Feature rows of the examples of some classes; augmented views share their example's group."""

    features: np.ndarray  # (N, D)
    labels: np.ndarray  # (N,) index into names
    groups: np.ndarray  # (N,)
    names: list[str]
    shots: dict[str, int] = field(default_factory=dict)  # examples (not views) per class

    @classmethod
    def empty(cls, dim: int) -> "Examples":
        return cls(np.zeros((0, dim), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64), [])

    def add_class(self, name: str, rows: list[np.ndarray], groups_per_row: list[int], shots: int) -> None:
        index = len(self.names)
        self.names.append(name)
        self.shots[name] = shots
        offset = int(self.groups.max()) + 1 if len(self.groups) else 0
        self.features = np.concatenate([self.features, np.stack(rows).astype(np.float32)])
        self.labels = np.concatenate([self.labels, np.full(len(rows), index, np.int64)])
        self.groups = np.concatenate([self.groups, offset + np.asarray(groups_per_row, np.int64)])

    def without(self, names: Sequence[str]) -> "Examples":
        kept_names = [n for n in self.names if n not in names]
        mapping = {self.names.index(n): i for i, n in enumerate(kept_names)}
        mask = np.isin(self.labels, list(mapping))
        labels = np.array([mapping[int(k)] for k in self.labels[mask]], np.int64)
        return Examples(
            self.features[mask], labels, self.groups[mask], kept_names, {n: self.shots[n] for n in kept_names}
        )

    def merged(self, other: "Examples") -> "Examples":
        out = Examples(self.features, self.labels, self.groups, list(self.names), dict(self.shots))
        for index, name in enumerate(other.names):
            rows = other.labels == index
            out.add_class(name, list(other.features[rows]), list(other.groups[rows]), other.shots[name])
        return out


@dataclass
class Base:
    """What a taught file is built on: the extractor (bytes and loaded), and the classes already taught."""

    extractor: FeatureExtractor
    graph: bytes  # the extractor's file, metadata included
    taught: Examples  # the classes of an --add file (their prototypes), else empty
    source: str  # the file it came from


def open_extractor(
    path: str | Path,
    backend: str = "auto",
    threads: int | None = None,
    accelerator: str = "auto",
    device: str | None = None,
    delegate: str | None = None,
) -> Base:
    """An extractor file as the base of a new taught file (the engine options as :meth:`Classifier.open`'s)."""
    extractor = FeatureExtractor.open(path, backend, threads, accelerator=accelerator, device=device, delegate=delegate)
    return Base(extractor, extractor.data, Examples.empty(extractor.dim), str(path))


def open_taught(
    path: str | Path,
    backend: str = "auto",
    threads: int | None = None,
    accelerator: str = "auto",
    device: str | None = None,
    delegate: str | None = None,
) -> Base:
    """A taught file's extractor (restored from its graph) and its classes (from its prototypes).

    Raises:
        ModelFileError: the file is not a taught model.
    """
    path = Path(path)
    kind, data = load_bytes(path)
    metadata = read_metadata(kind, data, path)
    info = metadata.extra.get("taught")
    if not isinstance(info, dict) or not isinstance(info.get("extractor"), dict) or "base" not in info:
        raise ModelFileError(
            f"{path}: is not a taught model (no extra.taught in its contract); --add takes a file "
            "written by edge-classify teach"
        )
    try:
        extractor_metadata = ModelMetadata.from_dict(info["extractor"])
        if kind == "tflite":
            graph = graph_tflite.strip_head(data, info["base"])
            prototypes = graph_tflite.read_prototypes(data, info["base"])
            graph = embed_tflite_entries(graph, {METADATA_KEY: extractor_metadata.to_json().encode()})
        else:
            graph = graph_onnx.strip_head(data, info["base"])
            prototypes = graph_onnx.read_prototypes(data)
            graph = graph_onnx.set_props(graph, {METADATA_KEY: extractor_metadata.to_json()})
        owners = np.asarray(info["owners"], np.int64)
        origins = np.asarray(info.get("origins", range(len(owners))), np.int64)
    except (MetadataError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: its taught contract is damaged ({exc}); teach it again from the photos"
        ) from None
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    in_range = not len(owners) or 0 <= owners.min() <= owners.max() < len(metadata.labels)
    every_class = set(owners.tolist()) == set(range(len(metadata.labels)))
    if len(owners) != len(prototypes) or len(origins) != len(owners) or not in_range or not every_class:
        raise ModelFileError(f"{path}: its prototypes do not match its classes; teach it again from the photos")
    try:
        check_class_names(metadata.labels, str(path))
    except EdgeError as exc:
        raise ModelFileError(f"{exc}; teach it again from the photos") from None
    extractor = FeatureExtractor.from_bytes(
        kind, graph, path, backend, threads, accelerator=accelerator, device=device, delegate=delegate
    )
    shots: dict = info["shots"] if isinstance(info.get("shots"), dict) else {}
    taught = Examples(
        prototypes, owners, origins, list(metadata.labels), {name: int(shots.get(name, 0)) for name in metadata.labels}
    )
    return Base(extractor, graph, taught, str(path))


def teach(
    base: Base,
    new: Examples,
    *,
    remove: Sequence[str] = (),
    replace_classes: bool = False,
    method: str = "logistic",
    name: str = "taught",
) -> tuple[bytes, ModelMetadata, Head]:
    """The bytes of a taught model file: ``base``'s classes minus ``remove``, plus ``new``'s.

    Raises:
        EdgeError: a class to remove that is not there, a new class that exists (without
            ``replace_classes``), or fewer than two classes in the end.
    """
    if method not in HEADS:
        raise EdgeError(f"unknown head {method!r}; choose from {', '.join(HEADS)}")
    missing = [n for n in remove if n not in base.taught.names]
    if missing:
        raise EdgeError(
            f"--remove {missing[0]}: no such class in {base.source} (it has {', '.join(base.taught.names) or 'none'})"
        )
    clashes = [n for n in new.names if n in base.taught.names and n not in remove]
    if clashes and not replace_classes:
        raise EdgeError(
            f"class {clashes[0]!r} is already taught in {base.source}; pass --replace to teach it anew, or --remove it"
        )
    check_class_names(new.names, "new classes")
    examples = base.taught.without(list(remove) + clashes).merged(new)
    check_class_names(examples.names, "the taught classes")
    if len(examples.names) < 2:
        raise EdgeError(
            f"a classifier needs at least two classes; this would have {len(examples.names)} "
            f"({', '.join(examples.names) or 'none'}): teach more, or --add them to a taught file"
        )
    head = fit(examples.features, examples.labels, len(examples.names), method=method, groups=examples.groups)
    extractor = base.extractor
    kind = extractor.kind
    graph_base: dict[str, int | str]
    if kind == "tflite":
        data, counts = graph_tflite.append_head(base.graph, head)
        graph_base = dict(counts)
    else:
        data, graph_base = graph_onnx.append_head(base.graph, head)
    metadata = ModelMetadata(
        model=name,
        format=extractor.metadata.format,
        labels=tuple(examples.names),
        input=extractor.metadata.input,
        output=OutputSpec(
            kind="probabilities",
            unknown=UnknownSpec(threshold=min(max(head.threshold, 0.0), 2.0), score=SCORE, keep=KEEP),
        ),
        accuracy={
            "examples_count": float(sum(examples.shots.values())),
            "in_class_accepted": round(head.in_class_accepted, 4),
        },
        extra={
            "created_by": "edge-classify teach",
            "description": f"{len(examples.names)} classes taught on {extractor.metadata.model} ({method} head)",
            "taught": {
                "extractor": _extractor_contract(extractor),
                "extractor_id": extractor.extractor_id,
                "head": method,
                "base": graph_base,
                "owners": [int(k) for k in head.owners],
                "origins": [int(g) for g in head.origins],
                "shots": examples.shots,
                "in_class_accepted": round(head.in_class_accepted, 4),
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        },
    )
    text = metadata.to_json()
    data = (
        embed_tflite_entries(data, {METADATA_KEY: text.encode()})
        if kind == "tflite"
        else graph_onnx.set_props(data, {METADATA_KEY: text})
    )
    return data, metadata, head


def _extractor_contract(extractor: FeatureExtractor) -> dict:
    """The extractor's own contract, as it was in its file (restored when the head is taken off)."""
    return extractor.metadata.to_dict()
