"""Attacks that return per-sample outcomes: FGSM, PGD (L∞/L2, CE/margin, targeted, restarts),
and AutoAttack through its reference implementation.

An attack is a registered piece with options, written like every other one: a name, or
``{name: pgd, args: {steps: 50, loss: margin}}``; :func:`build_attack` is the one way to make
one at a budget ε. Options are typed by the attack's own annotations, so ``steps: abc`` is
refused with the option's name before anything runs."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Mapping
from typing import Any

from classwise.attacks.autoattack import AutoAttack
from classwise.attacks.base import ATTACKS, Attack
from classwise.attacks.pgd import PGD, fgsm, pgd
from classwise.attacks.threat import check_eps, check_norm, flat_norm, format_eps, parse_eps, parse_eps_list, project
from classwise.config import number
from classwise.errors import ConfigError

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
        try:
            return number(value, key)
        except ConfigError:
            raise bad("a number or a fraction like 2/255 (finite)") from None
    if not isinstance(value, str):
        raise bad("a name")
    return value.strip()


def parse_attack_spec(spec: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """An attack and its options, as written in YAML or on the command line: a name (``"pgd"``) or a
    mapping ``{name: pgd, args: {steps: 50, loss: margin}}`` (also as YAML text), with the name
    checked against the registry and each option against the attack's annotations."""
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("{"):
            import yaml

            try:
                spec = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"attack {text!r} is not a valid YAML mapping ({str(exc).splitlines()[0]})") from None
        elif text.startswith("[") or "," in text:
            raise ConfigError(
                f"one attack per --attack (or per list item in YAML): repeat the flag, e.g. --attack pgd "
                f"--attack fgsm; got {text!r}"
            )
        elif ":" in text or "=" in text:
            name = text.partition(":")[0]
            raise ConfigError(
                f"write attack options as a mapping: '{{name: {name}, args: {{steps: 50}}}}', not {text!r}"
            )
        else:
            spec = {"name": text}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ConfigError(f"an attack is a name or a mapping like {{name: pgd, args: {{steps: 20}}}}; got {spec!r}")
    extra = sorted(set(spec) - {"name", "args"})
    if extra:
        raise ConfigError(
            f"attack {spec['name']!r}: put options under args ({{name: ..., args: {{...}}}}), got {extra}"
        )
    args = spec.get("args") or {}
    if not isinstance(args, Mapping):
        raise ConfigError(f"attack {spec['name']!r}: args must be a mapping of options, got {args!r}")
    name = spec["name"].strip().lower()
    known = attack_options(name)  # unknown names raise here, with close matches
    options: dict[str, Any] = {}
    for key, value in args.items():
        key = str(key).replace("-", "_")
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
