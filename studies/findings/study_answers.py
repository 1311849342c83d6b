"""The study section of the findings: questions (a) and (b) answered from a study snapshot
(``results/study/<name>/``, written by ``classwise snapshot``).

(a) per dataset: the weakest classes over runs (the run the unit of each interval), whether the
class ordering is stable across architectures, hyper-parameters and seeds, and whether
adversarial training widens the clean spread (paired across seeds); (b) per adversarially
trained run, the rank correlation of class robustness with each stored explanation. Each part
is one function returning its lines."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from classwise import analysis
from classwise.attacks import format_eps
from classwise.evaluate import ClassAccuracy
from classwise.report import ModelResult, figures, model_from_folder, pct, unreadable
from classwise.study import finished_entries, is_planned, runs_table
from classwise.train import components
from studies.findings.markdown import markdown_table
from studies.findings.paper_scale import display_name
from studies.findings.targets import replaced_part, split_replaced, targets_part


@dataclass(frozen=True)
class StudyRun:
    """One finished run of a study with the settings the findings group it by."""

    model: ModelResult
    dataset: str
    architecture: str
    method: str
    seed: int
    variant: str  # ε and the hyper-parameters set with the dataset, not the architecture's or method's recipe
    path: Path  # the run's folder in the snapshot
    planned: bool = True  # False: kept from an earlier snapshot of a grid that has been edited since

    @property
    def adversarial(self) -> bool:
        return bool(self.model.adversarial)

    @property
    def diverged(self) -> bool:
        """Training diverged: validation clean accuracy rose above chance, then fell back to it (the
        last validation within a quarter of chance, an earlier one at least 1.5 times chance)."""
        clean = [e.val.clean_mean for e in self.model.history if e.val is not None]
        chance = 1 / len(self.model.class_names)
        return bool(clean) and clean[-1] <= 1.25 * chance and max(clean) >= 1.5 * chance

    @property
    def never_trained(self) -> str | None:
        """Why the model never trained, or None (:func:`classwise.report.headline.unreadable`: one
        class predicted for nearly every test image, or clean accuracy not above chance)."""
        return unreadable(self.model.evaluation)

    @property
    def trained(self) -> bool:
        """Whether the run counts as evidence: it neither diverged nor never trained."""
        return not self.diverged and self.never_trained is None

    @property
    def judged(self) -> np.ndarray:
        """Per-class accuracy the ordering is judged by: robust if adversarially trained, else clean."""
        return self.model.robust[0] if self.adversarial else self.model.clean[0]


@dataclass
class Answers:
    """What the parts found, for the closing list: per claim (dataset, holds, weakest class)."""

    gap_standard: list[tuple[str, bool, str]] = field(default_factory=list)  # per (dataset, method, ε) row
    gap_adversarial: list[tuple[str, bool, str]] = field(default_factory=list)
    robust_gap: list[tuple[str, bool, str]] = field(default_factory=list)
    weakest_cifar: str = ""
    widening: list[tuple[str, analysis.GapComparison]] = field(default_factory=list)
    cv_widening: dict[str, analysis.Estimate] = field(default_factory=dict)  # "dataset, method" -> change of the CV
    # explanation -> per dataset: (median ρ, runs, runs with the interval below 0, runs with it above 0)
    explanations: dict[str, list[tuple[float, int, int, int]]] = field(default_factory=dict)
    clean_means: dict[str, tuple[float, float]] = field(default_factory=dict)  # "dataset, method" -> (standard, adv.)


def study_runs(folder: Path) -> list[StudyRun]:
    """A study snapshot's finished runs."""
    recipe = recipe_keys(runs_table(folder))
    return [study_run(folder, entry, recipe) for entry in finished_entries(folder)]


def _method(entry: dict[str, Any]) -> Any:
    overrides = entry["overrides"]
    return (overrides.get("with") or {}).get("method.name", overrides.get("method.name"))


