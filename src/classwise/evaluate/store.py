"""The one place evaluations are written and read back.

An evaluation folder holds ``evaluation.json`` (the spec, provenance, dataset, records index,
per-class summary, confusion matrices, targeted matrix, warnings), ``per_class.csv`` (tidy
per-class rows with attack, ε and norm in their own columns), ``samples.csv`` (the per-sample
records every number is derived from) and ``analyses.json`` (class geometry measured on the
model). Files are written into a temporary folder and moved in only when all are complete, so a
run that dies never leaves half-written results. :func:`read_evaluation` rebuilds the typed
:class:`Evaluation` from them; nothing downstream re-parses strings or re-runs a model.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from classwise.data.dataset import Dataset, LabeledImages
from classwise.errors import ClasswiseError, ConfigError
from classwise.evaluate.engine import evaluate, fingerprint, select_images
from classwise.evaluate.progress_state import STATE
from classwise.evaluate.records import Analyses, AttackRecord, Evaluation, TargetedResult
from classwise.evaluate.spec import EvalSpec
from classwise.evaluate.tables import class_columns, per_class_rows

FILES = ("evaluation.json", "per_class.csv", "samples.csv", "analyses.json")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        if not rows:
            return
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_files_atomically(out_dir: Path, writers: dict[str, Callable[[Path], Any]]) -> list[Path]:
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


def _all_records(ev: Evaluation) -> tuple[AttackRecord, ...]:
    return (*ev.records, *ev.worst)


def sample_rows(ev: Evaluation) -> list[dict[str, Any]]:
    """One row per (sample, record): the per-sample outcomes every metric is derived from."""
    rows = []
    for i_rec, r in enumerate(_all_records(ev)):
        for i in range(len(ev.labels)):
            rows.append(
                {
                    "record": i_rec,
                    "index": int(ev.index[i]),
                    "label": int(ev.labels[i]),
                    "clean_pred": int(ev.clean_pred[i]),
                    "attack": r.attack,
                    "eps": r.eps,
                    "norm": r.norm,
                    "robust": int(r.robust[i]),
                    "adv_pred": int(r.adv_pred[i]),
                    "perturbation": float(r.perturbation[i]),
                    "broken_by": str(r.broken_by[i]),
                }
            )
    return rows


def to_dict(ev: Evaluation) -> dict[str, Any]:
    """Everything but the per-sample records and the analyses, as plain JSON types."""
    from classwise.evaluate.metrics import Spread

    records = _all_records(ev)
    return {
        "format": "classwise-evaluation/2",
        "dataset": ev.dataset,
        "dataset_notes": list(ev.dataset_notes),
        "split": ev.split,
        "images": ev.spec.images,
        "n": len(ev.labels),
        "classes": list(ev.class_names),
        "spec": ev.spec.to_dict(),
        "fingerprint": ev.fingerprint,
        "records": [
            {"record": i, "attack": r.attack, "eps": r.eps, "norm": r.norm, "worst": r.is_worst}
            for i, r in enumerate(records)
        ],
        "per_class": per_class_rows(ev),
        "summary": [
            {
                "attack": "clean" if r is None else r.attack,
                "eps": 0.0 if r is None else r.eps,
                **asdict(Spread.of(a, ev.class_names)),
            }
            for r, a in class_columns(ev)
        ],
        "confusion": {
            "clean": ev.confusion_clean().tolist(),
            "attacked": [{"record": records.index(r), "matrix": ev.confusion_adv(r).tolist()} for r in ev.worst],
        },
        "targeted": None if ev.targeted is None else ev.targeted.to_dict(),
        "warnings": list(ev.warnings),
        "provenance": ev.provenance,
        "source": ev.source,
    }


def write_evaluation(ev: Evaluation, out_dir: str | Path) -> list[Path]:
    """Write the evaluation's files into ``out_dir`` atomically; returns their paths."""
    payload = to_dict(ev)
    analyses = ev.analyses.to_dict() if ev.analyses is not None else None
    return write_files_atomically(
        Path(out_dir),
        {
            "evaluation.json": lambda p: p.write_text(json.dumps(payload, indent=1)),
            "per_class.csv": lambda p: write_csv(p, per_class_rows(ev)),
            "samples.csv": lambda p: write_csv(p, sample_rows(ev)),
            "analyses.json": lambda p: p.write_text(json.dumps(analyses, indent=1)),
        },
    )


