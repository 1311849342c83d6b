"""Batches straight from device-resident tensors, with augmentation done in batch on the device.

The whole split lives on the device as uint8; each batch is gathered, converted to float in
[0,1] and augmented with tensor ops (no per-image Python loop). Shuffling and augmentation of
epoch ``e`` depend only on ``(seed, e)``, so a run resumed at epoch ``e`` sees exactly the batches
an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from classwise.data.dataset import LabeledImages
from classwise.errors import ConfigError


@dataclass(frozen=True)
class Augment:
    """Random crop after zero padding by ``pad`` pixels, and horizontal flips with probability 0.5."""

    pad: int = 4
    flip: bool = True

    @staticmethod
    def for_input(shape: tuple[int, int, int]) -> Augment | None:
        """The field's default: crop+flip for natural images, none for 1-channel digits/clothes."""
        return None if shape[0] == 1 else Augment()


def augment_batch(x: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """Crop and flip a float batch (B, C, H, W) with per-image random offsets, all as tensor ops."""
    b, _, h, w = x.shape
    if aug.pad:
        p = aug.pad
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
        dx = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B,1,H,1)
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B,1,1,W)
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if aug.flip:
        flip = torch.rand(b, device=x.device, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


class BatchIterator:
    """Iterate (images in [0,1], labels, positions) batches of a split held on ``device``.

    Args:
        split: the images and labels (uint8, moved to ``device`` once).
        batch_size: images per batch.
        shuffle: reshuffle every epoch (seeded by ``seed`` and the epoch).
        augment: on-device augmentation, or None.
        seed: base seed; call :meth:`set_epoch` before iterating an epoch.
        device: where data and batches live.
        drop_last: skip a last incomplete batch (training).
        sample_weights: draw each epoch's samples with replacement, proportional to these
            (class-balanced re-sampling); None means a plain permutation.
        channels_last: return batches in channels_last memory format (fast convolutions on GPU).

    Example:
        >>> it = BatchIterator(ds.train, 128, shuffle=True, augment=Augment(), seed=0)  # doctest: +SKIP
        >>> for x, y, idx in it: ...
    """

    def __init__(
        self,
        split: LabeledImages,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: Augment | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
        sample_weights: torch.Tensor | None = None,
        channels_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.sample_weights = None if sample_weights is None else sample_weights.to(self.device, torch.float64)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        return g

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        g = self._generator()
        if self.sample_weights is not None:
            order = torch.multinomial(self.sample_weights, n, replacement=True, generator=g)
        elif self.shuffle:
            order = torch.randperm(n, device=self.device, generator=g)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[idx].float().div_(255.0)
            if self.augment is not None:
                x = augment_batch(x, self.augment, g)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx], idx
