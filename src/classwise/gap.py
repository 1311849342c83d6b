"""The main job: train a standard and an adversarially trained model on the same data and compare
their class-wise accuracy and robustness side by side.

Each model is an ordinary training run in ``out_dir/<method>``; running the job again resumes
unfinished runs and reuses finished ones, so nothing already computed is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from classwise.train import TrainConfig, TrainResult, train
from classwise.train.rundir import CONFIG

# A small real default that runs in minutes on two CPU cores (measured in the README).
GAP_DEFAULTS: dict[str, Any] = {
    "dataset": "fashion-mnist",
    "model": "resnet20",
    "eps": 0.1,
    "attack_steps": 3,
    "epochs": 4,
    "batch_size": 128,
    "lr": 0.05,
    "schedule": "cosine",
    "train_per_class": 1000,
    "val_per_class": 50,
    "eval_steps": 5,
    "test_per_class": 300,
    "test_attack_steps": 10,
}


def measure_gap(
    base: TrainConfig,
    out_dir: str | Path,
    methods: Sequence[str] = ("standard", "pgd-at"),
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, TrainResult]:
    """Train ``base`` once per method (same data, model, seed and ε) and evaluate each class-wise.

    Returns:
        method → :class:`TrainResult` whose ``evaluation`` holds per-class clean and PGD accuracy.
    """
    results = {}
    for method in methods:
        cfg = base.replace(method=method)
        run_dir = Path(out_dir) / method
        resume = (run_dir / CONFIG).exists()  # finished epochs are reused; a changed config is refused
        results[method] = train(cfg, run_dir, resume=resume, device=device, progress=progress)
    return results
