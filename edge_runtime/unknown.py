""" "None of these": the out-of-class score every camera and taught model carries, in numpy.

The score is ``1 - max over prototypes of cosine(features, prototype)`` (0: identical to a
prototype, 2: opposite), where the prototypes are unit feature vectors of each class's training
images, clustered by spherical k-means when there are many. A model file computes it in its graph
as a second output (``output.unknown`` in the contract, score ``prototype_cosine``); training
(``train/unknown.py``) and ``edge-classify teach`` build the prototypes and calibrate the threshold
here, so both mean the same thing by it.
"""

from __future__ import annotations

import numpy as np

SCORE = "prototype_cosine"  # the contract's name for this score
SCORE_RANGE = (0.0, 2.0)  # 1 - cosine: identical to a prototype .. opposite
SCORES = {SCORE: SCORE_RANGE}  # every out-of-class score a file may carry, and its range
KEEP = 0.95  # the share of held-out in-class images a threshold is calibrated to accept
PROTOTYPES_PER_CLASS = 64  # at most this many prototypes a class (spherical k-means beyond)


def is_unknown(score: float | np.ndarray, threshold: float) -> bool | np.ndarray:
    """Whether a score (or an array of them) means none of the classes: above the threshold."""
    return score > threshold


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def spherical_kmeans(features: np.ndarray, count: int, *, seed: int = 0, iterations: int = 30) -> np.ndarray:
    """``count`` unit centres of ``features`` by cosine similarity (fewer when there are fewer rows)."""
    x = unit(features)
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), min(count, len(x)), replace=False)].copy()
    for _ in range(iterations):
        assigned = np.argmax(x @ centres.T, axis=1)
        for j in range(len(centres)):
            members = x[assigned == j]
            if len(members):
                centres[j] = members.mean(axis=0)
        centres = unit(centres)
    return centres


def class_prototypes(
    features: np.ndarray, labels: np.ndarray, classes: int, groups: np.ndarray, *, per_class: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each class's features as at most ``per_class`` unit prototypes (all of them when there are no
    more), stacked class by class; returns the prototypes, the class of each row and its group (the
    example it came from; a k-means centre is a group of its own)."""
    parts, owners, origins = [], [], []
    next_group = int(groups.max()) + 1 if len(groups) else 0
    for k in range(classes):
        members = labels == k
        if not np.any(members):
            continue
        if members.sum() <= per_class:
            rows, origin = unit(features[members]), groups[members]
        else:
            rows = spherical_kmeans(features[members], per_class, seed=seed + k)
            origin = np.arange(next_group, next_group + len(rows))
            next_group += len(rows)
        parts.append(rows)
        owners.append(np.full(len(rows), k, dtype=np.int64))
        origins.append(np.asarray(origin, np.int64))
    return np.concatenate(parts).astype(np.float32), np.concatenate(owners), np.concatenate(origins)


def scores(features: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """The out-of-class score of each feature row (what the graph computes)."""
    return 1.0 - np.max(unit(features) @ protos.T, axis=1)


def calibrate(in_class_scores: np.ndarray, keep: float = KEEP) -> float:
    """The threshold that accepts ``keep`` of ``in_class_scores`` (a score above it is unknown)."""
    return float(np.quantile(in_class_scores, keep))
