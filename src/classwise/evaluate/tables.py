"""Per-class tables from an :class:`Evaluation`: rows for CSV/JSON and text for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from classwise.attacks import format_eps
from classwise.evaluate.metrics import ClassAccuracy, Spread, row_shares
from classwise.evaluate.records import AttackRecord, Evaluation, TargetedResult


def class_columns(ev: Evaluation) -> list[tuple[AttackRecord | None, ClassAccuracy]]:
    """(record, per-class accuracy) for clean (record None), every attack and, with several attacks,
    the worst case, ε by ε."""
    cols: list[tuple[AttackRecord | None, ClassAccuracy]] = [(None, ev.clean())]
    multi = len({r.attack for r in ev.records}) > 1
    for e in sorted({r.eps for r in ev.records}):
        cols += [(r, ev.robust(r)) for r in ev.records if r.eps == e]
        if multi:
            w = ev.worst_at(e)
            cols.append((w, ev.robust(w)))
    return cols


def per_class_rows(ev: Evaluation) -> list[dict[str, Any]]:
    """One tidy row per (class, metric): attack (``clean`` for clean accuracy), ε, norm, n, correct,
    accuracy and its 95% Wilson interval. ``metric`` is a label for people."""
    rows = []
    for record, acc in class_columns(ev):
        for k, name in enumerate(ev.class_names):
            rows.append(
                {
                    "class": name,
                    "class_index": k,
                    "attack": "clean" if record is None else record.attack,
                    "eps": 0.0 if record is None else record.eps,
                    "norm": "" if record is None else record.norm,
                    "metric": "clean" if record is None else record.label,
                    "n": int(acc.n[k]),
                    "correct": int(acc.correct[k]),
                    "accuracy": float(acc.accuracy[k]),
                    "ci_low": float(acc.low[k]),
                    "ci_high": float(acc.high[k]),
                }
            )
    return rows


def _columns(ev: Evaluation) -> list[tuple[str, ClassAccuracy]]:
    return [("clean" if r is None else r.label, acc) for r, acc in class_columns(ev)]


def summaries(ev: Evaluation) -> dict[str, Spread]:
    return {metric: ev.spread(acc) for metric, acc in _columns(ev)}


def _pct(v: float) -> str:
    return f"{100 * v:5.1f}"


def _cell(acc: ClassAccuracy, k: int) -> str:
    return f"{100 * acc.accuracy[k]:.1f} ({100 * acc.low[k]:.0f}-{100 * acc.high[k]:.0f})"


def format_table(ev: Evaluation, title: str | None = None) -> str:
    """Per-class accuracy ± 95% interval for every metric, then the spread across classes."""
    cols = _columns(ev)
    width = max(len(c) for c in (*ev.class_names, "max-min"))
    cw = max(17, *(len(m) for m, _ in cols))
    head = f"{'class':<{width}}  {'n':>5}  " + "  ".join(f"{m:>{cw}}" for m, _ in cols)
    lines = [title] if title else []
    lines += [f"evaluation: {ev.spec.describe()}", head, "-" * len(head)]
    for k, name in enumerate(ev.class_names):
        cells = [_cell(a, k).rjust(cw) for _, a in cols]
        lines.append(f"{name:<{width}}  {int(cols[0][1].n[k]):>5}  " + "  ".join(cells))
    lines.append("-" * len(head))
    stats: Sequence[tuple[str, str]] = (
        ("mean", "mean"),
        ("worst", "worst"),
        ("best", "best"),
        ("gap", "max-min"),
        ("std", "std"),
        ("cv", "CV"),
    )
    spreads = [ev.spread(a) for _, a in cols]
    for attr, label in stats:
        cells = []
        for s in spreads:
            v = getattr(s, attr)
            text = (f"{v:.3f}" if v == v else "undefined") if attr == "cv" else _pct(v)  # CV of a mean of 0
            if attr in ("worst", "best"):
                name = _short(s)[:10] if attr == "worst" or s.best == s.worst else s.best_class[:10]
                text = f"{name} {text.strip()}"
            cells.append(text.rjust(cw))
        lines.append(f"{label:<{width}}  {'':>5}  " + "  ".join(cells))
    lines.append("accuracy % (95% Wilson interval); mean, std and CV are over classes")
    if any(s.cv != s.cv for s in spreads):
        lines.append("CV undefined: every class at 0%, so the mean is 0")
    return "\n".join(lines)


def format_flows(ev: Evaluation, record: AttackRecord, top: int = 2) -> str:
    """Where the attacked images of each class go: the largest off-diagonal shares under attack."""
    shares = row_shares(ev.confusion_adv(record))
    lines = [f"where attacked images go ({record.label}):"]
    for k, name in enumerate(ev.class_names):
        row = [(shares[k, j], ev.class_names[j]) for j in range(len(shares)) if j != k and shares[k, j] > 0]
        row.sort(reverse=True)
        flows = ", ".join(f"{c} {100 * s:.0f}%" for s, c in row[:top]) or "-"
        lines.append(f"  {name} → {flows}")
    return "\n".join(lines)


def format_eps_curve(ev: Evaluation) -> str:
    """Per-class worst-case robust accuracy against ε (one row per class)."""
    eps = sorted(r.eps for r in ev.worst)
    head = "class".ljust(12) + "".join(f"{format_eps(e):>9}" for e in eps)
    lines = ["worst-case robust accuracy (%) against ε", head]
    for k, name in enumerate(ev.class_names):
        vals = [ev.robust(ev.worst_at(e)).accuracy[k] for e in eps]
        lines.append(name[:12].ljust(12) + "".join(f"{100 * v:9.1f}" for v in vals))
    return "\n".join(lines)


def format_targeted(result: TargetedResult) -> str:
    """Source × target success rates in %, '-' where that pair was not attacked."""
    rate = result.rate
    short = [n[:8] for n in result.class_names]
    lines = [
        f"targeted {result.attack} ε={format_eps(result.eps)}: success rate (%), row = source, column = target",
        " " * 10 + "".join(f"{s:>9}" for s in short),
    ]
    for i, name in enumerate(short):
        cells = "".join(f"{'-':>9}" if np.isnan(rate[i, j]) else f"{100 * rate[i, j]:9.1f}" for j in range(len(short)))
        lines.append(f"{name:<10}{cells}")
    return "\n".join(lines)


def format_side_by_side(evals: dict[str, Evaluation], title: str | None = None) -> str:
    """Per-class clean and worst-case robust accuracy of several models next to each other, then
    each one's mean, worst class, gap and std: how training changes the class-wise picture."""
    names = next(iter(evals.values())).class_names
    width = max(len(c) for c in (*names, "max-min"))
    runs = list(evals.items())
    head1 = " " * width + "".join(f"  {label[:23]:^23}" for label, _ in runs)
    head2 = f"{'class':<{width}}" + "".join(f"  {'clean':>11}{'robust':>12}" for _ in runs)
    lines = [title] if title else []
    lines += [head1, head2, "-" * len(head2)]
    accs = [(ev.clean(), ev.robust(ev.headline)) for _, ev in runs]
    for k, name in enumerate(names):
        cells = "".join(f"  {100 * c.accuracy[k]:11.1f}{100 * r.accuracy[k]:12.1f}" for c, r in accs)
        lines.append(f"{name:<{width}}{cells}")
    lines.append("-" * len(head2))
    spreads = [(Spread.of(c, names), Spread.of(r, names)) for c, r in accs]
    for attr, label in (("mean", "mean"), ("worst", "worst"), ("gap", "max-min"), ("std", "std")):
        cells = "".join(f"  {100 * getattr(c, attr):11.1f}{100 * getattr(r, attr):12.1f}" for c, r in spreads)
        lines.append(f"{label:<{width}}{cells}")
    cells = "".join(f"  {_short(c):>11}{_short(r):>12}" for c, r in spreads)
    lines.append(f"{'weakest':<{width}}{cells}")
    eps = {format_eps(ev.headline.eps) for _, ev in runs}
    lines.append(f"accuracy in %; robust = worst case over the attacks at ε={', '.join(sorted(eps))}")
    return "\n".join(lines)


