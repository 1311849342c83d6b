"""Study files: a base training config, grid axes over any config field, and the evaluation.

```yaml
name: gap-universality
base: {dataset: fashion-mnist, model: resnet20, epochs: 4, eps: 0.1}
grid:
  method: [standard, pgd-at]
  model: [resnet20, small_cnn]
  model_args.width: [8, 16]        # a key inside a dict field
  variant: [pgd-at, pgd-at+focal:gamma=2]   # method + balancing technique in one axis
  with: [{dataset: fashion-mnist, eps: 0.1}, {dataset: cifar10, eps: 0.0314}]  # fields set together
  seed: [0, 1, 2]
evaluation: {attacks: [pgd], eps: [0.1], steps: 20, n_per_class: 100}
retries: 1
```

``evaluation`` is the runs' final evaluation (an :class:`~classwise.evaluate.EvalSpec`, the same
as ``classwise evaluate`` and a training run use): each run is evaluated once, by its own
training run. Every run is the base with one value per axis; its id is a hash of its resolved
config (evaluation included), so a study can be re-run, extended or resumed and finished runs
are recognised.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from classwise.errors import ConfigError
from classwise.evaluate import EvalSpec
from classwise.gap import parse_variant
from classwise.train import TrainConfig

TOP_LEVEL = {"name", "base", "grid", "evaluation", "retries", "description"}
DICT_FIELDS = {"model_args", "balance_args"}


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
    if not path.is_file():
        raise ConfigError(f"study file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a study file is a mapping with keys {sorted(TOP_LEVEL)}")
    _no_unknown(data, TOP_LEVEL, str(path))
    base = _mapping(data.get("base", {}), f"{path}: base")
    grid = _mapping(data.get("grid", {}), f"{path}: grid")
    known = {f.name for f in fields(TrainConfig)} | {"variant", "with"}
    for key, values in grid.items():
        root = key.split(".")[0]
        if root not in known or ("." in key and root not in DICT_FIELDS):
            raise ConfigError(f"{path}: grid.{key}: unknown config field; fields: {', '.join(sorted(known))}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid.{key}: give a non-empty list of values")
        if key == "with":
            for i, value in enumerate(values):
                _no_unknown(_mapping(value, f"{path}: grid.with[{i}]"), known - {"with"}, f"{path}: grid.with[{i}]")
    _no_unknown(base, {f.name for f in fields(TrainConfig)}, f"{path}: base")
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
    return Study(study.name, base, grid, evaluation, retries, runs)


def expand(study: Study, where: str = "study") -> list[Run]:
    """The grid's runs in a stable order, each validated as a :class:`TrainConfig`."""
    keys = list(study.grid)
    runs, seen = [], set()
    for values in itertools.product(*(study.grid[k] for k in keys)):
        overrides = dict(zip(keys, values, strict=True))
        config = _resolve(study.base, overrides, where)
        run_id = run_hash(config)
        if run_id not in seen:  # two grid points may resolve to the same run
            seen.add(run_id)
            runs.append(Run(run_id, config, overrides))
    return runs


def _resolve(base: dict[str, Any], overrides: dict[str, Any], where: str) -> TrainConfig:
    values = json.loads(json.dumps(base))  # a deep copy of plain data
    for key, value in overrides.items():
        if key == "variant":
            values.update(parse_variant(str(value)))
        elif key == "with":
            for k, v in value.items():
                values.update(parse_variant(str(v)) if k == "variant" else {k: v})
        elif "." in key:
            root, sub = key.split(".", 1)
            values.setdefault(root, {})[sub] = value
        else:
            values[key] = value
    try:
        return TrainConfig.from_dict(values)
    except ConfigError as exc:
        point = ", ".join(f"{k}={v}" for k, v in overrides.items())
        raise ConfigError(f"{where}: run [{point}]: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: run with {overrides}: a value has the wrong type ({exc})") from None


def run_hash(config: TrainConfig) -> str:
    """12 hex digits identifying a run by its resolved config (its evaluation included)."""
    canonical = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _no_unknown(data: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown field; known: {', '.join(sorted(known))}")
