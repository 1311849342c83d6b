"""Attacks that return per-sample outcomes: FGSM, PGD (L∞/L2, CE/margin, targeted, restarts),
and AutoAttack through its reference implementation.

An attack is named with its options (``"pgd:steps=50,loss=margin"`` on the command line, or
``{"name": "pgd", "steps": 50}`` in YAML); :func:`build_attack` is the one way to make one at a
budget ε. Options are typed by the attack's own annotations, so ``pgd:steps=abc`` is refused
with the option's name before anything runs."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch
from torch import nn

from classwise.attacks.autoattack import AutoAttack
from classwise.attacks.pgd import PGD, fgsm, pgd
from classwise.attacks.threat import check_eps, check_norm, flat_norm, format_eps, parse_eps, parse_eps_list, project
from classwise.errors import ConfigError
from classwise.registry import Registry


class Attack(Protocol):
    """What evaluation needs of an attack: its name and ball, the components it runs one after
    the other on the samples still robust (one for PGD; APGD-CE, APGD-T, FAB-T, Square for
    AutoAttack), and a batch ``run`` of one component."""

    @property
    def name(self) -> str: ...
    @property
    def eps(self) -> float: ...
    @property
    def norm(self) -> str: ...

    def plan(self, num_classes: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(components to run for a ``num_classes``-way classifier, notes on what was adapted)."""
        ...

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        component: str | None = ...,
        targeted: bool = ...,
        early_stop: bool = ...,
        generator: torch.Generator | None = ...,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


ATTACKS: Registry[Callable[..., Attack]] = Registry("attack")
ATTACKS.register("fgsm", description="FGSM: one signed-gradient step of size ε (Goodfellow et al. 2015)")(fgsm)
ATTACKS.register("pgd", description="PGD with random start, restarts, CE or margin loss (Madry et al. 2018)")(PGD)
ATTACKS.register("autoattack", description="AutoAttack, reference implementation (Croce & Hein 2020)")(AutoAttack)

_NOT_OPTIONS = {"eps", "norm", "name"}  # set by the evaluation, not by the attack's options


def attack_options(name: str) -> dict[str, str]:
    """The options attack ``name`` takes, with their annotated types (``{"steps": "int", ...}``)."""
    factory = ATTACKS.get(name)
    hints = typing.get_type_hints(factory)
    if dataclasses.is_dataclass(factory):
        names = [f.name for f in dataclasses.fields(factory)]
    else:
        names = list(inspect.signature(factory).parameters)
    return {n: _type_name(hints.get(n, Any)) for n in names if n not in _NOT_OPTIONS}


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")


def coerce_option(attack: str, key: str, value: Any, kind: str) -> Any:
    """``value`` as the type ``kind`` names; strings (from the command line) are parsed, other
    values (from YAML or Python) must already have the type. Raises a ConfigError naming the option."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"attack {attack!r}: option {key} must be {expected}, got {value!r}")

    optional = "None" in kind
    if value is None:
        if optional:
            return None
        raise bad(kind)
    if "tuple" in kind:
        items = value.split("+") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) and i for i in items):
            raise bad("a list of names (a+b+c on the command line)")
        return tuple(items)
    if kind.startswith("bool"):
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise bad("true or false")
    if kind.startswith("int"):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad("a whole number")
    if kind.startswith("float"):
        if isinstance(value, str):
            try:
                return parse_eps(value)
            except ConfigError:
                raise bad("a number or a fraction like 2/255") from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise bad("a number")
    if not isinstance(value, str):
        raise bad("a name")
    return value.strip()


def parse_attack_spec(spec: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``"pgd:steps=50,loss=margin"`` or ``{"name": "pgd", "steps": 50}`` → ("pgd", {"steps": 50, ...}),
    with the name checked against the registry and each option against the attack's annotations."""
    if isinstance(spec, Mapping):
        raw = dict(spec)
        name = raw.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(f"an attack given as a mapping needs a name, e.g. {{name: pgd, steps: 20}}; got {spec}")
        items = [(str(k), v) for k, v in raw.items()]
    elif isinstance(spec, str):
        name, _, rest = spec.partition(":")
        items = []
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"attack option {item!r} in {spec!r} must be key=value")
            items.append((key.strip(), value.strip()))
    else:
        raise ConfigError(f"an attack is a name like 'pgd:steps=20' or a mapping, got {spec!r}")
    name = name.strip().lower()
    known = attack_options(name)  # unknown names raise here, with close matches
    options: dict[str, Any] = {}
    for key, value in items:
        key = key.replace("-", "_")
        if key not in known:
            raise ConfigError(f"attack {name!r} takes no option {key!r}; it takes {', '.join(sorted(known))}")
        options[key] = coerce_option(name, key, value, known[key])
    return name, options


def build_attack(name: str, options: Mapping[str, Any], eps: float, norm: str = "Linf") -> Attack:
    """Make attack ``name`` with ``options`` (already typed by :func:`parse_attack_spec`) at budget ``eps``."""
    try:
        return ATTACKS.get(name)(eps=eps, norm=norm, **options)
    except TypeError as exc:
        raise ConfigError(f"attack {name!r}: {exc}") from None


__all__ = [
    "ATTACKS",
    "PGD",
    "Attack",
    "AutoAttack",
    "attack_options",
    "build_attack",
    "check_eps",
    "check_norm",
    "fgsm",
    "flat_norm",
    "format_eps",
    "parse_attack_spec",
    "parse_eps",
    "parse_eps_list",
    "pgd",
    "project",
]
