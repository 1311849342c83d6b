"""The evaluation protocol: one frozen object that says how a model is evaluated (attacks with
their options, ε list, norm, which images, batch size, seed, what else to measure). Every
evaluation in classwise is made from one: a training run's validation and final evaluation,
``classwise evaluate``, ``classwise gap``, studies, the boundary distance and the targeted
matrix. Its defaults are documented once, here and in the attacks:

- attacks: PGD, 20 steps, uniform random start, step 2.5·ε/steps, 1 restart (Madry et al.);
- ε: the threat model's (a run's training ε; else 8/255 for L∞, 0.5 for L2, as RobustBench);
- images: the whole split (or the first ``n_per_class`` of each class, or the first ``first_n``
  in dataset order, RobustBench's ``n_examples``);
- seed 0, batch 256, early stop on (a sample fooled at any PGD iterate counts as broken);
- analyses: class-centroid similarity and classifier weight norms (cheap); boundary distances of
  ``boundary_per_class`` images per class and the targeted matrix when asked for.

Example:
    >>> spec = EvalSpec(attacks=("pgd", "autoattack"), eps=(8 / 255,), n_per_class=100)
    >>> spec.attacks[0].options
    {}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from classwise.attacks import Attack, attack_options, build_attack, check_eps, check_norm, parse_attack_spec, parse_eps
from classwise.config import apply_overrides, field_help, number
from classwise.errors import ConfigError, UnknownNameError

DEFAULT_EPS = {"Linf": 8 / 255, "L2": 0.5}  # RobustBench's CIFAR-10 budgets


@dataclass(frozen=True)
class AttackSpec:
    """An attack by registry name with typed options (``AttackSpec.parse({"name": "pgd", "args": {"steps": 50}})``)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | AttackSpec) -> AttackSpec:
        if isinstance(value, AttackSpec):
            return value
        name, options = parse_attack_spec(value)
        return cls(name, options)

    def build(self, eps: float, norm: str) -> Attack:
        return build_attack(self.name, self.options, eps, norm)

    def with_default(self, key: str, value: Any) -> AttackSpec:
        """The same attack with ``key`` set to ``value`` unless the attack sets it or does not take it."""
        if value is None or key in self.options or key not in attack_options(self.name):
            return self
        return AttackSpec(self.name, {**self.options, key: value})

    def to_value(self) -> str | dict[str, Any]:
        """Plain data: the name alone, or a mapping ``{name: pgd, args: {steps: 50}}``."""
        if not self.options:
            return self.name
        return {"name": self.name, "args": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()}}

    @property
    def label(self) -> str:
        """For people and for the records of an evaluation that runs two variants of one attack:
        ``pgd``, ``pgd(steps=50)``."""
        if not self.options:
            return self.name
        opts = ", ".join(f"{k}={'+'.join(v) if isinstance(v, tuple) else v}" for k, v in self.options.items())
        return f"{self.name}({opts})"


