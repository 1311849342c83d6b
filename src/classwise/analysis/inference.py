"""Inference that fits the design behind a class-wise number (docs/statistics.md says which is
used when, with references):

- a claim pooled over runs (seeds, architectures, settings): :func:`run_interval`, a Student-t
  interval whose unit is the run, "not resolved" where the runs cannot say (fewer than two, or
  all equal);
- two models on the same images: :func:`mcnemar_exact` per class and
  :func:`paired_difference_interval` (Newcombe's method 10 for paired proportions), and
  :func:`paired_bootstrap` for a statistic that is not a proportion (the worst class, the mean);
- many settings against one baseline: :func:`holm`;
- the weakest class without the selection bias of the naive minimum: :func:`held_out_worst`,
  and how often each class is the weakest: :func:`worst_class_counts`;
- spread that a lower mean alone cannot move: :func:`spread_measures`;
- runs that never trained: :func:`training_failure` (:func:`constant_prediction` alone where the
  images are too few for the chance test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from classwise.evaluate.metrics import Z95, ClassAccuracy, wilson_interval


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% interval, the number of units behind it and how it was computed.
    ``low``/``high`` are NaN where the design cannot resolve it (``resolved`` is then False)."""

    value: float
    low: float
    high: float
    n: int
    method: str

    @property
    def resolved(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low)

    def format(self, scale: float = 100.0, digits: int = 1, signed: bool = False) -> str:
        """``+3.2 [+1.0, +5.4]``, or ``+0.0 (not resolved)`` where the interval has no width."""
        sign = "+" if signed else ""

        def shown(v: float) -> str:  # rounded first, so a value that rounds to zero is +0.0, never -0.0
            return f"{round(v * scale, digits) + 0.0:{sign}.{digits}f}"

        if not self.resolved:
            return f"{shown(self.value)} (not resolved)"
        return f"{shown(self.value)} [{shown(self.low)}, {shown(self.high)}]"


def run_interval(values: np.ndarray, level: float = 0.95) -> Estimate:
    """Mean over runs with a Student-t interval whose unit is the run. Fewer than two runs, or runs
    that all agree (to float rounding: 0.24 − 0.20 and 0.26 − 0.22 are one difference), cannot
    resolve it: the interval is NaN and the estimate says so."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "t over runs")
    mean = float(v.mean())
    if len(v) < 2 or np.allclose(v, v[0]):  # equal runs, also where float rounding tells them apart
        return Estimate(mean, float("nan"), float("nan"), len(v), "t over runs")
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return Estimate(mean, mean - half, mean + half, len(v), "t over runs")


@dataclass(frozen=True)
class McNemar:
    """Two models on the same images: ``only_a`` images right for A only, ``only_b`` for B only,
    and the exact two-sided p-value of McNemar's test (binomial on the discordant pairs)."""

    only_a: int
    only_b: int
    p_value: float


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> McNemar:
    """McNemar's exact test of whether A and B (boolean per image, the same images) differ."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need the same images: got {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(stats.binomtest(only_b, n, 0.5).pvalue)
    return McNemar(only_a, only_b, p)


def paired_difference_interval(a: np.ndarray, b: np.ndarray, z: float = Z95) -> Estimate:
    """Accuracy of B minus accuracy of A on the same images, with Newcombe's (1998) method 10 for
    paired proportions: the Wilson limits of each proportion combined with the correlation φ of
    the paired outcomes (φ = 0 gives his interval for independent proportions)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need the same images: got {a.shape} and {b.shape}")
    n = len(a)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "Newcombe paired")
    both, only_a, only_b = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    neither = n - both - only_a - only_b
    pa, pb = (both + only_a) / n, (both + only_b) / n
    (la, lb), (ua, ub) = wilson_interval(np.array([both + only_a, both + only_b]), np.array([n, n]), z)
    denominator = (both + only_a) * (neither + only_b) * (both + only_b) * (neither + only_a)
    phi = 0.0 if denominator == 0 else (both * neither - only_a * only_b) / np.sqrt(float(denominator))
    d = pb - pa
    low = d - np.sqrt(max((pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa) + (ua - pa) ** 2, 0.0))
    high = d + np.sqrt(max((ub - pb) ** 2 - 2 * phi * (ub - pb) * (pa - la) + (pa - la) ** 2, 0.0))
    return Estimate(float(d), float(low), float(high), n, "Newcombe paired")


