"""Robust-fairness techniques inside adversarial training: per-class training budgets (fixed, or
adapted from validation robustness), Fair Robust Learning (Xu et al. 2021), class-wise
calibrated fair adversarial training (CFA, Wei et al. 2023), worst-class adversarial training
(WAT, Li & Liu 2023) and distance-aware fair adversarial training (DAFA, Lee et al. 2024). Each
registers itself as a technique and takes only the roles it needs (``classwise.train.balance``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from classwise.config import field_help
from classwise.errors import ConfigError
from classwise.train.balance import (
    TECHNIQUES,
    AveragingRole,
    BudgetRole,
    ObserverRole,
    ReductionRole,
    Technique,
    WeightsRole,
)
from classwise.train.methods import Method


@TECHNIQUES.register("class-eps")
class ClassEps(Technique, BudgetRole, ObserverRole):
    """Per-class training budget: fixed ``values`` (pixel units, one per class), or adaptive (the
    default when no values are given): ε_k = (``lam`` + r_k)·ε with r_k the class's validation
    robust accuracy (weak classes get a smaller ball, as in CFA's calibrated margins)."""

    requires_adversarial = True

    @dataclass(frozen=True)
    class Options:
        values: tuple[float, ...] | None = field_help("fixed budgets, one per class, in pixel units", default=None)
        adaptive: bool | None = field_help("budgets from validation robustness (null: when no values)", default=None)
        lam: float = field_help("adaptive: ε_k = (lam + r_k)·ε", default=0.5)

        def __post_init__(self) -> None:
            if self.values is not None and self.adaptive:
                raise ConfigError("class-eps: give either values (one ε per class) or adaptive=true, not both")
            if self.values is None and self.adaptive is False:
                raise ConfigError("class-eps: with adaptive=false give values, one ε per class")
            if self.values is not None and (not self.values or min(self.values) < 0 or max(self.values) > 1):
                raise ConfigError(f"class-eps: values need budgets in [0, 1], got {list(self.values)}")

    def __init__(self, counts: torch.Tensor, epochs: int, method: type[Method], options: Any = None) -> None:
        super().__init__(counts, epochs, method, options)
        values = self.options.values
        if values is not None and len(values) != self.k:
            raise ConfigError(f"class-eps: values need {self.k} budgets in [0, 1], got {list(values)}")
        self.values = None if values is None else torch.tensor(values, dtype=torch.float32)
        self.lam = self.options.lam
        self.multiplier: torch.Tensor | None = None

    def class_eps(self, epoch: int, eps: float) -> torch.Tensor | None:
        if self.values is not None:
            return self.values
        return None if self.multiplier is None else self.multiplier * eps

    def observe_validation(self, epoch: int, clean: torch.Tensor, robust: torch.Tensor | None) -> None:
        if self.values is None and robust is not None:
            self.multiplier = self.lam + robust

    def state(self) -> dict[str, Any]:
        return {"multiplier": self.multiplier}


@TECHNIQUES.register("frl")
class FRL(Technique, BudgetRole, ReductionRole, ObserverRole):
    """Fair Robust Learning (Xu et al. 2021) on TRADES' natural + boundary losses. After each
    validation, Lagrange multipliers grow for classes whose clean error (boundary error: robust
    minus clean) exceeds the average by more than ``tau_clean`` (``tau_boundary``):
    ``reweight`` raises those classes' loss weights, ``remargin`` their ε (×exp(2λ) in
    [0.98, 2.5]), ``both`` does both. ``rate1``, ``rate2``, ``lim`` as in the reference code."""

    requires_adversarial = True
    needs_parts = ("natural", "boundary")

    @dataclass(frozen=True)
    class Options:
        mode: str = field_help("reweight (loss weights), remargin (ε) or both", default="both")
        tau_clean: float = field_help("tolerated excess of a class's clean error over the mean", default=0.1)
        tau_boundary: float = field_help("tolerated excess of a class's boundary error over the mean", default=0.1)
        rate1: float = field_help("step of the re-weighting multipliers", default=0.05)
        rate2: float = field_help("step of the re-margin multipliers", default=0.1)
        lim: float = field_help("bound on the sum of the re-weighting multipliers", default=0.5)

        def __post_init__(self) -> None:
            if self.mode not in ("reweight", "remargin", "both"):
                raise ConfigError(f"frl: mode must be reweight, remargin or both, got {self.mode!r}")

    def __init__(self, counts: torch.Tensor, epochs: int, method: type[Method], options: Any = None) -> None:
        super().__init__(counts, epochs, method, options)
        o = self.options
        self.mode, self.tau_clean, self.tau_boundary = o.mode, o.tau_clean, o.tau_boundary
        self.rate1, self.rate2, self.lim = o.rate1, o.rate2, o.lim
        self.lam_clean, self.lam_boundary, self.lam_margin = (
            torch.zeros(self.k),
            torch.zeros(self.k),
            torch.zeros(self.k),
        )

    def observe_validation(self, epoch: int, clean: torch.Tensor, robust: torch.Tensor | None) -> None:
        if robust is None:
            return
        clean_err, boundary_err = 1 - clean, clean - robust
        gap_clean = clean_err - clean_err.mean() - self.tau_clean
        gap_boundary = boundary_err - boundary_err.mean() - self.tau_boundary
        if self.mode in ("reweight", "both"):
            self.lam_clean = self._simplex(self.lam_clean + self.rate1 * gap_clean)
            self.lam_boundary = self._simplex(self.lam_boundary + 2 * self.rate1 * gap_boundary)
        if self.mode in ("remargin", "both"):
            self.lam_margin = self.lam_margin + self.rate2 * gap_boundary

    def _simplex(self, lam: torch.Tensor) -> torch.Tensor:
        lam = lam.clamp_min(0)
        return lam * (self.lim / lam.sum()) if lam.sum() > self.lim else lam

    def _weights(self, lam: torch.Tensor) -> torch.Tensor:
        return 1 / self.k + lam - lam.mean()

    def class_eps(self, epoch: int, eps: float) -> torch.Tensor | None:
        return torch.exp(2 * self.lam_margin).clamp(0.98, 2.5) * eps if self.mode != "reweight" else None

    def reduce(self, loss: torch.Tensor, y: torch.Tensor, parts: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        w_nat = self._weights(self.lam_clean).to(loss.device)[y]
        w_bnd = self._weights(self.lam_boundary).to(loss.device)[y]
        return (parts["natural"] * w_nat + parts["boundary"] * w_bnd).sum() / (w_nat + w_bnd).sum()

    def state(self) -> dict[str, Any]:
        return {"lam_clean": self.lam_clean, "lam_boundary": self.lam_boundary, "lam_margin": self.lam_margin}


@TECHNIQUES.register("cfa")
class CFA(Technique, BudgetRole, ObserverRole, AveragingRole):
    """Class-wise calibrated fair adversarial training (Wei et al. 2023). CCM: from epoch
    ``begin`` (fraction of the epochs), ε_k = (λ1 + t_k)·ε with t_k last epoch's training robust
    accuracy of class k (``lambda1`` 0.5 for PGD-AT, 0.3 for TRADES). CCR (TRADES only): β_k =
    (λ2 + t_k)·β and the loss is normalised by 1 + β_k. FAWA: an average of the weights (decay
    ``fawa_decay``) that only takes epochs whose worst-class validation robust accuracy is at
    least ``fawa_threshold``; the run's final evaluation uses it. ``fawa: false`` leaves the
    average out (the paper's ablation of CCM and CCR alone), so the run is evaluated with ``best.pt``."""

    requires_adversarial = True

    @dataclass(frozen=True)
    class Options:
        lambda1: float = field_help("CCM: ε_k = (lambda1 + t_k)·ε (0.5 for PGD-AT, 0.3 for TRADES)", default=0.5)
        lambda2: float = field_help("CCR: β_k = (lambda2 + t_k)·β", default=0.5)
        ccr: bool | None = field_help("calibrate TRADES' β per class (null: where the method has a β)", default=None)
        begin: float = field_help("calibrate from this fraction of the epochs, in [0, 1]", default=0.05)
        fawa_decay: float = field_help("FAWA: the weight average's decay, in [0, 1)", default=0.85)
        fawa_threshold: float = field_help("FAWA: least worst-class validation robustness to average", default=0.2)
        fawa: bool = field_help("keep the weight average and evaluate with it", default=True)

        def __post_init__(self) -> None:
            if not 0 <= self.begin <= 1 or not 0 <= self.fawa_decay < 1:
                raise ConfigError("cfa: begin must be in [0, 1] and fawa_decay in [0, 1)")

    def __init__(self, counts: torch.Tensor, epochs: int, method: type[Method], options: Any = None) -> None:
        super().__init__(counts, epochs, method, options)
        o = self.options
        self.lambda1, self.lambda2 = o.lambda1, o.lambda2
        self.ccr = method.uses_beta if o.ccr is None else o.ccr  # CCR calibrates TRADES' β where there is one
        self.begin = math.floor(o.begin * epochs)
        self.fawa_decay, self.fawa_threshold, self.fawa = o.fawa_decay, o.fawa_threshold, o.fawa
        self.train_robust: torch.Tensor | None = None

    def class_eps(self, epoch: int, eps: float) -> torch.Tensor | None:
        if epoch < self.begin or self.train_robust is None:
            return None
        return (self.lambda1 + self.train_robust) * eps

    def class_beta(self, epoch: int, beta: float) -> torch.Tensor | None:
        if not self.ccr or epoch < self.begin or self.train_robust is None:
            return None
        return (self.lambda2 + self.train_robust) * beta

    def observe_training(self, epoch: int, robust: torch.Tensor) -> None:
        self.train_robust = robust.float()

    @property
    def keeps_average(self) -> bool:
        return self.fawa

    def average_decay(self, val_robust: torch.Tensor | None) -> float | None:
        if val_robust is None or float(val_robust.min()) < self.fawa_threshold:
            return None
        return self.fawa_decay

    def state(self) -> dict[str, Any]:
        return {"train_robust": self.train_robust, "average": self.average}

    @classmethod
    def check(cls, options: Any, method: type[Method]) -> None:
        if options.ccr and not method.uses_beta:
            raise ConfigError("cfa: CCR calibrates TRADES' β; this method has none: leave ccr out or set ccr=false")


@TECHNIQUES.register("wat")
class WAT(Technique, WeightsRole, ObserverRole):
    """Worst-class adversarial training (Li & Liu, AAAI 2023), on TRADES in the paper: Hedge
    (exponentially weighted experts) over the K classes plus one expert for the expected loss.
    After each validation the cost of class k is the mean of the method's own loss (TRADES:
    natural + β·KL, its attack included) over the validation images of class k, the extra expert's
    the mean over all; with C the costs summed over the validations so far, the weights are
    w = K·softmax(``eta``·C) over the K + 1 experts, and an example of class k is weighted
    w_k + w_K (its class's weight plus the expected-loss term). All weights start at 1."""

    requires_adversarial = True
    wants_validation_loss = True

    @dataclass(frozen=True)
    class Options:
        eta: float = field_help("Hedge's learning rate, > 0", default=0.1)

        def __post_init__(self) -> None:
            if not self.eta > 0:
                raise ConfigError(f"wat: eta (the Hedge learning rate) must be > 0, got {self.eta}")

    def __init__(self, counts: torch.Tensor, epochs: int, method: type[Method], options: Any = None) -> None:
        super().__init__(counts, epochs, method, options)
        self.eta = self.options.eta
        self.cost = torch.zeros(self.k + 1)
        self.weights = torch.ones(self.k + 1)

    def observe_validation_loss(self, epoch: int, loss: torch.Tensor) -> None:
        cost = torch.cat([loss.float(), loss.float().mean()[None]])  # the validation split is class-balanced
        self.cost = self.cost.to(cost.device) + cost
        self.weights = self.k * torch.softmax(self.eta * self.cost, 0)

    def class_weights(self, epoch: int) -> torch.Tensor | None:
        return self.weights[: self.k] + self.weights[self.k]

    def state(self) -> dict[str, Any]:
        return {"cost": self.cost, "weights": self.weights}


def dafa_weights(probs: torch.Tensor, lam: float) -> torch.Tensor:
    """DAFA's class weights from the (K, K) class-mean predicted probabilities ``probs`` (row i: the
    mean probability vector of class i's adversarial examples): w_i = 1 + λ·Σ_{j≠i} ±p_ij·p_jj,
    + where class i is harder than class j (p_ii < p_jj: i takes weight from the classes it is
    confused with), − otherwise; never below 0."""
    p = probs.float()
    diag = p.diagonal()
    sign = torch.where(diag[:, None] < diag[None, :], 1.0, -1.0)
    share = sign * p * diag[None, :]
    share.fill_diagonal_(0)
    return (1 + lam * share.sum(1)).clamp_min(0)


@TECHNIQUES.register("dafa")
class DAFA(Technique, BudgetRole, ReductionRole, ObserverRole):
    """Distance-aware fair adversarial training (Lee et al., ICLR 2024). At the end of the warm-up
    epoch (the ``warmup`` fraction of the epochs; 70 of 110 in the reference) the class weights are
    set once from that epoch's class-mean predicted probabilities on the adversarial training
    inputs (:func:`dafa_weights`, scale ``lam``). From the next epoch on class i trains with
    ε_i = w_i·ε, attack step w_i times the method's, and its loss weighted by w_i: TRADES' natural
    (cross-entropy) part, as in the reference code, or the whole loss of other methods."""

    requires_adversarial = True

    @dataclass(frozen=True)
    class Options:
        lam: float = field_help("the weights' scale λ, >= 0", default=1.0)
        warmup: float = field_help("fraction of the epochs before the weights are set, in (0, 1)", default=70 / 110)

        def __post_init__(self) -> None:
            if not 0 < self.warmup < 1:
                raise ConfigError(
                    f"dafa: warmup is the fraction of the epochs before the weights, in (0, 1): {self.warmup}"
                )
            if self.lam < 0:
                raise ConfigError(f"dafa: lam must be >= 0, got {self.lam}")

    def __init__(self, counts: torch.Tensor, epochs: int, method: type[Method], options: Any = None) -> None:
        super().__init__(counts, epochs, method, options)
        self.lam = self.options.lam
        self.warmup_epoch = max(
            0, round(self.options.warmup * epochs) - 1
        )  # the epoch whose probabilities set the weights
        self.weights: torch.Tensor | None = None

    def observe_training_probs(self, epoch: int, probs: torch.Tensor) -> None:
        if epoch == self.warmup_epoch:
            self.weights = dafa_weights(probs, self.lam)

    def class_eps(self, epoch: int, eps: float) -> torch.Tensor | None:
        return None if self.weights is None else self.weights * eps

    def class_step_scale(self, epoch: int) -> torch.Tensor | None:
        return self.weights

    def reduce(self, loss: torch.Tensor, y: torch.Tensor, parts: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        if self.weights is None:
            return loss.mean()
        w = self.weights.to(loss.device)[y]
        if "natural" in parts:  # TRADES: natural + β·boundary, the natural part weighted
            return (w * parts["natural"] + parts["boundary"]).mean()
        return (w * loss).mean()

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights}
