"""``evaluate(model, data, attacks)``: clean and adversarial outcomes of every sample, from which
every class-wise number is derived.

Only clean-correct samples are attacked (the others are non-robust already), and with early
stop a sample leaves the batch as soon as it is fooled. With ``cascade=True`` each attack only
sees samples that all earlier attacks left robust (AutoAttack's scheme): the worst-case flags
are the same as running every attack on every sample, at a fraction of the cost.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from classwise.attacks import Attack, build_attack, flat_norm, format_eps
from classwise.data.dataset import Dataset, LabeledImages, per_class_positions
from classwise.errors import ConfigError
from classwise.evaluate.metrics import ClassAccuracy, Spread, confusion_matrix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttackRecord:
    """One attack (or the worst case over several) at one ε, per sample."""

    attack: str
    eps: float
    norm: str
    robust: np.ndarray  # bool (N,): clean-correct and not fooled
    adv_pred: np.ndarray  # int64 (N,): prediction on the attacked image (the clean one if not attacked)
    perturbation: np.ndarray  # float (N,): ‖x_adv − x‖ in the threat model's norm
    broken_by: np.ndarray  # str (N,): attack (component) that fooled it, "" if none

    @property
    def key(self) -> str:
        return f"{self.attack}@{format_eps(self.eps)}"


@dataclass(frozen=True)
class Evaluation:
    """Per-sample outcomes of one model on one split, and what is derived from them.

    ``records`` holds each attack at each ε (in cascade mode: cumulative, named ``a→b``);
    ``worst`` the worst case over the attacks at each ε.
    """

    class_names: tuple[str, ...]
    dataset: str
    split: str
    index: np.ndarray  # positions of the evaluated samples in the split
    labels: np.ndarray
    clean_pred: np.ndarray
    records: tuple[AttackRecord, ...]
    worst: tuple[AttackRecord, ...]
    warnings: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    dataset_notes: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """The dataset's name with its caveats, e.g. ``cifar10-jpeg (lossy JPEG copy: ...)``."""
        return self.dataset + (f" ({'; '.join(self.dataset_notes)})" if self.dataset_notes else "")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def clean_correct(self) -> np.ndarray:
        return self.clean_pred == self.labels

    def clean(self) -> ClassAccuracy:
        return ClassAccuracy.from_flags(self.clean_correct, self.labels, self.num_classes)

    def robust(self, record: AttackRecord) -> ClassAccuracy:
        return ClassAccuracy.from_flags(record.robust, self.labels, self.num_classes)

    def spread(self, acc: ClassAccuracy) -> Spread:
        return Spread.of(acc, self.class_names)

    def confusion_clean(self) -> np.ndarray:
        return confusion_matrix(self.labels, self.clean_pred, self.num_classes)

    def confusion_adv(self, record: AttackRecord) -> np.ndarray:
        return confusion_matrix(self.labels, record.adv_pred, self.num_classes)

    def worst_at(self, eps: float) -> AttackRecord:
        return next(r for r in self.worst if abs(r.eps - eps) < 1e-12)


