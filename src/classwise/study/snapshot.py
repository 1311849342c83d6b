"""A study or a run in small form, the form in which results are committed and shared: per run its
config, history and evaluation files (per-sample records gzipped, no checkpoint), and for a study the
runs table ``runs.json`` (grid values, status, attempts, seconds). ``classwise snapshot`` writes it,
and the study write-up (``python -m studies.findings``) reads it."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from classwise.errors import ClasswiseError
from classwise.evaluate.store import write_files_atomically
from classwise.study.store import STORE_FILE, Store

RUNS_TABLE = "runs.json"
RUN_FILES = ("config.yaml", "history.json")
RUN_PROVENANCE = "provenance.json"  # copied where the run has one: each session's machine, precision, start weights
EVAL_FILES = ("evaluation.json", "per_class.csv", "analyses.json")


def is_snapshot(folder: Path) -> bool:
    return (folder / RUNS_TABLE).exists()


def runs_table(folder: Path) -> list[dict[str, Any]]:
    """A study snapshot's runs table: one entry per planned run."""
    path = folder / RUNS_TABLE
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ClasswiseError(
            f"{path} is not a runs table written by classwise snapshot ({exc}); restore it from git"
        ) from exc
    if not isinstance(entries, list) or not all(map(_is_entry, entries)):
        raise ClasswiseError(
            f"{path} is not a runs table written by classwise snapshot (expected a list of runs, each with "
            "a run_id of letters and digits, status and overrides); restore it from git"
        )
    return entries


def _is_entry(e: object) -> bool:
    """A runs-table entry: a run id that names a folder inside the snapshot (no path), a status, the grid values."""
    if not isinstance(e, dict) or not isinstance(e.get("run_id"), str):
        return False
    planned = isinstance(e.get("planned", True), bool)
    return e["run_id"].isalnum() and "status" in e and isinstance(e.get("overrides"), dict) and planned


def is_planned(entry: dict[str, Any]) -> bool:
    """Whether the study's current grid plans this runs-table entry (an entry without ``planned`` was
    written before grids could be edited under a snapshot: planned)."""
    return bool(entry.get("planned", True))


def finished_entries(folder: Path) -> list[dict[str, Any]]:
    """The runs table's entries marked done whose copy in the snapshot is complete."""
    return [
        e
        for e in runs_table(folder)
        if e["status"] == "done" and (folder / "runs" / e["run_id"] / "eval" / "evaluation.json").exists()
    ]


def snapshot(source: str | Path, out: str | Path) -> Path:
    """Copy a study folder (``classwise study run --dir``) or one finished run folder into ``out`` in small form."""
    source = Path(source)
    if (source / STORE_FILE).exists():
        return snapshot_study(source, out)
    if (source / "eval" / "evaluation.json").exists():
        return copy_run(source, Path(out))
    raise ClasswiseError(
        f"{source} is neither a study folder (no {STORE_FILE}) nor a finished run (no eval/evaluation.json); "
        "give the --dir of a classwise study run, or a trained run folder"
    )


def snapshot_study(study_dir: str | Path, out: str | Path) -> Path:
    """Copy a study's finished runs into ``out``, with its runs table. Runs already copied are kept, and
    so is their ``done`` in the table when this study folder does not hold them finished (a study
    continued in a fresh folder, on another machine, after its earlier folder was lost). A run copied
    earlier that this folder's grid does not plan at all is kept with ``planned: false``."""
    study_dir, dest = Path(study_dir), Path(out)
    if not (study_dir / STORE_FILE).exists():
        raise ClasswiseError(
            f"{study_dir} is not a study folder (no {STORE_FILE}); give the --dir of a classwise study run"
        )
    earlier = {e["run_id"]: e for e in finished_entries(dest)} if is_snapshot(dest) else {}
    table = []
    for run in Store(study_dir / STORE_FILE).runs():
        entry = {k: run[k] for k in ("run_id", "status", "attempts", "seconds")}
        entry["overrides"] = json.loads(run["overrides"])
        if run["status"] == "done":
            copy_run(study_dir / "runs" / run["run_id"], dest / "runs" / run["run_id"])
        copied = earlier.pop(run["run_id"], None)
        table.append({**copied, "planned": True} if copied and run["status"] != "done" else entry)
    # finished earlier, in no grid this folder planned (the grid was edited since): still results, marked
    table += [{**e, "planned": False} for e in earlier.values()]
    write_files_atomically(dest, {RUNS_TABLE: partial(write_bytes, (json.dumps(table, indent=1) + "\n").encode())})
    return dest


def copy_run(src: Path, out: Path) -> Path:
    """Copy a finished run folder in small form: config, history, provenance and evaluation files (``eval/``
    and any later ``eval-<name>/`` of ``classwise study evaluate``), the per-sample records
    gzipped, no checkpoint. What was copied before is kept; evaluations added since are copied."""
    if not (src / "eval" / "evaluation.json").exists():
        raise ClasswiseError(f"{src} holds no finished run (no eval/evaluation.json); give a trained run folder")
    if not (out / "eval" / "evaluation.json").exists():
        names = RUN_FILES + ((RUN_PROVENANCE,) if (src / RUN_PROVENANCE).exists() else ())
        write_files_atomically(out, {name: partial(_copy, src / name) for name in names})
    for folder in sorted([src / "eval", *src.glob("eval-*")]):
        dest = out / folder.name
        if not (folder / "evaluation.json").exists() or (dest / "evaluation.json").exists():
            continue  # unfinished, or copied before
        writers: dict[str, Callable[[Path], Any]] = {
            name: partial(_copy, folder / name) for name in EVAL_FILES if (folder / name).exists()
        }
        writers["samples.csv.gz"] = partial(_gzip, folder / "samples.csv")
        evaluation = writers.pop("evaluation.json")  # last: its presence marks a complete copy
        write_files_atomically(dest, writers)
        write_files_atomically(dest, {"evaluation.json": evaluation})
    return out


def write_bytes(data: bytes, path: Path) -> None:
    path.write_bytes(data)


def _copy(source: Path, path: Path) -> None:
    path.write_bytes(source.read_bytes())


def _gzip(source: Path, path: Path) -> None:
    with open(source, "rb") as f, gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as g:
        shutil.copyfileobj(f, g)
