"""Typed configuration from plain data: the one way settings are read, overridden and written.

A configuration is a tree of frozen dataclasses. :func:`from_plain` builds one from plain data
(YAML, JSON, Python dicts), checking every value against the field's real annotation and naming
the field's path in any error (``optim.lr: expected a number, got 'fast'``). Overrides use one
syntax everywhere, on the command line (``--set optim.lr=0.05``) as in study grids
(``optim.lr: [0.05, 0.1]``): a dotted path and a YAML value. Numbers may be written as
fractions (``eps: 8/255``), in YAML as on the command line.

Example:
    >>> @dataclass(frozen=True)
    ... class Optim:
    ...     lr: float = 0.1
    >>> from_plain(Optim, apply_overrides({}, ["lr=1/10"]), "optim")
    Optim(lr=0.1)
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from classwise.errors import ConfigError

T = TypeVar("T")


def field_help(text: str, **kwargs: Any) -> Any:
    """A dataclass field with a sentence for people: shown by ``classwise config`` and ``--help``."""
    return dataclasses.field(metadata={"help": text}, **kwargs)


def number(value: Any, where: str) -> float:
    """A float from a number or a fraction written as text (``8/255``)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if isinstance(value, str):
        try:
            return float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError, OverflowError):
            pass
    raise ConfigError(f"{where}: expected a number or a fraction like 8/255, got {value!r}")


def convert(annotation: Any, value: Any, where: str) -> Any:
    """``value`` checked (and, for numbers and nested sections, converted) against ``annotation``."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return convert(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: got {value!r}, which fits none of {annotation}")
    if annotation is Any:
        return value
    if hasattr(annotation, "from_dict"):  # a type that reads itself (e.g. the evaluation spec)
        return value if isinstance(value, annotation) else annotation.from_dict(value, where)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return value if isinstance(value, annotation) else from_plain(annotation, value, where)
    if annotation is float:
        return number(value, where)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a name, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item, *_) = typing.get_args(annotation)
        return origin(convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where}: expected a mapping of names to values, got {value!r}")
        return dict(value)
    raise TypeError(f"{where}: no conversion for annotation {annotation!r}")  # a bug, not bad input


def typed_arguments(func: Callable[..., Any], args: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``args`` of ``func`` checked (and converted) against its annotations, as a config's settings
    are; ``{where} {name}`` names a bad one. Arguments without an annotation pass as given."""
    hints = typing.get_type_hints(func)
    return {key: convert(hints.get(key, Any), value, f"{where} {key}") for key, value in args.items()}


def from_plain(cls: type[T], data: Any, where: str) -> T:
    """An instance of dataclass ``cls`` from a mapping; unknown keys and wrong types name their path."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{_join(where, str(unknown[0]))}: unknown setting; known: {', '.join(fields)}")
    values = {name: convert(hints[name], value, _join(where, name)) for name, value in data.items()}
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}" if where and not str(exc).startswith(where) else str(exc)) from None


def to_plain(obj: Any) -> Any:
    """Plain data (dicts, lists, numbers, strings) of a config tree, for YAML and hashing."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "to_value"):
        return obj.to_value()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted path, default, help) of every setting of ``cls``, sections expanded."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = _join(prefix, f.name)
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
            rows += describe(annotation, path)
            continue
        factory = f.default_factory
        default = f.default if f.default is not dataclasses.MISSING else (factory() if callable(factory) else None)
        shown = yaml.safe_dump(to_plain(default), default_flow_style=True, width=10_000).strip().removesuffix("...")
        rows.append((path, shown.strip(), f.metadata.get("help", "")))
    return rows


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.05"`` → ("optim.lr", 0.05); the value is read as YAML (``[1, 2]``, ``true``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set takes KEY=VALUE with a dotted key, e.g. optim.lr=0.05; got {text!r}")
    return key.strip(), yaml_value(raw, key.strip())


def yaml_value(raw: str, where: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: {raw!r} is not a valid YAML value ({str(exc).splitlines()[0]})") from None


def apply_overrides(tree: Mapping[str, Any], assignments: Mapping[str, Any] | Iterable[str]) -> dict[str, Any]:
    """A deep copy of plain ``tree`` with each dotted key set (``{"optim.lr": 0.05}`` or
    ``["optim.lr=0.05"]``); missing sections are created, so unknown keys are caught by
    :func:`from_plain`, naming their path.

    A registered piece is written ``{name: ..., args: {...}}`` and its args belong to it: setting
    ``X.name`` to another piece starts ``X.args`` afresh, unless the same overrides set ``X.args``."""
    out = _copy(tree)
    items = list(assignments.items() if isinstance(assignments, Mapping) else map(parse_assignment, assignments))
    keys = [k for k, _ in items]
    for key, value in items:
        section, _, leaf = key.rpartition(".")
        if leaf == "name" and not any(k == f"{section}.args" or k.startswith(f"{section}.args.") for k in keys):
            node = _lookup(out, section)
            if isinstance(node, dict) and node.get("name") != value:
                node["args"] = {}
    for key, value in items:
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[: i + 1])} is a value, not a section: cannot set {key}")
            node = child
        node[parts[-1]] = _copy(value)
    return out


def _lookup(tree: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` → ``{"optim.lr": 0.1}`` (the dotted keys of every leaf)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = _join(prefix, key)
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def load_yaml(path: str | Path, what: str = "settings") -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing, unreadable or non-mapping file is one clear error."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the path of a YAML file of {what}, not a folder")
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; give the path of a YAML file of {what}")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path} must hold a mapping of {what} (it is empty or not a mapping)")
    return data


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_yaml(path: Path, data: Any) -> None:
    write_text_atomically(path, yaml.safe_dump(to_plain(data), sort_keys=False))
