"""CIFAR-style ResNets (3×3 stem, no max-pool): ResNet-18/34/50 (He et al. 2016, as used in
adversarial-training papers), PreActResNet-18 (He et al. 2016b; the PGD-AT/CFA workhorse), and
the original CIFAR ResNet-6n+2 (ResNet-20), a small fast network for CPU-scale studies.
``width`` scales every stage's channels (64 by default for the ImageNet-shaped family)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from classwise.models.base import MODELS, Backbone


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def _shortcut(cin: int, cout: int, stride: int, bn: bool = True) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 1, stride, bias=False)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv3(cin, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3(planes, planes), nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out)
        self.shortcut = _shortcut(cin, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + self.shortcut(x))


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv3(cin, planes, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), _conv3(planes, planes)
        self.shortcut = _shortcut(cin, planes, stride, bn=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if not isinstance(self.shortcut, nn.Identity) else x
        out = self.conv1(out)
        return self.conv2(F.relu(self.bn2(out))) + skip


class ResNet(Backbone):
    """Stages of ``blocks`` with widths (w, 2w, 4w, 8w) (or as given) and strides (1, 2, 2, 2)."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck] | type[PreActBlock],
        blocks: tuple[int, ...],
        num_classes: int,
        in_channels: int,
        widths: tuple[int, ...],
        preact: bool = False,
    ) -> None:
        super().__init__()
        self.preact = preact
        self.stem = _conv3(in_channels, widths[0])
        self.stem_bn = nn.Identity() if preact else nn.BatchNorm2d(widths[0])
        layers, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            stage = []
            for j in range(n):
                stage.append(block(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w * block.expansion
            layers.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*layers)
        self.final_bn = nn.BatchNorm2d(cin) if preact else nn.Identity()
        self.head = nn.Linear(cin, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        if not self.preact:
            out = F.relu(self.stem_bn(out))
        out = self.layers(out)
        if self.preact:
            out = F.relu(self.final_bn(out))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def _widths(width: int, stages: int = 4) -> tuple[int, ...]:
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    return tuple(width * 2**i for i in range(stages))


@MODELS.register("resnet18", tags=("paper",))
def resnet18(num_classes: int, in_channels: int, width: int = 64) -> ResNet:
    """ResNet-18 (CIFAR stem), 11.2M parameters at width 64."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, _widths(width))


@MODELS.register("resnet34")
def resnet34(num_classes: int, in_channels: int, width: int = 64) -> ResNet:
    """ResNet-34 (CIFAR stem)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels, _widths(width))


@MODELS.register("resnet50")
def resnet50(num_classes: int, in_channels: int, width: int = 64) -> ResNet:
    """ResNet-50 with bottleneck blocks (CIFAR stem)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, _widths(width))


@MODELS.register("preact_resnet18", tags=("paper",))
def preact_resnet18(num_classes: int, in_channels: int, width: int = 64) -> ResNet:
    """PreActResNet-18, the standard adversarial-training model (Madry/Rice/CFA setups)."""
    return ResNet(PreActBlock, (2, 2, 2, 2), num_classes, in_channels, _widths(width), preact=True)


@MODELS.register("resnet20", tags=("small",))
def cifar_resnet(num_classes: int, in_channels: int, depth: int = 20, width: int = 16) -> ResNet:
    """The original CIFAR ResNet of depth 6n+2 (ResNet-20: 0.27M parameters), three stages."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
    n = (depth - 2) // 6
    return ResNet(BasicBlock, (n, n, n), num_classes, in_channels, _widths(width, 3))


@MODELS.register("resnet18_w16", tags=("preset",))
def resnet18_w16(num_classes: int, in_channels: int) -> ResNet:
    """ResNet-18 at width 16 (0.7M parameters): CPU-scale runs."""
    return resnet18(num_classes, in_channels, width=16)


@MODELS.register("preact_resnet18_w16", tags=("preset",))
def preact_resnet18_w16(num_classes: int, in_channels: int) -> ResNet:
    """PreActResNet-18 at width 16 (0.7M parameters): CPU-scale runs."""
    return preact_resnet18(num_classes, in_channels, width=16)
