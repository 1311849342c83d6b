"""AutoAttack (Croce & Hein 2020) through its reference implementation, the ``pyautoattack``
package (pinned). classwise does not re-implement it: it runs the reference attacks one at a
time on the still-robust samples, which is exactly AutoAttack's own cascade, so that it can
record which component broke each sample."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from classwise.attacks.threat import check_eps, check_norm
from classwise.errors import ConfigError

COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
STANDARD = {"Linf": ("apgd-ce", "apgd-t", "fab-t", "square"), "L2": ("apgd-ce", "apgd-t", "fab-t", "square")}


@dataclass(frozen=True)
class AutoAttack:
    """AutoAttack settings: ``version`` ``standard`` (APGD-CE, APGD-T, FAB-T, Square) or ``custom``
    with ``attacks`` naming reference components. ``seed`` is set explicitly, as its authors ask."""

    eps: float
    norm: str = "Linf"
    version: str = "standard"
    attacks: tuple[str, ...] | None = None
    seed: int = 0
    name: str = "autoattack"

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", check_norm(self.norm))
        check_eps(self.eps, self.norm)
        if self.version not in ("standard", "custom"):
            raise ConfigError(f"autoattack version must be standard or custom, got {self.version!r}")
        if self.version == "custom":
            if not self.attacks:
                raise ConfigError(f"autoattack version custom needs attacks, a subset of {', '.join(COMPONENTS)}")
            bad = [a for a in self.attacks if a not in COMPONENTS]
            if bad:
                raise ConfigError(f"unknown AutoAttack component(s) {bad}; known: {', '.join(COMPONENTS)}")
        elif self.attacks:
            raise ConfigError("autoattack: give attacks only with version=custom")

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(self.attacks) if self.version == "custom" and self.attacks else STANDARD[self.norm]

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        targeted: bool = False,
        early_stop: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
        """Per-sample AutoAttack outcome: (x_adv, fooled, component that broke each sample)."""
        if targeted:
            raise ConfigError("autoattack runs untargeted here; use pgd for targeted evaluation")
        from pyautoattack import AutoAttack as Reference

        adversary = Reference(model, norm=self.norm, eps=self.eps, version="standard", seed=self.seed, device=x.device)
        adversary.verbose = False
        adversary.logger.setLevel(logging.WARNING)
        x_adv, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        broken_by: list[str | None] = [None] * len(x)
        for component in self.components:
            left = (~fooled).nonzero().squeeze(1)
            if left.numel() == 0:
                break
            adversary.attacks_to_run = [component]
            adv, y_adv = adversary.run_standard_evaluation(x[left], y[left], batch_size=len(left))
            hit = y_adv.to(y.device) != y[left]
            x_adv[left[hit]] = adv[hit].to(x.device)
            fooled[left[hit]] = True
            for i in left[hit].tolist():
                broken_by[i] = component
        return x_adv, fooled, broken_by
