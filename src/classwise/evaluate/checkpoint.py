"""Evaluating a saved classwise checkpoint on a dataset into a results folder: what
``classwise evaluate`` does, as one library call."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from classwise.compute import resolve_device
from classwise.data import load_dataset
from classwise.evaluate.records import Evaluation
from classwise.evaluate.spec import EvalSpec
from classwise.evaluate.store import run_evaluation
from classwise.models import load_checkpoint

log = logging.getLogger(__name__)


def trained_eps(meta: dict[str, Any]) -> float | None:
    """The ε a checkpoint was trained at, from the config stored with it (None if unknown or 0)."""
    config = meta.get("config") or {}
    eps = (config.get("threat") or {}).get("eps") if isinstance(config.get("threat"), dict) else config.get("eps")
    return float(eps) if isinstance(eps, int | float) and eps > 0 else None


def evaluate_checkpoint(
    checkpoint: str | Path,
    dataset: str,
    spec: EvalSpec,
    out_dir: str | Path,
    *,
    root: str | None = None,
    device: str | None = "auto",
    progress: bool = True,
) -> Evaluation:
    """Evaluate ``checkpoint`` on ``dataset`` under ``spec`` into ``out_dir`` (resumable, reused when
    finished, never overwritten); ε defaults to the one the checkpoint was trained at."""
    ds = load_dataset(dataset, root=root)
    model, meta = load_checkpoint(checkpoint, num_classes=ds.num_classes, device=resolve_device(device))
    trained_on = meta.get("class_names")
    if trained_on and list(trained_on) != list(ds.class_names):
        log.warning("checkpoint classes %s differ from dataset classes %s", trained_on, list(ds.class_names))
    source = {
        "checkpoint": str(Path(checkpoint).resolve()),
        "dataset": ds.describe(),
        "config": meta.get("config") or {},
    }
    return run_evaluation(model, ds, spec.resolved(trained_eps(meta)), out_dir, source=source, progress=progress)
