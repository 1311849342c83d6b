"""Long-tail and robust-fairness techniques as pieces that plug into the one training loop.

A technique takes on only the roles it needs, each a small interface:

- :class:`CriterionRole`: the per-example loss on logits (focal, LDAM, logit-adjusted CE);
- :class:`WeightsRole`: a weight per class applied to per-example losses (re-weighting,
  class-balanced, DRW, validation-driven weights);
- :class:`ReductionRole`: how per-example losses become one (FRL weighs TRADES' natural and
  boundary parts separately);
- :class:`BudgetRole`: a per-class attack budget or TRADES trade-off (per-class ε, FRL re-margin,
  CFA's CCM and CCR);
- :class:`SamplingRole`: how often each training image is drawn (class-balanced re-sampling);
- :class:`ObserverRole`: learning from per-class validation (and training) accuracy, from the
  class-mean predicted probabilities on the training inputs (DAFA), and from the per-class mean of
  the method's own loss on the validation split (WAT);
- :class:`AveragingRole`: a weight average the run is finally evaluated with (CFA's FAWA);
- :class:`PosthocRole`: a shift added to the logits at prediction time (post-hoc logit adjustment).

:class:`Balance` gives the loop every role, with the plain behaviour for the roles a technique
does not take. Techniques that take different roles combine: ``balance.name:
class-eps+adaptive-reweight`` with ``balance.args: {class-eps: {lam: 0.5}, adaptive-reweight:
{source: robust}}``. A technique declares what it needs of the training method (adversarial training,
or named parts of the loss) and its state is saved with the run, so resuming continues it exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from classwise.config import from_plain
from classwise.errors import ConfigError
from classwise.registry import Registry
from classwise.train.methods import METHODS, Criterion, Method, NoOptions, cross_entropy


def normalise(w: torch.Tensor) -> torch.Tensor:
    """Scale class weights to sum to the number of classes (uniform weights are all 1)."""
    return w * (len(w) / w.sum())


def effective_number_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Class-balanced weights (Cui et al. 2019): (1 − β) / (1 − β^n_k), normalised."""
    return normalise((1 - beta) / (1 - torch.pow(beta, counts.double())).clamp_min(1e-12)).float()


class Technique:
    """The plain training method: no role taken. Subclasses add roles and declare their options as a
    frozen dataclass ``Options`` (``balance.args``), as training methods do: its fields' types,
    defaults and help are the one declaration that the config converts to, checks against and
    ``classwise config`` lists; checks that need no data belong in its ``__post_init__``."""

    Options: ClassVar[type] = NoOptions
    requires_adversarial: ClassVar[bool] = False  # only with adversarial training methods
    needs_parts: ClassVar[tuple[str, ...]] = ()  # named parts of the method's loss it reweighs

    def __init__(self, counts: torch.Tensor, epochs: int, method: type[Method], options: Any = None) -> None:
        self.counts = counts.float()
        self.k = len(counts)
        self.epochs = epochs
        self.options = self.Options() if options is None else options

    @classmethod
    def check(cls, options: Any, method: type[Method]) -> None:
        """Checks of the options against the training method (a subclass adds its own)."""

    def state(self) -> dict[str, Any]:
        return {}

    def load(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def to(self, device: torch.device) -> Technique:
        """Keep every per-class tensor on the training device (the loop calls this each epoch), so
        that steps index them there without host-to-device copies, which a CUDA graph cannot hold."""
        for key, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, key, value.to(device))
        return self


class CriterionRole:
    def criterion(self, epoch: int) -> Criterion:
        raise NotImplementedError


class WeightsRole:
    def class_weights(self, epoch: int) -> torch.Tensor | None:
        raise NotImplementedError


