"""Training methods as registered pieces. Each maps a batch to a *per-example* loss (and, for
TRADES, its natural and boundary parts); the loop then weights and reduces it, the seam where
balancing techniques plug in, so no method copies the loop. A method declares its options (a
frozen dataclass, ``method.args`` in the config), whether it is adversarial, which parts its
loss has, and any check it runs at the end of an epoch.

- ``standard``: the criterion (cross-entropy unless a technique changes it) on clean images.
- ``pgd-at`` (Madry et al. 2018): the criterion on PGD examples (random start, ``steps``, step
  2.5·ε/steps by default), generated with the model in training mode as in Rice et al.'s code.
- ``fgsm-rs`` (Wong, Rice & Kolter 2020): one FGSM step of 1.25ε from a uniform random start,
  with their catastrophic-overfitting check at the end of every epoch.
- ``trades`` (Zhang et al. 2019): criterion(f(x), y) + β·KL(f(x) ‖ f(x')), x' maximising the KL
  from x + 0.001·N(0, I), generated in eval mode as in the reference code.

PGD-AT and TRADES train under L∞ or L2 (``threat.norm``): under L2 each step follows the
L2-normalised gradient and projects onto the ε-ball, as in TRADES' and Madry et al.'s L2 code.
FGSM-RS is L∞ only, as published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from classwise.attacks import PGD, build_attack
from classwise.attacks.threat import Budget
from classwise.config import field_help
from classwise.errors import ConfigError
from classwise.registry import Registry

log = logging.getLogger(__name__)

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y, reduction="none")


@dataclass(frozen=True)
class Knobs:
    """What a balancing technique sets per batch: the attack budget (one or per example), TRADES'
    β (one or per example; per-example β also normalises the loss by 1 + β, as CFA's CCR does),
    the per-example criterion, and a multiplier of the method's attack step (one or per example;
    DAFA scales the step with each class's ε)."""

    eps: Budget
    beta: float | torch.Tensor | None = None
    criterion: Criterion = cross_entropy
    step_scale: Budget = 1.0


@dataclass(frozen=True)
class MethodOutput:
    """Per-example loss (B,), the logits the model was trained on (for running accuracy), and
    named parts of the loss (TRADES: ``natural``, ``boundary``)."""

    loss: torch.Tensor
    logits: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochEnd:
    """What a method's end-of-epoch check may look at: the model, a fixed training batch, the
    training threat model, the evaluation seed, and the epoch's record to annotate."""

    model: nn.Module
    batch: Any  # LabeledImages: the first training images
    class_names: tuple[str, ...]
    eps: float
    seed: int
    record: dict[str, Any]


@dataclass(frozen=True)
class NoOptions:
    """This piece (a method or a technique) takes no options."""


class Method:
    """A training method. Subclasses set ``Options`` (a frozen dataclass), ``adversarial``, ``parts``
    (the named parts of their loss), ``uses_beta`` and ``norms`` (the threat models it is published
    for), and implement :meth:`loss`."""

    Options: ClassVar[type] = NoOptions
    adversarial: ClassVar[bool] = True
    parts: ClassVar[tuple[str, ...]] = ()
    uses_beta: ClassVar[bool] = False
    norms: ClassVar[tuple[str, ...]] = ("Linf", "L2")

    def __init__(self, options: Any, eps: float, norm: str = "Linf") -> None:
        self.options, self.eps, self.norm = options, eps, norm

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, k: Knobs) -> MethodOutput:
        raise NotImplementedError

    def beta(self) -> float | None:
        """TRADES' trade-off, for the methods that have one."""
        return None

    def end_of_epoch(self, end: EpochEnd) -> bool:
        """Checks after an epoch; True stops the run (its best checkpoint predates the problem)."""
        return False

    def state(self) -> dict[str, Any]:
        return {}

    def load(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


METHODS: Registry[type[Method]] = Registry("training method")


@METHODS.register("standard")
class Standard(Method):
    """The criterion on clean images."""

    adversarial = False

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, k: Knobs) -> MethodOutput:
        logits = model(x)
        return MethodOutput(k.criterion(logits, y), logits)


@dataclass(frozen=True)
class PGDOptions:
    steps: int = field_help("attack iterations per training step", default=10)
    step_size: float | None = field_help("attack step in pixel units (null: 2.5·ε/steps)", default=None)

    def __post_init__(self) -> None:
        _check_attack(self.steps, self.step_size)


def _check_attack(steps: int, step_size: float | None) -> None:
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if step_size is not None and step_size <= 0:
        raise ConfigError(f"step_size must be > 0, got {step_size}")


def _training_attack(eps: float, norm: str, steps: int, step_size: float | None) -> PGD:
    """The method's attack, made through the attack registry like every other: its step rule
    (2.5·ε/steps unless ``step_size``) is the attack's own."""
    attack = build_attack("pgd", {"steps": steps, "step_size": step_size}, eps, norm)
    assert isinstance(attack, PGD)
    return attack


def _adversarial(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, k: Knobs, attack: PGD
) -> MethodOutput:
    """The criterion on ``attack``'s examples at the technique's budget and step (``k``)."""
    x_adv = attack.perturb(model, x, y, eps=k.eps, step_scale=k.step_scale, generator=g)
    logits = model(x_adv)
    return MethodOutput(k.criterion(logits, y), logits)


