"""Models from anywhere, under the classwise contract ([0,1] images in, logits out).

A model spec is one string:

- ``PATH`` — a classwise checkpoint (``RUN/best.pt``);
- ``robustbench:NAME`` — a RobustBench zoo entry, loaded by RobustBench's own ``load_model`` from
  ``<model_dir>/<dataset>/<threat model>/<NAME>.pt`` (downloaded there when absent);
- ``timm:NAME`` — a timm architecture with weights from ``weights`` (a local file) or the hub cache;
- ``torchscript:PATH`` — a TorchScript file;
- ``module.path:factory`` or ``file.py:factory`` — a Python callable returning an ``nn.Module``
  (called with ``num_classes=K`` when it takes that argument), with optional ``weights``.

Normalisation comes from the model where it declares it (classwise checkpoints, RobustBench
models, timm's pretrained config) and from ``mean``/``std`` otherwise or to override it, so that
attacks and ε always live in pixel space.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from classwise.errors import ConfigError
from classwise.models.base import Preprocessed
from classwise.models.checkpoint import load_checkpoint, torch_file
from classwise.models.leaderboard import Entry, published
from classwise.models.leaderboard import entries as leaderboard_entries
from classwise.registry import Registry

ZOO_DATASETS = {10: "cifar10", 100: "cifar100", 1000: "imagenet"}  # RobustBench's datasets, by class count
ZOO_INPUT = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "imagenet": (3, 224, 224)}
ZOO_EPS = {("cifar10", "Linf"): 8 / 255, ("cifar100", "Linf"): 8 / 255, ("imagenet", "Linf"): 4 / 255}
ZOO_EPS_L2 = 0.5


@dataclass(frozen=True)
class ModelRequest:
    """What the data and the user say about the model to load."""

    num_classes: int
    input_shape: tuple[int, int, int]
    threat_model: str = "Linf"
    class_names: tuple[str, ...] | None = None  # the dataset's: a checkpoint trained without some of them loads
    model_dir: Path = Path("models")  # RobustBench's layout: <dir>/<dataset>/<threat model>/<name>.pt
    weights: Path | None = None  # a local weights file (timm, module:factory)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    device: str = "cpu"


@dataclass(frozen=True)
class Source:
    """A kind of model spec, ``SCHEME:REST``: how ``REST`` is loaded, an example of it, whether a
    ``--weights`` file applies, and what it is called in messages."""

    load: Callable[[str, ModelRequest], LoadedModel]
    example: str
    what: str
    takes_weights: bool = False


SOURCES: Registry[Source] = Registry("model source")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to evaluate, with what is known about it."""

    model: nn.Module
    source: dict[str, Any]  # plain types, stored with the results
    eps: float | None = None  # the budget it was trained or benchmarked at, under ``threat_model``
    threat_model: str | None = None
    class_names: tuple[str, ...] | None = None
    leaderboard: Entry | None = None


