"""The training configuration: nested frozen sections, validated on creation, written as YAML next
to the run so it can be resumed, compared and reproduced.

```yaml
seed: 0
data: {dataset: cifar10, val_per_class: 100}
model: {name: preact_resnet18, args: {}}
threat: {eps: 8/255}
method: {name: trades, args: {beta: 6}}
optim: {epochs: 100, lr: 0.1, schedule: piecewise, milestones: [0.5, 0.75]}
monitor: {every: 1, steps: 10, select: robust_mean}
balance: {name: cfa, args: {lambda1: 0.3}}
evaluation: {attacks: [pgd, autoattack], n_per_class: 100}
```

Any setting is overridden with one syntax, ``--set optim.lr=0.05`` on the command line and the
same dotted keys in study grids; ``classwise config`` lists every setting with its default and
meaning. A model's, a method's and a technique's ``args`` are checked, by name and type, against
the arguments or options it declares. A piece written ``{name: ..., args: {...}}`` (model, method,
balance) owns its args: switching its name by an override starts its args afresh unless the
override sets them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from classwise.attacks.threat import check_eps, check_norm
from classwise.compute import PRECISIONS
from classwise.config import (
    apply_overrides,
    describe,
    dump_yaml,
    field_help,
    from_plain,
    load_yaml,
    to_plain,
)
from classwise.errors import ConfigError
from classwise.evaluate.spec import DEFAULT_EPS, AttackSpec, EvalSpec
from classwise.models.factory import model_args
from classwise.train.balance import TECHNIQUES, check_balance
from classwise.train.methods import METHODS
from classwise.train.schedules import SCHEDULES
from classwise.train.selection import SELECTION

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """What the model learns from."""

    dataset: str = field_help("dataset name (classwise datasets) or path to class folders", default="fashion-mnist")
    root: str | None = field_help("folder holding official dataset files (default $CLASSWISE_DATA)", default=None)
    train_per_class: int | None = field_help("train on the first N images of each class (all: null)", default=None)
    val_per_class: int = field_help("validation images held out of training, per class", default=100)
    imbalance_ratio: float | None = field_help(
        "make the training split long-tailed (CIFAR-10-LT profile), head/tail count ratio", default=None
    )
    augment: bool | None = field_help("random crop and flip (null: when the images are 32 px or more)", default=None)
    drop_classes: tuple[str, ...] = field_help(
        "leave these classes (by name) out of training, validation and test, e.g. [dog]: the class-removal "
        "intervention; the model has one output per class kept",
        default=(),
    )

    def __post_init__(self) -> None:
        _positive("train_per_class", self.train_per_class, optional=True)
        _positive("val_per_class", self.val_per_class)
        if len(set(self.drop_classes)) != len(self.drop_classes):
            raise ConfigError(f"data.drop_classes names a class twice: {list(self.drop_classes)}")
        if self.imbalance_ratio is not None and self.imbalance_ratio < 1:
            raise ConfigError(f"imbalance_ratio must be >= 1 (head/tail count), got {self.imbalance_ratio}")


@dataclass(frozen=True)
class ModelConfig:
    """The architecture."""

    name: str = field_help("architecture name (classwise models)", default="small_cnn")
    args: dict[str, Any] = field_help("the architecture's arguments, e.g. {width: 16}", default_factory=dict)
    init_from: str | None = field_help(
        "start from these weights: a run folder (its best.pt) or a classwise checkpoint of the same architecture "
        "and classes (fine-tuning, as FRL does)",
        default=None,
    )


@dataclass(frozen=True)
class ThreatConfig:
    """The training threat model: a norm ball of radius ε in pixel units ([0, 1] images)."""

    eps: float = field_help(
        "attack budget in pixel units, e.g. 8/255 for Linf or 0.5 for L2 (0 for none)", default=8 / 255
    )
    norm: str = field_help("the ball: Linf or L2 (RobustBench's two tracks)", default="Linf")

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", check_norm(str(self.norm)))
        if self.norm == "Linf" and not 0 <= self.eps <= 1:
            raise ConfigError(f"eps must be in [0, 1] (pixel units, e.g. 8/255), got {self.eps}")
        check_eps(self.eps, self.norm)


@dataclass(frozen=True)
class MethodConfig:
    """The training method and its options (``classwise config`` lists each method's)."""

    name: str = field_help("standard, pgd-at, trades or fgsm-rs", default="pgd-at")
    args: dict[str, Any] = field_help("the method's options, e.g. {steps: 10} or {beta: 6}", default_factory=dict)

    def __post_init__(self) -> None:
        # converted once, here: ``args`` stays as written (it is what config.yaml stores and run ids hash)
        try:
            method = METHODS.get(self.name)
        except ConfigError as exc:
            raise ConfigError(f"method.name: {exc}") from None
        object.__setattr__(self, "_options", from_plain(method.Options, self.args, "method.args"))

    @property
    def options(self) -> Any:
        """The method's options as its typed ``Options`` (``cfg.method.options.steps``), made and
        checked once, when the config was."""
        return self._options  # type: ignore[attr-defined]


@dataclass(frozen=True)
class OptimConfig:
    """How the weights are optimised."""

    epochs: int = field_help("passes over the training split", default=10)
    batch_size: int = field_help("images per training step", default=128)
    lr: float = field_help("peak learning rate of SGD with momentum", default=0.1)
    schedule: str = field_help("learning-rate schedule: piecewise, cosine, onecycle or constant", default="piecewise")
    milestones: tuple[float, ...] = field_help(
        "piecewise: decay ×0.1 at these fractions of the epochs", default=(0.5, 0.75)
    )
    momentum: float = field_help("SGD momentum", default=0.9)
    weight_decay: float = field_help("L2 weight decay", default=5e-4)
    precision: str = field_help(
        "auto (bf16 autocast on CUDA and on CPUs with AVX512-BF16 or AMX, else fp32), fp32 or bf16", default="auto"
    )

    def __post_init__(self) -> None:
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        if self.lr <= 0 or self.momentum < 0 or self.weight_decay < 0:
            raise ConfigError("lr must be > 0; momentum and weight_decay >= 0")
        SCHEDULES.get(self.schedule)
        if any(not 0 < m < 1 for m in self.milestones):
            raise ConfigError(f"milestones are fractions of the epochs in (0, 1), got {list(self.milestones)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")


VALIDATION_PRECISIONS = ("train", "fp32")


@dataclass(frozen=True)
class MonitorConfig:
    """Validation during training and which checkpoint is kept as ``best.pt``."""

    every: int = field_help("validate every N epochs (and after the last)", default=1)
    steps: int = field_help("PGD iterations of the validation attack", default=10)
    select: str | None = field_help(
        "metric that picks best.pt (null: clean_mean for standard training, robust_mean otherwise)", default=None
    )
    precision: str = field_help(
        "precision of validation: train (the run's training precision, bf16 where it trains in bf16; "
        "benchmarks/bench_validation_precision.py measured that it keeps the same epochs) or fp32",
        default="train",
    )

    def __post_init__(self) -> None:
        _positive("every", self.every)
        _positive("steps", self.steps)
        if self.select is not None:
            SELECTION.get(self.select)
        if self.precision not in VALIDATION_PRECISIONS:
            raise ConfigError(
                f"monitor.precision must be one of {', '.join(VALIDATION_PRECISIONS)}, got {self.precision!r}"
            )


@dataclass(frozen=True)
class BalanceConfig:
    """A long-tail or robust-fairness technique and its options (``classwise config`` lists them)."""

    name: str = field_help(
        "none, reweight, resample, focal, ldam, logit-adjust, class-eps, frl, cfa, ...; a+b combines "
        "techniques that change different things",
        default="none",
    )
    args: dict[str, Any] = field_help(
        "the technique's options, e.g. {gamma: 2}; a combination's under each name, {focal: {gamma: 2}}",
        default_factory=dict,
    )


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "threat": ThreatConfig,
    "method": MethodConfig,
    "optim": OptimConfig,
    "monitor": MonitorConfig,
    "balance": BalanceConfig,
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run, in sections; see the module docstring.

    Example:
        >>> cfg = TrainConfig.from_dict({"data": {"dataset": "cifar10"}, "threat": {"eps": "8/255"}})
        >>> cfg.with_overrides(["optim.lr=0.05"]).optim.lr
        0.05
    """

    seed: int = field_help("seed of the validation split, initial weights, shuffling and attack noise", default=0)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    threat: ThreatConfig = field(default_factory=ThreatConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    evaluation: EvalSpec = field_help(
        "the final test evaluation (default: PGD-20 at the training ε on the whole test set)",
        default_factory=EvalSpec,
    )

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():  # sections given as mappings (Python) become typed sections
            value = getattr(self, name)
            if not isinstance(value, cls):
                object.__setattr__(self, name, from_plain(cls, value, name))
        if not isinstance(self.evaluation, EvalSpec):
            object.__setattr__(self, "evaluation", EvalSpec.from_dict(self.evaluation))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0, got {self.seed!r}")
        model_args(self.model.name, self.model.args)
        method = METHODS.get(self.method.name)
        if method.adversarial and self.threat.eps == 0:
            raise ConfigError(f"{self.method.name} needs threat.eps > 0; use method standard for eps 0")
        if self.threat.norm not in method.norms:
            raise ConfigError(
                f"{self.method.name} is published for {' and '.join(method.norms)} only, not threat.norm "
                f"{self.threat.norm}; use pgd-at or trades for {self.threat.norm}"
            )
        check_balance(self.balance.name, self.balance.args, method, "balance")
        if self.evaluation.eps is None and self.evaluation.norm not in ("Linf", self.threat.norm):
            raise ConfigError(
                f"evaluation.norm is {self.evaluation.norm} but the model trains under {self.threat.norm} and "
                "evaluation.eps is null (the training ε); give evaluation.eps for that norm, e.g. [0.5]"
            )

    # --- derived settings -------------------------------------------------------------------

    @property
    def selection_metric(self) -> str:
        """``monitor.select``, or by default clean accuracy for standard training and robust
        accuracy for adversarial training (Rice et al.'s early stopping on validation robustness)."""
        if self.monitor.select is not None:
            return self.monitor.select
        return "robust_mean" if METHODS.get(self.method.name).adversarial else "clean_mean"

    @property
    def threat_eps(self) -> float:
        """The ε evaluations default to: the training ε, or the norm's RobustBench budget (8/255 for
        Linf, 0.5 for L2) for a standard run trained without one."""
        return self.threat.eps if self.threat.eps > 0 else DEFAULT_EPS[self.threat.norm]

    @property
    def validates_robustness(self) -> bool:
        """Whether validation attacks: for adversarial training, a robust selection metric or a
        balancing technique (some follow validation robustness); a plain standard run selects on
        clean accuracy and validates clean only."""
        needed = (
            METHODS.get(self.method.name).adversarial
            or SELECTION.get(self.selection_metric).needs_robust
            or self.balance.name != "none"
        )
        return needed and self.threat.eps > 0

    def test_spec(self) -> EvalSpec:
        """The final evaluation's protocol, with its ε resolved to the run's. An evaluation that
        names no ε is at the training threat model, its norm included; one that names its ε keeps
        its own norm (an L∞-trained model evaluated under L2, say)."""
        spec = self.evaluation if self.evaluation.eps is not None else replace(self.evaluation, norm=self.threat.norm)
        return spec.resolved(self.threat_eps)

    def validation_spec(self, training_precision: str = "fp32") -> EvalSpec:
        """Per-class clean and PGD-``monitor.steps`` accuracy on the validation split at the training
        ε (clean only where :attr:`validates_robustness` is false), with the final evaluation's seed
        and PGD defaults (no analyses), in ``training_precision`` (the run's resolved one) where
        ``monitor.precision`` is ``train``, else in fp32."""
        return EvalSpec(
            precision=training_precision if self.monitor.precision == "train" else "fp32",
            attacks=(AttackSpec("pgd", {"steps": self.monitor.steps}),),
            eps=(self.threat.eps if self.validates_robustness else 0.0,),
            norm=self.threat.norm,
            split="val",
            batch_size=512,
            seed=self.evaluation.seed,
            analyses=False,
        )

    # --- plain data -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_plain({name: getattr(self, name) for name in ("seed", *SECTIONS)})
        out["evaluation"] = self.evaluation.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        return from_plain(cls, data, "")

    def with_overrides(self, assignments: Mapping[str, Any] | Iterable[str]) -> TrainConfig:
        """This config with dotted-key overrides (``{"optim.lr": 0.05}`` or ``["optim.lr=0.05"]``);
        a warning names any option that switching a piece dropped although the new piece takes it."""
        tree = self.to_dict()
        resolved = apply_overrides(tree, assignments)
        for message in dropped_options(tree, resolved):
            log.warning(message)
        return TrainConfig.from_dict(resolved)

    def replace(self, **sections: Any) -> TrainConfig:
        return replace(self, **sections)

    def dump(self, path: Path) -> None:
        """Write the config as YAML, atomically (a temporary file renamed over ``path``)."""
        dump_yaml(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        data = load_yaml(path, "training settings")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def dropped_options(tree: Mapping[str, Any], resolved: Mapping[str, Any]) -> list[str]:
    """What switching a piece silently loses: for ``method`` and ``balance``, the options of
    ``tree`` that ``resolved`` (``tree`` after :func:`~classwise.config.apply_overrides`) started
    afresh by setting ``X.name``, although the new piece takes them too, one message per piece.
    Switching PGD-AT with ``steps: 3`` to TRADES drops the 3 steps, and TRADES takes ``steps``: the
    run would attack with TRADES' default instead; switching to standard training drops them
    silently, as it has no steps."""
    messages = []
    for section in ("method", "balance"):
        given = (tree.get(section) or {}).get("args") or {}
        kept = (resolved.get(section) or {}).get("args") or {}
        lost = {k: v for k, v in given.items() if k not in kept}
        if not lost:
            continue
        carried = apply_overrides(resolved, {f"{section}.args.{k}": v for k, v in lost.items()})
        try:
            TrainConfig.from_dict(carried)
        except (ConfigError, TypeError, ValueError):
            continue  # the new piece does not take them: nothing lost
        name = resolved[section].get("name")
        shown = ", ".join(f"{k}={v}" for k, v in lost.items())
        messages.append(
            f"{section}.name={name} starts {section}.args afresh and drops {shown}, which {name} also takes; "
            f"set {section}.args together with the name to keep {'it' if len(lost) == 1 else 'them'}"
        )
    return messages


def setting_rows() -> list[tuple[str, str, str]]:
    """(dotted key, default, meaning) of every setting, then every method's and technique's options
    (what ``classwise config`` prints)."""
    rows = [r for r in describe(TrainConfig) if r[0] not in ("method.args", "balance.args", "model.args")]
    for entry in METHODS:
        for key, default, meaning in describe(entry.factory.Options, "method.args"):
            rows.append((key, default, f"{entry.name}: {meaning}"))
    for technique in TECHNIQUES:
        rows.append((f"balance.name: {technique.name}", "", technique.description))
        for key, default, meaning in describe(technique.factory.Options, "balance.args"):
            rows.append((key, default, f"{technique.name}: {meaning}"))
    rows.append(("model.args", "{}", "the architecture's arguments, e.g. {width: 16} (classwise models)"))
    return rows


def _positive(name: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")
