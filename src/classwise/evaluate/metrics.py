"""Class-wise metrics derived from per-sample outcomes: accuracy per class with Wilson 95%
intervals, spread across classes (worst, best, gap, std, CV), confusion matrices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


def class_counts(flags: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(successes per class, samples per class) for boolean ``flags``."""
    n = np.bincount(labels, minlength=num_classes)
    k = np.bincount(labels, weights=flags.astype(np.float64), minlength=num_classes).round().astype(np.int64)
    return k, n


def wilson_interval(k: np.ndarray, n: np.ndarray, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions k/n (NaN where n = 0). Unlike the normal
    approximation it stays inside [0,1] and is honest at accuracies near 0 or 1."""
    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


@dataclass(frozen=True)
class ClassAccuracy:
    """Accuracy of each class with its 95% interval."""

    correct: np.ndarray  # (K,) int
    n: np.ndarray  # (K,) int
    low: np.ndarray  # (K,) float
    high: np.ndarray  # (K,) float

    @property
    def accuracy(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.correct / self.n

    @classmethod
    def from_flags(cls, flags: np.ndarray, labels: np.ndarray, num_classes: int) -> ClassAccuracy:
        k, n = class_counts(flags, labels, num_classes)
        low, high = wilson_interval(k, n)
        return cls(k, n, low, high)


@dataclass(frozen=True)
class Spread:
    """How unequal per-class accuracies are (over classes that have samples)."""

    mean: float  # mean of per-class accuracies
    overall: float  # fraction correct over all samples
    worst: float
    worst_class: str
    best: float
    best_class: str
    gap: float  # best − worst
    std: float  # population std across classes
    cv: float  # std / mean
    worst_classes: tuple[str, ...] = ()  # every class tied at the worst value (worst_class is the first)

    @classmethod
    def of(cls, acc: ClassAccuracy, class_names: tuple[str, ...]) -> Spread:
        present = acc.n > 0
        values = acc.accuracy[present]
        names = [c for c, p in zip(class_names, present, strict=True) if p]
        mean = float(values.mean())
        std = float(values.std())
        lo, hi = int(values.argmin()), int(values.argmax())
        return cls(
            mean=mean,
            overall=float(acc.correct.sum() / acc.n.sum()),
            worst=float(values[lo]),
            worst_class=names[lo],
            best=float(values[hi]),
            best_class=names[hi],
            gap=float(values[hi] - values[lo]),
            std=std,
            cv=std / mean if mean > 0 else float("nan"),
            worst_classes=tuple(n for n, v in zip(names, values, strict=True) if abs(v - values[lo]) < 1e-12),
        )


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def row_shares(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (where to the images of each class go), 0 for empty rows."""
    totals = matrix.sum(1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=np.float64), where=totals > 0)


def difference_interval(before: ClassAccuracy, after: ClassAccuracy) -> np.ndarray:
    """Per-class change ``after − before`` with Newcombe's 95% interval for the difference of two
    independent proportions, built from their Wilson intervals: (3, K) = (difference, low, high)."""
    p1, l1, u1 = before.accuracy, before.low, before.high
    p2, l2, u2 = after.accuracy, after.low, after.high
    d = p2 - p1
    return np.stack([d, d - np.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), d + np.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)])
