from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from classwise.data import (
    DATASETS,
    Augment,
    BatchIterator,
    LabeledImages,
    augment_batch,
    class_subset,
    formats,
    load_dataset,
    long_tail_counts,
    long_tailed,
    official,
    validation_split,
    without_classes,
)
from classwise.data.files import RemoteFile, download
from classwise.errors import ConfigError, DatasetNotFoundError
from tests.synthetic import N_TEST, N_TRAIN, WRITERS, write_class_folders


def test_every_registered_dataset_has_a_synthetic_writer() -> None:
    assert set(DATASETS.names()) == set(WRITERS)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_dataset_parses_its_official_format(name: str, tmp_path: Path) -> None:
    written = WRITERS[name](tmp_path)
    ds = load_dataset(name, root=tmp_path, download_missing=False)
    spec = DATASETS.get(name)
    assert ds.input_shape == spec.input_shape
    assert ds.num_classes == len(spec.classes)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert spec.available(tmp_path)
    if name == "gtsrb":  # one resized image per class; test labels from the GT csv
        assert len(ds.train) == 43 and ds.train.labels.tolist() == list(range(43))
        assert len(ds.test) == N_TEST
        return
    assert (len(ds.train), len(ds.test)) == (N_TRAIN, N_TEST)
    k = ds.num_classes
    assert ds.train.labels.tolist() == [i % k for i in range(N_TRAIN)]
    # pixels survive the format's layout exactly (channel order, column-major STL, IDX header)
    first = written.get("train", written.get("train"))
    np.testing.assert_array_equal(ds.train.images.numpy().reshape(first.shape), first)


def test_offline_without_files_names_the_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"cifar-10-python\.tar\.gz") as err:
        load_dataset("cifar10", root=tmp_path, download_missing=False)
    assert str(tmp_path) in str(err.value)
    assert not DATASETS.get("cifar10").available(tmp_path)


def test_unknown_dataset_suggests_close_names() -> None:
    with pytest.raises(DatasetNotFoundError, match="Did you mean: cifar10"):
        load_dataset("cifar-10")


def test_missing_dataset_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "nope" / "data.tar.gz"))


def test_download_verifies_checksum(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"official bytes")
    md5 = hashlib.md5(b"official bytes").hexdigest()
    got = download(RemoteFile("file.bin", (src.as_uri(),), md5), tmp_path / "root")
    assert got.read_bytes() == b"official bytes"
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch"):
        download(RemoteFile("other.bin", (src.as_uri(),), "0" * 32), tmp_path / "root")
    assert not (tmp_path / "root" / "other.bin").exists()
    assert not list((tmp_path / "root").glob("*.part"))


def test_archive_is_downloaded_then_extracted(tmp_path: Path) -> None:
    """The real download path: fetch the archive (here from a file URL), verify, extract, parse."""
    staging = tmp_path / "staging"
    WRITERS["cifar10"](staging)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    fake = RemoteFile("cifar-10-python.tar.gz", (archive.as_uri(),), md5)
    load = official._archive_loader("cifar10", fake, "cifar-10-batches-py", official._read_cifar10)
    splits = load(tmp_path / "root", True)
    assert splits["train"][0].shape == (N_TRAIN, 3, 32, 32)
    assert (tmp_path / "root" / "cifar-10-batches-py").is_dir()
    assert (tmp_path / "root" / "cifar-10-python.tar.gz").is_file()


@pytest.mark.parametrize("as_tar", [False, True])
def test_class_folder_dataset(tmp_path: Path, as_tar: bool) -> None:
    path = write_class_folders(tmp_path, as_tar=as_tar)
    ds = load_dataset(str(path))
    assert ds.name == "images"
    assert ds.class_names == ("cat", "dog", "ship")
    assert (len(ds.train), len(ds.test), ds.input_shape) == (12, 12, (3, 8, 8))
    # class order from folder names, image order from file names
    assert ds.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert ds.train.images[5, 0, 0, 0].item() == 10 * 1 + 1


def test_class_folder_dataset_found_in_the_data_root(tmp_path: Path) -> None:
    write_class_folders(tmp_path, as_tar=True)
    ds = load_dataset("images.tar.gz", root=tmp_path)
    assert ds.class_names == ("cat", "dog", "ship")


