"""Checkpoints: a state dict plus plain-type metadata, saved atomically, loaded with
``torch.load(weights_only=True)``. Every failure to load becomes one :class:`CheckpointError`
that says what to do."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Sequence
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


def torch_file(path: str | Path, what: str, fix: str) -> Any:
    """The contents of a file written by ``torch.save``, read with ``weights_only=True``.

    Every failure becomes one :class:`CheckpointError` naming ``what`` the file was meant to be and
    saying what to do (``fix``); torch's own text never reaches the user, since it suggests
    ``weights_only=False``, the unsafe way to open a file that may be hostile."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a folder; give the file in it (best.pt, model.pt)")
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes): a save that never finished; {fix}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # neither torch's zip format nor its legacy pickle
        kind = "text" if _looks_like_text(path) else "bytes of another format"
        raise CheckpointError(f"{what} {path} is not a file written by torch.save (it holds {kind}); {fix}")
    damaged = f"{what} {path} cannot be read: it is corrupt (truncated?) or not a torch file; {fix}"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise CheckpointError(
                f"{what} {path} holds objects other than tensors and plain data; classwise refuses to unpickle "
                f"them, since unpickling can run code. Do not open it unsafely; {fix}"
            ) from None
        raise CheckpointError(damaged) from None
    except Exception:  # torch raises many types for truncated or foreign files
        raise CheckpointError(damaged) from None


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as f:
        chunk = f.read(512)
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw payload of a checkpoint file, validated; raises :class:`CheckpointError`."""
    payload = torch_file(path, "checkpoint", "re-create it with classwise, or resume from the run's last checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a classwise checkpoint (expected format {FORMAT!r})")
    if not isinstance(payload.get("state_dict"), dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload["state_dict"].items()
    ):
        raise CheckpointError(
            f"{path}: its state_dict is not a mapping of names to tensors; re-create it with classwise"
        )
    return payload


def load_checkpoint(
    path: str | Path,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    device: torch.device | str = "cpu",
    class_names: Sequence[str] | None = None,
) -> tuple[ImageClassifier, dict[str, Any]]:
    """Rebuild the model saved at ``path`` and load its weights.

    Args:
        arch: if given, the checkpoint must hold this architecture.
        num_classes: if given, the checkpoint must have this many classes (e.g. the dataset's), or,
            with the dataset's ``class_names``, be a run trained on some of them (``data.drop_classes``).

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
    trained_on = (payload.get("meta") or {}).get("class_names") or ()
    some_of = len(trained_on) == spec.num_classes and set(trained_on) < set(class_names or ())
    if num_classes is not None and num_classes != spec.num_classes and not some_of:
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
