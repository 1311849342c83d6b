"""The study's per-class results as one tidy table: one row per (run, split, attack, ε, class),
with the run's grid values and main config fields as columns."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from classwise.errors import ClasswiseError
from classwise.study.store import Store

CONFIG_COLUMNS = ("dataset", "model", "method", "balance", "eps", "lr", "weight_decay", "batch_size", "epochs", "seed")


def tidy_rows(store: Store) -> list[dict[str, Any]]:
    runs = {r["run_id"]: r for r in store.runs()}
    rows = []
    for m in store.metrics():
        run = runs[m["run_id"]]
        config, overrides = json.loads(run["config"]), json.loads(run["overrides"])
        row: dict[str, Any] = {"run_id": m["run_id"]}
        row.update({f"config.{k}": config[k] for k in CONFIG_COLUMNS})
        row.update(
            {f"grid.{k}": v if isinstance(v, int | float | str) else json.dumps(v) for k, v in overrides.items()}
        )
        row.update(
            {
                k: m[k]
                for k in (
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
            }
        )
        rows.append(row)
    return rows


def export(store: Store, path: str | Path, fmt: str = "csv") -> Path:
    """Write the tidy table to ``path`` as ``csv`` or ``parquet`` (which needs pyarrow)."""
    rows = tidy_rows(store)
    if not rows:
        raise ClasswiseError(f"{store.path} holds no finished run yet; run the study first")
    path = Path(path)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    if fmt == "csv":
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ClasswiseError("parquet export needs pyarrow: pip install pyarrow (or use --format csv)") from None
        pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]), path)
    else:
        raise ClasswiseError(f"unknown export format {fmt!r}; use csv or parquet")
    return path
