"""A training run's history read back as typed records: one :class:`Epoch` per line of
``history.json``, with its :class:`Validation` where the epoch was validated.

The training loop writes the records (``classwise.train``; each validation as a typed
:class:`Validation`, stored by :meth:`Validation.to_dict`); the report, the trackers, the
checkpoint selection and the study pages read them through this module, so none of them indexes
a dict by a string or imports training code to do so. Unknown keys (what a method adds to an
epoch, e.g. FGSM-RS's catastrophic-overfitting check) are kept in ``extra``, so a history written
by a later version still reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from classwise.errors import ClasswiseError


def _floats(value: Any) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(v) for v in value)


@dataclass(frozen=True)
class Validation:
    """Per-class validation accuracy of one epoch: clean, and under the validation attack where the
    run measures robustness; what a technique records beside it."""

    clean: tuple[float, ...] = ()
    clean_mean: float = float("nan")
    clean_worst: float = float("nan")
    clean_worst_class: str | None = None
    robust: tuple[float, ...] | None = None
    robust_mean: float | None = None
    robust_worst: float | None = None
    robust_worst_class: str | None = None
    method_loss: tuple[float, ...] | None = None  # per class, for techniques that weigh by the loss
    weights_averaged: bool | None = None  # whether this epoch entered a weight average (CFA's FAWA)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Validation:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("clean", "robust", "method_loss"):
            if key in values:
                values[key] = _floats(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The record as ``history.json`` stores it: fields in order, those not measured left out."""
        return {
            f.name: list(v) if isinstance(v, tuple) else v
            for f in fields(self)
            if (v := getattr(self, f.name)) is not None
        }

    @property
    def robust_or_clean_mean(self) -> float:
        """The robust mean where robustness was validated, else the clean mean."""
        return self.robust_mean if self.robust_mean is not None else self.clean_mean

    @property
    def robust_or_clean_worst(self) -> float:
        return self.robust_worst if self.robust_worst is not None else self.clean_worst


@dataclass(frozen=True)
class Epoch:
    """One epoch of training as the loop recorded it."""

    epoch: int
    seconds: float = float("nan")
    train_loss: float | None = None
    train_acc: float | None = None
    train_class_acc: tuple[float, ...] | None = None
    lr_end: float | None = None
    images_per_s: float | None = None
    graph_steps: int = 0  # steps replayed from a CUDA graph
    precision: str | None = None
    channels_last: bool | None = None
    val: Validation | None = None
    technique: Mapping[str, Any] = field(default_factory=dict)  # what the next epoch's technique applies
    extra: Mapping[str, Any] = field(default_factory=dict)  # anything else a method recorded

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Epoch:
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        values["train_class_acc"] = _floats(values.get("train_class_acc"))
        values["val"] = None if data.get("val") is None else Validation.from_dict(data["val"])
        values["technique"] = dict(data.get("technique") or {})
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


def read_history(records: Sequence[Mapping[str, Any]]) -> list[Epoch]:
    """Typed epochs from the records a run wrote (``history.json``'s list, or a live run's)."""
    return [Epoch.from_dict(r) for r in records]


def load_history(path: str | Path) -> list[Epoch]:
    """A run's ``history.json`` as typed epochs; a file that is not one is one clear error."""
    path = Path(path)
    try:
        records = json.loads(path.read_text())
        if not isinstance(records, list) or not all(isinstance(r, Mapping) and "epoch" in r for r in records):
            raise ValueError("expected a list of epoch records")
        return read_history(records)
    except (ValueError, TypeError) as exc:
        raise ClasswiseError(f"{path} is not a run history ({exc}); it is written by classwise train") from None
