"""``write_report(path, out_dir)``: one self-contained HTML page (figures embedded, viewable
offline) and a Markdown summary, both pure functions of the stored results."""

from __future__ import annotations

import base64
import html
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from classwise import analysis
from classwise.evaluate import Boundary, class_columns
from classwise.evaluate.store import write_files_atomically
from classwise.report import figures
from classwise.report.collect import ModelResult, ReportData, collect

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
        clean, robust = m.clean[0], m.robust[0]
        rows.append(
            [
                m.name,
                float(np.nanmean(clean)),
                f"{m.class_names[int(np.nanargmin(clean))]} {100 * np.nanmin(clean):.1f}",
                float(np.nanmean(robust)),
                f"{m.class_names[int(np.nanargmin(robust))]} {100 * np.nanmin(robust):.1f}",
                f"{100 * np.nanstd(robust):.1f}",
                f"{100 * (np.nanmax(robust) - np.nanmin(robust)):.1f}",
                m.headline.label,
                m.evaluation.spec.describe(),
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
    "evaluation",
)


def per_class_table(m: ModelResult) -> str:
    columns = class_columns(m.evaluation)
    keys = ["clean" if r is None else r.label for r, _ in columns]
    arrays = [m.clean if r is None else m.robust_of(r) for r, _ in columns]
    rows = [
        [name, int(m.n[k]), *(f"{100 * a[0, k]:.1f} ({100 * a[1, k]:.0f}-{100 * a[2, k]:.0f})" for a in arrays)]
        for k, name in enumerate(m.class_names)
    ]
    return table(["class", "n", *keys], rows)


def model_section(m: ModelResult) -> Section:
    s = Section(
        f"Model: {m.name}",
        f"{m.dataset}. Evaluation: {m.evaluation.spec.describe()}. Per-class accuracy % with 95% Wilson intervals.",
    )
    shares = m.evaluation.flows()
    s.figures.append(
        _fig(
            figures.heatmap(
                100 * shares,
                m.class_names,
                f"{m.name}: where attacked images go ({m.headline.label}), % of each true class",
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


def why_section(m: ModelResult) -> Section | None:
    """Class similarity, classifier weight norms and boundary distances, as stored with the evaluation."""
    a = m.evaluation.analyses
    if a is None or (a.centroid_similarity is None and a.boundary is None):
        return None
    names = m.class_names
    robust = m.robust[0]
    conf_sim = analysis.confusion_similarity(m.evaluation.confusion_adv(m.headline))
    s = Section(
        f"Why: class similarity and geometry ({m.name})",
        "Classes whose penultimate-layer centroids are close, and classes the attack confuses, tend to "
        "be the weak ones; the norm of each class's classifier weights is set against its robustness.",
    )
    s.figures.append(
        _fig(
            figures.heatmap(100 * conf_sim, names, f"{m.name}: confusion similarity under attack (%)"),
            f"Symmetric confusion share under attack ({m.headline.label}): (P[i→j] + P[j→i]) / 2.",
        )
    )
    if a.centroid_similarity is not None and a.weight_norms is not None:
        sim, norms = a.centroid_similarity, a.weight_norms
        k = len(names)
        nearest = [float(np.max(np.delete(sim[i], i))) for i in range(k)]
        s.figures += [
            _fig(
                figures.heatmap(sim, names, "cosine similarity of class feature centroids", "{:.2f}", "viridis"),
                f"Penultimate-layer centroid similarity over the {a.feature_images} evaluated images.",
            ),
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
            ),
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
            ),
        ]
    if a.boundary is not None:
        s.figures.append(_boundary_figure(m, a.boundary, robust))
    return s


def _boundary_figure(m: ModelResult, boundary: Boundary, robust: np.ndarray) -> Figure:
    """Median distance to the decision boundary per class against the class's robustness."""
    k = len(m.class_names)
    med = boundary.per_class_median(k)
    png = figures.scatter(
        med,
        100 * robust,
        m.class_names,
        f"median {boundary.norm} distance to the boundary",
        "robust accuracy (%)",
        "robustness against boundary distance",
    )
    caption = (
        f"Smallest ε (up to {boundary.eps_max:.3g}) at which {boundary.attack} flips each of the first "
        f"{len(boundary.labels) // k} evaluated images per class (binary search; 0 for misclassified images), "
        "median per class."
    )
    rows = [[n, f"{d:.4f}"] for n, d in zip(m.class_names, med, strict=True)]
    return _fig(png, caption, table(["class", "median distance"], rows))


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
    """Universality across runs, hyper-parameter effects and whether adversarial training widens the gap."""
    rows = headline_rows(data.study_rows)
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


def provenance_section(models: Sequence[ModelResult]) -> Section:
    """Where each evaluation came from: versions, device, commit, command line, seed and images."""
    rows = []
    for m in models:
        p = m.evaluation.provenance
        dev = p.get("device", {})
        rows.append(
            [
                m.name,
                ", ".join(f"{k} {v}" for k, v in p.get("versions", {}).items()),
                dev.get("gpu") or f"{dev.get('cpu', '?')} ({dev.get('threads', '?')} threads)",
                (p.get("git_commit") or "-")[:12],
                " ".join(p.get("command", [])) or "-",
                m.evaluation.spec.seed,
                m.evaluation.spec.images,
            ]
        )
    return Section(
        "Provenance",
        "How and where each evaluation ran.",
        tables=[table(["model", "versions", "device", "commit", "command", "seed", "images"], rows)],
    )


def render(data: ReportData) -> tuple[str, str]:
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
    sections += [w for w in (why_section(m) for m in models[:MAX_DETAILED]) if w is not None]
    sections += study_sections(data)
    sections.append(provenance_section(models))
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
            f"Evaluation: {m.evaluation.spec.describe()}",
            "",
            "| class | n | clean % | robust % (" + m.headline.label + ") |",
            "|---|---|---|---|",
        ]
        robust = m.robust
        for k, name in enumerate(m.class_names):
            lines.append(f"| {name} | {int(m.n[k])} | {100 * m.clean[0, k]:.1f} | {100 * robust[0, k]:.1f} |")
    lines += ["", "Figures and the tables behind them: report.html (self-contained)."]
    return "\n".join(lines) + "\n"


def write_report(path: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` for a run, a folder of runs, a study or an evaluation,
    from its stored results only; both files are written atomically."""
    page, md = render(collect(path))
    out = Path(out_dir)
    write_files_atomically(out, {"report.html": lambda p: p.write_text(page), "report.md": lambda p: p.write_text(md)})
    return out / "report.html", out / "report.md"
