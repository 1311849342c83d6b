"""Projected gradient descent (Madry et al. 2018) and FGSM (Goodfellow et al. 2015) as its one-step case.

One core, :func:`pgd`, serves evaluation (with early stop: a sample fooled at any iterate is done
and leaves the batch, so later steps cost less) and training (fixed steps, whole batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from classwise.attacks.base import ATTACKS
from classwise.attacks.threat import Budget, check_eps, check_norm, flat_norm, per_sample, project
from classwise.errors import ConfigError

LOSSES = ("ce", "margin")


def attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: str, targeted: bool) -> torch.Tensor:
    """Per-sample objective to *ascend*. Untargeted: CE(y) or max_{j≠y} z_j − z_y. Targeted
    (``y`` is the target): −CE(t) or z_t − max_{j≠t} z_j."""
    if loss == "ce":
        value = F.cross_entropy(logits, y, reduction="none")
        return -value if targeted else value
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return true - others if targeted else others - true


def fooled_by(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    pred = logits.argmax(1)
    return pred == y if targeted else pred != y


def random_init(x: torch.Tensor, eps: Budget, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A uniform point of the L∞ ball, or a uniformly scaled random direction of the L2 ball."""
    if norm == "Linf":
        u = torch.rand(x.shape, device=x.device, generator=generator)
        delta = (2 * u - 1) * per_sample(eps, x)
    else:
        d = torch.randn(x.shape, device=x.device, generator=generator)
        r = torch.rand(x.shape[0], device=x.device, generator=generator)
        scale = r * (eps if isinstance(eps, float) else eps.to(x.dtype)) / flat_norm(d, "L2").clamp_min(1e-12)
        delta = d * scale.view(-1, *([1] * (x.ndim - 1)))
    return (x + delta).clamp(0.0, 1.0)


def ascent_step(x_adv: torch.Tensor, grad: torch.Tensor, step: Budget, norm: str) -> torch.Tensor:
    s = per_sample(step, x_adv)
    if norm == "Linf":
        return x_adv + s * grad.sign()
    g = grad / flat_norm(grad, "L2").clamp_min(1e-12).view(-1, *([1] * (grad.ndim - 1)))
    return x_adv + s * g


