"""Why some classes are weaker: pure functions over stored results (bootstrap and across-seed
statistics, rank agreement, confusion similarity). The analyses that need the model (class
centroids, weight norms, boundary distances) are measured while it is evaluated
(``classwise.evaluate.geometry``) and stored beside the evaluation."""

from classwise.analysis.stats import (
    Correlation,
    GapComparison,
    bootstrap_class_accuracy,
    class_rank_agreement,
    compare_gaps,
    confusion_similarity,
    fisher_interval,
    mean_interval,
    spearman,
    spread_of,
    weakest_classes,
)

__all__ = [
    "Correlation",
    "GapComparison",
    "bootstrap_class_accuracy",
    "class_rank_agreement",
    "compare_gaps",
    "confusion_similarity",
    "fisher_interval",
    "mean_interval",
    "spearman",
    "spread_of",
    "weakest_classes",
]
