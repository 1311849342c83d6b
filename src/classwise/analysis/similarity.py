"""Class similarity: cosine similarity of penultimate-layer class centroids, and a symmetric
similarity from confusions — to be set against class robustness."""

from __future__ import annotations

import numpy as np
import torch

from classwise.data import LabeledImages
from classwise.evaluate import frozen_eval
from classwise.models import ImageClassifier


def class_centroids(
    model: ImageClassifier, split: LabeledImages, num_classes: int, batch_size: int = 512
) -> np.ndarray:
    """Mean penultimate-layer feature of each class: (K, D). A forward pass only; nothing is trained."""
    device = next(model.parameters()).device
    sums: torch.Tensor | None = None
    with frozen_eval(model), torch.no_grad():
        for i in range(0, len(split), batch_size):
            x = split.images[i : i + batch_size].to(device).float() / 255
            f = model.features(x).float()
            y = split.labels[i : i + batch_size].to(device)
            part = torch.zeros(num_classes, f.shape[1], device=device).index_add_(0, y, f)
            sums = part if sums is None else sums + part
    assert sums is not None
    counts = split.counts(num_classes).to(sums.device).clamp_min(1)[:, None]
    return (sums / counts).cpu().numpy()


def centroid_similarity(centroids: np.ndarray) -> np.ndarray:
    """Cosine similarity between class centroids: (K, K), 1 on the diagonal."""
    unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True).clip(1e-12)
    return unit @ unit.T


def confusion_similarity(confusion: np.ndarray) -> np.ndarray:
    """Symmetric similarity from a (K, K) confusion matrix: (P[i→j] + P[j→i]) / 2 with rows
    normalised to shares, 0 on the diagonal."""
    totals = confusion.sum(1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=np.float64), where=totals > 0)
    sim = (shares + shares.T) / 2
    np.fill_diagonal(sim, 0.0)
    return sim
