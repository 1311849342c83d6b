"""What a report shows, read from stored results only: a run folder (``eval/`` and
``history.json``), a folder of runs (as ``classwise gap`` writes), a study folder
(``results.sqlite`` and its runs) or an evaluation folder (``classwise evaluate --out``).
Nothing is trained, evaluated or loaded from a checkpoint, and every path is relative to the
folder given: a copied or moved folder reports the same."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from classwise.config import flatten, number
from classwise.errors import ClasswiseError, ConfigError
from classwise.evaluate import AttackRecord, ClassAccuracy, Evaluation, read_evaluation
from classwise.history import Epoch, load_history
from classwise.report.headline import trained_adversarially


def _bands(acc: ClassAccuracy) -> np.ndarray:
    return np.stack([acc.accuracy, acc.low, acc.high])


@dataclass(frozen=True)
class ModelResult:
    """One model's stored evaluation, with its training history and config when it was trained here."""

    name: str
    evaluation: Evaluation
    history: list[Epoch] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""  # a study run's id (its folder name), where ``name`` is its setting

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.evaluation.class_names

    @property
    def dataset(self) -> str:
        return self.evaluation.title

    @property
    def adversarial(self) -> bool | None:
        """Whether it was adversarially trained, from what its run stored (None: not known)."""
        return trained_adversarially(self.evaluation.source, self.config)

    @property
    def n(self) -> np.ndarray:
        return self.evaluation.clean().n

    @property
    def clean(self) -> np.ndarray:
        """(3, K): clean accuracy, 95% interval low, high."""
        return _bands(self.evaluation.clean())

    @property
    def headline(self) -> AttackRecord:
        """The worst case at the threat model the model was trained for (its config's norm and ε)
        where the evaluation measured it, else at the largest ε: a sweep over ε leads with the
        training budget, as a study's tables say ("at the dataset's ε")."""
        threat = self.config.get("threat") or {}
        try:
            eps = number(threat["eps"], "threat.eps") if isinstance(threat, dict) and "eps" in threat else None
        except ConfigError:
            eps = None  # a config this version cannot read: lead with the largest ε, as for a model without one
        norm = threat.get("norm", "Linf") if isinstance(threat, dict) else None
        trained = [r for r in self.evaluation.worst if r.norm == norm and eps is not None and math.isclose(r.eps, eps)]
        return trained[0] if trained else self.evaluation.headline

    @property
    def robust(self) -> np.ndarray:
        """(3, K): robust accuracy of the headline record with its interval."""
        return _bands(self.evaluation.robust(self.headline))

    def robust_of(self, record: AttackRecord) -> np.ndarray:
        return _bands(self.evaluation.robust(record))

    def eps_curve(self) -> tuple[list[float], np.ndarray]:
        """ε values and (len(ε), K) worst-case robust accuracy."""
        worst = sorted(self.evaluation.worst, key=lambda r: r.eps)
        return [r.eps for r in worst], np.array([self.evaluation.robust(r).accuracy for r in worst])

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.evaluation.warnings


@dataclass(frozen=True)
class ReportData:
    title: str
    models: list[ModelResult]
    study_rows: list[dict[str, Any]] = field(default_factory=list)  # tidy per-class rows of a study
    source: str = ""

    def class_groups(self) -> list[tuple[str, list[ModelResult]]]:
        """The models by the classes they are on (a study over several datasets holds several groups),
        each labelled by its dataset(s), in the order the models come; class-by-class figures compare
        the models of one group only."""
        groups: dict[tuple[str, ...], list[ModelResult]] = {}
        for m in self.models:
            groups.setdefault(m.class_names, []).append(m)
        return [(", ".join(sorted({m.dataset for m in g})), g) for g in groups.values()]


def model_from_folder(name: str, folder: Path) -> ModelResult:
    """The model evaluated in ``folder``: a run folder (its ``eval/``) or an evaluation folder."""
    is_run = (folder / "eval" / "evaluation.json").exists()
    ev = read_evaluation(folder / "eval" if is_run else folder)
    history: list[Epoch] = []
    config: dict[str, Any] = {} if is_run else dict(ev.source.get("config") or {})  # as stored with the checkpoint
    if is_run and (folder / "history.json").exists():
        history = load_history(folder / "history.json")
    if is_run and (folder / "config.yaml").exists():
        config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    return ModelResult(name, ev, history, config)


def _evaluated(folder: Path) -> bool:
    return (folder / "eval" / "evaluation.json").exists() or (folder / "evaluation.json").exists()


RUN_ID = re.compile(r"[0-9a-f]{12}")  # a study run's folder name (classwise.study.run_hash)


def collect(path: str | Path) -> ReportData:
    """Read a run folder, a folder of runs, a study (its live folder with ``results.sqlite``, its
    snapshot with ``runs.json``, or the bare folder of its run folders) or an evaluation folder."""
    path = Path(path)
    if not path.is_dir():
        raise ClasswiseError(f"{path} is not a folder; give a run folder, a 'classwise gap' folder or a study folder")
    study = _study_runs(path)
    if study is not None:
        return _collect_study(*study)
    found = (p for p in path.iterdir() if p.is_dir() and _evaluated(p))
    runs = [path] if _evaluated(path) else sorted(found, key=lambda p: (p.name != "standard", p.name))
    if not runs:
        raise ClasswiseError(
            f"{path} holds no evaluated run (eval/evaluation.json) and no study (results.sqlite or runs.json)"
        )
    return ReportData(f"classwise report: {path.name}", [model_from_folder(p.name, p) for p in runs], source=path.name)


def _study_runs(path: Path) -> tuple[str, list[Path]] | None:
    """(the study's name, its finished run folders) for a study in any of its forms, else None."""
    from classwise.study import STORE, Store, finished_entries, is_snapshot

    if (path / STORE).exists():
        runs, _ = Store(path / STORE).read()  # one moment of a study that may be running
        folders = [path / "runs" / r["run_id"] for r in runs if r["status"] == "done"]
        return path.name, [f for f in folders if _evaluated(f)]
    if is_snapshot(path):
        return path.name, [path / "runs" / e["run_id"] for e in finished_entries(path)]
    folders = sorted(p for p in path.iterdir() if p.is_dir() and RUN_ID.fullmatch(p.name) and _evaluated(p))
    if folders and all(RUN_ID.fullmatch(p.name) for p in path.iterdir() if p.is_dir()):
        return (path.parent.name if path.name == "runs" else path.name), folders
    return None


def _collect_study(name: str, folders: list[Path]) -> ReportData:
    """The study's finished runs, each named by its setting and seed, in setting and seed order, with
    their tidy per-class rows built from the run folders (the same in every form of the study)."""
    import dataclasses

    from classwise.report.settings import group_settings, run_label, varying_keys
    from classwise.study.export import metric_rows, tidy_row

    if not folders:
        raise ClasswiseError(f"study {name} holds no finished run yet")
    models = [model_from_folder(f.name, f) for f in folders]
    keys = varying_keys([m.config for m in models])
    named, rows = [], []
    for setting in group_settings(models):
        for m in setting.runs:
            flat = flatten(m.config)
            grid = {k: flat.get(k) for k in keys}
            rows += [tidy_row(m.name, m.config, grid, metric) for metric in metric_rows(m.evaluation)]
            named.append(dataclasses.replace(m, name=run_label(setting, m), run_id=m.name))
    return ReportData(f"classwise study report: {name}", named, rows, name)