@dataclass(frozen=True)
class EvalSpec:
    """How a model is evaluated; see the module docstring for the defaults.

    Attributes:
        attacks: attacks run at every ε: names, ``{name: pgd, args: {steps: 50}}`` mappings or AttackSpecs.
        eps: budgets in pixel units; None takes the threat model's (see :meth:`resolved`).
        norm: ``Linf`` or ``L2``.
        split: the split evaluated (``test``; runs validate on ``val``).
        n_per_class / first_n: the first n images of each class / the first n images in dataset
            order (RobustBench's ``n_examples``); neither: the whole split.
        cascade: each attack only sees samples all earlier ones left robust (worst case only).
        early_stop: a sample fooled at any PGD iterate is broken and leaves the batch.
        targeted: also attack every class toward this class (name or index) or ``"all"``.
        boundary_per_class: distance to the decision boundary of this many images per class.
        analyses: class-centroid similarity and classifier weight norms beside the evaluation.
        precision: ``fp32`` (attacks are precision-sensitive), or ``bf16`` autocast when asked.
    """

    attacks: tuple[AttackSpec, ...] = field_help(
        "attacks run at every ε: pgd, fgsm, autoattack, or {name: pgd, args: {steps: 50}}",
        default=(AttackSpec("pgd"),),
    )
    eps: tuple[float, ...] | None = field_help("budgets in pixel units (null: the threat model's)", default=None)
    norm: str = field_help("threat model: Linf or L2", default="Linf")
    split: str = field_help("the split evaluated", default="test")
    n_per_class: int | None = field_help("evaluate the first N images of each class (null: all)", default=None)
    first_n: int | None = field_help("evaluate the first N images in dataset order (RobustBench)", default=None)
    batch_size: int = field_help("images per attacked batch", default=256)
    seed: int = field_help("seed of the attacks' randomness", default=0)
    cascade: bool = field_help("each attack sees only images the earlier ones left robust", default=False)
    early_stop: bool = field_help("an image fooled at any PGD iterate counts as broken", default=True)
    targeted: str | int | None = field_help("also attack toward this class (name, index or all)", default=None)
    boundary_per_class: int = field_help("distance to the decision boundary of N images per class", default=0)
    analyses: bool = field_help("class-centroid similarity and classifier weight norms", default=True)
    precision: str = field_help("fp32, or bf16 autocast when asked", default="fp32")

    def __post_init__(self) -> None:
        attacks = self.attacks if isinstance(self.attacks, list | tuple) else (self.attacks,)
        object.__setattr__(self, "attacks", tuple(AttackSpec.parse(a) for a in attacks))
        object.__setattr__(self, "norm", check_norm(str(self.norm)))
        if self.eps is not None:
            values = self.eps if isinstance(self.eps, list | tuple) else (self.eps,)
            object.__setattr__(self, "eps", tuple(_eps_value(e) for e in values))
        self._validate()

    def _validate(self) -> None:
        if not self.attacks:
            raise ConfigError("evaluation.attacks: give at least one attack")
        labels = [a.label for a in self.attacks]
        twice = sorted({lab for lab in labels if labels.count(lab) > 1})
        if twice:
            raise ConfigError(f"evaluation.attacks: {', '.join(twice)} is given more than once; give each attack once")
        if self.eps is not None and not self.eps:
            raise ConfigError("evaluation.eps: give at least one ε (or leave it out for the threat model's)")
        if self.eps is not None and len(set(self.eps)) < len(self.eps):
            raise ConfigError(f"evaluation.eps: {list(self.eps)} gives an ε more than once; give each ε once")
        for e in self.eps or (DEFAULT_EPS[self.norm],):
            check_eps(e, self.norm)
            for a in self.attacks:
                a.build(e, self.norm)  # every option checked before any model runs
        _check_int("n_per_class", self.n_per_class, 1, optional=True)
        _check_int("first_n", self.first_n, 1, optional=True)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("seed", self.seed, 0)
        _check_int("boundary_per_class", self.boundary_per_class, 0)
        if self.n_per_class is not None and self.first_n is not None:
            raise ConfigError("evaluation: give n_per_class or first_n, not both")
        for name in ("cascade", "early_stop", "analyses"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"evaluation.{name} must be true or false, got {getattr(self, name)!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"evaluation.precision must be fp32 or bf16, got {self.precision!r}")
        if not isinstance(self.split, str) or not self.split:
            raise ConfigError(f"evaluation.split must be a split name (test, val, train), got {self.split!r}")
        if self.targeted is not None and (isinstance(self.targeted, bool) or not isinstance(self.targeted, str | int)):
            raise ConfigError(f"evaluation.targeted is 'all', a class name or an index, got {self.targeted!r}")

    # --- resolution -------------------------------------------------------------------------

    def resolved(self, default_eps: float | None = None) -> EvalSpec:
        """The spec with ε filled in (``default_eps``, else the norm's RobustBench budget) and the
        seed given to attacks that take one, so that what is stored is what ran."""
        eps = self.eps if self.eps is not None else (default_eps if default_eps else DEFAULT_EPS[self.norm],)
        attacks = tuple(a.with_default("seed", self.seed) for a in self.attacks)
        return replace(self, eps=eps, attacks=attacks)

    def build(self) -> list[tuple[float, list[Attack]]]:
        """Each ε with its attacks, built (the spec must be :meth:`resolved`)."""
        if self.eps is None:
            raise ConfigError("resolve the evaluation's ε first (EvalSpec.resolved)")
        return [(e, [a.build(e, self.norm) for a in self.attacks]) for e in self.eps]

    def pgd(self) -> AttackSpec:
        """The PGD the boundary distance and the targeted matrix use: the spec's first PGD with its
        options, else PGD with its defaults."""
        return next((a for a in self.attacks if a.name == "pgd"), AttackSpec("pgd"))

    @property
    def images(self) -> str:
        """Which images, in words: ``first 100 test images per class``."""
        if self.n_per_class is not None:
            return f"first {self.n_per_class} {self.split} images per class"
        if self.first_n is not None:
            return f"first {self.first_n} {self.split} images"
        return f"all {self.split} images"

    def describe(self) -> str:
        """One line for tables: ``pgd(steps=10) at ε=8/255 (Linf), first 300 test images per class``."""
        from classwise.attacks import format_eps

        eps = ", ".join(format_eps(e) for e in self.eps) if self.eps else "the threat model's ε"
        return f"{' + '.join(a.label for a in self.attacks)} at ε={eps} ({self.norm}), {self.images}"

    # --- plain data -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["attacks"] = [a.to_value() for a in self.attacks]
        out["eps"] = None if self.eps is None else list(self.eps)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "evaluation") -> EvalSpec:
        """From plain data (YAML, JSON); errors name ``where`` and the field."""
        if data is None:
            return cls()
        if isinstance(data, EvalSpec):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping of evaluation settings, got {data!r}")
        values = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            prefix = f"{where}." if where else ""
            raise ConfigError(f"{prefix}{unknown[0]}: unknown setting; known: {', '.join(sorted(known))}")
        try:
            if "attacks" in values:
                raw = values["attacks"]
                values["attacks"] = tuple(raw) if isinstance(raw, list | tuple) else (raw,)
            return cls(**values)
        except (ConfigError, UnknownNameError) as exc:
            raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None

    def with_settings(self, assignments: Iterable[str]) -> EvalSpec:
        """The spec with ``evaluation.KEY=VALUE`` settings applied (``evaluation.precision=bf16``,
        ``evaluation.attacks=[fgsm, pgd]``), read as a training config's ``evaluation`` section is."""
        tree = apply_overrides({"evaluation": self.to_dict()}, assignments)
        other = sorted(set(tree) - {"evaluation"})
        if other:
            raise ConfigError(
                f"{other[0]}: not an evaluation setting; they are evaluation.KEY=VALUE, e.g. evaluation.seed=1 "
                "(classwise config lists them)"
            )
        return EvalSpec.from_dict(tree["evaluation"])

    def fingerprint(self) -> str:
        """sha256 of the spec's plain data (identical specs, identical fingerprints)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def _eps_value(e: Any) -> float:
    if isinstance(e, str):
        return parse_eps(e)  # text: "cannot read ε ..." names what was written
    try:
        return number(e, "evaluation.eps")  # the one reader of numbers and fractions (classwise.config)
    except ConfigError:
        raise ConfigError(f"evaluation.eps: ε values are numbers or fractions like 8/255, got {e!r}") from None


def _check_int(name: str, value: Any, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"evaluation.{name} must be a whole number >= {minimum}, got {value!r}")


def spec_from_options(
    attacks: Sequence[str] | None = None,
    *,
    steps: int | None = None,
    step_size: float | None = None,
    restarts: int | None = None,
    loss: str | None = None,
    **fields_: Any,
) -> EvalSpec:
    """An EvalSpec from command-line style options: ``steps``, ``step_size``, ``restarts`` and
    ``loss`` become options of every attack that takes them (and does not set them itself)."""
    spec = EvalSpec(attacks=tuple(AttackSpec.parse(a) for a in attacks or ("pgd",)), **fields_)
    shared = {"steps": steps, "step_size": step_size, "restarts": restarts, "loss": loss}
    out = spec.attacks
    for key, value in shared.items():
        out = tuple(a.with_default(key, value) for a in out)
    return replace(spec, attacks=out)