def _short(s: Spread) -> str:
    """The weakest class in at most 11 characters; ties say so (``tie of 2``, ``all tied``)."""
    n = len(s.worst_classes)
    if n <= 1:
        return s.worst_class[:11]
    return "all tied" if s.best == s.worst else f"tie of {n}"


def format_comparison(evals: dict[str, Evaluation], title: str | None = None) -> str:
    """One row per model: mean and worst-class clean and robust accuracy, and the robust spread."""
    width = max(len(n) for n in (*evals, "variant"))
    head = (
        f"{'variant':<{width}}  {'clean mean':>10}  {'clean worst':>20}  {'robust mean':>11}  "
        f"{'robust worst':>20}  {'robust std':>10}  {'max-min':>7}"
    )
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    for name, ev in evals.items():
        c, r = ev.spread(ev.clean()), ev.spread(ev.robust(ev.headline))
        lines.append(
            f"{name:<{width}}  {100 * c.mean:10.1f}  {f'{100 * c.worst:.1f} {_short(c)}':>20}  "
            f"{100 * r.mean:11.1f}  {f'{100 * r.worst:.1f} {_short(r)}':>20}  {100 * r.std:10.1f}  "
            f"{100 * r.gap:7.1f}"
        )
    lines.append("accuracy in % over classes; robust = worst case over the attacks at the evaluation ε")
    return "\n".join(lines)
