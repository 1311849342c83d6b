"""A class-wise leaderboard (``classwise leaderboard``): several models evaluated under one protocol
(the same images, attacks and ε) and ranked by their weakest class beside the mean.

The weakest class is the held-out one (:func:`classwise.analysis.held_out_worst`): chosen on one
half of each class's images and measured on the other, since the plain minimum of K noisy
accuracies is biased low, the more so the more classes sit near it. Zoo entries show the leaderboard's
published clean and AutoAttack accuracy beside the measured ones, with whether they are
comparable. Each model is evaluated into its own folder, so a killed leaderboard resumes where it
stopped and a finished model is never evaluated twice."""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classwise import analysis
from classwise.analysis import HeldOutWorst
from classwise.errors import ClasswiseError, ConfigError
from classwise.evaluate import ClassAccuracy, Evaluation
from classwise.evaluate.records import pandas_module
from classwise.evaluate.spec import EvalSpec
from classwise.evaluate.store import write_files_atomically
from classwise.evaluate.tables import per_class_rows
from classwise.report import figures
from classwise.report.audit import same_images
from classwise.report.headline import mean_with_interval, pct, pooled_accuracy, unreadable, weakest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One model on the board: its evaluation and its held-out weakest class under attack."""

    model: str
    evaluation: Evaluation
    worst: HeldOutWorst

    @property
    def clean(self) -> ClassAccuracy:
        return self.evaluation.clean()

    @property
    def robust(self) -> ClassAccuracy:
        return self.evaluation.robust(self.evaluation.headline)

    @property
    def mean(self) -> float:
        return float(np.nanmean(self.robust.accuracy))

    @property
    def published(self) -> dict[str, Any] | None:
        board = self.evaluation.source.get("leaderboard")
        return dict(board) if board else None


@dataclass(frozen=True)
class Ranking:
    """Models best first: by held-out worst-class robust accuracy, then by the mean over classes."""

    entries: tuple[Entry, ...]

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.entries[0].evaluation.class_names

    @property
    def protocol(self) -> str:
        ev = self.entries[0].evaluation
        return f"{ev.title}, {ev.spec.describe()}"

    def by_mean(self) -> list[str]:
        """The models in the order a mean-robust-accuracy leaderboard would list them."""
        return [e.model for e in sorted(self.entries, key=lambda e: -e.mean)]

    def rows(self) -> list[dict[str, Any]]:
        """One row per model (``leaderboard.csv``): rank, clean and robust mean with their intervals,
        the naive and held-out weakest class, the published numbers where the model has them."""
        out = []
        for rank, e in enumerate(self.entries, 1):
            names, robust = e.evaluation.class_names, e.robust
            naive = int(np.nanargmin(robust.accuracy))
            board = e.published or {}
            row: dict[str, Any] = {
                "rank": rank,
                "model": e.model,
                "images": len(e.evaluation.labels),
                **_pooled("clean", e.clean),
                **_pooled("robust", robust),
                "worst_class": names[naive],
                "worst_class_accuracy": float(robust.accuracy[naive]),
                "worst_class_ci_low": float(robust.low[naive]),
                "worst_class_ci_high": float(robust.high[naive]),
                "held_out_worst": e.worst.accuracy,
                "held_out_classes": " / ".join(names[c] for c in e.worst.chosen),
                "published_clean": board.get("clean_acc", ""),
                "published_autoattack": board.get("autoattack_acc", ""),
                "published_comparable": "" if not board else same_images(e.evaluation, board) is None,
            }
            out.append(row)
        return out

    def per_class_rows(self) -> list[dict[str, Any]]:
        """The tidy per-class rows of every model (``per_class.csv``), with its rank and name."""
        return [
            {"rank": rank, "model": e.model, **row}
            for rank, e in enumerate(self.entries, 1)
            for row in per_class_rows(e.evaluation)
        ]

    def to_frame(self) -> Any:
        """Every model's per-class results as one long pandas DataFrame: model, rank, class, attack,
        ε, metric, n, correct, accuracy and its Wilson interval. Needs pandas."""
        return pandas_module().DataFrame(self.per_class_rows())


def _pooled(name: str, acc: ClassAccuracy) -> dict[str, float]:
    """:func:`~classwise.report.headline.pooled_accuracy` as the columns ``name``, ``name_ci_low``
    and ``name_ci_high``."""
    value, lo, hi = pooled_accuracy(acc)
    return {name: value, f"{name}_ci_low": lo, f"{name}_ci_high": hi}


def rank(evaluations: Mapping[str, Evaluation]) -> Ranking:
    """Rank evaluations made under one protocol (the same data, images, attacks and ε)."""
    if not evaluations:
        raise ConfigError("a leaderboard needs at least one model")
    (first_name, first), *rest = evaluations.items()
    for name, ev in rest:
        why = _other_protocol(first, ev)
        if why:
            raise ConfigError(f"{name} was not evaluated like {first_name} ({why}); rank models under one protocol")
    entries = [
        Entry(name, ev, analysis.held_out_worst(ev.headline.robust, ev.labels, ev.num_classes))
        for name, ev in evaluations.items()
    ]
    return Ranking(tuple(sorted(entries, key=lambda e: (-e.worst.accuracy, -e.mean))))


def _other_protocol(a: Evaluation, b: Evaluation) -> str | None:
    if a.class_names != b.class_names or a.dataset != b.dataset or a.split != b.split:
        return f"data {b.title} ({b.split}) against {a.title} ({a.split})"
    if a.spec.to_dict() != b.spec.to_dict():
        return f"{b.spec.describe()} against {a.spec.describe()}"
    if not np.array_equal(a.index, b.index):
        return "other images"
    return None


def model_folder(model: str) -> str:
    """A folder name for a model reference that is readable and unique (``robustbench_Wong2020Fast-1a2b3c4d``)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name if "/" in model else model).strip("._")[:60]
    return f"{readable or 'model'}-{hashlib.sha1(model.encode()).hexdigest()[:8]}"