def read_evaluation(folder: str | Path) -> Evaluation:
    """The typed :class:`Evaluation` stored in ``folder`` (as :func:`write_evaluation` wrote it)."""
    folder = Path(folder)
    path = folder / "evaluation.json"
    if not path.is_file():
        raise ClasswiseError(f"{folder} holds no evaluation (no evaluation.json)")
    try:
        payload = json.loads(path.read_text())
        meta = payload["records"]
        samples = _read_samples(samples_file(folder), len(meta))
        analyses_path = folder / "analyses.json"
        analyses = json.loads(analyses_path.read_text()) if analyses_path.exists() else None
        spec = EvalSpec.from_dict(payload["spec"], f"{path}: spec")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClasswiseError(
            f"{folder}: the evaluation files are damaged or from an older classwise ({type(exc).__name__}: {exc}); "
            "evaluate again into a new folder"
        ) from None
    records = [AttackRecord(m["attack"], float(m["eps"]), m["norm"], *samples["records"][m["record"]]) for m in meta]
    return Evaluation(
        class_names=tuple(payload["classes"]),
        dataset=payload["dataset"],
        split=payload["split"],
        index=samples["index"],
        labels=samples["label"],
        clean_pred=samples["clean_pred"],
        records=tuple(r for r, m in zip(records, meta, strict=True) if not m["worst"]),
        worst=tuple(r for r, m in zip(records, meta, strict=True) if m["worst"]),
        spec=spec,
        warnings=tuple(payload.get("warnings", [])),
        dataset_notes=tuple(payload.get("dataset_notes", [])),
        analyses=None if analyses is None else Analyses.from_dict(analyses),
        targeted=None if payload.get("targeted") is None else TargetedResult.from_dict(payload["targeted"]),
        provenance=payload.get("provenance", {}),
        source=payload.get("source", {}),
        fingerprint=payload.get("fingerprint", ""),
    )


def samples_file(folder: Path) -> Path:
    """``samples.csv``, or the ``samples.csv.gz`` a results snapshot keeps in its place."""
    plain = folder / "samples.csv"
    return plain if plain.exists() or not (folder / "samples.csv.gz").exists() else folder / "samples.csv.gz"


def _read_samples(path: Path, n_records: int) -> dict[str, Any]:
    """Per-sample columns and, per record, (robust, adv_pred, perturbation, broken_by) arrays."""
    with gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    by_record: list[list[dict[str, str]]] = [[] for _ in range(n_records)]
    for row in rows:
        by_record[int(row["record"])].append(row)
    first = by_record[0]
    out: dict[str, Any] = {
        "index": np.array([int(r["index"]) for r in first], dtype=np.int64),
        "label": np.array([int(r["label"]) for r in first], dtype=np.int64),
        "clean_pred": np.array([int(r["clean_pred"]) for r in first], dtype=np.int64),
        "records": [],
    }
    for part in by_record:
        if len(part) != len(first):
            raise ValueError(f"{path}: records of different lengths")
        out["records"].append(
            (
                np.array([r["robust"] == "1" for r in part], dtype=bool),
                np.array([int(r["adv_pred"]) for r in part], dtype=np.int64),
                np.array([float(r["perturbation"]) for r in part], dtype=np.float64),
                np.array([r["broken_by"] for r in part], dtype=str),
            )
        )
    return out


def run_evaluation(
    model: nn.Module,
    data: Dataset | LabeledImages,
    spec: EvalSpec,
    out_dir: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    source: dict[str, Any] | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> Evaluation:
    """Evaluate into ``out_dir``: resumable (progress saved after every batch), reused when the
    folder already holds this very evaluation (same spec, weights and images), and refused when
    it holds a different one: results are never overwritten."""
    out = Path(out_dir)
    spec = spec.resolved()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; give a folder for the evaluation")
    if (out / "evaluation.json").exists():
        done = read_evaluation(out)
        expected = fingerprint(spec, model, select_images(data, spec, class_names))
        if done.fingerprint == expected:
            return done
        raise ConfigError(
            f"{out} already holds an evaluation with other settings, weights or images; it is kept. "
            "Choose another output folder."
        )
    ev = evaluate(model, data, spec, class_names=class_names, device=device, progress=progress, state_path=out / STATE)
    from dataclasses import replace

    ev = replace(ev, source=dict(source or {}))
    write_evaluation(ev, out)
    (out / STATE).unlink(missing_ok=True)
    return ev
