"""Residual networks (He et al.), ResNeXt, SE-ResNet(Xt) and wide bottleneck ResNets, CIFAR and
ImageNet variants, written for M members.

Two details of the divide-and-co-training authors are options of the blocks (off in the classes
for backward compatibility, on in the registered paper networks, see ``automl.models.zoo``):

- ``zero_init_last_bn``: the last BatchNorm of each residual branch starts at weight 0, so every
  block starts as the identity (Goyal et al.), which helps deep nets at large learning rates;
- ``avg_down``: a downsampling shortcut is a 2x2 average pool followed by a stride-1 1x1
  projection (ResNet-D) instead of a strided 1x1 that discards 3/4 of the positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import nn

from automl.models._layers import (
    MConv2d,
    MLinear,
    MSqueezeExcite,
    MStemConv2d,
    init_conv_bn,
    mbatchnorm,
    pool_classify,
)

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "Stem"]


class Stem(StrEnum):
    CIFAR = "cifar"  # one 3x3 convolution, stride 1
    IMAGENET = "imagenet"  # 7x7/2 convolution and 3x3/2 max-pool (He et al.)
    DEEP = "deep"  # three 3x3 convolutions w, w, 2w (the first with stride 2), then max-pool


def _shortcut(in_ch: int, out_ch: int, stride: int, members: int, avg_down: bool) -> nn.Module:
    """Identity, or a 1x1 projection with BatchNorm when the shape changes.

    With ``avg_down`` the spatial reduction is an average pool in front of a stride-1 projection.
    """
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    if avg_down and stride > 1:
        return nn.Sequential(
            nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
            MConv2d(in_ch, out_ch, 1, members=members),
            mbatchnorm(out_ch, members),
        )
    return nn.Sequential(
        MConv2d(in_ch, out_ch, 1, stride=stride, members=members),
        mbatchnorm(out_ch, members),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a projection shortcut when the shape changes."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int,
        *,
        members: int,
        avg_down: bool = False,
        zero_init_last_bn: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = MConv2d(in_ch, out_ch, 3, stride=stride, members=members)
        self.bn1 = mbatchnorm(out_ch, members)
        self.conv2 = MConv2d(out_ch, out_ch, 3, members=members)
        self.bn2 = mbatchnorm(out_ch, members)
        self.shortcut = _shortcut(in_ch, out_ch, stride, members, avg_down)
        self.zero_init_last_bn = zero_init_last_bn

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand; stride on the 3x3 as in ResNet v1.5.

    ``se_reduction`` > 0 adds squeeze-and-excitation (Hu et al.) on the branch, before the sum.
    """

    def __init__(
        self,
        in_ch: int,
        inner: int,
        out_ch: int,
        stride: int,
        *,
        members: int,
        groups: int = 1,
        avg_down: bool = False,
        zero_init_last_bn: bool = False,
        se_reduction: int = 0,
    ) -> None:
        super().__init__()
        self.conv1 = MConv2d(in_ch, inner, 1, members=members)
        self.bn1 = mbatchnorm(inner, members)
        self.conv2 = MConv2d(inner, inner, 3, stride=stride, groups=groups, members=members)
        self.bn2 = mbatchnorm(inner, members)
        self.conv3 = MConv2d(inner, out_ch, 1, members=members)
        self.bn3 = mbatchnorm(out_ch, members)
        self.se: nn.Module = (
            MSqueezeExcite(out_ch, max(1, out_ch // se_reduction), members=members)
            if se_reduction > 0
            else nn.Identity()
        )
        self.shortcut = _shortcut(in_ch, out_ch, stride, members, avg_down)
        self.zero_init_last_bn = zero_init_last_bn

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return F.relu(out + self.shortcut(x))


def zero_init_last_bns(module: nn.Module) -> None:
    """Zero the last BatchNorm weight of every block that asks for it (call after the init)."""
    for m in module.modules():
        last_bn = getattr(m, "last_bn", None)
        if getattr(m, "zero_init_last_bn", False) and callable(last_bn):
            nn.init.zeros_(last_bn().weight)


class ResNet(nn.Module):
    """A residual network of M members.

    ``stages`` lists, per stage, (number of blocks, inner width, output width, stride). With basic
    blocks the inner width is ignored. ``stem`` picks the CIFAR 3x3 stem, He's 7x7/2 + max-pool
    (``imagenet_stem=True``, kept for old callers) or the deep stem of three 3x3 convolutions
    ``stem_width, stem_width, 2 * stem_width`` that the divide-and-co-training authors use on
    ImageNet.
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
        stem: Stem | str | None = None,
        avg_down: bool = False,
        zero_init_last_bn: bool = False,
        se_reduction: int = 0,
    ) -> None:
        super().__init__()
        self.members = members
        kind = Stem(stem) if stem is not None else (Stem.IMAGENET if imagenet_stem else Stem.CIFAR)
        self.stem_pool: nn.Module = nn.Identity()
        self.stem_rest: nn.Module = nn.Identity()
        if kind is Stem.IMAGENET:
            self.stem_conv = MStemConv2d(in_chans, stem_width, 7, stride=2, members=members)
            self.stem_pool = nn.MaxPool2d(3, stride=2, padding=1)
            out_stem = stem_width
        elif kind is Stem.DEEP:
            self.stem_conv = MStemConv2d(in_chans, stem_width, 3, stride=2, members=members)
            out_stem = 2 * stem_width
            self.stem_rest = nn.Sequential(
                mbatchnorm(stem_width, members),
                nn.ReLU(inplace=True),
                MConv2d(stem_width, stem_width, 3, members=members),
                mbatchnorm(stem_width, members),
                nn.ReLU(inplace=True),
                MConv2d(stem_width, out_stem, 3, members=members),
            )
            self.stem_pool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.stem_conv = MStemConv2d(in_chans, stem_width, 3, members=members)
            out_stem = stem_width
        self.stem_bn = mbatchnorm(out_stem, members)
        blocks: list[nn.Module] = []
        in_ch = out_stem
        for n_blocks, inner, out_ch, stride in stages:
            for i in range(n_blocks):
                s = stride if i == 0 else 1
                if bottleneck:
                    blocks.append(
                        Bottleneck(
                            in_ch,
                            inner,
                            out_ch,
                            s,
                            members=members,
                            groups=groups,
                            avg_down=avg_down,
                            zero_init_last_bn=zero_init_last_bn,
                            se_reduction=se_reduction,
                        )
                    )
                else:
                    blocks.append(
                        BasicBlock(
                            in_ch,
                            out_ch,
                            s,
                            members=members,
                            avg_down=avg_down,
                            zero_init_last_bn=zero_init_last_bn,
                        )
                    )
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.drop_rate = drop_rate
        self.num_features = in_ch
        self.fc = MLinear(in_ch, num_classes, members=members)
        init_conv_bn(self)
        zero_init_last_bns(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem_rest(self.stem_conv(x))
        out = self.stem_pool(F.relu(self.stem_bn(out)))
        out = self.blocks(out)
        return pool_classify(out, self.fc, self.drop_rate, self.training)
