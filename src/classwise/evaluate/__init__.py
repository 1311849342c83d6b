"""Class-wise evaluation: one protocol (:class:`EvalSpec`), per-sample outcomes under attack, the
analyses measured on the model, and one writer and reader of the results."""

from classwise.evaluate.command import evaluate_model
from classwise.evaluate.engine import evaluate, fingerprint, select_images
from classwise.evaluate.geometry import boundary_distance, centroid_similarity, class_weight_norms, frozen_eval
from classwise.evaluate.metrics import (
    ClassAccuracy,
    Spread,
    confusion_matrix,
    difference_interval,
    row_shares,
    wilson_interval,
)
from classwise.evaluate.records import Analyses, AttackRecord, Boundary, Evaluation, TargetedResult
from classwise.evaluate.spec import AttackSpec, EvalSpec, spec_from_options
from classwise.evaluate.store import read_evaluation, run_evaluation, write_evaluation, write_files_atomically
from classwise.evaluate.tables import (
    class_columns,
    format_comparison,
    format_eps_curve,
    format_flows,
    format_side_by_side,
    format_table,
    format_targeted,
    per_class_rows,
    summaries,
)

__all__ = [
    "Analyses",
    "AttackRecord",
    "AttackSpec",
    "Boundary",
    "ClassAccuracy",
    "EvalSpec",
    "Evaluation",
    "Spread",
    "TargetedResult",
    "boundary_distance",
    "centroid_similarity",
    "class_columns",
    "class_weight_norms",
    "confusion_matrix",
    "difference_interval",
    "evaluate",
    "evaluate_model",
    "fingerprint",
    "format_comparison",
    "format_eps_curve",
    "format_flows",
    "format_side_by_side",
    "format_table",
    "format_targeted",
    "frozen_eval",
    "per_class_rows",
    "read_evaluation",
    "row_shares",
    "run_evaluation",
    "select_images",
    "spec_from_options",
    "summaries",
    "wilson_interval",
    "write_evaluation",
    "write_files_atomically",
]
