"""AutoAttack (Croce & Hein 2020) through its reference implementation, the ``pyautoattack``
package (pinned). classwise does not re-implement it: each component runs the reference attack
object exactly as the reference ``run_standard_evaluation`` does (same settings, seed and
loss), and the evaluation engine feeds it the samples still robust, batch by batch, in the
reference's order. The per-sample outcomes are therefore the reference's, with two additions:
which component broke each sample, and a resumable, watchable loop.

Fewer than 10 classes: the targeted components attack min(9, K − 1) target classes. APGD-T's
targeted DLR loss divides by the gap between the largest and the 3rd/4th largest logits, so it
needs K ≥ 4; with K ≤ 3 it is left out and the evaluation says so (the reference's own check
warns that the loss is impossible there)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from classwise.attacks.base import ATTACKS
from classwise.attacks.threat import check_eps, check_norm
from classwise.errors import ConfigError

COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
# the fewest classes each component's loss can work with
MIN_CLASSES = {"apgd-ce": 2, "apgd-dlr": 3, "apgd-t": 4, "fab": 2, "fab-t": 2, "square": 2}


@ATTACKS.register("autoattack", description="AutoAttack, reference implementation (Croce & Hein 2020)")
@dataclass(frozen=True)
class AutoAttack:
    """AutoAttack settings: ``version`` ``standard`` (APGD-CE, APGD-T, FAB-T, Square) or ``custom``
    with ``attacks`` naming reference components (run with the reference's custom settings).
    ``seed`` is set explicitly, as its authors ask; by default it is the evaluation's seed."""

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
        if self.seed < 0:
            raise ConfigError(f"autoattack: seed must be >= 0, got {self.seed}")

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(self.attacks) if self.version == "custom" and self.attacks else STANDARD

    def plan(self, num_classes: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The components that can run on a ``num_classes``-way classifier, and notes on the rest."""
        run = tuple(c for c in self.components if num_classes >= MIN_CLASSES[c])
        notes = tuple(
            f"AutoAttack: {c} left out: its loss needs at least {MIN_CLASSES[c]} classes, the model has {num_classes}"
            for c in self.components
            if c not in run
        )
        if num_classes - 1 < 9 and any(c in run for c in ("apgd-t", "fab-t")):
            notes += (f"AutoAttack: targeted components attack {num_classes - 1} target classes (9 with 10+ classes)",)
        return run, notes

    def preflight(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[str]:
        """The reference's start-up checks (see :func:`reference_checks`)."""
        return reference_checks(model, x, y)

    def reference(self, model: nn.Module, num_classes: int, device: torch.device) -> object:
        """The reference AutoAttack object with this attack's settings."""
        from pyautoattack import AutoAttack as Reference

        custom = self.version == "custom"
        adversary = Reference(
            model,
            norm=self.norm,
            eps=self.eps,
            seed=self.seed,
            version="custom" if custom else "standard",
            attacks=list(self.components) if custom else None,
            device=device,
        )
        adversary.verbose = False
        adversary.logger.setLevel(logging.WARNING)
        targets = min(9, num_classes - 1)
        adversary.apgd_targeted.n_target_classes = targets
        adversary.fab.n_target_classes = targets
        return adversary

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        component: str | None = None,
        targeted: bool = False,
        early_stop: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One component on a batch, as the reference runs it: (x_adv, fooled)."""
        if targeted:
            raise ConfigError("autoattack runs untargeted here; use pgd for targeted evaluation")
        component = component or self.components[0]
        with torch.no_grad():
            num_classes = int(model(x[:1]).shape[1])
        adversary = self.reference(model, num_classes, x.device)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():  # the reference reseeds torch's global RNG
            adv = perturb(adversary, component, self.seed, x, y)
            fooled = model(adv).argmax(1) != y
        return torch.where(fooled.view(-1, *([1] * (x.ndim - 1))), adv.to(x.dtype), x), fooled


def perturb(adversary: object, component: str, seed: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """What the reference ``run_standard_evaluation`` does for ``component`` on one batch."""
    a = adversary  # pyautoattack.AutoAttack; its attributes are untyped
    if component in ("apgd-ce", "apgd-dlr"):
        a.apgd.loss = "ce" if component == "apgd-ce" else "dlr"  # type: ignore[attr-defined]
        a.apgd.seed = seed  # type: ignore[attr-defined]
        return a.apgd.perturb(x, y)  # type: ignore[attr-defined]
    if component in ("fab", "fab-t"):
        a.fab.targeted = component == "fab-t"  # type: ignore[attr-defined]
        if component == "fab-t":
            a.fab.n_restarts = 1  # type: ignore[attr-defined]
        a.fab.seed = seed  # type: ignore[attr-defined]
        return a.fab.perturb(x, y)  # type: ignore[attr-defined]
    if component == "square":
        a.square.seed = seed  # type: ignore[attr-defined]
        return a.square.perturb(x, y)  # type: ignore[attr-defined]
    if component == "apgd-t":
        a.apgd_targeted.seed = seed  # type: ignore[attr-defined]
        return a.apgd_targeted.perturb(x, y)  # type: ignore[attr-defined]
    raise ConfigError(f"unknown AutoAttack component {component!r}; known: {', '.join(COMPONENTS)}")


def reference_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[str]:
    """The reference's start-up checks (randomised defence, output range, dynamic forward), run once
    per evaluation; their warnings are returned."""
    from pyautoattack import checks

    caught: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(f"AutoAttack check: {record.getMessage()}")

    logger = logging.Logger("classwise.autoattack.checks", logging.WARNING)
    logger.addHandler(Collect())
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        checks.check_randomized(model, x, y, bs=len(x), logger=logger)
        checks.check_range_output(model, x, logger=logger)
        checks.check_dynamic(model, x, False, logger=logger)
    return caught
