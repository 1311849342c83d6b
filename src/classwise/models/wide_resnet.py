"""Wide ResNet-depth-k (Zagoruyko & Komodakis 2016), as in TRADES and RobustBench (WRN-28-10,
WRN-34-10): pre-activation blocks, three stages of widths 16k, 32k, 64k."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from classwise.models.base import MODELS, Backbone


class WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal = cin == cout and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = F.relu(self.bn2(self.conv1(out)))
        if self.dropout:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + skip


class WideResNet(Backbone):
    def __init__(
        self, num_classes: int, in_channels: int, depth: int = 28, widen: int = 10, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4 (16, 22, 28, 34, 40), got {depth}")
        if widen < 1 or not 0 <= dropout < 1:
            raise ValueError(f"WideResNet needs widen >= 1 and dropout in [0, 1), got {widen} and {dropout}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages, cin = [], widths[0]
        for i, w in enumerate(widths[1:]):
            stages += [
                WideBlock(cin if j == 0 else w, w, (1 if i == 0 else 2) if j == 0 else 1, dropout) for j in range(n)
            ]
            cin = w
        self.blocks = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(cin)
        self.head = nn.Linear(cin, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


@MODELS.register("wide_resnet")
def wide_resnet(
    num_classes: int, in_channels: int, depth: int = 28, widen: int = 10, dropout: float = 0.0
) -> WideResNet:
    """Wide ResNet with ``depth`` (6n+4) and widening factor ``widen``."""
    return WideResNet(num_classes, in_channels, depth, widen, dropout)


@MODELS.register("wrn_28_10", tags=("preset", "paper"))
def wrn_28_10(num_classes: int, in_channels: int) -> WideResNet:
    """WRN-28-10 (36.5M parameters), the RobustBench CIFAR workhorse."""
    return wide_resnet(num_classes, in_channels, depth=28, widen=10)


@MODELS.register("wrn_34_10", tags=("preset", "paper"))
def wrn_34_10(num_classes: int, in_channels: int) -> WideResNet:
    """WRN-34-10 (46.2M parameters), as in Madry et al., TRADES and FAAL."""
    return wide_resnet(num_classes, in_channels, depth=34, widen=10)


@MODELS.register("wrn_16_4", tags=("preset",))
def wrn_16_4(num_classes: int, in_channels: int) -> WideResNet:
    """WRN-16-4 (2.7M parameters)."""
    return wide_resnet(num_classes, in_channels, depth=16, widen=4)
