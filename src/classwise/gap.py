"""The main job: train a standard and an adversarially trained model on the same data and compare
their class-wise accuracy and robustness side by side.

Each model is an ordinary training run in ``out_dir/<variant>``; a variant is a set of overrides
of the base config in the one override syntax (dotted keys), e.g. ``{method.name: pgd-at,
balance.name: focal, balance.args.gamma: 2}``. Running the job again resumes unfinished runs and
reuses finished ones, so nothing already computed is lost.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from classwise.config import yaml_value
from classwise.errors import ConfigError
from classwise.train import TrainConfig, TrainResult, train
from classwise.train.rundir import CONFIG
from classwise.train.track import Tracking

# A small real default that runs in about three minutes on two CPU cores (measured in the README).
GAP_DEFAULTS: dict[str, Any] = {
    "data": {"dataset": "fashion-mnist", "train_per_class": 1000, "val_per_class": 50},
    "model": {"name": "resnet20"},
    "threat": {"eps": 0.1},
    "method": {"args": {"steps": 3}},
    "optim": {"epochs": 4, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
    "monitor": {"steps": 5},
    "evaluation": {"attacks": [{"name": "pgd", "args": {"steps": 10}}], "n_per_class": 300},
}
DEFAULT_VARIANTS: tuple[dict[str, Any], ...] = ({"method.name": "standard"}, {"method.name": "pgd-at"})


def parse_variant(text: str) -> dict[str, Any]:
    """A variant from the command line: a YAML mapping of dotted keys,
    ``'{method.name: pgd-at, balance.name: focal, balance.args.gamma: 2}'``."""
    value = yaml_value(text, "--variant")
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"--variant takes a mapping of settings like '{{method.name: pgd-at}}', got {text!r}")
    return {str(k): v for k, v in value.items()}


def variant_label(variant: Mapping[str, Any]) -> str:
    """The variant's folder name: its names joined by ``+``, then its other values as ``key=value``
    (``pgd-at+focal+gamma=2``)."""
    names = [str(v) for k, v in variant.items() if k.endswith(".name")]
    others = [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in variant.items() if not k.endswith(".name")]
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", "+".join(names + others)) or "base"


def measure_gap(
    base: TrainConfig,
    out_dir: str | Path,
    variants: Sequence[Mapping[str, Any]] = DEFAULT_VARIANTS,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    track: Tracking | None = None,
) -> dict[str, TrainResult]:
    """Train ``base`` once per variant (same data, model, seed and ε) and evaluate each class-wise.

    Returns:
        variant label → :class:`TrainResult` whose ``evaluation`` holds per-class clean and PGD accuracy.
    """
    configs = {variant_label(v): base.with_overrides(v) for v in variants}  # every variant checked before training
    if len(configs) < len(variants):
        raise ConfigError("two variants have the same name; make them differ")
    results = {}
    for label, cfg in configs.items():
        run_dir = Path(out_dir) / label
        resume = (run_dir / CONFIG).exists()  # finished epochs are reused; a changed config is refused
        curves = track.for_run(label) if track else None
        results[label] = train(cfg, run_dir, resume=resume, device=device, progress=progress, track=curves)
    return results
