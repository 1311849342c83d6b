"""Where data lives on disk: the data root, verified downloads, and the decoded-array cache.

The data root is, in order: an explicit argument (``--data-root``), the environment
variable ``CLASSWISE_DATA``, then ``$XDG_CACHE_HOME/classwise/data`` (``~/.cache/...``).
Decoded arrays are cached under ``CLASSWISE_CACHE`` (default ``$XDG_CACHE_HOME/classwise/arrays``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from classwise.errors import DatasetNotFoundError

log = logging.getLogger(__name__)


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "classwise"


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder datasets are read from and downloaded into (it may not exist yet; it must not be a file)."""
    env = os.environ.get("CLASSWISE_DATA")
    root = Path(explicit if explicit is not None else env or user_cache_dir() / "data").expanduser()
    if root.exists() and not root.is_dir():
        source = "--data-root" if explicit is not None else ("CLASSWISE_DATA" if env else "the default data root")
        raise DatasetNotFoundError(f"{root} ({source}) is a file; give a folder that holds (or will hold) the datasets")
    return root


def array_cache_dir() -> Path:
    env = os.environ.get("CLASSWISE_CACHE")
    return Path(env).expanduser() if env else user_cache_dir() / "arrays"


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name on disk, mirror URLs and md5."""

    filename: str
    urls: tuple[str, ...]
    md5: str


def file_digest(path: Path, algorithm: str = "md5", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(remote: RemoteFile, folder: Path) -> Path:
    """Download ``remote`` into ``folder`` (atomically), verify its md5, return its path.

    Tries each mirror in turn. Raises :class:`DatasetNotFoundError` naming the expected file
    when every mirror fails (for example offline).
    """
    target = folder / remote.filename
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in remote.urls:
        tmp = Path(tempfile.mkstemp(dir=folder, prefix=f".{remote.filename}.", suffix=".part")[1])
        try:
            _fetch(url, tmp)
            got = file_digest(tmp)
            if got != remote.md5:
                raise OSError(f"checksum mismatch: md5 {got}, expected {remote.md5}")
            os.replace(tmp, target)
            return target
        except OSError as exc:  # URLError and HTTPError are OSErrors
            errors.append(f"{url}: {exc}")
            log.warning("download failed: %s: %s", url, exc)
        finally:
            tmp.unlink(missing_ok=True)
    raise DatasetNotFoundError(
        f"could not download {remote.filename} into {folder}:\n  "
        + "\n  ".join(errors)
        + f"\nPlace the official file {remote.filename} (md5 {remote.md5}) there by hand, or point "
        "--data-root / CLASSWISE_DATA at a folder that holds it."
    )


def _fetch(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, leave=False) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                bar.update(len(block))


def verified(remote: RemoteFile, path: Path) -> Path:
    """``path`` if its md5 is the official one; a local copy that is not (truncated, altered, another
    file under the official name) is refused before anything is extracted from it."""
    got = file_digest(path)
    if got != remote.md5:
        raise DatasetNotFoundError(
            f"{path} is not the official {remote.filename}: md5 {got}, expected {remote.md5} (a truncated or "
            "altered download?); delete it to download it again, or replace it with the official file"
        )
    return path


def extract(archive: Path, into: Path) -> None:
    """Extract a .zip, .tar or .tar.gz archive into ``into`` (safe paths only), atomically: into a
    temporary folder first, whose top-level entries are moved into place only once all is extracted,
    so an interrupted or failed extraction leaves nothing later runs would trust."""
    into.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=into, prefix=f".{archive.name}.", suffix=".part"))
    try:
        try:
            if archive.suffix == ".zip":
                with zipfile.ZipFile(archive) as z:
                    z.extractall(tmp)
            else:
                with tarfile.open(archive) as t:
                    t.extractall(tmp, filter="data")
        except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error) as exc:
            raise DatasetNotFoundError(
                f"{archive} cannot be extracted ({type(exc).__name__}: {exc}); delete it and download it again"
            ) from None
        _merge_into(tmp, into)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _merge_into(src: Path, dst: Path) -> None:
    """Move everything under ``src`` into ``dst``, merging folders that exist on both sides."""
    for entry in src.iterdir():
        target = dst / entry.name
        if entry.is_dir() and target.is_dir():
            _merge_into(entry, target)
        else:
            os.replace(entry, target)


def find_first(candidates: list[Path]) -> Path | None:
    return next((p for p in candidates if p.exists()), None)


def cached_arrays(key: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Load arrays stored under ``key`` in the cache, or ``build`` and store them (atomically).

    ``key`` must identify the source content (for example its checksum); a changed source gets
    a new key, so the cache never serves stale arrays.
    """
    path = array_cache_dir() / f"{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cache %s: %s", path, exc)
    arrays = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.part")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache is not fatal: we just decode next time
        log.warning("could not write array cache %s: %s", path, exc)
    return arrays


def listing_digest(folder: Path) -> str:
    """A digest of a folder's file names, sizes and modification times (cheap content key)."""
    import hashlib

    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]
