"""The study's per-class results as one tidy table: one row per (run, split, attack, ε, class),
with the run's grid values and main config fields as columns."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from classwise.config import flatten
from classwise.errors import ClasswiseError
from classwise.evaluate import Evaluation, per_class_rows
from classwise.registry import Registry
from classwise.study.store import STORE_FILE, Store

CONFIG_COLUMNS = (
    "data.dataset",
    "model.name",
    "method.name",
    "balance.name",
    "threat.eps",
    "optim.lr",
    "optim.weight_decay",
    "optim.batch_size",
    "optim.epochs",
    "seed",
)


METRIC_COLUMNS = (
    "split",
    "attack",
    "eps",
    "norm",
    "class_index",
    "class_name",
    "n",
    "correct",
    "accuracy",
    "ci_low",
    "ci_high",
)


def metric_rows(ev: Evaluation) -> list[dict[str, Any]]:
    """The store's per-class rows of an evaluation: attack, ε and norm from its typed records."""
    rows = []
    for row in per_class_rows(ev):
        rows.append(
            {
                "split": ev.split,
                "attack": row["attack"],
                "eps": row["eps"],
                "norm": row["norm"],
                "class_index": row["class_index"],
                "class_name": row["class"],
                "n": row["n"],
                "correct": row["correct"],
                "accuracy": row["accuracy"],
                "ci_low": row["ci_low"],
                "ci_high": row["ci_high"],
            }
        )
    return rows


def tidy_row(run_id: str, config: dict[str, Any], grid: dict[str, Any], metric: dict[str, Any]) -> dict[str, Any]:
    """One metric of one run as a tidy row: its id, main config fields, grid values and the metric."""
    row: dict[str, Any] = {"run_id": run_id}
    flat = flatten(config)
    row.update({f"config.{k}": flat.get(k) for k in CONFIG_COLUMNS})
    row.update({f"grid.{k}": v if isinstance(v, int | float | str) else json.dumps(v) for k, v in grid.items()})
    row.update({k: metric[k] for k in METRIC_COLUMNS})
    return row


def tidy_rows(
    store: Store, read: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """One row per metric; ``read`` is one :meth:`Store.read` to build from (read now if not given)."""
    runs_list, metrics = read or store.read()
    runs = {r["run_id"]: r for r in runs_list}
    return [
        tidy_row(m["run_id"], json.loads(runs[m["run_id"]]["config"]), json.loads(runs[m["run_id"]]["overrides"]), m)
        for m in metrics
    ]


Writer = Callable[[Path, list[str], list[dict[str, Any]]], None]
FORMATS: Registry[Writer] = Registry("export format")


@FORMATS.register("csv")
def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Comma-separated values with a header row."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


@FORMATS.register("parquet")
def write_parquet(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Apache Parquet (needs pyarrow)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ClasswiseError("parquet export needs pyarrow: pip install pyarrow (or use --format csv)") from None
    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]), path)


def export(store: Store, path: str | Path, fmt: str = "csv") -> Path:
    """Write the tidy table to ``path`` in a registered format (``csv``, ``parquet``), atomically."""
    write = FORMATS.get(fmt)
    rows = tidy_rows(store)
    if not rows:
        raise ClasswiseError(f"{store.path} holds no finished run yet; run the study first")
    path = Path(path)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_name(f".{path.name}.part")
    try:
        write(tmp, columns, rows)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_study(study_dir: str | Path, out: str | Path | None = None, fmt: str = "csv") -> Path:
    """The study folder's per-class results as one tidy table (default ``<folder>/per_class.<fmt>``)."""
    FORMATS.get(fmt)
    path = Path(study_dir) / STORE_FILE
    if not path.exists():
        raise ClasswiseError(f"no results at {path}; run the study first (classwise study run FILE --dir {study_dir})")
    return export(Store(path), Path(out) if out else Path(study_dir) / f"per_class.{fmt}", fmt)


def study_frame(study_dir: str | Path) -> Any:
    """A study's per-class results as a pandas DataFrame, the rows of ``classwise study export``: one
    per (run, split, attack, ε, class), with the run's grid values and main config fields as columns.
    Read as one moment of the store, so it is consistent while the study runs."""
    from classwise.evaluate.records import pandas_module

    path = Path(study_dir) / STORE_FILE
    if not path.exists():
        raise ClasswiseError(f"no results at {path}; run the study first (classwise study run FILE --dir {study_dir})")
    return pandas_module().DataFrame(tidy_rows(Store(path)))
