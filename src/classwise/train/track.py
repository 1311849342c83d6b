"""Experiment trackers: each epoch's record (the one written to ``history.json``) as scalars in
TensorBoard or MLflow, so the per-class validation curves can be followed live.

Where the curves go does not change the run, so a tracker is an option of the command
(``classwise train --tensorboard DIR``, ``--mlflow URI``), not a setting: it is not part of a
run's id and adding one on resume is not a changed config. The scalars, per epoch (step =
epoch, counted from 1):

- ``train/loss``, ``train/accuracy``, ``train/lr``, ``train/images_per_s``,
  ``train/accuracy_by_class/<class>``;
- ``val/clean_mean``, ``val/clean_worst``, ``val/robust_mean``, ``val/robust_worst`` and
  ``val/clean_by_class/<class>``, ``val/robust_by_class/<class>`` on validation epochs;
- ``technique/<what>/<class>`` for what the balancing technique applies next (CFA's ε and β
  scales, FRL's budgets, class weights ...), ``technique/<what>`` for a single number;
- after the final evaluation, ``test/clean_mean``, ``test/robust_mean``, ``test/robust_worst`` and
  the per-class test accuracies, at the last epoch's step.

TensorBoard needs the ``tensorboard`` package (``classwise[tensorboard]``), MLflow the
``mlflow-skinny`` one (``classwise[mlflow]``); both install beside the CPU torch.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classwise.errors import ConfigError
from classwise.evaluate import Evaluation
from classwise.history import Epoch


@dataclass(frozen=True)
class Tracking:
    """Where a run's curves go: a TensorBoard log folder, an MLflow tracking URI, both or neither.
    ``name`` is the run's name there (a study gives each run its id)."""

    tensorboard: Path | None = None
    mlflow: str | None = None
    name: str | None = None

    def __bool__(self) -> bool:
        return self.tensorboard is not None or self.mlflow is not None

    def check(self) -> None:
        """Refuse, before anything is written, a tracker whose package is not installed."""
        if self.tensorboard is not None and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("--tensorboard needs the tensorboard package: pip install 'classwise[tensorboard]'")
        if self.mlflow is not None and importlib.util.find_spec("mlflow") is None:
            raise ConfigError("--mlflow needs MLflow: pip install 'classwise[mlflow]' (mlflow-skinny)")

    def for_run(self, name: str) -> Tracking:
        """The same trackers for one run of many: its own TensorBoard subfolder and MLflow run name."""
        folder = None if self.tensorboard is None else self.tensorboard / name
        return Tracking(folder, self.mlflow, name)


def _per_class(prefix: str, values: Sequence[float], class_names: Sequence[str]) -> dict[str, float]:
    return {f"{prefix}/{name}": float(v) for name, v in zip(class_names, values, strict=True)}


def epoch_scalars(record: Epoch | Mapping[str, Any], class_names: Sequence[str]) -> dict[str, float]:
    """One epoch's record (typed, or as the loop writes it) flattened to named scalars (the names in
    the module's docstring)."""
    e = record if isinstance(record, Epoch) else Epoch.from_dict(record)
    out: dict[str, float] = {}
    for value, name in (
        (e.train_loss, "loss"),
        (e.train_acc, "accuracy"),
        (e.lr_end, "lr"),
        (e.images_per_s, "images_per_s"),
    ):
        if value is not None:
            out[f"train/{name}"] = float(value)
    if e.train_class_acc is not None:
        out.update(_per_class("train/accuracy_by_class", e.train_class_acc, class_names))
    v = e.val
    if v is not None:
        for key, value in (
            ("clean_mean", v.clean_mean),
            ("clean_worst", v.clean_worst),
            ("robust_mean", v.robust_mean),
            ("robust_worst", v.robust_worst),
        ):
            if value is not None:
                out[f"val/{key}"] = float(value)
        for key, values in (("clean", v.clean), ("robust", v.robust)):
            if values:
                out.update(_per_class(f"val/{key}_by_class", values, class_names))
    for what, value in e.technique.items():
        if isinstance(value, list | tuple) and len(value) == len(class_names):
            out.update(_per_class(f"technique/{what}", value, class_names))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[f"technique/{what}"] = float(value)
    return out


def test_scalars(evaluation: Evaluation) -> dict[str, float]:
    """The final evaluation's clean accuracy and its headline robustness (the worst case at the
    largest ε): mean, worst class and per class."""
    names = evaluation.class_names
    clean = evaluation.clean().accuracy
    out = {"test/clean_mean": float(clean.mean())}
    out.update(_per_class("test/clean_by_class", clean.tolist(), names))
    if evaluation.worst:
        robust = evaluation.robust(evaluation.headline).accuracy
        out.update({"test/robust_mean": float(robust.mean()), "test/robust_worst": float(robust.min())})
        out.update(_per_class("test/robust_by_class", robust.tolist(), names))
    return out


class Tracker:
    """The trackers of one run: ``log`` writes named scalars at a step to each, ``close`` flushes."""

    def __init__(self, tracking: Tracking, settings: Mapping[str, Any]) -> None:
        self._writers: list[Any] = []
        self._mlflow: Any = None
        tracking.check()
        if tracking.tensorboard is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writers.append(SummaryWriter(log_dir=str(tracking.tensorboard)))
        if tracking.mlflow is not None:
            import mlflow

            mlflow.set_tracking_uri(tracking.mlflow)
            mlflow.set_experiment("classwise")
            self._mlflow = mlflow.start_run(run_name=tracking.name)
            mlflow.log_params(_flat(settings))

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        for writer in self._writers:
            for name, value in scalars.items():
                writer.add_scalar(name, value, step)
            writer.flush()
        if self._mlflow is not None:
            import mlflow

            mlflow.log_metrics(dict(scalars), step=step)

    def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._mlflow is not None:
            import mlflow

            mlflow.end_run()


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as dotted keys (MLflow's parameters), values as text."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = str(value)
    return out