def test_class_folder_dataset_is_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_class_folders(tmp_path, as_tar=True)
    first = load_dataset(str(path))
    monkeypatch.setattr(formats, "read_class_folders", lambda _: pytest.fail("decoded twice"))
    second = load_dataset(str(path))
    assert torch.equal(first.train.images, second.train.images)


def test_class_folder_without_test_split_is_a_clear_error(tmp_path: Path) -> None:
    path = write_class_folders(tmp_path)
    for p in sorted((path / "test").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    with pytest.raises(DatasetNotFoundError, match="test/<class>"):
        load_dataset(str(path))


def _toy(n_per_class: int = 20, k: int = 4):
    from classwise.data.dataset import Dataset

    labels = torch.arange(k).repeat_interleave(n_per_class)
    images = torch.arange(len(labels), dtype=torch.int64).remainder(256).to(torch.uint8)
    images = images.view(-1, 1, 1, 1).expand(-1, 3, 6, 6).contiguous()
    split = LabeledImages(images, labels)
    return Dataset("toy", tuple("abcd"[:k]), split, split, "test")


def test_validation_split_is_stratified_disjoint_and_seeded() -> None:
    ds = _toy()
    a, b, c = validation_split(ds, 5, seed=1), validation_split(ds, 5, seed=1), validation_split(ds, 5, seed=2)
    assert a.val is not None and b.val is not None and c.val is not None
    assert a.val.counts(4).tolist() == [5, 5, 5, 5]
    assert a.train.counts(4).tolist() == [15, 15, 15, 15]
    ids_val = set(a.val.images[:, 0, 0, 0].tolist())
    assert ids_val.isdisjoint(a.train.images[:, 0, 0, 0].tolist())
    assert torch.equal(a.val.images, b.val.images) and not torch.equal(a.val.images, c.val.images)
    with pytest.raises(ConfigError, match="too few"):
        validation_split(ds, 20)


def test_long_tail_profile_and_subsample() -> None:
    assert long_tail_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    ds = long_tailed(_toy(20, 4), imbalance_ratio=10)
    assert ds.train.counts(4).tolist() == [20, 9, 4, 2]
    assert ds.test.counts(4).tolist() == [20, 20, 20, 20]
    with pytest.raises(ConfigError, match=">= 1"):
        long_tailed(_toy(), 0.5)


def test_class_subset_relabels_in_given_order() -> None:
    ds = class_subset(_toy(), ["c", "a"])
    assert ds.class_names == ("c", "a")
    assert ds.train.counts(2).tolist() == [20, 20]
    assert ds.train.images[ds.train.labels == 0][:, 0, 0, 0].min().item() == 40
    with pytest.raises(ConfigError, match="no class"):
        class_subset(_toy(), ["zebra"])


def test_without_classes_keeps_the_other_images_and_relabels_them_in_order() -> None:
    full = _toy()
    ds = without_classes(full, ["b"])
    assert ds.class_names == ("a", "c", "d") and ds.name == f"{full.name}-without-b"
    assert "classes left out: b" in ds.notes
    for split in ("train", "test"):
        kept = getattr(full, split).labels != 1
        assert torch.equal(getattr(ds, split).images, getattr(full, split).images[kept])
        relabelled = [{0: 0, 2: 1, 3: 2}[k] for k in getattr(full, split).labels[kept].tolist()]
        assert getattr(ds, split).labels.tolist() == relabelled
    with pytest.raises(ConfigError, match=r"no class 'zebra'.*classes: a, b, c, d"):
        without_classes(full, ["zebra"])
    with pytest.raises(ConfigError, match="fewer than two classes"):
        without_classes(full, ["a", "b", "c"])


def test_batches_cover_the_split_and_repeat_per_epoch_seed() -> None:
    ds = _toy()
    it = BatchIterator(ds.train, 16, shuffle=True, augment=Augment(pad=2), seed=3)
    it.set_epoch(0)
    first = [idx for _, _, idx in it]
    assert sorted(torch.cat(first).tolist()) == list(range(80))
    again = [idx for _, _, idx in it]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    it.set_epoch(1)
    assert not torch.equal(torch.cat(first), torch.cat([idx for _, _, idx in it]))
    x, y, idx = next(iter(it))
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert torch.equal(y, ds.train.labels[idx])


def test_augmentation_is_a_shifted_window_of_the_padded_image() -> None:
    x = torch.rand(64, 3, 8, 8)
    out = augment_batch(x, Augment(pad=2, flip=True), torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(64):
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(2)) for w in windows)
    assert not torch.equal(out, x)
    assert Augment.for_input((1, 28, 28)) is None and Augment.for_input((3, 32, 32)) == Augment()


