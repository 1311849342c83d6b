"""Resumable evaluation: the progress of one evaluation (clean predictions, each attack's
per-sample arrays and how many batches of each component are done) kept in one ``.npz`` file,
replaced atomically after every batch. A killed evaluation restarts from its last finished batch;
since every batch's randomness is a function of (seed, position), the resumed records are
identical to an uninterrupted run's. The file is read with ``allow_pickle=False``: it cannot run
code."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from classwise.errors import ConfigError

STATE = ".evaluation-state.npz"


class EvalState:
    """Named arrays of one evaluation's progress, saved to ``path`` (nothing is saved without one).

    Raises ConfigError when ``path`` holds the progress of a different evaluation (other settings,
    weights or images): an evaluation resumes only with what it was started with."""

    def __init__(self, path: Path | None, fingerprint: str, describe: str = "") -> None:
        self.path = path
        self.arrays: dict[str, np.ndarray] = {}
        if path is not None and path.exists():
            try:
                with np.load(path, allow_pickle=False) as f:
                    self.arrays = {k: f[k] for k in f.files}
            except (OSError, ValueError, zipfile.BadZipFile, EOFError):
                self.arrays = {}  # an unreadable state (a disk-full write) costs a restart, not a crash
            saved = str(self.arrays["fingerprint"]) if "fingerprint" in self.arrays else fingerprint
            if saved != fingerprint:
                raise ConfigError(
                    f"{path.parent} holds an unfinished evaluation with other settings, weights or images "
                    f"({describe or 'fingerprint differs'}); resume it with what it was started with, or use "
                    f"another output folder (or delete {path})"
                )
        self.arrays["fingerprint"] = np.array(fingerprint)

    def get(self, key: str) -> np.ndarray | None:
        return self.arrays.get(key)

    def put(self, **arrays: np.ndarray) -> None:
        self.arrays.update(arrays)

    def save(self) -> None:
        """Replace the file atomically with the current arrays."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f"{self.path.name}.", suffix=".part")
        try:
            arrays: dict[str, Any] = dict(self.arrays)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