@contextmanager
def frozen_eval(model: nn.Module):
    """Eval mode and no parameter gradients during an attack; both restored afterwards."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        model.train(was_training)
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)


def evaluate(
    model: nn.Module,
    data: Dataset | LabeledImages,
    attacks: Sequence[str | Attack] = ("pgd",),
    eps: Sequence[float] = (8 / 255,),
    *,
    norm: str = "Linf",
    class_names: Sequence[str] | None = None,
    split: str = "test",
    n_per_class: int | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    seed: int = 0,
    cascade: bool = False,
    attack_options: dict[str, Any] | None = None,
    early_stop: bool = True,
    progress: bool = True,
) -> Evaluation:
    """Clean and adversarial outcome of every sample, for any classifier of [0,1] images.

    Args:
        model: returns logits (not probabilities) for [0,1] images.
        data: a :class:`Dataset` (its ``split`` is used) or a :class:`LabeledImages` with ``class_names``.
        attacks: names or specs (``"pgd:steps=50"``, ``"autoattack"``), built at each ε of ``eps``,
            or ready attack objects (their own ε; ``eps`` ignored).
        n_per_class: evaluate only the first n test images of each class (say so when reporting).
        cascade: attack only samples all earlier attacks left robust (worst case only).
        attack_options: defaults for named attacks, e.g. ``{"steps": 20}``.
        early_stop: a sample fooled at any PGD iterate counts as broken and leaves the batch (faster,
            and never weaker); False judges only the last iterate, like most attack libraries.

    Returns:
        An :class:`Evaluation`; ``classwise.evaluate.tables`` turns it into per-class tables.

    Example:
        >>> ev = evaluate(model, load_dataset("cifar10"), ["pgd"], [8 / 255], attack_options={"steps": 20})
        ... # doctest: +SKIP
    """
    samples, names, dataset_name, notes = _resolve_data(data, class_names, split)
    index = torch.arange(len(samples))
    if n_per_class is not None:
        index = per_class_positions(samples.labels, n_per_class, len(names))
        samples = samples.take(index)
    grouped = _build_attacks(attacks, eps, norm, attack_options or {})
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    x_all = samples.images.to(dev)
    y_all = samples.labels.to(dev)
    warnings: list[str] = []
    with frozen_eval(model):
        clean_pred = _predict(model, x_all, batch_size)
        _check_gradients(model, x_all[:batch_size], y_all[:batch_size], warnings)
        records, worst = [], []
        for e, group in grouped:
            recs = _run_group(model, group, x_all, y_all, clean_pred, batch_size, seed, cascade, early_stop, progress)
            records += recs
            worst.append(_worst_case(recs, e, group[0].norm, clean_pred.cpu().numpy()))
    labels = samples.labels.numpy()
    ev = Evaluation(
        class_names=tuple(names),
        dataset=dataset_name,
        split=split,
        index=index.numpy(),
        labels=labels,
        clean_pred=clean_pred.cpu().numpy(),
        records=tuple(records),
        worst=tuple(worst),
        dataset_notes=notes,
        config={
            "attacks": [str(a) for a in attacks],
            "eps": list(eps),
            "norm": norm,
            "seed": seed,
            "cascade": cascade,
            "early_stop": early_stop,
            "n_per_class": n_per_class,
            "batch_size": batch_size,
            "attack_options": attack_options or {},
        },
    )
    warnings += sanity_warnings(ev)
    for w in warnings:
        log.warning(w)
    return Evaluation(**{**ev.__dict__, "warnings": tuple(warnings)})


def _resolve_data(
    data: Dataset | LabeledImages, class_names: Sequence[str] | None, split: str
) -> tuple[LabeledImages, tuple[str, ...], str, tuple[str, ...]]:
    if isinstance(data, Dataset):
        splits = data.splits()
        if split not in splits:
            raise ConfigError(f"{data.name} has no split {split!r}; it has {', '.join(splits)}")
        return splits[split], data.class_names, data.name, data.notes
    if class_names is None:
        raise ConfigError("pass class_names with a LabeledImages split")
    return data, tuple(class_names), "data", ()


def _build_attacks(
    attacks: Sequence[str | Attack], eps: Sequence[float], norm: str, options: dict[str, Any]
) -> list[tuple[float, list[Attack]]]:
    if not attacks:
        raise ConfigError("give at least one attack")
    if all(isinstance(a, str) for a in attacks):
        if not eps:
            raise ConfigError("give at least one ε")
        return [(e, [build_attack(str(a), e, norm, **options) for a in attacks]) for e in eps]
    if any(isinstance(a, str) for a in attacks):
        raise ConfigError("pass either attack names or attack objects, not both")
    by_eps: dict[float, list[Attack]] = {}
    for a in attacks:
        assert not isinstance(a, str)
        by_eps.setdefault(a.eps, []).append(a)
    return sorted(by_eps.items())


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    preds = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(x[i : i + batch_size].float() / 255.0)
            if i == 0:
                _check_logits(logits)
            preds.append(logits.argmax(1))
    return torch.cat(preds)


def _check_logits(logits: torch.Tensor) -> None:
    if logits.ndim != 2:
        raise ConfigError(f"the model must return logits (batch, classes), got shape {tuple(logits.shape)}")
    inside = bool(((logits >= 0) & (logits <= 1)).all())
    sums_to_one = bool(
        torch.allclose(logits.float().sum(1), logits.new_ones(len(logits), dtype=torch.float32), atol=1e-3)
    )
    if inside and sums_to_one:
        raise ConfigError(
            "the model returns probabilities (rows in [0,1] summing to 1), not logits; attacks on softmax "
            "outputs mask gradients. Remove the final softmax."
        )


def _check_gradients(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, warnings: list[str]) -> None:
    """AutoAttack's zero-gradient check: inputs whose loss gradient is exactly zero."""
    x = (x_u8.float() / 255.0).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    zero = (grad.flatten(1).abs().amax(1) == 0).float().mean().item()
    if zero > 0:
        warnings.append(
            f"{zero:.1%} of the checked inputs have exactly zero loss gradient: a sign of gradient masking; "
            "gradient-based robust accuracy may be overestimated (try autoattack, whose Square attack needs none)"
        )


