"""Residual networks (He et al.) and ResNeXt, CIFAR and ImageNet variants, written for M members."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from automl.models._layers import MConv2d, MLinear, MStemConv2d, init_conv_bn, mbatchnorm

__all__ = ["BasicBlock", "Bottleneck", "ResNet"]


def _shortcut(in_ch: int, out_ch: int, stride: int, members: int) -> nn.Module:
    """Identity, or a strided 1x1 projection with BatchNorm when the shape changes."""
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(
        MConv2d(in_ch, out_ch, 1, stride=stride, members=members),
        mbatchnorm(out_ch, members),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a projection shortcut when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, members: int) -> None:
        super().__init__()
        self.conv1 = MConv2d(in_ch, out_ch, 3, stride=stride, members=members)
        self.bn1 = mbatchnorm(out_ch, members)
        self.conv2 = MConv2d(out_ch, out_ch, 3, members=members)
        self.bn2 = mbatchnorm(out_ch, members)
        self.shortcut = _shortcut(in_ch, out_ch, stride, members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand; stride on the 3x3 as in ResNet v1.5."""

    def __init__(
        self,
        in_ch: int,
        inner: int,
        out_ch: int,
        stride: int,
        *,
        members: int,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = MConv2d(in_ch, inner, 1, members=members)
        self.bn1 = mbatchnorm(inner, members)
        self.conv2 = MConv2d(inner, inner, 3, stride=stride, groups=groups, members=members)
        self.bn2 = mbatchnorm(inner, members)
        self.conv3 = MConv2d(inner, out_ch, 1, members=members)
        self.bn3 = mbatchnorm(out_ch, members)
        self.shortcut = _shortcut(in_ch, out_ch, stride, members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A residual network of M members.

    ``stages`` lists, per stage, (number of blocks, inner width, output width, stride). With basic
    blocks the inner width is ignored. ``imagenet_stem`` selects the 7x7/2 convolution and max-pool
    instead of the CIFAR 3x3 stem.
    """

    def __init__(
        self,
        *,
        stem_width: int,
        stages: Sequence[tuple[int, int, int, int]],
        bottleneck: bool,
        num_classes: int,
        in_chans: int,
        members: int = 1,
        groups: int = 1,
        drop_rate: float = 0.0,
        imagenet_stem: bool = False,
    ) -> None:
        super().__init__()
        self.members = members
        if imagenet_stem:
            self.stem_conv = MStemConv2d(in_chans, stem_width, 7, stride=2, members=members)
            self.stem_pool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.stem_conv = MStemConv2d(in_chans, stem_width, 3, members=members)
            self.stem_pool = nn.Identity()
        self.stem_bn = mbatchnorm(stem_width, members)
        blocks: list[nn.Module] = []
        in_ch = stem_width
        for n_blocks, inner, out_ch, stride in stages:
            for i in range(n_blocks):
                s = stride if i == 0 else 1
                if bottleneck:
                    blocks.append(
                        Bottleneck(in_ch, inner, out_ch, s, members=members, groups=groups)
                    )
                else:
                    blocks.append(BasicBlock(in_ch, out_ch, s, members=members))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.drop_rate = drop_rate
        self.num_features = in_ch
        self.fc = MLinear(in_ch, num_classes, members=members)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem_pool(F.relu(self.stem_bn(self.stem_conv(x))))
        out = self.blocks(out)
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        if self.drop_rate > 0:
            out = F.dropout(out, self.drop_rate, self.training)
        return self.fc(out)