def recipe_keys(entries: Sequence[dict[str, Any]]) -> frozenset[str]:
    """The ``with`` keys of a study's grid that belong to a method's recipe rather than to a
    hyper-parameter axis: the architecture's and method's own (``model.*``, ``method.*``) and any
    key whose value follows the method (every standard entry trains 14 epochs, every PGD-AT entry
    the base's 15). Left in a run's variant, they would keep a standard run from ever pairing with
    the adversarial run of the same architecture, hyper-parameters and seed."""
    values: dict[str, dict[Any, set[str]]] = defaultdict(lambda: defaultdict(set))
    keys = {k for e in entries for k in e["overrides"].get("with") or {}}
    for e in entries:
        together = e["overrides"].get("with") or {}
        for k in keys:
            values[k][str(_method(e))].add(repr(together.get(k)))
    follows = {
        k
        for k, by_method in values.items()
        if len(by_method) > 1
        and all(len(v) == 1 for v in by_method.values())
        and len({next(iter(v)) for v in by_method.values()}) > 1
    }
    return frozenset(k for k in keys if k.startswith(("model.", "method.")) or k in follows)


def study_run(folder: Path, entry: dict[str, Any], recipe: frozenset[str] = frozenset()) -> StudyRun:
    """The finished run of a study snapshot's runs-table ``entry``, its evaluation read; ``recipe``:
    the ``with`` keys left out of its variant (:func:`recipe_keys`)."""
    path = folder / "runs" / entry["run_id"]
    m = model_from_folder(entry["run_id"], path)
    c = m.config
    together = entry["overrides"].get("with") or {}
    extra = [
        f"{k.split('.')[-1].replace('_', ' ')} {v}"
        for k, v in together.items()
        if k not in ("data.dataset", "data.root", "threat.eps") and k not in recipe
    ]
    variant = ", ".join([f"ε={format_eps(c['threat']['eps'])}", *extra])
    ds = display_name(m.evaluation.dataset)
    return StudyRun(m, ds, c["model"]["name"], c["method"]["name"], int(c["seed"]), variant, path, is_planned(entry))


def pooled_accuracy(models: Sequence[ModelResult], robust: bool) -> np.ndarray:
    """(3, K): per-class accuracy over the runs with its 95% interval, whose unit fits the design.
    One run: the Wilson interval over its test images. Several runs (seeds, architectures,
    settings) evaluated on the same test images: the mean of the runs' accuracies with a Student-t
    interval over the runs, since the runs, not the images, are the independent draws (NaN, read
    "not resolved", where the runs all agree)."""
    return pooled([m.evaluation.robust(m.headline) if robust else m.evaluation.clean() for m in models])


def pooled(accs: Sequence[ClassAccuracy]) -> np.ndarray:
    """(3, K): per-class accuracy over runs evaluated on the same images (see :func:`pooled_accuracy`)."""
    if len(accs) == 1:
        return np.stack([accs[0].accuracy, accs[0].low, accs[0].high])
    per_run = np.array([a.accuracy for a in accs])
    estimates = [analysis.run_interval(per_run[:, k]) for k in range(per_run.shape[1])]
    return np.array([[e.value, e.low, e.high] for e in estimates]).T


def held_out_worst(models: Sequence[ModelResult], robust: bool) -> str:
    """The cross-fitted worst class (chosen on half of each class's images, measured on the other
    half) beside the naive minimum, each the mean over the runs, and how often each class was the
    weakest across the runs."""
    picks = []
    for m in models:
        ev = m.evaluation
        flags = ev.headline.robust if robust else ev.clean_correct
        picks.append(analysis.held_out_worst(flags, ev.labels, ev.num_classes, seed=0))
    held = analysis.run_interval(np.array([p.accuracy for p in picks]))
    naive = float(np.mean([p.naive for p in picks]))
    accs = np.array([(m.robust if robust else m.clean)[0] for m in models])
    counts = analysis.worst_class_counts(accs)
    names = models[0].class_names
    named = [k for k in np.argsort(-counts, kind="stable") if counts[k]]
    often = ", ".join(f"{names[k]} {int(counts[k])}" for k in named[:4])
    often += f", … ({len(named) - 4} more classes)" if len(named) > 4 else ""
    interval = _interval(np.array([held.value, held.low, held.high])) if len(models) > 1 else pct(held.value)
    return f"{interval} (naive {pct(naive)}); weakest in: {often} of {len(models)} runs"