def _run_group(
    model: nn.Module,
    group: list[Attack],
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    clean_pred: torch.Tensor,
    batch_size: int,
    seed: int,
    cascade: bool,
    early_stop: bool,
    progress: bool,
) -> list[AttackRecord]:
    clean_ok = (clean_pred == y_all).cpu().numpy()
    records: list[AttackRecord] = []
    still = clean_ok.copy()
    names: list[str] = []
    for attack in group:
        targets = still if cascade else clean_ok
        names.append(attack.name)
        rec = attack_samples(
            model, attack, x_all, y_all, clean_pred, targets, batch_size, seed, progress, early_stop=early_stop
        )
        if cascade:
            prev = records[-1] if records else None
            rec = _merge(prev, rec, "→".join(names)) if prev else rec
            still = rec.robust.copy()
        records.append(rec)
    return records


def attack_samples(
    model: nn.Module,
    attack: Attack,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    clean_pred: torch.Tensor,
    targets: np.ndarray,
    batch_size: int,
    seed: int,
    progress: bool = False,
    target_class: int | None = None,
    early_stop: bool = True,
) -> AttackRecord:
    """Attack the samples flagged in ``targets`` (uint8 images on the model's device) in batches,
    check the results lie in the ε-ball and in [0,1], and record each sample's outcome.

    With ``target_class`` the attack is targeted at that class and "fooled" means "predicted as it"."""
    n = len(y_all)
    robust = targets.copy()
    adv_pred = clean_pred.cpu().numpy().copy()
    pert = np.zeros(n)
    broken = np.full(n, "", dtype=object)
    todo = torch.from_numpy(np.nonzero(targets)[0])
    generator = torch.Generator(device=x_all.device).manual_seed(seed)
    batches = range(0, len(todo), batch_size)
    desc = f"{attack.name} ε={format_eps(attack.eps)}"
    for start in tqdm(batches, desc=desc, disable=not progress, leave=False, unit="batch"):
        idx = todo[start : start + batch_size]
        dev_idx = idx.to(x_all.device)
        x = x_all[dev_idx].float() / 255.0
        y = y_all[dev_idx]
        if target_class is None:
            out = attack.run(model, x, y, early_stop=early_stop, generator=generator)
        else:
            target = torch.full_like(y, target_class)
            out = attack.run(model, x, target, targeted=True, early_stop=early_stop, generator=generator)
        x_adv, fooled = out[0], out[1]
        _check_ball(x_adv, x, attack)
        with torch.no_grad():
            pred = model(x_adv[fooled]).argmax(1) if bool(fooled.any()) else y[:0]
        f = fooled.cpu().numpy()
        rows = idx.numpy()
        robust[rows[f]] = False
        adv_pred[rows[f]] = pred.cpu().numpy()
        pert[rows] = flat_norm(x_adv - x, attack.norm).cpu().numpy()
        by = out[2] if len(out) > 2 else [attack.name] * len(rows)
        for r, hit, b in zip(rows, f, by, strict=True):
            if hit:
                broken[r] = b or attack.name
    return AttackRecord(attack.name, attack.eps, attack.norm, robust, adv_pred, pert, broken.astype(str))


