"""Typed evaluation results: per-sample outcomes under each attack, the analyses stored beside
them, and everything derived from them. Results are always read back into these types (by
:func:`classwise.evaluate.store.read_evaluation`); no code parses an attack or ε out of a string."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from classwise.attacks import format_eps
from classwise.errors import ConfigError
from classwise.evaluate.metrics import ClassAccuracy, Spread, confusion_matrix, row_shares
from classwise.evaluate.spec import EvalSpec


@dataclass(frozen=True)
class AttackRecord:
    """One attack (or the worst case over several: ``attack == "worst"``) at one ε, per sample."""

    attack: str  # the attack's name; in cascade mode "a→b" (cumulative); "worst" for the worst case
    eps: float
    norm: str
    robust: np.ndarray  # bool (N,): clean-correct and not fooled
    adv_pred: np.ndarray  # int64 (N,): prediction on the attacked image (the clean one if not attacked)
    perturbation: np.ndarray  # float (N,): ‖x_adv − x‖ in the threat model's norm
    broken_by: np.ndarray  # str (N,): attack (component) that fooled it, "" if none

    @property
    def label(self) -> str:
        """For people (tables, figure titles): ``pgd@8/255``. Never parsed back."""
        return f"{self.attack}@{format_eps(self.eps)}"

    @property
    def is_worst(self) -> bool:
        return self.attack == "worst"


@dataclass(frozen=True)
class TargetedResult:
    """``success[s, t]``: images of class s that the attack turned into class t; ``attempts[s, t]``:
    images of class s attacked toward t (0 on the diagonal and for targets not attacked)."""

    class_names: tuple[str, ...]
    eps: float
    attack: str
    success: np.ndarray
    attempts: np.ndarray

    @property
    def rate(self) -> np.ndarray:
        return np.divide(self.success, self.attempts, out=np.full(self.success.shape, np.nan), where=self.attempts > 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "eps": self.eps,
            "classes": list(self.class_names),
            "success": self.success.tolist(),
            "attempts": self.attempts.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetedResult:
        return cls(
            tuple(d["classes"]),
            float(d["eps"]),
            str(d["attack"]),
            np.array(d["success"], dtype=np.int64),
            np.array(d["attempts"], dtype=np.int64),
        )


@dataclass(frozen=True)
class Boundary:
    """Distance to the decision boundary of some evaluated images: the smallest ε at which PGD
    flips each (0 if misclassified, inf if not flipped within ``eps_max``)."""

    index: np.ndarray  # positions in the split
    labels: np.ndarray
    distance: np.ndarray
    norm: str
    eps_max: float
    attack: str

    def per_class_median(self, num_classes: int) -> np.ndarray:
        return np.array(
            [
                np.median(self.distance[self.labels == c]) if (self.labels == c).any() else np.nan
                for c in range(num_classes)
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index.tolist(),
            "labels": self.labels.tolist(),
            "distance": [None if not np.isfinite(d) else float(d) for d in self.distance],
            "norm": self.norm,
            "eps_max": self.eps_max,
            "attack": self.attack,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Boundary:
        return cls(
            np.array(d["index"], dtype=np.int64),
            np.array(d["labels"], dtype=np.int64),
            np.array([np.inf if v is None else v for v in d["distance"]], dtype=np.float64),
            str(d["norm"]),
            float(d["eps_max"]),
            str(d["attack"]),
        )


@dataclass(frozen=True)
class Analyses:
    """Why some classes are weaker, measured on the model while it was evaluated: cosine similarity
    of penultimate-layer class centroids (over ``feature_images`` evaluated images), the norm of each
    class's classifier weights, and boundary distances. ``None`` where the model has no such part
    (any ``nn.Module`` can be evaluated; only classwise models expose features and a head)."""

    centroid_similarity: np.ndarray | None = None  # (K, K)
    weight_norms: np.ndarray | None = None  # (K,)
    feature_images: int = 0
    boundary: Boundary | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "centroid_similarity": None if self.centroid_similarity is None else self.centroid_similarity.tolist(),
            "weight_norms": None if self.weight_norms is None else self.weight_norms.tolist(),
            "feature_images": self.feature_images,
            "boundary": None if self.boundary is None else self.boundary.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Analyses:
        sim, norms = d.get("centroid_similarity"), d.get("weight_norms")
        return cls(
            None if sim is None else np.array(sim, dtype=np.float64),
            None if norms is None else np.array(norms, dtype=np.float64),
            int(d.get("feature_images", 0)),
            None if d.get("boundary") is None else Boundary.from_dict(d["boundary"]),
        )


@dataclass(frozen=True)
class Evaluation:
    """Per-sample outcomes of one model on one split under one :class:`EvalSpec`, and what is
    derived from them.

    ``records`` holds each attack at each ε (in cascade mode cumulative, named ``a→b``); ``worst``
    the worst case over the attacks at each ε (``attack == "worst"``).
    """

    class_names: tuple[str, ...]
    dataset: str
    split: str
    index: np.ndarray  # positions of the evaluated samples in the split
    labels: np.ndarray
    clean_pred: np.ndarray
    records: tuple[AttackRecord, ...]
    worst: tuple[AttackRecord, ...]
    spec: EvalSpec = field(default_factory=EvalSpec)
    warnings: tuple[str, ...] = ()
    dataset_notes: tuple[str, ...] = ()
    analyses: Analyses | None = None
    targeted: TargetedResult | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # what was evaluated: checkpoint, run, best epoch
    fingerprint: str = ""  # spec + weights + images: an evaluation resumes or is reused only when it matches

    @property
    def title(self) -> str:
        """The dataset's name with its caveats, e.g. ``cifar10-jpeg (lossy JPEG copy: ...)``."""
        return self.dataset + (f" ({'; '.join(self.dataset_notes)})" if self.dataset_notes else "")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def clean_correct(self) -> np.ndarray:
        return self.clean_pred == self.labels

    def clean(self) -> ClassAccuracy:
        return ClassAccuracy.from_flags(self.clean_correct, self.labels, self.num_classes)

    def robust(self, record: AttackRecord) -> ClassAccuracy:
        return ClassAccuracy.from_flags(record.robust, self.labels, self.num_classes)

    def spread(self, acc: ClassAccuracy) -> Spread:
        return Spread.of(acc, self.class_names)

    def confusion_clean(self) -> np.ndarray:
        return confusion_matrix(self.labels, self.clean_pred, self.num_classes)

    def confusion_adv(self, record: AttackRecord) -> np.ndarray:
        return confusion_matrix(self.labels, record.adv_pred, self.num_classes)

    def worst_at(self, eps: float) -> AttackRecord:
        return next(r for r in self.worst if abs(r.eps - eps) < 1e-12)

    @property
    def headline(self) -> AttackRecord:
        """The worst case at the largest ε: the robustness a table leads with."""
        return max(self.worst, key=lambda r: r.eps)

    def on(self, index: np.ndarray) -> Evaluation:
        """The same outcomes on just the images at these positions of the split (those it evaluated);
        the analyses and targeted results, measured on all of its images, are left out."""
        keep = np.isin(self.index, index)

        def cut(r: AttackRecord) -> AttackRecord:
            return replace(
                r,
                robust=r.robust[keep],
                adv_pred=r.adv_pred[keep],
                perturbation=r.perturbation[keep],
                broken_by=r.broken_by[keep],
            )

        return replace(
            self,
            index=self.index[keep],
            labels=self.labels[keep],
            clean_pred=self.clean_pred[keep],
            records=tuple(map(cut, self.records)),
            worst=tuple(map(cut, self.worst)),
            analyses=None,
            targeted=None,
        )

    def to_frame(self) -> Any:
        """The per-class results as a pandas DataFrame: one row per (class, metric), the rows of
        ``per_class.csv`` (clean and every attack and worst case at every ε, with n, correct,
        accuracy and its Wilson interval). Needs pandas (``pip install 'classwise[pandas]'``)."""
        from classwise.evaluate.tables import per_class_rows

        return pandas_module().DataFrame(per_class_rows(self))

    def flows(self, record: AttackRecord | None = None) -> np.ndarray:
        """Where the attacked images of each class go: row shares of the confusion under attack."""
        return row_shares(self.confusion_adv(record or self.headline))


def merge(first: AttackRecord, then: AttackRecord, name: str) -> AttackRecord:
    """Samples broken by ``first`` keep its outcome; ``then`` adds those it broke among the rest."""
    take = ~first.robust & (first.broken_by != "")
    return AttackRecord(
        attack=name,
        eps=first.eps,
        norm=first.norm,
        robust=first.robust & then.robust,
        adv_pred=np.where(take, first.adv_pred, then.adv_pred),
        perturbation=np.where(take, first.perturbation, then.perturbation),
        broken_by=np.where(take, first.broken_by, then.broken_by),
    )


def worst_case(records: list[AttackRecord], eps: float, norm: str) -> AttackRecord:
    """A sample is robust only if every attack left it robust; its adversarial outcome is the
    first attack (in the given order) that broke it."""
    merged = records[0]
    for r in records[1:]:
        merged = r if "→" in r.attack else merge(merged, r, "worst")
    return replace(merged, attack="worst", eps=eps, norm=norm)


def pandas_module() -> Any:
    """pandas, or one message saying how to install it."""
    try:
        import pandas
    except ModuleNotFoundError:
        raise ConfigError("DataFrames need pandas: pip install 'classwise[pandas]'") from None
    return pandas