def with_intervals(acc: np.ndarray, names: tuple[str, ...], order: np.ndarray) -> str:
    """The classes at ``order`` with their intervals; more than three tied at the lowest value are
    counted rather than listed as if three of them were the weakest."""
    tied = np.flatnonzero(acc[0] == acc[0, order[0]])
    if len(tied) > 3:
        return f"{len(tied)} classes tied at {pct(acc[0, order[0]])} ({', '.join(names[k] for k in tied[:3])}, …)"
    return ", ".join(f"{names[k]} {_interval(acc[:, k])}" for k in order)


def _interval(column: np.ndarray) -> str:
    """``54.0 [52.7, 55.3]``; an interval with no width at the printed precision (runs that all
    agree, or 0 of 1,000 images of one run) reads "not resolved": nothing behind it gives a
    spread to measure. Intervals over runs are clipped to [0, 100]%."""
    if not np.isfinite(column[1:]).all():
        return f"{pct(column[0])} (not resolved)"
    low, high = pct(max(0.0, column[1])), pct(min(1.0, column[2]))
    return f"{pct(column[0])} (not resolved)" if low == high else f"{pct(column[0])} [{low}, {high}]"


def _fisher(rho: float, n: int) -> str:
    if not np.isfinite(rho) or n < 4:
        return "undefined"
    return analysis.Correlation(rho, *analysis.fisher_interval(rho, n), n).format()


def _slug(dataset: str) -> str:
    return dataset.lower().replace(" ", "-").replace("(", "").replace(")", "")


def _figure(study: str, dataset: str) -> str:
    return f"study-{study}-{_slug(dataset)}.png"


def _by(runs: Sequence[StudyRun], **match: object) -> list[StudyRun]:
    return [r for r in runs if all(getattr(r, k) == v for k, v in match.items())]


def _methods(runs: Sequence[StudyRun], dataset: str) -> list[str]:
    return sorted({r.method for r in _by(runs, dataset=dataset)})


def _threat(run: StudyRun) -> str:
    """The threat model robust accuracy is measured at: the headline attack's norm and ε."""
    record = run.model.headline
    return f"{record.norm} {format_eps(record.eps)}"


def _method_threats(runs: Sequence[StudyRun], dataset: str) -> list[tuple[str, str]]:
    """(method, threat model) of the dataset's runs: the rows of the weakest-class table."""
    return sorted({(r.method, _threat(r)) for r in _by(runs, dataset=dataset)})


def weakest_part(
    runs: Sequence[StudyRun], datasets: list[str], ans: Answers, study: str
) -> tuple[list[str], dict[str, bytes]]:
    lines = [
        "Weakest classes over every run of a dataset, method and threat model (architectures, "
        "hyper-parameters, seeds; each ε in its own row, never pooled): the mean over the runs with a "
        "Student-t interval over them (one run: its Wilson interval over the test images). The held-out "
        "worst class is chosen on half of each class's test images and measured on the other half (both "
        "ways), since the naive minimum of ten noisy accuracies is biased low; beside it, how many runs "
        "named each class weakest.",
        "",
    ]
    rows = []
    figs = {}
    for d in datasets:
        names = _by(runs, dataset=d)[0].model.class_names
        series = []
        for method, eps in _method_threats(runs, d):
            group = [r for r in _by(runs, dataset=d, method=method) if _threat(r) == eps]
            models = [r.model for r in group]
            clean, robust = pooled_accuracy(models, False), pooled_accuracy(models, True)
            oc, orob = np.argsort(clean[0], kind="stable"), np.argsort(robust[0], kind="stable")
            tied = np.ptp(robust[0]) == 0
            weak_robust = f"all at {pct(robust[0][0])}" if tied else with_intervals(robust, names, orob[:3])
            held = held_out_worst(models, robust=group[0].adversarial)
            rows.append(
                f"| {d} | {method} | {eps} | {len(group)} | {pct(clean[0].mean())} | "
                f"{with_intervals(clean, names, oc[:3])} | {pct(robust[0].mean())} | {weak_robust} | {held} |"
            )
            label = method if len(_method_threats(runs, d)) == len(_methods(runs, d)) else f"{method} {eps}"
            series += [(f"{label}: clean", clean), (f"{label}: under attack", robust)]
            below = bool(clean[2, oc[0]] < clean[0].mean())
            where = f"{d} {method} {eps}"
            (ans.gap_adversarial if group[0].adversarial else ans.gap_standard).append((where, below, names[oc[0]]))
            if group[0].adversarial and not tied:
                ans.robust_gap.append((where, bool(robust[2, orob[0]] < robust[0].mean()), names[orob[0]]))
                if d.startswith("CIFAR-10"):
                    ans.weakest_cifar = with_intervals(robust, names, orob[:1])
        order = [int(k) for k in np.argsort(series[-1][1][0], kind="stable")]
        figs[_figure(study, d)] = figures.series_bars(names, series, order)
    columns = (
        "dataset",
        "method",
        "ε",
        "runs",
        "clean mean",
        "weakest clean",
        "robust mean",
        "weakest under attack",
        "held-out worst (robust if adversarially trained, else clean)",
    )
    lines += markdown_table(columns, rows, "no run has finished yet")
    lines += ["", *(f"![{d}: per-class accuracy over runs](figures/{_figure(study, d)})" for d in datasets)]
    return lines, figs


