"""Targeted evaluation: attack every class toward a chosen target, or toward every other class,
giving a source × target success matrix (how easily class s is turned into class t)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from classwise.attacks import PGD, format_eps
from classwise.data.dataset import LabeledImages
from classwise.errors import ConfigError
from classwise.evaluate.engine import attack_samples, frozen_eval


@dataclass(frozen=True)
class TargetedResult:
    """``success[s, t]``: images of class s that the attack turned into class t; ``attempts[s, t]``:
    images of class s attacked toward t (0 on the diagonal and for targets not attacked)."""

    class_names: tuple[str, ...]
    eps: float
    attack: str
    success: np.ndarray
    attempts: np.ndarray

    @property
    def rate(self) -> np.ndarray:
        return np.divide(self.success, self.attempts, out=np.full(self.success.shape, np.nan), where=self.attempts > 0)

    def to_dict(self) -> dict[str, object]:
        return {
            "attack": self.attack,
            "eps": self.eps,
            "eps_text": format_eps(self.eps),
            "classes": list(self.class_names),
            "success": self.success.tolist(),
            "attempts": self.attempts.tolist(),
        }


def targeted_matrix(
    model: nn.Module,
    samples: LabeledImages,
    class_names: Sequence[str],
    attack: PGD,
    targets: Sequence[int] | None = None,
    *,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> TargetedResult:
    """Attack all images not of class t toward t, for each t in ``targets`` (default: every class)."""
    k = len(class_names)
    chosen = list(range(k)) if targets is None else list(targets)
    if any(t < 0 or t >= k for t in chosen):
        raise ConfigError(f"target classes must be in 0..{k - 1}, got {chosen}")
    dev = next(model.parameters()).device
    x_all, y_all = samples.images.to(dev), samples.labels.to(dev)
    labels = samples.labels.numpy()
    success = np.zeros((k, k), dtype=np.int64)
    attempts = np.zeros((k, k), dtype=np.int64)
    with frozen_eval(model), torch.no_grad():
        preds = torch.cat(
            [model(x_all[i : i + batch_size].float() / 255).argmax(1) for i in range(0, len(x_all), batch_size)]
        )
    with frozen_eval(model):
        for t in chosen:
            mask = labels != t
            rec = attack_samples(model, attack, x_all, y_all, preds, mask, batch_size, seed, progress, target_class=t)
            hit = mask & ~rec.robust
            success[:, t] = np.bincount(labels[hit], minlength=k)
            attempts[:, t] = np.bincount(labels[mask], minlength=k)
    return TargetedResult(tuple(class_names), attack.eps, attack.name, success, attempts)