def rank_models(models: Sequence[str], dataset: str, spec: EvalSpec, out_dir: str | Path, **load: Any) -> Ranking:
    """Evaluate each model (``evaluate_model`` with ``load``'s options) on ``dataset`` under ``spec``
    into ``out_dir/models/<model>`` and rank them. ε is one budget for all: the spec's, else the
    threat model's RobustBench default. A model that fails stops the board with its error; those
    already evaluated stay, and a rerun reuses them."""
    from classwise.evaluate import evaluate_model

    if not models:
        raise ConfigError("a leaderboard needs at least one model")
    repeated = sorted({m for m in models if list(models).count(m) > 1})
    if repeated:
        raise ConfigError(f"{', '.join(repeated)} is given more than once; name each model once")
    spec = spec.resolved()  # one ε for every model, not each model's own default
    root = Path(out_dir)
    evaluations = {}
    for i, model in enumerate(models, 1):
        log.info("leaderboard: model %d of %d, %s", i, len(models), model)
        try:
            evaluations[model] = evaluate_model(model, dataset, spec, root / "models" / model_folder(model), **load)
        except ClasswiseError as exc:  # the same kind of error, naming the model it stopped at
            done = f"; the {i - 1} evaluated before it are kept and reused on a rerun" if i > 1 else ""
            raise type(exc)(f"model {i} of {len(models)}, {model}: {exc}{done}") from None
    ranking = rank(evaluations)
    write_leaderboard(ranking, root)
    return ranking


def _csv(rows: list[dict[str, Any]]) -> Any:
    def write(path: Path) -> None:
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    return write


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _ranked_part(ranking: Ranking) -> list[str]:
    """The ranked table, whether the mean's order differs, and the models that cannot be read."""
    lines = [
        "| rank | model | clean % | robust % (mean) | weakest class, robust | held-out worst % |",
        "|---:|---|---|---|---|---:|",
    ]
    for i, e in enumerate(ranking.entries, 1):
        clean, robust = mean_with_interval(e.clean), mean_with_interval(e.robust)
        lines.append(
            _row([i, e.model, clean, robust, weakest(e.robust, e.evaluation.class_names), pct(e.worst.accuracy)])
        )
    by_mean, order = ranking.by_mean(), [e.model for e in ranking.entries]
    if len(order) > 1:
        moved = sum(a != b for a, b in zip(order, by_mean, strict=True))
        lines += [
            "",
            "Ranked by the mean robust accuracy the order is the same."
            if not moved
            else f"Ranked by the mean robust accuracy, as leaderboards do, {moved} of {len(order)} places change: "
            + ", ".join(_cell(m) for m in by_mean)
            + ".",
            "A rank is a point estimate: where two models' intervals overlap, this evaluation does not separate them "
            "(the held-out worst class is measured on half of its class's images, so it is less certain still).",
        ]
    broken = [f"{e.model} ({why})" for e in ranking.entries if (why := unreadable(e.evaluation))]
    if broken:
        lines += ["", f"**Cannot be read as a result**, whatever its rank: {'; '.join(broken)}."]
    return lines


