"""Why some classes are weaker: the class geometry stored with each model's evaluation (centroid
similarity, confusion similarity under attack, classifier weight norms, boundary distances),
set against each class's robustness."""

from __future__ import annotations

import numpy as np

from classwise import analysis
from classwise.evaluate import Boundary
from classwise.report import figures
from classwise.report.collect import ModelResult
from classwise.report.page import Figure, Section, fig, table


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
        fig(
            figures.heatmap(100 * conf_sim, names, f"{m.name}: confusion similarity under attack (%)"),
            f"Symmetric confusion share under attack ({m.headline.label}): (P[i→j] + P[j→i]) / 2.",
        )
    )
    if a.centroid_similarity is not None and a.weight_norms is not None:
        s.figures += _geometry_figures(m, a.centroid_similarity, a.weight_norms, a.feature_images)
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
    return fig(png, caption, table(["class", "median distance"], rows))


def _geometry_figures(m: ModelResult, sim: np.ndarray, norms: np.ndarray, images: int) -> list[Figure]:
    """Centroid similarity, and robustness against the nearest class and the weight norm."""
    names, robust = m.class_names, m.robust[0]
    k = len(names)
    nearest = [float(np.max(np.delete(sim[i], i))) for i in range(k)]
    return [
        fig(
            figures.heatmap(sim, names, "cosine similarity of class feature centroids", "{:.2f}", "viridis"),
            f"Penultimate-layer centroid similarity over the {images} evaluated images.",
        ),
        fig(
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
        fig(
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
