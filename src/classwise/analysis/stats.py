"""Gap statistics with uncertainty: bootstrap intervals over test samples, spread across classes,
a paired test of whether adversarial training widens the gap across seeds, and the agreement
of class orderings (Spearman) across runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from classwise.analysis.inference import Estimate, run_interval
from classwise.evaluate.metrics import Z95


def bootstrap_class_accuracy(
    flags: np.ndarray, labels: np.ndarray, num_classes: int, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class accuracy with percentile bootstrap intervals, resampling samples within each class.

    Returns:
        (accuracy, low, high), each (K,).
    """
    rng = np.random.default_rng(seed)
    acc, low, high = np.full(num_classes, np.nan), np.full(num_classes, np.nan), np.full(num_classes, np.nan)
    tail = (1 - level) / 2
    for k in range(num_classes):
        member = flags[labels == k].astype(np.float64)
        if not len(member):
            continue
        draws = rng.integers(0, len(member), size=(n_boot, len(member)))
        boot = member[draws].mean(1)
        acc[k], low[k], high[k] = member.mean(), np.quantile(boot, tail), np.quantile(boot, 1 - tail)
    return acc, low, high


def spread_of(acc: np.ndarray) -> dict[str, float]:
    """Mean, worst, max−min and std of per-class accuracies (NaN classes ignored)."""
    a = acc[~np.isnan(acc)]
    return {"mean": float(a.mean()), "worst": float(a.min()), "gap": float(a.max() - a.min()), "std": float(a.std())}


@dataclass(frozen=True)
class GapComparison:
    """Across seeds: does condition B (e.g. adversarial training) widen the class-wise gap of A?"""

    statistic: str
    a: np.ndarray  # per seed
    b: np.ndarray
    mean_difference: float  # mean of b − a
    t: float
    p_value: float  # two-sided paired t-test; NaN with fewer than two seeds
    low: float = float("nan")  # 95% t-interval of the mean difference (NaN where the seeds cannot resolve it)
    high: float = float("nan")

    @property
    def difference(self) -> Estimate:
        """The mean difference b − a with its interval over the seeds ("not resolved" where it has none)."""
        return Estimate(self.mean_difference, self.low, self.high, len(self.a), "t over runs")


def compare_gaps(acc_a: np.ndarray, acc_b: np.ndarray, statistic: str = "std") -> GapComparison:
    """Paired comparison of a spread statistic (``std``, ``gap``, ``worst``, ``mean``) between two
    conditions trained with the same seeds. ``acc_*``: (seeds, K) per-class accuracies."""
    a = np.array([spread_of(row)[statistic] for row in np.atleast_2d(acc_a)])
    b = np.array([spread_of(row)[statistic] for row in np.atleast_2d(acc_b)])
    if len(a) != len(b):
        raise ValueError("compare the same seeds: got different numbers of runs")
    diff = b - a
    low, high = mean_interval(diff)
    if len(diff) < 2 or np.allclose(diff, diff[0]):
        t, p = float("nan"), float("nan")
    else:
        t, p = (float(v) for v in stats.ttest_rel(b, a))
    return GapComparison(statistic, a, b, float(diff.mean()), t, p, low, high)


def mean_interval(values: np.ndarray) -> tuple[float, float]:
    """95% Student-t interval of the mean of ``values``, the run being the unit; NaN where the runs
    cannot resolve it (fewer than two, or all equal: no zero-width interval)."""
    est = run_interval(values)
    return est.low, est.high


def class_rank_agreement(accuracies: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of per-class accuracy between every pair of runs: (R, R). A run
    whose classes are all tied (e.g. 0% robust everywhere) has no ordering: its row is NaN."""
    acc = np.atleast_2d(np.asarray(accuracies, dtype=np.float64))
    ranks = np.array([stats.rankdata(row) for row in acc])
    centred = ranks - ranks.mean(1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (centred @ centred.T) / np.outer(norms, norms)
    tied = norms == 0
    rho[tied, :] = np.nan
    rho[:, tied] = np.nan
    np.fill_diagonal(rho, 1.0)
    return rho


def weakest_classes(accuracies: np.ndarray, class_names: tuple[str, ...], top: int = 3) -> list[tuple[str, float]]:
    """Classes with the lowest mean accuracy over runs, with that mean."""
    mean = np.nanmean(np.atleast_2d(accuracies), axis=0)
    order = np.argsort(mean)[:top]
    return [(class_names[i], float(mean[i])) for i in order]


def confusion_similarity(confusion: np.ndarray) -> np.ndarray:
    """Symmetric similarity from a (K, K) confusion matrix: (P[i→j] + P[j→i]) / 2 with rows
    normalised to shares, 0 on the diagonal."""
    totals = confusion.sum(1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=np.float64), where=totals > 0)
    sim = (shares + shares.T) / 2
    np.fill_diagonal(sim, 0.0)
    return sim


@dataclass(frozen=True)
class Correlation:
    """Spearman's ρ between two per-class quantities with a 95% interval (Fisher z with the
    Fieller-Hartley-Pearson variance 1.06/(n − 3)); NaN where it is undefined (n < 4, ties)."""

    rho: float
    low: float
    high: float
    n: int

    def format(self) -> str:
        """``+0.62 [+0.39, +0.78]``, or ``+1.00 (not resolved)`` where the interval has no width at the
        printed precision: at ρ = ±1 Fisher's z is infinite and the interval collapses onto ρ."""
        low, high = f"{self.low:+.2f}", f"{self.high:+.2f}"
        return f"{self.rho:+.2f} (not resolved)" if low == high else f"{self.rho:+.2f} [{low}, {high}]"

    def __str__(self) -> str:
        if self.rho != self.rho:
            return f"Spearman ρ undefined (n = {self.n})"
        return f"Spearman ρ = {self.format()}, n = {self.n}"


def spearman(x: np.ndarray, y: np.ndarray) -> Correlation:
    """Rank correlation of ``x`` and ``y`` (finite pairs only) with its 95% interval."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(float("nan"), float("nan"), float("nan"), n)
    rho = float(stats.spearmanr(x, y).statistic)
    return Correlation(rho, *fisher_interval(rho, n), n)


def fisher_interval(rho: float, n: int) -> tuple[float, float]:
    """95% interval of a Spearman ρ over ``n`` pairs: Fisher z with the Fieller-Hartley-Pearson
    variance 1.06/(n − 3)."""
    z, se = np.arctanh(np.clip(rho, -0.999999, 0.999999)), np.sqrt(1.06 / (n - 3))
    return float(np.tanh(z - Z95 * se)), float(np.tanh(z + Z95 * se))
