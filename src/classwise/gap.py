"""The main job: train a standard and an adversarially trained model on the same data and compare
their class-wise accuracy and robustness side by side.

Each model is an ordinary training run in ``out_dir/<method>``; running the job again resumes
unfinished runs and reuses finished ones, so nothing already computed is lost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from classwise.errors import ConfigError
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
    "evaluation": {"attacks": [{"name": "pgd", "steps": 10}], "n_per_class": 300},
}


def parse_variant(text: str) -> dict[str, Any]:
    """``"pgd-at+focal:gamma=2"`` → {"method": "pgd-at", "balance": "focal", "balance_args": {"gamma": 2}}.

    Option values are read as YAML (numbers, booleans, ``[0.1, 0.2]`` lists); options are separated
    by commas outside brackets."""
    head, _, options = text.partition(":")
    method, _, technique = head.partition("+")
    args: dict[str, Any] = {}
    for item in filter(None, re.split(r",(?![^\[]*\])", options)):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"variant option {item!r} in {text!r} must be key=value")
        args[key.strip()] = yaml.safe_load(value)
    if technique:
        return {"method": method.strip(), "balance": technique.strip(), "balance_args": args}
    if args:
        raise ConfigError(f"variant {text!r} has options but no technique (write method+technique:options)")
    return {"method": method.strip()}


def measure_gap(
    base: TrainConfig,
    out_dir: str | Path,
    variants: Sequence[str] = ("standard", "pgd-at"),
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, TrainResult]:
    """Train ``base`` once per variant (same data, model, seed and ε) and evaluate each class-wise.

    Args:
        variants: training methods, optionally with a balancing technique and its options:
            ``standard``, ``pgd-at``, ``pgd-at+focal:gamma=2``, ``trades+frl:mode=both``.

    Returns:
        variant → :class:`TrainResult` whose ``evaluation`` holds per-class clean and PGD accuracy.
    """
    configs = {v: base.replace(**parse_variant(v)) for v in variants}  # every variant checked before training
    results = {}
    for variant, cfg in configs.items():
        run_dir = Path(out_dir) / re.sub(r"[^A-Za-z0-9_.=+-]+", "_", variant)
        resume = (run_dir / CONFIG).exists()  # finished epochs are reused; a changed config is refused
        results[variant] = train(cfg, run_dir, resume=resume, device=device, progress=progress)
    return results
