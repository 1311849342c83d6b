"""Evaluating any model (a classwise checkpoint, a RobustBench zoo entry, timm, TorchScript, your
own code) on a dataset into a results folder: what ``classwise evaluate`` and ``classwise audit``
do, as one library call."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from classwise.compute import resolve_device
from classwise.data import Dataset, class_subset, load_dataset, without_classes
from classwise.evaluate.records import Evaluation
from classwise.evaluate.spec import EvalSpec
from classwise.evaluate.store import run_evaluation
from classwise.models.sources import ModelRequest, load_model

log = logging.getLogger(__name__)


def evaluate_model(
    model: str,
    dataset: str,
    spec: EvalSpec,
    out_dir: str | Path,
    *,
    root: str | None = None,
    device: str | None = "auto",
    model_dir: str | Path = "models",
    weights: str | Path | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    progress: bool = True,
) -> Evaluation:
    """Evaluate the model ``model`` names (see :mod:`classwise.models.sources`) on ``dataset`` under
    ``spec`` into ``out_dir`` (resumable, reused when finished, never overwritten). ε defaults to
    the budget the model was trained or benchmarked at under the spec's threat model."""
    ds = load_dataset(dataset, root=root)
    request = ModelRequest(
        ds.num_classes,
        ds.input_shape,
        threat_model=spec.norm,
        class_names=ds.class_names,
        model_dir=Path(model_dir),
        weights=None if weights is None else Path(weights),
        mean=mean,
        std=std,
        device=resolve_device(device),
    )
    loaded = load_model(model, request)
    ds = _classes_of(loaded.class_names, ds)
    source = {**loaded.source, "model": model, "dataset": ds.describe()}
    source.setdefault("config", {})
    if loaded.leaderboard is not None:
        source["leaderboard"] = {**asdict(loaded.leaderboard), "test_images": loaded.leaderboard.test_images}
    default_eps = loaded.eps if loaded.threat_model == spec.norm else None
    resolved = spec.resolved(default_eps)
    return run_evaluation(loaded.model, ds, resolved, out_dir, source=source, progress=progress)


def _classes_of(model_classes: tuple[str, ...] | None, ds: Dataset) -> Dataset:
    """The dataset a model is evaluated on: a model trained without some of the dataset's classes
    (``data.drop_classes``) on the classes it has, in its order; otherwise the dataset itself."""
    if not model_classes or list(model_classes) == list(ds.class_names):
        return ds
    if set(model_classes) < set(ds.class_names):
        left_out = [c for c in ds.class_names if c not in set(model_classes)]
        log.info("the model has no output for %s: evaluated on its classes", ", ".join(left_out))
        kept = without_classes(ds, left_out)
        return kept if kept.class_names == tuple(model_classes) else class_subset(ds, list(model_classes))
    log.warning("the model's classes %s differ from the dataset's %s", model_classes, ds.class_names)
    return ds
