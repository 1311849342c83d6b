"""What a study's runs say together: do the same classes stay weak (rank agreement), how class
robustness moves with each grid axis, and whether adversarial training widens the spread."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classwise import analysis
from classwise.report import figures
from classwise.report.collect import ReportData
from classwise.report.headline import Headline, unreadable
from classwise.report.page import Section, fig, table


def headline_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's per-class rows of its headline robustness: the worst case (or its one attack) at
    its largest ε."""
    robust = [r for r in rows if r["attack"] != "clean"]
    best: dict[str, tuple[bool, float]] = {}
    for r in robust:
        rank = (r["attack"] == "worst", r["eps"])
        best[r["run_id"]] = max(best.get(r["run_id"], rank), rank)
    return [r for r in robust if (r["attack"] == "worst", r["eps"]) == best[r["run_id"]]]


def study_sections(data: ReportData) -> list[Section]:
    """Per dataset of the study: universality across runs, hyper-parameter effects and whether
    adversarial training widens the gap (classes are compared within one dataset only)."""
    rows = headline_rows(data.study_rows)
    datasets = sorted({str(r.get("config.data.dataset")) for r in rows})
    out = []
    setting_of = {m.run_id: m.name.rsplit(", seed ", 1)[0] for m in data.models if m.run_id}
    adversarial = {m.run_id: m.adversarial for m in data.models if m.run_id}
    for dataset in datasets:
        chosen = [r for r in rows if str(r.get("config.data.dataset")) == dataset]
        sections = _dataset_sections(chosen, setting_of, adversarial)
        if len(datasets) > 1:
            for section in sections:
                section.title += f" — {Path(dataset).name}"
        out += sections
    return out


def _dataset_sections(
    rows: list[dict[str, Any]], setting_of: dict[str, str], adversarial: dict[str, bool | None]
) -> list[Section]:
    if not rows:
        return []
    by_run: dict[str, dict[int, float]] = defaultdict(dict)
    names: dict[int, str] = {}
    runs: dict[str, dict[str, Any]] = {}
    for r in rows:
        by_run[r["run_id"]][r["class_index"]] = r["accuracy"]
        names[r["class_index"]] = r["class_name"]
        runs[r["run_id"]] = r
    ids = list(by_run)
    class_names = tuple(names[i] for i in sorted(names))
    acc = np.array([[by_run[i].get(k, np.nan) for k in sorted(names)] for i in ids])
    out = []
    uni = Section(
        "Universality: do the same classes stay weak?",
        "Spearman rank correlation of per-class robust accuracy between settings (1: the same ordering), "
        "each setting's accuracy the mean over its seeds.",
    )
    settings = sorted({setting_of.get(i, i[:6]) for i in ids})
    per_setting = np.array(
        [np.nanmean(acc[[j for j, i in enumerate(ids) if setting_of.get(i, i[:6]) == s]], axis=0) for s in settings]
    )
    rho = analysis.class_rank_agreement(per_setting)
    uni.figures.append(
        fig(
            figures.heatmap(rho, settings, "rank correlation of class orderings", "{:.1f}", "RdBu"),
            "One row and column per setting.",
            table(["setting", *settings], [[s, *(f"{v:+.2f}" for v in r)] for s, r in zip(settings, rho, strict=True)]),
        )
    )
    uni.tables.append(
        table(
            ["weakest classes (mean over runs)", "robust %"],
            [[c, f"{100 * a:.1f}"] for c, a in analysis.weakest_classes(acc, class_names, 5)],
        )
    )
    out.append(uni)
    grid_keys = sorted({k for r in rows for k in r if k.startswith("grid.")})
    hyper = Section("Robustness against each hyper-parameter", "Per-class robust accuracy, mean over the other axes.")
    for key in grid_keys:
        values = sorted({runs[i][key] for i in ids if key in runs[i]}, key=str)
        if len(values) < 2:
            continue
        per_value = np.array(
            [np.nanmean(acc[[j for j, i in enumerate(ids) if runs[i].get(key) == v]], axis=0) for v in values]
        )
        hyper.figures.append(
            fig(
                figures.hyperparameter_plot(key.removeprefix("grid."), values, per_value, class_names),
                f"Against {key.removeprefix('grid.')}.",
            )
        )
    if hyper.figures:
        out.append(hyper)
    out += _widening(ids, runs, acc, adversarial)
    return out


