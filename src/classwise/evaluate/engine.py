"""``evaluate(model, data, spec)``: the clean and adversarial outcome of every sample under an
:class:`EvalSpec`, from which every class-wise number is derived.

Only clean-correct samples are attacked (the others are non-robust already); an attack's
components (AutoAttack's APGD-CE, APGD-T, FAB-T, Square) run one after the other, each on the
samples still robust, in batches, with one progress bar each. With ``cascade`` each attack
also only sees samples all earlier attacks left robust (AutoAttack's scheme): the worst-case
flags are the same as running every attack on every sample, at a fraction of the cost.

Every batch draws its randomness from a generator seeded by (seed, ε, attack, component,
batch), and with a ``state_path`` the progress is saved after every batch, so a killed
evaluation resumes where it stopped and ends with the records of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from classwise.attacks import PGD, Attack, flat_norm, format_eps
from classwise.compute import Autocast, fast_layout, fused_for_inference, resolve_precision
from classwise.data.convert import evaluation_images
from classwise.data.dataset import Dataset, LabeledImages, per_class_positions, unit_images
from classwise.errors import ConfigError
from classwise.evaluate import geometry
from classwise.evaluate.checks import (
    check_ball,
    check_input,
    check_logits,
    forward_checked,
    gradient_warnings,
    sanity_warnings,
)
from classwise.evaluate.geometry import frozen_eval
from classwise.evaluate.progress_state import EvalState
from classwise.evaluate.records import Analyses, AttackRecord, Boundary, Evaluation, TargetedResult, merge, worst_case
from classwise.evaluate.spec import EvalSpec
from classwise.progress import progress_bar
from classwise.provenance import provenance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """The images an evaluation runs on, and what it is labelled with."""

    samples: LabeledImages
    index: torch.Tensor  # positions in the split
    class_names: tuple[str, ...]
    dataset: str
    notes: tuple[str, ...]


def select_images(data: Any, spec: EvalSpec, class_names: Sequence[str] | None = None) -> Selection:
    """The split and subset ``spec`` names (all images, the first n per class, or the first n) of a
    classwise :class:`Dataset`, or of any data :func:`classwise.data.convert.evaluation_images` takes."""
    if isinstance(data, Dataset):
        splits = data.splits()
        if spec.split not in splits:
            raise ConfigError(f"{data.name} has no split {spec.split!r}; it has {', '.join(splits)}")
        samples, names, name, notes = splits[spec.split], data.class_names, data.name, data.notes
    else:
        samples, names, name = evaluation_images(data, class_names)
        notes = ()
    if len(samples) == 0:
        raise ConfigError(f"{name}/{spec.split} holds no images to evaluate")
    index = torch.arange(len(samples))
    if spec.n_per_class is not None:
        index = per_class_positions(samples.labels, spec.n_per_class, len(names))
    elif spec.first_n is not None:
        index = index[: spec.first_n]
    return Selection(samples.take(index), index, tuple(names), name, tuple(notes))


def fingerprint(spec: EvalSpec, model: nn.Module, selection: Selection) -> str:
    """sha256 over the resolved spec, the model's weights and the evaluated images and labels."""
    h = hashlib.sha256(spec.fingerprint().encode())
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    h.update(selection.samples.images.contiguous().numpy().tobytes())
    h.update(selection.samples.labels.numpy().tobytes())
    return h.hexdigest()


