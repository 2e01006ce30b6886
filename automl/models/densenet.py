"""DenseNet-BC (Huang et al.) for CIFAR, written for M members.

Each layer is BN-ReLU-1x1 (4k channels)-BN-ReLU-3x3 (k channels) and its output is concatenated
to its input; transitions halve the channels (compression 0.5) and the resolution. In the fused
form the concatenation is done per member (``mcat``) so member i's channels stay in block i.
Division rule of the paper: the growth rate k becomes k / sqrt(K).
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from automl.models._layers import (
    MConv2d,
    MLinear,
    MStemConv2d,
    init_conv_bn,
    mbatchnorm,
    mcat,
    pool_classify,
)
from automl.models._registry import ModelSpec, register

__all__ = ["DenseNet"]


class DenseLayer(nn.Module):
    def __init__(self, in_ch: int, growth: int, *, members: int) -> None:
        super().__init__()
        self.members = members
        self.bn1 = mbatchnorm(in_ch, members)
        self.conv1 = MConv2d(in_ch, 4 * growth, 1, members=members)
        self.bn2 = mbatchnorm(4 * growth, members)
        self.conv2 = MConv2d(4 * growth, growth, 3, members=members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return mcat([x, out], self.members)


class Transition(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, *, members: int) -> None:
        super().__init__()
        self.bn = mbatchnorm(in_ch, members)
        self.conv = MConv2d(in_ch, out_ch, 1, members=members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    def __init__(
        self,
        *,
        depth: int,
        growth: int,
        num_classes: int,
        in_chans: int,
        members: int = 1,
        compression: float = 0.5,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"DenseNet-BC depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        self.members = members
        ch = 2 * growth
        self.stem_conv = MStemConv2d(in_chans, ch, 3, members=members)
        layers: list[nn.Module] = []
        for stage in range(3):
            for _ in range(n):
                layers.append(DenseLayer(ch, growth, members=members))
                ch += growth
            if stage < 2:
                out = math.floor(ch * compression)
                layers.append(Transition(ch, out, members=members))
                ch = out
        self.features = nn.Sequential(*layers)
        self.bn = mbatchnorm(ch, members)
        self.drop_rate = drop_rate
        self.num_features = ch
        self.fc = MLinear(ch, num_classes, members=members)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.stem_conv(x))
        out = F.relu(self.bn(out))
        return pool_classify(out, self.fc, self.drop_rate, self.training)


def _densenet(
    depth: int,
    growth: int,
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
) -> nn.Module:
    k = max(2, round(growth * width_mult / math.sqrt(split_factor)))
    return DenseNet(
        depth=depth,
        growth=k,
        num_classes=num_classes,
        in_chans=in_chans,
        members=members,
        drop_rate=drop_rate,
    )


register(
    ModelSpec(
        name="densenet_bc190",
        family="densenet",
        builder=partial(_densenet, 190, 40),
        image_size=32,
        description="DenseNet-BC-190, growth rate k = 40 (CIFAR); k / sqrt(K) per member "
        "(28 at K=2, 20 at K=4)",
    )
)