def _widening(
    ids: list[str], runs: dict[str, dict[str, Any]], acc: np.ndarray, adversarial: dict[str, bool | None]
) -> list[Section]:
    """Standard training against each adversarial method, in runs that share every other setting
    but the seed: a paired test across seeds of the spread of per-class robust accuracy. Whether a
    method is adversarial is what its runs stored (``adversarial``, by run id)."""
    method_key, seed_key = "config.method.name", "config.seed"
    groups: dict[tuple[Any, ...], dict[str, dict[Any, int]]] = defaultdict(lambda: defaultdict(dict))
    for j, i in enumerate(ids):
        r = runs[i]
        skip = {method_key, seed_key, "grid.method.name", "grid.seed"}
        rest = tuple(
            (k, v)
            for k, v in sorted(r.items())
            if k.startswith(("config.", "grid.")) and k not in skip and not k.startswith("grid.method.args.")
        )  # the method's own options go with it
        groups[rest][r[method_key]][r[seed_key]] = j
    rows = []
    for rest, methods in groups.items():
        said = {m: {adversarial.get(ids[j]) for j in by_seed.values()} for m, by_seed in methods.items()}
        plain = [m for m in methods if said[m] == {False}]
        for base, other in ((b, m) for b in plain[:1] for m in methods if said[m] == {True}):
            seeds = sorted(set(methods[base]) & set(methods[other]))
            if not seeds:
                continue
            a, b = acc[[methods[base][s] for s in seeds]], acc[[methods[other][s] for s in seeds]]
            label = ", ".join(f"{k.removeprefix('grid.')}={v}" for k, v in rest if k.startswith("grid.")) or "all"
            for stat in ("std", "gap", "worst"):
                cmp = analysis.compare_gaps(a, b, stat)
                p = "-" if np.isnan(cmp.p_value) else f"{cmp.p_value:.3f}"
                rows.append([label, f"{base} → {other}", stat, len(seeds), *_pcts(cmp), p])
    if not rows:
        return []
    return [
        Section(
            "Does adversarial training widen the gap?",
            "Spread of per-class robust accuracy, standard against adversarial training with the same seeds "
            "(paired t-test).",
            tables=[table(["setting", "methods", "statistic", "seeds", "before", "after", "difference", "p"], rows)],
        )
    ]


def _pcts(cmp: analysis.GapComparison) -> list[str]:
    return [f"{100 * cmp.a.mean():.1f}", f"{100 * cmp.b.mean():.1f}", f"{100 * cmp.mean_difference:+.1f}"]


def study_headline(data: ReportData) -> Headline:
    """What a study's runs say together: per dataset, the class weakest under attack most often."""
    rows = headline_rows(data.study_rows)
    per_run: dict[str, dict[str, Any]] = {}
    for r in rows:
        run = per_run.setdefault(r["run_id"], {"dataset": r.get("config.data.dataset"), "acc": {}})
        run["acc"][r["class_name"]] = r["accuracy"]
    by_dataset: dict[str, list[str]] = defaultdict(list)
    for run in per_run.values():
        acc = run["acc"]
        if acc and max(acc.values()) > min(acc.values()):  # a run with every class tied names no weakest
            by_dataset[str(run["dataset"])].append(min(acc, key=acc.get))
    parts = []
    for dataset, weakest in sorted(by_dataset.items()):
        top, count = Counter(weakest).most_common(1)[0]
        parts.append(f"{Path(dataset).name}: {top} (in {count} of {len(weakest)} runs)")
    finding = "weakest class under attack across the study's runs — " + ("; ".join(parts) or "no run separates classes")
    from classwise.report.settings import contrast, group_settings

    main = contrast(group_settings(data.models))
    if main:
        finding = f"{main}; {finding}"
    unread = [m.name for m in data.models if unreadable(m.evaluation)]
    if unread:  # named first: their numbers are in the rows above, but they are no result
        shown = ", ".join(unread[:3]) + (" …" if len(unread) > 3 else "")
        finding = (
            f"{len(unread)} of {len(data.models)} runs cannot be read as results (a constant prediction or "
            f"chance accuracy: {shown}); " + finding
        )
    return Headline(
        finding, f"study {data.title.removeprefix('classwise study report: ')}: {len(per_run)} finished runs"
    )
