"""The model contract: [0,1] images in, logits out, normalisation as the first layer.

Every architecture is a :class:`Backbone` (``forward_features`` → penultimate features,
``head`` → logits). :class:`ImageClassifier` puts a :class:`Normalize` in front, so attacks and
ε always live in pixel space, and exposes ``features`` for the analyses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from classwise.registry import Registry


class Normalize(nn.Module):
    """(x − mean) / std per channel, with mean/std as buffers (saved in the state dict)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean/std must have equal length and positive std, got {mean}, {std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Backbone(nn.Module):
    """An architecture: ``forward_features`` gives (B, D) features, ``head`` maps them to logits."""

    head: nn.Linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: architecture, its arguments, input and normalisation."""

    arch: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    logit_shift: tuple[float, ...] | None = None  # added to the logits (post-hoc logit adjustment)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"], d["mean"], d["std"] = list(self.input_shape), list(self.mean), list(self.std)
        d["logit_shift"] = None if self.logit_shift is None else list(self.logit_shift)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(
            arch=str(d["arch"]),
            num_classes=int(d["num_classes"]),
            input_shape=tuple(int(v) for v in d["input_shape"]),  # type: ignore[arg-type]
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            kwargs=dict(d.get("kwargs") or {}),
            logit_shift=None if d.get("logit_shift") is None else tuple(float(v) for v in d["logit_shift"]),
        )


class ImageClassifier(nn.Module):
    """Normalize → backbone. Takes [0,1] images (B, C, H, W), returns logits (B, K)."""

    logit_shift: torch.Tensor | None

    def __init__(self, backbone: Backbone, spec: ModelSpec) -> None:
        super().__init__()
        self.normalize = Normalize(spec.mean, spec.std)
        self.backbone = backbone
        self.spec = spec
        shift = None if spec.logit_shift is None else torch.tensor(spec.logit_shift, dtype=torch.float32)
        self.register_buffer("logit_shift", shift, persistent=False)  # rebuilt from the spec, not the weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.backbone(self.normalize(x))
        return logits if self.logit_shift is None else logits + self.logit_shift

    def with_logit_shift(self, shift: torch.Tensor | None) -> ImageClassifier:
        """The same network (shared weights) predicting with ``logits + shift``."""
        if shift is None and self.logit_shift is None:
            return self
        spec = replace(self.spec, logit_shift=None if shift is None else tuple(float(v) for v in shift))
        return ImageClassifier(self.backbone, spec).to(next(self.parameters()).device)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (B, D)."""
        return self.backbone.forward_features(self.normalize(x))

    @property
    def head(self) -> nn.Linear:
        return self.backbone.head


class Preprocessed(nn.Module):
    """A model from elsewhere (TorchScript, timm, your own code) under the classwise contract:
    [0,1] images in, its normalisation (if any) applied first, logits out. ``input_shape``
    declares the (C, H, W) images it takes, when the model fixes them, so that other data is
    refused before any attack runs."""

    def __init__(
        self,
        model: nn.Module,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        input_shape: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std) if mean is not None and std is not None else None
        self.model = model
        self.input_shape = input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x if self.normalize is None else self.normalize(x))


ArchFactory = Callable[..., Backbone]
MODELS: Registry[ArchFactory] = Registry("model")  # filled where each architecture is defined