def evaluate(
    model: nn.Module,
    data: Any,
    spec: EvalSpec | None = None,
    *,
    class_names: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    state_path: Path | None = None,
) -> Evaluation:
    """Clean and adversarial outcome of every sample, for any classifier of [0,1] images.

    Args:
        model: returns logits (not probabilities) for [0,1] images.
        data: a :class:`Dataset` (the spec's split is used); or, with ``class_names`` unless the data
            declares them (``.classes``), a :class:`LabeledImages`, a torch ``Dataset`` or ``DataLoader``
            of (image, label) pairs, or an ``(images, labels)`` pair of uint8 or [0,1] float tensors.
        spec: the evaluation protocol (default: ``EvalSpec()``, PGD-20 at the norm's usual ε);
            an unresolved ε is resolved with :meth:`EvalSpec.resolved`.
        state_path: save progress there after every batch, and resume from it.

    Returns:
        An :class:`Evaluation`; ``classwise.evaluate.tables`` turns it into per-class tables.

    Example: ``evaluate(model, load_dataset("cifar10"), EvalSpec(n_per_class=100))``.
    """
    spec = (spec or EvalSpec()).resolved()
    sel = select_images(data, spec, class_names)
    check_input(model, sel.samples.images.shape[1:])
    if spec.targeted is not None:
        target_classes(spec.targeted, sel.class_names)  # a bad target is refused before any attack runs
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    state = EvalState(state_path, fingerprint(spec, model, sel), spec.describe())
    with frozen_eval(model), fast_layout(model, dev):
        run = _Run(model, spec, sel, dev, state, progress)
        records, worst, warnings = run.groups()
        targeted = run.targeted(max(spec.eps or ())) if spec.targeted is not None else None
        analyses = run.analyses(worst[-1]) if spec.analyses or spec.boundary_per_class else None
    ev = Evaluation(
        sel.class_names,
        sel.dataset,
        spec.split,
        sel.index.numpy(),
        sel.samples.labels.numpy(),
        run.clean_pred.cpu().numpy(),
        tuple(records),
        tuple(worst),
        spec,
        dataset_notes=sel.notes,
        analyses=analyses,
        targeted=targeted,
        provenance=provenance(dev),
        fingerprint=str(state.arrays["fingerprint"]),
    )
    warnings += sanity_warnings(ev)
    for w in warnings:
        log.warning(w)
    return replace(ev, warnings=tuple(warnings))


