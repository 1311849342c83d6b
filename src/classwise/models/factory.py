"""The architecture registry and :func:`create_model`, the one way to build a model."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from classwise.errors import ConfigError
from classwise.models import classic, resnet, wide_resnet
from classwise.models.base import Backbone, ImageClassifier, ModelSpec
from classwise.registry import Registry

ArchFactory = Callable[..., Backbone]
MODELS: Registry[ArchFactory] = Registry("model")

for _name, _factory, _tags in (
    ("preact_resnet18", resnet.preact_resnet18, ("paper",)),
    ("resnet18", resnet.resnet18, ("paper",)),
    ("resnet34", resnet.resnet34, ()),
    ("resnet50", resnet.resnet50, ()),
    ("resnet20", resnet.cifar_resnet, ("small",)),
    ("wide_resnet", wide_resnet.wide_resnet, ()),
    ("vgg11_bn", classic.vgg11_bn, ()),
    ("vgg16_bn", classic.vgg16_bn, ()),
    ("mobilenet_v2", classic.mobilenet_v2, ()),
    ("densenet121", classic.densenet121, ()),
    ("small_cnn", classic.small_cnn, ("small",)),
):
    MODELS.register(_name, tags=_tags)(_factory)

# Named presets: registry name → (architecture, fixed arguments).
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "wrn_28_10": ("wide_resnet", {"depth": 28, "widen": 10}),
    "wrn_34_10": ("wide_resnet", {"depth": 34, "widen": 10}),
    "wrn_16_4": ("wide_resnet", {"depth": 16, "widen": 4}),
    "resnet18_w16": ("resnet18", {"width": 16}),
    "preact_resnet18_w16": ("preact_resnet18", {"width": 16}),
}
for _preset, (_arch, _kw) in PRESETS.items():
    MODELS.register(_preset, description=f"{_arch} with {_kw}", tags=("preset",))(MODELS.get(_arch))


def create_model(
    name: str,
    num_classes: int,
    input_shape: tuple[int, int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    **kwargs: Any,
) -> ImageClassifier:
    """Build a registered architecture behind a normalisation layer.

    Args:
        name: registry name (``classwise models`` lists them; presets such as ``wrn_34_10`` fix
            arguments).
        num_classes: size of the output layer.
        input_shape: (C, H, W); H and W may be anything ≥ 8 since every network pools adaptively.
        mean, std: per-channel normalisation (the dataset's), applied inside the model.
        **kwargs: architecture arguments, e.g. ``width=16`` or ``depth=34, widen=10``.

    Returns:
        An :class:`ImageClassifier` taking [0,1] images; ``model.spec`` rebuilds it.

    Example:
        >>> m = create_model("resnet20", 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3)
        >>> m(torch.rand(2, 3, 32, 32)).shape  # doctest: +SKIP
        torch.Size([2, 10])
    """
    entry = MODELS.entry(name)
    arch, fixed = PRESETS.get(entry.name, (entry.name, {}))
    clash = set(fixed) & set(kwargs)
    if clash:
        raise ConfigError(f"model {name!r} fixes {sorted(clash)}; use {arch!r} to choose them")
    args = {**fixed, **kwargs}
    allowed = set(inspect.signature(entry.factory).parameters) - {"num_classes", "in_channels"}
    unknown = set(args) - allowed
    if unknown:
        raise ConfigError(f"model {name!r} has no argument(s) {sorted(unknown)}; it takes {sorted(allowed)}")
    if len(mean) != input_shape[0] or len(std) != input_shape[0]:
        raise ConfigError(f"mean/std need {input_shape[0]} channel values, got {len(mean)}/{len(std)}")
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    try:
        backbone = entry.factory(num_classes=num_classes, in_channels=input_shape[0], **args)
    except ValueError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
    spec = ModelSpec(arch, num_classes, tuple(input_shape), tuple(mean), tuple(std), args)  # type: ignore[arg-type]
    return ImageClassifier(backbone, spec)


def model_from_spec(spec: ModelSpec) -> ImageClassifier:
    """Rebuild the (untrained) model that ``spec`` describes."""
    model = create_model(spec.arch, spec.num_classes, spec.input_shape, spec.mean, spec.std, **spec.kwargs)
    return model if spec.logit_shift is None else model.with_logit_shift(torch.tensor(spec.logit_shift))


def count_parameters(model: ImageClassifier) -> int:
    return sum(p.numel() for p in model.parameters())
