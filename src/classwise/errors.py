"""Errors that carry a message a user can act on.

Library code raises these for bad input; the CLI prints their message alone (no traceback).
"""

from __future__ import annotations


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