def load_model(spec: str, request: ModelRequest) -> LoadedModel:
    """The model ``spec`` names (see the module docstring), in eval mode on ``request.device``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("give a model: a checkpoint path, robustbench:NAME, timm:NAME, torchscript:PATH or module:fn")
    if (request.mean is None) != (request.std is None):
        raise ConfigError("give --mean and --std together")
    scheme, _, rest = spec.partition(":")
    source = SOURCES.get(scheme) if scheme in SOURCES else None
    factory = source is None and bool(rest) and not Path(spec).exists() and "/" not in rest
    if request.weights is not None and not factory and not (source and source.takes_weights):
        kind = source.what if source else "a classwise checkpoint"
        raise ConfigError(
            f"--weights is for timm:NAME and module:factory models; {kind} ({spec}) carries its own weights: "
            "leave --weights out"
        )
    if source is not None:
        if not rest:
            raise ConfigError(f"{scheme}: needs a name or path after the colon, e.g. {scheme}:{source.example}")
        loaded = source.load(rest, request)
    elif factory:
        loaded = _factory(scheme, rest, request)
    else:
        loaded = _checkpoint(Path(spec), request)
    return replace(loaded, model=loaded.model.to(request.device).eval())


def _normalised(model: nn.Module, request: ModelRequest, input_shape: tuple[int, int, int] | None = None) -> nn.Module:
    if request.mean is not None and request.std is not None:
        c = request.input_shape[0]
        if len(request.mean) not in (1, c) or len(request.std) not in (1, c):
            need = "1 value (the data has one channel)" if c == 1 else f"1 or {c} values (one per channel of the data)"
            raise ConfigError(f"--mean and --std need {need}")
        mean = request.mean * c if len(request.mean) == 1 else request.mean
        std = request.std * c if len(request.std) == 1 else request.std
        if any(s <= 0 for s in std):
            raise ConfigError(f"--std must be positive, got {list(request.std)}")
        return Preprocessed(model, tuple(mean), tuple(std), input_shape)
    return Preprocessed(model, input_shape=input_shape)


def _checkpoint(path: Path, request: ModelRequest) -> LoadedModel:
    if request.mean is not None:
        raise ConfigError("a classwise checkpoint carries its own normalisation; leave --mean/--std out")
    if not path.exists() and ":" in str(path):
        raise ConfigError(
            f"model {str(path)!r} is neither a file nor a known kind: use robustbench:NAME, timm:NAME, "
            "torchscript:PATH or module.path:factory"
        )
    model, meta = load_checkpoint(
        path, num_classes=request.num_classes, device=request.device, class_names=request.class_names
    )
    names = tuple(meta.get("class_names") or ())
    config = meta.get("config") or {}
    threat = config.get("threat")
    threat = threat if isinstance(threat, dict) else {}
    eps = threat.get("eps")
    norm = threat.get("norm", "Linf")  # checkpoints written before L2 training name no norm: L∞
    source = {"kind": "classwise", "checkpoint": str(path.resolve()), "config": config}
    if isinstance(meta.get("adversarial"), bool):  # written by runs since the flag exists
        source["adversarial"] = meta["adversarial"]
    trained_eps = float(eps) if isinstance(eps, int | float) and eps > 0 else None
    return LoadedModel(model, source, trained_eps, str(norm), names or None)


def _torchscript(path_text: str, request: ModelRequest) -> LoadedModel:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ConfigError(f"torchscript: {path} is not a file")
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript, yet users' models come as such files
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError or ValueError for files it cannot read
        raise ConfigError(
            f"torchscript: {path} cannot be loaded ({str(exc).splitlines()[0][:160]}); save it with torch.jit.save"
        ) from None
    return LoadedModel(_normalised(model, request), {"kind": "torchscript", "path": str(path.resolve())})


SOURCES.register("torchscript", description="a TorchScript file (torch.jit.load); normalisation from --mean/--std")(
    Source(_torchscript, "model.pt", "a TorchScript file")
)


def _factory(module_name: str, fn_name: str, request: ModelRequest) -> LoadedModel:
    module = _import(module_name)
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        close = difflib.get_close_matches(fn_name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"{module_name} has no callable {fn_name!r}{hint}")
    try:
        takes_classes = "num_classes" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_classes = False
    try:
        model = fn(num_classes=request.num_classes) if takes_classes else fn()
    except Exception as exc:
        raise ConfigError(f"{module_name}:{fn_name}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{module_name}:{fn_name}() must return a torch nn.Module, got {type(model).__name__}")
    if request.weights is not None:
        _load_weights(model, request.weights)
    source = {"kind": "factory", "factory": f"{module_name}:{fn_name}"}
    if request.weights is not None:
        source["weights"] = str(request.weights.resolve())
    return LoadedModel(_normalised(model, request), source)


def _import(module_name: str) -> Any:
    """A module by dotted name (the working directory is searched too) or by ``.py`` path."""
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser()
            if not path.is_file():
                raise ConfigError(f"{path} is not a file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        return importlib.import_module(module_name)
    except ConfigError:
        raise
    except ImportError as exc:
        close = difflib.get_close_matches(module_name, SOURCES.names(), n=1)
        hint = f"; did you mean {close[0]}:?" if close else ", or a file.py:factory path"
        raise ConfigError(f"cannot import {module_name} ({exc}): give a module importable from here{hint}") from None
    except Exception as exc:
        raise ConfigError(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from None


def _load_weights(model: nn.Module, path: Path) -> None:
    state = torch_file(path, "weights file", "save the model's state dict with torch.save(model.state_dict(), PATH)")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"weights in {path} do not fit the model ({str(exc).splitlines()[0][:200]})") from None


def _timm(name: str, request: ModelRequest) -> LoadedModel:
    timm = _optional("timm", "timm")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise ConfigError(f"timm has no model {name!r}" + (f"; close: {', '.join(close)}" if close else ""))
    try:
        if request.weights is not None:
            if not request.weights.is_file():
                raise ConfigError(f"weights file {request.weights} does not exist")
            model = timm.create_model(name, num_classes=request.num_classes, checkpoint_path=str(request.weights))
        else:
            model = timm.create_model(name, pretrained=True)
    except ConfigError:
        raise
    except Exception as exc:
        where = f"from {request.weights}" if request.weights else "from the Hugging Face hub cache"
        raise ConfigError(
            f"timm:{name}: weights could not be loaded {where} ({_said(exc)}); "
            "give a local weights file with --weights, or fill the hub cache where there is a network"
        ) from None
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    input_size = tuple(cfg.get("input_size") or ())
    fixed: Any = tuple(int(v) for v in input_size) if cfg.get("fixed_input_size") and len(input_size) == 3 else None
    wrapped: nn.Module
    if request.mean is None and cfg.get("mean") and cfg.get("std"):
        wrapped = Preprocessed(model, tuple(cfg["mean"]), tuple(cfg["std"]), fixed)
        normalisation = {"mean": list(cfg["mean"]), "std": list(cfg["std"]), "from": "timm pretrained config"}
    else:
        wrapped = _normalised(model, request, fixed)
        normalisation = {"mean": list(request.mean or ()), "std": list(request.std or ()), "from": "--mean/--std"}
    source = {"kind": "timm", "name": name, "weights": str(request.weights) if request.weights else "hub"}
    return LoadedModel(wrapped, {**source, "normalisation": normalisation})


SOURCES.register("timm", description="a timm architecture, weights from --weights or the hub cache")(
    Source(_timm, "resnet18", "a timm model", takes_weights=True)
)


def _robustbench(name: str, request: ModelRequest) -> LoadedModel:
    try:
        zoo = _robustbench_modules()
    except ConfigError:  # not installed: a name the leaderboard does not know is the first thing to fix
        known = sorted({n for (_, _, n) in leaderboard_entries()})
        if name not in known:
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
            raise ConfigError(
                f"RobustBench has no model {name!r} in classwise's copy of its leaderboard"
                + (f"; close: {', '.join(close)}" if close else "; names are listed at https://robustbench.github.io")
            ) from None
        raise
    dataset = ZOO_DATASETS.get(request.num_classes)
    if dataset is None:
        raise ConfigError(
            f"RobustBench has models for CIFAR-10, CIFAR-100 and ImageNet; the data has {request.num_classes} classes"
        )
    threat = request.threat_model
    entries = zoo.model_dicts[zoo.BenchmarkDataset(dataset)].get(zoo.ThreatModel(threat), {})
    if name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=5, cutoff=0.4)
        raise ConfigError(
            f"RobustBench has no {dataset} {threat} model {name!r}"
            + (f"; close: {', '.join(close)}" if close else f" ({len(entries)} entries)")
        )
    path = Path(request.model_dir).expanduser() / dataset / threat / f"{name}.pt"
    existed = path.is_file()
    try:
        model = zoo.load_model(name, model_dir=str(path.parents[2]), dataset=dataset, threat_model=threat)
    except Exception as exc:
        if not existed:  # a failed download leaves nothing half-written
            path.unlink(missing_ok=True)
            raise ConfigError(
                f"robustbench:{name}: the weights are not in {path} and could not be downloaded ({_said(exc)}); "
                f"put the zoo's checkpoint there (RobustBench's layout: MODEL_DIR/{dataset}/{threat}/{name}.pt), "
                "or run where there is a network"
            ) from None
        raise ConfigError(
            f"robustbench:{name}: {path} could not be loaded ({_said(exc)}); delete it to download it again"
        ) from None
    entry = published(dataset, threat, name)
    eps = entry.eps if entry is not None else (ZOO_EPS_L2 if threat == "L2" else ZOO_EPS.get((dataset, threat)))
    wrapped = _normalised(model, request, ZOO_INPUT[dataset])  # zoo models normalise inside; --mean/--std override
    source = {"kind": "robustbench", "name": name, "dataset": dataset, "threat_model": threat, "weights": str(path)}
    return LoadedModel(wrapped, source, eps, threat, leaderboard=entry)


@dataclass(frozen=True)
class _Zoo:
    model_dicts: Any
    BenchmarkDataset: Any
    ThreatModel: Any
    load_model: Any


SOURCES.register("robustbench", description="a RobustBench zoo entry, from --model-dir in RobustBench's layout")(
    Source(_robustbench, "Wang2023Better_WRN-28-10", "a RobustBench model")
)


def _robustbench_modules() -> _Zoo:
    """RobustBench's zoo and loader. It imports AutoAttack as ``autoattack``; the package on PyPI
    (``pyautoattack``, a classwise dependency) is the same code under another name, so it is
    registered under that name when no ``autoattack`` module is installed."""
    if importlib.util.find_spec("autoattack") is None:
        import pyautoattack
        import pyautoattack.state

        sys.modules.setdefault("autoattack", pyautoattack)
        sys.modules.setdefault("autoattack.state", pyautoattack.state)
    _optional("torchvision", "robustbench")
    _optional("robustbench", "robustbench")
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    from robustbench.utils import load_model

    return _Zoo(model_dicts, BenchmarkDataset, ThreatModel, load_model)


def _optional(module: str, extra: str) -> Any:
    """An optional integration's module, or one message saying how to install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "pkg_resources":
            raise ConfigError(
                f"{module} needs pkg_resources, which setuptools 81 and later no longer ship: "
                f"pip install 'classwise[{extra}]' (it pins setuptools<81)"
            ) from None
        missing = exc.name or module
        what = (
            f"{module} needs {missing}, which is not installed" if missing != module else f"{module} is not installed"
        )
        raise ConfigError(f"{what}: pip install 'classwise[{extra}]'") from None
    except Exception as exc:
        text = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        if "torchvision::" in text:
            text = (
                f"torchvision {_version('torchvision')} cannot load its operators into torch {torch.__version__} "
                "(a torchvision build for another torch or CUDA); install the torchvision built for this torch, "
                f"for the CPU build: pip install torchvision=={_matching_torchvision()} "
                "--index-url https://download.pytorch.org/whl/cpu"
            )
        raise ConfigError(f"{module} is installed but fails to import: {text}") from None


def _matching_torchvision() -> str:
    """The torchvision release built against the installed torch (2.x ↔ 0.(x+15), since torch 2.0)."""
    major, minor = (int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
    return f"0.{minor + 15}.*" if major == 2 else "<the release matching your torch>"


def _said(exc: BaseException) -> str:
    """An exception in one short line: its type and the first line of its message."""
    text = str(exc).splitlines()[0][:160] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"
