"""Class-wise evaluation: per-sample outcomes under attack and everything derived from them."""

from classwise.evaluate.engine import AttackRecord, Evaluation, attack_samples, evaluate, frozen_eval
from classwise.evaluate.metrics import ClassAccuracy, Spread, confusion_matrix, row_shares, wilson_interval
from classwise.evaluate.outputs import write_evaluation
from classwise.evaluate.tables import (
    format_comparison,
    format_eps_curve,
    format_flows,
    format_side_by_side,
    format_table,
    format_targeted,
    per_class_rows,
    summaries,
    to_dict,
)
from classwise.evaluate.targeted import TargetedResult, targeted_matrix

__all__ = [
    "AttackRecord",
    "ClassAccuracy",
    "Evaluation",
    "Spread",
    "TargetedResult",
    "attack_samples",
    "confusion_matrix",
    "evaluate",
    "format_comparison",
    "format_eps_curve",
    "format_flows",
    "format_side_by_side",
    "format_table",
    "format_targeted",
    "frozen_eval",
    "per_class_rows",
    "row_shares",
    "summaries",
    "targeted_matrix",
    "to_dict",
    "wilson_interval",
    "write_evaluation",
]
