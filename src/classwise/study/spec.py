"""Study files: a base training config, grid axes over any setting, and the evaluation.

```yaml
name: gap-universality
base: {data: {dataset: fashion-mnist}, model: {name: resnet20}, optim: {epochs: 4}, threat: {eps: 0.1}}
grid:
  method.name: [standard, pgd-at]
  model.args.width: [8, 16]                  # any setting, by its dotted key
  with:                                      # several settings set together
    - {data.dataset: fashion-mnist, threat.eps: 0.1}
    - {data.dataset: cifar10, threat.eps: 8/255}
  seed: [0, 1, 2]
evaluation: {attacks: [pgd], eps: [0.1], n_per_class: 100}
retries: 1
```

Grid keys are the same dotted keys as ``--set`` on the command line. ``evaluation`` is the runs'
final evaluation (an :class:`~classwise.evaluate.EvalSpec`, the same as ``classwise evaluate`` and
a training run use): each run is evaluated once, by its own training run. Every run is the base
with one value per axis; its id is a hash of its resolved config (evaluation included), so a
study can be re-run, extended or resumed and finished runs are recognised.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from classwise.config import apply_overrides, load_yaml
from classwise.data import locate
from classwise.errors import ClasswiseError, ConfigError
from classwise.evaluate import EvalSpec
from classwise.train import TrainConfig
from classwise.train.config import dropped_options

log = logging.getLogger(__name__)

TOP_LEVEL = {"name", "base", "grid", "evaluation", "retries", "description"}
SETTINGS = tuple(f.name for f in fields(TrainConfig))


@dataclass(frozen=True)
class Run:
    """One training + evaluation of the study; ``overrides`` are its grid values."""

    run_id: str
    config: TrainConfig
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Study:
    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    evaluation: EvalSpec
    retries: int = 1
    runs: tuple[Run, ...] = field(default=(), repr=False)


def load_study(path: str | Path) -> Study:
    """Read, validate and expand a study file; every error names the offending path."""
    path = Path(path)
    data = load_yaml(path, f"study settings ({', '.join(sorted(TOP_LEVEL))})")
    _no_unknown(data, TOP_LEVEL, str(path))
    base = _mapping(data.get("base", {}), f"{path}: base")
    grid = _mapping(data.get("grid", {}), f"{path}: grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid.{key}: give a non-empty list of values")
        keys = (
            [key]
            if key != "with"
            else [k for i, v in enumerate(values) for k in _mapping(v, f"{path}: grid.with[{i}]")]
        )
        for k in keys:
            if k.split(".")[0] not in SETTINGS:
                raise ConfigError(f"{path}: grid.{k}: unknown setting; settings start with {', '.join(SETTINGS)}")
    _no_unknown(base, set(SETTINGS), f"{path}: base")
    given = {  # the top-level block completes (and overrides) an evaluation in base
        **_mapping(base.get("evaluation") or {}, f"{path}: base.evaluation"),
        **_mapping(data.get("evaluation") or {}, f"{path}: evaluation"),
    }
    evaluation = EvalSpec.from_dict(given, f"{path}: evaluation")
    base = {**base, "evaluation": evaluation.to_dict()}
    retries = data.get("retries", 1)
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"{path}: retries: a whole number >= 0, got {retries!r}")
    study = Study(str(data.get("name") or path.stem), base, grid, evaluation, retries)
    runs = tuple(expand(study, str(path)))
    if not runs:
        raise ConfigError(f"{path}: the grid holds no run")
    for dataset, root in {(r.config.data.dataset, r.config.data.root) for r in runs}:
        try:
            locate(dataset, root)  # every dataset of the grid exists before any run trains
        except ClasswiseError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return Study(study.name, base, grid, evaluation, retries, runs)


def expand(study: Study, where: str = "study") -> list[Run]:
    """The grid's runs in a stable order, each validated as a :class:`TrainConfig`."""
    keys = list(study.grid)
    runs, seen, warned = [], set(), set()
    for values in itertools.product(*(study.grid[k] for k in keys)):
        overrides = dict(zip(keys, values, strict=True))
        tree = apply_overrides(study.base, _assignments(overrides))
        for message in dropped_options(study.base, tree):
            if message not in warned:  # once per study, not once per seed
                warned.add(message)
                log.warning("%s: %s", where, message)
        config = _resolve(tree, overrides, where)
        run_id = run_hash(config)
        if run_id not in seen:  # two grid points may resolve to the same run
            seen.add(run_id)
            runs.append(Run(run_id, config, overrides))
    return runs


def _assignments(overrides: dict[str, Any]) -> dict[str, Any]:
    """A grid point's dotted-key settings, the ``with`` entry's included."""
    assignments: dict[str, Any] = {}
    for key, value in overrides.items():
        assignments.update(value if key == "with" else {key: value})
    return assignments


def describe_point(overrides: dict[str, Any]) -> str:
    """A grid point as its settings, whole and in order: ``seed=1 method.name=trades
    method.args={steps: 3} balance.name=cfa`` (the ``with`` entry's settings inline)."""

    def text(value: Any) -> str:
        if isinstance(value, dict | list):
            return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()
        return str(value)

    return " ".join(f"{key}={text(value)}" for key, value in _assignments(overrides).items())


def _resolve(tree: dict[str, Any], overrides: dict[str, Any], where: str) -> TrainConfig:
    """``tree`` (the base with the grid point ``overrides`` applied) as a config, its errors naming the point."""
    try:
        return TrainConfig.from_dict(tree)
    except ConfigError as exc:
        raise ConfigError(f"{where}: run [{describe_point(overrides)}]: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: run [{describe_point(overrides)}]: a value has the wrong type ({exc})") from None


# Settings added after studies had been run, with their defaults: a run that leaves one at its
# default is identified without it, so a new setting never renames (and re-runs) existing runs.
LATER_SETTINGS: dict[str, Any] = {
    "model.init_from": None,
    "threat.norm": "Linf",
    "data.drop_classes": [],
    "monitor.precision": "fp32",  # runs before it validated in fp32; a study that pins fp32 keeps its ids
}


def run_hash(config: TrainConfig) -> str:
    """12 hex digits identifying a run by its resolved config (its evaluation included)."""
    settings = config.to_dict()
    for key, default in LATER_SETTINGS.items():
        section, name = key.split(".")
        if settings[section].get(name, default) == default:
            settings[section].pop(name, None)
    canonical = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _no_unknown(data: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown field; known: {', '.join(sorted(known))}")