def test_sample_weights_draw_classes_in_proportion() -> None:
    labels = torch.tensor([0] * 90 + [1] * 10)
    split = LabeledImages(torch.zeros(100, 1, 2, 2, dtype=torch.uint8), labels)
    weights = torch.where(labels == 0, 1 / 90, 1 / 10)
    it = BatchIterator(split, 100, sample_weights=weights, seed=0)
    drawn = torch.cat([labels[idx] for e in range(30) for _ in [it.set_epoch(e)] for _, _, idx in it])
    share = drawn.float().mean().item()
    assert 0.45 < share < 0.55


# ---- real data (CLASSWISE_DATA=../shared/data) ----


@pytest.mark.realdata
def test_real_cifar10_jpeg_archive(real_data: Path) -> None:
    archive = real_data / "cifar10-jpeg.tar.gz"
    if not archive.exists():
        pytest.skip("cifar10-jpeg.tar.gz absent")
    ds = load_dataset(str(archive))
    assert (len(ds.train), len(ds.test), ds.num_classes) == (50000, 10000, 10)
    assert ds.class_names[3] == "cat"
    assert ds.train.counts(10).tolist() == [5000] * 10
    assert ds.notes and "JPEG" in ds.notes[0]
    assert abs(ds.mean[0] - 0.4913) < 2e-3


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_idx_datasets(real_data: Path, name: str) -> None:
    ds = load_dataset(name, root=real_data, download_missing=False)
    assert (len(ds.train), len(ds.test)) == (60000, 10000)
    if name == "mnist":
        # the official uncompressed file is a 16-byte IDX header then the pixels we loaded
        header = bytes([0, 0, 8, 3]) + b"".join(v.to_bytes(4, "big") for v in (60000, 28, 28))
        raw = header + ds.train.images.numpy().tobytes()
        assert hashlib.md5(raw).hexdigest() == "6bbc9ace898e44ae57da46a324031adb"


@pytest.mark.realdata
def test_real_gtsrb_from_extracted_root(real_data: Path, tmp_path: Path) -> None:
    archive = real_data / "gtsrb-32px.tar.gz"
    if not archive.exists():
        pytest.skip("gtsrb-32px.tar.gz absent")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    ds = load_dataset("gtsrb", root=tmp_path, download_missing=False)
    assert ds.num_classes == 43
    assert (len(ds.train), len(ds.test)) == (10456, 12630)
    counts = ds.train.counts(43)
    assert counts.min().item() == 56 and counts.max().item() == 600


def test_svhn_in_torchvisions_flat_layout(tmp_path: Path) -> None:
    WRITERS["svhn"](tmp_path)
    for f in (tmp_path / "svhn").iterdir():
        f.rename(tmp_path / f.name)
    ds = load_dataset("svhn", root=tmp_path, download_missing=False)
    assert len(ds.train) == N_TRAIN and DATASETS.get("svhn").available(tmp_path)


def test_a_dataset_describes_how_many_images_of_each_class_it_trains_on(tmp_path: Path) -> None:
    """The per-class training counts (after the validation split and any long tail) are stored with
    every run, so the results of an imbalanced dataset (GTSRB) are read beside them."""
    ds = load_dataset(str(write_class_folders(tmp_path, n=8)))
    assert ds.describe()["train_class_counts"] == [8, 8, 8]
    ds = validation_split(ds, 2, seed=0)
    assert ds.describe()["train_class_counts"] == [6, 6, 6]
    tail = long_tailed(ds, 3.0, seed=0)
    counts = tail.describe()["train_class_counts"]
    assert counts == torch.bincount(tail.train.labels, minlength=3).tolist()
    assert counts[0] == 6 and counts[0] > counts[2] and sum(counts) == len(tail.train)
