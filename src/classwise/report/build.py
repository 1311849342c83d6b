"""``write_report(path, out_dir)``: one self-contained HTML page (figures embedded, viewable
offline) and a Markdown summary, both pure functions of the stored results."""

from __future__ import annotations

import base64
import html
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import torch

from classwise import analysis
from classwise.data import LabeledImages
from classwise.evaluate.metrics import row_shares
from classwise.report import figures
from classwise.report.collect import ModelResult, ReportData, collect

log = logging.getLogger(__name__)
MAX_DETAILED = 6


@dataclass
class Figure:
    png: str
    caption: str
    table: str = ""


@dataclass
class Section:
    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return html.escape(f"{100 * v:.1f}" if isinstance(v, float) and 0 <= v <= 1 else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fig(png: bytes, caption: str, tbl: str = "") -> Figure:
    return Figure(base64.b64encode(png).decode(), caption, tbl)


def summary_rows(models: Sequence[ModelResult]) -> list[list[object]]:
    rows: list[list[object]] = []
    for m in models:
        clean, robust = m.clean[0], m.robust[m.worst_key][0]
        rows.append(
            [
                m.name,
                float(np.nanmean(clean)),
                f"{m.class_names[int(np.nanargmin(clean))]} {100 * np.nanmin(clean):.1f}",
                float(np.nanmean(robust)),
                f"{m.class_names[int(np.nanargmin(robust))]} {100 * np.nanmin(robust):.1f}",
                f"{100 * np.nanstd(robust):.1f}",
                f"{100 * (np.nanmax(robust) - np.nanmin(robust)):.1f}",
                m.worst_key,
            ]
        )
    return rows


SUMMARY_HEADERS = (
    "model",
    "clean mean %",
    "clean worst",
    "robust mean %",
    "robust worst",
    "robust std",
    "robust max-min",
    "robust metric",
)


def per_class_table(m: ModelResult) -> str:
    keys = ["clean", *m.robust]
    arrays = [m.clean, *m.robust.values()]
    rows = [
        [name, int(m.n[k]), *(f"{100 * a[0, k]:.1f} ({100 * a[1, k]:.0f}-{100 * a[2, k]:.0f})" for a in arrays)]
        for k, name in enumerate(m.class_names)
    ]
    return table(["class", "n", *keys], rows)


def model_section(m: ModelResult) -> Section:
    s = Section(f"Model: {m.name}", f"{m.dataset}. Per-class accuracy % with 95% Wilson intervals.")
    shares = row_shares(m.confusion.get(m.worst_key, next(iter(m.confusion.values()))))
    s.figures.append(
        _fig(
            figures.heatmap(
                100 * shares, m.class_names, f"{m.name}: where attacked images go ({m.worst_key}), % of each true class"
            ),
            "Confusion under attack: row = true class, column = prediction on the attacked image.",
            table(
                ["true \\ predicted", *m.class_names],
                [[n, *(f"{100 * v:.0f}" for v in row)] for n, row in zip(m.class_names, shares, strict=True)],
            ),
        )
    )
    eps, curve = m.eps_curve()
    if len(eps) > 1:
        s.figures.append(
            _fig(
                figures.eps_curves(m),
                "Per-class robust accuracy against ε.",
                table(
                    ["ε", *m.class_names],
                    [[f"{e:.4g}", *(f"{100 * v:.1f}" for v in r)] for e, r in zip(eps, curve, strict=True)],
                ),
            )
        )
    if any("val" in h for h in m.history):
        s.figures.append(_fig(figures.training_curves(m), "Per-class validation accuracy over training epochs."))
    s.tables.append(per_class_table(m))
    return s


def why_section(m: ModelResult, boundary_per_class: int) -> Section | None:
    """Class similarity, classifier weight norms and boundary distance, from the saved checkpoint."""
    if not m.checkpoint or not Path(m.checkpoint).exists() or not m.config:
        return None
    from classwise.data import per_class_subset
    from classwise.models import load_checkpoint
    from classwise.train import TrainConfig, prepare_data

    try:
        model, _ = load_checkpoint(m.checkpoint)
        ds = prepare_data(TrainConfig.from_dict(m.config))
    except Exception as exc:  # data or checkpoint moved: the rest of the report still stands
        log.warning("skipping class-similarity analyses for %s: %s", m.name, exc)
        return None
    k = len(m.class_names)
    test = per_class_subset(ds.test, 100, k)
    robust = m.robust[m.worst_key][0]
    sim = analysis.centroid_similarity(analysis.class_centroids(model, test, k))
    conf_sim = analysis.confusion_similarity(m.confusion.get(m.worst_key, m.confusion["clean"]))
    norms = analysis.class_weight_norms(model)
    s = Section(
        f"Why: class similarity and geometry ({m.name})",
        "Classes whose penultimate-layer centroids are close, and classes the attack confuses, tend to "
        "be the weak ones; the norm of each class's classifier weights is set against its robustness.",
    )
    names = m.class_names
    s.figures.append(
        _fig(
            figures.heatmap(sim, names, "cosine similarity of class feature centroids", "{:.2f}", "viridis"),
            "Penultimate-layer centroid similarity (first 100 test images per class).",
        )
    )
    s.figures.append(
        _fig(
            figures.heatmap(100 * conf_sim, names, "confusion similarity under attack (%)"),
            "Symmetric confusion share under attack: (P[i→j] + P[j→i]) / 2.",
        )
    )
    nearest = [float(np.max(np.delete(sim[i], i))) for i in range(k)]
    s.figures.append(
        _fig(
            figures.scatter(
                np.array(nearest),
                100 * robust,
                names,
                "similarity to the nearest class",
                "robust accuracy (%)",
                "robustness against class similarity",
            ),
            "Each class: its highest centroid similarity to another class against its robustness.",
        )
    )
    s.figures.append(
        _fig(
            figures.scatter(
                norms,
                100 * robust,
                names,
                "classifier weight norm",
                "robust accuracy (%)",
                "robustness against weight norm",
            ),
            "Per-class weight norm of the last layer.",
            table(
                ["class", "weight norm", "nearest similarity", "robust %"],
                [
                    [n, f"{w:.3f}", f"{c:.3f}", f"{100 * r:.1f}"]
                    for n, w, c, r in zip(names, norms, nearest, robust, strict=True)
                ],
            ),
        )
    )
    if boundary_per_class > 0:
        s.figures.append(_boundary_figure(m, model, per_class_subset(ds.test, boundary_per_class, k), robust))
    return s


def _boundary_figure(m: ModelResult, model: torch.nn.Module, sub: LabeledImages, robust: np.ndarray) -> Figure:
    """Median distance to the decision boundary per class against the class's robustness."""
    k = len(m.class_names)
    eps_max = 2 * float(m.config.get("eps") or 0.05)
    dist = analysis.boundary_distance(model, sub.images.float() / 255, sub.labels, eps_max=eps_max)
    labels = sub.labels.numpy()
    med = np.array([np.median(dist[labels == c]) for c in range(k)])
    png = figures.scatter(
        med,
        100 * robust,
        m.class_names,
        "median L∞ distance to the boundary",
        "robust accuracy (%)",
        "robustness against boundary distance",
    )
    caption = (
        f"Smallest ε (up to {eps_max:.3g}) that flips each of the first {len(labels) // k} test images per "
        "class (binary search with PGD; 0 for misclassified images), median per class."
    )
    rows = [[n, f"{d:.4f}"] for n, d in zip(m.class_names, med, strict=True)]
    return _fig(png, caption, table(["class", "median distance"], rows))


def study_sections(data: ReportData) -> list[Section]:
    """Universality across runs, hyper-parameter effects and whether adversarial training widens the gap."""
    rows = [r for r in data.study_rows if r["attack"] == "worst"] or data.study_rows
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
        "Spearman rank correlation of per-class robust accuracy between runs (1: the same ordering).",
    )
    rho = analysis.class_rank_agreement(acc)
    labels = [ids[i][:6] for i in range(len(ids))]
    uni.figures.append(
        _fig(
            figures.heatmap(rho, labels, "rank correlation of class orderings", "{:.1f}", "RdBu"),
            "Runs are labelled by their id (see the runs table).",
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
            _fig(
                figures.hyperparameter_plot(key.removeprefix("grid."), values, per_value, class_names),
                f"Against {key.removeprefix('grid.')}.",
            )
        )
    if hyper.figures:
        out.append(hyper)
    out += _widening(ids, runs, acc)
    return out


def _widening(ids: list[str], runs: dict[str, dict[str, Any]], acc: np.ndarray) -> list[Section]:
    """Standard vs PGD-AT pairs that share every other setting but the seed: paired test of the spread."""
    groups: dict[tuple[Any, ...], dict[str, dict[Any, int]]] = defaultdict(lambda: defaultdict(dict))
    for j, i in enumerate(ids):
        r = runs[i]
        rest = tuple(
            (k, v)
            for k, v in sorted(r.items())
            if k.startswith(("config.", "grid."))
            and k not in ("config.method", "grid.method", "config.seed", "grid.seed")
        )
        groups[rest][r["config.method"]][r["config.seed"]] = j
    rows = []
    for rest, methods in groups.items():
        if "standard" not in methods or "pgd-at" not in methods:
            continue
        seeds = sorted(set(methods["standard"]) & set(methods["pgd-at"]))
        if not seeds:
            continue
        a = acc[[methods["standard"][s] for s in seeds]]
        b = acc[[methods["pgd-at"][s] for s in seeds]]
        for stat in ("std", "gap", "worst"):
            cmp = analysis.compare_gaps(a, b, stat)
            label = ", ".join(f"{k.split('.')[1]}={v}" for k, v in rest if k.startswith("grid.")) or "all"
            rows.append(
                [
                    label,
                    stat,
                    len(seeds),
                    f"{100 * cmp.a.mean():.1f}",
                    f"{100 * cmp.b.mean():.1f}",
                    f"{100 * cmp.mean_difference:+.1f}",
                    "-" if np.isnan(cmp.p_value) else f"{cmp.p_value:.3f}",
                ]
            )
    if not rows:
        return []
    return [
        Section(
            "Does adversarial training widen the gap?",
            "Spread of per-class robust accuracy, standard vs PGD-AT with the same seeds (paired t-test).",
            tables=[table(["setting", "statistic", "seeds", "standard", "pgd-at", "difference", "p"], rows)],
        )
    ]


def render(data: ReportData, boundary_per_class: int = 0, analyses: bool = True) -> tuple[str, str]:
    """The HTML page and the Markdown summary for ``data``."""
    models = data.models
    sections = [
        Section(
            "Per-class accuracy and robustness",
            "Light bars: clean accuracy; dark bars: worst-case robust accuracy; whiskers: 95% intervals.",
            [
                _fig(
                    figures.class_bars(models[:4]),
                    "Per-class clean and robust accuracy.",
                    table(SUMMARY_HEADERS, summary_rows(models[:4])),
                )
            ],
        )
    ]
    if len(models) > 1:
        sections.append(
            Section(
                "Mean robustness against the worst class",
                "",
                [
                    _fig(
                        figures.method_comparison(models),
                        "Each point is a model: a method that only raises the mean "
                        "moves right, one that helps the weakest class moves up.",
                    )
                ],
            )
        )
    sections += [model_section(m) for m in models[:MAX_DETAILED]]
    if analyses and models:
        why = why_section(models[-1], boundary_per_class)
        if why is not None:
            sections.append(why)
    sections += study_sections(data)
    notes = [w for m in models for w in m.warnings]
    if any("lossy" in m.dataset for m in models):
        notes.insert(0, "Results on a lossy JPEG copy of the dataset, not on the original.")
    env = jinja2.Environment(loader=jinja2.PackageLoader("classwise.report", "templates"), autoescape=False)
    page = env.get_template("report.html.j2").render(
        title=html.escape(data.title),
        source=html.escape(data.source),
        notes=[html.escape(n) for n in notes],
        datasets=sorted({html.escape(m.dataset) for m in models}),
        summary_table=table(SUMMARY_HEADERS, summary_rows(models)),
        sections=sections,
    )
    return page, markdown(data)


def markdown(data: ReportData) -> str:
    lines = [
        f"# {data.title}",
        "",
        f"Source: `{data.source}`",
        "",
        "| " + " | ".join(SUMMARY_HEADERS) + " |",
        "|" + "---|" * len(SUMMARY_HEADERS),
    ]
    for row in summary_rows(data.models):
        lines.append("| " + " | ".join(f"{100 * v:.1f}" if isinstance(v, float) else str(v) for v in row) + " |")
    for m in data.models[:MAX_DETAILED]:
        lines += [
            "",
            f"## {m.name}",
            "",
            f"{m.dataset}",
            "",
            "| class | n | clean % | robust % (" + m.worst_key + ") |",
            "|---|---|---|---|",
        ]
        robust = m.robust[m.worst_key]
        for k, name in enumerate(m.class_names):
            lines.append(f"| {name} | {int(m.n[k])} | {100 * m.clean[0, k]:.1f} | {100 * robust[0, k]:.1f} |")
    lines += ["", "Figures and the tables behind them: report.html (self-contained)."]
    return "\n".join(lines) + "\n"


def write_report(
    path: str | Path, out_dir: str | Path, boundary_per_class: int = 0, analyses: bool = True
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` for a run, a folder of runs or a study."""
    page, md = render(collect(path), boundary_per_class, analyses)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(page)
    (out / "report.md").write_text(md)
    return out / "report.html", out / "report.md"
