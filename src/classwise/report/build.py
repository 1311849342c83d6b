"""``write_report(path, out_dir)``: one self-contained HTML page (figures embedded, viewable
offline) and a Markdown summary, both pure functions of the stored results."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import jinja2
import numpy as np

from classwise.evaluate import Spread, class_columns, difference_interval
from classwise.evaluate.store import write_files_atomically
from classwise.report import figures
from classwise.report import settings as settings_view
from classwise.report.collect import ModelResult, ReportData, collect
from classwise.report.headline import Headline, headline, unreadable, weakest
from classwise.report.page import Section, fig, table
from classwise.report.settings import Setting
from classwise.report.universality import study_headline, study_sections
from classwise.report.why import side_by_side, why_section

MAX_DETAILED = 6


def summary_rows(models: Sequence[ModelResult]) -> list[list[object]]:
    rows: list[list[object]] = []
    for m in models:
        clean, robust = m.evaluation.clean(), m.evaluation.robust(m.headline)
        c, r = Spread.of(clean, m.class_names), Spread.of(robust, m.class_names)
        rows.append(
            [
                m.name,
                c.mean,
                weakest(clean, m.class_names),
                r.mean,
                weakest(robust, m.class_names),
                f"{100 * r.std:.1f}",
                f"{100 * r.gap:.1f}",
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
        fig(
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
            fig(
                figures.eps_curves(m),
                "Per-class robust accuracy against ε.",
                table(
                    ["ε", *m.class_names],
                    [[f"{e:.4g}", *(f"{100 * v:.1f}" for v in r)] for e, r in zip(eps, curve, strict=True)],
                ),
            )
        )
    if any(h.val is not None for h in m.history):
        s.figures.append(fig(figures.training_curves(m), "Per-class validation accuracy over training epochs."))
    s.tables.append(per_class_table(m))
    return s


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


def report_headline(data: ReportData) -> Headline | None:
    """A study's headline is what its runs say together; otherwise the models' own."""
    if data.study_rows:
        return study_headline(data)
    return headline([(m.evaluation, m.config) for m in data.models])


def change_section(models: Sequence[ModelResult]) -> Section | None:
    """Per-class change from standard to each adversarially trained model, with 95% intervals."""
    base = next((m for m in models if m.adversarial is False), None)
    others = [m for m in models if m.adversarial]
    if base is None or not others:
        return None
    s = Section(
        "What adversarial training changes, class by class",
        f"Accuracy of each model minus that of {base.name}, in percentage points, with Newcombe's 95% "
        "interval for a difference of two proportions; classes from the least to the most robust.",
    )
    for m in others:
        order = np.argsort(m.robust[0], kind="stable")
        clean = difference_interval(base.evaluation.clean(), m.evaluation.clean())
        robust = difference_interval(base.evaluation.robust(base.headline), m.evaluation.robust(m.headline))
        diff = np.stack([clean, robust])[:, :, order]
        names = [m.class_names[i] for i in order]
        rows = [
            [n, *(f"{100 * d[0]:+.1f} [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}]" for d in diff[:, :, j])]
            for j, n in enumerate(names)
        ]
        s.figures.append(
            fig(
                figures.change_plot(diff, names, f"{m.name} − {base.name}"),
                f"Change from {base.name} to {m.name}: clean (blue) and under attack (red).",
                table(["class", "clean change (pp)", "change under attack (pp)"], rows),
            )
        )
    return s


def settings_sections(settings: Sequence[Setting]) -> list[Section]:
    """A study's settings side by side, per dataset: per-class robust accuracy (mean over seeds) as a
    grid with one row per setting, and each setting's mean against its worst class, labelled where
    a label can be read; the per-run detail is in the table behind each figure."""
    out = []
    datasets = sorted({s.dataset for s in settings})
    for dataset in datasets:
        group = [s for s in settings if s.dataset == dataset]
        suffix = f" — {dataset}" if len(datasets) > 1 else ""
        names = group[0].runs[0].class_names
        acc = np.array([s.per_run(True).mean(axis=0) for s in group])
        rows = [[s.label, *(f"{100 * v:.1f}" for v in a)] for s, a in zip(group, acc, strict=True)]
        section = Section(
            "Per-class robustness of each setting" + suffix,
            "Robust accuracy under the headline attack, % per class, the mean over each setting's seeds. "
            "Classes in the dataset's order.",
            [
                fig(
                    figures.accuracy_grid(acc, [s.label for s in group], names, "robust accuracy (%)"),
                    "One row per setting.",
                    table(["setting", *names], rows),
                )
            ],
        )
        if len(group) > 1:
            mean = np.array([s.statistic("mean", True).value for s in group])
            worst = np.array([s.statistic("worst", True).value for s in group])
            spread = np.array([[_range(s, "mean"), _range(s, "worst")] for s in group])
            png, shown = figures.setting_scatter(mean, worst, spread, [s.label for s in group])
            left = sum(not v for v in shown)
            section.figures.append(
                fig(
                    png,
                    "Each point is a setting (mean over its seeds; whiskers: the range over seeds). A setting that "
                    "only raises the mean moves right, one that helps the weakest class moves up."
                    + (f" {left} labels that would overlap are left out: see the table." if left else ""),
                    table(settings_view.RUN_HEADERS, settings_view.run_rows(group)),
                )
            )
        out.append(section)
    return out


def _range(setting: Setting, name: str) -> list[float]:
    values = setting.per_seed(name, robust=True)
    return [float(values.min()), float(values.max())]


def render(data: ReportData) -> tuple[str, str]:
    """The HTML page and the Markdown summary for ``data``."""
    if data.study_rows:
        return render_study(data)
    models = data.models
    groups = data.class_groups()
    sections: list[Section] = []
    for label, group in groups:  # class by class: only models on the same classes side by side
        suffix = f" — {label}" if len(groups) > 1 else ""
        sections.append(
            Section(
                "Per-class accuracy and robustness" + suffix,
                "Light bars: clean accuracy; dark bars: worst-case robust accuracy; whiskers: 95% Wilson intervals. "
                "Classes are sorted from the least to the most robust.",
                [
                    fig(
                        figures.class_bars(group[:4]),
                        "Per-class clean and robust accuracy.",
                        table(SUMMARY_HEADERS, summary_rows(group[:4])),
                    )
                ],
            )
        )
        change = change_section(group[:MAX_DETAILED])
        sections += [change] if change is not None else []
    if len(models) > 1:
        sections.append(
            Section(
                "Mean robustness against the worst class",
                "",
                [
                    fig(
                        figures.method_comparison(models),
                        "Each point is a model: a method that only raises the mean "
                        "moves right, one that helps the weakest class moves up.",
                    )
                ],
            )
        )
    sections += [model_section(m) for m in models[:MAX_DETAILED]]
    sections += [w for _, group in groups for w in [side_by_side(group[:MAX_DETAILED])] if w is not None]
    sections += [w for w in (why_section(m) for m in models[:MAX_DETAILED]) if w is not None]
    sections += study_sections(data)
    sections.append(provenance_section(models))
    notes = page_notes(models) + [w for m in models for w in m.warnings]
    page = _page(data, report_headline(data), notes, table(SUMMARY_HEADERS, summary_rows(models)), sections)
    return page, markdown(data)


def page_notes(models: Sequence[ModelResult]) -> list[str]:
    """The notes every page opens with: a lossy dataset copy, then each model that cannot be read."""
    notes = [f"{m.name} cannot be read as a result: {why}" for m in models if (why := unreadable(m.evaluation))]
    if any("lossy" in m.dataset for m in models):
        notes.insert(0, "Results on a lossy JPEG copy of the dataset, not on the original.")
    return notes


def _page(data: ReportData, top: Headline | None, notes: list[str], summary: str, sections: list[Section]) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("classwise.report", "templates"), autoescape=True)
    return env.get_template("report.html.j2").render(
        headline=top.finding if top else data.title,
        setup=top.setup if top else "",
        title=data.title,
        source=data.source,
        notes=notes,
        datasets=sorted({m.dataset for m in data.models}),
        summary_table=summary,
        sections=sections,
    )


def render_study(data: ReportData) -> tuple[str, str]:
    """A study's page: its settings, not its runs, with intervals over seeds; the study's main
    contrast as the headline; the universality, hyper-parameter and widening sections per dataset."""
    settings = settings_view.group_settings(data.models)
    sections = [*settings_sections(settings), *study_sections(data), provenance_section(data.models)]
    top = report_headline(data)
    rows = settings_view.summary_rows(settings)
    page = _page(data, top, page_notes(data.models), table(settings_view.SUMMARY_HEADERS, rows), sections)
    e = _md
    lines = [f"# {e(top.finding if top else data.title)}", "", e(top.setup) if top else "", ""]
    lines += [f"{e(data.title)}; source: {e(data.source)}", ""]
    lines += [
        "| " + " | ".join(settings_view.SUMMARY_HEADERS) + " |",
        "|" + "---|" * len(settings_view.SUMMARY_HEADERS),
    ]
    lines += ["| " + " | ".join(e(str(v)) for v in row) + " |" for row in rows]
    lines += ["", "Figures, the per-run detail and the tables behind them: report.html (self-contained)."]
    return page, "\n".join(lines) + "\n"


def markdown(data: ReportData) -> str:
    """The summary in Markdown; user strings are escaped, since Markdown viewers render raw HTML."""
    e = _md
    top = report_headline(data)
    lines = [
        f"# {e(top.finding if top else data.title)}",
        "",
        e(top.setup) if top else "",
        "",
        f"{e(data.title)}; source: {e(data.source)}",
        "",
        "| " + " | ".join(SUMMARY_HEADERS) + " |",
        "|" + "---|" * len(SUMMARY_HEADERS),
    ]
    for row in summary_rows(data.models):
        lines.append("| " + " | ".join(f"{100 * v:.1f}" if isinstance(v, float) else e(str(v)) for v in row) + " |")
    for m in data.models[:MAX_DETAILED]:
        lines += [
            "",
            f"## {e(m.name)}",
            "",
            e(m.dataset),
            "",
            f"Evaluation: {e(m.evaluation.spec.describe())}",
            "",
            "| class | n | clean % | robust % (" + e(m.headline.label) + ") |",
            "|---|---|---|---|",
        ]
        robust = m.robust
        for k, name in enumerate(m.class_names):
            lines.append(f"| {e(name)} | {int(m.n[k])} | {100 * m.clean[0, k]:.1f} | {100 * robust[0, k]:.1f} |")
    lines += ["", "Figures and the tables behind them: report.html (self-contained)."]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|")


def write_report(path: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` for a run, a folder of runs, a study or an evaluation,
    from its stored results only; both files are written atomically."""
    page, md = render(collect(path))
    out = Path(out_dir)
    write_files_atomically(out, {"report.html": lambda p: p.write_text(page), "report.md": lambda p: p.write_text(md)})
    return out / "report.html", out / "report.md"