def eps_sweep_part(runs: Sequence[StudyRun], datasets: list[str]) -> list[str]:
    """Where a dataset's runs were each evaluated at several ε: a table for each ε (and norm), never
    pooled across ε, with each method's robust mean and weakest classes at that budget (runs evaluated
    at one ε only are the weakest-class table's rows)."""
    lines: list[str] = []
    for d in datasets:
        group = [r for r in _by(runs, dataset=d) if len({(x.norm, x.eps) for x in r.model.evaluation.worst}) > 1]
        sweep = sorted({(rec.norm, rec.eps) for r in group for rec in r.model.evaluation.worst})
        if len(sweep) < 2:
            continue
        names = group[0].model.class_names
        lines += [
            f"#### {d}: robust accuracy at each ε of the evaluation",
            "",
            "The worst case over the evaluation's attacks at each budget, a table per ε (the mean over the "
            "runs with a Student-t interval over them; one run: its Wilson interval):",
            "",
        ]
        for norm, eps in sweep:
            rows = []
            for method in _methods(runs, d):
                accs = [
                    r.model.evaluation.robust(rec)
                    for r in _by(group, method=method)
                    for rec in r.model.evaluation.worst
                    if (rec.norm, rec.eps) == (norm, eps)
                ]
                if not accs:
                    continue
                acc = pooled(accs)
                weakest = with_intervals(acc, names, np.argsort(acc[0], kind="stable")[:3])
                rows.append(f"| {method} | {len(accs)} | {pct(acc[0].mean())} | {weakest} |")
            columns = ("method", "runs", "robust mean", "weakest under attack")
            lines += [f"{norm} ε = {format_eps(eps)}:", "", *markdown_table(columns, rows, "no run at this ε"), ""]
    return lines


def _pair_rhos(group: Sequence[StudyRun], what: str) -> list[float]:
    """ρ between every two runs of ``group`` that differ in ``what`` and agree on the rest."""
    aspects = ("architecture", "variant", "seed")
    rhos = []
    for i, x in enumerate(group):
        for y in group[i + 1 :]:
            same = all(getattr(x, f) == getattr(y, f) for f in aspects if f != what)
            if same and getattr(x, what) != getattr(y, what):
                rhos.append(analysis.spearman(x.judged, y.judged).rho)
    return [r for r in rhos if np.isfinite(r)]


def stability_part(runs: Sequence[StudyRun], datasets: list[str]) -> list[str]:
    lines = [
        "",
        "Do the same classes stay weak? Spearman's ρ between the per-class accuracies of two runs of one dataset "
        "and method that differ in one respect (robust accuracy for adversarial training, clean for standard):",
        "",
    ]
    rows = []
    for d in datasets:
        for method in _methods(runs, d):
            group = _by(runs, dataset=d, method=method)
            k = len(group[0].model.class_names)
            for what in ("architecture", "variant", "seed"):
                if rhos := _pair_rhos(group, what):
                    label = {"variant": "hyper-parameters"}.get(what, what)
                    rows.append(
                        f"| {d} | {method} | {label} | {len(rhos)} | {_fisher(float(np.mean(rhos)), k)} | "
                        f"{min(rhos):+.2f} to {max(rhos):+.2f} |"
                    )
    columns = ("dataset", "method", "differs in", "pairs", "mean ρ [Fisher 95% interval at K classes]", "range")
    return lines + markdown_table(columns, rows, "no two finished runs differ in only one respect yet")


