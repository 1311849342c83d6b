"""The finding first: one sentence with the numbers that matter (the gap, how training changed it,
the weakest class with its interval against the mean) and one line saying how it was measured.
The same headline opens every report and ends ``classwise gap``, ``evaluate`` and ``study run``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from classwise import analysis
from classwise.attacks import format_eps
from classwise.evaluate import ClassAccuracy, Evaluation, Spread, wilson_interval


@dataclass(frozen=True)
class Headline:
    finding: str  # the sentence, with numbers
    setup: str  # dataset (with its caveats), model, method, epochs, attack, ε, which images

    def text(self) -> str:
        return f"{self.finding}\n{self.setup}"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def pct(v: float) -> str:
    """A fraction as percent with one decimal, no sign: ``0.843`` → ``84.3``."""
    return f"{100 * v:.1f}"


def pooled_accuracy(acc: ClassAccuracy) -> tuple[float, float, float]:
    """The accuracy over all images (the mean over classes, since classes are balanced) with the
    low and high ends of its Wilson interval."""
    k, n = int(acc.correct.sum()), int(acc.n.sum())
    lo, hi = wilson_interval(np.array(k), np.array(n))
    return k / n, float(lo), float(hi)


def mean_with_interval(acc: ClassAccuracy) -> str:
    """Mean over classes with the Wilson interval of the pooled accuracy: ``84.3 [83.6, 85.0]``."""
    value, lo, hi = pooled_accuracy(acc)
    return f"{100 * value:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def weakest(acc: ClassAccuracy, names: tuple[str, ...]) -> str:
    """``Shirt 7.7% [5.2, 11.2]``, or the tie (``Coat and Shirt tied at 0.0%``; ``7 classes tied at
    0.0% (cat, deer, dog, …)`` where more than three tie)."""
    s = Spread.of(acc, names)
    if len(s.worst_classes) > 1:
        tied = s.worst_classes
        if len(tied) == len(names):
            who = f"all {len(tied)} classes"
        elif len(tied) > 3:
            return f"{len(tied)} classes tied at {_pct(s.worst)} ({', '.join(tied[:3])}, …)"
        else:
            who = ", ".join(tied[:-1]) + f" and {tied[-1]}"
        return f"{who} tied at {_pct(s.worst)}"
    k = names.index(s.worst_class)
    return f"{s.worst_class} {_pct(s.worst)} [{100 * acc.low[k]:.1f}, {100 * acc.high[k]:.1f}]"


def _method(config: dict[str, Any]) -> str | None:
    method = config.get("method")
    return method.get("name") if isinstance(method, dict) else None


# What classwise's training methods were before runs stored whether they attack their inputs: the
# compatibility reader for runs, checkpoints and study snapshots written before that flag.
LEGACY_METHODS = {"standard": False, "pgd-at": True, "trades": True, "fgsm-rs": True}


def trained_adversarially(source: Mapping[str, Any], config: Mapping[str, Any]) -> bool | None:
    """Whether a model was adversarially trained, from what is stored with it: the ``adversarial``
    flag its run wrote into its evaluation's source (and its checkpoints), else, for results written
    before the flag, its method's name among the methods classwise had then; None where nothing
    says (a model trained elsewhere). The report never asks the training code."""
    flag = source.get("adversarial")
    if isinstance(flag, bool):
        return flag
    name = _method(dict(config))
    return LEGACY_METHODS.get(name) if isinstance(name, str) else None


def setup_line(ev: Evaluation, config: dict[str, Any] | None = None) -> str:
    """``Fashion-MNIST; resnet20, pgd-at, 4 epochs (ε=0.1); evaluation: pgd(steps=10) at ε=0.1 ...``."""
    parts = [ev.title]
    if config:
        model = (config.get("model") or {}).get("name", "?")
        epochs = (config.get("optim") or {}).get("epochs", "?")
        eps = (config.get("threat") or {}).get("eps")
        trained = f"{model}, {_method(config)}, {epochs} epochs" + (f" at ε={format_eps(eps)}" if eps else "")
        parts.append(trained)
    elif ev.source.get("model"):  # a model from elsewhere: as it was named (robustbench:..., timm:..., a file)
        parts.append(f"model {ev.source['model']}")
    parts.append(f"evaluation: {ev.spec.describe()}")
    return "; ".join(parts)


def unreadable(ev: Evaluation) -> str | None:
    """Why a model's numbers are no class-wise result, or None: it predicts (nearly) one class for
    every image (a model that never trained), or its clean accuracy is not above chance."""
    failure = analysis.training_failure(ev.labels, ev.clean_pred, ev.num_classes)
    if failure is None:
        return None
    top = int(np.bincount(ev.clean_pred, minlength=ev.num_classes).argmax())
    return failure.replace(f"class {top} for", f"{ev.class_names[top]} for", 1)


def _unreadable_first(named: Sequence[tuple[str, Evaluation]]) -> str:
    """The headline's first words when a model cannot be read: which one, and why."""
    said = [f"{who} cannot be read as a result ({why})" for who, ev in named if (why := unreadable(ev))]
    return "; ".join(said) + ". Its numbers as measured: " if said else ""


def model_headline(ev: Evaluation, config: dict[str, Any] | None = None) -> Headline:
    """One model: its weakest class against the mean, clean and under attack (first of all, that it
    cannot be read as a result, where it never trained)."""
    names = ev.class_names
    clean, robust = ev.clean(), ev.robust(ev.headline)
    c, r = Spread.of(clean, names), Spread.of(robust, names)
    finding = _unreadable_first([("the model", ev)]) + (
        f"weakest class under attack: {weakest(robust, names)} while the mean is {_pct(r.mean)} "
        f"(std across classes {100 * r.std:.1f}); without attack {weakest(clean, names)}, mean {_pct(c.mean)}"
    )
    return Headline(finding, setup_line(ev, config))


def comparison_headline(
    base: Evaluation, other: Evaluation, base_config: dict[str, Any], other_config: dict[str, Any]
) -> Headline:
    """Standard against adversarial training: does the gap widen, and what does the mean hide?"""
    names = other.class_names
    b, o = Spread.of(base.clean(), names), Spread.of(other.clean(), names)
    robust = other.robust(other.headline)
    r = Spread.of(robust, names)
    before, after = round(100 * b.std, 1), round(100 * o.std, 1)  # compared as printed
    verb = "widens the gap" if after > before else "narrows the gap" if after < before else "leaves the gap as it was"
    unread = _unreadable_first([("the standard model", base), (f"the {_method(other_config)} model", other)])
    finding = unread + (
        f"adversarial training ({_method(other_config)}) {verb}: clean accuracy std across classes "
        f"{100 * b.std:.1f} → {100 * o.std:.1f}, worst class {weakest(base.clean(), names)} → "
        f"{weakest(other.clean(), names)}; under attack the worst class is {weakest(robust, names)} "
        f"while the mean is {_pct(r.mean)}"
    )
    return Headline(finding, setup_line(other, other_config))


def headline(models: Sequence[tuple[Evaluation, dict[str, Any]]]) -> Headline | None:
    """The headline of a set of models: a standard-vs-adversarial comparison where the set has both,
    else the first adversarially trained (or the first) model on its own."""
    if not models:
        return None
    plain = [(e, c) for e, c in models if trained_adversarially(e.source, c) is False]
    adversarial = [(e, c) for e, c in models if trained_adversarially(e.source, c)]
    if plain and adversarial:
        (base, bc), (other, oc) = plain[0], adversarial[0]
        return comparison_headline(base, other, bc, oc)
    ev, config = (adversarial or list(models))[0]
    return model_headline(ev, config)
