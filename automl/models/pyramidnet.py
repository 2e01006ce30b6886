"""PyramidNet (Han et al.) for CIFAR with bottleneck blocks, written for M members.

The width grows by ``alpha / N`` channels at every one of the N blocks (not per stage); shortcuts
are parameter-free: a 2x2 average pool when downsampling and zero channels appended for the extra
width. Division rule of the paper: alpha is divided by sqrt(K).
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
    mpad_channels,
    pool_classify,
)
from automl.models._registry import ModelSpec, register

__all__ = ["PyramidNet"]


class PyramidBottleneck(nn.Module):
    """BN, 1x1, BN-ReLU, 3x3 (stride), BN-ReLU, 1x1 (x4), BN; no ReLU after the sum."""

    def __init__(
        self, in_ch: int, planes: int, stride: int, *, members: int, zero_init_last_bn: bool
    ) -> None:
        super().__init__()
        out_ch = planes * 4
        self.members = members
        self.extra = out_ch - in_ch
        self.stride = stride
        self.bn1 = mbatchnorm(in_ch, members)
        self.conv1 = MConv2d(in_ch, planes, 1, members=members)
        self.bn2 = mbatchnorm(planes, members)
        self.conv2 = MConv2d(planes, planes, 3, stride=stride, members=members)
        self.bn3 = mbatchnorm(planes, members)
        self.conv3 = MConv2d(planes, out_ch, 1, members=members)
        self.bn4 = mbatchnorm(out_ch, members)
        self.zero_init_last_bn = zero_init_last_bn

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        out = self.bn4(out)
        skip = F.avg_pool2d(x, 2, ceil_mode=True) if self.stride > 1 else x
        return out + mpad_channels(skip, self.extra, self.members)


class PyramidNet(nn.Module):
    def __init__(
        self,
        *,
        depth: int,
        alpha: float,
        num_classes: int,
        in_chans: int,
        members: int = 1,
        stem_width: int = 16,
        drop_rate: float = 0.0,
        zero_init_last_bn: bool = True,
    ) -> None:
        super().__init__()
        if (depth - 2) % 9 != 0:
            raise ValueError(f"bottleneck PyramidNet depth must be 9n + 2, got {depth}")
        n = (depth - 2) // 9
        self.members = members
        self.stem_conv = MStemConv2d(in_chans, stem_width, 3, members=members)
        self.stem_bn = mbatchnorm(stem_width, members)
        step = alpha / (3 * n)
        width = float(stem_width)
        in_ch = stem_width
        blocks: list[nn.Module] = []
        for stage in range(3):
            for i in range(n):
                width += step
                planes = round(width)
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(
                    PyramidBottleneck(
                        in_ch, planes, stride, members=members, zero_init_last_bn=zero_init_last_bn
                    )
                )
                in_ch = planes * 4
        self.blocks = nn.Sequential(*blocks)
        self.bn = mbatchnorm(in_ch, members)
        self.drop_rate = drop_rate
        self.num_features = in_ch
        self.fc = MLinear(in_ch, num_classes, members=members)
        init_conv_bn(self)
        for m in self.modules():
            if getattr(m, "zero_init_last_bn", False) and isinstance(m, PyramidBottleneck):
                nn.init.zeros_(m.last_bn().weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.stem_bn(self.stem_conv(x)))
        out = F.relu(self.bn(out))
        return pool_classify(out, self.fc, self.drop_rate, self.training)


def _pyramidnet(
    depth: int,
    alpha: float,
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
    zero_init_last_bn: bool = True,
) -> nn.Module:
    return PyramidNet(
        depth=depth,
        alpha=alpha * width_mult / math.sqrt(split_factor),
        num_classes=num_classes,
        in_chans=in_chans,
        members=members,
        drop_rate=drop_rate,
        zero_init_last_bn=zero_init_last_bn,
    )


register(
    ModelSpec(
        name="pyramidnet272",
        family="pyramidnet",
        builder=partial(_pyramidnet, 272, 200.0),
        image_size=32,
        description="PyramidNet-272, alpha 200, bottleneck (CIFAR); alpha / sqrt(K) per member",
        paper_size={1: (26.8, 4.55), 4: (32.8, 6.33)},
        options=("zero_init_last_bn",),
    )
)
