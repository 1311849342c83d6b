"""The training configuration: one frozen dataclass, validated on creation, saved as YAML next to
the run so the run can be resumed, compared and reproduced."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from classwise.compute import PRECISIONS
from classwise.errors import ConfigError
from classwise.evaluate.spec import AttackSpec, EvalSpec

METHODS = ("standard", "pgd-at", "trades", "fgsm-rs")
SCHEDULES = ("piecewise", "cosine", "onecycle", "constant")
BEST_METRICS = ("robust_mean", "robust_worst", "clean_mean", "clean_worst", "robust_mean_plus_worst")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    Attributes (the ones a study varies):
        dataset: registry name or path; ``data_root`` where official files live.
        model / model_args: architecture and its arguments (``{"width": 16}``).
        method: ``standard``, ``pgd-at`` (Madry et al.), ``trades`` (Zhang et al., ``beta``),
            ``fgsm-rs`` (Wong et al.'s fast FGSM with random start).
        eps, attack_steps, attack_step_size: the training threat model (L∞, pixel units); the
            step size defaults to 2.5·ε/steps for PGD-AT and TRADES (Madry et al.: 2/255 for 8/255
            and 10 steps), 1.25ε for FGSM-RS (Wong et al.).
        lr, schedule, momentum, weight_decay, batch_size, epochs, seed: the optimisation.
        val_per_class: validation images held out per class; ``eval_every`` epochs the per-class
            clean and PGD-``eval_steps`` accuracy on it is recorded; ``best_metric`` picks ``best.pt``
            (default: clean mean for standard training, robust mean otherwise).
        train_per_class: use only the first N training images of each class (CPU-scale runs).
        evaluation: the final class-wise test evaluation (:class:`EvalSpec`; its ε defaults to
            ``eps``): PGD-20 on the whole test set unless set, e.g. ``{attacks: [pgd, autoattack],
            n_per_class: 100}`` in YAML.
        balance / balance_args: a long-tail or fairness technique (``classwise.train.balance``) and
            its options, e.g. ``focal`` with ``{"gamma": 2}`` or ``frl`` with ``{"mode": "both"}``.
        imbalance_ratio: subsample the training split to the exponential long-tail profile
            (head/tail count ratio, as in CIFAR-10-LT); validation and test stay balanced.
        precision: ``auto`` (bf16 autocast on CUDA and on CPUs with AVX512-BF16 or AMX, fp32
            elsewhere), ``fp32`` or ``bf16``; what a run used is in its ``history.json``.
    """

    dataset: str = "fashion-mnist"
    data_root: str | None = None
    model: str = "small_cnn"
    model_args: dict[str, Any] = field(default_factory=dict)
    method: str = "pgd-at"
    eps: float = 8 / 255
    attack_steps: int = 10
    attack_step_size: float | None = None
    trades_beta: float = 6.0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    schedule: str = "piecewise"
    milestones: tuple[float, ...] = (0.5, 0.75)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    augment: bool | None = None
    train_per_class: int | None = None
    val_per_class: int = 100
    eval_every: int = 1
    eval_steps: int = 10
    best_metric: str | None = None
    evaluation: EvalSpec = field(default_factory=EvalSpec)
    co_check: bool = True
    balance: str = "none"
    balance_args: dict[str, Any] = field(default_factory=dict)
    imbalance_ratio: float | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.best_metric is not None and self.best_metric not in BEST_METRICS:
            raise ConfigError(f"unknown best metric {self.best_metric!r}; use one of {', '.join(BEST_METRICS)}")
        if not 0 <= self.eps <= 1:
            raise ConfigError(f"eps must be in [0, 1] (pixel units, e.g. 8/255), got {self.eps}")
        if self.method != "standard" and self.eps == 0:
            raise ConfigError(f"{self.method} needs eps > 0; use method standard for eps 0")
        positive = {
            "attack_steps": self.attack_steps,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "eval_every": self.eval_every,
            "eval_steps": self.eval_steps,
            "val_per_class": self.val_per_class,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if self.lr <= 0 or self.momentum < 0 or self.weight_decay < 0 or self.trades_beta < 0:
            raise ConfigError("lr must be > 0; momentum, weight_decay and trades_beta >= 0")
        if self.attack_step_size is not None and self.attack_step_size <= 0:
            raise ConfigError(f"attack_step_size must be > 0, got {self.attack_step_size}")
        if any(not 0 < m < 1 for m in self.milestones):
            raise ConfigError(f"milestones are fractions of the epochs in (0, 1), got {self.milestones}")
        if self.imbalance_ratio is not None and self.imbalance_ratio < 1:
            raise ConfigError(f"imbalance_ratio must be >= 1 (head/tail count), got {self.imbalance_ratio}")
        from classwise.train.balance import check_balancer

        check_balancer(self.balance, self.balance_args, self.method)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")
        if self.train_per_class is not None and self.train_per_class < 1:
            raise ConfigError(f"train_per_class must be >= 1, got {self.train_per_class}")
        if isinstance(self.evaluation, Mapping):
            object.__setattr__(self, "evaluation", EvalSpec.from_dict(self.evaluation))
        if not isinstance(self.evaluation, EvalSpec):
            raise ConfigError("evaluation must be an EvalSpec (a mapping of evaluation settings in YAML)")

    @property
    def selection_metric(self) -> str:
        """``best_metric``, or by default clean accuracy for standard training and robust accuracy
        for adversarial training (Rice et al.'s early stopping on validation robustness)."""
        if self.best_metric is not None:
            return self.best_metric
        return "clean_mean" if self.method == "standard" else "robust_mean"

    @property
    def threat_eps(self) -> float:
        """The ε evaluations default to: the training ε, or 8/255 for a standard run trained without one."""
        return self.eps if self.eps > 0 else 8 / 255

    def test_spec(self) -> EvalSpec:
        """The final evaluation's protocol, with its ε resolved to the run's."""
        return self.evaluation.resolved(self.threat_eps)

    @property
    def validates_robustness(self) -> bool:
        """Whether validation attacks: for adversarial training, a robust selection metric or a
        balancing technique (some follow validation robustness); a plain standard run selects on
        clean accuracy and validates clean only."""
        needed = self.method != "standard" or self.selection_metric.startswith("robust") or self.balance != "none"
        return needed and self.eps > 0

    def validation_spec(self) -> EvalSpec:
        """Per-class clean and PGD-``eval_steps`` accuracy on the validation split at the training ε
        (clean only where :attr:`validates_robustness` is false), with the final evaluation's seed
        and PGD defaults (no analyses)."""
        return EvalSpec(
            attacks=(AttackSpec("pgd", {"steps": self.eval_steps}),),
            eps=(self.eps if self.validates_robustness else 0.0,),
            split="val",
            batch_size=512,
            seed=self.evaluation.seed,
            analyses=False,
        )

    @property
    def step_size(self) -> float:
        if self.attack_step_size is not None:
            return self.attack_step_size
        return 1.25 * self.eps if self.method == "fgsm-rs" else 2.5 * self.eps / self.attack_steps

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["milestones"] = list(self.milestones)
        d["model_args"], d["balance_args"] = dict(self.model_args), dict(self.balance_args)
        d["evaluation"] = self.evaluation.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; known: {', '.join(sorted(known))}")
        clean = dict(data)
        types = {f.name: str(f.type) for f in fields(cls)}
        for name, value in clean.items():
            _check_type(name, value, types[name])
        if "milestones" in clean:
            clean["milestones"] = tuple(float(m) for m in clean["milestones"])
        if "evaluation" in clean:
            clean["evaluation"] = EvalSpec.from_dict(clean["evaluation"])
        try:
            return cls(**clean)
        except TypeError as exc:
            raise ConfigError(f"bad training options: {exc}") from None

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def dump(self, path: Path) -> None:
        """Write the config as YAML, atomically (a temporary file renamed over ``path``)."""
        write_text_atomically(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict) or not data:
            raise ConfigError(f"{path} must hold a mapping of training options (it is empty or not a mapping)")
        return cls.from_dict(data)


_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "None": (type(None),),
    "dict": (dict,),
    "tuple": (tuple, list),
}


def _check_type(name: str, value: Any, annotation: str) -> None:
    """Reject a value whose type the field's annotation does not allow (``int``, ``float | None``, ...)."""
    allowed: tuple[type, ...] = ()
    for part in annotation.split("|"):
        allowed += _TYPES.get(part.strip().split("[")[0], (object,))
    is_bool = isinstance(value, bool)
    if not isinstance(value, allowed) or (is_bool and bool not in allowed and object not in allowed):
        raise ConfigError(f"training option {name} must be {annotation}, got {value!r}")


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
