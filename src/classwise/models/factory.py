"""The architecture registry and :func:`create_model`, the one way to build a model."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch

from classwise.config import typed_arguments
from classwise.errors import ConfigError
from classwise.models import classic, resnet, wide_resnet
from classwise.models.base import MODELS, ImageClassifier, ModelSpec

# The architectures register themselves where they are defined; importing them fills MODELS.
_ARCHITECTURES = (classic, resnet, wide_resnet)


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
        name: registry name (``classwise models`` lists them; presets such as ``wrn_34_10`` take
            no arguments).
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
    arch, args = entry.name, model_args(name, kwargs)
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


def model_args(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments ``args`` of architecture ``name`` checked by name and type (a whole number
    for ``width``, a number for ``dropout``); the checks of their values are the architecture's."""
    factory = MODELS.entry(name).factory
    allowed = set(inspect.signature(factory).parameters) - {"num_classes", "in_channels"}
    unknown = set(args) - allowed
    if unknown:
        raise ConfigError(f"model {name!r} has no argument(s) {sorted(unknown)}; it takes {sorted(allowed)}")
    typed = typed_arguments(factory, args, f"model {name!r} argument")
    try:  # the architecture's own checks of the values (width >= 1, say), on no memory at all
        with torch.device("meta"):
            factory(num_classes=10, in_channels=3, **typed)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
    except Exception:  # a factory that cannot run on the meta device is checked when it is built
        pass
    return typed


def model_from_spec(spec: ModelSpec) -> ImageClassifier:
    """Rebuild the (untrained) model that ``spec`` describes."""
    model = create_model(spec.arch, spec.num_classes, spec.input_shape, spec.mean, spec.std, **spec.kwargs)
    return model if spec.logit_shift is None else model.with_logit_shift(torch.tensor(spec.logit_shift))


def count_parameters(model: ImageClassifier) -> int:
    return sum(p.numel() for p in model.parameters())


def model_rows(num_classes: int, input_shape: str) -> list[dict[str, object]]:
    """One row per registered architecture: name, parameter count for ``num_classes`` classes and a
    ``CxHxW`` input, and its description (what ``classwise models`` prints)."""
    try:
        shape = tuple(int(v) for v in input_shape.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"input shape is CxHxW with positive sizes, e.g. 3x32x32; got {input_shape!r}")
    c = shape[0]
    rows: list[dict[str, object]] = []
    params = f"params ({num_classes} classes, {input_shape})"
    for entry in MODELS:
        model = create_model(entry.name, num_classes, (shape[0], shape[1], shape[2]), (0.5,) * c, (0.25,) * c)
        size = f"{count_parameters(model) / 1e6:.2f}M"
        rows.append({"name": entry.name, params: size, "description": entry.description})
    return rows
