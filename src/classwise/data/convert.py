"""Data handed over from Python, as the :class:`LabeledImages` every evaluation runs on.

``evaluate(model, data, ...)`` takes a classwise :class:`Dataset` or :class:`LabeledImages`, a
torch ``Dataset`` (map-style, items ``(image, label)``; images as tensors, arrays or PIL images),
a ``DataLoader`` of ``(images, labels)`` batches, or an ``(images, labels)`` pair of tensors or
arrays. Images must be (N, C, H, W) — uint8 pixels, or floats in [0, 1] (attacks and ε live in
pixel space, so normalisation belongs to the model, not the data). Float images that are whole
multiples of 1/255 are stored as uint8, so they evaluate exactly like the classwise dataset they
came from; others are kept as float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from classwise.data.dataset import Dataset, LabeledImages
from classwise.errors import ConfigError

CHANNELS = (1, 3, 4)


def evaluation_images(
    data: Any, class_names: Sequence[str] | None = None
) -> tuple[LabeledImages, tuple[str, ...], str]:
    """``data`` as (images with labels, class names, a name for the results); any problem is one
    :class:`ConfigError` saying what to pass instead."""
    if isinstance(data, Dataset):
        raise TypeError("a classwise Dataset is evaluated split by split (select_images), not converted")
    names = _class_names(class_names if class_names is not None else _declared_classes(data))
    if isinstance(data, LabeledImages):
        images, labels, kind = data.images, data.labels, "data"
    elif isinstance(data, DataLoader):
        images, labels = _from_batches(data)
        kind = type(data.dataset).__name__
    elif isinstance(data, TorchDataset):
        images, labels = _from_items(data)
        kind = type(data).__name__
    elif isinstance(data, tuple | list) and len(data) == 2:
        images, labels, kind = _tensor(data[0], "images"), _tensor(data[1], "labels"), "tensors"
    else:
        raise ConfigError(
            f"cannot evaluate a {type(data).__name__}: pass a classwise Dataset, a torch Dataset or DataLoader of "
            "(image, label) pairs, or an (images, labels) pair of tensors with class_names"
        )
    return LabeledImages(_images(images), _labels(labels, len(images), len(names))), names, kind


def _declared_classes(data: Any) -> Sequence[str] | None:
    """The class names a torchvision-style dataset declares (``.classes``), if any."""
    source = data.dataset if isinstance(data, DataLoader) else data
    classes = getattr(source, "classes", None)
    return list(classes) if isinstance(classes, list | tuple) else None


def _class_names(names: Sequence[str] | None) -> tuple[str, ...]:
    if names is None:
        raise ConfigError("pass class_names (one name per label index): this data does not declare its classes")
    out = tuple(str(n) for n in names)
    if len(out) < 2 or len(set(out)) != len(out):
        raise ConfigError(f"class_names must be at least two distinct names, got {list(out)}")
    return out


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if what == "images" and hasattr(value, "mode") and hasattr(value, "size"):  # a PIL image: H×W(×C) pixels
        array = np.array(value)  # a writable copy
        return torch.from_numpy(np.ascontiguousarray(array if array.ndim == 3 else array[:, :, None])).permute(2, 0, 1)
    if what == "labels" and isinstance(value, int | np.integer | list | tuple):
        try:
            return torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"labels must be class indices (integers), got {str(value)[:80]}") from None
    raise ConfigError(f"{what} must be tensors or numpy arrays, got {type(value).__name__}")


def _pair(item: Any, where: str) -> tuple[Any, Any]:
    if not isinstance(item, tuple | list) or len(item) < 2:
        raise ConfigError(f"{where} must be an (image, label) pair, got {type(item).__name__}")
    return item[0], item[1]


def _from_batches(loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for b, batch in enumerate(loader):
        x, y = _pair(batch, f"batch {b} of the DataLoader")
        images.append(_tensor(x, "images"))
        labels.append(_tensor(y, "labels").reshape(-1))
    if not images:
        raise ConfigError("the DataLoader yields no batches; there is nothing to evaluate")
    if len({tuple(x.shape[1:]) for x in images}) > 1 or len({x.dtype for x in images}) > 1:
        raise ConfigError("the DataLoader's batches differ in image shape or type; give images of one shape")
    return torch.cat(images), torch.cat(labels)


def _from_items(dataset: TorchDataset) -> tuple[torch.Tensor, torch.Tensor]:
    if not hasattr(dataset, "__len__"):
        raise ConfigError("an iterable-style torch Dataset has no length: wrap it in a DataLoader")
    n = len(dataset)
    if n == 0:
        raise ConfigError("the torch Dataset is empty; there is nothing to evaluate")
    first = _tensor(_pair(dataset[0], "item 0 of the torch Dataset")[0], "images")
    images = torch.empty((n, *first.shape), dtype=first.dtype)
    labels = torch.empty(n, dtype=torch.int64)
    for i in range(n):
        x, y = _pair(dataset[i], f"item {i} of the torch Dataset")
        x = _tensor(x, "images")
        if x.shape != first.shape or x.dtype != first.dtype:
            raise ConfigError(f"item {i} is a {tuple(x.shape)} {x.dtype} image, item 0 a {tuple(first.shape)} one")
        images[i] = x
        labels[i] = int(_tensor(y, "labels").reshape(-1)[0])
    return images, labels


def _images(images: torch.Tensor) -> torch.Tensor:
    if images.ndim == 3:  # (N, H, W): one channel
        images = images[:, None]
    shape = tuple(images.shape)
    if images.ndim != 4:
        raise ConfigError(f"images must be (N, C, H, W), got shape {shape}")
    if images.shape[1] not in CHANNELS:
        hint = " (channels last? permute to (N, C, H, W))" if images.shape[-1] in CHANNELS else ""
        raise ConfigError(f"images must be (N, C, H, W) with 1, 3 or 4 channels, got shape {shape}{hint}")
    if len(images) == 0:
        raise ConfigError("there are no images to evaluate")
    if images.dtype == torch.uint8:
        return images.contiguous()
    if not images.is_floating_point():
        raise ConfigError(f"images must be uint8 pixels or floats in [0, 1], got {images.dtype}")
    images = images.float()
    if not bool(torch.isfinite(images).all()):
        raise ConfigError("images hold NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise ConfigError(
            f"float images must lie in [0, 1], these span [{low:.3g}, {high:.3g}]: pass unnormalised images and "
            "give the model its normalisation (classwise.models.Preprocessed, or --mean/--std)"
        )
    pixels = images * 255
    if bool((pixels - pixels.round()).abs().max() < 1e-4):
        return pixels.round().to(torch.uint8).contiguous()
    return images.contiguous()


def _labels(labels: torch.Tensor, n: int, k: int) -> torch.Tensor:
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise ConfigError(f"labels must be integers (class indices), got {labels.dtype}")
    labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if labels.ndim != 1 or len(labels) != n:
        raise ConfigError(f"need one label per image: {n} images, labels of shape {tuple(labels.shape)}")
    labels = labels.to(torch.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= k:
        raise ConfigError(f"labels span {low}..{high} but there are {k} class names (labels must be 0..{k - 1})")
    return labels.contiguous()
