"""Errors that carry a message a user can act on.

Library code raises these for bad input; the CLI prints their message alone (no traceback).
"""

from __future__ import annotations

import errno
from pathlib import Path


class ClasswiseError(Exception):
    """Base class: the message says what went wrong and what to do."""


class ConfigError(ClasswiseError, ValueError):
    """An impossible or inconsistent setting."""


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup with a name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class DatasetNotFoundError(ClasswiseError, FileNotFoundError):
    """A dataset's files are neither present nor downloadable."""


class CheckpointError(ClasswiseError):
    """A checkpoint is corrupt or does not match what was asked for."""


def _user_path(filename: object) -> str:
    """The path to name in a message: the folder a classwise temporary file was written in, not the
    temporary file itself (``.partial-…``, ``.NAME.….part``), which the user never typed."""
    path = Path(str(filename))
    while path.name.startswith(".") and (".partial-" in path.name or path.name.endswith(".part")):
        path = path.parent
    if any(part.startswith(".partial-") for part in path.parts):
        path = Path(*path.parts[: [p.startswith(".partial-") for p in path.parts].index(True)])
    return str(path)


def os_error_message(exc: OSError) -> str:
    """What to do about a file that could not be read or written, by its cause."""
    where = _user_path(exc.filename) if exc.filename else "a file"
    causes = {
        errno.ENOSPC: f"no space left on the device while writing {where}; free some space and run the command "
        "again (what was finished before is kept)",
        errno.EDQUOT: f"the disk quota is used up while writing {where}; free some space and run the command again",
        errno.ENOTDIR: f"{where}: a part of this path is a file, not a folder; give a path whose folders are folders",
        errno.EEXIST: f"{where} already exists as a file; give a path where a folder can be made",
        errno.EISDIR: f"{where} is a folder; give a file path",
        errno.EACCES: f"no permission to use {where}; choose a path you can write, or change its permissions",
        errno.EPERM: f"no permission to use {where}; choose a path you can write, or change its permissions",
        errno.EROFS: f"{where} is on a read-only file system; choose a writable path",
        errno.ENOENT: f"{where} does not exist; check the path",
        errno.ENAMETOOLONG: f"{where}: the path is too long; give a shorter one",
    }
    return causes.get(exc.errno or -1, f"{where}: {exc.strerror or exc}; check the path")
