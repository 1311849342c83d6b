"""What a report shows, read from stored results only: a run folder (``eval/evaluation.json`` and
``history.json``), a folder of runs (as ``classwise gap`` writes), or a study folder
(``results.sqlite``). Nothing is trained; class similarity and boundary distances, when asked
for, run the saved checkpoint forward."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from classwise.errors import ClasswiseError


@dataclass(frozen=True)
class ModelResult:
    """One trained model's class-wise results."""

    name: str
    class_names: tuple[str, ...]
    dataset: str
    n: np.ndarray  # per class
    clean: np.ndarray  # (3, K): accuracy, ci low, ci high
    robust: dict[str, np.ndarray]  # metric key (attack@eps) → (3, K)
    confusion: dict[str, np.ndarray]  # "clean" and worst keys → (K, K)
    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def worst_key(self) -> str:
        """The worst-case robust metric at the largest ε (the headline robustness)."""
        worst = [k for k in self.robust if k.startswith("worst@")] or list(self.robust)
        return max(worst, key=lambda k: _eps_of(k))

    def eps_curve(self) -> tuple[list[float], np.ndarray]:
        """ε values and (len(ε), K) worst-case robust accuracy."""
        prefix = "worst@" if any(k.startswith("worst@") for k in self.robust) else self.worst_key.split("@")[0] + "@"
        keys = sorted((k for k in self.robust if k.startswith(prefix)), key=_eps_of)
        return [_eps_of(k) for k in keys], np.array([self.robust[k][0] for k in keys])


@dataclass(frozen=True)
class ReportData:
    title: str
    models: list[ModelResult]
    study_rows: list[dict[str, Any]] = field(default_factory=list)  # tidy per-class rows of a study
    source: str = ""


def _eps_of(key: str) -> float:
    text = key.partition("@")[2]
    if "/" in text:
        a, b = text.split("/")
        return float(a) / float(b)
    return float(text) if text else 0.0


def model_from_evaluation(name: str, payload: dict[str, Any], run_dir: Path | None = None) -> ModelResult:
    classes = tuple(payload["classes"])
    k = len(classes)
    by_metric: dict[str, np.ndarray] = {}
    n = np.zeros(k, dtype=np.int64)
    for row in payload["per_class"]:
        arr = by_metric.setdefault(row["metric"], np.full((3, k), np.nan))
        arr[:, row["class_index"]] = (row["accuracy"], row["ci_low"], row["ci_high"])
        n[row["class_index"]] = row["n"]
    history: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    if run_dir is not None and (run_dir / "history.json").exists():
        history = json.loads((run_dir / "history.json").read_text())
    if run_dir is not None and (run_dir / "config.yaml").exists():
        import yaml

        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    title = payload["dataset"] + (
        f" ({'; '.join(payload.get('dataset_notes', []))})" if payload.get("dataset_notes") else ""
    )
    return ModelResult(
        name=name,
        class_names=classes,
        dataset=title,
        n=n,
        clean=by_metric.pop("clean"),
        robust=by_metric,
        confusion={key: np.array(v) for key, v in payload["confusion"].items()},
        history=history,
        config=config,
        checkpoint=(payload.get("source") or {}).get("checkpoint"),
        warnings=tuple(payload.get("warnings", [])),
    )


def collect(path: str | Path) -> ReportData:
    """Read a run folder, a folder of runs, or a study folder."""
    path = Path(path)
    if not path.is_dir():
        raise ClasswiseError(f"{path} is not a folder; give a run folder, a 'classwise gap' folder or a study folder")
    if (path / "results.sqlite").exists():
        return _collect_study(path)
    found = (p for p in path.iterdir() if p.is_dir() and _evaluation_file(p))
    runs = [path] if _evaluation_file(path) else sorted(found, key=lambda p: (p.name != "standard", p.name))
    if not runs:
        raise ClasswiseError(f"{path} holds no evaluated run (eval/evaluation.json) and no study (results.sqlite)")
    models = [
        model_from_evaluation(p.name, json.loads(_evaluation_file(p).read_text()), p)  # type: ignore[union-attr]
        for p in runs
    ]
    return ReportData(f"classwise report: {path.name}", models, source=str(path))


def _evaluation_file(run_dir: Path) -> Path | None:
    for name in ("eval/evaluation.json", "study_eval/evaluation.json", "evaluation.json"):
        if (run_dir / name).exists():
            return run_dir / name
    return None


def _collect_study(path: Path) -> ReportData:
    from classwise.study import Store, tidy_rows

    store = Store(path / "results.sqlite")
    rows = tidy_rows(store)
    if not rows:
        raise ClasswiseError(f"{path} holds no finished run yet")
    models = []
    for run in store.runs():
        if run["status"] != "done":
            continue
        file = _evaluation_file(path / "runs" / run["run_id"])
        if file is not None:
            label = ", ".join(f"{k}={v}" for k, v in json.loads(run["overrides"]).items()) or run["run_id"]
            models.append(model_from_evaluation(label, json.loads(file.read_text()), path / "runs" / run["run_id"]))
    return ReportData(f"classwise study report: {path.name}", models, rows, str(path))
