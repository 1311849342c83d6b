"""Where a number came from: package versions, the device, the code's git commit and the command
line, recorded with every evaluation, run folder and report."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on (``"-"`` for one that is not installed)."""
    from importlib import metadata

    import numpy

    from classwise import __version__

    try:
        autoattack = metadata.version("pyautoattack")
    except metadata.PackageNotFoundError:
        autoattack = "-"
    return {
        "classwise": __version__,
        "torch": str(torch.__version__),
        "pyautoattack": autoattack,
        "numpy": str(numpy.__version__),
        "python": platform.python_version(),
    }


@functools.cache
def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, else what Python knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: torch.device | str | None = None) -> dict[str, Any]:
    """The device a computation ran on: CPU model and thread count, or GPU name and CUDA version."""
    dev = torch.device(device if device is not None else "cpu")
    info: dict[str, Any] = {"type": dev.type, "cpu": cpu_name(), "threads": torch.get_num_threads()}
    if dev.type == "cuda" and torch.cuda.is_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        info.update({"gpu": torch.cuda.get_device_name(index), "cuda": torch.version.cuda})
    return info


@functools.cache
def git_commit() -> str | None:
    """The commit of the classwise source that ran, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def provenance(device: torch.device | str | None = None) -> dict[str, Any]:
    """Everything that says where a result came from (versions, device, commit, command line)."""
    return {
        "versions": versions(),
        "device": device_info(device),
        "git_commit": git_commit(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else [],
        "host": platform.node(),
    }
