"""Parsers for the official file formats. Each returns numpy arrays: images uint8 (N, C, H, W),
labels int64 (N,). They validate what they read and raise ``ValueError`` naming the file."""

from __future__ import annotations

import csv
import gzip
import io
import pickle
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp"}


class SafeUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: a pickle that asks for any other callable (the
    way a malicious file runs code) is refused, never called."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only plain data and arrays are allowed")


def safe_pickle_load(path: Path) -> object:
    """A pickled file of plain data and numpy arrays (the CIFAR batches), without running its code."""
    with open(path, "rb") as f:
        return SafeUnpickler(f, encoding="bytes").load()


READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    zlib.error,
    tarfile.TarError,
    pickle.UnpicklingError,
)


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Any failure to read ``path`` (truncated, damaged, foreign, hostile) becomes one ValueError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (*READ_ERRORS, UnidentifiedImageError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(str(path)):
            raise
        detail = str(exc).splitlines()[0][:160] if str(exc) else "it ends early"
        raise ValueError(f"{path}: cannot be read ({type(exc).__name__}: {detail})") from None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format), gzipped or not: ubyte tensors of any rank."""
    opener = gzip.open if path.suffix == ".gz" else open
    with reading(path), opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic {data[:4]!r})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise ValueError(f"{path}: header says {dims} ({expected} bytes), file holds {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def read_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images)
    y = read_idx(labels).astype(np.int64)
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{images}, {labels}: shapes {x.shape} and {y.shape} do not pair")
    return x[:, None, :, :].copy(), y


def read_cifar_batches(files: list[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10/100 python pickles: dict with b'data' (N, 3072) and ``label_key`` labels."""
    xs, ys = [], []
    for path in files:
        with reading(path):
            batch = safe_pickle_load(path)
        if not isinstance(batch, dict):
            raise ValueError(f"{path}: not a CIFAR batch (a {type(batch).__name__}, not a dict)")
        try:
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            labels = np.asarray(batch[label_key.encode()], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"{path}: CIFAR batch without key {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: CIFAR batch with unreadable values ({exc})") from None
        if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
            raise ValueError(f"{path}: unexpected CIFAR batch shapes {data.shape}, {labels.shape}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN cropped digits .mat: X (32, 32, 3, N), y (N, 1) with label 10 meaning digit 0."""
    from scipy.io import loadmat

    with reading(path):
        mat = loadmat(path)
    x = np.asarray(mat["X"], dtype=np.uint8)
    y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.shape[0]:
        raise ValueError(f"{path}: unexpected SVHN shapes {x.shape}, {y.shape}")
    y = np.where(y == 10, 0, y)
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def read_stl10_binary(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """STL-10 binary: images column-major (N, 3, 96, 96); labels 1..10 as uint8."""
    with reading(images):
        raw = np.fromfile(images, dtype=np.uint8)
    if raw.size % (3 * 96 * 96):
        raise ValueError(f"{images}: size {raw.size} is not a multiple of 3×96×96")
    x = raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
    y = np.fromfile(labels, dtype=np.uint8).astype(np.int64) - 1
    if y.shape[0] != x.shape[0] or y.min() < 0 or y.max() > 9:
        raise ValueError(f"{labels}: {y.shape[0]} labels in 1..10 expected for {x.shape[0]} images")
    return np.ascontiguousarray(x), y


def decode_image(data: bytes | Path, size: tuple[int, int] | None = None, mode: str | None = None) -> np.ndarray:
    """One image as uint8 (H, W, C); optionally converted to ``mode`` and resized (bilinear)."""
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as opened:  # callers name the file
        img = opened.convert(mode or ("L" if opened.mode in ("L", "1", "I;16") else "RGB"))
        if size is not None and img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def stack_hwc(images: list[np.ndarray], where: str) -> np.ndarray:
    """Stack (H, W, C) images into (N, C, H, W); all must share one shape."""
    if not images:
        raise ValueError(f"{where}: no images found")
    if {im.shape[2] for im in images} == {1, 3}:  # a few greyscale files among colour ones
        images = [np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im for im in images]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"{where}: images have different shapes {sorted(shapes)[:4]}; resize them to one size")
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))


