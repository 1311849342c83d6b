"""Training methods as registered pieces. Each maps a batch to a *per-example* loss; the loop
then weights and reduces it (the seam where class re-weighting plugs in), so no method copies
the loop.

- ``standard``: cross-entropy on clean images.
- ``pgd-at`` (Madry et al. 2018): cross-entropy on PGD examples (random start, ``attack_steps``),
  generated with the model in training mode as in Rice et al.'s reference code.
- ``fgsm-rs`` (Wong, Rice & Kolter 2020): one FGSM step of 1.25ε from a uniform random start.
- ``trades`` (Zhang et al. 2019): CE(f(x), y) + β·KL(f(x) ‖ f(x')), x' maximising the KL from
  x + 0.001·N(0, I), generated in eval mode as in the reference code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from classwise.attacks.pgd import pgd
from classwise.registry import Registry
from classwise.train.config import TrainConfig


@dataclass(frozen=True)
class MethodOutput:
    """Per-example loss (B,), and the logits the model was trained on (for running accuracy)."""

    loss: torch.Tensor
    logits: torch.Tensor


Method = Callable[[nn.Module, torch.Tensor, torch.Tensor, TrainConfig, torch.Generator], MethodOutput]
METHODS: Registry[Method] = Registry("training method")


@METHODS.register("standard")
def standard(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, g: torch.Generator) -> MethodOutput:
    """Cross-entropy on clean images."""
    logits = model(x)
    return MethodOutput(F.cross_entropy(logits.float(), y, reduction="none"), logits)


def _adversarial_ce(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, g: torch.Generator, steps: int
) -> MethodOutput:
    x_adv, _ = pgd(model, x, y, eps=cfg.eps, step_size=cfg.step_size, steps=steps, random_start=True, generator=g)
    logits = model(x_adv)
    return MethodOutput(F.cross_entropy(logits.float(), y, reduction="none"), logits)


@METHODS.register("pgd-at")
def pgd_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, g: torch.Generator) -> MethodOutput:
    """PGD adversarial training (Madry et al. 2018)."""
    return _adversarial_ce(model, x, y, cfg, g, cfg.attack_steps)


@METHODS.register("fgsm-rs")
def fgsm_rs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, g: torch.Generator) -> MethodOutput:
    """Fast adversarial training: FGSM from a random start (Wong et al. 2020)."""
    return _adversarial_ce(model, x, y, cfg, g, 1)


def kl_per_example(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p) ‖ softmax(q)) for each row."""
    log_p = F.log_softmax(p_logits.float(), 1)
    return (log_p.exp() * (log_p - F.log_softmax(q_logits.float(), 1))).sum(1)


@METHODS.register("trades")
def trades(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, g: torch.Generator) -> MethodOutput:
    """TRADES (Zhang et al. 2019) with trade-off β = ``trades_beta``."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        clean_logits = model(x).float()
    start = x + 0.001 * torch.randn(x.shape, device=x.device, generator=g)
    x_adv, _ = pgd(
        model,
        x,
        y,
        eps=cfg.eps,
        step_size=cfg.step_size,
        steps=cfg.attack_steps,
        generator=g,
        objective=lambda logits, rows: kl_per_example(clean_logits[rows], logits),
        x_init=start,
    )
    model.train(was_training)
    logits = model(x)
    adv_logits = model(x_adv)
    loss = F.cross_entropy(logits.float(), y, reduction="none") + cfg.trades_beta * kl_per_example(logits, adv_logits)
    return MethodOutput(loss, adv_logits)
