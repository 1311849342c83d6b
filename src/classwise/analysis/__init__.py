"""Why some classes are weaker: pure functions over stored results (bootstrap and across-seed
statistics, rank agreement, confusion similarity), and inference that fits the design behind a
class-wise number (``classwise.analysis.inference``; docs/statistics.md says which is used when).
The analyses that need the model (class centroids, weight norms, boundary distances) are measured while it is evaluated
(``classwise.evaluate.geometry``) and stored beside the evaluation."""

from classwise.analysis.inference import (
    Estimate,
    HeldOutWorst,
    McNemar,
    constant_prediction,
    held_out_worst,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    paired_difference_interval,
    run_interval,
    spread_measures,
    training_failure,
    worst_class_counts,
)
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
    "Estimate",
    "GapComparison",
    "HeldOutWorst",
    "McNemar",
    "bootstrap_class_accuracy",
    "class_rank_agreement",
    "compare_gaps",
    "confusion_similarity",
    "constant_prediction",
    "fisher_interval",
    "held_out_worst",
    "holm",
    "mcnemar_exact",
    "mean_interval",
    "paired_bootstrap",
    "paired_difference_interval",
    "run_interval",
    "spearman",
    "spread_measures",
    "spread_of",
    "training_failure",
    "weakest_classes",
    "worst_class_counts",
]
