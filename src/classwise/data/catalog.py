"""The dataset registry: official datasets by name, and any class-folder tree or archive by path.

``load_dataset("cifar10")`` finds the official files under the data root (downloading them
with checksums when absent); ``load_dataset("path/to/images.tar.gz")`` reads a class-folder
tree. Both return a :class:`~classwise.data.dataset.Dataset` of uint8 tensors.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from classwise.data import formats
from classwise.data.dataset import Dataset, LabeledImages
from classwise.data.files import (
    cached_arrays,
    data_root,
    file_digest,
    listing_digest,
)
from classwise.data.official import DATASETS
from classwise.errors import DatasetNotFoundError, UnknownNameError

log = logging.getLogger(__name__)


def load_dataset(name_or_path: str, root: str | Path | None = None, download_missing: bool = True) -> Dataset:
    """Load a dataset by registry name or by path to a class-folder tree / archive.

    Args:
        name_or_path: ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``, ``svhn``, ``stl10``,
            ``gtsrb``; or a folder / ``.tar`` / ``.tar.gz`` holding ``train/<class>/*`` and ``test/<class>/*``,
            given as a path or relative to the data root (``cifar10-jpeg.tar.gz`` with ``CLASSWISE_DATA``).
        root: data root (default: ``CLASSWISE_DATA`` or the user cache, see :func:`data_root`).
        download_missing: download absent official files (checksummed). With False, a clear
            :class:`DatasetNotFoundError` lists the files expected.

    Example:
        >>> ds = load_dataset("fashion-mnist")  # doctest: +SKIP
        >>> ds.num_classes, ds.input_shape
        (10, (1, 28, 28))
    """
    try:
        return _load(name_or_path, root, download_missing)
    except ValueError as exc:  # a file that cannot be parsed: the readers name it
        raise DatasetNotFoundError(
            f"dataset {name_or_path!r}: {exc}. The file is damaged or not in the expected format: delete it to "
            "download it again, or fix the folder."
        ) from None


def locate(name_or_path: str, root: str | Path | None = None) -> Path | None:
    """Where a dataset is: the path of a class-folder tree or archive, or None for a registered
    name. Anything else is one error (close registered names suggested), before any file is read."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise DatasetNotFoundError(f"give a dataset name or path, got {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    if not path.exists() and name_or_path not in DATASETS:
        path = data_root(root) / name_or_path  # a folder or archive inside the data root
    if path.exists() and (path.is_dir() or _is_archive(path)):
        return path
    if name_or_path.lower() in DATASETS:
        return None
    if any(sep in name_or_path for sep in ("/", "\\")) or _is_archive(path):
        raise DatasetNotFoundError(f"dataset path {name_or_path!r} does not exist (nor under {data_root(root)})")
    try:
        DATASETS.get(name_or_path)
    except UnknownNameError as exc:
        raise DatasetNotFoundError(
            f"{exc} A folder or archive of class folders is a dataset too (give its path)."
        ) from None
    return None


def _load(name_or_path: str, root: str | Path | None, download_missing: bool) -> Dataset:
    path = locate(name_or_path, root)
    if path is not None:
        return _load_folder_dataset(path)
    spec = DATASETS.get(name_or_path)
    folder = data_root(root)
    splits = spec.load(folder, download_missing)
    return _to_dataset(spec.name, spec.classes, splits, f"official {spec.name} files in {folder} ({spec.homepage})")


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar", ".tar.gz", ".tgz"))


def _load_folder_dataset(path: Path) -> Dataset:
    name = path.name.removesuffix(".gz").removesuffix(".tar").removesuffix(".tgz")
    key = f"folder-{name}-" + (file_digest(path, "sha256")[:20] if path.is_file() else listing_digest(path))

    def build() -> dict[str, np.ndarray]:
        classes, splits = formats.read_class_folders(path)
        out = {f"{s}_{p}": a for s, (x, y) in splits.items() for p, a in (("x", x), ("y", y))}
        out["classes"] = np.asarray(classes)
        return out

    arrays = cached_arrays(key, build)
    classes = tuple(str(c) for c in arrays["classes"])
    splits = {s: (arrays[f"{s}_x"], arrays[f"{s}_y"]) for s in ("train", "test")}
    source = f"class folders in {path}"
    notes: tuple[str, ...] = ()
    if "jpeg" in name.lower() or "jpg" in name.lower():
        notes = ("lossy JPEG copy: results are on this variant, not on the original dataset",)
    return _to_dataset(name, classes, splits, source, notes)


def _to_dataset(
    name: str,
    classes: tuple[str, ...],
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    source: str,
    notes: tuple[str, ...] = (),
) -> Dataset:
    def split(s: str) -> LabeledImages:
        x, y = splits[s]
        return LabeledImages(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)))

    return Dataset(name, classes, split("train"), split("test"), source, notes=notes)


def dataset_rows(root: Path) -> list[dict[str, object]]:
    """One row per registered dataset: name, classes, input shape, official sizes, and whether its
    files are under ``root`` (what ``classwise datasets`` prints)."""
    return [
        {
            "name": spec.name,
            "classes": len(spec.classes),
            "input": "×".join(map(str, spec.input_shape)),
            "train": spec.sizes[0],
            "test": spec.sizes[1],
            "local": spec.available(root),
            "class names": ", ".join(spec.classes[:6]) + (", ..." if len(spec.classes) > 6 else ""),
        }
        for spec in (entry.factory for entry in DATASETS)
    ]