@METHODS.register("pgd-at")
class PGDAT(Method):
    """PGD adversarial training (Madry et al. 2018)."""

    Options = PGDOptions

    def __init__(self, options: Any, eps: float, norm: str = "Linf") -> None:
        super().__init__(options, eps, norm)
        self.attack = _training_attack(eps, norm, options.steps, options.step_size)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, k: Knobs) -> MethodOutput:
        return _adversarial(model, x, y, g, k, self.attack)


@dataclass(frozen=True)
class FGSMOptions:
    step_size: float | None = field_help("FGSM step in pixel units (null: 1.25·ε, Wong et al.)", default=None)
    co_check: bool = field_help(
        "stop when PGD accuracy on a training batch falls 20 points below its best", default=True
    )

    def __post_init__(self) -> None:
        _check_attack(1, self.step_size)


@METHODS.register("fgsm-rs")
class FGSMRS(Method):
    """Fast adversarial training: FGSM from a random start (Wong et al. 2020), with their check for
    catastrophic overfitting as in their code: PGD-5 (step ε/4, their 2/255 at 8/255) accuracy on a
    fixed training batch after every epoch; a fall of more than 20 points from the previous
    epoch's stops training (``best.pt`` predates it)."""

    Options = FGSMOptions
    norms = ("Linf",)  # Wong et al.'s step and overfitting check are L∞ ones

    def __init__(self, options: Any, eps: float, norm: str = "Linf") -> None:
        super().__init__(options, eps, norm)
        step = options.step_size if options.step_size is not None else 1.25 * eps
        self.attack = _training_attack(eps, norm, 1, step)
        self.co_last: float | None = None  # the previous epoch's PGD accuracy on the fixed batch

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, k: Knobs) -> MethodOutput:
        return _adversarial(model, x, y, g, k, self.attack)

    def end_of_epoch(self, end: EpochEnd) -> bool:
        if not self.options.co_check:
            return False
        from classwise.evaluate import AttackSpec, EvalSpec, evaluate

        pgd5 = AttackSpec("pgd", {"steps": 5, "step_size": end.eps / 4})
        spec = EvalSpec(attacks=(pgd5,), eps=(end.eps,), seed=end.seed, analyses=False)
        ev = evaluate(end.model, end.batch, spec, class_names=end.class_names, progress=False)
        acc = float(ev.worst[0].robust.mean())
        end.record["co_pgd_acc"] = acc
        if self.co_last is not None and acc < self.co_last - 0.2:
            end.record["catastrophic_overfitting"] = True
            log.warning(
                "catastrophic overfitting at epoch %d: PGD accuracy on a training batch fell from %.1f%% to "
                "%.1f%% since the previous epoch; stopping (best.pt is from before)",
                end.record["epoch"] + 1,
                100 * self.co_last,
                100 * acc,
            )
            return True
        self.co_last = acc
        return False

    def state(self) -> dict[str, Any]:
        return {"co_last": self.co_last}


def kl_per_example(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p) ‖ softmax(q)) for each row."""
    log_p = F.log_softmax(p_logits.float(), 1)
    return (log_p.exp() * (log_p - F.log_softmax(q_logits.float(), 1))).sum(1)


@dataclass(frozen=True)
class TRADESOptions:
    beta: float = field_help("trade-off β between the natural and the boundary (KL) loss", default=6.0)
    steps: int = field_help("KL attack iterations per training step", default=10)
    step_size: float | None = field_help("attack step in pixel units (null: 2.5·ε/steps)", default=None)

    def __post_init__(self) -> None:
        _check_attack(self.steps, self.step_size)
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")


@METHODS.register("trades")
class TRADES(Method):
    """TRADES (Zhang et al. 2019) with trade-off β."""

    Options = TRADESOptions
    parts = ("natural", "boundary")
    uses_beta = True

    def __init__(self, options: Any, eps: float, norm: str = "Linf") -> None:
        super().__init__(options, eps, norm)
        self.attack = _training_attack(eps, norm, options.steps, options.step_size)

    def beta(self) -> float | None:
        return float(self.options.beta)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, k: Knobs) -> MethodOutput:
        o = self.options
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                clean_logits = model(x).float()
            start = x + 0.001 * torch.randn(x.shape, device=x.device, generator=g)
            x_adv = self.attack.perturb(
                model,
                x,
                y,
                eps=k.eps,
                step_scale=k.step_scale,
                generator=g,
                objective=lambda logits, rows: kl_per_example(clean_logits[rows], logits),
                x_init=start,
            )
        finally:  # the mode is the caller's, whatever happens during the attack
            model.train(was_training)
        logits = model(x)
        adv_logits = model(x_adv)
        natural, boundary = k.criterion(logits, y), kl_per_example(logits, adv_logits)
        beta = k.beta if k.beta is not None else o.beta
        loss = natural + beta * boundary
        if isinstance(beta, torch.Tensor):  # class-wise β (CFA's CCR) normalises each example's loss
            loss = loss / (1 + beta)
        return MethodOutput(loss, adv_logits, {"natural": natural, "boundary": o.beta * boundary})
