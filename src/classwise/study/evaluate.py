"""A second evaluation of a study's finished runs, e.g. AutoAttack on a fixed subset beside the
study's PGD on the whole test set: each run's evaluated checkpoint (``best.pt``, or CFA's
``fawa.pt``) is attacked again into ``runs/<id>/eval-<name>/``. Like every evaluation it resumes
where it stopped and reuses what finished, so the command can be re-run as more runs finish."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from classwise.errors import ClasswiseError, ConfigError
from classwise.evaluate import EvalSpec, evaluate_model, read_evaluation
from classwise.progress import progress_bar
from classwise.study.store import STORE_FILE, Store

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


@dataclass(frozen=True)
class Evaluated:
    run_id: str
    folder: Path
    reused: bool


def evaluation_folder(run_dir: Path, name: str) -> Path:
    return run_dir / f"eval-{name}"


def evaluate_study(
    study_dir: str | Path, spec: EvalSpec, name: str, *, device: str = "auto", progress: bool = True
) -> list[Evaluated]:
    """Evaluate every finished run of the study in ``study_dir`` under ``spec`` into
    ``runs/<id>/eval-<name>/``; runs not finished yet are left for a later call."""
    if not NAME.fullmatch(name):
        raise ConfigError(f"evaluation name {name!r}: use lower-case letters, digits and '-' (e.g. autoattack)")
    study_dir = Path(study_dir)
    if not (study_dir / STORE_FILE).exists():
        raise ClasswiseError(f"{study_dir} is not a study folder (no {STORE_FILE}); give the --dir of a study run")
    done = [r["run_id"] for r in Store(study_dir / STORE_FILE).runs() if r["status"] == "done"]
    if not done:
        raise ClasswiseError(f"{study_dir} holds no finished run yet; evaluate again when runs have finished")
    out = []
    with progress_bar(len(done), f"eval-{name}", unit="run", enabled=progress) as bar:
        for run_id in done:
            run_dir = study_dir / "runs" / run_id
            checkpoint = run_dir / str(read_evaluation(run_dir / "eval").source.get("checkpoint", "best.pt"))
            data = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {})["data"]
            folder = evaluation_folder(run_dir, name)
            reused = (folder / "evaluation.json").exists()
            evaluate_model(
                str(checkpoint), data["dataset"], spec, folder, root=data.get("root"), device=device, progress=progress
            )
            out.append(Evaluated(run_id, folder, reused))
            bar.update(1)
    return out
