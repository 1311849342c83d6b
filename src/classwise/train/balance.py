"""Long-tail and robust-fairness techniques as pieces that plug into the one training loop.

A :class:`Balancer` may change four things, each through one hook, and nothing else:

- ``criterion``: the per-example loss on logits (focal, LDAM, logit-adjusted cross-entropy);
- ``class_weights``: a weight per class applied to per-example losses (re-weighting,
  class-balanced, DRW, validation-driven weights); ``reduce`` combines them (FRL weighs the
  natural and boundary parts of TRADES separately);
- ``class_eps`` / ``class_beta``: a per-class attack budget or TRADES trade-off (per-class ε,
  FRL re-margin, CFA's CCM and CCR);
- ``sample_weights``: how often each training image is drawn (class-balanced re-sampling).

Validation-driven techniques learn from ``observe_validation`` (per-class clean and robust
accuracy), CFA from ``observe_training`` (per-class training robust accuracy). Their state is
saved with the run, so resuming continues them exactly.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from classwise.errors import ConfigError
from classwise.registry import Registry

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ADVERSARIAL = ("pgd-at", "trades", "fgsm-rs")


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y, reduction="none")


def normalise(w: torch.Tensor) -> torch.Tensor:
    """Scale class weights to sum to the number of classes (uniform weights are all 1)."""
    return w * (len(w) / w.sum())


def effective_number_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Class-balanced weights (Cui et al. 2019): (1 − β) / (1 − β^n_k), normalised."""
    return normalise((1 - beta) / (1 - torch.pow(beta, counts.double())).clamp_min(1e-12)).float()


class Balancer:
    """No balancing: the plain method. Subclasses override only the hooks they need."""

    methods: tuple[str, ...] = ("standard", *ADVERSARIAL)

    def __init__(self, counts: torch.Tensor, epochs: int) -> None:
        self.counts = counts.float()
        self.k = len(counts)
        self.epochs = epochs

    def criterion(self, epoch: int) -> Criterion:
        return cross_entropy

    def class_weights(self, epoch: int) -> torch.Tensor | None:
        return None

    def class_eps(self, epoch: int, eps: float) -> torch.Tensor | None:
        return None

    def class_beta(self, epoch: int, beta: float) -> torch.Tensor | None:
        return None

    def sample_weights(self, labels: torch.Tensor) -> torch.Tensor | None:
        return None

    def reduce(self, loss: torch.Tensor, y: torch.Tensor, parts: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        """Mean of class-weighted per-example losses; with no weights exactly ``loss.mean()``."""
        w = self.class_weights(epoch)
        return loss.mean() if w is None else (w.to(loss.device)[y] * loss).mean()

    def observe_validation(self, epoch: int, clean: torch.Tensor, robust: torch.Tensor | None) -> None:
        """Per-class validation accuracies after ``epoch``."""

    def observe_training(self, epoch: int, robust: torch.Tensor) -> None:
        """Per-class accuracy on the (adversarial) training inputs of ``epoch``."""

    def posthoc_logit_shift(self) -> torch.Tensor | None:
        """Added to the logits at prediction time (post-hoc logit adjustment), or None."""
        return None

    def average_decay(self, val_robust: torch.Tensor | None) -> float | None:
        """Decay with which to fold this epoch's weights into a weight average, or None to skip."""
        return None

    def state(self) -> dict[str, Any]:
        return {}

    def to(self, device: torch.device) -> Balancer:
        """Keep every per-class tensor on the training device (the loop calls this each epoch), so
        that steps index them there without host-to-device copies, which a CUDA graph cannot hold."""
        for key, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, key, value.to(device))
        return self

    def load(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


BALANCERS: Registry[type[Balancer]] = Registry("balancing technique")
BALANCERS.register("none", description="plain training method")(Balancer)


@BALANCERS.register("reweight")
class Reweight(Balancer):
    """Cost-sensitive re-weighting: ``inverse`` class frequency, class-balanced ``effective``
    number of samples (Cui et al. 2019, ``beta``), or ``user`` weights (``weights``)."""

    def __init__(
        self,
        counts: torch.Tensor,
        epochs: int,
        scheme: str = "inverse",
        beta: float = 0.9999,
        weights: list[float] | None = None,
    ) -> None:
        super().__init__(counts, epochs)
        if scheme == "inverse":
            self.weights = normalise(1 / self.counts.clamp_min(1))
        elif scheme == "effective":
            if not 0 <= beta < 1:
                raise ConfigError(f"reweight: beta must be in [0, 1), got {beta}")
            self.weights = effective_number_weights(counts, beta)
        elif scheme == "user":
            self.weights = _user_weights(weights, self.k)
        else:
            raise ConfigError(f"reweight: scheme must be inverse, effective or user, got {scheme!r}")

    def class_weights(self, epoch: int) -> torch.Tensor | None:
        return self.weights


def _user_weights(weights: list[float] | None, k: int) -> torch.Tensor:
    if weights is None or len(weights) != k:
        raise ConfigError(f"user weights need one value per class ({k}), got {weights}")
    w = torch.tensor(weights, dtype=torch.float32)
    if (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"user weights must be >= 0 with a positive sum, got {weights}")
    return w


@BALANCERS.register("adaptive-reweight")
class AdaptiveReweight(Balancer):
    """Class weights proportional to each class's validation error (``source`` clean or robust),
    recomputed after every validation and mixed with the previous weights at ``rate``."""

    def __init__(self, counts: torch.Tensor, epochs: int, source: str = "robust", rate: float = 1.0) -> None:
        super().__init__(counts, epochs)
        if source not in ("clean", "robust") or not 0 < rate <= 1:
            raise ConfigError(f"adaptive-reweight: source clean|robust and rate in (0, 1], got {source!r}, {rate}")
        self.source, self.rate = source, rate
        self.weights = torch.ones(self.k)

    def class_weights(self, epoch: int) -> torch.Tensor | None:
        return self.weights

    def observe_validation(self, epoch: int, clean: torch.Tensor, robust: torch.Tensor | None) -> None:
        acc = robust if self.source == "robust" and robust is not None else clean
        target = normalise((1 - acc).clamp_min(1e-3))
        self.weights = normalise((1 - self.rate) * self.weights + self.rate * target)

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights}