class ReductionRole:
    def reduce(self, loss: torch.Tensor, y: torch.Tensor, parts: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        raise NotImplementedError


class BudgetRole:
    def class_eps(self, epoch: int, eps: float) -> torch.Tensor | None:
        return None

    def class_beta(self, epoch: int, beta: float) -> torch.Tensor | None:
        return None

    def class_step_scale(self, epoch: int) -> torch.Tensor | None:
        """(K,) multipliers of the method's attack step per class, or None to keep it."""
        return None


class SamplingRole:
    def sample_weights(self, labels: torch.Tensor) -> torch.Tensor | None:
        raise NotImplementedError


class ObserverRole:
    wants_validation_loss: ClassVar[bool] = False  # the loop measures it only for techniques that use it

    def observe_validation(self, epoch: int, clean: torch.Tensor, robust: torch.Tensor | None) -> None:
        """Per-class validation accuracies after ``epoch``."""

    def observe_training(self, epoch: int, robust: torch.Tensor) -> None:
        """Per-class accuracy on the (adversarial) training inputs of ``epoch``."""

    def observe_training_probs(self, epoch: int, probs: torch.Tensor) -> None:
        """(K, K): row i is the mean predicted probability vector of ``epoch``'s (adversarial) training
        inputs of class i."""

    def observe_validation_loss(self, epoch: int, loss: torch.Tensor) -> None:
        """(K,): the mean of the method's per-example loss (its attack included) over each class of
        the validation split, after ``epoch`` (only when ``wants_validation_loss``)."""


class AveragingRole:
    """Keeps an average of the weights that the run's final evaluation uses instead of ``best.pt``."""

    average: dict[str, torch.Tensor] | None = None

    @property
    def keeps_average(self) -> bool:
        """False where the technique's averaging is switched off (CFA's ``fawa: false``)."""
        return True

    def average_decay(self, val_robust: torch.Tensor | None) -> float | None:
        """Decay with which to fold this epoch's weights into the average, or None to skip it."""
        raise NotImplementedError

    def fold(self, weights: dict[str, torch.Tensor], val_robust: torch.Tensor | None) -> bool:
        """Fold this epoch's ``weights`` into the average if :meth:`average_decay` takes them;
        True when the average changed."""
        decay = self.average_decay(val_robust)
        if decay is None:
            return False
        current = {k: v.detach().cpu().clone() for k, v in weights.items()}
        if self.average is not None:
            avg = self.average
            current = {k: decay * avg[k] + (1 - decay) * v if v.is_floating_point() else v for k, v in current.items()}
        self.average = current
        return True


class PosthocRole:
    def posthoc_logit_shift(self) -> torch.Tensor | None:
        raise NotImplementedError


class Balance:
    """What the loop asks of the run's techniques, with the plain behaviour for roles none takes.

    A run may combine techniques (``balance.name: class-eps+adaptive-reweight``): each role other
    than observing is taken by at most one of them (:func:`check_balance` refuses a clash), and
    every observer sees every validation."""

    def __init__(self, technique: Technique, *more: Technique) -> None:
        self.techniques = (technique, *more)

    def _role(self, role: type) -> Any:
        return next((t for t in self.techniques if isinstance(t, role)), None)

    def _observers(self) -> list[ObserverRole]:
        return [t for t in self.techniques if isinstance(t, ObserverRole)]

    def criterion(self, epoch: int) -> Criterion:
        t = self._role(CriterionRole)
        return t.criterion(epoch) if t else cross_entropy

    def class_eps(self, epoch: int, eps: float) -> torch.Tensor | None:
        t = self._role(BudgetRole)
        return t.class_eps(epoch, eps) if t else None

    def class_beta(self, epoch: int, beta: float | None) -> torch.Tensor | None:
        t = self._role(BudgetRole)
        return t.class_beta(epoch, beta) if t and beta is not None else None

    def class_step_scale(self, epoch: int) -> torch.Tensor | None:
        t = self._role(BudgetRole)
        return t.class_step_scale(epoch) if t else None

    def reduce(self, loss: torch.Tensor, y: torch.Tensor, parts: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        """The technique's reduction, else the mean of class-weighted per-example losses (exactly
        ``loss.mean()`` without weights)."""
        t = self._role(ReductionRole)
        if t:
            return t.reduce(loss, y, parts, epoch)
        weighted = self._role(WeightsRole)
        w = weighted.class_weights(epoch) if weighted else None
        return loss.mean() if w is None else (w.to(loss.device)[y] * loss).mean()

    def sample_weights(self, labels: torch.Tensor) -> torch.Tensor | None:
        t = self._role(SamplingRole)
        return t.sample_weights(labels) if t else None

    def observe_validation(self, epoch: int, clean: torch.Tensor, robust: torch.Tensor | None) -> None:
        for t in self._observers():
            t.observe_validation(epoch, clean, robust)

    def observe_training(self, epoch: int, robust: torch.Tensor, probs: torch.Tensor) -> None:
        for t in self._observers():
            t.observe_training(epoch, robust)
            t.observe_training_probs(epoch, probs)

    @property
    def wants_validation_loss(self) -> bool:
        return any(t.wants_validation_loss for t in self._observers())

    def observe_validation_loss(self, epoch: int, loss: torch.Tensor) -> None:
        for t in self._observers():
            if t.wants_validation_loss:
                t.observe_validation_loss(epoch, loss)

    def fold(self, weights: dict[str, torch.Tensor], val_robust: torch.Tensor | None) -> dict[str, torch.Tensor] | None:
        """The technique's new weight average after this validation, or None if it keeps none or
        did not change it."""
        t = self._role(AveragingRole)
        return t.average if t and t.keeps_average and t.fold(weights, val_robust) else None

    @property
    def averages(self) -> bool:
        """Whether the technique keeps a weight average (each validation then says if it took the epoch)."""
        t = self._role(AveragingRole)
        return t is not None and t.keeps_average

    def posthoc_logit_shift(self) -> torch.Tensor | None:
        t = self._role(PosthocRole)
        return t.posthoc_logit_shift() if t else None

    def to(self, device: torch.device) -> Balance:
        for t in self.techniques:
            t.to(device)
        return self

    def applied(self, epoch: int, eps: float, beta: float | None) -> dict[str, list[float]]:
        """What the techniques apply to each class in ``epoch``, as plain per-class lists: the
        budget as a multiple of ``eps``, TRADES' β as a multiple of ``beta``, the attack step's
        scale, the loss weights, and each technique's own per-class state (FRL's multipliers,
        WAT's Hedge weights, DAFA's weights, CFA's training robust accuracy), so the run's history
        shows whether and how far a technique moved from uniform. A plain run records nothing."""
        out: dict[str, list[float]] = {}
        class_eps = self.class_eps(epoch, eps)
        class_beta = self.class_beta(epoch, beta)
        weighted = self._role(WeightsRole)
        for key, value, scale in (
            ("eps_scale", class_eps, eps),
            ("beta_scale", class_beta, beta),
            ("step_scale", self.class_step_scale(epoch), 1.0),
            ("class_weights", weighted.class_weights(epoch) if weighted else None, 1.0),
        ):
            if value is not None and scale:
                out[key] = (value.detach().float().cpu() / scale).tolist()
        for i, t in enumerate(self.techniques):
            prefix = f"{i}." if len(self.techniques) > 1 else ""
            for key, value in t.state().items():
                if isinstance(value, torch.Tensor) and value.dim() == 1:
                    out[f"{prefix}{key}"] = value.detach().float().cpu().tolist()
        return out

    def state(self) -> dict[str, Any]:
        """One technique's state as it is; a combination's as a list in the order of its name."""
        if len(self.techniques) == 1:
            return self.techniques[0].state()
        return {"combined": [t.state() for t in self.techniques]}

    def load(self, state: dict[str, Any]) -> None:
        if len(self.techniques) == 1:
            self.techniques[0].load(state)
            return
        for t, s in zip(self.techniques, state["combined"], strict=True):
            t.load(s)


TECHNIQUES: Registry[type[Technique]] = Registry("balancing technique")
TECHNIQUES.register("none", description="plain training method")(Technique)


def technique_options(cls: type[Technique]) -> dict[str, Any]:
    """A technique's options (the arguments of ``balance.args``) with their defaults."""
    return {f.name: f.default for f in dataclasses.fields(cls.Options)}


def typed_options(cls: type[Technique], args: Mapping[str, Any], where: str) -> Any:
    """``args`` as the technique's typed ``Options`` (numbers written as fractions such as ``8/255``
    converted, a list of numbers where per-class values), each wrong value naming its path."""
    return from_plain(cls.Options, dict(args), where)


# Roles that one technique of a combination may take; observing is shared. Class weights and a
# reduction clash because a reduction replaces the class-weighted mean.
EXCLUSIVE_ROLES: dict[str, tuple[type, ...]] = {
    "per-example loss": (CriterionRole,),
    "loss weighting": (WeightsRole, ReductionRole),
    "attack budget": (BudgetRole,),
    "sampling": (SamplingRole,),
    "weight average": (AveragingRole,),
    "post-hoc logit shift": (PosthocRole,),
}


def components(name: str, args: Mapping[str, Any], where: str = "balance") -> list[tuple[str, dict[str, Any]]]:
    """The techniques ``name`` stands for, each with its options: ``focal`` takes its options as
    ``args``; a combination ``a+b`` takes each technique's options under its name,
    ``{a: {...}, b: {...}}`` (a technique left out keeps its defaults)."""
    names = name.split("+")
    if len(names) == 1:
        return [(name, dict(args))]
    if "" in names or "none" in names or len(set(names)) != len(names):
        raise ConfigError(
            f"{where}.name {name!r}: a combination joins different techniques other than none with +, "
            "e.g. class-eps+adaptive-reweight"
        )
    stray = sorted(set(args) - set(names))
    if stray or not all(isinstance(v, Mapping) or v is None for v in args.values()):
        raise ConfigError(
            f"{where}.args of the combination {name}: give each technique's options under its name, e.g. "
            f"{{{names[0]}: {{...}}}}; got {dict(args)}"
        )
    return [(n, dict(args.get(n) or {})) for n in names]


def check_balance(
    name: str, args: Mapping[str, Any], method: type[Method], where: str = "balance"
) -> list[tuple[type[Technique], Any]]:
    """The checks that need no data: known techniques and options, methods they work with, and no
    two techniques of a combination taking the same role. Returns each technique with its typed options."""
    parts = components(name, args, where)
    checked = [
        (
            TECHNIQUES.get(part),
            _check_technique(
                TECHNIQUES.get(part), part_args, method, f"{where}.args" + (f".{part}" if len(parts) > 1 else "")
            ),
        )
        for part, part_args in parts
    ]
    for what, roles in EXCLUSIVE_ROLES.items():
        takers = [part for part, _ in parts if issubclass(TECHNIQUES.get(part), roles)]
        if len(takers) > 1:
            raise ConfigError(
                f"{where}.name {name!r}: {' and '.join(takers)} both set the {what}; combine techniques that "
                "change different things (classwise config lists each technique)"
            )
    return checked


def _check_technique(cls: type[Technique], args: dict[str, Any], method: type[Method], where: str) -> Any:
    """One technique's checks that need no data, and its typed options: known options of the right
    types and values, and a method it works with."""
    name = next(e.name for e in TECHNIQUES if e.factory is cls)
    section = where.split(".")[0]
    if cls.requires_adversarial and not method.adversarial:
        raise ConfigError(f"{section}: {name} works with adversarial training only, not standard training")
    missing = [p for p in cls.needs_parts if p not in method.parts]
    if missing:
        with_parts = [e.name for e in METHODS if set(cls.needs_parts) <= set(e.factory.parts)]
        raise ConfigError(
            f"{section}: {name} reweighs the {' and '.join(cls.needs_parts)} parts of the loss; use it with "
            f"{', '.join(with_parts)}"
        )
    allowed = set(technique_options(cls))
    unknown = set(args) - allowed
    if unknown:
        raise ConfigError(f"{where}: {name} takes no option(s) {sorted(unknown)}; it takes {sorted(allowed)}")
    options = typed_options(cls, args, where)
    try:
        cls.check(options, method)
    except ConfigError as exc:
        raise ConfigError(f"{section}: {exc}") from None
    return options


def make_technique(name: str, args: dict[str, Any], counts: torch.Tensor, epochs: int, method: type[Method]) -> Balance:
    """Build technique ``name`` (or the combination ``a+b``) with ``args`` for the loop; impossible
    options fail here, before training."""
    return Balance(*(cls(counts, epochs, method, options) for cls, options in check_balance(name, args, method)))
