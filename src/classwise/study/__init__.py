"""Studies: a grid of training and evaluation runs described in one YAML file, executed locally
or on Ray, with every per-class result in an embedded SQLite store."""

from classwise.study.execute import STORE, Outcome, execute_run, run_study
from classwise.study.export import export, tidy_rows
from classwise.study.spec import Run, Study, load_study, run_hash
from classwise.study.store import Store

__all__ = [
    "STORE",
    "Outcome",
    "Run",
    "Store",
    "Study",
    "execute_run",
    "export",
    "load_study",
    "run_hash",
    "run_study",
    "tidy_rows",
]
