"""Figures as PNG bytes (matplotlib, no display), one function per kind of picture. Every figure
labels every series (legends sit outside the data), puts its units on the axes, keeps sensible
ranges even when every value is 0, and moves point labels apart so they do not overlap."""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from classwise.analysis import Correlation, spearman
from classwise.report.collect import ModelResult


def _figure(size: tuple[float, float]) -> tuple[Figure, Axes]:
    """A figure drawn off-screen (no pyplot, no global backend state)."""
    fig = Figure(figsize=size)
    return fig, fig.subplots()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _legend_outside(ax: Axes, ncols: int = 1) -> None:
    ax.legend(fontsize=7, ncols=ncols, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def percent_limits(values: np.ndarray, pad: float = 5.0, span: float = 10.0) -> tuple[float, float]:
    """An axis range in % around ``values`` within [0, 100], at least ``span`` wide (so all-zero
    values do not get a ±0.04% axis)."""
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 100.0)
    lo, hi = max(0.0, lo - pad), min(100.0, hi + pad)
    if hi - lo < span:
        mid = min(max((lo + hi) / 2, span / 2), 100 - span / 2)
        lo, hi = mid - span / 2, mid + span / 2
    return lo, hi


def label_points(ax: Axes, x: np.ndarray, y: np.ndarray, labels: Sequence[str]) -> None:
    """Labels to the right of their points, pushed apart vertically (in screen space) where they
    would overlap, with a thin line back to the point when moved."""
    fig = ax.figure
    fig.canvas.draw()
    to_screen, to_data = ax.transData, ax.transData.inverted()
    points = to_screen.transform(np.column_stack([x, y]))
    order = np.argsort(points[:, 1])
    gap = 10.0  # px between label baselines
    placed = points[:, 1].copy()
    for prev, i in itertools.pairwise(order):
        if abs(points[i, 0] - points[prev, 0]) < 90:  # labels that could collide horizontally
            placed[i] = max(placed[i], placed[prev] + gap)
    for i, label in enumerate(labels):
        target = to_data.transform((points[i, 0] + 4, placed[i]))
        moved = abs(placed[i] - points[i, 1]) > 1
        ax.annotate(
            label,
            (x[i], y[i]),
            xytext=(float(target[0]), float(target[1])),
            textcoords="data",
            fontsize=7,
            va="center",
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"} if moved else None,
        )


def class_bars(models: Sequence[ModelResult], order: Sequence[int] | None = None) -> bytes:
    """Per-class clean (light) and robust (dark) accuracy of each model with 95% intervals, classes
    sorted from the least to the most robust (of the last model) unless ``order`` is given."""
    series = [
        (f"{m.name}: {label}", arr) for m in models for label, arr in (("clean", m.clean), ("under attack", m.robust))
    ]
    return series_bars(
        models[0].class_names, series, order if order is not None else np.argsort(models[-1].robust[0], kind="stable")
    )


def series_bars(
    names: Sequence[str], series: Sequence[tuple[str, np.ndarray]], order: Sequence[int] | np.ndarray
) -> bytes:
    """Per-class bars of each (label, (3, K) accuracy with its 95% interval) series, in pairs of a
    light and a dark shade of one colour, classes in ``order`` (least to most robust)."""
    idx = np.asarray(order)
    k, m = len(names), len(series)
    fig, ax = _figure((max(7, 0.45 * k * max(2, m) / 2), 3.8))
    width = 0.8 / m
    colors = matplotlib.colormaps["tab10"]
    x = np.arange(k)
    for j, (label, arr) in enumerate(series):
        a = arr[:, idx]
        ax.bar(
            x - 0.4 + width * (j + 0.5),
            100 * a[0],
            width,
            yerr=100 * np.abs(a[1:] - a[0]),
            color=colors(j // 2),
            alpha=0.45 if j % 2 == 0 else 1.0,
            capsize=2 if k <= 20 else 0,
            label=label,
            error_kw={"elinewidth": 0.8},
        )
    ax.set_xticks(
        x,
        [names[i] for i in idx],
        rotation=30 if k <= 20 else 90,
        ha="right" if k <= 20 else "center",
        fontsize=None if k <= 20 else 6,
    )
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlabel("class (from the least to the most robust)")
    _legend_outside(ax)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def change_plot(diff: np.ndarray, names: Sequence[str], title: str) -> bytes:
    """Per-class change in percentage points with 95% intervals: ``diff`` is (2, 3, K) for clean and
    robust, each (difference, low, high)."""
    k = len(names)
    fig, ax = _figure((max(7, 0.8 * k), 3.6))
    x = np.arange(k)
    for j, (label, color, shift) in enumerate((("clean", "tab:blue", -0.15), ("under attack", "tab:red", 0.15))):
        d = 100 * diff[j]
        ax.errorbar(x + shift, d[0], yerr=np.abs(d[1:] - d[0]), fmt="o", ms=4, capsize=2, color=color, label=label)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("change (percentage points)")
    ax.set_title(title, fontsize=9)
    _legend_outside(ax)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def heatmap(matrix: np.ndarray, names: Sequence[str], title: str, fmt: str = "{:.0f}", cmap: str = "Blues") -> bytes:
    """A labelled (K, K) heatmap; rows are true / source classes."""
    k = len(names)
    fig, ax = _figure((0.5 * k + 2.5, 0.5 * k + 2))
    im = ax.imshow(matrix, cmap=cmap)
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_title(title, fontsize=9)
    finite = matrix[np.isfinite(matrix)]
    if k <= 12 and len(finite):
        top = float(finite.max()) or 1.0
        for i in range(k):
            for j in range(k):
                v = matrix[i, j]
                if np.isfinite(v) and v != 0:
                    color = "white" if v > 0.6 * top else "black"
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6, color=color)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _png(fig)