def read_gtsrb(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """GTSRB in the official layout under ``root/GTSRB``, every image resized to 32×32.

    Train: ``Final_Training/Images/000NN/GT-000NN.csv`` (label = ClassId).
    Test: ``Final_Test/Images/*.ppm`` with ``GT-final_test.csv`` (from GTSRB_Final_Test_GT.zip),
    found in ``Final_Test/``, ``Final_Test/Images/`` or the root.
    """
    base = root / "GTSRB"
    train_x, train_y = [], []
    for csv_path in sorted((base / "Final_Training" / "Images").glob("*/GT-*.csv")):
        for row in _gtsrb_rows(csv_path):
            train_x.append(decode_image(csv_path.parent / row["Filename"], (32, 32), "RGB"))
            train_y.append(int(row["ClassId"]))
    test_csv = next(
        (
            p
            for p in (
                base / "Final_Test" / "GT-final_test.csv",
                base / "Final_Test" / "Images" / "GT-final_test.csv",
                root / "GT-final_test.csv",
            )
            if p.exists()
        ),
        None,
    )
    if test_csv is None:
        raise ValueError(f"{base}: GT-final_test.csv (test labels, from GTSRB_Final_Test_GT.zip) not found")
    test_x, test_y = [], []
    images = base / "Final_Test" / "Images"
    for row in _gtsrb_rows(test_csv):
        test_x.append(decode_image(images / row["Filename"], (32, 32), "RGB"))
        test_y.append(int(row["ClassId"]))
    return {
        "train": (stack_hwc(train_x, str(base / "Final_Training")), np.asarray(train_y, dtype=np.int64)),
        "test": (stack_hwc(test_x, str(images)), np.asarray(test_y, dtype=np.int64)),
    }


def _gtsrb_rows(path: Path) -> Iterator[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter=";")
        if reader.fieldnames is None or "Filename" not in reader.fieldnames or "ClassId" not in reader.fieldnames:
            raise ValueError(f"{path}: GTSRB annotation CSV needs Filename and ClassId columns")
        yield from reader


def iter_image_files(source: Path) -> Iterator[tuple[tuple[str, ...], bytes]]:
    """(path parts, bytes) of every image in a folder or a .tar/.tar.gz archive, sorted by path."""
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            yield path.relative_to(source).parts, path.read_bytes()
        return
    with reading(source), tarfile.open(source) as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and Path(m.name).suffix.lower() in IMAGE_SUFFIXES),
            key=lambda m: m.name,
        )
        for m in members:
            f = tar.extractfile(m)
            if f is not None:
                yield Path(m.name).parts, f.read()


def read_class_folders(source: Path) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A tree ``[prefix/]{train,test}/<class>/<image>`` (folder or tar) → class names and splits; a
    tree with only ``test/`` gets an empty train split.

    Classes are the sorted class-folder names (the ImageFolder convention); within a class,
    images keep their sorted file order.
    """
    by_split: dict[str, list[tuple[str, np.ndarray]]] = {"train": [], "test": []}
    for parts, data in iter_image_files(source):
        if len(parts) < 3 or parts[-3] not in by_split:
            continue
        with reading(source / Path(*parts)):
            by_split[parts[-3]].append((parts[-2], decode_image(data)))
    if not by_split["test"]:
        raise ValueError(
            f"{source}: no images under test/<class>/; expected test/<class>/*.png|jpg (and train/<class>/*.png|jpg "
            "to train on it)"
        )
    classes = sorted({c for items in by_split.values() for c, _ in items})
    empty = sorted(_class_folders(source) - set(classes))
    if empty:
        raise ValueError(f"{source}: class folder(s) {', '.join(empty)} hold no images; add images or remove them")
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, items in by_split.items():
        if not items:  # a test-only tree: it evaluates, and training on it is refused
            continue
        x = stack_hwc([im for _, im in items], f"{source}/{split}")
        y = np.asarray([index[c] for c, _ in items], dtype=np.int64)
        splits[split] = (x, y)
    test_x = splits["test"][0]
    splits.setdefault("train", (test_x[:0], np.zeros(0, dtype=np.int64)))
    if splits["train"][0].shape[1:] != test_x.shape[1:]:
        raise ValueError(f"{source}: train and test images differ in shape")
    return classes, splits


def _class_folders(source: Path) -> set[str]:
    """Names of the class folders under train/ and test/ of a folder tree (archives list only files)."""
    if not source.is_dir():
        return set()
    return {p.name for split in ("train", "test") for p in (source / split).glob("*") if p.is_dir()}
