"""Learning-rate schedules as functions of fractional epoch t ∈ [0, epochs]."""

from __future__ import annotations

import math

from classwise.train.config import TrainConfig


def learning_rate(cfg: TrainConfig, t: float) -> float:
    """``piecewise``: ×0.1 at each milestone (Madry; Rice et al. decay at 50% and 75%);
    ``cosine``: half-cosine to 0; ``onecycle``: linear 0 → lr at 2/5 of the run → 0
    (Wong et al.'s cyclic schedule for fast FGSM); ``constant``."""
    e = cfg.epochs
    if cfg.schedule == "piecewise":
        return cfg.lr * 0.1 ** sum(t >= m * e for m in cfg.milestones)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(t, e) / e))
    if cfg.schedule == "onecycle":
        peak = 0.4 * e
        return cfg.lr * (t / peak if t <= peak else max(0.0, (e - t) / (e - peak)))
    return cfg.lr