def difference_grid(diff: np.ndarray, rows: Sequence[str], names: Sequence[str], title: str) -> bytes:
    """(S, K) changes in [−1, 1] as a labelled grid in points, one row per setting, a diverging
    scale centred on 0 (red: lower, blue: higher)."""
    s, k = diff.shape
    fig, ax = _figure((0.6 * k + 3, 0.45 * s + 1.8))
    points = 100 * diff
    top = float(np.nanmax(np.abs(points))) if np.isfinite(points).any() else 1.0
    im = ax.imshow(points, cmap="RdBu", vmin=-(top or 1.0), vmax=top or 1.0, aspect="auto")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(s), rows, fontsize=8)
    ax.set_title(title, fontsize=9)
    if k <= 12:
        for i in range(s):
            for j in range(k):
                if np.isfinite(points[i, j]):
                    color = "white" if abs(points[i, j]) > 0.6 * top else "black"
                    ax.text(j, i, f"{points[i, j]:+.1f}", ha="center", va="center", fontsize=6, color=color)
    fig.colorbar(im, ax=ax, fraction=0.046, label="points")
    return _png(fig)


def per_class_lines(
    x: Sequence[float], acc: np.ndarray, names: Sequence[str], xlabel: str, ylabel: str, title: str
) -> bytes:
    """One labelled line per class: ``acc`` is (len(x), K) in [0,1]; epochs get whole-number ticks."""
    fig, ax = _figure((6.5, 3.6))
    if xlabel == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for k, name in enumerate(names):
        ax.plot(x, 100 * acc[:, k], marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(*percent_limits(100 * acc))
    ax.set_title(title, fontsize=9)
    _legend_outside(ax)
    ax.grid(alpha=0.3)
    return _png(fig)


def eps_curves(model: ModelResult) -> bytes:
    """Per-class worst-case robust accuracy against ε."""
    eps, acc = model.eps_curve()
    title = f"{model.name}: robustness against ε"
    return per_class_lines(eps, acc, model.class_names, "ε (pixel units)", "robust accuracy (%)", title)


def training_curves(model: ModelResult) -> bytes:
    """Per-class validation accuracy over the epochs: under attack where the run measured it."""
    vals = [(h.epoch, h.val) for h in model.history if h.val is not None]
    robust = all(v.robust is not None for _, v in vals)
    what = "under attack" if robust else "clean"
    return per_class_lines(
        [epoch + 1 for epoch, _ in vals],
        np.array([v.robust if robust else v.clean for _, v in vals]),
        model.class_names,
        "epoch",
        f"validation accuracy {what} (%)",
        f"{model.name}: per-class validation accuracy {what} during training",
    )


def method_comparison(models: Sequence[ModelResult]) -> bytes:
    """Mean robust accuracy against worst-class robust accuracy, one labelled point per model."""
    fig, ax = _figure((5.5, 4))
    means = np.array([100 * np.nanmean(m.robust[0]) for m in models])
    worst = np.array([100 * np.nanmin(m.robust[0]) for m in models])
    ax.scatter(means, worst, s=30)
    ax.set_xlim(*percent_limits(means))
    ax.set_ylim(*percent_limits(worst))
    ax.set_xlabel("mean robust accuracy over classes (%)")
    ax.set_ylabel("worst-class robust accuracy (%)")
    ax.grid(alpha=0.3)
    label_points(ax, means, worst, [m.name for m in models])
    return _png(fig)


def scatter(
    x: np.ndarray, y: np.ndarray, labels: Sequence[str], xlabel: str, ylabel: str, title: str
) -> tuple[bytes, Correlation]:
    """A labelled per-class scatter with Spearman's ρ and its 95% interval in the title."""
    corr = spearman(x, y)
    fig, ax = _figure((5.5, 4))
    ax.scatter(x, y, s=25)
    if "(%)" in ylabel:
        ax.set_ylim(*percent_limits(np.asarray(y, dtype=float)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n{corr}", fontsize=9)
    ax.grid(alpha=0.3)
    label_points(ax, np.asarray(x, dtype=float), np.asarray(y, dtype=float), labels)
    return _png(fig), corr


def hyperparameter_plot(axis: str, values: list[object], per_class: np.ndarray, names: Sequence[str]) -> bytes:
    """Per-class robust accuracy (mean over the other axes) against one grid axis."""
    fig, ax = _figure((6.5, 3.6))
    pos = np.arange(len(values))
    for k, name in enumerate(names):
        ax.plot(pos, 100 * per_class[:, k], marker="o", ms=3, label=name)
    ax.set_xticks(pos, [str(v) for v in values], rotation=20)
    ax.set_xlabel(axis)
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(*percent_limits(100 * per_class))
    _legend_outside(ax)
    ax.grid(alpha=0.3)
    return _png(fig)


def accuracy_grid(acc: np.ndarray, rows: Sequence[str], names: Sequence[str], title: str) -> bytes:
    """(S, K) accuracies in [0, 1] as a labelled grid in %, one row per setting (darker: higher)."""
    s, k = acc.shape
    fig, ax = _figure((0.6 * k + 3.5, 0.4 * s + 1.8))
    im = ax.imshow(100 * acc, cmap="Blues", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(s), rows, fontsize=8)
    ax.set_title(title, fontsize=9)
    if k <= 12 and s <= 40:
        for i in range(s):
            for j in range(k):
                if np.isfinite(acc[i, j]):
                    color = "white" if acc[i, j] > 0.6 else "black"
                    ax.text(j, i, f"{100 * acc[i, j]:.0f}", ha="center", va="center", fontsize=6, color=color)
    fig.colorbar(im, ax=ax, fraction=0.046, label="%")
    return _png(fig)


def setting_scatter(
    mean: np.ndarray, worst: np.ndarray, spread: np.ndarray, labels: Sequence[str]
) -> tuple[bytes, list[bool]]:
    """Mean against worst-class robust accuracy, one point per setting (the mean over its seeds,
    whiskers: the range over seeds, ``spread`` (S, 2, 2) = [[mean lo, hi], [worst lo, hi]]).
    Labels are drawn only where they do not overlap another label or leave the axes, best worst
    class first; returns which settings got one (the rest are in the table behind the figure)."""
    fig, ax = _figure((6.5, 4.5))
    x, y = 100 * mean, 100 * worst
    xerr = np.abs(100 * spread[:, 0, :].T - x)
    yerr = np.abs(100 * spread[:, 1, :].T - y)
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", ms=4, lw=0.6, capsize=0)
    ax.set_xlim(*percent_limits(np.concatenate([x, 100 * spread[:, 0, :].ravel()])))
    ax.set_ylim(*percent_limits(np.concatenate([y, 100 * spread[:, 1, :].ravel()])))
    ax.set_xlabel("mean robust accuracy over classes (%)")
    ax.set_ylabel("worst-class robust accuracy (%)")
    ax.grid(alpha=0.3)
    canvas = FigureCanvasAgg(fig)  # a renderer to measure the labels with
    canvas.draw()
    renderer = canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    shown = [False] * len(labels)
    for i in sorted(range(len(labels)), key=lambda i: -y[i]):
        text = ax.annotate(labels[i], (x[i], y[i]), xytext=(4, 3), textcoords="offset points", fontsize=7)
        box = text.get_window_extent(renderer)
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        if inside and not any(box.overlaps(other) for other in placed):
            placed.append(box)
            shown[i] = True
        else:
            text.remove()
    return _png(fig), shown


def paired_lines(panels: Sequence[tuple[str, Sequence[str], np.ndarray, Sequence[str]]]) -> bytes:
    """Side by side, one panel per (title, condition labels, values (units, conditions) in [0, 1] with
    NaN where missing, unit labels): each unit (a seed, say) is one line across the conditions, so
    a change paired within the unit reads as the line's slope."""
    fig = Figure(figsize=(3.2 * len(panels) + 1.2, 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colors = matplotlib.colormaps["tab10"]
    for ax, (title, conditions, values, units) in zip(axes, panels, strict=True):
        x = np.arange(len(conditions))
        for u, label in enumerate(units):
            ax.plot(x, 100 * values[u], marker="o", ms=4, lw=1, color=colors(u % 10), label=label)
        ax.set_xticks(x, list(conditions), rotation=20, ha="right", fontsize=7)
        ax.set_xlim(-0.3, len(conditions) - 0.7)
        ax.set_ylim(*percent_limits(100 * values))
        ax.set_title(title, fontsize=8)
        ax.set_ylabel("accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
    _legend_outside(axes[-1])
    return _png(fig)
