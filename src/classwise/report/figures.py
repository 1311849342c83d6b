"""Figures as PNG bytes (matplotlib, no display), one function per kind of picture."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from classwise.report.collect import ModelResult


def _figure(size: tuple[float, float]) -> tuple[Figure, Axes]:
    """A figure drawn off-screen (no pyplot, no global backend state)."""
    fig = Figure(figsize=size)
    return fig, fig.subplots()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def class_bars(models: Sequence[ModelResult]) -> bytes:
    """Per-class clean (light) and robust (dark) accuracy of each model, with 95% intervals."""
    names = models[0].class_names
    k, m = len(names), len(models)
    fig, ax = _figure((max(7, 0.9 * k * max(1, m / 2)), 3.8))
    width = 0.8 / (2 * m)
    colors = matplotlib.colormaps["tab10"]
    x = np.arange(k)
    for i, model in enumerate(models):
        robust = model.robust
        for j, (arr, label, alpha) in enumerate(((model.clean, "clean", 0.45), (robust, "robust", 1.0))):
            pos = x - 0.4 + width * (2 * i + j + 0.5)
            err = np.abs(arr[1:] - arr[0])
            ax.bar(
                pos,
                100 * arr[0],
                width,
                yerr=100 * err,
                color=colors(i),
                alpha=alpha,
                capsize=2,
                label=f"{model.name} {label}",
                error_kw={"elinewidth": 0.8},
            )
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncols=min(4, 2 * m), loc="upper center", bbox_to_anchor=(0.5, 1.2))
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
    if k <= 12:
        top = np.nanmax(matrix) if np.isfinite(np.nanmax(matrix)) else 1
        for i in range(k):
            for j in range(k):
                v = matrix[i, j]
                if np.isfinite(v) and v != 0:
                    ax.text(
                        j,
                        i,
                        fmt.format(v),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if v > 0.6 * top else "black",
                    )
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _png(fig)


def per_class_lines(
    x: Sequence[float], acc: np.ndarray, names: Sequence[str], xlabel: str, ylabel: str, title: str
) -> bytes:
    """One line per class: ``acc`` is (len(x), K) in [0,1]."""
    fig, ax = _figure((6, 3.6))
    for k, name in enumerate(names):
        ax.plot(x, 100 * acc[:, k], marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3)
    return _png(fig)


def eps_curves(model: ModelResult) -> bytes:
    """Per-class worst-case robust accuracy against ε."""
    eps, acc = model.eps_curve()
    return per_class_lines(
        eps, acc, model.class_names, "ε", "robust accuracy (%)", f"{model.name}: robustness against ε"
    )


def training_curves(model: ModelResult) -> bytes:
    """Per-class validation robust (or clean) accuracy over the epochs."""
    rows = [(h["epoch"] + 1, h["val"].get("robust", h["val"]["clean"])) for h in model.history if "val" in h]
    return per_class_lines(
        [r[0] for r in rows],
        np.array([r[1] for r in rows]),
        model.class_names,
        "epoch",
        "validation accuracy (%)",
        f"{model.name}: per-class validation accuracy during training",
    )


def method_comparison(models: Sequence[ModelResult]) -> bytes:
    """Mean robust accuracy against worst-class robust accuracy, one point per model."""
    fig, ax = _figure((5.5, 4))
    for model in models:
        acc = model.robust[0]
        ax.scatter(100 * np.nanmean(acc), 100 * np.nanmin(acc), s=30)
        ax.annotate(
            model.name,
            (100 * np.nanmean(acc), 100 * np.nanmin(acc)),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("mean robust accuracy (%)")
    ax.set_ylabel("worst-class robust accuracy (%)")
    ax.grid(alpha=0.3)
    return _png(fig)


def scatter(x: np.ndarray, y: np.ndarray, labels: Sequence[str], xlabel: str, ylabel: str, title: str) -> bytes:
    """A labelled scatter (e.g. per-class weight norm against robust accuracy)."""
    fig, ax = _figure((5.5, 4))
    ax.scatter(x, y, s=25)
    for xi, yi, label in zip(x, y, labels, strict=True):
        ax.annotate(label, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return _png(fig)


def hyperparameter_plot(axis: str, values: list[object], per_class: np.ndarray, names: Sequence[str]) -> bytes:
    """Per-class robust accuracy (mean over the other axes) against one grid axis."""
    fig, ax = _figure((6, 3.6))
    pos = np.arange(len(values))
    for k, name in enumerate(names):
        ax.plot(pos, 100 * per_class[:, k], marker="o", ms=3, label=name)
    ax.set_xticks(pos, [str(v) for v in values], rotation=20)
    ax.set_xlabel(axis)
    ax.set_ylabel("robust accuracy (%)")
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3)
    return _png(fig)