@BALANCERS.register("resample")
class Resample(Balancer):
    """Class-balanced re-sampling: each class is drawn equally often in expectation."""

    def sample_weights(self, labels: torch.Tensor) -> torch.Tensor | None:
        return 1.0 / self.counts.to(labels.device)[labels]


@BALANCERS.register("focal")
class Focal(Balancer):
    """Focal loss (Lin et al. 2017): (1 − p_y)^γ · CE."""

    def __init__(self, counts: torch.Tensor, epochs: int, gamma: float = 2.0) -> None:
        super().__init__(counts, epochs)
        if gamma < 0:
            raise ConfigError(f"focal: gamma must be >= 0, got {gamma}")
        self.gamma = gamma

    def criterion(self, epoch: int) -> Criterion:
        def focal(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            log_p = F.log_softmax(logits.float(), 1).gather(1, y[:, None]).squeeze(1)
            return -((1 - log_p.exp()) ** self.gamma) * log_p

        return focal


@BALANCERS.register("ldam")
class LDAM(Balancer):
    """LDAM loss with deferred re-weighting (Cao et al. 2019): margins Δ_k = C / n_k^(1/4) with the
    largest equal to ``max_margin``, logits scaled by ``scale``; from ``drw_start`` (fraction of the
    epochs) class-balanced weights with ``beta``. ``scale`` is 30 in the paper's normalised-head
    networks; with the plain linear heads here the default is 1."""

    def __init__(
        self,
        counts: torch.Tensor,
        epochs: int,
        max_margin: float = 0.5,
        scale: float = 1.0,
        drw_start: float = 0.8,
        beta: float = 0.9999,
    ) -> None:
        super().__init__(counts, epochs)
        if max_margin <= 0 or scale <= 0 or not 0 <= drw_start <= 1:
            raise ConfigError("ldam: max_margin and scale must be > 0 and drw_start in [0, 1]")
        m = self.counts.clamp_min(1) ** -0.25
        self.margins = m * (max_margin / m.max())
        self.scale, self.drw_epoch = scale, math.floor(drw_start * epochs)
        self.drw_weights = effective_number_weights(counts, beta)

    def criterion(self, epoch: int) -> Criterion:
        def ldam(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            shifted = logits.float() - F.one_hot(y, self.k) * self.margins.to(logits.device)[y][:, None]
            return F.cross_entropy(self.scale * shifted, y, reduction="none")

        return ldam

    def class_weights(self, epoch: int) -> torch.Tensor | None:
        return self.drw_weights if epoch >= self.drw_epoch else None


@BALANCERS.register("logit-adjust")
class LogitAdjust(Balancer):
    """Logit adjustment (Menon et al. 2021) with class priors π from the training counts:
    ``mode=loss`` trains on CE(z + τ log π); ``mode=posthoc`` trains plainly and predicts with
    z − τ log π (attacks see the adjusted model)."""

    def __init__(self, counts: torch.Tensor, epochs: int, tau: float = 1.0, mode: str = "loss") -> None:
        super().__init__(counts, epochs)
        if mode not in ("loss", "posthoc"):
            raise ConfigError(f"logit-adjust: mode must be loss or posthoc, got {mode!r}")
        self.mode = mode
        self.shift = tau * torch.log(self.counts.clamp_min(1) / self.counts.sum())

    def criterion(self, epoch: int) -> Criterion:
        if self.mode == "posthoc":
            return cross_entropy
        return lambda logits, y: cross_entropy(logits.float() + self.shift.to(logits.device), y)

    def posthoc_logit_shift(self) -> torch.Tensor | None:
        return -self.shift if self.mode == "posthoc" else None


@BALANCERS.register("class-eps")
class ClassEps(Balancer):
    """Per-class training budget: fixed ``values`` (pixel units, one per class), or ``adaptive``:
    ε_k = (``lam`` + r_k)·ε with r_k the class's validation robust accuracy (weak classes get a
    smaller ball, as in CFA's calibrated margins)."""

    methods = ADVERSARIAL

    def __init__(
        self,
        counts: torch.Tensor,
        epochs: int,
        values: list[float] | None = None,
        adaptive: bool = False,
        lam: float = 0.5,
    ) -> None:
        super().__init__(counts, epochs)
        if (values is None) == (not adaptive):
            raise ConfigError("class-eps: give either values (one ε per class) or adaptive=true")
        if values is not None and (len(values) != self.k or min(values) < 0 or max(values) > 1):
            raise ConfigError(f"class-eps: values need {self.k} budgets in [0, 1], got {values}")
        self.values = None if values is None else torch.tensor(values, dtype=torch.float32)
        self.lam = lam
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


@BALANCERS.register("frl")
class FRL(Balancer):
    """Fair Robust Learning (Xu et al. 2021) on TRADES' natural + boundary losses. After each
    validation, Lagrange multipliers grow for classes whose clean error (boundary error: robust
    minus clean) exceeds the average by more than ``tau_clean`` (``tau_boundary``):
    ``reweight`` raises those classes' loss weights, ``remargin`` their ε (×exp(2λ) in
    [0.98, 2.5]), ``both`` does both. ``rate1``, ``rate2``, ``lim`` as in the reference code."""

    methods = ("trades",)

    def __init__(
        self,
        counts: torch.Tensor,
        epochs: int,
        mode: str = "both",
        tau_clean: float = 0.1,
        tau_boundary: float = 0.1,
        rate1: float = 0.05,
        rate2: float = 0.1,
        lim: float = 0.5,
    ) -> None:
        super().__init__(counts, epochs)
        if mode not in ("reweight", "remargin", "both"):
            raise ConfigError(f"frl: mode must be reweight, remargin or both, got {mode!r}")
        self.mode, self.tau_clean, self.tau_boundary = mode, tau_clean, tau_boundary
        self.rate1, self.rate2, self.lim = rate1, rate2, lim
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


@BALANCERS.register("cfa")
class CFA(Balancer):
    """Class-wise calibrated fair adversarial training (Wei et al. 2023). CCM: from epoch
    ``begin`` (fraction of the epochs), ε_k = (λ1 + t_k)·ε with t_k last epoch's training robust
    accuracy of class k (``lambda1`` 0.5 for PGD-AT, 0.3 for TRADES). CCR (TRADES only): β_k =
    (λ2 + t_k)·β and the loss is normalised by 1 + β_k. FAWA: an average of the weights (decay
    ``fawa_decay``) that only takes epochs whose worst-class validation robust accuracy is at
    least ``fawa_threshold``; the run's final evaluation uses it."""

    methods = ADVERSARIAL

    def __init__(
        self,
        counts: torch.Tensor,
        epochs: int,
        lambda1: float = 0.5,
        lambda2: float = 0.5,
        ccr: bool = True,
        begin: float = 0.05,
        fawa_decay: float = 0.85,
        fawa_threshold: float = 0.2,
    ) -> None:
        super().__init__(counts, epochs)
        if not 0 <= begin <= 1 or not 0 <= fawa_decay < 1:
            raise ConfigError("cfa: begin must be in [0, 1] and fawa_decay in [0, 1)")
        self.lambda1, self.lambda2, self.ccr = lambda1, lambda2, ccr
        self.begin = math.floor(begin * epochs)
        self.fawa_decay, self.fawa_threshold = fawa_decay, fawa_threshold
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

    def average_decay(self, val_robust: torch.Tensor | None) -> float | None:
        if val_robust is None or float(val_robust.min()) < self.fawa_threshold:
            return None
        return self.fawa_decay

    def state(self) -> dict[str, Any]:
        return {"train_robust": self.train_robust}


def check_balancer(name: str, args: dict[str, Any], method: str) -> None:
    """The checks that need no data: known technique, known options, a method it combines with."""
    cls = BALANCERS.get(name)
    if method not in cls.methods:
        raise ConfigError(f"balancing technique {name!r} works with method(s) {', '.join(cls.methods)}, not {method!r}")
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "counts", "epochs"}
    unknown = set(args) - allowed
    if unknown:
        raise ConfigError(f"{name} takes no option(s) {sorted(unknown)}; it takes {sorted(allowed)}")
    if name == "cfa" and method != "trades" and args.get("ccr"):
        raise ConfigError("cfa: CCR calibrates TRADES' β; use ccr=false with pgd-at or fgsm-rs")


def make_balancer(name: str, args: dict[str, Any], counts: torch.Tensor, epochs: int, method: str) -> Balancer:
    """Build technique ``name`` with ``args``; any impossible combination fails here, before training."""
    check_balancer(name, args, method)
    cls = BALANCERS.get(name)
    if name == "cfa" and method != "trades":
        args = {"ccr": False, **args}
    try:
        return cls(counts, epochs, **args)
    except TypeError as exc:
        raise ConfigError(f"{name}: {exc}") from None