def paired_bootstrap(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    a: np.ndarray,
    b: np.ndarray,
    labels: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
) -> Estimate:
    """``statistic(b) − statistic(a)`` over the same images, with a percentile interval from
    resampling images within each class, the same draw for both models (the pairing kept).
    ``statistic(flags, labels)``: e.g. the worst class's accuracy."""
    a, b, labels = np.asarray(a, bool), np.asarray(b, bool), np.asarray(labels)
    if not (a.shape == b.shape == labels.shape):
        raise ValueError("paired outcomes need the same images and labels")
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    value = statistic(b, labels) - statistic(a, labels)
    draws = np.empty(n_boot)
    for i in range(n_boot):
        idx = np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members])
        draws[i] = statistic(b[idx], labels[idx]) - statistic(a[idx], labels[idx])
    low, high = np.quantile(draws, [0.025, 0.975])
    return Estimate(float(value), float(low), float(high), len(a), "paired bootstrap over images")


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values, controlling the family-wise error rate over all
    the tests given; a test is rejected at level α when its adjusted p-value is ≤ α."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class HeldOutWorst:
    """The weakest class chosen on one half of each class's images and measured on the other
    (both ways, averaged), beside the naive minimum measured on the images that chose it."""

    accuracy: float  # held-out accuracy of the class chosen as weakest
    naive: float  # the minimum of the per-class accuracies on all images (biased low)
    chosen: tuple[int, int]  # the class each half chose


def held_out_worst(flags: np.ndarray, labels: np.ndarray, num_classes: int, seed: int = 0) -> HeldOutWorst:
    """Cross-fitted worst-class accuracy of one evaluation: each class's images are split at random
    into halves A and B; the weakest class on A is measured on B and the weakest on B on A. The
    naive minimum over K noisy accuracies is biased low and names a class picked on the same data."""
    flags, labels = np.asarray(flags, bool), np.asarray(labels)
    rng = np.random.default_rng(seed)
    half = np.zeros(len(labels), dtype=bool)
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        half[rng.permutation(idx)[: len(idx) // 2]] = True
    acc_a = ClassAccuracy.from_flags(flags[half], labels[half], num_classes).accuracy
    acc_b = ClassAccuracy.from_flags(flags[~half], labels[~half], num_classes).accuracy
    pick_a, pick_b = int(np.nanargmin(acc_a)), int(np.nanargmin(acc_b))
    value = (acc_b[pick_a] + acc_a[pick_b]) / 2
    naive = float(np.nanmin(ClassAccuracy.from_flags(flags, labels, num_classes).accuracy))
    return HeldOutWorst(float(value), naive, (pick_a, pick_b))


def worst_class_counts(accuracies: np.ndarray) -> np.ndarray:
    """(K,): in how many runs (rows of ``accuracies``) each class was the weakest; a tie counts
    for every class tied."""
    acc = np.atleast_2d(np.asarray(accuracies, dtype=np.float64))
    return (acc <= np.nanmin(acc, axis=1, keepdims=True) + 1e-12).sum(0)


def spread_measures(accuracies: np.ndarray) -> dict[str, float]:
    """Spread of per-class accuracy: the standard deviation (moves with the mean: the same relative
    unevenness at a lower accuracy is a smaller std of accuracy and a larger one of error), the
    coefficient of variation of per-class *error* (std/mean of 1 − accuracy: unchanged when every
    class's error scales by one factor), and the worst-to-mean ratio of accuracy."""
    a = np.asarray(accuracies, dtype=np.float64)
    a = a[np.isfinite(a)]
    error = 1 - a
    return {
        "std": float(a.std()),
        "cv_error": float(error.std() / error.mean()) if error.mean() > 0 else float("nan"),
        "worst_to_mean": float(a.min() / a.mean()) if a.mean() > 0 else float("nan"),
    }


def constant_prediction(predictions: np.ndarray, num_classes: int) -> str | None:
    """ "constant prediction: class c for N% of the images" when one class takes at least 95% of the
    predictions (a model that never trained), else None."""
    predictions = np.asarray(predictions)
    if len(predictions) == 0:
        return None
    top = np.bincount(predictions, minlength=num_classes)
    share = top.max() / len(predictions)
    return f"constant prediction: class {int(top.argmax())} for {share:.0%} of the images" if share >= 0.95 else None


def training_failure(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> str | None:
    """Why a model cannot be read as a result, or None: it predicts (nearly) one class for every
    image (:func:`constant_prediction`), or its accuracy is not above chance (a one-sided binomial
    test at 1%)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if len(labels) == 0:
        return None
    constant = constant_prediction(predictions, num_classes)
    if constant:
        return constant
    correct = int((labels == predictions).sum())
    chance = 1 / num_classes
    if stats.binomtest(correct, len(labels), chance, alternative="greater").pvalue > 0.01:
        return f"chance accuracy: {correct / len(labels):.1%} (chance {chance:.1%})"
    return None
