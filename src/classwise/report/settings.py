"""A study's runs as the settings they vary: each run named by the config values that differ
between the study's runs (``trades + dafa``, ``wide_resnet, lr=0.1``), and the seeds of one
setting grouped into one row, with Student-t intervals over the seeds (the run is the unit).

The settings are inferred from the runs' stored configs, not from the study's grid, so a live
study folder, its committed snapshot and a bare folder of its runs name them the same way."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classwise import analysis
from classwise.attacks import format_eps
from classwise.config import flatten
from classwise.report.collect import ModelResult
from classwise.report.headline import mean_with_interval

IGNORED = ("seed", "data.root")  # the seed groups runs; where the data lives is no setting
ORDER = ("data.dataset", "model.name", "method.name", "balance.name")  # what a label names first


def varying_keys(configs: Sequence[dict[str, Any]]) -> list[str]:
    """The dotted config keys whose values differ between the runs, the seed and data root aside."""
    flats = [{k: v for k, v in flatten(c).items() if v not in ({}, [])} for c in configs]  # {} is no value
    keys = sorted({k for f in flats for k in f} - set(IGNORED))
    differ = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]

    def follows_its_name(key: str) -> bool:
        """``balance.args.gamma`` when every run with the same ``balance.name`` has the same gamma:
        the name already says it."""
        section, _, _ = key.partition(".args.")
        name = f"{section}.name"
        if ".args." not in key or name not in differ:
            return False
        values: dict[str, set[str]] = {}
        for f in flats:
            values.setdefault(repr(f.get(name)), set()).add(repr(f.get(key)))
        return all(len(v) == 1 for v in values.values())

    kept = [k for k in differ if not follows_its_name(k)]
    return sorted(kept, key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k))


def _value(key: str, value: Any) -> str:
    if key == "data.dataset" and isinstance(value, str):
        return Path(value).name
    if key.endswith("eps") and isinstance(value, int | float):
        return format_eps(float(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def setting_label(config: dict[str, Any], keys: Sequence[str]) -> str:
    """``trades + dafa``: the names the run sets on the varying keys joined by ``+``, then its other
    varying values as ``leaf=value``; ``balance none`` where a name is none; ``all runs alike``
    where nothing varies."""
    flat = flatten(config)
    names, others = [], []
    dataset = f"{_value('data.dataset', flat.get('data.dataset'))}: " if "data.dataset" in keys else ""
    for key in keys:
        value = flat.get(key)
        if key == "data.dataset":
            continue
        if key.endswith(".name"):
            section = key.removesuffix(".name")
            names.append(f"{section} none" if value in (None, "none") else _value(key, value))
        elif value is not None:
            others.append(f"{key.rsplit('.', 1)[-1]}={_value(key, value)}")
    return dataset + (", ".join([" + ".join(names), *others] if names else others) or "all runs alike")


@dataclass(frozen=True)
class Setting:
    """The runs of one setting, one per seed, in seed order."""

    label: str
    runs: tuple[ModelResult, ...]

    @property
    def seeds(self) -> list[int]:
        return [int(r.config.get("seed", 0)) for r in self.runs]

    def per_run(self, robust: bool) -> np.ndarray:
        """(runs, K) per-class accuracy, clean or under the headline attack."""
        return np.array([(r.robust if robust else r.clean)[0] for r in self.runs])

    def per_seed(self, name: str, robust: bool) -> np.ndarray:
        """Each run's ``mean`` or ``worst`` class accuracy, in seed order."""
        acc = self.per_run(robust)
        return np.nanmean(acc, axis=1) if name == "mean" else np.nanmin(acc, axis=1)

    def statistic(self, name: str, robust: bool) -> analysis.Estimate:
        """The mean over seeds of each run's ``mean`` or ``worst`` class accuracy, with its t-interval."""
        return analysis.run_interval(self.per_seed(name, robust))

    @property
    def dataset(self) -> str:
        return self.runs[0].dataset


def group_settings(models: Sequence[ModelResult]) -> list[Setting]:
    """The runs grouped by setting, settings in label order, each setting's runs in seed order."""
    keys = varying_keys([m.config for m in models])
    groups: dict[str, list[ModelResult]] = {}
    for m in models:
        groups.setdefault(setting_label(m.config, keys), []).append(m)
    return [
        Setting(label, tuple(sorted(runs, key=lambda r: int(r.config.get("seed", 0)))))
        for label, runs in sorted(groups.items())
    ]


def run_label(setting: Setting, run: ModelResult) -> str:
    return f"{setting.label}, seed {run.config.get('seed', 0)}"