def widening_part(runs: Sequence[StudyRun], datasets: list[str], ans: Answers) -> list[str]:
    lines = [
        "",
        "Does adversarial training widen the gap? Clean accuracy of the adversarially trained model against the "
        "standard one trained with the same architecture, setting and seed (paired; difference = adversarial − "
        "standard, in points, with its 95% t-interval over the pairs). The standard deviation of accuracy moves with "
        "the mean: a model that is worse everywhere by the same factor of error has a larger std of accuracy. The "
        "coefficient of variation of per-class error (std ÷ mean of 1 − accuracy) does not move then, so it is "
        "given beside it, and the answers below say which of the two carries the claim:",
        "",
    ]
    rows = []
    for d in datasets:
        methods = sorted({r.method for r in _by(runs, dataset=d) if r.adversarial})
        for method in methods:
            pairs = [
                (s.model.clean[0], a.model.clean[0])
                for s in _by(runs, dataset=d)
                if not s.adversarial
                for a in _by(
                    runs, dataset=d, method=method, architecture=s.architecture, variant=s.variant, seed=s.seed
                )
            ]
            if pairs:
                rows.append(_widening_row(f"{d}, {method}", pairs, ans))
    columns = (
        "dataset, adversarial method",
        "pairs",
        "std across classes",
        "max − min",
        "worst class",
        "mean",
        "CV of per-class error (no unit)",
    )
    return lines + markdown_table(
        columns, rows, "no standard and adversarial run with the same settings have both finished yet"
    )


def _widening_row(label: str, pairs: Sequence[tuple[np.ndarray, np.ndarray]], ans: Answers) -> str:
    """One row of the widening table (``label``: dataset and adversarial method): the paired changes of
    the clean spread, noted in ``ans``."""
    before, after = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    cells = []
    for stat in ("std", "gap", "worst", "mean"):
        cmp = analysis.compare_gaps(before, after, stat)
        cells.append(cmp.difference.format(signed=True))
        if stat == "std":
            ans.widening.append((label, cmp))
        if stat == "mean":
            ans.clean_means[label] = (float(cmp.a.mean()), float(cmp.b.mean()))
    cv = analysis.run_interval(
        np.array([analysis.spread_measures(a)["cv_error"] - analysis.spread_measures(b)["cv_error"] for b, a in pairs])
    )
    ans.cv_widening[label] = cv
    cells.append(cv.format(scale=1, digits=2, signed=True))
    return f"| {label} | {len(pairs)} | " + " | ".join(cells) + " |"


def train_counts(run: StudyRun) -> np.ndarray | None:
    """How many images of each class the run trained on, as its evaluation stored them (runs written
    before the counts were stored: None)."""
    counts = (run.model.evaluation.source.get("dataset") or {}).get("train_class_counts")
    return None if counts is None else np.asarray(counts, dtype=np.int64)


def technique(run: StudyRun) -> str:
    """``focal (gamma=2)``: the run's balancing technique with the arguments it was given
    (``class-eps+focal (focal.gamma=2)`` for a combination)."""
    balance = run.model.config.get("balance") or {}
    name = balance.get("name", "none")
    parts = components(name, balance.get("args") or {})
    given = ", ".join(
        f"{part + '.' if len(parts) > 1 else ''}{k}={v}" for part, args in parts for k, v in sorted(args.items())
    )
    return name + (f" ({given})" if given else "")


