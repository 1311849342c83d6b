"""Tiny files in each dataset's official format, written by the tests (never shipped)."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from classwise.config import apply_overrides, flatten

# images per split for every synthetic dataset; labels cycle 0..K-1
N_TRAIN, N_TEST = 40, 20


def _labels(n: int, k: int) -> np.ndarray:
    return np.arange(n) % k


def _images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def write_idx_dataset(root: Path, folder: str) -> dict[str, np.ndarray]:
    d = root / folder
    d.mkdir(parents=True)
    out = {}
    for prefix, n, seed in (("train", N_TRAIN, 0), ("t10k", N_TEST, 1)):
        x, y = _images(n, (28, 28), seed), _labels(n, 10).astype(np.uint8)
        _write_idx(d / f"{prefix}-images-idx3-ubyte.gz", x)
        _write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", y)
        out[prefix] = x
    return out


def write_cifar10(root: Path) -> dict[str, np.ndarray]:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    x = _images(N_TRAIN, (3, 32, 32), 2)
    for i in range(5):  # five train batches of N_TRAIN/5 images
        part = slice(i * N_TRAIN // 5, (i + 1) * N_TRAIN // 5)
        _pickle(
            d / f"data_batch_{i + 1}", {b"data": x[part].reshape(-1, 3072), b"labels": list(_labels(N_TRAIN, 10)[part])}
        )
    xt = _images(N_TEST, (3, 32, 32), 3)
    _pickle(d / "test_batch", {b"data": xt.reshape(-1, 3072), b"labels": list(_labels(N_TEST, 10))})
    return {"train": x, "test": xt}


def write_cifar100(root: Path) -> dict[str, np.ndarray]:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    x, xt = _images(N_TRAIN, (3, 32, 32), 4), _images(N_TEST, (3, 32, 32), 5)
    _pickle(d / "train", {b"data": x.reshape(-1, 3072), b"fine_labels": list(_labels(N_TRAIN, 100))})
    _pickle(d / "test", {b"data": xt.reshape(-1, 3072), b"fine_labels": list(_labels(N_TEST, 100))})
    return {"train": x, "test": xt}


def _pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_svhn(root: Path) -> dict[str, np.ndarray]:
    from scipy.io import savemat

    d = root / "svhn"
    d.mkdir(parents=True)
    out = {}
    for split, n, seed in (("train", N_TRAIN, 6), ("test", N_TEST, 7)):
        x = _images(n, (3, 32, 32), seed)
        y = _labels(n, 10)
        savemat(d / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": np.where(y == 0, 10, y)[:, None]})
        out[split] = x
    return out


def write_stl10(root: Path) -> dict[str, np.ndarray]:
    d = root / "stl10_binary"
    d.mkdir(parents=True)
    out = {}
    for split, n, seed in (("train", N_TRAIN, 8), ("test", N_TEST, 9)):
        x = _images(n, (3, 96, 96), seed)
        x.transpose(0, 1, 3, 2).tofile(d / f"{split}_X.bin")  # official files are column-major
        (_labels(n, 10) + 1).astype(np.uint8).tofile(d / f"{split}_y.bin")
        out[split] = x
    return out


def write_gtsrb(root: Path, k: int = 43) -> dict[str, np.ndarray]:
    base = root / "GTSRB"
    train = []
    for c in range(k):
        d = base / "Final_Training" / "Images" / f"{c:05d}"
        d.mkdir(parents=True)
        rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        img = _images(1, (40, 36, 3), 100 + c)[0]  # official images vary in size; loader resizes to 32×32
        Image.fromarray(img).save(d / f"00000_{c:05d}.ppm")
        rows.append(f"00000_{c:05d}.ppm;36;40;5;5;30;35;{c}")
        (d / f"GT-{c:05d}.csv").write_text("\n".join(rows) + "\n")
        train.append(img)
    test_dir = base / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i in range(N_TEST):
        Image.fromarray(_images(1, (32, 32, 3), 300 + i)[0]).save(test_dir / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;32;32;1;1;30;30;{i % k}")
    (base / "Final_Test" / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    return {"train": np.stack(train)}


def write_class_folders(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "ship"),
    n: int = 4,
    as_tar: bool = False,
    fmt: str = "PNG",
    splits: tuple[str, ...] = ("train", "test"),
    size: int = 8,
) -> Path:
    """``root/images/{train,test}/<class>/NNN.png`` or the same tree packed as ``root/images.tar.gz``."""
    files = {}
    for split in splits:
        for ci, c in enumerate(classes):
            for i in range(n):
                img = np.full((size, size, 3), 10 * ci + i, dtype=np.uint8)
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format=fmt)
                files[f"images/{split}/{c}/{i:03d}.{fmt.lower()}"] = buf.getvalue()
    if as_tar:
        path = root / "images.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root / "images"


WRITERS: dict[str, Callable[[Path], dict[str, np.ndarray]]] = {
    "mnist": lambda r: write_idx_dataset(r, "mnist"),
    "fashion-mnist": lambda r: write_idx_dataset(r, "fashion-mnist"),
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "svhn": write_svhn,
    "stl10": write_stl10,
    "gtsrb": write_gtsrb,
}


# Training settings for seconds-long runs on the synthetic 8×8 images (tests override what they vary).
TINY_CONFIG: dict[str, Any] = {
    "model": {"name": "resnet20", "args": {"width": 4}},
    "threat": {"eps": 8 / 255},
    "method": {"name": "pgd-at", "args": {"steps": 1}},
    "optim": {"epochs": 1, "batch_size": 8},
    "data": {"val_per_class": 2},
    "monitor": {"steps": 1},
    "evaluation": {"attacks": [{"name": "pgd", "args": {"steps": 1}}]},
}


def tiny(settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """TINY_CONFIG with dotted-key overrides (``{"data.dataset": path, "method.name": "trades"}``)."""
    return apply_overrides(TINY_CONFIG, settings or {})


def tiny_train_args(settings: dict[str, Any] | None = None) -> list[str]:
    """``--set`` options for a seconds-long training run on the synthetic 8×8 images."""
    tree = tiny(settings)
    return [item for key, value in flatten(tree).items() for item in ("--set", f"{key}={json.dumps(value)}")]
