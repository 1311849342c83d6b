"""Statistics pinned to scipy and to worked examples from the literature, over grids of inputs:
Wilson, Newcombe (independent and paired), the run-level t interval, Fisher's z interval of
Spearman's ρ, McNemar's exact test, Holm's adjustment, the held-out worst class and the spread
measures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from classwise.analysis import fisher_interval, mean_interval, spearman
from classwise.analysis.inference import (
    constant_prediction,
    held_out_worst,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    paired_difference_interval,
    run_interval,
    spread_measures,
    training_failure,
    worst_class_counts,
)
from classwise.evaluate.metrics import ClassAccuracy, difference_interval, wilson_interval


@pytest.mark.parametrize("n", [1, 7, 50, 1000])
def test_wilson_equals_scipy_for_every_count(n: int) -> None:
    k = np.arange(n + 1)
    low, high = wilson_interval(k, np.full(n + 1, n))
    for i in range(n + 1):
        ref = stats.binomtest(int(k[i]), n).proportion_ci(0.95, method="wilson")
        assert (low[i], high[i]) == pytest.approx((ref.low, ref.high), abs=1e-9)


def _acc(k: int, n: int) -> ClassAccuracy:
    low, high = wilson_interval(np.array([k]), np.array([n]))
    return ClassAccuracy(np.array([k]), np.array([n]), low, high)


def test_newcombe_independent_matches_his_worked_example() -> None:
    """Newcombe (1998), Statist. Med. 17:873, example (a): 56/70 − 48/80 = 0.2000, method 10
    interval 0.0524 to 0.3339."""
    d, low, high = difference_interval(_acc(48, 80), _acc(56, 70))[:, 0]
    assert (d, low, high) == pytest.approx((0.2, 0.0524, 0.3339), abs=5e-5)
    d, low, high = difference_interval(_acc(56, 70), _acc(48, 80))[:, 0]  # the other way round
    assert (d, low, high) == pytest.approx((-0.2, -0.3339, -0.0524), abs=5e-5)


def test_newcombe_paired_reduces_to_the_independent_interval_without_correlation() -> None:
    """With φ = 0 (a 2×2 table whose cells factorise) method 10 for paired data is method 10 for
    independent proportions on the same counts."""
    a = np.array([True] * 40 + [False] * 40 + [True] * 10 + [False] * 10)  # A right on 50 of 100
    b = np.array(
        [True] * 32 + [False] * 8 + [True] * 32 + [False] * 8 + [True] * 8 + [False] * 2 + [True] * 8 + [False] * 2
    )
    both, only_a, only_b, neither = (a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum()
    assert both * neither == only_a * only_b  # φ = 0
    paired = paired_difference_interval(a, b)
    d, low, high = difference_interval(_acc(int(a.sum()), 100), _acc(int(b.sum()), 100))[:, 0]
    assert (paired.value, paired.low, paired.high) == pytest.approx((d, low, high), abs=1e-12)


def test_newcombe_paired_is_narrower_with_positive_correlation_and_covers() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(400) < 0.6
    b = a.copy()
    flip = rng.choice(400, 40, replace=False)
    b[flip] = ~b[flip]
    paired = paired_difference_interval(a, b)
    d, low, high = difference_interval(_acc(int(a.sum()), 400), _acc(int(b.sum()), 400))[:, 0]
    assert paired.value == pytest.approx(d)
    assert paired.high - paired.low < (high - low) / 2  # the pairing removes most of the noise
    # coverage: simulate correlated pairs with a known difference
    hits, truth = 0, 0.05
    for trial in range(400):
        r = np.random.default_rng(trial)
        base = r.random(300) < 0.5
        gained = ~base & (r.random(300) < 0.2)  # B also gets right 20% of A's errors: +0.1
        lost = base & (r.random(300) < 0.1)  # and loses 10% of A's successes: −0.05
        est = paired_difference_interval(base, (base | gained) & ~lost)
        hits += est.low <= truth <= est.high
    assert 0.92 <= hits / 400 <= 0.98


def test_run_interval_equals_scipy_and_says_when_it_cannot_resolve() -> None:
    for values in ([0.31, 0.35, 0.29], [0.1, 0.2], np.linspace(0, 1, 9)):
        est = run_interval(np.array(values))
        ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
        assert (est.low, est.high) == pytest.approx(ref, abs=1e-12)
        assert est.resolved and est.n == len(values)
        assert mean_interval(np.array(values)) == pytest.approx(ref, abs=1e-12)
    for values in ([0.08, 0.08, 0.08], [0.4]):
        est = run_interval(np.array(values))
        assert not est.resolved and math.isnan(est.low)
        assert est.format(signed=True).endswith("(not resolved)")
    assert run_interval(np.array([0.01, 0.03, 0.02])).format(signed=True) == "+2.0 [-0.5, +4.5]"
    # differences equal but for float rounding (0.24 − 0.20 and 0.26 − 0.22): no interval to print either
    same = run_interval(np.array([0.24 - 0.20, 0.26 - 0.22]))
    assert not same.resolved and same.format(signed=True) == "+4.0 (not resolved)"


def test_fisher_interval_and_spearman_equal_their_formulas_and_scipy() -> None:
    rng = np.random.default_rng(1)
    for n in (5, 10, 43):
        x = rng.normal(size=n)
        y = x + rng.normal(size=n)
        c = spearman(x, y)
        assert c.rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        z, se = math.atanh(c.rho), math.sqrt(1.06 / (n - 3))
        assert (c.low, c.high) == pytest.approx((math.tanh(z - 1.959964 * se), math.tanh(z + 1.959964 * se)), abs=1e-6)
    half = 1.959964 * math.sqrt(1.06 / 25)
    expected = (math.tanh(math.atanh(0.5) - half), math.tanh(math.atanh(0.5) + half))
    assert fisher_interval(0.5, 28) == pytest.approx(expected, abs=1e-6)
    assert math.isnan(spearman(np.array([1.0, 2, 3]), np.array([3.0, 1, 2])).rho)  # n < 4
    # ρ = 1: Fisher's interval collapses onto ρ, which is printed as not resolved, never [+1.00, +1.00]
    assert spearman(np.arange(10.0), np.arange(10.0) ** 2).format() == "+1.00 (not resolved)"
    assert spearman(np.arange(10.0), np.array([0, 2, 1, 3, 4, 5, 7, 6, 8, 9.0])).format().startswith("+0.98 [+0.")


def test_mcnemar_exact_worked_example() -> None:
    """10 images right for A only, 2 for B only: p = 2·P(X ≤ 2 | 12, ½) = 2·(1 + 12 + 66)/4096."""
    a = np.array([True] * 10 + [False] * 2 + [True] * 30 + [False] * 8)
    b = np.array([False] * 10 + [True] * 2 + [True] * 30 + [False] * 8)
    m = mcnemar_exact(a, b)
    assert (m.only_a, m.only_b) == (10, 2)
    assert m.p_value == pytest.approx(2 * 79 / 4096, abs=1e-12)
    assert mcnemar_exact(a, a).p_value == 1.0
    with pytest.raises(ValueError, match="same images"):
        mcnemar_exact(a, b[:-1])


def test_holm_worked_example() -> None:
    """p = (0.01, 0.04, 0.03, 0.005): sorted ×4, ×3, ×2, ×1 and made monotone gives
    (0.03, 0.06, 0.06, 0.02); at α = 0.05 the first and last are rejected."""
    adjusted = holm(np.array([0.01, 0.04, 0.03, 0.005]))
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm(np.array([0.5, 0.9])), [1.0, 1.0])
    assert list(holm(np.array([0.04])) <= 0.05) == [True]


def test_held_out_worst_class_is_not_biased_low_like_the_minimum() -> None:
    """Ten classes all at 50% accuracy: the naive minimum of ten noisy estimates lies well below 50%;
    the class chosen on one half and measured on the other does not (averaged over draws)."""
    naive, held = [], []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        labels = np.repeat(np.arange(10), 100)
        flags = rng.random(1000) < 0.5
        h = held_out_worst(flags, labels, 10, seed=seed)
        naive.append(h.naive)
        held.append(h.accuracy)
    assert np.mean(naive) < 0.44  # the expected minimum of ten Binomial(100, ½)/100 is about 0.42
    assert abs(np.mean(held) - 0.5) < 0.02
    # a truly weak class is found and measured as it is
    labels = np.repeat(np.arange(4), 200)
    rng = np.random.default_rng(3)
    flags = rng.random(800) < np.array([0.8, 0.7, 0.2, 0.9])[labels]
    h = held_out_worst(flags, labels, 4)
    assert h.chosen == (2, 2) and abs(h.accuracy - 0.2) < 0.06


def test_worst_class_counts_spread_measures_and_training_failure() -> None:
    acc = np.array([[0.3, 0.5, 0.7], [0.4, 0.2, 0.9], [0.1, 0.6, 0.6]])
    assert list(worst_class_counts(acc)) == [2, 1, 0]
    m = spread_measures(np.array([0.9, 0.8, 0.6]))
    assert m["std"] == pytest.approx(np.std([0.9, 0.8, 0.6]))
    assert m["cv_error"] == pytest.approx(np.std([0.1, 0.2, 0.4]) / np.mean([0.1, 0.2, 0.4]))
    assert m["worst_to_mean"] == pytest.approx(0.6 / (2.3 / 3))
    # halving every class's error halves the std of accuracy but leaves the CV of error alone
    halved = spread_measures(np.array([0.95, 0.9, 0.8]))
    assert halved["std"] == pytest.approx(m["std"] / 2) and halved["cv_error"] == pytest.approx(m["cv_error"])
    labels = np.repeat(np.arange(10), 50)
    assert "constant prediction: class 3" in training_failure(labels, np.full(500, 3), 10)
    rng = np.random.default_rng(0)
    assert "chance accuracy" in training_failure(labels, rng.integers(0, 10, 500), 10)
    assert training_failure(labels, labels, 10) is None
    assert constant_prediction(np.full(100, 2), 10) == "constant prediction: class 2 for 100% of the images"
    assert constant_prediction(np.arange(100) % 10, 10) is None


def test_paired_bootstrap_of_the_worst_class_keeps_the_pairing() -> None:
    labels = np.repeat(np.arange(3), 100)
    rng = np.random.default_rng(0)
    a = rng.random(300) < np.array([0.7, 0.5, 0.3])[labels]
    b = a.copy()
    b[(labels == 2) & ~a & (rng.random(300) < 0.3)] = True  # B fixes some of the weak class's errors

    def worst(flags: np.ndarray, y: np.ndarray) -> float:
        return float(min(flags[y == c].mean() for c in range(3)))

    est = paired_bootstrap(worst, a, b, labels, n_boot=500)
    assert est.value == pytest.approx(worst(b, labels) - worst(a, labels))
    assert est.low > 0 and est.resolved  # B only ever adds right answers: a paired interval sees it
