"""Whether each balancing technique acted, from what its runs recorded: every epoch's record in a
run's history says what the technique applies to each class from the next epoch on (``technique``:
the budget, TRADES' β and the attack step as multiples of the method's, the loss weights, FRL's
Lagrange multipliers). A technique whose numbers stayed uniform did not act, and its "effect" is
no effect of the technique; the page says so rather than report it as one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from studies.findings.study_answers import StudyRun

# what a technique records per class, and how the page names it; weights are shown relative to their
# mean (only their ratios act), scales as they are (1 is the method's own value)
APPLIED = {
    "eps_scale": ("budget ε ×", False),
    "beta_scale": ("TRADES β ×", False),
    "step_scale": ("attack step ×", False),
    "class_weights": ("loss weight ÷ mean", True),
    "weights": ("its class weights", False),  # DAFA's (1: uniform), where no loss weights are recorded
    "lam_clean": ("FRL λ clean", None),
    "lam_boundary": ("FRL λ boundary", None),
    "lam_margin": ("FRL λ margin", None),
}
UNIFORM = 1e-3  # a spread below this (relative, or absolute for multipliers) is uniform


class Setting(Protocol):
    """A setting of a technique study (:class:`studies.findings.closing_gap.Setting`): its runs by seed."""

    @property
    def runs(self) -> dict[int, StudyRun]: ...

    @property
    def label(self) -> str: ...


def _last(run: StudyRun) -> tuple[Mapping[str, Any], int, int]:
    """The last epoch's technique record, the first epoch that recorded one (-1: none) and the epochs."""
    history = run.model.history
    first = next((e.epoch for e in history if e.technique), -1)
    return (history[-1].technique if history else {}), first, len(history)


def _shown(values: np.ndarray, relative: bool | None) -> np.ndarray:
    return values / values.mean() if relative else values


def _acted(values: np.ndarray, relative: bool | None) -> bool:
    if relative is None:  # multipliers start at 0
        return bool(np.abs(values).max() > UNIFORM)
    shown = _shown(values, relative)
    return bool(np.ptp(shown) > UNIFORM or (not relative and np.abs(shown - 1).max() > UNIFORM))


def engagement_part(settings: Sequence[Setting]) -> list[str]:
    """One line per technique setting: what it applied per class at the last epoch (the mean over its
    seeds), as the range over the classes with the classes at both ends, and from which epoch."""
    lines = []
    for s in settings:
        records = [_last(r) for r in s.runs.values()]
        keys = [k for k in APPLIED if all(k in rec for rec, _, _ in records)]
        if "class_weights" in keys and "weights" in keys:  # the same weights, or the Hedge experts behind them
            keys.remove("weights")
        if not keys:
            continue
        names = next(iter(s.runs.values())).model.class_names
        parts, idle = [], []
        for key in keys:
            label, relative = APPLIED[key]
            values = np.mean([np.asarray(rec[key], dtype=np.float64) for rec, _, _ in records], axis=0)
            if len(values) != len(names):
                continue
            if not _acted(values, relative):
                idle.append(label)
                continue
            shown = _shown(values, relative)
            lo, hi = int(np.argmin(shown)), int(np.argmax(shown))
            parts.append(f"{label} {shown[lo]:.2f} ({names[lo]}) to {shown[hi]:.2f} ({names[hi]})")
        first = sorted({f for _, f, _ in records})
        epochs = sorted({n for _, _, n in records})
        when = f"first recorded after epoch {', '.join(str(f + 1) for f in first)} of {', '.join(map(str, epochs))}"
        if parts:
            text = "; ".join(parts) + (f"; uniform: {', '.join(idle)}" if idle else "")
            lines.append(f"- {s.label} ({len(records)} seed{'s' if len(records) != 1 else ''}): {text} ({when}).")
        else:
            lines.append(
                f"- {s.label}: **did not act**: {', '.join(idle)} stayed uniform at the last epoch ({when}); its "
                "difference from the base is not an effect of the technique."
            )
    if not lines:
        return []
    return [
        "",
        "Did each technique act? What it applied to each class at the last epoch, from the runs' histories (the "
        "mean over the seeds; the classes with the lowest and the highest value):",
        "",
        *lines,
    ]
