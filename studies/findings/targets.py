"""The study targets and replacements of ``anchors.yaml``: each finished run of a study with targets
checked against them (by how much it falls short), and an earlier study's datasets that a later
study replaces set apart, with the clean accuracy that made them uninterpretable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from classwise.report import pct
from studies.findings.anchors import REPLACED, STUDY_TARGETS
from studies.findings.markdown import markdown_table

if TYPE_CHECKING:
    from studies.findings.study_answers import StudyRun


def split_replaced(study: str, runs: Sequence[StudyRun]) -> tuple[list[StudyRun], list[StudyRun]]:
    """The runs of ``study`` it still answers with, and those of datasets a later study replaces."""
    replaced = REPLACED.get(study, {})
    return [r for r in runs if r.dataset not in replaced], [r for r in runs if r.dataset in replaced]


def replaced_part(study: str, runs: Sequence[StudyRun]) -> list[str]:
    """One paragraph naming the datasets set apart, their clean accuracy by method, and the study
    that answers for them instead (empty when none is)."""
    if not runs:
        return []
    said = []
    for dataset, by in REPLACED[study].items():
        mine = [r for r in runs if r.dataset == dataset]
        if mine:
            clean = ", ".join(
                f"{m} {pct(float(np.mean([r.model.clean[0].mean() for r in mine if r.method == m])))}%"
                for m in sorted({r.method for r in mine})
            )
            said.append(f"{dataset} ({len(mine)} runs; mean clean accuracy {clean}) by study `{by}`")
    return [
        "",
        "Replaced, and left out of every table and answer of this section: "
        + "; ".join(said)
        + ". Those runs stay in the results folder; the section of the replacing study reads the dataset instead.",
    ]


def targets_part(study: str, runs: Sequence[StudyRun]) -> list[str]:
    """Every finished run against the study's targets (none: empty)."""
    targets = STUDY_TARGETS.get(study)
    if not targets:
        return []
    rows = []
    for r in sorted(runs, key=lambda r: (r.dataset, r.architecture, r.method, r.variant, r.seed)):
        target = targets["adversarial" if r.adversarial else "standard"]
        cells, verdicts = [], []
        for what, values in (("clean", r.model.clean[0]), ("robust", r.model.robust[0])):
            value, need = 100 * float(values.mean()), target[what]
            cells.append(f"{value:.1f}" + ("" if need is None else f" (≥ {need:g})"))
            if need is not None:
                verdicts.append("met" if value >= need else f"{what} short by {need - value:.1f}")
        verdict = (
            "met" if all(v == "met" for v in verdicts) else "**" + "; ".join(v for v in verdicts if v != "met") + "**"
        )
        rows.append(
            f"| `{r.model.name}` | {r.dataset} | {r.architecture} | {r.method} | {r.variant} | {r.seed} | "
            + " | ".join(cells)
            + f" | {verdict} |"
        )
    met = sum(row.endswith("| met |") for row in rows)
    columns = (
        "run",
        "dataset",
        "architecture",
        "method",
        "settings",
        "seed",
        "clean mean % (target)",
        "robust mean % (target)",
        "targets",
    )
    return [
        "",
        f"Every finished run against the study's targets (mean per-class accuracy on the whole test set; robust: the "
        f"headline attack): {met} of {len(rows)} meet them.",
        "",
        *markdown_table(columns, rows, "no run has finished yet"),
    ]