def default_step(eps: Budget, steps: int) -> Budget:
    """The step size every PGD in classwise takes unless told otherwise, in evaluation and in
    training alike: 2.5·ε/steps (Madry et al. 2018), so that the iterates can cross the ball."""
    return 2.5 * eps / steps


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: Budget,
    step_size: Budget,
    steps: int,
    norm: str = "Linf",
    loss: str = "ce",
    random_start: bool = True,
    targeted: bool = False,
    early_stop: bool = False,
    generator: torch.Generator | None = None,
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    x_init: torch.Tensor | None = None,
    judge: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run PGD on a batch; the model's mode is left as the caller set it.

    Args:
        eps, step_size: one for all samples, or one per sample (per-class ε in training).
        y: true labels (untargeted) or target labels (``targeted=True``).
        early_stop: stop updating a sample once it is fooled and keep that iterate (evaluation);
            without it every sample takes all ``steps`` and "fooled" is judged on the last iterate.
        objective: per-sample function of (logits, positions in the batch) to ascend instead of
            ``loss`` (TRADES ascends the KL to the clean prediction); positions let it index
            per-sample data such as clean probabilities.
        x_init: starting point (projected onto the ball) instead of the random or clean start.
        judge: run one more forward pass to judge the last iterate. Training passes False: it
            needs only the images, and in train mode that pass would also move BatchNorm's
            running statistics; the flags then mark only samples caught by early stop.

    Returns:
        (x_adv inside the ε-ball ∩ [0,1], fooled flags).
    """
    x = x.detach()
    x_adv = _start(x, eps, norm, random_start, generator, x_init)
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(steps):
        active = (~done).nonzero().squeeze(1) if early_stop else None
        if active is not None and active.numel() == 0:
            break
        x_adv = _step(model, x, x_adv, y, done, active, eps, step_size, norm, loss, targeted, objective)
    if judge:  # the last iterate of every sample not already fooled on the way
        _judge(model, x_adv, y, done, targeted)
    return x_adv.detach(), done


def _step(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    done: torch.Tensor,
    active: torch.Tensor | None,
    eps: Budget,
    step_size: Budget,
    norm: str,
    loss: str,
    targeted: bool,
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
) -> torch.Tensor:
    """One ascent step of the ``active`` samples (all when None); with early stop a sample the
    current iterate already fools is marked ``done`` and keeps that iterate."""
    xa = (x_adv if active is None else x_adv[active]).detach().requires_grad_(True)
    ya = y if active is None else y[active]
    logits = model(xa)
    if objective is None:
        value = attack_loss(logits.float(), ya, loss, targeted)
    else:
        value = objective(logits.float(), torch.arange(len(x), device=x.device) if active is None else active)
    (grad,) = torch.autograd.grad(value.sum(), xa)
    with torch.no_grad():
        x_a = x if active is None else x[active]
        eps_a, step_a = (
            v if active is None or not isinstance(v, torch.Tensor) else v[active] for v in (eps, step_size)
        )
        stepped = project(ascent_step(xa, grad, step_a, norm), x_a, eps_a, norm)
        if active is None:
            return stepped
        hit = fooled_by(logits, ya, targeted)
        done[active[hit]] = True  # keep the iterate that fooled it
        keep = active[~hit]
        x_adv[keep] = stepped[~hit]
        return x_adv


def _start(
    x: torch.Tensor,
    eps: Budget,
    norm: str,
    random_start: bool,
    generator: torch.Generator | None,
    x_init: torch.Tensor | None,
) -> torch.Tensor:
    if x_init is not None:
        return project(x_init.detach(), x, eps, norm)
    return random_init(x, eps, norm, generator) if random_start else x.clone()


@torch.no_grad()
def _judge(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, done: torch.Tensor, targeted: bool) -> None:
    left = (~done).nonzero().squeeze(1)
    if left.numel():
        done[left] = fooled_by(model(x_adv[left]), y[left], targeted)


@ATTACKS.register("pgd", description="PGD with random start, restarts, CE or margin loss (Madry et al. 2018)")
@dataclass(frozen=True)
class PGD:
    """PGD attack settings: 20 steps from a uniform random start, step size 2.5·ε/steps (Madry et
    al.'s rule: 1/255 for ε = 8/255 at 20 steps, 2/255 at 10) unless ``step_size`` is given; a
    sample counts as fooled if any of ``restarts`` runs fools it. FGSM is ``steps=1``,
    ``step_size=ε``, no random start. These are the defaults of every evaluation in classwise.

    Example:
        >>> attack = PGD(eps=8 / 255, steps=20)
        >>> x_adv, fooled = attack.run(model.eval(), x, y)  # doctest: +SKIP
    """

    eps: float
    norm: str = "Linf"
    steps: int = 20
    step_size: float | None = None
    random_start: bool = True
    restarts: int = 1
    loss: str = "ce"
    name: str = "pgd"

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", check_norm(self.norm))
        check_eps(self.eps, self.norm)
        if self.steps < 1 or self.restarts < 1:
            raise ConfigError(f"{self.name}: steps and restarts must be >= 1, got {self.steps}, {self.restarts}")
        if self.loss not in LOSSES:
            raise ConfigError(f"{self.name}: unknown loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        if self.step_size is not None and (self.step_size < 0 or (self.step_size == 0 and self.eps > 0)):
            raise ConfigError(f"{self.name}: step size must be > 0, got {self.step_size}")

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else float(default_step(self.eps, self.steps))

    def step_at(self, eps: Budget) -> Budget:
        """The step size this attack would take at budget ``eps`` (a float or one per sample): the
        same fraction of ε as at its own budget. The boundary-distance search uses it."""
        if self.step_size is None or self.eps == 0:
            return default_step(eps, self.steps)
        return self.step_size / self.eps * eps

    def plan(self, num_classes: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (self.name,), ()

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: Budget | None = None,
        step_scale: Budget = 1.0,
        generator: torch.Generator | None = None,
        objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        x_init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training examples: every sample takes all ``steps`` (no early stop, one restart) inside
        ``eps`` (this attack's budget, or one per sample where a technique sets them) with this
        attack's step times ``step_scale``, and the last iterate is returned unjudged, so that a
        model in train mode sees no extra forward pass. ``objective`` and ``x_init`` as in :func:`pgd`
        (TRADES ascends the KL from a start near the clean image)."""
        budget = self.eps if eps is None else eps
        how = {"generator": generator, "objective": objective, "x_init": x_init, "judge": False}
        return self.core(model, x, y, budget, self.alpha * step_scale, **how)[0]

    def core(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Budget, step: Budget, **how: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`pgd` with this attack's steps, norm, loss and start at budget ``eps`` and step
        ``step`` (one, or one per sample); ``how`` passes :func:`pgd`'s other arguments (and may
        override the start)."""
        settings = {"steps": self.steps, "norm": self.norm, "loss": self.loss, "random_start": self.random_start}
        return pgd(model, x, y, eps=eps, step_size=step, **{**settings, **how})

    def preflight(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[str]:
        return []

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
        """Best of ``restarts`` runs: a sample counts as fooled if any restart fools it."""
        x_best, fooled = self._once(model, x, y, targeted, early_stop, generator)
        for _ in range(self.restarts - 1):
            left = (~fooled).nonzero().squeeze(1)
            if left.numel() == 0:
                break
            x_new, f_new = self._once(model, x[left], y[left], targeted, early_stop, generator)
            x_best[left[f_new]] = x_new[f_new]
            fooled[left[f_new]] = True
        return x_best, fooled

    def _once(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        targeted: bool,
        early_stop: bool,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.core(
            model, x, y, self.eps, self.alpha, targeted=targeted, early_stop=early_stop, generator=generator
        )


@ATTACKS.register("fgsm", description="FGSM: one signed-gradient step of size ε (Goodfellow et al. 2015)")
def fgsm(eps: float, norm: str = "Linf", loss: str = "ce") -> PGD:
    """Fast gradient sign method: one step of size ε from the clean image."""
    return PGD(eps=eps, norm=norm, steps=1, step_size=eps, random_start=False, loss=loss, name="fgsm")