def imbalance_part(runs: Sequence[StudyRun], datasets: list[str]) -> list[str]:
    """Where a dataset's classes trained on different numbers of images (GTSRB): each class's
    training count beside its accuracy, and Spearman's ρ across classes between the two, run by
    run, per method, technique and ε."""
    lines: list[str] = []
    for d in datasets:
        stored = [(r, c) for r in _by(runs, dataset=d) if (c := train_counts(r)) is not None]
        if not stored:
            continue
        counts = stored[0][1]
        if np.ptp(counts) == 0 or any(not np.array_equal(c, counts) for _, c in stored):
            continue  # balanced, or runs that trained on different splits: no one column of counts
        names = stored[0][0].model.class_names
        settings: dict[tuple[str, str, str], list[StudyRun]] = defaultdict(list)
        for r, _ in stored:
            settings[(r.method, technique(r), _threat(r))].append(r)
        rho_rows, columns, per_class = [], ["class", "training images"], []
        for (method, balance, eps), group in sorted(settings.items()):
            robust = group[0].adversarial
            kind = "robust" if robust else "clean"
            cs = [analysis.spearman(counts, r.judged) for r in group]
            defined = [c for c in cs if np.isfinite(c.rho)]
            median = f"{np.median([c.rho for c in defined]):+.2f}" if defined else "undefined"
            below, above = sum(c.high < 0 for c in defined), sum(c.low > 0 for c in defined)
            label = f"{method} + {balance}" if balance != "none" else method
            rho_rows.append(f"| {d} | {label} | {eps} | {kind} | {len(group)} | {median} | {below} | {above} |")
            columns.append(f"{label} {eps}, {kind}")
            per_class.append(pooled_accuracy([r.model for r in group], robust))
        rows = [
            f"| {names[k]} | {int(counts[k])} | " + " | ".join(_interval(acc[:, k]) for acc in per_class) + " |"
            for k in np.argsort(counts, kind="stable")
        ]
        lines += [
            "",
            f"#### {d}: the training set is imbalanced",
            "",
            f"Its classes trained on {int(counts.min())} to {int(counts.max())} images each. Spearman's ρ across "
            "classes between a class's training images and its accuracy (robust if adversarially trained, else "
            "clean), per run: the median over runs, and in how many runs the Fisher interval excludes 0 in each "
            "direction. A ρ above 0 says the classes with fewer images are the weaker ones.",
            "",
            *markdown_table(
                ("dataset", "training", "ε", "accuracy", "runs", "median ρ", "interval below 0", "interval above 0"),
                rho_rows,
                "no run",
            ),
            "",
            "Per class, fewest training images first (the mean over runs with its interval; one run: Wilson):",
            "",
            *markdown_table(columns, rows, "no run"),
        ]
    return lines


def explanations_part(runs: Sequence[StudyRun], datasets: list[str], ans: Answers) -> list[str]:
    from classwise.report import correlations

    lines = [
        "",
        "### (b) Why? Class geometry against class robustness",
        "",
        "For every adversarially trained run, Spearman's ρ across classes between each class's robust accuracy and "
        "each candidate explanation, stored with the run's evaluation (standard models are 0% robust almost "
        "everywhere, so their ρ is undefined). Per dataset: the median ρ over runs, and in how many runs the "
        "interval excludes 0 in each direction. Two explanations are bounded by the outcome itself: the share of "
        "a class's attacked images going to its top confuser cannot exceed 1 − its robust accuracy, and a median "
        "boundary distance is 0 for a class whose images are mostly misclassified. Each is given again "
        "normalised (the share among the class's fooled images; the median over its correctly classified "
        "images): an explanation whose correlation vanishes once normalised was restating robustness.",
        "",
    ]
    rows = []
    for d in datasets:
        per_explanation: dict[str, list[Any]] = {}
        for r in (r for r in _by(runs, dataset=d) if r.adversarial):
            for name, c in correlations(r.model).items():
                per_explanation.setdefault(name, []).append(c)
        for name, cs in sorted(per_explanation.items()):
            if not (defined := [c for c in cs if np.isfinite(c.rho)]):
                continue
            med = float(np.median([c.rho for c in defined]))
            below, above = sum(c.high < 0 for c in defined), sum(c.low > 0 for c in defined)
            ans.explanations.setdefault(name, []).append((med, len(defined), below, above))
            rows.append(f"| {d} | {name} | {len(defined)} | {med:+.2f} | {below} | {above} |")
    columns = ("dataset", "explanation", "runs", "median ρ", "interval below 0", "interval above 0")
    return lines + markdown_table(columns, rows, "no adversarially trained run has finished yet")


