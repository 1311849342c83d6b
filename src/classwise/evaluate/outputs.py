"""Writing an evaluation to a folder: ``evaluation.json`` (summary, per-class rows, confusion
matrices, config, warnings), ``per_class.csv`` and ``samples.csv`` (per-sample records).
Files are written into a temporary folder and moved in only when all are complete, so a run
that dies never leaves half-written results."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from classwise.evaluate.engine import Evaluation
from classwise.evaluate.tables import per_class_rows, sample_rows, to_dict
from classwise.evaluate.targeted import TargetedResult


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        if not rows:
            return
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_files_atomically(out_dir: Path, writers: dict[str, Any]) -> list[Path]:
    """Call ``writers[name](tmp_path)`` for each file into a temporary folder, then move all into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".partial-"))
    try:
        for name, write in writers.items():
            write(tmp / name)
        done = []
        for name in writers:
            os.replace(tmp / name, out_dir / name)
            done.append(out_dir / name)
        return done
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_evaluation(
    ev: Evaluation, out_dir: str | Path, targeted: TargetedResult | None = None, extra: dict[str, Any] | None = None
) -> list[Path]:
    """Write the evaluation files into ``out_dir``; returns their paths."""
    payload = to_dict(ev)
    if targeted is not None:
        payload["targeted"] = targeted.to_dict()
    if extra:
        payload["source"] = extra
    return write_files_atomically(
        Path(out_dir),
        {
            "evaluation.json": lambda p: p.write_text(json.dumps(payload, indent=1)),
            "per_class.csv": lambda p: write_csv(p, per_class_rows(ev)),
            "samples.csv": lambda p: write_csv(p, sample_rows(ev)),
        },
    )
