"""Checkpoint-selection metrics: which validation result makes an epoch's weights ``best.pt``.
Each is a registered function of the validation record (per-class clean and, for adversarial
runs, robust accuracy) that says whether it needs robust accuracy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from classwise.history import Validation
from classwise.registry import Registry


@dataclass(frozen=True)
class Selection:
    """A metric of the validation record; higher is better."""

    value: Callable[[Validation], float]
    needs_robust: bool

    def __call__(self, val: Validation | Mapping[str, Any]) -> float:
        """The metric of a typed validation (or of the record as the loop writes it)."""
        return float(self.value(val if isinstance(val, Validation) else Validation.from_dict(val)))


SELECTION: Registry[Selection] = Registry("selection metric")
SELECTION.register("clean_mean", description="mean per-class validation clean accuracy")(
    Selection(lambda v: v.clean_mean, needs_robust=False)
)
SELECTION.register("clean_worst", description="validation clean accuracy of the worst class")(
    Selection(lambda v: v.clean_worst, needs_robust=False)
)
SELECTION.register("robust_mean", description="mean per-class validation robust accuracy (Rice et al.)")(
    Selection(lambda v: v.robust_or_clean_mean, needs_robust=True)
)
SELECTION.register("robust_worst", description="validation robust accuracy of the worst class")(
    Selection(lambda v: v.robust_or_clean_worst, needs_robust=True)
)
SELECTION.register("robust_mean_plus_worst", description="mean plus worst-class robust accuracy (CFA)")(
    Selection(lambda v: v.robust_or_clean_mean + v.robust_or_clean_worst, True)
)


@dataclass
class BestCheckpoint:
    """The best validation value so far and its epoch (``best.pt`` holds those weights)."""

    value: float | None = None
    epoch: int | None = None

    def improves(self, value: float) -> bool:
        return self.value is None or value > self.value

    def keep(self, value: float, epoch: int) -> None:
        self.value, self.epoch = value, epoch

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "epoch": self.epoch}
