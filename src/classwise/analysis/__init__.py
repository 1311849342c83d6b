"""Why some classes are weaker: pure functions over per-sample records and stored results
(bootstrap and across-seed statistics, rank agreement, confusion flows, class similarity,
distance to the decision boundary, classifier weight norms)."""

from classwise.analysis.boundary import boundary_distance, class_weight_norms
from classwise.analysis.similarity import centroid_similarity, class_centroids, confusion_similarity
from classwise.analysis.stats import (
    GapComparison,
    bootstrap_class_accuracy,
    class_rank_agreement,
    compare_gaps,
    spread_of,
    weakest_classes,
)

__all__ = [
    "GapComparison",
    "bootstrap_class_accuracy",
    "boundary_distance",
    "centroid_similarity",
    "class_centroids",
    "class_rank_agreement",
    "class_weight_norms",
    "compare_gaps",
    "confusion_similarity",
    "spread_of",
    "weakest_classes",
]
