"""VGG with batch norm (Simonyan & Zisserman 2015), MobileNetV2 (Sandler et al. 2018) and
DenseNet-121 (Huang et al. 2017) in their CIFAR forms (stride-1 stems), plus SmallCNN, the
four-convolution network of the TRADES MNIST experiments. All pool adaptively at the end, so
28×28, 32×32 and 96×96 inputs all work."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from classwise.models.base import MODELS, Backbone

VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(Backbone):
    def __init__(self, config: list[int | str], num_classes: int, in_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: 28×28 inputs survive five pools
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v)), nn.ReLU()]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)


@MODELS.register("vgg11_bn")
def vgg11_bn(num_classes: int, in_channels: int) -> VGG:
    """VGG-11 with batch norm."""
    return VGG(VGG_CONFIGS["vgg11"], num_classes, in_channels)


@MODELS.register("vgg16_bn")
def vgg16_bn(num_classes: int, in_channels: int) -> VGG:
    """VGG-16 with batch norm."""
    return VGG(VGG_CONFIGS["vgg16"], num_classes, in_channels)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, expansion: int, stride: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.use_skip = stride == 1 and cin == cout
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU6(),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU6(),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.use_skip else out


class MobileNetV2(Backbone):
    # (expansion, out channels, blocks, stride); CIFAR form: stride 1 in the stem and second stage
    CONFIG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        blocks, cin = [], 32
        for expansion, cout, n, stride in self.CONFIG:
            for j in range(n):
                blocks.append(InvertedResidual(cin, cout, expansion, stride if j == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.last = nn.Sequential(nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6())
        self.head = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.last(self.blocks(self.stem(x))), 1).flatten(1)


@MODELS.register("mobilenet_v2")
def mobilenet_v2(num_classes: int, in_channels: int) -> MobileNetV2:
    """MobileNetV2, CIFAR form."""
    return MobileNetV2(num_classes, in_channels)


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth),
            nn.ReLU(),
            nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.body(x), x], 1)


class DenseNet(Backbone):
    def __init__(
        self, blocks: tuple[int, ...], growth: int, num_classes: int, in_channels: int, reduction: float = 0.5
    ) -> None:
        super().__init__()
        c = 2 * growth
        self.stem = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i, n in enumerate(blocks):
            for _ in range(n):
                stages.append(DenseLayer(c, growth))
                c += growth
            if i < len(blocks) - 1:
                out = int(c * reduction)
                stages += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, out, 1, bias=False), nn.AvgPool2d(2)]
                c = out
        self.dense = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(c)
        self.head = nn.Linear(c, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(F.relu(self.bn(self.dense(self.stem(x)))), 1).flatten(1)


@MODELS.register("densenet121")
def densenet121(num_classes: int, in_channels: int) -> DenseNet:
    """DenseNet-121 (growth 32), CIFAR form."""
    return DenseNet((6, 12, 24, 16), 32, num_classes, in_channels)


class SmallCNN(Backbone):
    def __init__(self, num_classes: int, in_channels: int, width: int = 32) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        w = width
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Sequential(nn.Linear(2 * w * 16, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU())
        self.head = nn.Linear(200, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # pool to 4×4 so the fully connected part is the same for 28, 32 and 96 pixel inputs
        return self.fc(F.adaptive_avg_pool2d(self.convs(x), 4).flatten(1))


@MODELS.register("small_cnn", tags=("small",))
def small_cnn(num_classes: int, in_channels: int, width: int = 32) -> SmallCNN:
    """SmallCNN of the TRADES MNIST experiments (four 3×3 convolutions, two 200-unit layers)."""
    return SmallCNN(num_classes, in_channels, width)
