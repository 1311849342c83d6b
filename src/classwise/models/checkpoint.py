"""Checkpoints: a state dict plus plain-type metadata, saved atomically, loaded with
``torch.load(weights_only=True)``. Every failure to load becomes one :class:`CheckpointError`
that says what to do."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from classwise.errors import CheckpointError, ConfigError
from classwise.models.base import ImageClassifier, ModelSpec
from classwise.models.factory import model_from_spec
from classwise.provenance import versions

FORMAT = "classwise-checkpoint/1"


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write ``obj`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, model: ImageClassifier, **meta: Any) -> Path:
    """Save ``model`` with its spec, versions and any plain-type ``meta`` (dataset, classes, config)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "model": model.spec.to_dict(),
        "versions": versions(),
        "meta": meta,
        "state_dict": state,
    }
    atomic_torch_save(payload, Path(path))
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw payload of a checkpoint file, validated; raises :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the checkpoint file in it (best.pt, model.pt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): a save that never finished; re-create it")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise CheckpointError(f"checkpoint {path} cannot be read ({str(exc).splitlines()[0][:200]})") from None
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain data; classwise refuses to unpickle "
            "them, since unpickling can run code. It is not a classwise checkpoint: re-create it with classwise."
        ) from None
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "it is corrupt or not a classwise checkpoint. Re-create it, or resume from the run's last checkpoint."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a classwise checkpoint (expected format {FORMAT!r})")
    return payload


def load_checkpoint(
    path: str | Path,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[ImageClassifier, dict[str, Any]]:
    """Rebuild the model saved at ``path`` and load its weights.

    Args:
        arch: if given, the checkpoint must hold this architecture.
        num_classes: if given, the checkpoint must have this many classes (e.g. the dataset's).

    Returns:
        (model in eval mode on ``device``, the checkpoint's ``meta`` with ``versions`` added).
    """
    payload = read_checkpoint(path)
    try:
        spec = ModelSpec.from_dict(payload["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: model description is damaged ({exc})") from None
    if arch is not None and arch != spec.arch:
        raise CheckpointError(f"{path} holds a {spec.arch!r} model, not {arch!r}")
    if num_classes is not None and num_classes != spec.num_classes:
        raise CheckpointError(
            f"{path} was trained for {spec.num_classes} classes but the dataset has {num_classes}; "
            "evaluate it on the dataset it was trained on"
        )
    try:
        model = model_from_spec(spec)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: cannot rebuild its model: {exc}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the {spec.arch} architecture ({str(exc).splitlines()[0][:200]})"
        ) from None
    meta = dict(payload.get("meta") or {})
    meta["versions"] = payload.get("versions", {})
    return model.to(device).eval(), meta