def _check_ball(x_adv: torch.Tensor, x: torch.Tensor, attack: Attack) -> None:
    tol = 1e-5 if attack.norm == "Linf" else 1e-4
    worst = float(flat_norm(x_adv - x, attack.norm).max()) if len(x) else 0.0
    if worst > attack.eps + tol:
        raise RuntimeError(f"{attack.name} left the {attack.norm} ball: ‖δ‖ = {worst:.6f} > ε = {attack.eps:.6f}")
    if len(x) and (float(x_adv.min()) < -1e-6 or float(x_adv.max()) > 1 + 1e-6):
        raise RuntimeError(f"{attack.name} produced images outside [0,1]")


def _merge(first: AttackRecord, then: AttackRecord, name: str) -> AttackRecord:
    """Samples broken by ``first`` keep its outcome; ``then`` adds those it broke among the rest."""
    take = ~first.robust & (first.broken_by != "")
    return AttackRecord(
        attack=name,
        eps=first.eps,
        norm=first.norm,
        robust=first.robust & then.robust,
        adv_pred=np.where(take, first.adv_pred, then.adv_pred),
        perturbation=np.where(take, first.perturbation, then.perturbation),
        broken_by=np.where(take, first.broken_by, then.broken_by),
    )


def _worst_case(records: list[AttackRecord], eps: float, norm: str, clean_pred: np.ndarray) -> AttackRecord:
    """A sample is robust only if every attack left it robust; its adversarial outcome is the
    first attack (in the given order) that broke it."""
    if len(records) == 1 or "→" in records[-1].attack:
        last = records[-1]
        return AttackRecord("worst", eps, norm, last.robust, last.adv_pred, last.perturbation, last.broken_by)
    merged = records[0]
    for r in records[1:]:
        merged = _merge(merged, r, "worst")
    return AttackRecord("worst", eps, norm, merged.robust, merged.adv_pred, merged.perturbation, merged.broken_by)


def sanity_warnings(ev: Evaluation) -> list[str]:
    """Warnings in the spirit of AutoAttack's checks: robust ≤ clean per class, PGD not weaker than
    FGSM, robust accuracy not rising with ε."""
    out = []
    clean = ev.clean().correct
    for r in (*ev.records, *ev.worst):
        if (ev.robust(r).correct > clean).any():
            raise RuntimeError(f"{r.key}: robust accuracy above clean accuracy for a class (a bug)")
    by_eps: dict[float, dict[str, float]] = {}
    for r in ev.records:
        by_eps.setdefault(r.eps, {})[r.attack] = float(r.robust.mean())
    for e, accs in by_eps.items():
        if "pgd" in accs and "fgsm" in accs and accs["pgd"] > accs["fgsm"] + 1e-9:
            out.append(
                f"PGD is weaker than FGSM at ε={format_eps(e)} ({accs['pgd']:.1%} vs {accs['fgsm']:.1%} robust): "
                "a sign of gradient masking or a too-small step size"
            )
    names = {r.attack for r in ev.records}
    for name in sorted(names):
        curve = sorted((r.eps, float(r.robust.mean())) for r in ev.records if r.attack == name)
        for (e0, a0), (e1, a1) in itertools.pairwise(curve):
            if a1 > a0 + 0.01:
                out.append(
                    f"{name}: robust accuracy rises from {a0:.1%} at ε={format_eps(e0)} to {a1:.1%} at "
                    f"ε={format_eps(e1)}: the attack is failing at larger ε (gradient masking?)"
                )
    return out
