"""The in-memory dataset: uint8 images and int64 labels as tensors, with class names.

Everything downstream (loaders, training, evaluation) consumes a :class:`Dataset`.
Transforms here (validation split, class subsets, long-tailed subsampling) return new
datasets and never mutate their input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import torch

from classwise.errors import ConfigError


def unit_images(images: torch.Tensor) -> torch.Tensor:
    """Images as float in [0,1]: uint8 pixels are divided by 255, float images are taken as they are."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


@dataclass(frozen=True)
class LabeledImages:
    """``images``: uint8 (N, C, H, W) (every dataset read from files), or float32 in [0,1] (images
    handed over from Python that are not whole multiples of 1/255); ``labels``: int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype not in (torch.uint8, torch.float32) or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 or float32 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must be int64 ({self.images.shape[0]},), got {self.labels.dtype} {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:  # a summary, not every pixel
        c, h, w = self.images.shape[1:]
        return f"LabeledImages({len(self)} images of {c}×{h}×{w}, {str(self.images.dtype).removeprefix('torch.')})"

    def take(self, index: torch.Tensor) -> LabeledImages:
        """The samples at ``index`` (a long tensor of positions)."""
        return LabeledImages(self.images[index], self.labels[index])

    def counts(self, num_classes: int) -> torch.Tensor:
        """Samples per class, shape (num_classes,)."""
        return torch.bincount(self.labels, minlength=num_classes)


@dataclass(frozen=True)
class Dataset:
    """A labelled image dataset with an official train/test split.

    Attributes:
        name: registry name or the folder/archive name.
        class_names: one name per label index.
        train, test: the two splits; ``val`` is an optional split carved from train.
        source: where the data came from (official files, a folder, a lossy copy, ...).
    """

    name: str
    class_names: tuple[str, ...]
    train: LabeledImages
    test: LabeledImages
    source: str
    val: LabeledImages | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        k = len(self.class_names)
        for split_name, split in self.splits().items():
            if len(split) and (int(split.labels.min()) < 0 or int(split.labels.max()) >= k):
                raise ValueError(f"{self.name}/{split_name}: labels outside 0..{k - 1}")
            if split.images.shape[1:] != self.train.images.shape[1:]:
                raise ValueError(f"{self.name}/{split_name}: image shape differs from train")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)

    def splits(self) -> dict[str, LabeledImages]:
        out = {"train": self.train, "test": self.test}
        if self.val is not None:
            out["val"] = self.val
        return out

    @cached_property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the train images in [0,1]."""
        return channel_stats(self.train.images)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.mean_std[0]

    @property
    def std(self) -> tuple[float, ...]:
        return self.mean_std[1]

    def describe(self) -> dict[str, object]:
        """Plain-type summary, as stored in checkpoints and results."""
        return {
            "name": self.name,
            "classes": list(self.class_names),
            "input_shape": list(self.input_shape),
            "sizes": {k: len(v) for k, v in self.splits().items()},
            # per class, of the images a run trains on (after the validation split): what an imbalanced
            # dataset's per-class results are read beside
            "train_class_counts": self.train.counts(self.num_classes).tolist(),
            "mean": list(self.mean) if len(self.train) else None,  # a test-only dataset has no train statistics
            "std": list(self.std) if len(self.train) else None,
            "source": self.source,
            "notes": list(self.notes),
        }


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0,1] units of uint8 (N, C, H, W) images, in float64."""
    if images.shape[0] == 0:
        raise ConfigError("no training images to compute the normalisation from; this dataset can only be evaluated")
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    std = (total_sq / n - mean * mean).clamp_min(0).sqrt()
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def validation_split(dataset: Dataset, per_class: int, seed: int = 0) -> Dataset:
    """Carve a stratified validation split of ``per_class`` images per class out of train.

    The same seed always takes the same images. Raises if a class has too few images.
    """
    if per_class < 1:
        raise ConfigError(f"validation per_class must be >= 1, got {per_class}")
    labels = dataset.train.labels
    counts = dataset.train.counts(dataset.num_classes)
    short = [dataset.class_names[k] for k in range(dataset.num_classes) if counts[k] <= per_class]
    if short:
        raise ConfigError(
            f"cannot hold out {per_class} validation images per class: classes {short} have too few "
            f"(smallest has {int(counts.min())}). Use a smaller per_class."
        )
    rng = np.random.default_rng(seed)
    val_idx = []
    for k in range(dataset.num_classes):
        members = torch.nonzero(labels == k).flatten().numpy()
        val_idx.append(rng.choice(members, size=per_class, replace=False))
    val = torch.from_numpy(np.sort(np.concatenate(val_idx)))
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return replace(
        dataset,
        train=dataset.train.take(torch.nonzero(keep).flatten()),
        val=dataset.train.take(val),
    )


def class_subset(dataset: Dataset, classes: list[str] | list[int]) -> Dataset:
    """Keep only ``classes`` (names or indices), relabelled 0..k-1 in the given order."""
    index = [c if isinstance(c, int) else _class_index(dataset, c) for c in classes]
    if len(set(index)) != len(index) or not index:
        raise ConfigError(f"class subset must name distinct classes, got {classes}")
    mapping = torch.full((dataset.num_classes,), -1, dtype=torch.int64)
    mapping[torch.tensor(index)] = torch.arange(len(index))

    def keep(split: LabeledImages) -> LabeledImages:
        new = mapping[split.labels]
        pos = torch.nonzero(new >= 0).flatten()
        return LabeledImages(split.images[pos], new[pos])

    return replace(
        dataset,
        name=f"{dataset.name}[{','.join(dataset.class_names[i] for i in index)}]",
        class_names=tuple(dataset.class_names[i] for i in index),
        train=keep(dataset.train),
        test=keep(dataset.test),
        val=keep(dataset.val) if dataset.val is not None else None,
    )


def without_classes(dataset: Dataset, names: Sequence[str]) -> Dataset:
    """``dataset`` with the classes ``names`` left out of every split and the others relabelled
    0..k-1 in their order: the class-removal intervention (does a class's weakness come from a
    neighbour it is confused with?). The images of the classes kept are exactly those of the
    full dataset, so a run without a class is paired image by image with one on all of them."""
    for name in names:
        _class_index(dataset, name)
    kept = [c for c in dataset.class_names if c not in set(names)]
    if len(kept) < 2:
        raise ConfigError(f"leaving out {list(names)} would keep fewer than two classes of {dataset.name}")
    subset = class_subset(dataset, kept)
    return replace(
        subset,
        name=f"{dataset.name}-without-{'-'.join(names)}",
        notes=(*dataset.notes, f"classes left out: {', '.join(names)}"),
    )


def long_tail_counts(max_count: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """Exponential profile of CIFAR-10-LT: n_k = n_max · ρ^(−k/(K−1)), class 0 the head."""
    if imbalance_ratio < 1:
        raise ConfigError(f"imbalance ratio must be >= 1 (head/tail count), got {imbalance_ratio}")
    if num_classes == 1:
        return [max_count]
    return [max(1, int(max_count * imbalance_ratio ** (-k / (num_classes - 1)))) for k in range(num_classes)]


def long_tailed(dataset: Dataset, imbalance_ratio: float, seed: int = 0) -> Dataset:
    """Subsample train to the exponential long-tail profile; test (and val) stay balanced."""
    counts = dataset.train.counts(dataset.num_classes)
    target = long_tail_counts(int(counts.min()), dataset.num_classes, imbalance_ratio)
    rng = np.random.default_rng(seed)
    take = []
    for k, n in enumerate(target):
        members = torch.nonzero(dataset.train.labels == k).flatten().numpy()
        take.append(rng.choice(members, size=n, replace=False))
    index = torch.from_numpy(np.sort(np.concatenate(take)))
    return replace(
        dataset,
        name=f"{dataset.name}-lt{imbalance_ratio:g}",
        train=dataset.train.take(index),
        notes=(*dataset.notes, f"long-tailed train split, imbalance ratio {imbalance_ratio:g}"),
    )


def per_class_positions(labels: torch.Tensor, per_class: int, num_classes: int) -> torch.Tensor:
    """Positions of the first ``per_class`` samples of each class, in dataset order (deterministic)."""
    if per_class < 1:
        raise ConfigError(f"n per class must be >= 1, got {per_class}")
    keep = [torch.nonzero(labels == k).flatten()[:per_class] for k in range(num_classes)]
    return torch.sort(torch.cat(keep)).values


def per_class_subset(split: LabeledImages, per_class: int, num_classes: int) -> LabeledImages:
    """The first ``per_class`` samples of each class, in dataset order."""
    return split.take(per_class_positions(split.labels, per_class, num_classes))


def _class_index(dataset: Dataset, name: str) -> int:
    if name not in dataset.class_names:
        raise ConfigError(f"{dataset.name} has no class {name!r}; classes: {', '.join(dataset.class_names)}")
    return dataset.class_names.index(name)