def _published_part(ranking: Ranking) -> list[str]:
    """Zoo entries: the leaderboard's published numbers beside the measured ones, and whether the two
    setups are the same."""
    zoo = [e for e in ranking.entries if e.published]
    if not zoo:
        return []
    lines = [
        "",
        "## Published beside measured",
        "",
        "| model | published clean % | published AutoAttack % | measured clean % | measured robust % | same setup |",
        "|---|---:|---:|---|---|---|",
    ]
    for e in zoo:
        board = e.published or {}
        why = same_images(e.evaluation, board)
        published = [f"{float(board['clean_acc']):.2f}", f"{float(board['autoattack_acc']):.2f}"]
        measured = [mean_with_interval(e.clean), mean_with_interval(e.robust)]
        lines.append(
            _row([e.model, *published, *measured, "yes: directly comparable" if why is None else f"no: {why}"])
        )
    return lines


def leaderboard_page(ranking: Ranking) -> str:
    """The leaderboard as Markdown, with the figures written beside it."""
    names = ranking.class_names
    lines = [
        "# Class-wise leaderboard",
        f"Protocol, the same for every model: {ranking.protocol}.",
        "Ranked by the **held-out worst class** under attack: the weakest class chosen on one half of each "
        "class's images and measured on the other (the plain minimum of the per-class accuracies, shown "
        "with its 95% Wilson interval, is biased low). Ties go to the higher mean. Clean and robust means "
        "come with the 95% Wilson interval of the pooled accuracy.",
        "",
        *_ranked_part(ranking),
        *_published_part(ranking),
        "",
        "## Robust accuracy of every class",
        "",
        "![per-class robust accuracy of every model](per_class.png)",
        "",
        "![mean against held-out worst class](mean_vs_worst.png)",
        "",
        "Each point is a model; its vertical whisker runs from the plain minimum to the held-out worst class.",
        "",
        _row(["model", *names]),
        "|---|" + "---:|" * len(names),
        *(_row([e.model, *(pct(v) for v in e.robust.accuracy)]) for e in ranking.entries),
        "",
        "Tables: leaderboard.csv (one row per model), per_class.csv (every model, class and metric).",
    ]
    return "\n".join(lines) + "\n"


def write_leaderboard(ranking: Ranking, out_dir: str | Path) -> Path:
    """leaderboard.md, leaderboard.csv, per_class.csv, per_class.png and mean_vs_worst.png, all at once."""
    out = Path(out_dir)
    robust = np.stack([e.robust.accuracy for e in ranking.entries])
    labels = [e.model for e in ranking.entries]
    grid = figures.accuracy_grid(
        robust, labels, ranking.class_names, f"robust accuracy per class (%): {ranking.protocol}"
    )
    mean = np.array([e.mean for e in ranking.entries])
    worst = np.array([e.worst.accuracy for e in ranking.entries])
    naive = np.nanmin(robust, axis=1)
    spread = np.stack([np.stack([mean, mean], 1), np.stack([naive, worst], 1)], 1)
    scatter, _ = figures.setting_scatter(mean, worst, spread, labels)
    write_files_atomically(
        out,
        {
            "leaderboard.md": lambda p: p.write_text(leaderboard_page(ranking)),
            "leaderboard.csv": _csv(ranking.rows()),
            "per_class.csv": _csv(ranking.per_class_rows()),
            "per_class.png": lambda p: p.write_bytes(grid),
            "mean_vs_worst.png": lambda p: p.write_bytes(scatter),
        },
    )
    return out / "leaderboard.md"
