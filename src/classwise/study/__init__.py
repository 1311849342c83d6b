"""Studies: a grid of training and evaluation runs described in one YAML file, executed locally
or on Ray, with every per-class result in an embedded SQLite store."""

from classwise.study.execute import EXECUTORS, STORE, Outcome, RunStatus, execute_run, run_study, study_status
from classwise.study.export import FORMATS, export, export_study, study_frame, tidy_rows
from classwise.study.snapshot import finished_entries, is_planned, is_snapshot, runs_table, snapshot
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
    "finished_entries",
    "is_planned",
    "is_snapshot",
    "load_study",
    "run_hash",
    "run_study",
    "runs_table",
    "snapshot",
    "study_frame",
    "study_status",
    "tidy_rows",
]
