"""What evaluation needs of an attack, and the registry each attack adds itself to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

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

    def preflight(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[str]:
        """Checks the attack runs once per evaluation before attacking (warnings)."""
        ...

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


ATTACKS: Registry[Callable[..., Attack]] = Registry("attack")  # filled where each attack is defined
