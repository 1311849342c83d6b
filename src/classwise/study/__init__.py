"""Studies: a grid of training and evaluation runs described in one YAML file, executed locally
or on Ray, with every per-class result in an embedded SQLite store."""

from classwise.study.execute import EXECUTORS, STORE, Outcome, RunStatus, execute_run, run_study, study_status
from classwise.study.export import FORMATS, export, export_study, tidy_rows
from classwise.study.spec import Run, Study, load_study, run_hash
from classwise.study.store import Store

__all__ = [
    "EXECUTORS",
    "FORMATS",
    "STORE",
    "Outcome",
    "Run",
    "RunStatus",
    "Store",
    "Study",
    "execute_run",
    "export",
    "export_study",
    "load_study",
    "run_hash",
    "run_study",
    "study_status",
    "tidy_rows",
]