def answers_part(ans: Answers, complete: bool = False) -> list[str]:
    lines = ["", "### The answers" + ("" if complete else " so far"), ""]
    claims = (
        ("The gap exists without attack (standard training, clean accuracy)", ans.gap_standard),
        ("Adversarial training keeps it (clean accuracy of the adversarially trained models)", ans.gap_adversarial),
        ("Per-class robustness differs (robust accuracy of the adversarially trained models)", ans.robust_gap),
    )
    for claim, verdicts in claims:
        if verdicts:
            lines.append(
                f"- **{claim}:** the weakest class lies below the mean, its interval included, on "
                f"{sum(v for _, v, _ in verdicts)} of {len(verdicts)} rows of the table (dataset, method, ε; weakest: "
                + ", ".join(f"{d}: {c}" for d, _, c in verdicts)
                + ")."
            )
    for d, cmp in ans.widening:
        std_mean, adv_mean = ans.clean_means[d]
        if min(std_mean, adv_mean) < 0.5:
            word = (
                f"not interpretable at this budget: the models reached {pct(std_mean)}% (standard) and "
                f"{pct(adv_mean)}% (adversarial) clean accuracy, so many classes sit near 0 either way"
            )
        elif not np.isfinite(cmp.low):
            word = "undecided (one pair: no interval)"
        elif cmp.low > 0:
            word = "reproduced (the interval of the change in std excludes 0)"
        elif cmp.high < 0:
            word = "**contradicted**: adversarial training narrowed the clean spread"
        else:
            word = "not shown (the interval includes 0)"
        change = f"std across classes {100 * cmp.mean_difference:+.1f} points"
        cv = ans.cv_widening.get(d)
        if cv is not None and cv.resolved:
            cv_word = (
                "a less even model, whatever the mean"
                if cv.low > 0
                else "a more even model, whatever the mean"
                if cv.high < 0
                else "not resolved, so the change in std may come from the change of the mean alone"
            )
            change += f"; the CV of per-class error changes by {cv.format(scale=1, digits=2, signed=True)}: {cv_word}"
        lines.append(f"- **Adversarial training widens the gap, {d}:** {word}; {change}.")
    if ans.weakest_cifar:
        lines.append(
            f"- **CIFAR-10 (JPEG q75), the weakest class under attack** (over runs): {ans.weakest_cifar} "
            "(the paper's weakest class is cat)."
        )
    for name, per_dataset in sorted(ans.explanations.items()):
        meds = [m for m, *_ in per_dataset]
        runs = sum(n for _, n, _, _ in per_dataset)
        sign = 1 if sum(np.sign(meds)) >= 0 else -1
        agree = sum(np.sign(m) == sign for m in meds)
        decided = sum(above if sign > 0 else below for _, _, below, above in per_dataset)
        if agree == len(meds):
            word = (
                "holds up on every dataset"
                if 2 * decided >= runs
                else "the same direction on every dataset, but most single runs cannot tell it from 0"
            )
        else:
            word = "holds on some datasets only" if agree > len(meds) / 2 else "does not hold up"
        lines.append(
            f"- **{name}:** median ρ per dataset {', '.join(f'{m:+.2f}' for m in meds)}; "
            f"{'positive' if sign > 0 else 'negative'} on {agree} of {len(meds)} datasets, and in {decided} of {runs} "
            f"runs its interval excludes 0 on that side: {word}."
        )
    return lines


def snapshot_runs(folder: Path) -> tuple[list[StudyRun], list[StudyRun], int]:
    """A study snapshot's finished runs, those of them that trained (:attr:`StudyRun.trained`), and
    the runs planned."""
    finished = study_runs(folder)
    total = sum(map(is_planned, runs_table(folder)))
    return finished, [r for r in finished if r.trained], total


