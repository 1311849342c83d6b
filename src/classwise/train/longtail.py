"""Long-tail techniques inside any training method (Cui et al., Lin et al., Cao et al., Menon et
al.): class re-weighting (fixed or from validation), class-balanced re-sampling, focal loss,
LDAM with deferred re-weighting, and logit adjustment. Each registers itself as a technique and
takes only the roles it needs (``classwise.train.balance``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from classwise.config import field_help
from classwise.errors import ConfigError
from classwise.train.balance import (
    TECHNIQUES,
    CriterionRole,
    ObserverRole,
    PosthocRole,
    SamplingRole,
    Technique,
    WeightsRole,
    effective_number_weights,
    normalise,
)
from classwise.train.methods import Criterion, Method, cross_entropy


@TECHNIQUES.register("reweight")
class Reweight(Technique, WeightsRole):
    """Cost-sensitive re-weighting: ``inverse`` class frequency, class-balanced ``effective``
    number of samples (Cui et al. 2019, ``beta``), or ``user`` weights (``weights``)."""

    @dataclass(frozen=True)
    class Options:
        scheme: str = field_help("inverse (class frequency), effective (number of samples) or user", default="inverse")
        beta: float = field_help("effective: Cui et al.'s β of the effective number, in [0, 1)", default=0.9999)
        weights: tuple[float, ...] | None = field_help("user: one weight per class, >= 0", default=None)

        def __post_init__(self) -> None:
            if self.scheme not in ("inverse", "effective", "user"):
                raise ConfigError(f"reweight: scheme must be inverse, effective or user, got {self.scheme!r}")
            if not 0 <= self.beta < 1:
                raise ConfigError(f"reweight: beta must be in [0, 1), got {self.beta}")

    def __init__(self, counts: torch.Tensor, epochs: int, method: type[Method], options: Any = None) -> None:
        super().__init__(counts, epochs, method, options)
        o = self.options
        if o.scheme == "inverse":
            self.weights = normalise(1 / self.counts.clamp_min(1))
        elif o.scheme == "effective":
            self.weights = effective_number_weights(counts, o.beta)
        else:
            self.weights = _user_weights(o.weights, self.k)

    def class_weights(self, epoch: int) -> torch.Tensor | None:
        return self.weights


def _user_weights(weights: tuple[float, ...] | None, k: int) -> torch.Tensor:
    if weights is None or len(weights) != k:
        raise ConfigError(
            f"user weights need one value per class ({k}), got {None if weights is None else list(weights)}"
        )
    w = torch.tensor(weights, dtype=torch.float32)
    if (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"user weights must be >= 0 with a positive sum, got {list(weights)}")
    return w


@TECHNIQUES.register("adaptive-reweight")
class AdaptiveReweight(Technique, WeightsRole, ObserverRole):
    """Class weights proportional to each class's validation error (``source`` clean or robust),
    recomputed after every validation and mixed with the previous weights at ``rate``."""

    @dataclass(frozen=True)
    class Options:
        source: str = field_help("the validation accuracy the weights follow: clean or robust", default="robust")
        rate: float = field_help("how much of the new weights each validation mixes in, in (0, 1]", default=1.0)

        def __post_init__(self) -> None:
            if self.source not in ("clean", "robust") or not 0 < self.rate <= 1:
                raise ConfigError(
                    f"adaptive-reweight: source clean|robust and rate in (0, 1], got {self.source!r}, {self.rate}"
                )

    def __init__(self, counts: torch.Tensor, epochs: int, method: type[Method], options: Any = None) -> None:
        super().__init__(counts, epochs, method, options)
        self.source, self.rate = self.options.source, self.options.rate
        self.weights = torch.ones(self.k)

    def class_weights(self, epoch: int) -> torch.Tensor | None:
        return self.weights

    def observe_validation(self, epoch: int, clean: torch.Tensor, robust: torch.Tensor | None) -> None:
        acc = robust if self.source == "robust" and robust is not None else clean
        target = normalise((1 - acc).clamp_min(1e-3))
        self.weights = normalise((1 - self.rate) * self.weights + self.rate * target)

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights}


@TECHNIQUES.register("resample")
class Resample(Technique, SamplingRole):
    """Class-balanced re-sampling: each class is drawn equally often in expectation."""

    def sample_weights(self, labels: torch.Tensor) -> torch.Tensor | None:
        return 1.0 / self.counts.to(labels.device)[labels]


@TECHNIQUES.register("focal")
class Focal(Technique, CriterionRole):
    """Focal loss (Lin et al. 2017): (1 − p_y)^γ · CE."""

    @dataclass(frozen=True)
    class Options:
        gamma: float = field_help("the focusing exponent γ, >= 0 (0: cross-entropy)", default=2.0)

        def __post_init__(self) -> None:
            if self.gamma < 0:
                raise ConfigError(f"focal: gamma must be >= 0, got {self.gamma}")

    def __init__(self, counts: torch.Tensor, epochs: int, method: type[Method], options: Any = None) -> None:
        super().__init__(counts, epochs, method, options)
        self.gamma = self.options.gamma

    def criterion(self, epoch: int) -> Criterion:
        def focal(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            log_p = F.log_softmax(logits.float(), 1).gather(1, y[:, None]).squeeze(1)
            return -((1 - log_p.exp()) ** self.gamma) * log_p

        return focal


@TECHNIQUES.register("ldam")
class LDAM(Technique, CriterionRole, WeightsRole):
    """LDAM loss with deferred re-weighting (Cao et al. 2019): margins Δ_k = C / n_k^(1/4) with the
    largest equal to ``max_margin``, logits scaled by ``scale``; from ``drw_start`` (fraction of the
    epochs) class-balanced weights with ``beta``. ``scale`` is 30 in the paper's normalised-head
    networks; with the plain linear heads here the default is 1."""

    @dataclass(frozen=True)
    class Options:
        max_margin: float = field_help("the largest class margin (the rarest class's), > 0", default=0.5)
        scale: float = field_help("the logits' scale s, > 0", default=1.0)
        drw_start: float = field_help("deferred re-weighting from this fraction of the epochs, in [0, 1]", default=0.8)
        beta: float = field_help("the re-weighting's β of the effective number, in [0, 1)", default=0.9999)

        def __post_init__(self) -> None:
            if self.max_margin <= 0 or self.scale <= 0 or not 0 <= self.drw_start <= 1 or not 0 <= self.beta < 1:
                raise ConfigError("ldam: max_margin and scale must be > 0, drw_start in [0, 1] and beta in [0, 1)")

    def __init__(self, counts: torch.Tensor, epochs: int, method: type[Method], options: Any = None) -> None:
        super().__init__(counts, epochs, method, options)
        o = self.options
        m = self.counts.clamp_min(1) ** -0.25
        self.margins = m * (o.max_margin / m.max())
        self.scale, self.drw_epoch = o.scale, math.floor(o.drw_start * epochs)
        self.drw_weights = effective_number_weights(counts, o.beta)

    def criterion(self, epoch: int) -> Criterion:
        def ldam(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            shifted = logits.float() - F.one_hot(y, self.k) * self.margins.to(logits.device)[y][:, None]
            return F.cross_entropy(self.scale * shifted, y, reduction="none")

        return ldam

    def class_weights(self, epoch: int) -> torch.Tensor | None:
        return self.drw_weights if epoch >= self.drw_epoch else None


@TECHNIQUES.register("logit-adjust")
class LogitAdjust(Technique, CriterionRole, PosthocRole):
    """Logit adjustment (Menon et al. 2021) with class priors π from the training counts:
    ``mode=loss`` trains on CE(z + τ log π); ``mode=posthoc`` trains plainly and predicts with
    z − τ log π (attacks see the adjusted model)."""

    @dataclass(frozen=True)
    class Options:
        tau: float = field_help("the prior's temperature τ", default=1.0)
        mode: str = field_help(
            "loss (train on the adjusted logits) or posthoc (adjust the predictions)", default="loss"
        )

        def __post_init__(self) -> None:
            if self.mode not in ("loss", "posthoc"):
                raise ConfigError(f"logit-adjust: mode must be loss or posthoc, got {self.mode!r}")

    def __init__(self, counts: torch.Tensor, epochs: int, method: type[Method], options: Any = None) -> None:
        super().__init__(counts, epochs, method, options)
        self.mode = self.options.mode
        self.shift = self.options.tau * torch.log(self.counts.clamp_min(1) / self.counts.sum())

    def criterion(self, epoch: int) -> Criterion:
        if self.mode == "posthoc":
            return cross_entropy
        return lambda logits, y: cross_entropy(logits.float() + self.shift.to(logits.device), y)

    def posthoc_logit_shift(self) -> torch.Tensor | None:
        return -self.shift if self.mode == "posthoc" else None
