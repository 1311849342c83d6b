"""Why some classes are weaker: the class geometry stored with each model's evaluation (centroid
similarity, confusion under attack, classifier weight norms, boundary distances) set against each
class's robustness, with Spearman's ρ and its interval, for every model side by side."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from classwise import analysis
from classwise.analysis import Correlation
from classwise.report import figures
from classwise.report.collect import ModelResult
from classwise.report.page import Figure, Section, fig, table


def explanations(m: ModelResult) -> dict[str, np.ndarray]:
    """Per-class candidate explanations of robustness, as stored with the model's evaluation."""
    out: dict[str, np.ndarray] = {}
    flows = m.evaluation.flows()
    off = flows - np.diag(np.diag(flows))
    out["share of attacked images going to the most confused class"] = off.max(1)
    # bounded by 1 − robust accuracy, so it partly restates the outcome; normalised by the class's
    # fooled images it measures only how concentrated its errors are
    with np.errstate(invalid="ignore", divide="ignore"):
        out["share of the fooled images going to the most confused class (normalised)"] = off.max(1) / off.sum(1)
    a = m.evaluation.analyses
    if a is not None and a.centroid_similarity is not None:
        sim = a.centroid_similarity
        out["similarity to the nearest class (feature centroids)"] = np.array(
            [np.max(np.delete(sim[i], i)) for i in range(len(sim))]
        )
    if a is not None and a.weight_norms is not None:
        out["classifier weight norm"] = a.weight_norms
    if a is not None and a.boundary is not None:
        b, k = a.boundary, len(m.class_names)
        out[f"median {b.norm} distance to the decision boundary"] = b.per_class_median(k)
        # the median above is 0 for a class whose images are mostly misclassified, which restates
        # accuracy; over the images the model gets right (distance > 0) it is geometry alone
        right = b.distance > 0
        out[f"median {b.norm} distance to the boundary of the correctly classified images (normalised)"] = np.array(
            [
                np.median(b.distance[right & (b.labels == c)]) if (right & (b.labels == c)).any() else np.nan
                for c in range(k)
            ]
        )
    return out


def correlations(m: ModelResult) -> dict[str, Correlation]:
    """Spearman's ρ of each explanation with per-class robust accuracy."""
    return {name: analysis.spearman(x, m.robust[0]) for name, x in explanations(m).items()}


def side_by_side(models: Sequence[ModelResult]) -> Section | None:
    """Each explanation's rank correlation with class robustness, one column per model."""
    per_model = [correlations(m) for m in models]
    names = list(dict.fromkeys(k for c in per_model for k in c))
    if not names:
        return None
    rows = [
        [name, *(str(c[name]).removeprefix("Spearman ") if name in c else "-" for c in per_model)] for name in names
    ]
    return Section(
        "Why: which explanations hold up",
        "Spearman rank correlation across classes between each candidate explanation and the class's robust "
        "accuracy, with its 95% interval; an interval that excludes 0 is an explanation these classes support.",
        tables=[table(["explanation", *(m.name for m in models)], rows)],
    )


def why_section(m: ModelResult) -> Section | None:
    """One model's class-similarity and geometry figures."""
    a = m.evaluation.analyses
    names = m.class_names
    robust = m.robust[0]
    s = Section(
        f"Why: class similarity and geometry ({m.name})",
        "Classes whose penultimate-layer centroids are close, and classes the attack confuses, tend to "
        "be the weak ones; the norm of each class's classifier weights is set against its robustness.",
    )
    conf_sim = analysis.confusion_similarity(m.evaluation.confusion_adv(m.headline))
    s.figures.append(
        fig(
            figures.heatmap(100 * conf_sim, names, f"{m.name}: confusion similarity under attack (%)"),
            f"Symmetric confusion share under attack ({m.headline.label}): (P[i→j] + P[j→i]) / 2.",
        )
    )
    if a is not None and a.centroid_similarity is not None:
        s.figures.append(
            fig(
                figures.heatmap(
                    a.centroid_similarity, names, "cosine similarity of class feature centroids", "{:.2f}", "viridis"
                ),
                f"Penultimate-layer centroid similarity over the {a.feature_images} evaluated images.",
            )
        )
    for name, x in explanations(m).items():
        s.figures.append(_scatter(m, name, x, robust))
    return s


def _scatter(m: ModelResult, name: str, x: np.ndarray, robust: np.ndarray) -> Figure:
    png, corr = figures.scatter(
        x, 100 * robust, m.class_names, name, "robust accuracy (%)", f"{m.name}: robustness against {name}"
    )
    rows = [[c, f"{v:.4g}", f"{100 * r:.1f}"] for c, v, r in zip(m.class_names, x, robust, strict=True)]
    caption = f"Each class: {name} against its robust accuracy ({m.headline.label}); {corr}."
    a = m.evaluation.analyses
    if a is not None and a.boundary is not None and "boundary" in name:
        per_class = len(a.boundary.labels) // len(m.class_names)
        caption += (
            f" Smallest ε (up to {a.boundary.eps_max:.3g}) at which {a.boundary.attack} flips each of the first "
            f"{per_class} evaluated images per class (binary search; 0 for misclassified images), median per class."
        )
    return fig(png, caption, table(["class", name, "robust %"], rows))
