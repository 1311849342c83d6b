"""A run directory: ``config.yaml``, ``state.pt`` (everything needed to resume), ``model.pt``
(last), ``best.pt``, ``history.json``, ``provenance.json`` (where and with what each session of
the run ran) and ``eval/`` (the final evaluation). A directory holding another run is never
overwritten, and a run resumes only with the configuration it was started with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from classwise.config import flatten, load_yaml, write_text_atomically
from classwise.errors import ConfigError
from classwise.provenance import provenance
from classwise.train.config import TrainConfig

CONFIG, STATE, LAST, BEST, HISTORY, EVAL = "config.yaml", "state.pt", "model.pt", "best.pt", "history.json", "eval"
AVERAGE, PROVENANCE = "fawa.pt", "provenance.json"


def resolve(run_dir: Path, cfg: TrainConfig | None, resume: bool) -> TrainConfig:
    """The config a run in ``run_dir`` goes on with, checked without writing anything: for a new
    run the folder must be new or empty, for a resumed one it must hold this config."""
    cfg_path = run_dir / CONFIG
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is a file; give a folder for the run")
    if resume:
        if not cfg_path.exists():
            raise ConfigError(f"{run_dir} holds no run to resume (no {CONFIG}); start it without --resume")
        saved = _load(run_dir)
        if cfg is not None and cfg != saved:
            old, new = flatten(saved.to_dict()), flatten(cfg.to_dict())
            changed = [k for k in sorted({*old, *new}) if old.get(k) != new.get(k)]
            diff = ", ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in changed)
            raise ConfigError(
                f"cannot resume {run_dir} with a changed config ({diff}). Resume with no options, "
                "or start a new run in another folder."
            )
        return saved
    if cfg is None:
        raise ConfigError("a new run needs a config")
    if run_dir.exists() and any(run_dir.iterdir()):
        if cfg_path.exists() and _load(run_dir) == cfg:
            raise ConfigError(f"{run_dir} already holds this run; add --resume to continue it")
        raise ConfigError(f"{run_dir} already holds a different run or other files; choose a new --out folder")
    return cfg


def create(run_dir: Path, cfg: TrainConfig) -> None:
    """Make the folder of a new run and write its config (once everything it needs has been set up,
    so a run that cannot start leaves no folder behind)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.dump(run_dir / CONFIG)  # atomic: a run killed here leaves either no config or the whole of it


def clear_partial_writes(run_dir: Path) -> None:
    """Remove what saves killed mid-write left (``.*.part`` files, ``.partial-*`` folders)."""
    import shutil

    for leftover in [*run_dir.glob(".*.part"), *run_dir.glob(f"{EVAL}/.*.part")]:
        leftover.unlink(missing_ok=True)
    for folder in run_dir.glob(f"{EVAL}/.partial-*"):
        shutil.rmtree(folder, ignore_errors=True)


def saved_config(run_dir: Path) -> TrainConfig | None:
    """The config a run folder was started with, if it holds one."""
    return _load(run_dir) if (run_dir / CONFIG).is_file() else None


def _load(run_dir: Path) -> TrainConfig:
    """The run's stored config; one written before ``monitor.precision`` existed validated in fp32."""
    try:
        data = load_yaml(run_dir / CONFIG, "training settings")
        if isinstance(data, dict) and isinstance(data.get("monitor"), dict):
            data["monitor"].setdefault("precision", "fp32")
        return TrainConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(
            f"{run_dir} holds a run this classwise cannot read ({exc}): it was written by an older version or "
            "edited by hand. Train into a new folder (or move this one away)."
        ) from None


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    write_text_atomically(run_dir / HISTORY, json.dumps(history, indent=1))


def record_provenance(run_dir: Path, device: torch.device, first_epoch: int, start: dict[str, Any]) -> None:
    """Add this session's provenance (versions, device, commit, command line, and ``start``: precision
    and layout, and the weights a fine-tune started from) to ``provenance.json``: one entry per start
    or resume, with the epoch it started from."""
    path = run_dir / PROVENANCE
    sessions = json.loads(path.read_text()) if path.exists() else []
    sessions.append({"first_epoch": first_epoch, **start, **provenance(device)})
    write_text_atomically(path, json.dumps(sessions, indent=1))
