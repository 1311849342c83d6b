"""Attacks that return per-sample outcomes: FGSM, PGD (L∞/L2, CE/margin, targeted, restarts),
and AutoAttack through its reference implementation. ``build_attack("pgd:steps=50,loss=margin",
eps=8/255)`` is the one way to make one from a name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from classwise.attacks.autoattack import AutoAttack
from classwise.attacks.pgd import PGD, fgsm, pgd
from classwise.attacks.threat import check_eps, check_norm, flat_norm, format_eps, parse_eps, parse_eps_list, project
from classwise.errors import ConfigError
from classwise.registry import Registry


class Attack(Protocol):
    """What evaluation needs of an attack: its name, ball, and a batch ``run``."""

    @property
    def name(self) -> str: ...
    @property
    def eps(self) -> float: ...
    @property
    def norm(self) -> str: ...

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        targeted: bool = ...,
        early_stop: bool = ...,
        generator: torch.Generator | None = ...,
    ) -> tuple[Any, ...]: ...


ATTACKS: Registry[Callable[..., Attack]] = Registry("attack")
ATTACKS.register("fgsm", description="FGSM: one signed-gradient step of size ε (Goodfellow et al. 2015)")(fgsm)
ATTACKS.register("pgd", description="PGD with random start, restarts, CE or margin loss (Madry et al. 2018)")(PGD)
ATTACKS.register("autoattack", description="AutoAttack, reference implementation (Croce & Hein 2020)")(AutoAttack)

_INT_KEYS = {"steps", "restarts", "seed"}
_FLOAT_KEYS = {"step_size"}
_BOOL_KEYS = {"random_start"}


def parse_attack_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"pgd:steps=50,loss=margin"`` → ("pgd", {"steps": 50, "loss": "margin"})."""
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"attack option {item!r} in {spec!r} must be key=value")
        key = key.strip().replace("-", "_")
        if key in _INT_KEYS:
            options[key] = int(value)
        elif key in _FLOAT_KEYS:
            options[key] = parse_eps(value)
        elif key in _BOOL_KEYS:
            options[key] = value.strip().lower() in ("1", "true", "yes", "on")
        elif key == "attacks":
            options[key] = tuple(a for a in value.split("+") if a)
        else:
            options[key] = value.strip()
    return name.strip().lower(), options


def build_attack(spec: str, eps: float, norm: str = "Linf", **defaults: Any) -> Attack:
    """Make the attack ``spec`` names at budget ``eps``.

    ``defaults`` (e.g. ``steps=20``) apply where the attack takes them and ``spec`` does not set
    them; options in ``spec`` an attack does not take are an error.
    """
    import inspect

    name, options = parse_attack_spec(spec)
    factory = ATTACKS.get(name)
    params = set(inspect.signature(factory).parameters)
    unknown = set(options) - params
    if unknown:
        raise ConfigError(f"attack {name!r} takes no option(s) {sorted(unknown)}; it takes {sorted(params)}")
    kwargs = {k: v for k, v in defaults.items() if k in params and v is not None}
    kwargs.update(options)
    return factory(eps=eps, norm=norm, **kwargs)


__all__ = [
    "ATTACKS",
    "PGD",
    "Attack",
    "AutoAttack",
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