def baseline(settings: Sequence[Setting]) -> Setting:
    """The setting the others are compared with: where the study varies the technique, no technique
    (``balance.name`` none), on PGD-AT if there is one; else standard training; else the first."""

    def value(s: Setting, key: str) -> Any:
        return flatten(s.runs[0].config).get(key)

    if len({repr(value(s, "balance.name")) for s in settings}) > 1:
        plain = [s for s in settings if value(s, "balance.name") in (None, "none")]
        on_pgd = [s for s in plain if value(s, "method.name") == "pgd-at"]
        if on_pgd or plain:
            return (on_pgd or plain)[0]
    return next((s for s in settings if value(s, "method.name") == "standard"), settings[0])


def paired_difference(setting: Setting, base: Setting, name: str, robust: bool) -> analysis.Estimate:
    """``setting − base`` of a run statistic, paired by seed (the seeds both have), t over the pairs."""

    a, b = (dict(zip(s.seeds, s.per_seed(name, robust), strict=True)) for s in (setting, base))
    shared = sorted(set(a) & set(b))
    return analysis.run_interval(np.array([a[s] - b[s] for s in shared]))


SUMMARY_HEADERS = (
    "setting",
    "seeds",
    "clean mean %",
    "robust mean %",
    "robust worst %",
    "weakest under attack (mean over seeds)",
)


def _weakest_over_seeds(setting: Setting) -> str:
    """The class weakest under attack in the mean over the setting's seeds (a description: the
    seeds saw the same test images, so it carries no interval of its own here)."""
    acc = setting.per_run(True).mean(axis=0)
    k = int(np.nanargmin(acc))
    return f"{setting.runs[0].class_names[k]} {100 * acc[k]:.1f}"


def _accuracy(estimate: analysis.Estimate) -> str:
    """An accuracy over seeds with its t-interval clipped to [0, 100]% (a t-interval over two or
    three seeds can reach past the bounds an accuracy cannot)."""
    if not estimate.resolved:
        return estimate.format()
    clipped = dataclasses.replace(estimate, low=max(0.0, estimate.low), high=min(1.0, estimate.high))
    return clipped.format()


def _one_run(run: ModelResult, name: str, robust: bool) -> str:
    """A statistic of a setting's only run with the 95% Wilson interval over its test images: the
    pooled accuracy for the mean, the weakest class's own for the worst."""
    acc = run.evaluation.robust(run.headline) if robust else run.evaluation.clean()
    if name == "mean":
        return mean_with_interval(acc)
    k = int(np.nanargmin(acc.accuracy))
    return f"{100 * acc.accuracy[k]:.1f} [{100 * acc.low[k]:.1f}, {100 * acc.high[k]:.1f}]"


def setting_value(s: Setting, name: str, robust: bool) -> str:
    """A setting's statistic with its interval: the mean over seeds with its t-interval (the run as
    the unit), or with one seed its run's Wilson interval over the test images."""
    return _one_run(s.runs[0], name, robust) if len(s.runs) == 1 else _accuracy(s.statistic(name, robust))


def summary_rows(settings: Sequence[Setting]) -> list[list[object]]:
    """One row per setting, each statistic as :func:`setting_value` gives it."""
    return [
        [
            s.label,
            ", ".join(map(str, s.seeds)),
            setting_value(s, "mean", False),
            setting_value(s, "mean", True),
            setting_value(s, "worst", True),
            _weakest_over_seeds(s),
        ]
        for s in settings
    ]


def run_rows(settings: Sequence[Setting]) -> list[list[object]]:
    """The per-run detail behind the per-setting figures: every run with its id."""
    rows: list[list[object]] = []
    for s in settings:
        for r in s.runs:
            clean, robust = r.clean[0], r.robust[0]
            k = int(np.nanargmin(robust))
            rows.append(
                [
                    run_label(s, r),
                    r.run_id,
                    f"{100 * np.nanmean(clean):.1f}",
                    f"{100 * np.nanmean(robust):.1f}",
                    f"{r.class_names[k]} {100 * robust[k]:.1f}",
                ]
            )
    return rows


RUN_HEADERS = ("run (setting, seed)", "run id", "clean mean %", "robust mean %", "robust worst")


def contrast(settings: Sequence[Setting]) -> str | None:
    """The study's main contrast: the setting with the best worst class under attack against the
    baseline (on the baseline's dataset), paired by seed, with the mean robust accuracy beside it;
    None with one setting."""
    if len(settings) < 2:
        return None
    base = baseline(settings)
    others = [s for s in settings if s is not base and s.dataset == base.dataset]  # classes of one dataset only
    if not others:
        return None
    best = max(others, key=lambda s: s.statistic("worst", True).value)
    worst = paired_difference(best, base, "worst", True)
    mean = paired_difference(best, base, "mean", True)
    seeds = f"{worst.n} seed{'s' if worst.n != 1 else ''}"
    return (
        f"best worst class under attack: {best.label} {setting_value(best, 'worst', True)} against "
        f"{base.label} {setting_value(base, 'worst', True)} (difference {worst.format(signed=True)}, "
        f"paired over {seeds}); mean robust accuracy {mean.format(signed=True)}"
    )
