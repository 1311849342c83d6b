"""The official datasets: their classes, files (URLs and md5 checksums), readers and where their
files may sit under the data root. Each registers itself in ``DATASETS`` where it is defined."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classwise.data import formats
from classwise.data.classes import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    FASHION_CLASSES,
    GTSRB_CLASSES,
    MNIST_CLASSES,
    STL10_CLASSES,
)
from classwise.data.files import RemoteFile, cached_arrays, download, extract, find_first, listing_digest, verified
from classwise.errors import DatasetNotFoundError
from classwise.registry import Registry


@dataclass(frozen=True)
class DatasetSpec:
    """What ``classwise datasets`` lists about an official dataset, and how to load it."""

    name: str
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]
    sizes: tuple[int, int]  # official (train, test)
    files: tuple[RemoteFile, ...]
    load: Callable[[Path, bool], dict[str, tuple[np.ndarray, np.ndarray]]]
    homepage: str
    markers: tuple[str, ...]  # paths under the root, any of which means the files are there

    @property
    def description(self) -> str:
        train, test = self.sizes
        return f"{self.name}: {len(self.classes)} classes, {train} train and {test} test images ({self.homepage})"

    def available(self, root: Path) -> bool:
        """Whether the official files (or their extracted form) are under ``root`` (no network needed)."""
        return any((root / m).exists() for m in self.markers)


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _need(spec_files: tuple[RemoteFile, ...], folder: Path, allow_download: bool, name: str) -> list[Path]:
    """The official files in ``folder`` (or ``.gz``-less copies), downloading when allowed."""
    found = []
    for remote in spec_files:
        plain = remote.filename.removesuffix(".gz")
        path = find_first([folder / remote.filename, folder / plain])
        if path is None:
            if not allow_download:
                raise DatasetNotFoundError(_missing_message(name, folder, spec_files))
            path = download(remote, folder)
        found.append(path)
    return found


def _missing_message(name: str, folder: Path, files: tuple[RemoteFile, ...]) -> str:
    listing = "\n  ".join(f"{f.filename}  (md5 {f.md5}, from {f.urls[0]})" for f in files)
    return (
        f"dataset {name!r} is not available offline: expected these official files in {folder}:\n  {listing}\n"
        "Run with network access to download them, or point --data-root / CLASSWISE_DATA at a folder holding them."
    )


def _mnist_like(folder_names: tuple[str, ...], files: tuple[RemoteFile, ...], name: str):
    def load(root: Path, allow_download: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        folder = find_first([root / f for f in folder_names]) or root / folder_names[0]
        tr_x, tr_y, te_x, te_y = _need(files, folder, allow_download, name)
        return {"train": formats.read_idx_pair(tr_x, tr_y), "test": formats.read_idx_pair(te_x, te_y)}

    return load


def _idx_files(base_urls: tuple[str, ...], md5s: tuple[str, str, str, str]) -> tuple[RemoteFile, ...]:
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    return tuple(RemoteFile(n, tuple(u + n for u in base_urls), m) for n, m in zip(names, md5s, strict=True))


def _archive_loader(
    name: str, archive: RemoteFile, folder: str, read: Callable[[Path], dict[str, tuple[np.ndarray, np.ndarray]]]
):
    """A dataset shipped as one archive that extracts to ``folder`` under the root."""

    def load(root: Path, allow_download: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        extracted = root / folder
        if not extracted.exists():
            packed = find_first([root / archive.filename])
            if packed is None:
                if not allow_download:
                    raise DatasetNotFoundError(_missing_message(name, root, (archive,)))
                packed = download(archive, root)
            extract(verified(archive, packed), root)
        return read(extracted)

    return load


MNIST_FILES = _idx_files(
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
)
FASHION_FILES = _idx_files(
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
)
DATASETS.register("mnist")(
    DatasetSpec(
        "mnist",
        MNIST_CLASSES,
        (1, 28, 28),
        (60000, 10000),
        MNIST_FILES,
        _mnist_like(("mnist", "MNIST/raw"), MNIST_FILES, "mnist"),
        "http://yann.lecun.com/exdb/mnist/",
        (
            "mnist/train-images-idx3-ubyte.gz",
            "mnist/train-images-idx3-ubyte",
            "MNIST/raw/train-images-idx3-ubyte.gz",
            "MNIST/raw/train-images-idx3-ubyte",
        ),
    )
)
DATASETS.register("fashion-mnist")(
    DatasetSpec(
        "fashion-mnist",
        FASHION_CLASSES,
        (1, 28, 28),
        (60000, 10000),
        FASHION_FILES,
        _mnist_like(("fashion-mnist", "FashionMNIST/raw"), FASHION_FILES, "fashion-mnist"),
        "https://github.com/zalandoresearch/fashion-mnist",
        (
            "fashion-mnist/train-images-idx3-ubyte.gz",
            "fashion-mnist/train-images-idx3-ubyte",
            "FashionMNIST/raw/train-images-idx3-ubyte.gz",
            "FashionMNIST/raw/train-images-idx3-ubyte",
        ),
    )
)


def _read_cifar10(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        "train": formats.read_cifar_batches([folder / f"data_batch_{i}" for i in range(1, 6)], "labels"),
        "test": formats.read_cifar_batches([folder / "test_batch"], "labels"),
    }


def _read_cifar100(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        "train": formats.read_cifar_batches([folder / "train"], "fine_labels"),
        "test": formats.read_cifar_batches([folder / "test"], "fine_labels"),
    }


CIFAR10_FILE = RemoteFile(
    "cifar-10-python.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    "c58f30108f718f92721af3b95e74349a",
)
CIFAR100_FILE = RemoteFile(
    "cifar-100-python.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
    "eb9058c3a382ffc7106e4002c42a8d85",
)
DATASETS.register("cifar10")(
    DatasetSpec(
        "cifar10",
        CIFAR10_CLASSES,
        (3, 32, 32),
        (50000, 10000),
        (CIFAR10_FILE,),
        _archive_loader("cifar10", CIFAR10_FILE, "cifar-10-batches-py", _read_cifar10),
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        ("cifar-10-batches-py", CIFAR10_FILE.filename),
    )
)
DATASETS.register("cifar100")(
    DatasetSpec(
        "cifar100",
        CIFAR100_CLASSES,
        (3, 32, 32),
        (50000, 10000),
        (CIFAR100_FILE,),
        _archive_loader("cifar100", CIFAR100_FILE, "cifar-100-python", _read_cifar100),
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        ("cifar-100-python", CIFAR100_FILE.filename),
    )
)

SVHN_FILES = (
    RemoteFile(
        "train_32x32.mat",
        ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",),
        "e26dedcc434d2e4c54c9b2d4a06d8373",
    ),
    RemoteFile(
        "test_32x32.mat", ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",), "eb5a983be6a315427106f1b8d8d0fd1e"
    ),
)


def _load_svhn(root: Path, allow_download: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    candidates = [root / "svhn", root / "SVHN", root]  # the last is torchvision's layout
    folder = next((c for c in candidates if (c / SVHN_FILES[0].filename).exists()), root / "svhn")
    train, test = _need(SVHN_FILES, folder, allow_download, "svhn")
    return {"train": formats.read_svhn_mat(train), "test": formats.read_svhn_mat(test)}


DATASETS.register("svhn")(
    DatasetSpec(
        "svhn",
        MNIST_CLASSES,
        (3, 32, 32),
        (73257, 26032),
        SVHN_FILES,
        _load_svhn,
        "http://ufldl.stanford.edu/housenumbers/",
        ("svhn/train_32x32.mat", "SVHN/train_32x32.mat", "train_32x32.mat"),
    )
)

STL10_FILE = RemoteFile(
    "stl10_binary.tar.gz",
    ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
    "91f7769df0f17e558f3565bffb0c7dfb",
)


def _read_stl10(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        "train": formats.read_stl10_binary(folder / "train_X.bin", folder / "train_y.bin"),
        "test": formats.read_stl10_binary(folder / "test_X.bin", folder / "test_y.bin"),
    }


DATASETS.register("stl10")(
    DatasetSpec(
        "stl10",
        STL10_CLASSES,
        (3, 96, 96),
        (5000, 8000),
        (STL10_FILE,),
        _archive_loader("stl10", STL10_FILE, "stl10_binary", _read_stl10),
        "https://cs.stanford.edu/~acoates/stl10/",
        ("stl10_binary", STL10_FILE.filename),
    )
)

GTSRB_BASE = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
GTSRB_FILES = (
    RemoteFile(
        "GTSRB_Final_Training_Images.zip",
        (GTSRB_BASE + "GTSRB_Final_Training_Images.zip",),
        "f33fd80ac59bff73c82d25ab499e03a3",
    ),
    RemoteFile(
        "GTSRB_Final_Test_Images.zip", (GTSRB_BASE + "GTSRB_Final_Test_Images.zip",), "c7e4e6327067d32654124b0fe9e82185"
    ),
    RemoteFile(
        "GTSRB_Final_Test_GT.zip", (GTSRB_BASE + "GTSRB_Final_Test_GT.zip",), "fe31e9c9270bbcd7b84b7f21a9d9d9e5"
    ),
)


def _load_gtsrb(root: Path, allow_download: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not (root / "GTSRB" / "Final_Training" / "Images").exists():
        if not allow_download:
            raise DatasetNotFoundError(_missing_message("gtsrb", root, GTSRB_FILES))
        for remote, archive in zip(GTSRB_FILES, _need(GTSRB_FILES, root, True, "gtsrb"), strict=True):
            extract(verified(remote, archive), root)
    key = "gtsrb-" + listing_digest(root / "GTSRB")

    def build() -> dict[str, np.ndarray]:
        splits = formats.read_gtsrb(root)
        return {f"{s}_{part}": arr for s, (x, y) in splits.items() for part, arr in (("x", x), ("y", y))}

    arrays = cached_arrays(key, build)
    return {s: (arrays[f"{s}_x"], arrays[f"{s}_y"]) for s in ("train", "test")}


DATASETS.register("gtsrb")(
    DatasetSpec(
        "gtsrb",
        GTSRB_CLASSES,
        (3, 32, 32),
        (39209, 12630),
        GTSRB_FILES,
        _load_gtsrb,
        "https://benchmark.ini.rub.de/gtsrb_dataset.html",
        ("GTSRB/Final_Training/Images", GTSRB_FILES[0].filename),
    )
)