class _Run:
    """One evaluation in progress: the images on the device, the clean predictions and the state."""

    def __init__(
        self, model: nn.Module, spec: EvalSpec, sel: Selection, dev: torch.device, state: EvalState, progress: bool
    ) -> None:
        self.plain = model  # for the geometry analyses (features, head)
        self.spec, self.sel, self.state, self.progress = spec, sel, state, progress
        self.x = sel.samples.images.to(dev)
        self.y = sel.samples.labels.to(dev)
        attacked = fused_for_inference(model, unit_images(self.x[: spec.batch_size]))
        self.model = Autocast(attacked, dev) if resolve_precision(spec.precision, dev) == "bf16" else attacked
        self.k = len(sel.class_names)
        saved = state.get("clean_pred")
        self.clean_pred = torch.from_numpy(saved).to(dev) if saved is not None else self._predict()
        state.put(clean_pred=self.clean_pred.cpu().numpy())
        self.clean_ok = (self.clean_pred == self.y).cpu().numpy()

    def _predict(self) -> torch.Tensor:
        preds = []
        with torch.no_grad():
            for i in range(0, len(self.x), self.spec.batch_size):
                logits = forward_checked(self.model, unit_images(self.x[i : i + self.spec.batch_size]))
                if i == 0:
                    check_logits(logits, self.k)
                broken = int((~torch.isfinite(logits)).any(1).sum())
                if broken:
                    raise ConfigError(
                        f"the model returns NaN or infinite logits for {broken} of images {i}–{i + len(logits) - 1}: "
                        "its weights are broken (a diverged training run?), so there is nothing to evaluate; "
                        "evaluate an earlier checkpoint (best.pt) or retrain"
                    )
                preds.append(logits.argmax(1))
        return torch.cat(preds)

    def checks(self) -> list[str]:
        batch = slice(0, self.spec.batch_size)
        x, y = unit_images(self.x[batch]), self.y[batch]
        warnings = gradient_warnings(self.model, x, y)
        _, attacks = self.spec.build()[0]
        for attack in attacks:  # each attack's own start-up checks (AutoAttack's reference checks)
            warnings += [w for w in attack.preflight(self.model, x, y) if w not in warnings]
        return warnings

    def groups(self) -> tuple[list[AttackRecord], list[AttackRecord], list[str]]:
        """Every ε's attacks in turn: their records, the worst case at each ε, and the warnings of the
        checks and the attacks (each once)."""
        warnings = self.checks()
        records, worst = [], []
        for g, (eps, attacks) in enumerate(self.spec.build()):
            recs, notes = self.group(g, attacks)
            records += recs
            warnings += [n for n in notes if n not in warnings]
            worst.append(worst_case(recs, eps, self.spec.norm))
        return records, worst, warnings

    def group(self, g: int, attacks: list[Attack]) -> tuple[list[AttackRecord], list[str]]:
        """Every attack at one ε; with cascade each attack sees only what the earlier ones left robust."""
        records: list[AttackRecord] = []
        notes: list[str] = []
        for a, (attack, name) in enumerate(zip(attacks, self.record_names(attacks), strict=True)):
            targets = records[-1].robust if (self.spec.cascade and records) else self.clean_ok
            rec, more = self.attack(f"g{g}a{a}", attack, targets)
            rec = dataclasses.replace(rec, attack=name)
            notes += more
            if self.spec.cascade and records:
                rec = merge(records[-1], rec, f"{records[-1].attack}→{name}")
            records.append(rec)
        return records, notes

    def record_names(self, attacks: list[Attack]) -> list[str]:
        """What each attack's record is called: its name, or, where two variants of one attack run
        (``pgd`` and ``pgd(steps=100)``), each variant's label, so that neither overwrites the other."""
        names = [a.name for a in attacks]
        return [s.label if names.count(n) > 1 else n for n, s in zip(names, self.spec.attacks, strict=True)]

    def attack(
        self, key: str, attack: Attack, targets: np.ndarray, target_class: int | None = None
    ) -> tuple[AttackRecord, list[str]]:
        """Run ``attack``'s components on the flagged samples; returns their record."""
        n = len(self.y)
        saved = {name: self.state.get(f"{key}.{name}") for name in ("robust", "adv_pred", "pert", "broken")}
        robust = saved["robust"] if saved["robust"] is not None else targets.copy()
        adv_pred = saved["adv_pred"] if saved["adv_pred"] is not None else self.clean_pred.cpu().numpy().copy()
        pert = saved["pert"] if saved["pert"] is not None else np.zeros(n)
        broken = saved["broken"] if saved["broken"] is not None else np.zeros(n, dtype=np.int16)
        components, notes = attack.plan(self.k)
        if attack.eps == 0:  # nothing to perturb: the attacked image is the clean one
            components = ()
        for c, component in enumerate(components):
            stage = f"{key}c{c}"
            todo = self.state.get(f"{stage}.todo")
            todo = np.nonzero(robust)[0] if todo is None else todo
            done = self.state.get(f"{stage}.batches")
            start = 0 if done is None else int(done)
            batches = range(0, len(todo), self.spec.batch_size)
            desc = f"{attack.name}{'' if component == attack.name else ' ' + component} ε={format_eps(attack.eps)}"
            if target_class is not None:
                desc += f" → {self.sel.class_names[target_class]}"
            with progress_bar(len(todo), desc, enabled=self.progress) as bar:
                bar.update(min(start * self.spec.batch_size, len(todo)))
                bar.set_postfix(robust=f"{robust.sum() / n:.1%}" if target_class is None else "-")
                for b, first in enumerate(batches):
                    if b < start:
                        continue
                    idx = todo[first : first + self.spec.batch_size]
                    fooled, pred, norms = self._batch(
                        attack, component, idx, _seed(self.spec.seed, stage, b), target_class
                    )
                    hit = idx[fooled]
                    robust[hit] = False
                    adv_pred[hit] = pred
                    pert[idx] = norms
                    broken[hit] = c + 1
                    self.state.put(
                        **{f"{key}.robust": robust, f"{key}.adv_pred": adv_pred, f"{key}.pert": pert},
                        **{f"{key}.broken": broken, f"{stage}.todo": todo, f"{stage}.batches": np.array(b + 1)},
                    )
                    self.state.save()
                    bar.update(len(idx))
                    bar.set_postfix(robust=f"{robust.sum() / n:.1%}" if target_class is None else "-")
        names = np.array(["", *components], dtype=object)[broken].astype(str)
        return AttackRecord(attack.name, attack.eps, attack.norm, robust, adv_pred, pert, names), list(notes)

    def _batch(
        self, attack: Attack, component: str, idx: np.ndarray, seed: int, target_class: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fooled flags, predictions of the fooled, perturbation norms) of one batch."""
        pos = torch.from_numpy(idx).to(self.x.device)
        x, y = unit_images(self.x[pos]), self.y[pos]
        generator = torch.Generator(device=x.device).manual_seed(seed)
        goal = y if target_class is None else torch.full_like(y, target_class)
        x_adv, fooled = attack.run(
            self.model,
            x,
            goal,
            component=component,
            targeted=target_class is not None,
            early_stop=self.spec.early_stop,
            generator=generator,
        )
        check_ball(x_adv, x, attack)
        with torch.no_grad():
            pred = self.model(x_adv[fooled]).argmax(1) if bool(fooled.any()) else y[:0]
        return fooled.cpu().numpy(), pred.cpu().numpy(), flat_norm(x_adv - x, attack.norm).cpu().numpy()

    def targeted(self, eps: float) -> TargetedResult:
        """Attack all images not of class t toward t, for each chosen t: the source × target matrix."""
        chosen = target_classes(self.spec.targeted, self.sel.class_names)
        attack = self.spec.pgd().build(eps, self.spec.norm)
        labels = self.sel.samples.labels.numpy()
        success = np.zeros((self.k, self.k), dtype=np.int64)
        attempts = np.zeros((self.k, self.k), dtype=np.int64)
        for t in chosen:
            mask = labels != t
            rec, _ = self.attack(f"t{t}", attack, mask, target_class=t)
            success[:, t] = np.bincount(labels[mask & ~rec.robust], minlength=self.k)
            attempts[:, t] = np.bincount(labels[mask], minlength=self.k)
        return TargetedResult(self.sel.class_names, eps, attack.name, success, attempts)

    def analyses(self, headline: AttackRecord) -> Analyses:
        """Centroid similarity and weight norms (if the model exposes them), and boundary distances."""
        sim = norms = None
        if self.spec.analyses and geometry.has_geometry(self.plain):
            centroids = geometry.class_centroids(self.plain, self.x, self.y, self.k, self.spec.batch_size)
            sim, norms = geometry.centroid_similarity(centroids), geometry.class_weight_norms(self.plain)
        boundary = self._boundary(headline.eps) if self.spec.boundary_per_class else None
        return Analyses(sim, norms, len(self.y) if sim is not None else 0, boundary)

    def _boundary(self, eps: float) -> Boundary:
        saved = self.state.get("boundary.distance")
        pos = per_class_positions(self.sel.samples.labels, self.spec.boundary_per_class, self.k)
        eps_max = 2 * eps
        attack = self.spec.pgd().build(eps_max, self.spec.norm)
        assert isinstance(attack, PGD)
        if saved is None:
            x = unit_images(self.x[pos.to(self.x.device)])
            saved = geometry.boundary_distance(
                self.model,
                x,
                self.y[pos.to(self.y.device)],
                attack=attack,
                eps_max=eps_max,
                seed=self.spec.seed,
                batch_size=self.spec.batch_size,
            )
            self.state.put(**{"boundary.distance": saved})
            self.state.save()
        index = self.sel.index[pos].numpy()
        return Boundary(index, self.sel.samples.labels[pos].numpy(), saved, self.spec.norm, eps_max, attack.name)


def _seed(seed: int, stage: str, batch: int) -> int:
    """A generator seed that depends only on the evaluation's seed and the batch's position."""
    digest = hashlib.sha256(f"{seed}:{stage}:{batch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def target_classes(targeted: str | int | None, names: tuple[str, ...]) -> list[int]:
    """``"all"``, a class name or an index → the target class indices."""
    if targeted == "all":
        return list(range(len(names)))
    if isinstance(targeted, str) and targeted in names:
        return [names.index(targeted)]
    if isinstance(targeted, int) and 0 <= targeted < len(names):
        return [targeted]
    if isinstance(targeted, str) and targeted.isdigit() and int(targeted) < len(names):
        return [int(targeted)]
    raise ConfigError(f"evaluation.targeted takes 'all', a class name or an index; classes: {', '.join(names)}")
