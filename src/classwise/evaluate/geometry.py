"""The model's geometry per class, measured while it is evaluated (the "why" analyses that need
the model): penultimate-layer class centroids and their cosine similarity, classifier weight
norms, and the distance to the decision boundary (the smallest ε at which PGD flips a sample,
by binary search over ε)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from classwise.attacks import PGD
from classwise.data.dataset import unit_images


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
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


def has_geometry(model: nn.Module) -> bool:
    """Whether the model exposes penultimate features and a linear head (every classwise model does)."""
    return callable(getattr(model, "features", None)) and isinstance(getattr(model, "head", None), nn.Linear)


def class_centroids(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, batch_size: int = 512
) -> np.ndarray:
    """Mean penultimate-layer feature of each class over uint8 ``images``: (K, D). Forward passes only."""
    device = next(model.parameters()).device
    sums: torch.Tensor | None = None
    with frozen_eval(model), torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = unit_images(images[i : i + batch_size].to(device))
            f = model.features(x).float()  # type: ignore[operator]
            y = labels[i : i + batch_size].to(device)
            part = torch.zeros(num_classes, f.shape[1], device=device).index_add_(0, y, f)
            sums = part if sums is None else sums + part
    if sums is None:
        raise ValueError("no images to compute class centroids from")
    counts = torch.bincount(labels.to(sums.device), minlength=num_classes).clamp_min(1)[:, None]
    return (sums / counts).cpu().numpy()


def centroid_similarity(centroids: np.ndarray) -> np.ndarray:
    """Cosine similarity between class centroids: (K, K), 1 on the diagonal."""
    unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True).clip(1e-12)
    return unit @ unit.T


def class_weight_norms(model: nn.Module) -> np.ndarray:
    """L2 norm of each class's row of the final linear layer: (K,)."""
    return model.head.weight.detach().float().norm(dim=1).cpu().numpy()  # type: ignore[union-attr,operator]


def boundary_distance(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    attack: PGD | None = None,
    norm: str = "Linf",
    eps_max: float = 0.5,
    iterations: int = 10,
    seed: int = 0,
    batch_size: int = 256,
) -> np.ndarray:
    """Per-sample smallest ε (within ``eps_max / 2**iterations``) at which ``attack`` fools the
    model: 0 for misclassified samples, ``inf`` if not fooled even at ``eps_max``. ``x`` in [0,1].

    ``attack`` is the evaluation's PGD (default: PGD with its defaults); at each ε of the search it
    runs with that ε and its step rule scaled to it, from the clean image (no random start, so the
    search is monotone in practice), on all samples in batches."""
    attack = attack or PGD(eps=eps_max, norm=norm)
    out = np.empty(len(x))
    with frozen_eval(model):
        for i in range(0, len(x), batch_size):
            out[i : i + batch_size] = _search(
                model, x[i : i + batch_size], y[i : i + batch_size], attack, eps_max, iterations, seed
            )
    return out


def _search(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: PGD, eps_max: float, iterations: int, seed: int
) -> np.ndarray:
    with torch.no_grad():
        wrong = model(x).argmax(1) != y
    lo = torch.zeros(len(x), dtype=torch.float64)
    hi = torch.full((len(x),), eps_max, dtype=torch.float64)
    fooled_at_max = _fooled(model, x, y, hi, attack, seed)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        fooled = _fooled(model, x, y, mid, attack, seed)
        hi = torch.where(fooled, mid, hi)
        lo = torch.where(fooled, lo, mid)
    out = hi.numpy().copy()
    out[~fooled_at_max.numpy()] = np.inf
    out[wrong.cpu().numpy()] = 0.0
    return out


def _fooled(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, attack: PGD, seed: int
) -> torch.Tensor:
    """Whether ``attack`` at per-sample budgets ``eps`` fools each sample."""
    e = eps.to(x.device, torch.float32)
    g = torch.Generator(device=x.device).manual_seed(seed)
    _, fooled = attack.core(model, x, y, e, attack.step_at(e), random_start=False, early_stop=True, generator=g)
    return fooled.cpu()