def left_out_line(finished: Sequence[StudyRun], named: Callable[[StudyRun], str]) -> str:
    """ " Left out because ...: ..." naming every finished run that did not train, by the reason
    (empty when every run trained)."""
    diverged = [named(r) for r in finished if r.diverged]
    never = [f"{named(r)}: {why}" for r in finished if not r.diverged and (why := r.never_trained)]
    return (
        f" Left out because training diverged (validation clean accuracy fell back to chance): {'; '.join(diverged)}."
        if diverged
        else ""
    ) + (
        " Left out because the model never trained (one class predicted for nearly every test image, or clean "
        f"accuracy not above chance): {'; '.join(never)}."
        if never
        else ""
    )


def is_complete(finished: Sequence[StudyRun], total: int) -> bool:
    """Whether every planned run of a snapshot has finished (diverged ones included), so that its
    answers are final rather than "so far"."""
    return sum(r.planned for r in finished) >= total


def progress(folder: Path, finished: Sequence[StudyRun], total: int) -> str:
    """How many of a snapshot's planned runs have finished, and how many finished runs of an earlier
    version of its grid it keeps beside them."""
    earlier = sum(not r.planned for r in finished)
    text = (
        f"{len(finished) - earlier} of {total} planned runs have finished (results in `{'/'.join(folder.parts[-3:])}`"
    )
    if earlier:
        text += (
            f"; with them {earlier} finished run{'s' if earlier != 1 else ''} of an earlier version of the grid, "
            "which the current grid no longer plans"
        )
    return text + ")"


def _images(runs: Sequence[StudyRun]) -> str:
    """Which test images the runs were evaluated on, in words (``all test images``, or each protocol
    with how many runs used it)."""
    kinds = sorted({r.model.evaluation.spec.images for r in runs})
    if len(kinds) == 1:
        return "its whole test set" if kinds[0].startswith("all ") else f"the {kinds[0]}"
    count = {k: sum(r.model.evaluation.spec.images == k for r in runs) for k in kinds}
    return "; ".join(f"the {k} ({count[k]} runs)" for k in kinds)


def study_section(folder: Path) -> tuple[str, dict[str, bytes]]:
    """Markdown and figures for questions (a) and (b) from one study snapshot."""
    finished, trained, total = snapshot_runs(folder)
    runs, replaced = split_replaced(folder.name, trained)
    title = f"## Questions (a) and (b) on real data: study `{folder.name}`"
    if not runs:
        note = f", and the {len(finished)} finished did not train" if finished else ""
        return f"{title}\n\nNo run of the study has finished yet ({total} planned{note}).\n", {}

    def named(r: StudyRun) -> str:
        return f"`{r.model.name}` ({r.dataset}, {r.architecture}, {r.method}, {r.variant}, seed {r.seed})"

    left_out = left_out_line(finished, named)
    datasets = sorted({r.dataset for r in runs})
    coverage = "; ".join(
        f"{d}: {len(_by(runs, dataset=d))} runs ({', '.join(sorted({r.architecture for r in _by(runs, dataset=d)}))}; "
        f"seeds {', '.join(map(str, sorted({r.seed for r in _by(runs, dataset=d)})))})"
        for d in datasets
    )
    ans = Answers()
    weakest, figs = weakest_part(runs, datasets, ans, folder.name)
    lines = [
        title,
        "",
        f"{progress(folder, finished, total)}: {coverage}.{left_out}"
        + f" Every run is evaluated on {_images(runs)}; robust accuracy is the headline attack of the "
        "evaluation (see each run's config) at the dataset's ε. Intervals: a claim over several runs has the run "
        "as its unit (the mean over runs with a Student-t interval; runs see the same test images, so pooling "
        "their images would count the same image again), one run its 95% Wilson interval; differences paired by "
        "architecture, setting and seed, with Student-t intervals over the pairs; Spearman's "
        "ρ with Fisher intervals over the classes.",
        *replaced_part(folder.name, replaced),
        *targets_part(folder.name, runs),
        "",
        "### (a) Is the class-wise gap universal?",
        "",
        *weakest,
        *eps_sweep_part(runs, datasets),
        *stability_part(runs, datasets),
        *widening_part(runs, datasets, ans),
        *imbalance_part(runs, datasets),
        *explanations_part(runs, datasets, ans),
        *answers_part(ans, is_complete(finished, total)),
    ]
    return "\n".join(lines) + "\n", figs
