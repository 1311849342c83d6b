"""Distance to the decision boundary per class: the smallest ε at which PGD flips each sample,
found by binary search over ε; and per-class classifier weight norms."""

from __future__ import annotations

import numpy as np
import torch

from classwise.attacks import check_norm, pgd
from classwise.evaluate import frozen_eval
from classwise.models import ImageClassifier


def boundary_distance(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str = "Linf",
    eps_max: float = 0.5,
    steps: int = 20,
    iterations: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Per-sample smallest ε (within ``eps_max / 2**iterations``) at which PGD-``steps`` fools the
    model: 0 for misclassified samples, ``inf`` if not fooled even at ``eps_max``. ``x`` in [0,1]."""
    norm = check_norm(norm)
    with frozen_eval(model):
        with torch.no_grad():
            wrong = model(x).argmax(1) != y
        lo = torch.zeros(len(x), dtype=torch.float64)
        hi = torch.full((len(x),), eps_max, dtype=torch.float64)
        fooled_at_max = _fooled(model, x, y, hi, norm, steps, seed)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            fooled = _fooled(model, x, y, mid, norm, steps, seed)
            hi = torch.where(fooled, mid, hi)
            lo = torch.where(fooled, lo, mid)
    out = hi.numpy().copy()
    out[~fooled_at_max.numpy()] = np.inf
    out[wrong.cpu().numpy()] = 0.0
    return out


def _fooled(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, norm: str, steps: int, seed: int
) -> torch.Tensor:
    """Whether PGD (no random start, step 2.5·ε/steps per sample) fools each sample within its ε."""
    e = eps.to(x.device, torch.float32)
    g = torch.Generator(device=x.device).manual_seed(seed)
    _, fooled = pgd(
        model,
        x,
        y,
        eps=e,
        step_size=2.5 * e / steps,
        steps=steps,
        norm=norm,
        random_start=False,
        early_stop=True,
        generator=g,
    )
    return fooled.cpu()


def class_weight_norms(model: ImageClassifier) -> np.ndarray:
    """L2 norm of each class's row of the final linear layer: (K,)."""
    return model.head.weight.detach().float().norm(dim=1).cpu().numpy()
