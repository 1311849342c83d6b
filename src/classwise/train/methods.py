"""Training methods as registered pieces. Each maps a batch to a *per-example* loss (and, for
TRADES, its natural and boundary parts); the loop then weights and reduces it, the seam where
balancing techniques plug in, so no method copies the loop.

- ``standard``: the criterion (cross-entropy unless a technique changes it) on clean images.
- ``pgd-at`` (Madry et al. 2018): the criterion on PGD examples (random start, ``attack_steps``),
  generated with the model in training mode as in Rice et al.'s reference code.
- ``fgsm-rs`` (Wong, Rice & Kolter 2020): one FGSM step of 1.25ε from a uniform random start.
- ``trades`` (Zhang et al. 2019): criterion(f(x), y) + β·KL(f(x) ‖ f(x')), x' maximising the KL
  from x + 0.001·N(0, I), generated in eval mode as in the reference code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from classwise.attacks.pgd import pgd
from classwise.attacks.threat import Budget
from classwise.registry import Registry
from classwise.train.balance import Criterion, cross_entropy
from classwise.train.config import TrainConfig


@dataclass(frozen=True)
class Knobs:
    """What a balancing technique sets per batch: the attack budget (one or per example), TRADES'
    β (one or per example; per-example β also normalises the loss by 1 + β, as CFA's CCR does)
    and the per-example criterion."""

    eps: Budget
    beta: float | torch.Tensor
    criterion: Criterion = cross_entropy

    @classmethod
    def plain(cls, cfg: TrainConfig) -> Knobs:
        return cls(cfg.eps, cfg.trades_beta)


@dataclass(frozen=True)
class MethodOutput:
    """Per-example loss (B,), the logits the model was trained on (for running accuracy), and
    named parts of the loss (TRADES: ``natural``, ``boundary``)."""

    loss: torch.Tensor
    logits: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


Method = Callable[[nn.Module, torch.Tensor, torch.Tensor, TrainConfig, torch.Generator, Knobs], MethodOutput]
METHODS: Registry[Method] = Registry("training method")


@METHODS.register("standard")
def standard(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, g: torch.Generator, k: Knobs
) -> MethodOutput:
    """The criterion on clean images."""
    logits = model(x)
    return MethodOutput(k.criterion(logits, y), logits)


def _adversarial(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, g: torch.Generator, k: Knobs, steps: int
) -> MethodOutput:
    x_adv, _ = pgd(
        model, x, y, eps=k.eps, step_size=cfg.step_size, steps=steps, random_start=True, generator=g, judge=False
    )
    logits = model(x_adv)
    return MethodOutput(k.criterion(logits, y), logits)


@METHODS.register("pgd-at")
def pgd_at(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, g: torch.Generator, k: Knobs
) -> MethodOutput:
    """PGD adversarial training (Madry et al. 2018)."""
    return _adversarial(model, x, y, cfg, g, k, cfg.attack_steps)


@METHODS.register("fgsm-rs")
def fgsm_rs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, g: torch.Generator, k: Knobs
) -> MethodOutput:
    """Fast adversarial training: FGSM from a random start (Wong et al. 2020)."""
    return _adversarial(model, x, y, cfg, g, k, 1)


def kl_per_example(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p) ‖ softmax(q)) for each row."""
    log_p = F.log_softmax(p_logits.float(), 1)
    return (log_p.exp() * (log_p - F.log_softmax(q_logits.float(), 1))).sum(1)


@METHODS.register("trades")
def trades(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, g: torch.Generator, k: Knobs
) -> MethodOutput:
    """TRADES (Zhang et al. 2019) with trade-off β = ``trades_beta``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            clean_logits = model(x).float()
        start = x + 0.001 * torch.randn(x.shape, device=x.device, generator=g)
        x_adv, _ = pgd(
            model,
            x,
            y,
            eps=k.eps,
            step_size=cfg.step_size,
            steps=cfg.attack_steps,
            generator=g,
            objective=lambda logits, rows: kl_per_example(clean_logits[rows], logits),
            x_init=start,
            judge=False,
        )
    finally:  # the mode is the caller's, whatever happens during the attack
        model.train(was_training)
    logits = model(x)
    adv_logits = model(x_adv)
    natural, boundary = k.criterion(logits, y), kl_per_example(logits, adv_logits)
    beta = k.beta
    loss = natural + beta * boundary
    if isinstance(beta, torch.Tensor):  # class-wise β (CFA's CCR) normalises each example's loss
        loss = loss / (1 + beta)
    return MethodOutput(loss, adv_logits, {"natural": natural, "boundary": cfg.trades_beta * boundary})
