"""The published anchors and the study's targets, read from ``anchors.yaml`` beside this file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

_DATA = yaml.safe_load(Path(__file__).with_name("anchors.yaml").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Anchor:
    """Published CIFAR-10 L∞ 8/255 AutoAttack numbers (%) of one method, mean and worst class."""

    clean_mean: float
    clean_worst: float
    robust_mean: float
    robust_worst: float
    source: str


ANCHORS = {method: Anchor(**a) for method, a in _DATA["autoattack"].items()}
FRL_PGD_AT_CLASSES: dict[str, float] = dict(_DATA["frl_pgd_at_classes"]["classes"])
FRL_SOURCE: str = _DATA["frl_pgd_at_classes"]["source"]
TOLERANCE = float(_DATA["tolerance"])
# kind -> (clean %, robust % or None, minutes)
TARGETS = {k: (t["clean"], t["robust"], t["minutes"]) for k, t in _DATA["recipe_targets"].items()}
GOAL_GAIN, GOAL_COST = float(_DATA["goal"]["gain"]), float(_DATA["goal"]["cost"])
DISPLAY: dict[str, str] = dict(_DATA["dataset_labels"])
# study -> kind of training (standard, adversarial) -> {clean, robust}: % at least (None: no target)
STUDY_TARGETS: dict[str, dict[str, dict[str, float | None]]] = _DATA["study_targets"]
# study -> dataset -> the later study that replaces its runs of that dataset
REPLACED: dict[str, dict[str, str]] = _DATA["replaced"]


@dataclass(frozen=True)
class PublishedOrder:
    """Published worst-class and mean robust accuracy (%) of a base method alone (``none``) and with
    each technique, from one table, so the techniques' gains can be ranked as the paper ranks them."""

    source: str
    base: str
    robust_worst: dict[str, float]
    robust_mean: dict[str, float]

    def gains(self) -> dict[str, float]:
        """Each technique's worst-class gain over the base alone, in points."""
        return {t: v - self.robust_worst["none"] for t, v in self.robust_worst.items() if t != "none"}


TECHNIQUE_ORDER = PublishedOrder(**_DATA["technique_order"])
