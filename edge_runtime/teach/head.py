"""The taught classifier's head, trained in numpy in seconds: probabilities and "none of these".

Both heads work on unit-length features, so the graph that runs them is the same:
``probabilities = softmax(W @ unit(f) + b)`` and ``unknown = 1 - max(P @ unit(f))``.

- ``logistic``: multinomial logistic regression with an L2 penalty, full-batch gradient descent
  (Adam); the default, as it was the more accurate of the two from 10 shots a class up
  (``python -m benchmarks.teach``).
- ``means``: each class's mean direction, scaled by :data:`MEANS_SCALE` (no training at all).

The prototypes ``P`` are the examples' own unit features (k-means centres beyond
:data:`PROTOTYPES_PER_CLASS` a class). They are the head's memory too: ``--add`` and ``--remove``
retrain from them, so a taught file needs nothing beside it. The threshold is calibrated on the
examples by leaving each example (and its augmented views) out of the prototypes in turn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..unknown import KEEP, PROTOTYPES_PER_CLASS, calibrate, class_prototypes, scores, unit

HEADS = ("logistic", "means")
MEANS_SCALE = 16.0  # cosine to a class mean times this is its logit: confident at a 0.1 cosine margin
# L2 on the logistic weights (unit features: one scale for every extractor), weaker with more examples:
# 1e-3 for 50 views, 8e-6 for all 3,068 clothing photos mirrored (86.2% there against 83.0% at 1e-3;
# within 0.6 points of it from 5 to 20 shots a class).
PENALTY = 0.05
STEPS = 300


@dataclass(frozen=True)
class Head:
    weights: np.ndarray  # (classes, features)
    bias: np.ndarray  # (classes,)
    prototypes: np.ndarray  # (P, features), unit rows
    owners: np.ndarray  # (P,) the class of each prototype
    origins: np.ndarray  # (P,) the example each prototype came from (views of one example share it)
    threshold: float  # unknown above this
    method: str
    in_class_accepted: float  # of the examples, left out in turn (about KEEP)

    def logits(self, features: np.ndarray) -> np.ndarray:
        return unit(features) @ self.weights.T + self.bias

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = self.logits(features)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def unknown_scores(self, features: np.ndarray) -> np.ndarray:
        return scores(features, self.prototypes)


def fit(
    features: np.ndarray,
    labels: np.ndarray,
    classes: int,
    *,
    method: str = "logistic",
    groups: np.ndarray | None = None,
    seed: int = 0,
    keep: float = KEEP,
) -> Head:
    """A head for ``features`` (rows; augmented views share their example's ``groups`` id).

    Raises:
        ValueError: an unknown method, or fewer than two classes.
    """
    if method not in HEADS:
        raise ValueError(f"unknown head {method!r}; choose from {', '.join(HEADS)}")
    if classes < 2:
        raise ValueError("a classifier needs at least two classes")
    x = unit(features)
    groups = np.arange(len(x)) if groups is None else np.asarray(groups)
    weights, bias = _logistic(x, labels, classes) if method == "logistic" else _means(x, labels, classes)
    protos, owners, origins = class_prototypes(x, labels, classes, groups, per_class=PROTOTYPES_PER_CLASS, seed=seed)
    left_out = leave_one_out_scores(x, groups)
    threshold = calibrate(left_out, keep)
    return Head(weights, bias, protos, owners, origins, threshold, method, float(np.mean(left_out <= threshold)))


def leave_one_out_scores(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row's out-of-class score against every row of the other examples (its own views left out):
    how far a new photo of a taught class is from what was taught."""
    similarity = x @ x.T
    similarity[groups[:, None] == groups[None, :]] = -np.inf
    best = similarity.max(axis=1)
    return 1.0 - np.where(np.isfinite(best), best, -1.0)


def _means(x: np.ndarray, labels: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    means = np.stack([x[labels == k].mean(axis=0) for k in range(classes)])
    return (MEANS_SCALE * unit(means)).astype(np.float32), np.zeros(classes, np.float32)


def _logistic(
    x: np.ndarray, labels: np.ndarray, classes: int, *, steps: int = STEPS, rate: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression by full-batch Adam, started from the class means (so a few steps suffice);
    classes weigh equally, however many examples each has."""
    w, b = _means(x, labels, classes)
    target = np.eye(classes, dtype=np.float32)[labels]
    counts = np.bincount(labels, minlength=classes).astype(np.float32)
    sample_weight = (len(labels) / (classes * counts[labels]))[:, None].astype(np.float32)
    params = [w.astype(np.float64), b.astype(np.float64)]
    penalty = min(1e-3, PENALTY / len(x))
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    for step in range(1, steps + 1):
        logits = x @ params[0].T + params[1]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        error = (p - target) * sample_weight / len(x)
        grads = [error.T @ x + penalty * params[0], error.sum(axis=0)]
        for param, grad, (m, v) in zip(params, grads, moments):
            m *= 0.9
            m += 0.1 * grad
            v *= 0.999
            v += 0.001 * grad * grad
            param -= rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return params[0].astype(np.float32), params[1].astype(np.float32)
